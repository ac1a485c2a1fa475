using System.Text.Json;
using Qwen3VL.Native.Processing.Images;

namespace Qwen3VL.Native.Tests.Processing.Images;

/// <summary>
/// Checks against data written by tools/gen_image_oracle.py (transformers 5.17 + torchvision on CPU); the directory is
/// given by QWEN3VL_IMAGE_ORACLE. The pixel values are stored as 8-bit levels (value * 127.5 + 127.5, exact).
/// </summary>
public sealed class OracleImageTests
{
    private static string? Dir => Environment.GetEnvironmentVariable("QWEN3VL_IMAGE_ORACLE") is { Length: > 0 } d && Directory.Exists(d) ? d : null;

    [Fact]
    public void TorchvisionUint8ResizeIsBitExact()
    {
        Assert.SkipWhen(Dir is null, "QWEN3VL_IMAGE_ORACLE not set");
        using JsonDocument meta = JsonDocument.Parse(File.ReadAllText(Path.Combine(Dir!, "oracle.json")));
        foreach (JsonElement r in meta.RootElement.GetProperty("resize").EnumerateArray())
        {
            int i = r.GetProperty("index").GetInt32();
            int h = r.GetProperty("in")[0].GetInt32(), w = r.GetProperty("in")[1].GetInt32();
            int oh = r.GetProperty("out")[0].GetInt32(), ow = r.GetProperty("out")[1].GetInt32();
            byte[] src = File.ReadAllBytes(Path.Combine(Dir!, "resize", $"{i}.in.u8"));
            byte[] expected = File.ReadAllBytes(Path.Combine(Dir!, "resize", $"{i}.out.u8"));
            byte[] actual = AntialiasedBicubicResampler.Resize(src, w, h, 3, ow, oh);
            int mismatches = expected.Zip(actual).Count(p => p.First != p.Second);
            Assert.True(mismatches == 0, $"resize {h}x{w}->{oh}x{ow}: {mismatches} of {expected.Length} bytes differ");
        }
    }

    [Fact]
    public void ProcessorMatchesOracle()
    {
        Assert.SkipWhen(Dir is null, "QWEN3VL_IMAGE_ORACLE not set");
        using JsonDocument meta = JsonDocument.Parse(File.ReadAllText(Path.Combine(Dir!, "oracle.json")));
        var processor = new ImageProcessor();
        var report = new List<string>();
        bool failed = false;
        foreach (JsonElement img in meta.RootElement.GetProperty("images").EnumerateArray())
        {
            string name = img.GetProperty("name").GetString()!;
            RgbImage decoded = ImageDecoder.Decode(Path.Combine(Dir!, "images", name));
            foreach ((JsonElement e, long? min, long? max) in new[] { (img, (long?)null, (long?)null), (img.GetProperty("small"), 4096L, 128L * 128) })
            {
                ProcessedImage r = processor.Process(decoded, min, max);
                JsonElement g = e.GetProperty("grid_thw")[0];
                Assert.Equal((g[0].GetInt32(), g[1].GetInt32(), g[2].GetInt32()), (r.GridT, r.GridH, r.GridW));
                string file = e.GetProperty("file").GetString()!;
                byte[] levels = File.ReadAllBytes(Path.Combine(Dir!, Path.ChangeExtension(file, ".u8")));
                Assert.Equal(levels.Length, r.PixelValues.Length);
                double sum = 0, maxDiff = 0;
                for (int i = 0; i < levels.Length; i++)
                {
                    double d = Math.Abs(((levels[i] - 127.5f) / 127.5f) - r.PixelValues[i]);
                    sum += d;
                    maxDiff = Math.Max(maxDiff, d);
                }

                double mean = sum / levels.Length;
                bool ok = mean <= 1e-3 && maxDiff <= 2e-2;
                failed |= !ok;
                report.Add($"{(ok ? "ok  " : "FAIL")} {name}{(min is null ? string.Empty : " (small)")}: mean {mean:E2} max {maxDiff:E2}");
            }
        }

        Assert.False(failed, string.Join("\n", report));
        TestContext.Current.SendDiagnosticMessage(string.Join("\n", report));
    }
}
