using Qwen3VL.Native.Processing.Images;

namespace Qwen3VL.Native.Tests.Processing.Images;

public sealed class PatchifyTests
{
    [Fact]
    public void PatchOrderMatchesLayoutFormula()
    {
        // 64 x 96 (multiples of 32 and inside the budget: no resize). Each pixel's value encodes (y, x, channel).
        const int h = 64, w = 96, p = 16, m = 2, tp = 2;
        static byte Code(int y, int x, int c) => (byte)(((y * 7) + (x * 13) + (c * 101)) % 256);
        var rgb = new byte[h * w * 3];
        for (int y = 0; y < h; y++)
        {
            for (int x = 0; x < w; x++)
            {
                for (int c = 0; c < 3; c++)
                {
                    rgb[((y * w) + x) * 3 + c] = Code(y, x, c);
                }
            }
        }

        var processor = new ImageProcessor(new ImageProcessorConfig { MinPixels = 1024 });
        ProcessedImage r = processor.Process(new RgbImage(w, h, rgb));
        Assert.Equal((1, 4, 6), (r.GridT, r.GridH, r.GridW));
        Assert.Equal(24, r.Patches);
        Assert.Equal(6, r.TokenCount);
        Assert.Equal(1536, r.PatchDim);
        Assert.Equal(24 * 1536, r.PixelValues.Length);

        // transformers: view(gt, tp, C, gh/m, m, p, gw/m, m, p).permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
        int gh = h / p, gw = w / p;
        for (int bh = 0; bh < gh / m; bh++)
        for (int bw = 0; bw < gw / m; bw++)
        for (int mh = 0; mh < m; mh++)
        for (int mw = 0; mw < m; mw++)
        {
            int patch = (((((bh * (gw / m)) + bw) * m) + mh) * m) + mw;
            for (int c = 0; c < 3; c++)
            for (int t = 0; t < tp; t++)
            for (int py = 0; py < p; py++)
            for (int px = 0; px < p; px++)
            {
                int y = (((bh * m) + mh) * p) + py, x = (((bw * m) + mw) * p) + px;
                int idx = (patch * 1536) + (c * tp * p * p) + (t * p * p) + (py * p) + px;
                float expected = (Code(y, x, c) - 127.5f) / 127.5f;
                Assert.Equal(expected, r.PixelValues[idx]);
            }
        }
    }

    [Fact]
    public void NormalisationIsFusedFloat32()
    {
        var processor = new ImageProcessor();
        ProcessedImage r = processor.Process(new RgbImage(256, 256, Enumerable.Repeat((byte)0, 256 * 256 * 3).ToArray()));
        Assert.All(r.PixelValues, v => Assert.Equal(-1f, v));
        r = processor.Process(new RgbImage(256, 256, Enumerable.Repeat((byte)255, 256 * 256 * 3).ToArray()));
        Assert.All(r.PixelValues, v => Assert.Equal(1f, v));
    }

    [Fact]
    public void ConfigIsReadFromCheckpointFiles()
    {
        string dir = Directory.CreateTempSubdirectory("qwen3vl-img").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "processor_config.json"),
                """{"image_processor": {"size": {"shortest_edge": 1000, "longest_edge": 2000000}, "patch_size": 14, "merge_size": 2, "temporal_patch_size": 2, "image_mean": [0.1, 0.2, 0.3], "image_std": [0.5, 0.5, 0.5], "resample": 3}}""");
            ImageProcessorConfig c = ImageProcessorConfig.FromCheckpointDirectory(dir);
            Assert.Equal((1000L, 2000000L, 14, 28), (c.MinPixels, c.MaxPixels, c.PatchSize, c.Factor));
            Assert.Equal([0.1, 0.2, 0.3], c.ImageMean);

            File.WriteAllText(Path.Combine(dir, "preprocessor_config.json"),
                """{"size": {"shortest_edge": 65536, "longest_edge": 16777216}, "min_pixels": 4096, "patch_size": 16}""");
            c = ImageProcessorConfig.FromCheckpointDirectory(dir);
            Assert.Equal((4096L, 16777216L, 16), (c.MinPixels, c.MaxPixels, c.PatchSize));

            Assert.Throws<InvalidDataException>(() => ImageProcessorConfig.FromJson("""{"resample": 2}"""));
            Assert.Throws<InvalidDataException>(() => ImageProcessorConfig.FromJson("{not json"));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
