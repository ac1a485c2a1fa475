using Qwen3VL.Native.Processing.Images;
using SkiaSharp;

namespace Qwen3VL.Native.Tests.Processing.Images;

public sealed class DecoderTests
{
    private static byte[] Rgb(params byte[] v) => v;

    [Fact]
    public void PngRgbIsExact()
    {
        byte[] px = Rgb(1, 2, 3, 250, 251, 252, 0, 128, 255, 9, 8, 7);
        RgbImage img = ImageDecoder.Decode(TestImageWriter.Png(2, 2, 2, 8, px));
        Assert.Equal((2, 2), (img.Width, img.Height));
        Assert.Equal(px, img.Pixels);
    }

    [Fact]
    public void PngRgbaAlphaDroppedOrCompositedLikePillow()
    {
        // (r, g, b, a): opaque, transparent, half, quarter.
        byte[] px = [10, 20, 30, 255, 10, 20, 30, 0, 200, 100, 0, 128, 0, 0, 0, 64];
        RgbImage img = ImageDecoder.Decode(TestImageWriter.Png(4, 1, 6, 8, px), new ImageDecoderOptions { Alpha = AlphaHandling.CompositeOnWhite });
        // Pillow alpha_composite(white, src): SHIFTFORDIV255(s*a*128 + 255*(255-a)*128 + 0x4000) >> 7
        static byte Pil(int s, int a) { uint t = (uint)((s * a * 128) + (255 * (255 - a) * 128) + (0x80 << 7)); return (byte)((((t >> 8) + t) >> 8) >> 7); }
        Assert.Equal([10, 20, 30, 255, 255, 255, Pil(200, 128), Pil(100, 128), Pil(0, 128), Pil(0, 64), Pil(0, 64), Pil(0, 64)], img.Pixels);
        Assert.Equal(227, Pil(200, 128)); // hand check: 200 * 128/255 + 255 * 127/255 = 227.4

        RgbImage dropped = ImageDecoder.Decode(TestImageWriter.Png(4, 1, 6, 8, px)); // default: alpha dropped, as the oracle

        Assert.Equal([10, 20, 30, 10, 20, 30, 200, 100, 0, 0, 0, 0], dropped.Pixels);
    }

    [Fact]
    public void PngGrayGrayAlphaPaletteAnd16Bit()
    {
        Assert.Equal(Rgb(0, 0, 0, 77, 77, 77, 255, 255, 255), ImageDecoder.Decode(TestImageWriter.Png(3, 1, 0, 8, [0, 77, 255])).Pixels);
        Assert.Equal(Rgb(77, 77, 77, 77, 77, 77), ImageDecoder.Decode(TestImageWriter.Png(2, 1, 4, 8, [77, 255, 77, 0])).Pixels);

        var palette = new byte[] { 255, 0, 0, 0, 255, 0, 0, 0, 255 };
        var composite = new ImageDecoderOptions { Alpha = AlphaHandling.CompositeOnWhite };
        byte[] pal = ImageDecoder.Decode(TestImageWriter.Png(3, 1, 3, 8, [2, 1, 0], palette, trns: [255, 0]), composite).Pixels;
        Assert.Equal(Rgb(0, 0, 255, 255, 255, 255, 255, 0, 0), pal); // index 1 fully transparent -> white

        // 16-bit RGB: Pillow keeps the high byte (recovered from Skia's half floats: exact away from byte boundaries).
        byte[] rgb16 = [0x12, 0x34, 0xAB, 0x80, 0x00, 0x80, 0xFF, 0xFF, 0x00, 0x01, 0x7E, 0x80];
        Assert.Equal(Rgb(0x12, 0xAB, 0x00, 0xFF, 0x00, 0x7E), ImageDecoder.Decode(TestImageWriter.Png(2, 1, 2, 16, rgb16)).Pixels);

        // 16-bit greyscale opens as "I;16" and is clipped to 255 on conversion.
        byte[] g16 = [0x00, 0x05, 0x00, 0xFF, 0x01, 0x00, 0xFF, 0xFF];
        Assert.Equal(Rgb(5, 5, 5, 255, 255, 255, 255, 255, 255, 255, 255, 255), ImageDecoder.Decode(TestImageWriter.Png(4, 1, 0, 16, g16)).Pixels);

        // RGB PNG with a tRNS colour key: Pillow's mode is "RGB", so the key is ignored.
        Assert.Equal(Rgb(1, 2, 3), ImageDecoder.Decode(TestImageWriter.Png(1, 1, 2, 8, [1, 2, 3], trns: [0, 1, 0, 2, 0, 3])).Pixels);
    }

