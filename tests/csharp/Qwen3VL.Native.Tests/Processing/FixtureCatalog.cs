using System.Text.Json;

namespace Qwen3VL.Native.Tests.Processing;

/// <summary>One case of a parity fixture's <c>cases.json</c>.</summary>
/// <param name="FixtureDirectory">The fixture folder (holds <c>model/</c>, <c>images/</c>, <c>cases.json</c>).</param>
/// <param name="Name">The case name.</param>
/// <param name="Json">The case object (cloned; valid after the document is disposed).</param>
public sealed record FixtureCase(string FixtureDirectory, string Name, JsonElement Json)
{
    /// <summary>The fixture's <c>model/</c> folder.</summary>
    public string ModelDirectory => Path.Combine(FixtureDirectory, "model");

    /// <summary><c>input_ids</c> produced by transformers.</summary>
    public int[] InputIds => Json.GetProperty("input_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();

    /// <summary><c>image_grid_thw</c> rows (empty for text-only cases).</summary>
    public int[][] ImageGridThw =>
        Json.TryGetProperty("image_grid_thw", out JsonElement g) && g.ValueKind == JsonValueKind.Array
            ? g.EnumerateArray().Select(row => row.EnumerateArray().Select(e => e.GetInt32()).ToArray()).ToArray()
            : [];

    /// <summary>
    /// transformers' <c>rope_deltas</c> for the case (M-RoPE's last position + 1 − length), when the fixture's generator
    /// recorded it; fixtures from other generators may not (issue 13), and then the logits parity alone covers positions.
    /// </summary>
    public int? RopeDelta => Json.TryGetProperty("rope_delta", out JsonElement d) && d.ValueKind == JsonValueKind.Number ? d.GetInt32() : null;

    /// <summary><c>add_generation_prompt</c> (default true).</summary>
    public bool AddGenerationPrompt => !Json.TryGetProperty("add_generation_prompt", out JsonElement v) || v.GetBoolean();
}

/// <summary>
/// Enumerates the parity fixtures: every folder <c>&lt;repo&gt;/tests/fixtures/*</c> with a <c>cases.json</c>, plus every
/// folder listed in env <c>QWEN3VL_PARITY_FIXTURES</c> (colon-separated), and exposes their cases as theory data.
/// </summary>
public static class FixtureCatalog
{
    /// <summary>Placeholder row produced when no fixture exists, so that theories fail instead of passing with zero cases.</summary>
    public const string NoFixtures = "<no fixtures>";

    /// <summary>The fixture folders, sorted, without duplicates.</summary>
    public static IReadOnlyList<string> FixtureDirectories()
    {
        var dirs = new SortedSet<string>(StringComparer.Ordinal);
        string root = Path.Combine(TestPaths.RepoRoot, "tests", "fixtures");
        if (Directory.Exists(root))
        {
            foreach (string d in Directory.EnumerateDirectories(root))
            {
                if (File.Exists(Path.Combine(d, "cases.json")))
                {
                    dirs.Add(Path.GetFullPath(d));
                }
            }
        }
        string? extra = Environment.GetEnvironmentVariable("QWEN3VL_PARITY_FIXTURES");
        if (!string.IsNullOrWhiteSpace(extra))
        {
            foreach (string d in extra.Split(':', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                if (!File.Exists(Path.Combine(d, "cases.json")))
                {
                    throw new DirectoryNotFoundException($"QWEN3VL_PARITY_FIXTURES names '{d}', which has no cases.json.");
                }
                dirs.Add(Path.GetFullPath(d));
            }
        }
        return dirs.ToList();
    }

    /// <summary>Reads all cases of one fixture.</summary>
    public static IReadOnlyList<FixtureCase> LoadCases(string fixtureDirectory)
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(fixtureDirectory, "cases.json")));
        return doc.RootElement.GetProperty("cases").EnumerateArray()
            .Select(c => new FixtureCase(fixtureDirectory, c.GetProperty("name").GetString()!, c.Clone()))
            .ToList();
    }

    /// <summary>Finds one case.</summary>
    public static FixtureCase GetCase(string fixtureDirectory, string caseName)
    {
        if (fixtureDirectory == NoFixtures)
        {
            Assert.Fail("No parity fixtures found: expected tests/fixtures/<name>/cases.json in the repository or folders in QWEN3VL_PARITY_FIXTURES.");
        }
        return LoadCases(fixtureDirectory).SingleOrDefault(c => c.Name == caseName)
               ?? throw new InvalidOperationException($"Case '{caseName}' not found in {fixtureDirectory}/cases.json.");
    }

    /// <summary>All (fixture folder, case name) pairs, optionally only those matching <paramref name="where"/>; one
    /// failing placeholder row when there are none.</summary>
    public static TheoryData<string, string> AllCases(Func<FixtureCase, bool>? where = null)
    {
        var data = new TheoryData<string, string>();
        foreach (string dir in FixtureDirectories())
        {
            foreach (FixtureCase c in LoadCases(dir))
            {
                if (where is null || where(c))
                {
                    data.Add(dir, c.Name);
                }
            }
        }
        if (data.Count == 0)
        {
            data.Add(NoFixtures, NoFixtures);
        }
        return data;
    }
}
