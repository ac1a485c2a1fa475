using System.Buffers.Binary;
using System.Runtime.InteropServices;
using SkiaSharp;

namespace Qwen3VL.Native.Processing.Images;

/// <summary>
/// Decodes PNG, JPEG, BMP, GIF (first frame) and WebP into 8-bit RGB the way the oracle sees them:
/// <c>PIL.Image.open</c> followed by the processor's RGB conversion (alpha dropped, as measured on transformers 5.17).
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>Dimensions are read from the header (and for PNG from IHDR before Skia sees the data) and checked against
/// <see cref="ImageDecoderOptions.MaxPixels"/> before any pixel is decoded.</item>
/// <item>Pixels are decoded unpremultiplied and without colour management (Pillow ignores ICC profiles and gAMA).</item>
/// <item>Pillow modes are reproduced: a PNG of colour type 2 (RGB) opens as mode "RGB", so its tRNS key is ignored;
/// 16-bit PNGs keep the high byte (Pillow's "RGB;16B"/"RGBA;16B"/"LA;16B" unpackers), except 16-bit greyscale, which
/// opens as "I;16" and converts to 8 bits by clipping at 255.</item>
/// <item>Alpha is dropped by default; compositing over white with Pillow's <c>ImagingAlphaComposite</c> integer math is
/// available (see <see cref="AlphaHandling"/>).</item>
/// <item>EXIF orientation is not applied unless asked for (<see cref="ImageDecoderOptions.ApplyExifOrientation"/>).</item>
/// </list>
/// </remarks>
public static class ImageDecoder
{
    // out = alpha_composite(white, (s, a)) channel, indexed [a * 256 + s].
    private static readonly byte[] CompositeOnWhite = BuildCompositeTable();

    /// <summary>Decodes the image file at <paramref name="path"/>.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ImageFormatException">The data is empty, corrupt, truncated or of an unsupported format.</exception>
    /// <exception cref="ImageTooLargeException">The header declares more pixels than allowed.</exception>
    public static RgbImage Decode(string path, ImageDecoderOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        options ??= ImageDecoderOptions.Default;
        if (!File.Exists(path) && !Directory.Exists(path))
        {
            throw new FileNotFoundException($"Image file not found: {path}", path);
        }

        byte[] data;
        try
        {
            data = BoundedFile.ReadAllBytes(path, options.MaxEncodedBytes, "image file");
        }
        catch (InvalidDataException e)
        {
            throw new ImageFormatException(e.Message, e);
        }

        try
        {
            return Decode(data, options);
        }
        catch (ImageFormatException e) when (e is not ImageTooLargeException)
        {
            throw new ImageFormatException($"{path}: {e.Message}", e);
        }
    }

    /// <summary>Decodes an encoded image held in memory.</summary>
    /// <exception cref="ImageFormatException">The data is empty, corrupt, truncated or of an unsupported format.</exception>
    /// <exception cref="ImageTooLargeException">The header declares more pixels than allowed.</exception>
    public static RgbImage Decode(byte[] data, ImageDecoderOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(data);
        return Decode(data.AsSpan(), options);
    }

    /// <summary>Decodes an encoded image held in memory.</summary>
    /// <exception cref="ImageFormatException">The data is empty, corrupt, truncated or of an unsupported format.</exception>
    /// <exception cref="ImageTooLargeException">The header declares more pixels than allowed.</exception>
    public static RgbImage Decode(ReadOnlyMemory<byte> data, ImageDecoderOptions? options = null) => Decode(data.Span, options);

    /// <summary>Reads <paramref name="stream"/> to its end and decodes it.</summary>
    /// <exception cref="ImageFormatException">The data is empty, too long, corrupt, truncated or of an unsupported format.</exception>
    /// <exception cref="ImageTooLargeException">The header declares more pixels than allowed.</exception>
    public static RgbImage Decode(Stream stream, ImageDecoderOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        options ??= ImageDecoderOptions.Default;
        using var buffer = new MemoryStream();
        var chunk = new byte[81920];
        int n;
        while ((n = stream.Read(chunk, 0, chunk.Length)) > 0)
        {
            if (buffer.Length + n > options.MaxEncodedBytes)
            {
                throw new ImageFormatException($"Image stream is longer than the limit of {options.MaxEncodedBytes} bytes.");
            }

            buffer.Write(chunk, 0, n);
        }

        return Decode(buffer.GetBuffer().AsSpan(0, (int)buffer.Length), options);
    }

