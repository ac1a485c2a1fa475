using System.Buffers.Binary;
using System.IO.Compression;
using SkiaSharp;

namespace Qwen3VL.Native.Tests.Processing.Images;

/// <summary>Small hand-written encoders so every decoder case is built at test time with known pixels.</summary>
internal static class TestImageWriter
{
    private static readonly uint[] CrcTable = BuildCrcTable();

    /// <summary>PNG with raw samples (already in the colour type's layout, big-endian for 16-bit), filter 0.</summary>
    public static byte[] Png(int width, int height, byte colorType, byte bitDepth, byte[] samples, byte[]? palette = null, byte[]? trns = null)
    {
        int channels = colorType switch { 0 => 1, 2 => 3, 3 => 1, 4 => 2, 6 => 4, _ => throw new ArgumentException("colour type") };
        int rowBytes = ((width * channels * bitDepth) + 7) / 8;
        Assert.Equal(rowBytes * height, samples.Length);
        var raw = new MemoryStream();
        for (int y = 0; y < height; y++)
        {
            raw.WriteByte(0);
            raw.Write(samples, y * rowBytes, rowBytes);
        }

        var z = new MemoryStream();
        using (var zs = new ZLibStream(z, CompressionLevel.Optimal, leaveOpen: true))
        {
            raw.Position = 0;
            raw.CopyTo(zs);
        }

        var png = new MemoryStream();
        png.Write([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]);
        var ihdr = new byte[13];
        BinaryPrimitives.WriteUInt32BigEndian(ihdr, (uint)width);
        BinaryPrimitives.WriteUInt32BigEndian(ihdr.AsSpan(4), (uint)height);
        ihdr[8] = bitDepth;
        ihdr[9] = colorType;
        Chunk(png, "IHDR", ihdr);
        if (palette is not null)
        {
            Chunk(png, "PLTE", palette);
        }

        if (trns is not null)
        {
            Chunk(png, "tRNS", trns);
        }

        Chunk(png, "IDAT", z.ToArray());
        Chunk(png, "IEND", []);
        return png.ToArray();
    }

