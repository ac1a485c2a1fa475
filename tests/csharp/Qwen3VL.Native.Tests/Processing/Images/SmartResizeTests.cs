using Qwen3VL.Native.Processing.Images;

namespace Qwen3VL.Native.Tests.Processing.Images;

public sealed class SmartResizeTests
{
    // Expected values worked out from transformers' smart_resize formula (factor 32, min 65536, max 16777216 unless given).
    [Theory]
    [InlineData(1024, 1024, 65536L, 16777216L, 1024, 1024)]   // already aligned and in range
    [InlineData(1000, 1000, 65536L, 16777216L, 992, 992)]     // round(31.25) = 31
    [InlineData(720, 1280, 65536L, 16777216L, 704, 1280)]     // round(22.5) = 22: Python rounds half to even
    [InlineData(333, 517, 65536L, 16777216L, 320, 512)]       // non-multiples of 32
    [InlineData(48, 80, 65536L, 16777216L, 224, 352)]         // below min_pixels: beta = sqrt(65536 / 3840), ceil
    [InlineData(10, 10, 65536L, 16777216L, 256, 256)]         // tiny: rounds to 0, then ceil to 8 * 32
    [InlineData(1, 1, 65536L, 16777216L, 256, 256)]
    [InlineData(10000, 10000, 65536L, 16777216L, 4096, 4096)] // huge: beta = sqrt(1e8 / 2^24) = 2.44140625, floor
    [InlineData(5000, 20000, 65536L, 16777216L, 2048, 8192)]
    [InlineData(10, 2000, 65536L, 16777216L, 32, 3648)]       // aspect ratio exactly 200 is accepted
    [InlineData(3000, 17, 65536L, 16777216L, 3008, 32)]
    [InlineData(4032, 3024, 65536L, 16777216L, 4032, 3008)]
    [InlineData(1080, 1920, 65536L, 262144L, 384, 672)]       // user token budget (max 512 * 512)
    public void MatchesFormula(int h, int w, long min, long max, int eh, int ew)
    {
        Assert.Equal((eh, ew), ImageSizing.SmartResize(h, w, 32, min, max));
    }

    [Theory]
    [InlineData(10, 2010)]
    [InlineData(201, 1)]
    public void AspectRatioAbove200IsRejected(int h, int w)
    {
        ArgumentException e = Assert.Throws<ArgumentException>(() => ImageSizing.SmartResize(h, w));
        Assert.Contains("aspect ratio", e.Message);
    }

    [Fact]
    public void ZeroSizeIsRejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => ImageSizing.SmartResize(0, 10));
    }

    [Fact]
    public void ResultIsAlignedAndWithinBudget()
    {
        var rng = new Random(7);
        for (int i = 0; i < 2000; i++)
        {
            int h = rng.Next(40, 5000), w = rng.Next(40, 5000);
            if (Math.Max(h, w) / (double)Math.Min(h, w) > 100)
            {
                continue;
            }

            (int rh, int rw) = ImageSizing.SmartResize(h, w, 32, 65536, 1 << 20);
            Assert.Equal(0, rh % 32);
            Assert.Equal(0, rw % 32);
            Assert.InRange((long)rh * rw, 65536, 1 << 20);
        }
    }
}
