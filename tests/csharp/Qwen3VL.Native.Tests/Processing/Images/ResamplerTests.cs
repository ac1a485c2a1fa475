using Qwen3VL.Native.Processing.Images;

namespace Qwen3VL.Native.Tests.Processing.Images;

public sealed class ResamplerTests
{
    // Independent, plain double-precision antialiased bicubic (PIL-style support, Keys a = -0.5), separable,
    // width first, rounding to 8 bits between the passes as the uint8 kernel does.
    private static byte[] Reference(byte[] src, int w, int h, int c, int ow, int oh)
    {
        static double Cubic(double x)
        {
            const double a = -0.5;
            x = Math.Abs(x);
            return x < 1 ? ((a + 2) * x * x * x) - ((a + 3) * x * x) + 1
                : x < 2 ? (a * x * x * x) - (5 * a * x * x) + (8 * a * x) - (4 * a)
                : 0;
        }

        static double[,] Weights(int n, int on)
        {
            var m = new double[on, n];
            double scale = (double)n / on, fs = Math.Max(scale, 1.0);
            for (int i = 0; i < on; i++)
            {
                double center = (i + 0.5) * scale, sum = 0;
                for (int j = 0; j < n; j++)
                {
                    m[i, j] = Cubic((j + 0.5 - center) / fs);
                    sum += m[i, j];
                }

                for (int j = 0; j < n; j++)
                {
                    m[i, j] /= sum;
                }
            }

            return m;
        }

        static byte Round(double v) => (byte)Math.Clamp(Math.Floor(v + 0.5), 0, 255);

        byte[] tmp = src;
        if (ow != w)
        {
            double[,] wx = Weights(w, ow);
            tmp = new byte[ow * h * c];
            for (int y = 0; y < h; y++)
            {
                for (int x = 0; x < ow; x++)
                {
                    for (int k = 0; k < c; k++)
                    {
                        double acc = 0;
                        for (int j = 0; j < w; j++)
                        {
                            acc += wx[x, j] * src[((y * w) + j) * c + k];
                        }

                        tmp[((y * ow) + x) * c + k] = Round(acc);
                    }
                }
            }
        }

        byte[] dst = tmp;
        if (oh != h)
        {
            double[,] wy = Weights(h, oh);
            dst = new byte[ow * oh * c];
            for (int y = 0; y < oh; y++)
            {
                for (int x = 0; x < ow * c; x++)
                {
                    double acc = 0;
                    for (int j = 0; j < h; j++)
                    {
                        acc += wy[y, j] * tmp[(j * ow * c) + x];
                    }

                    dst[(y * ow * c) + x] = Round(acc);
                }
            }
        }

        return dst;
    }

    [Theory]
    [InlineData(333, 517, 320, 512)]   // small downscale
    [InlineData(37, 151, 131, 517)]    // upscale, odd sizes
    [InlineData(120, 90, 31, 17)]      // strong downscale
    [InlineData(64, 64, 200, 31)]      // up one axis, down the other
    [InlineData(5, 7, 3, 2)]
    [InlineData(50, 3, 17, 40)]
    [InlineData(40, 40, 40, 96)]       // only the horizontal pass
    [InlineData(40, 40, 97, 40)]       // only the vertical pass
    public void MatchesDoubleReference(int h, int w, int oh, int ow)
    {
        var rng = new Random((h * 31) + w);
        var src = new byte[w * h * 3];
        rng.NextBytes(src);
        byte[] fast = AntialiasedBicubicResampler.Resize(src, w, h, 3, ow, oh);
        byte[] slow = Reference(src, w, h, 3, ow, oh);
        Assert.Equal(slow.Length, fast.Length);
        int max = 0;
        long sum = 0;
        for (int i = 0; i < fast.Length; i++)
        {
            int d = Math.Abs(fast[i] - slow[i]);
            max = Math.Max(max, d);
            sum += d;
        }

        // int16 fixed-point weights vs doubles: only rare rounding flips.
        Assert.True(max <= 2, $"max |diff| = {max}");
        Assert.True(sum / (double)fast.Length < 0.02, $"mean |diff| = {sum / (double)fast.Length}");
    }

    [Fact]
    public void ConstantImageStaysConstantAndSameSizeIsIdentity()
    {
        var src = Enumerable.Repeat((byte)173, 31 * 29 * 3).ToArray();
        Assert.All(AntialiasedBicubicResampler.Resize(src, 31, 29, 3, 64, 7), v => Assert.Equal(173, v));
        var rnd = new byte[31 * 29 * 3];
        new Random(1).NextBytes(rnd);
        Assert.Equal(rnd, AntialiasedBicubicResampler.Resize(rnd, 31, 29, 3, 31, 29));
    }

    [Fact]
    public void WeightsFollowTorchPrecisionRule()
    {
        AntialiasedBicubicResampler.AxisWeights ax = AntialiasedBicubicResampler.ComputeWeights(517, 512);
        int maxW = ax.Weights.Max(x => (int)x);
        Assert.True(maxW < 1 << 15);
        Assert.True(2 * maxW >= (1 << 15) - 2 || ax.Precision == 22, $"precision {ax.Precision} not maximal");
        for (int i = 0; i < 512; i++)
        {
            int sum = 0;
            for (int k = 0; k < ax.Count[i]; k++)
            {
                sum += ax.Weights[(i * ax.Taps) + k];
            }

            Assert.InRange(sum, (1 << ax.Precision) - ax.Count[i], (1 << ax.Precision) + ax.Count[i]);
        }
    }
}
