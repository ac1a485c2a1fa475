using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Text.Json;
using Qwen3VL.Native.Engine;
using Qwen3VL.Native.Model;
using Qwen3VL.Native.Processing;
using Qwen3VL.Native.Tests.Processing;

namespace Qwen3VL.Native.Tests.Model;

/// <summary>Fixture models loaded once per test run (one CPU backend), and helpers to read the reference data.</summary>
internal static class TestModels
{
    private static readonly Lazy<Backend> LazyBackend = new(() => Backend.CreateCpu());
    private static readonly ConcurrentDictionary<string, Lazy<Qwen3VLModel>> Models = new();

    /// <summary>The shared CPU backend.</summary>
    public static Backend Backend => LazyBackend.Value;

    /// <summary>The model of a fixture folder (its <c>model/</c>), loaded once.</summary>
    public static Qwen3VLModel Get(string fixtureDirectory) =>
        Models.GetOrAdd(Path.GetFullPath(fixtureDirectory), d => new Lazy<Qwen3VLModel>(() => Qwen3VLModel.Load(Path.Combine(d, "model"), Backend))).Value;

    /// <summary>A float32 little-endian file.</summary>
    public static float[] ReadF32(string path) => MemoryMarshal.Cast<byte, float>(File.ReadAllBytes(path)).ToArray();

    /// <summary>The case's own pixel values and grids, or null for a text-only case.</summary>
    public static VisionInput? FixtureVision(FixtureCase c)
    {
        if (!c.Json.TryGetProperty("pixel_values_file", out JsonElement file) || file.ValueKind != JsonValueKind.String) return null;
        float[] pixels = ReadF32(Path.Combine(c.FixtureDirectory, file.GetString()!));
        return new VisionInput(pixels, c.ImageGridThw.Select(g => new GridThw(g[0], g[1], g[2])).ToArray());
    }

    /// <summary>logits_positions of the case.</summary>
    public static int[] LogitPositions(FixtureCase c) => c.Json.GetProperty("logits_positions").EnumerateArray().Select(e => e.GetInt32()).ToArray();

    /// <summary>Reference logits [positions, vocab].</summary>
    public static float[] ReferenceLogits(FixtureCase c) => ReadF32(Path.Combine(c.FixtureDirectory, c.Json.GetProperty("logits_file").GetString()!));

    /// <summary>greedy_tokens.</summary>
    public static int[] GreedyTokens(FixtureCase c) => c.Json.GetProperty("greedy_tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray();

    /// <summary>greedy_margins.</summary>
    public static double[] GreedyMargins(FixtureCase c) => c.Json.GetProperty("greedy_margins").EnumerateArray().Select(e => e.GetDouble()).ToArray();

    /// <summary>||a - b|| / ||b||.</summary>
    public static double RelativeL2(ReadOnlySpan<float> ours, ReadOnlySpan<float> reference)
    {
        Assert.Equal(reference.Length, ours.Length);
        double num = 0, den = 0;
        for (int i = 0; i < ours.Length; i++)
        {
            double d = (double)ours[i] - reference[i];
            num += d * d;
            den += (double)reference[i] * reference[i];
        }
        return Math.Sqrt(num / den);
    }

    /// <summary>Index of the largest value and the gap to the second largest.</summary>
    public static (int Top, double Gap) Top1(ReadOnlySpan<float> row)
    {
        int best = 0;
        for (int i = 1; i < row.Length; i++) if (row[i] > row[best]) best = i;
        double second = double.NegativeInfinity;
        for (int i = 0; i < row.Length; i++) if (i != best && row[i] > second) second = row[i];
        return (best, row[best] - second);
    }

    /// <summary>Image paths (relative to the fixture folder) of OpenAI-like messages, in order.</summary>
    public static IEnumerable<string> ImagePaths(JsonElement messages)
    {
        foreach (JsonElement message in messages.EnumerateArray())
        {
            if (!message.TryGetProperty("content", out JsonElement content) || content.ValueKind != JsonValueKind.Array) continue;
            foreach (JsonElement part in content.EnumerateArray())
            {
                if (part.ValueKind == JsonValueKind.Object && part.TryGetProperty("type", out JsonElement type) && type.GetString() == "image")
                {
                    yield return (part.TryGetProperty("image", out JsonElement img) ? img : part.GetProperty("path")).GetString()!;
                }
            }
        }
    }
}
