using Qwen3VL.Native.Tests.Processing;

namespace Qwen3VL.Native.Tests.Api;

/// <summary>The tiny random-weight checkpoint loaded once through the public API (CPU), and its sample images.</summary>
internal static class ApiModels
{
    private static readonly Lazy<Qwen3VLModel> LazyTiny = new(() => Qwen3VLModel.Load(TinyDirectory, new Qwen3VLModelOptions { Device = "cpu", ContextLength = 1024 }));

    /// <summary>tests/fixtures/tiny-tied/model.</summary>
    public static string TinyDirectory => Path.Combine(TestPaths.RepoRoot, "tests", "fixtures", "tiny-tied", "model");

    /// <summary>The shared model (never disposed: it lives for the test run).</summary>
    public static Qwen3VLModel Tiny => LazyTiny.Value;

    /// <summary>A sample image of the fixture.</summary>
    public static string ImagePath(string name = "rgb_300x200.png") => Path.Combine(TestPaths.RepoRoot, "tests", "fixtures", "tiny-tied", "images", name);

    /// <summary>Greedy decoding without end-of-sequence stops, so answers have a fixed length.</summary>
    public static GenerationOptions Greedy(int maxTokens) => new() { Sampling = SamplingOptions.Greedy, MaxNewTokens = maxTokens, StopTokenIds = [] };

    /// <summary>Seeded sampling at temperature 1 (varied text) without end-of-sequence stops.</summary>
    public static GenerationOptions Seeded(ulong seed, int maxTokens) =>
        new() { Sampling = new SamplingOptions { Temperature = 1, Seed = seed }, MaxNewTokens = maxTokens, StopTokenIds = [] };

    /// <summary>Concatenates a stream of text pieces.</summary>
    public static async Task<string> Concat(IAsyncEnumerable<string> pieces)
    {
        var sb = new System.Text.StringBuilder();
        await foreach (string piece in pieces) sb.Append(piece);
        return sb.ToString();
    }
}
