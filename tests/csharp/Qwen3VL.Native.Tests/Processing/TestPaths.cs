using Qwen3VL.Native.Processing.Tokenization;

namespace Qwen3VL.Native.Tests.Processing;

/// <summary>Locates the repository, its test data and the fetched tokenizer.</summary>
internal static class TestPaths
{
    private static readonly Lazy<string> LazyRepoRoot = new(FindRepoRoot);
    private static readonly Lazy<QwenTokenizer> LazyTokenizer = new(() => QwenTokenizer.FromFile(TokenizerJson));

    /// <summary>The repository root: env QWEN3VL_REPO_ROOT, else the first ancestor of the test binaries holding Qwen3VL.sln(x).</summary>
    public static string RepoRoot => LazyRepoRoot.Value;

    /// <summary>Folder of the committed processing test data.</summary>
    public static string TestData => Path.Combine(RepoRoot, "tests", "csharp", "Qwen3VL.Native.Tests", "Processing", "TestData");

    /// <summary>The Qwen3 tokenizer.json: env QWEN3VL_TOKENIZER_JSON, else &lt;repo&gt;/.deps/tokenizer/tokenizer.json. Fails when missing.</summary>
    public static string TokenizerJson
    {
        get
        {
            string? env = Environment.GetEnvironmentVariable("QWEN3VL_TOKENIZER_JSON");
            string path = string.IsNullOrEmpty(env) ? Path.Combine(RepoRoot, ".deps", "tokenizer", "tokenizer.json") : env;
            if (!File.Exists(path))
            {
                Assert.Fail($"Tokenizer file not found at '{path}'. Run tools/fetch-tokenizer.sh (or set QWEN3VL_TOKENIZER_JSON).");
            }
            return path;
        }
    }

    /// <summary>The shared tokenizer instance (loaded once per test run).</summary>
    public static QwenTokenizer Tokenizer => LazyTokenizer.Value;

    private static string FindRepoRoot()
    {
        string? env = Environment.GetEnvironmentVariable("QWEN3VL_REPO_ROOT");
        if (!string.IsNullOrEmpty(env))
        {
            return env;
        }
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Qwen3VL.sln")) || File.Exists(Path.Combine(dir.FullName, "Qwen3VL.slnx")))
            {
                return dir.FullName;
            }
        }
        throw new InvalidOperationException(
            $"Cannot find the repository root (a folder with Qwen3VL.sln) above '{AppContext.BaseDirectory}'; set QWEN3VL_REPO_ROOT.");
    }
}
