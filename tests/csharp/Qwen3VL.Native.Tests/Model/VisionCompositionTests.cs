using System.Runtime.InteropServices;
using Qwen3VL.Native.Model;
using Qwen3VL.Native.Processing;
using Qwen3VL.Native.Tests.Processing;

namespace Qwen3VL.Native.Tests.Model;

/// <summary>
/// The vision tower composes fused ops (LayerNormLinear, LinearResidual, MlpGelu); on the CPU each equals the op sequence
/// it replaced bit for bit. Checked here on a fixture model's weights with random patch states: a block's Forward and both
/// kinds of patch merger against that sequence written out with the unfused ops.
/// </summary>
public sealed class VisionCompositionTests
{
    private static readonly GridThw[] Grids = [new GridThw(1, 4, 6), new GridThw(2, 2, 2)];

    private static Qwen3VLModel Model => TestModels.Get(FixtureCatalog.FixtureDirectories()[0]);

    private static Backend Backend => TestModels.Backend;

    private static Tensor Random(Random rng, long rows, long cols)
    {
        var values = new float[rows * cols];
        for (int i = 0; i < values.Length; i++) values[i] = (float)(rng.NextDouble() * 2 - 1);
        Tensor t = Backend.CreateTensor(TensorDType.F32, rows, cols);
        t.Write(values);
        return t;
    }

    private static float[] Read(Tensor t)
    {
        var values = new float[t.ElementCount];
        t.Read(values);
        return values;
    }

    private static void AssertBitwise(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        ReadOnlySpan<int> e = MemoryMarshal.Cast<float, int>(expected), a = MemoryMarshal.Cast<float, int>(actual);
        for (int i = 0; i < e.Length; i++)
        {
            if (e[i] != a[i]) Assert.Fail($"{what}: element {i} is {actual[i]:R}, the op sequence gives {expected[i]:R}");
        }
    }

    [Fact]
    public void BlockForwardEqualsTheUnfusedSequence()
    {
        ModelConfig c = Model.Config;
        VisionBlock block = Model.Vision.Blocks[^1];
        int merge = c.VisionSpatialMergeSize;
        long n = Grids.Sum(g => (long)g.Patches), hidden = c.VisionHiddenSize, heads = c.VisionNumHeads, headDim = c.VisionHeadDim;
        var rng = new Random(1234);
        using Tensor x = Random(rng, n, hidden);
        float[] x0 = Read(x);
        using Tensor positions = Backend.CreateTensor(TensorDType.I32, n, 2);
        positions.Write(VisionTower.RotaryPositions(Grids, merge));
        int[] cu = VisionTower.Segments(Grids);
        using Tensor segments = Backend.CreateTensor(TensorDType.I32, cu.Length);
        segments.Write(cu);

        block.Forward(x, positions, segments);

        // The block as it was written before the fused ops.
        using Tensor r = Backend.CreateTensor(TensorDType.F32, n, hidden);
        r.Write(x0);
        using Tensor h = Backend.CreateTensor(TensorDType.F32, n, hidden);
        using Tensor qkv = Backend.CreateTensor(TensorDType.F32, n, 3 * hidden);
        using Tensor qkv4 = qkv.Reshape(n, 3, heads, headDim);
        using Tensor attn = Backend.CreateTensor(TensorDType.F32, n, heads, headDim);
        using Tensor attn2 = attn.Reshape(n, hidden);
        using Tensor f = Backend.CreateTensor(TensorDType.F32, n, c.VisionIntermediateSize);
        Ops.LayerNorm(h, r, block.Norm1Weight, block.Norm1Bias, VisionBlock.LayerNormEps);
        Ops.Linear(qkv, h, block.QkvWeight, block.QkvBias);
        Ops.RopeVision(qkv4, positions, (float)c.VisionRopeTheta);
        Ops.Attention(attn, qkv4, null, null, 0, AttentionMode.Segments, segments);
        Ops.Linear(h, attn2, block.ProjWeight, block.ProjBias);
        Ops.Add(r, r, h);
        Ops.LayerNorm(h, r, block.Norm2Weight, block.Norm2Bias, VisionBlock.LayerNormEps);
        Ops.Linear(f, h, block.Fc1Weight, block.Fc1Bias);
        Ops.Gelu(f, f, c.VisionGeluTanh);
        Ops.Linear(h, f, block.Fc2Weight, block.Fc2Bias);
        Ops.Add(r, r, h);

        AssertBitwise(Read(r), Read(x), "vision block");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void PatchMergerEqualsTheUnfusedSequence(bool deepstack)
    {
        ModelConfig c = Model.Config;
        PatchMerger merger = deepstack ? Model.Vision.DeepstackMergers[0] : Model.Vision.Merger;
        long unit = c.VisionMergeUnit, hidden = c.VisionHiddenSize, m = 6, n = m * unit, merged = hidden * unit;
        using Tensor x = Random(new Random(deepstack ? 7 : 8), n, hidden);

        using Tensor ours = merger.Forward(x);

        // The merger as it was written before the fused ops.
        using Tensor normed = Backend.CreateTensor(TensorDType.F32, m, merged);
        if (deepstack)
        {
            using Tensor shuffled = x.Reshape(m, merged);
            Ops.LayerNorm(normed, shuffled, merger.NormWeight, merger.NormBias, VisionBlock.LayerNormEps);
        }
        else
        {
            using Tensor perPatch = normed.Reshape(n, hidden);
            Ops.LayerNorm(perPatch, x, merger.NormWeight, merger.NormBias, VisionBlock.LayerNormEps);
        }
        using Tensor f = Backend.CreateTensor(TensorDType.F32, m, merged);
        Ops.Linear(f, normed, merger.Fc1Weight, merger.Fc1Bias);
        Ops.Gelu(f, f, tanhApproximation: false);
        using Tensor reference = Backend.CreateTensor(TensorDType.F32, m, c.VisionOutHiddenSize);
        Ops.Linear(reference, f, merger.Fc2Weight, merger.Fc2Bias);

        AssertBitwise(Read(reference), Read(ours), deepstack ? "DeepStack merger" : "merger");
    }
}