    /// <summary>Only signature + IHDR (valid CRC) declaring the given size, + an empty IEND: a "pixel bomb" header.</summary>
    public static byte[] PngHeaderOnly(int width, int height)
    {
        var png = new MemoryStream();
        png.Write([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]);
        var ihdr = new byte[13];
        BinaryPrimitives.WriteUInt32BigEndian(ihdr, (uint)width);
        BinaryPrimitives.WriteUInt32BigEndian(ihdr.AsSpan(4), (uint)height);
        ihdr[8] = 8;
        ihdr[9] = 2;
        Chunk(png, "IHDR", ihdr);
        Chunk(png, "IDAT", [0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
        Chunk(png, "IEND", []);
        return png.ToArray();
    }

    /// <summary>24-bit bottom-up BMP of an RGB buffer.</summary>
    public static byte[] Bmp(int width, int height, byte[] rgb)
    {
        int stride = ((width * 3) + 3) & ~3;
        int size = 54 + (stride * height);
        var b = new byte[size];
        b[0] = (byte)'B';
        b[1] = (byte)'M';
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(2), size);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(10), 54);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(14), 40);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(18), width);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(22), height);
        BinaryPrimitives.WriteInt16LittleEndian(b.AsSpan(26), 1);
        BinaryPrimitives.WriteInt16LittleEndian(b.AsSpan(28), 24);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(34), stride * height);
        for (int y = 0; y < height; y++)
        {
            int row = 54 + ((height - 1 - y) * stride);
            for (int x = 0; x < width; x++)
            {
                int s = ((y * width) + x) * 3;
                b[row + (x * 3)] = rgb[s + 2];
                b[row + (x * 3) + 1] = rgb[s + 1];
                b[row + (x * 3) + 2] = rgb[s];
            }
        }

        return b;
    }

    /// <summary>
    /// GIF89a with a 256-colour global palette and one (or two) frames of palette indices. LZW is written without
    /// compression: a clear code before every 254 literals keeps the code width at 9 bits.
    /// </summary>
    public static byte[] Gif(int width, int height, byte[] paletteRgb, byte[] indices, int? transparentIndex = null, byte[]? secondFrame = null)
    {
        Assert.Equal(256 * 3, paletteRgb.Length);
        var g = new MemoryStream();
        g.Write("GIF89a"u8);
        Span<byte> lsd = stackalloc byte[7];
        BinaryPrimitives.WriteUInt16LittleEndian(lsd, (ushort)width);
        BinaryPrimitives.WriteUInt16LittleEndian(lsd[2..], (ushort)height);
        lsd[4] = 0xF7; // global colour table, 8 bits, 256 entries
        g.Write(lsd);
        g.Write(paletteRgb);
        foreach (byte[] frame in secondFrame is null ? [indices] : new[] { indices, secondFrame })
        {
            // Graphic control extension (transparency, delay).
            g.Write([0x21, 0xF9, 0x04, (byte)(transparentIndex is null ? 0x00 : 0x01), 10, 0, (byte)(transparentIndex ?? 0), 0]);
            g.WriteByte(0x2C);
            var desc = new byte[9];
            BinaryPrimitives.WriteUInt16LittleEndian(desc.AsSpan(4), (ushort)width);
            BinaryPrimitives.WriteUInt16LittleEndian(desc.AsSpan(6), (ushort)height);
            g.Write(desc);
            g.WriteByte(8); // LZW minimum code size
            byte[] lzw = UncompressedLzw(frame);
            for (int i = 0; i < lzw.Length; i += 255)
            {
                int n = Math.Min(255, lzw.Length - i);
                g.WriteByte((byte)n);
                g.Write(lzw, i, n);
            }

            g.WriteByte(0);
        }

        g.WriteByte(0x3B);
        return g.ToArray();
    }

    /// <summary>Encodes RGBA (unpremultiplied) pixels with Skia (JPEG, WebP, PNG).</summary>
    public static byte[] SkiaEncode(int width, int height, byte[] rgba, SKEncodedImageFormat format, int quality)
    {
        var info = new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        using var bitmap = new SKBitmap(info);
        System.Runtime.InteropServices.Marshal.Copy(rgba, 0, bitmap.GetPixels(), rgba.Length);
        using SKData data = bitmap.Encode(format, quality);
        return data.ToArray();
    }

    private static byte[] UncompressedLzw(byte[] indices)
    {
        const int clear = 256, end = 257, width = 9;
        var bytes = new List<byte>();
        int bitBuf = 0, bitCount = 0;
        void Emit(int code)
        {
            bitBuf |= code << bitCount;
            bitCount += width;
            while (bitCount >= 8)
            {
                bytes.Add((byte)bitBuf);
                bitBuf >>= 8;
                bitCount -= 8;
            }
        }

        for (int i = 0; i < indices.Length; i++)
        {
            if (i % 254 == 0)
            {
                Emit(clear);
            }

            Emit(indices[i]);
        }

        Emit(end);
        if (bitCount > 0)
        {
            bytes.Add((byte)bitBuf);
        }

        return [.. bytes];
    }

    private static void Chunk(Stream s, string type, byte[] data)
    {
        Span<byte> len = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(len, (uint)data.Length);
        s.Write(len);
        byte[] typeAndData = [.. System.Text.Encoding.ASCII.GetBytes(type), .. data];
        s.Write(typeAndData);
        BinaryPrimitives.WriteUInt32BigEndian(len, Crc32(typeAndData));
        s.Write(len);
    }

    private static uint Crc32(byte[] data)
    {
        uint c = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            c = CrcTable[(c ^ b) & 0xFF] ^ (c >> 8);
        }

        return c ^ 0xFFFFFFFF;
    }

    private static uint[] BuildCrcTable()
    {
        var t = new uint[256];
        for (uint n = 0; n < 256; n++)
        {
            uint c = n;
            for (int k = 0; k < 8; k++)
            {
                c = (c & 1) != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1;
            }

            t[n] = c;
        }

        return t;
    }
}