    /// <summary>Decodes an encoded image held in memory.</summary>
    /// <exception cref="ImageFormatException">The data is empty, corrupt, truncated or of an unsupported format.</exception>
    /// <exception cref="ImageTooLargeException">The header declares more pixels than allowed.</exception>
    public static RgbImage Decode(ReadOnlySpan<byte> data, ImageDecoderOptions? options = null)
    {
        options ??= ImageDecoderOptions.Default;
        if (data.IsEmpty)
        {
            throw new ImageFormatException("Image data is empty (0 bytes).");
        }

        PngHeader? png = PngHeader.TryRead(data);
        if (png is { } ph)
        {
            CheckSize(ph.Width, ph.Height, options);
        }

        if (png is { BitDepth: 16, ColorType: 0, Interlace: 0 } gray16)
        {
            // Pillow opens 16-bit greyscale as "I;16"; its RGB conversion clips at 255. Skia cannot hand out the raw
            // 16-bit samples of a greyscale PNG, so this (simple, non-interlaced) case is decoded here.
            return Png16Gray.Decode(data, gray16.Width, gray16.Height);
        }

        byte[]? patched = options.Alpha == AlphaHandling.Ignore ? GifWithoutTransparency(data) : null;
        using SKData skData = patched is null ? SKData.CreateCopy(data) : SKData.CreateCopy(patched);
        using SKCodec? codec = SKCodec.Create(skData);
        if (codec is null)
        {
            throw new ImageFormatException(
                png is null
                    ? "Unrecognised or corrupt image data (no decoder accepts it; supported: PNG, JPEG, BMP, GIF, WebP)."
                    : "Corrupt PNG data (the decoder rejected its header).");
        }

        int width = codec.Info.Width, height = codec.Info.Height;
        CheckSize(width, height, options);

        bool sixteenBit = png is { BitDepth: 16 };
        SKColorType colorType = sixteenBit ? SKColorType.RgbaF16 : SKColorType.Rgba8888;
        int bytesPerPixel = sixteenBit ? 8 : 4;
        var info = new SKImageInfo(width, height, colorType, SKAlphaType.Unpremul);
        byte[] raw = GC.AllocateUninitializedArray<byte>(checked(width * height * bytesPerPixel));
        SKCodecResult result;
        GCHandle pin = GCHandle.Alloc(raw, GCHandleType.Pinned);
        try
        {
            result = codec.GetPixels(info, pin.AddrOfPinnedObject());
        }
        finally
        {
            pin.Free();
        }

        if (result != SKCodecResult.Success)
        {
            string what = result switch
            {
                SKCodecResult.IncompleteInput or SKCodecResult.ErrorInInput => "truncated or corrupt image data",
                SKCodecResult.InvalidConversion => "unsupported pixel format",
                _ => "image could not be decoded",
            };
            throw new ImageFormatException($"{what} ({codec.EncodedFormat}, {width}x{height}: {result}).");
        }

        // Pillow mode semantics (see the type's remarks).
        bool honourAlpha = options.Alpha == AlphaHandling.CompositeOnWhite && png is not { ColorType: 2 };
        byte[] rgb = GC.AllocateUninitializedArray<byte>(checked(width * height * 3));
        if (sixteenBit)
        {
            // Skia has no unorm16 PNG output; half floats carry v / 65535 exactly enough to recover the sample
            // (exact up to ~2048, within a few units above, which only matters at high-byte boundaries).
            bool clipGray = png is { ColorType: 0 };
            ReadOnlySpan<Half> src = MemoryMarshal.Cast<byte, Half>(raw);
            for (int i = 0, o = 0; i < src.Length; i += 4, o += 3)
            {
                int r16 = Sample16(src[i]), g16 = Sample16(src[i + 1]), b16 = Sample16(src[i + 2]);
                byte r, g, b;
                if (clipGray)
                {
                    r = g = b = r16 > 255 ? (byte)255 : (byte)r16;
                }
                else
                {
                    r = (byte)(r16 >> 8);
                    g = (byte)(g16 >> 8);
                    b = (byte)(b16 >> 8);
                }

                int a = honourAlpha ? Sample16(src[i + 3]) >> 8 : 255;
                Store(rgb, o, r, g, b, a);
            }
        }
        else
        {
            for (int i = 0, o = 0; i < raw.Length; i += 4, o += 3)
            {
                Store(rgb, o, raw[i], raw[i + 1], raw[i + 2], honourAlpha ? raw[i + 3] : 255);
            }
        }

        var image = new RgbImage(width, height, rgb);
        return options.ApplyExifOrientation ? ApplyOrientation(image, codec.EncodedOrigin) : image;
    }

    /// <summary>Reads only the header and returns the declared (width, height).</summary>
    /// <exception cref="ImageFormatException">The data is empty or not a recognised image.</exception>
    public static (int Width, int Height) ReadSize(ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty)
        {
            throw new ImageFormatException("Image data is empty (0 bytes).");
        }

