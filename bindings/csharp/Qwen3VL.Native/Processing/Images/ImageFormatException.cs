namespace Qwen3VL.Native.Processing.Images;

/// <summary>
/// Thrown when image bytes cannot be decoded: empty input, an unrecognised or corrupt encoding,
/// a truncated file, or a zero-sized picture. The message names the problem.
/// </summary>
public class ImageFormatException : Exception
{
    /// <summary>Creates the exception with a message naming the problem.</summary>
    public ImageFormatException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and the underlying cause.</summary>
    public ImageFormatException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>
/// Thrown when an image header declares more pixels than the decoder's cap (a likely
/// decompression bomb). It is raised after reading the header and before any pixel is decoded.
/// </summary>
public sealed class ImageTooLargeException : ImageFormatException
{
    /// <summary>Creates the exception for a header declaring <paramref name="width"/> x <paramref name="height"/>.</summary>
    public ImageTooLargeException(int width, int height, long maxPixels)
        : base($"Image header declares {width}x{height} = {(long)width * height} pixels, above the cap of {maxPixels} pixels; refusing to decode.")
    {
        Width = width;
        Height = height;
        MaxPixels = maxPixels;
    }

    /// <summary>Width declared by the image header.</summary>
    public int Width { get; }

    /// <summary>Height declared by the image header.</summary>
    public int Height { get; }

    /// <summary>The pixel cap that was exceeded.</summary>
    public long MaxPixels { get; }
}