    [Fact]
    public void BmpGifJpegWebp()
    {
        var rng = new Random(3);
        var rgb = new byte[5 * 4 * 3];
        rng.NextBytes(rgb);
        Assert.Equal(rgb, ImageDecoder.Decode(TestImageWriter.Bmp(5, 4, rgb)).Pixels);

        var palette = new byte[768];
        for (int i = 0; i < 256; i++)
        {
            palette[i * 3] = (byte)i;
            palette[(i * 3) + 1] = (byte)(255 - i);
            palette[(i * 3) + 2] = (byte)(i * 7);
        }

        byte[] idx = Enumerable.Range(0, 300).Select(i => (byte)(i % 251)).ToArray();
        byte[] second = Enumerable.Repeat((byte)9, 300).ToArray();
        RgbImage gif = ImageDecoder.Decode(TestImageWriter.Gif(20, 15, palette, idx, secondFrame: second));
        for (int i = 0; i < 300; i++)
        {
            int k = idx[i];
            byte[] expected = [palette[k * 3], palette[(k * 3) + 1], palette[(k * 3) + 2]];
            Assert.Equal(expected, gif.Pixels.AsSpan(i * 3, 3).ToArray()); // first frame only
        }

        var rgba = new byte[16 * 16 * 4];
        for (int i = 0; i < 256; i++)
        {
            rgba[i * 4] = (byte)(i % 16 * 16);
            rgba[(i * 4) + 1] = (byte)(i / 16 * 16);
            rgba[(i * 4) + 2] = 90;
            rgba[(i * 4) + 3] = 255;
        }

        RgbImage jpeg = ImageDecoder.Decode(TestImageWriter.SkiaEncode(16, 16, rgba, SKEncodedImageFormat.Jpeg, 95));
        RgbImage webpLossless = ImageDecoder.Decode(TestImageWriter.SkiaEncode(16, 16, rgba, SKEncodedImageFormat.Webp, 100));
        RgbImage webpLossy = ImageDecoder.Decode(TestImageWriter.SkiaEncode(16, 16, rgba, SKEncodedImageFormat.Webp, 90));
        for (int i = 0; i < 256; i++)
        {
            for (int c = 0; c < 3; c++)
            {
                Assert.Equal(rgba[(i * 4) + c], webpLossless.Pixels[(i * 3) + c]);
                Assert.InRange(Math.Abs(jpeg.Pixels[(i * 3) + c] - rgba[(i * 4) + c]), 0, 24);
                Assert.InRange(Math.Abs(webpLossy.Pixels[(i * 3) + c] - rgba[(i * 4) + c]), 0, 32);
            }
        }
    }

    [Fact]
    public void StreamMemoryAndPathOverloadsAgree()
    {
        byte[] png = TestImageWriter.Png(2, 1, 2, 8, [1, 2, 3, 4, 5, 6]);
        string path = Path.Combine(Path.GetTempPath(), $"qwen3vl-{Guid.NewGuid():N}.png");
        File.WriteAllBytes(path, png);
        try
        {
            Assert.Equal([1, 2, 3, 4, 5, 6], ImageDecoder.Decode(path).Pixels);
            Assert.Equal([1, 2, 3, 4, 5, 6], ImageDecoder.Decode(new MemoryStream(png)).Pixels);
            Assert.Equal([1, 2, 3, 4, 5, 6], ImageDecoder.Decode((ReadOnlyMemory<byte>)png).Pixels);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void CorruptInputsAreRejected()
    {
        Assert.Throws<ImageFormatException>(() => ImageDecoder.Decode(Array.Empty<byte>()));
        Assert.Throws<ImageFormatException>(() => ImageDecoder.Decode(new MemoryStream()));
        Assert.Throws<ImageFormatException>(() => ImageDecoder.Decode("not an image at all, just text"u8.ToArray()));

        var rng = new Random(5);
        var rgb = new byte[64 * 64 * 3];
        rng.NextBytes(rgb);
        byte[] png = TestImageWriter.Png(64, 64, 2, 8, rgb);
        Assert.Throws<ImageFormatException>(() => ImageDecoder.Decode(png.AsSpan(0, png.Length / 2).ToArray()));
        Assert.Throws<ImageFormatException>(() => ImageDecoder.Decode(png.AsSpan(0, 20).ToArray()));
        byte[] garbled = (byte[])png.Clone();
        for (int i = 60; i < garbled.Length - 20; i++)
        {
            garbled[i] ^= 0x5A;
        }

        Assert.Throws<ImageFormatException>(() => ImageDecoder.Decode(garbled));

        var rgba = Enumerable.Repeat((byte)200, 32 * 32 * 4).ToArray();
        byte[] jpeg = TestImageWriter.SkiaEncode(32, 32, rgba, SKEncodedImageFormat.Jpeg, 90);
        Assert.Throws<ImageFormatException>(() => ImageDecoder.Decode(jpeg.AsSpan(0, jpeg.Length / 3).ToArray()));
        Assert.Throws<ImageFormatException>(() => ImageDecoder.Decode(TestImageWriter.PngHeaderOnly(0, 10)));
        Assert.Throws<FileNotFoundException>(() => ImageDecoder.Decode("/nonexistent/x.png"));
    }

    [Fact]
    public void PixelBombIsRejectedBeforeDecoding()
    {
        byte[] bomb = TestImageWriter.PngHeaderOnly(100000, 100000);
        long before = GC.GetAllocatedBytesForCurrentThread();
        ImageTooLargeException e = Assert.Throws<ImageTooLargeException>(() => ImageDecoder.Decode(bomb));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20, "allocated pixel memory before rejecting");
        Assert.Equal((100000, 100000), (e.Width, e.Height));
        Assert.Contains("10000000000", e.Message);

        // The cap is configurable, and it applies to every format (here a JPEG header read by the codec).
        byte[] jpeg = TestImageWriter.SkiaEncode(64, 64, new byte[64 * 64 * 4], SKEncodedImageFormat.Jpeg, 90);
        Assert.Throws<ImageTooLargeException>(() => ImageDecoder.Decode(jpeg, new ImageDecoderOptions { MaxPixels = 4095 }));
        Assert.Equal((64, 64), ImageDecoder.ReadSize(jpeg));
    }
}
