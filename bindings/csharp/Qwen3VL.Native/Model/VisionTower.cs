using Qwen3VL.Native.Engine;
using Qwen3VL.Native.Processing;

namespace Qwen3VL.Native.Model;

/// <summary>
/// The vision tower, <c>model.visual</c>: patch embedding (Conv3d as a matrix product) + interpolated learned position
/// embedding, the blocks with DeepStack taps, and the final patch merger.
/// </summary>
public sealed class VisionTower
{
    private readonly ModelConfig _config;
    private readonly Backend _backend;

    internal VisionTower(WeightLoader w)
    {
        _config = w.Config;
        _backend = w.Backend;
        long hidden = _config.VisionHiddenSize;
        PatchEmbedWeight = w.Get("model.visual.patch_embed.proj.weight", hidden, _config.VisionPatchDim);
        PatchEmbedBias = w.Get("model.visual.patch_embed.proj.bias", hidden);
        PosEmbedWeight = w.Get("model.visual.pos_embed.weight", _config.VisionNumPositionEmbeddings, hidden);
        var blocks = new VisionBlock[_config.VisionDepth];
        for (int i = 0; i < blocks.Length; i++) blocks[i] = new VisionBlock(w, i);
        Blocks = blocks;
        Merger = new PatchMerger(w, "model.visual.merger.", usePostShuffleNorm: false);
        var deepstack = new PatchMerger[_config.DeepstackVisualIndexes.Count];
        for (int k = 0; k < deepstack.Length; k++) deepstack[k] = new PatchMerger(w, $"model.visual.deepstack_merger_list.{k}.", usePostShuffleNorm: true);
        DeepstackMergers = deepstack;
    }

    /// <summary><c>patch_embed.proj.weight</c> seen as [hidden, patch_dim].</summary>
    public Tensor PatchEmbedWeight { get; }
    /// <summary><c>patch_embed.proj.bias</c>.</summary>
    public Tensor PatchEmbedBias { get; }
    /// <summary><c>pos_embed.weight</c> [G·G, hidden].</summary>
    public Tensor PosEmbedWeight { get; }
    /// <summary><c>blocks.N</c>.</summary>
    public IReadOnlyList<VisionBlock> Blocks { get; }
    /// <summary><c>merger</c>.</summary>
    public PatchMerger Merger { get; }
    /// <summary><c>deepstack_merger_list.K</c>, applied after block <see cref="ModelConfig.DeepstackVisualIndexes"/>[K].</summary>
    public IReadOnlyList<PatchMerger> DeepstackMergers { get; }

    /// <summary>Encodes images: returns the merged visual tokens and the DeepStack features.</summary>
    /// <exception cref="ArgumentException">The input does not fit the model (patch size, grids not multiples of the merge size).</exception>
    public VisionFeatures Forward(VisionInput input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.PatchDim != _config.VisionPatchDim)
        {
            throw new ArgumentException($"Patches have {input.PatchDim} values; the model expects {_config.VisionPatchDim}.", nameof(input));
        }
        int merge = _config.VisionSpatialMergeSize;
        foreach (GridThw g in input.Grids)
        {
            if (g.H % merge != 0 || g.W % merge != 0) throw new ArgumentException($"Grid {g} is not a multiple of the merge size {merge}.", nameof(input));
        }
        long n = input.Patches, hidden = _config.VisionHiddenSize;

        using Tensor x = _backend.CreateTensor(TensorDType.F32, n, hidden);
        using (Tensor pos = _backend.CreateTensor(TensorDType.F32, n, hidden))
        {
            long row = 0;
            foreach (GridThw g in input.Grids)
            {
                // Every frame of a video gets the same table, computed on the backend for each frame (the op is
                // deterministic, so the frames' rows are equal bit for bit) rather than read back and copied.
                long frame = (long)g.H * g.W;
                for (int t = 0; t < g.T; t++, row += frame)
                {
                    using Tensor rows = pos.View(row * hidden, frame, hidden);
                    Ops.PositionEmbedding(rows, PosEmbedWeight, g.H, g.W, merge);
                }
            }
            // x = pos + patch_embed(pixels): the position embedding is the patch embedding's residual.
            using Tensor pixels = _backend.CreateTensor(TensorDType.F32, n, input.PatchDim);
            pixels.Write(input.PixelValues);
            Ops.LinearResidual(x, pixels, PatchEmbedWeight, PatchEmbedBias, pos);
        }

        using Tensor positions = _backend.CreateTensor(TensorDType.I32, n, 2);
        positions.Write(RotaryPositions(input.Grids, merge));
        int[] cu = Segments(input.Grids);
        using Tensor segments = _backend.CreateTensor(TensorDType.I32, cu.Length);
        segments.Write(cu);

        var deepstack = new Tensor?[DeepstackMergers.Count];
        try
        {
            for (int i = 0; i < Blocks.Count; i++)
            {
                Blocks[i].Forward(x, positions, segments);
                for (int k = 0; k < deepstack.Length; k++)
                {
                    if (_config.DeepstackVisualIndexes[k] == i && deepstack[k] is null) deepstack[k] = DeepstackMergers[k].Forward(x);
                }
            }
            Tensor merged = Merger.Forward(x);
            return new VisionFeatures(merged, deepstack.Select(t => t ?? throw new InvalidOperationException("A DeepStack index names no block.")).ToArray());
        }
        catch
        {
            foreach (Tensor? t in deepstack) t?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Full-resolution (row, col) of every patch in merge-window order, per image repeated over its t frames, as
    /// <c>rot_pos_emb</c> builds them: i32 [patches, 2].
    /// </summary>
    public static int[] RotaryPositions(IReadOnlyList<GridThw> grids, int mergeSize)
    {
        ArgumentNullException.ThrowIfNull(grids);
        var result = new int[grids.Sum(g => (long)g.Patches) * 2];
        int o = 0;
        foreach (GridThw g in grids)
        {
            for (int t = 0; t < g.T; t++)
            {
                for (int br = 0; br < g.H / mergeSize; br++)
                for (int bc = 0; bc < g.W / mergeSize; bc++)
                for (int ir = 0; ir < mergeSize; ir++)
                for (int ic = 0; ic < mergeSize; ic++)
                {
                    result[o++] = br * mergeSize + ir;
                    result[o++] = bc * mergeSize + ic;
                }
            }
        }
        return result;
    }

    /// <summary>Cumulative patch counts of the attention segments: one per frame (h·w patches), starting at 0.</summary>
    public static int[] Segments(IReadOnlyList<GridThw> grids)
    {
        ArgumentNullException.ThrowIfNull(grids);
        var cu = new List<int> { 0 };
        foreach (GridThw g in grids)
        {
            for (int t = 0; t < g.T; t++) cu.Add(checked(cu[^1] + g.H * g.W));
        }
        return cu.ToArray();
    }
}
