using Qwen3VL.Native.Engine;
using Qwen3VL.Native.Processing;
using Qwen3VL.Native.Processing.Images;

namespace Qwen3VL.Native.Model;

/// <summary>Preprocessed pixels of one or more images, as the vision tower takes them: patches in merge-window order.</summary>
public sealed class VisionInput
{
    /// <summary>Wraps pixel values <c>[patches, patch_dim]</c> (row-major) and the grids of the images they hold, in order.</summary>
    /// <exception cref="ArgumentException">The length is not the grids' patch count times a whole patch dimension.</exception>
    public VisionInput(float[] pixelValues, IReadOnlyList<GridThw> grids)
    {
        ArgumentNullException.ThrowIfNull(pixelValues);
        ArgumentNullException.ThrowIfNull(grids);
        if (grids.Count == 0) throw new ArgumentException("At least one image grid is required.", nameof(grids));
        long patches = 0;
        foreach (GridThw g in grids)
        {
            if (g.T <= 0 || g.H <= 0 || g.W <= 0) throw new ArgumentException($"Invalid grid {g}.", nameof(grids));
            patches += g.Patches;
        }
        if (pixelValues.Length == 0 || pixelValues.Length % patches != 0)
        {
            throw new ArgumentException($"{pixelValues.Length} pixel values do not hold {patches} whole patches.", nameof(pixelValues));
        }
        PixelValues = pixelValues;
        Grids = grids.ToArray();
        Patches = checked((int)patches);
        PatchDim = pixelValues.Length / Patches;
    }

    /// <summary>Pixel values <c>[Patches, PatchDim]</c>.</summary>
    public float[] PixelValues { get; }
    /// <summary>The images' grids, in prompt order.</summary>
    public IReadOnlyList<GridThw> Grids { get; }
    /// <summary>Total patches.</summary>
    public int Patches { get; }
    /// <summary>Values per patch.</summary>
    public int PatchDim { get; }

    /// <summary>Concatenates processed images (in prompt order).</summary>
    public static VisionInput FromImages(IReadOnlyList<ProcessedImage> images)
    {
        ArgumentNullException.ThrowIfNull(images);
        if (images.Count == 0) throw new ArgumentException("At least one image is required.", nameof(images));
        GridThw[] grids = images.Select(i => new GridThw(i.GridT, i.GridH, i.GridW)).ToArray();
        // One image: its pixel values as they are (a 1024x1024 image holds 25 MB of them; a copy costs milliseconds).
        if (images.Count == 1) return new VisionInput(images[0].PixelValues, grids);
        var values = new float[images.Sum(i => (long)i.PixelValues.Length)];
        int offset = 0;
        foreach (ProcessedImage image in images)
        {
            image.PixelValues.CopyTo(values, offset);
            offset += image.PixelValues.Length;
        }
        return new VisionInput(values, grids);
    }
}

/// <summary>Output of the vision tower: the merged visual tokens and the DeepStack features, all [tokens, text_hidden]. Dispose after use.</summary>
public sealed class VisionFeatures : IDisposable
{
    internal VisionFeatures(Tensor embeddings, IReadOnlyList<Tensor> deepstack)
    {
        Embeddings = embeddings;
        Deepstack = deepstack;
    }

    /// <summary>Final merger output [tokens, text_hidden], in image order.</summary>
    public Tensor Embeddings { get; }
    /// <summary>DeepStack features, one per <see cref="ModelConfig.DeepstackVisualIndexes"/> entry, each [tokens, text_hidden].</summary>
    public IReadOnlyList<Tensor> Deepstack { get; }
    /// <summary>Number of visual tokens.</summary>
    public long TokenCount => Embeddings.Shape[0];

    /// <summary>Releases the tensors.</summary>
    public void Dispose()
    {
        Embeddings.Dispose();
        foreach (Tensor t in Deepstack) t.Dispose();
    }
}