        if (PngHeader.TryRead(data) is { } ph)
        {
            return (ph.Width, ph.Height);
        }

        using SKData skData = SKData.CreateCopy(data);
        using SKCodec? codec = SKCodec.Create(skData);
        return codec is null
            ? throw new ImageFormatException("Unrecognised or corrupt image data.")
            : (codec.Info.Width, codec.Info.Height);
    }

    private static int Sample16(Half h) => (int)Math.Clamp(Math.Round((double)h * 65535.0), 0, 65535);

    private static void CheckSize(int width, int height, ImageDecoderOptions options)
    {
        if (width <= 0 || height <= 0)
        {
            throw new ImageFormatException($"Image has zero size ({width}x{height}).");
        }

        if ((long)width * height > options.MaxPixels)
        {
            throw new ImageTooLargeException(width, height, options.MaxPixels);
        }
    }

    private static void Store(byte[] rgb, int o, byte r, byte g, byte b, int a)
    {
        if (a == 255)
        {
            rgb[o] = r;
            rgb[o + 1] = g;
            rgb[o + 2] = b;
        }
        else
        {
            int row = a << 8;
            rgb[o] = CompositeOnWhite[row + r];
            rgb[o + 1] = CompositeOnWhite[row + g];
            rgb[o + 2] = CompositeOnWhite[row + b];
        }
    }

    // Pillow src/libImaging/AlphaComposite.c (ImagingAlphaComposite), dst = opaque white, PRECISION_BITS = 7.
    private static byte[] BuildCompositeTable()
    {
        const int precisionBits = 7;
        static uint ShiftForDiv255(uint a) => ((a >> 8) + a) >> 8;
        var table = new byte[256 * 256];
        for (uint sa = 0; sa < 256; sa++)
        {
            for (uint s = 0; s < 256; s++)
            {
                uint value;
                if (sa == 0)
                {
                    value = 255;
                }
                else
                {
                    const uint da = 255, d = 255;
                    uint blend = da * (255 - sa);
                    uint outa255 = (sa * 255) + blend;
                    uint coef1 = sa * 255 * 255 * (1u << precisionBits) / outa255;
                    uint coef2 = (255 * (1u << precisionBits)) - coef1;
                    uint tmp = (s * coef1) + (d * coef2);
                    value = ShiftForDiv255(tmp + (0x80u << precisionBits)) >> precisionBits;
                }

                table[(sa << 8) + s] = (byte)value;
            }
        }

        return table;
    }

    private static RgbImage ApplyOrientation(RgbImage image, SKEncodedOrigin origin)
    {
        int w = image.Width, h = image.Height;
        if (origin is SKEncodedOrigin.TopLeft or 0)
        {
            return image;
        }

        bool swap = origin is SKEncodedOrigin.LeftTop or SKEncodedOrigin.RightTop or SKEncodedOrigin.RightBottom or SKEncodedOrigin.LeftBottom;
        int ow = swap ? h : w, oh = swap ? w : h;
        byte[] src = image.Pixels;
        var dst = new byte[src.Length];
        for (int oy = 0; oy < oh; oy++)
        {
            for (int ox = 0; ox < ow; ox++)
            {
                (int sx, int sy) = origin switch
                {
                    SKEncodedOrigin.TopRight => (w - 1 - ox, oy),             // 2: flip left-right
                    SKEncodedOrigin.BottomRight => (w - 1 - ox, h - 1 - oy),  // 3: rotate 180
                    SKEncodedOrigin.BottomLeft => (ox, h - 1 - oy),           // 4: flip top-bottom
                    SKEncodedOrigin.LeftTop => (oy, ox),                      // 5: transpose
                    SKEncodedOrigin.RightTop => (oy, h - 1 - ox),             // 6: rotate 90 clockwise
                    SKEncodedOrigin.RightBottom => (w - 1 - oy, h - 1 - ox),  // 7: transverse
                    SKEncodedOrigin.LeftBottom => (w - 1 - oy, ox),           // 8: rotate 90 counter-clockwise
                    _ => (ox, oy),
                };
                int s = ((sy * w) + sx) * 3, d = ((oy * ow) + ox) * 3;
                dst[d] = src[s];
                dst[d + 1] = src[s + 1];
                dst[d + 2] = src[s + 2];
            }
        }

        return new RgbImage(ow, oh, dst);
    }

    // Pillow's convert("RGB") of a "P" image uses the palette colour of the transparent index, while Skia writes
    // transparent GIF pixels as (0, 0, 0, 0). Clearing the transparency flag of the first frame's graphic control
    // extension makes Skia output the palette colour. Returns null when the data is not a GIF or has no such flag.
    private static byte[]? GifWithoutTransparency(ReadOnlySpan<byte> data)
    {
        if (data.Length < 13 || !(data[..6].SequenceEqual("GIF87a"u8) || data[..6].SequenceEqual("GIF89a"u8)))
        {
            return null;
        }

        int pos = 13;
        if ((data[10] & 0x80) != 0)
        {
            pos += 3 << ((data[10] & 7) + 1);
        }

        while (pos + 1 < data.Length && data[pos] == 0x21)
        {
            byte label = data[pos + 1];
            int blockStart = pos + 2;
            if (label == 0xF9 && blockStart + 1 < data.Length && data[blockStart] == 4 && (data[blockStart + 1] & 1) != 0)
            {
                byte[] copy = data.ToArray();
                copy[blockStart + 1] &= 0xFE;
                return copy;
            }

            pos = blockStart;
            while (pos < data.Length && data[pos] != 0)
            {
                pos += data[pos] + 1;
            }

            pos++;
        }

        return null;
    }

    private static class Png16Gray
    {
        public static RgbImage Decode(ReadOnlySpan<byte> data, int width, int height)
        {
            using var idat = new MemoryStream();
            int pos = 8;
            while (pos + 12 <= data.Length)
            {
                int len = (int)BinaryPrimitives.ReadUInt32BigEndian(data.Slice(pos, 4));
                if (len < 0 || pos + 12 + (long)len > data.Length)
                {
                    throw new ImageFormatException("Truncated or corrupt PNG chunk.");
                }

                ReadOnlySpan<byte> type = data.Slice(pos + 4, 4);
                if (type.SequenceEqual("IDAT"u8))
                {
                    idat.Write(data.Slice(pos + 8, len));
                }
                else if (type.SequenceEqual("IEND"u8))
                {
                    break;
                }

                pos += 12 + len;
            }

            int stride = width * 2;
            var raw = new byte[checked((stride + 1) * height)];
            try
            {
                idat.Position = 0;
                using var z = new System.IO.Compression.ZLibStream(idat, System.IO.Compression.CompressionMode.Decompress);
                z.ReadExactly(raw);
            }
            catch (Exception e) when (e is InvalidDataException or EndOfStreamException)
            {
                throw new ImageFormatException("Truncated or corrupt PNG image data.", e);
            }

            var prev = new byte[stride];
            var cur = new byte[stride];
            var rgb = new byte[checked(width * height * 3)];
            for (int y = 0; y < height; y++)
            {
                byte filter = raw[y * (stride + 1)];
                raw.AsSpan((y * (stride + 1)) + 1, stride).CopyTo(cur);
                for (int i = 0; i < stride; i++)
                {
                    int a = i >= 2 ? cur[i - 2] : 0, b = prev[i], c = i >= 2 ? prev[i - 2] : 0;
                    cur[i] += filter switch
                    {
                        0 => 0,
                        1 => (byte)a,
                        2 => (byte)b,
                        3 => (byte)((a + b) >> 1),
                        4 => (byte)Paeth(a, b, c),
                        _ => throw new ImageFormatException($"Corrupt PNG: unknown filter type {filter}."),
                    };
                }

                for (int x = 0; x < width; x++)
                {
                    int v = (cur[2 * x] << 8) | cur[(2 * x) + 1];
                    byte g = v > 255 ? (byte)255 : (byte)v;
                    int o = ((y * width) + x) * 3;
                    rgb[o] = rgb[o + 1] = rgb[o + 2] = g;
                }

                (prev, cur) = (cur, prev);
            }

            return new RgbImage(width, height, rgb);
        }

        private static int Paeth(int a, int b, int c)
        {
            int p = a + b - c, pa = Math.Abs(p - a), pb = Math.Abs(p - b), pc = Math.Abs(p - c);
            return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
        }
    }

    private readonly record struct PngHeader(int Width, int Height, byte BitDepth, byte ColorType, byte Interlace)
    {
        private static ReadOnlySpan<byte> Signature => [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];

        public static PngHeader? TryRead(ReadOnlySpan<byte> data)
        {
            if (data.Length < 8 || !data[..8].SequenceEqual(Signature))
            {
                return null;
            }

            if (data.Length < 33 || !data.Slice(12, 4).SequenceEqual("IHDR"u8))
            {
                throw new ImageFormatException("Truncated or corrupt PNG: missing IHDR header.");
            }

            uint w = BinaryPrimitives.ReadUInt32BigEndian(data.Slice(16, 4));
            uint h = BinaryPrimitives.ReadUInt32BigEndian(data.Slice(20, 4));
            if (w > int.MaxValue || h > int.MaxValue)
            {
                throw new ImageFormatException($"Corrupt PNG: IHDR declares {w}x{h}.");
            }

            return new PngHeader((int)w, (int)h, data[24], data[25], data[28]);
        }
    }
}
