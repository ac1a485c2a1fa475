using System.Text.Json;
using Qwen3VL.Native.Processing.Templates;
using Qwen3VL.Native.Processing.Tokenization;

namespace Qwen3VL.Native.Tests.Processing;

/// <summary>Our prompt ids against the <c>input_ids</c> that transformers produced for every parity fixture case.</summary>
public sealed class TemplateParityTests
{
    public static TheoryData<string, string> Cases => FixtureCatalog.AllCases();

    [Theory]
    [MemberData(nameof(Cases))]
    public void PromptIds_MatchTransformers(string fixtureDirectory, string caseName)
    {
        FixtureCase fixture = FixtureCatalog.GetCase(fixtureDirectory, caseName);
        QwenTokenizer tokenizer = LoadTokenizer(fixture.ModelDirectory);

        ChatTemplateDetection template = Qwen3VLChatTemplate.Detect(fixture.ModelDirectory);
        Assert.True(template.TemplateText is null || template.IsKnownQwen3VLInstruct, template.Message);

        JsonElement json = fixture.Json;
        var messages = json.GetProperty("messages").EnumerateArray().Select(ChatMessage.FromJson).ToList();
        if (messages.Any(m => m.Content.Any(p => p.Kind == ContentPartKind.Video)))
        {
            Assert.Skip("Video prompts are not supported by the prompt builder yet.");
        }
        List<JsonElement>? tools = json.TryGetProperty("tools", out JsonElement t) && t.ValueKind == JsonValueKind.Array
            ? t.EnumerateArray().ToList()
            : null;
        bool addVisionId = json.TryGetProperty("add_vision_id", out JsonElement v) && v.GetBoolean();
        int[][] grids = fixture.ImageGridThw;

        int[] actual = Qwen3VLChatTemplate.BuildPromptIds(
            tokenizer, messages, fixture.AddGenerationPrompt,
            i => i < grids.Length
                ? Qwen3VLChatTemplate.ImageTokenCount(grids[i][0], grids[i][1], grids[i][2])
                : throw new InvalidOperationException($"The prompt has more images than image_grid_thw rows ({grids.Length})."),
            addVisionId, tools);
        int[] expected = fixture.InputIds;

        int firstDiff = 0;
        while (firstDiff < Math.Min(actual.Length, expected.Length) && actual[firstDiff] == expected[firstDiff])
        {
            firstDiff++;
        }
        Assert.True(actual.AsSpan().SequenceEqual(expected),
            $"{caseName}: ids differ at position {firstDiff} (lengths: ours {actual.Length}, transformers {expected.Length}).\n"
            + $"ours:         {Window(actual, firstDiff)}\ntransformers: {Window(expected, firstDiff)}\n"
            + $"rendered: {JsonSerializer.Serialize(Qwen3VLChatTemplate.Render(messages, fixture.AddGenerationPrompt, addVisionId, tools))}");
    }

    private static readonly Dictionary<string, QwenTokenizer> Tokenizers = new();

    private static QwenTokenizer LoadTokenizer(string modelDirectory)
    {
        lock (Tokenizers)
        {
            if (!Tokenizers.TryGetValue(modelDirectory, out QwenTokenizer? tok))
            {
                tok = File.Exists(Path.Combine(modelDirectory, "tokenizer.json"))
                    ? QwenTokenizer.FromDirectory(modelDirectory)
                    : Directory.Exists(modelDirectory)
                        ? QwenTokenizer.FromDirectory(modelDirectory, TestPaths.TokenizerJson)
                        : TestPaths.Tokenizer;
                Tokenizers[modelDirectory] = tok;
            }
            return tok;
        }
    }

    private static string Window(int[] ids, int at) =>
        "[" + (at > 0 ? "… " : "") + string.Join(", ", ids.Skip(Math.Max(0, at - 3)).Take(10)) + "]";
}
