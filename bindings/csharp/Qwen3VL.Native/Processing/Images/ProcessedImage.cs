namespace Qwen3VL.Native.Processing.Images;

/// <summary>
/// One image turned into vision-tower input: flattened patches and the patch grid.
/// </summary>
/// <remarks>
/// <see cref="PixelValues"/> is row-major <c>[Patches, PatchDim]</c>. Patches are ordered
/// (t, h / merge, w / merge, merge_row, merge_col) so each merge window is contiguous, and each patch
/// is flattened as (channel, temporal, patch_row, patch_col) — the layout of transformers'
/// <c>Qwen2VLImageProcessor._preprocess</c> (view + permute(0, 1, 4, 7, 5, 8, 3, 2, 6, 9)).
/// </remarks>
public sealed class ProcessedImage
{
    /// <summary>Creates the result; <paramref name="pixelValues"/> is not copied.</summary>
    public ProcessedImage(float[] pixelValues, int gridT, int gridH, int gridW, int patchDim, int mergeSize, int resizedHeight, int resizedWidth)
    {
        ArgumentNullException.ThrowIfNull(pixelValues);
        if ((long)gridT * gridH * gridW * patchDim != pixelValues.LongLength)
        {
            throw new ArgumentException("Pixel buffer length does not match the grid and patch size.", nameof(pixelValues));
        }

        PixelValues = pixelValues;
        GridT = gridT;
        GridH = gridH;
        GridW = gridW;
        PatchDim = patchDim;
        MergeSize = mergeSize;
        ResizedHeight = resizedHeight;
        ResizedWidth = resizedWidth;
    }

    /// <summary>Normalised patch values, <c>[Patches, PatchDim]</c> row-major.</summary>
    public float[] PixelValues { get; }

    /// <summary>Number of patches (rows of <see cref="PixelValues"/>) = GridT * GridH * GridW.</summary>
    public int Patches => GridT * GridH * GridW;

    /// <summary>Temporal grid size (1 for a still image).</summary>
    public int GridT { get; }

    /// <summary>Patch rows: resized height / patch size.</summary>
    public int GridH { get; }

    /// <summary>Patch columns: resized width / patch size.</summary>
    public int GridW { get; }

    /// <summary>Values per patch: channels * temporal_patch_size * patch_size^2 (1536 for Qwen3-VL).</summary>
    public int PatchDim { get; }

    /// <summary>Spatial merge size (2 for Qwen3-VL).</summary>
    public int MergeSize { get; }

    /// <summary>Height the image was resized to (GridH * patch size).</summary>
    public int ResizedHeight { get; }

    /// <summary>Width the image was resized to (GridW * patch size).</summary>
    public int ResizedWidth { get; }

    /// <summary>Number of image tokens the language model sees: GridT * GridH * GridW / MergeSize^2.</summary>
    public int TokenCount => GridT * GridH * GridW / (MergeSize * MergeSize);
}
