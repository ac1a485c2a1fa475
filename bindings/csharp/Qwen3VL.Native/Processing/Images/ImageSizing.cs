namespace Qwen3VL.Native.Processing.Images;

/// <summary>Target-size computation of the Qwen2-VL / Qwen3-VL image processor.</summary>
public static class ImageSizing
{
    /// <summary>Largest accepted ratio between the long and the short side.</summary>
    public const double MaxAspectRatio = 200;

    /// <summary>
    /// Port of transformers' <c>smart_resize</c> (models/qwen2_vl/image_processing_qwen2_vl.py, transformers 5):
    /// both sides become multiples of <paramref name="factor"/>, the area is kept within
    /// [<paramref name="minPixels"/>, <paramref name="maxPixels"/>], and the aspect ratio is kept as well as possible.
    /// </summary>
    /// <remarks>
    /// Same order and float math as upstream (IEEE doubles; Python's <c>round</c> is round-half-to-even):
    /// aspect-ratio check; <c>h_bar = round(h / f) * f</c> (likewise w); if <c>h_bar * w_bar &gt; max_pixels</c>:
    /// <c>beta = sqrt(h * w / max_pixels)</c>, <c>h_bar = max(f, floor(h / beta / f) * f)</c>; else if below
    /// <c>min_pixels</c>: <c>beta = sqrt(min_pixels / (h * w))</c>, <c>h_bar = ceil(h * beta / f) * f</c>.
    /// </remarks>
    /// <returns>The resized (height, width).</returns>
    /// <exception cref="ArgumentOutOfRangeException">A size, the factor, or a pixel bound is not positive.</exception>
    /// <exception cref="ArgumentException">The aspect ratio exceeds <see cref="MaxAspectRatio"/>.</exception>
    public static (int Height, int Width) SmartResize(int height, int width, int factor = 32, long minPixels = 65536, long maxPixels = 16777216)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(height);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(factor);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(minPixels);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxPixels);

        double ratio = (double)Math.Max(height, width) / Math.Min(height, width);
        if (ratio > MaxAspectRatio)
        {
            throw new ArgumentException($"absolute aspect ratio must be smaller than {MaxAspectRatio}, got {ratio} ({height}x{width}).");
        }

        long hBar = (long)Math.Round((double)height / factor, MidpointRounding.ToEven) * factor;
        long wBar = (long)Math.Round((double)width / factor, MidpointRounding.ToEven) * factor;
        double area = (double)((long)height * width);
        if (hBar * wBar > maxPixels)
        {
            double beta = Math.Sqrt(area / maxPixels);
            hBar = Math.Max(factor, (long)Math.Floor(height / beta / factor) * factor);
            wBar = Math.Max(factor, (long)Math.Floor(width / beta / factor) * factor);
        }
        else if (hBar * wBar < minPixels)
        {
            double beta = Math.Sqrt(minPixels / area);
            hBar = (long)Math.Ceiling(height * beta / factor) * factor;
            wBar = (long)Math.Ceiling(width * beta / factor) * factor;
        }

        if (hBar > int.MaxValue || wBar > int.MaxValue)
        {
            throw new ArgumentException($"Resized size {hBar}x{wBar} is out of range.");
        }

        return ((int)hBar, (int)wBar);
    }
}
