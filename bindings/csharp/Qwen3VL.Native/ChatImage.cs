using Qwen3VL.Native.Processing.Images;

namespace Qwen3VL.Native;

/// <summary>
/// An image attached to a chat message, decoded when created (so an unreadable image is reported at once) and resized
/// for a model's image token budget on first use. Immutable and thread-safe; one instance may be attached to several
/// messages or sessions. Formats: PNG, JPEG, BMP, GIF, WebP.
/// </summary>
public sealed class ChatImage
{
    private readonly RgbImage _pixels;
    private readonly Lock _gate = new();
    private (ImageProcessor Processor, ProcessedImage Image)? _processed;

    private ChatImage(RgbImage pixels, string? source)
    {
        _pixels = pixels;
        Source = source;
    }

    /// <summary>Where the image came from: the file path, or null for bytes and streams.</summary>
    public string? Source { get; }
    /// <summary>Width in pixels, as decoded.</summary>
    public int Width => _pixels.Width;
    /// <summary>Height in pixels, as decoded.</summary>
    public int Height => _pixels.Height;

    /// <summary>Reads and decodes an image file.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ImageFormatException">The file is not a readable image (corrupt, truncated, unsupported format, too large).</exception>
    public static ChatImage FromFile(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return new ChatImage(ImageDecoder.Decode(path), path);
    }

    /// <summary>Decodes an encoded image (the bytes of a PNG, JPEG, … file).</summary>
    /// <exception cref="ImageFormatException">The data is not a readable image.</exception>
    public static ChatImage FromBytes(ReadOnlyMemory<byte> data) => new(ImageDecoder.Decode(data), null);

    /// <summary>Reads an encoded image from <paramref name="stream"/> to its end and decodes it; the stream stays open.</summary>
    /// <exception cref="ImageFormatException">The data is not a readable image.</exception>
    public static ChatImage FromStream(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        return new ChatImage(ImageDecoder.Decode(stream), null);
    }

    /// <summary>The image resized, normalised and patchified by <paramref name="processor"/> (kept for the next call).</summary>
    internal ProcessedImage Process(ImageProcessor processor)
    {
        lock (_gate)
        {
            if (_processed is { } p && ReferenceEquals(p.Processor, processor)) return p.Image;
            ProcessedImage image = processor.Process(_pixels);
            _processed = (processor, image);
            return image;
        }
    }

    /// <inheritdoc />
    public override string ToString() => $"{Source ?? "image"} ({Width}x{Height})";
}
