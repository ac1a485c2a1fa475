namespace Qwen3VL.Native.Processing.Images;

/// <summary>How a transparent image becomes RGB.</summary>
public enum AlphaHandling
{
    /// <summary>
    /// Drop the alpha channel (Pillow's <c>image.convert("RGB")</c>). This is what the oracle (transformers 5.17
    /// Qwen2VLImageProcessor, torchvision backend, on PIL images from <c>PIL.Image.open</c>) was measured to do:
    /// fully transparent pixels keep their stored colour. The default.
    /// </summary>
    Ignore,

    /// <summary>
    /// Alpha-composite over opaque white with Pillow's integer arithmetic (<c>Image.alpha_composite(white, image)</c>,
    /// as older transformers' <c>convert_to_rgb</c> did).
    /// </summary>
    CompositeOnWhite,
}

/// <summary>Options of <see cref="ImageDecoder"/>.</summary>
public sealed record ImageDecoderOptions
{
    /// <summary>Default pixel cap: 64 megapixels.</summary>
    public const long DefaultMaxPixels = 64L * 1024 * 1024;

    /// <summary>Default cap on bytes read from a stream: 1 GiB.</summary>
    public const long DefaultMaxEncodedBytes = 1L << 30;

    /// <summary>Shared instance with the default settings.</summary>
    public static ImageDecoderOptions Default { get; } = new();

    /// <summary>Images whose header declares more pixels than this are rejected before any pixel is decoded.</summary>
    public long MaxPixels { get; init; } = DefaultMaxPixels;

    /// <summary>Streams longer than this are rejected.</summary>
    public long MaxEncodedBytes { get; init; } = DefaultMaxEncodedBytes;

    /// <summary>How transparency is removed. Default: <see cref="AlphaHandling.Ignore"/> (the oracle's).</summary>
    public AlphaHandling Alpha { get; init; } = AlphaHandling.Ignore;

    /// <summary>
    /// Whether to apply the EXIF orientation tag (like <c>PIL.ImageOps.exif_transpose</c>). Default false:
    /// <c>PIL.Image.open</c> and the processor do not apply it.
    /// </summary>
    public bool ApplyExifOrientation { get; init; }
}
