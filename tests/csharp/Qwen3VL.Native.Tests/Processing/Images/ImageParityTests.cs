using System.Text.Json;
using Qwen3VL.Native.Processing.Images;

namespace Qwen3VL.Native.Tests.Processing.Images;

/// <summary>
/// Parity of the image processor with transformers (fixtures from <see cref="FixtureCatalog"/>): for each case with
/// images, the images of its messages (in order) are decoded and processed with the fixture model's image-processor
/// config; grid_thw must be equal and pixel_values within mean |diff| &lt;= 1e-3, max |diff| &lt;= 2e-2.
/// </summary>
public sealed class ImageParityTests
{
    public static TheoryData<string, string> Cases => FixtureCatalog.AllCases(c => c.Json.TryGetProperty("image_grid_thw", out _));

    [Theory]
    [MemberData(nameof(Cases))]
    public void PixelValuesMatchTransformers(string fixtureDirectory, string caseName)
    {
        FixtureCase fixture = FixtureCatalog.GetCase(fixtureDirectory, caseName);
        List<string> images = ImagePaths(fixture.Json.GetProperty("messages")).ToList();
        Assert.NotEmpty(images);

        var processor = ImageProcessor.FromCheckpointDirectory(fixture.ModelDirectory);
        var results = images.Select(p => processor.Process(Path.Combine(fixtureDirectory, p))).ToList();

        int[][] expectedGrid = fixture.ImageGridThw;
        Assert.Equal(expectedGrid.Length, results.Count);
        for (int i = 0; i < results.Count; i++)
        {
            Assert.Equal(expectedGrid[i], new[] { results[i].GridT, results[i].GridH, results[i].GridW });
        }

        JsonElement shape = fixture.Json.GetProperty("pixel_values_shape");
        int patches = shape[0].GetInt32(), dim = shape[1].GetInt32();
        Assert.Equal(patches, results.Sum(r => r.Patches));
        Assert.All(results, r => Assert.Equal(dim, r.PatchDim));

        byte[] raw = File.ReadAllBytes(Path.Combine(fixtureDirectory, fixture.Json.GetProperty("pixel_values_file").GetString()!));
        Assert.Equal((long)patches * dim * sizeof(float), raw.LongLength);
        ReadOnlySpan<float> expected = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(raw); // little-endian host
        double sum = 0, max = 0;
        int offset = 0;
        foreach (ProcessedImage r in results)
        {
            for (int i = 0; i < r.PixelValues.Length; i++)
            {
                double d = Math.Abs(expected[offset + i] - r.PixelValues[i]);
                sum += d;
                max = Math.Max(max, d);
            }

            offset += r.PixelValues.Length;
        }

        double mean = sum / expected.Length;
        Assert.True(mean <= 1e-3, $"mean |diff| = {mean:E3} (max {max:E3})");
        Assert.True(max <= 2e-2, $"max |diff| = {max:E3} (mean {mean:E3})");
    }

    /// <summary>Image paths of OpenAI-like messages, in order: parts <c>{"type": "image", "image": "images/x.png"}</c>.</summary>
    private static IEnumerable<string> ImagePaths(JsonElement messages)
    {
        foreach (JsonElement message in messages.EnumerateArray())
        {
            if (!message.TryGetProperty("content", out JsonElement content) || content.ValueKind != JsonValueKind.Array)
            {
                continue;
            }

            foreach (JsonElement part in content.EnumerateArray())
            {
                if (part.ValueKind == JsonValueKind.Object
                    && part.TryGetProperty("type", out JsonElement type) && type.GetString() == "image")
                {
                    JsonElement src = part.TryGetProperty("image", out JsonElement img) ? img : part.GetProperty("path");
                    yield return src.GetString()!;
                }
            }
        }
    }
}
