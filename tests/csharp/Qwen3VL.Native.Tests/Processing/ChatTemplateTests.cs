using System.Text.Json;
using Qwen3VL.Native.Processing.Templates;
using Qwen3VL.Native.Processing.Tokenization;

namespace Qwen3VL.Native.Tests.Processing;

public sealed class ChatTemplateTests
{
    /// <summary>Renderings by jinja2 configured as transformers does — see tools/gen-template-reference.py.</summary>
    public static TheoryData<string> ReferenceCaseNames
    {
        get
        {
            var data = new TheoryData<string>();
            foreach (JsonElement c in LoadCases().RootElement.GetProperty("cases").EnumerateArray())
            {
                data.Add(c.GetProperty("name").GetString()!);
            }
            return data;
        }
    }

    private static JsonDocument LoadCases() =>
        JsonDocument.Parse(File.ReadAllBytes(Path.Combine(TestPaths.TestData, "template-reference.json")));

    [Theory]
    [MemberData(nameof(ReferenceCaseNames))]
    public void Render_MatchesJinja(string name)
    {
        using JsonDocument doc = LoadCases();
        JsonElement c = doc.RootElement.GetProperty("cases").EnumerateArray().Single(e => e.GetProperty("name").GetString() == name);
        var messages = c.GetProperty("messages").EnumerateArray().Select(ChatMessage.FromJson).ToList();
        List<JsonElement>? tools = c.TryGetProperty("tools", out JsonElement t) ? t.EnumerateArray().ToList() : null;
        bool gen = c.TryGetProperty("add_generation_prompt", out JsonElement g) && g.GetBoolean();
        bool visionId = c.TryGetProperty("add_vision_id", out JsonElement v) && v.GetBoolean();

        Assert.Equal(c.GetProperty("expected").GetString(), Qwen3VLChatTemplate.Render(messages, gen, visionId, tools));
    }

    [Fact]
    public void Render_ImagesInPlace()
    {
        var messages = new[]
        {
            ChatMessage.System("You are a helpful assistant."),
            ChatMessage.User(ContentPart.FromText("A "), ContentPart.FromImage(), ContentPart.FromText(" B")),
        };
        Assert.Equal(
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nA <|vision_start|><|image_pad|><|vision_end|> B<|im_end|>\n<|im_start|>assistant\n",
            Qwen3VLChatTemplate.Render(messages, addGenerationPrompt: true));
    }

    [Fact]
    public void BuildPromptIds_ExpandsPads_SameAsExpandingTextFirst()
    {
        QwenTokenizer tok = TestPaths.Tokenizer;
        var messages = new[]
        {
            ChatMessage.User(ContentPart.FromImage(), ContentPart.FromText("Compare with"), ContentPart.FromImage(), ContentPart.FromText("?")),
            ChatMessage.Assistant("The first."),
            ChatMessage.User(ContentPart.FromText("Now this one: "), ContentPart.FromImage()),
        };
        int[] counts = [Qwen3VLChatTemplate.ImageTokenCount(1, 4, 6), 12, 1];
        int[] ids = Qwen3VLChatTemplate.BuildPromptIds(tok, messages, true, i => counts[i]);

        // What the transformers processor does: expand <|image_pad|> in the text, then tokenize.
        string text = Qwen3VLChatTemplate.Render(messages, true);
        int image = 0;
        string expanded = string.Join("", text.Split(QwenSpecialTokens.ImagePadText)
            .Select((chunk, i) => i == 0 ? chunk : string.Concat(Enumerable.Repeat(QwenSpecialTokens.ImagePadText, counts[image++])) + chunk));
        Assert.Equal(tok.Encode(expanded), ids);

        Assert.Equal(counts.Sum(), ids.Count(id => id == QwenSpecialTokens.ImagePad));
        Assert.Equal(3, ids.Count(id => id == QwenSpecialTokens.VisionStart));
        Assert.Equal([QwenSpecialTokens.ImStart, 872, 198, QwenSpecialTokens.VisionStart], ids[..4]); // "user", "\n"
        Assert.Equal([QwenSpecialTokens.ImStart, 77091, 198], ids[^3..]); // "<|im_start|>assistant\n"
    }

    [Fact]
    public void BuildPromptIds_RejectsVideoForNow()
    {
        var messages = new[] { ChatMessage.User(ContentPart.FromVideo(), ContentPart.FromText("What happens?")) };
        Assert.Throws<NotSupportedException>(() => Qwen3VLChatTemplate.BuildPromptIds(TestPaths.Tokenizer, messages, true, _ => 4));
    }

    [Fact]
    public void Detect_RecognizesTheKnownTemplateAndReportsOthers()
    {
        string jinja = File.ReadAllText(Path.Combine(TestPaths.RepoRoot, "bindings", "csharp", "Qwen3VL.Native", "Processing", "Templates", "qwen3-vl-instruct.chat_template.jinja"));
        Assert.True(Qwen3VLChatTemplate.IsKnownTemplate(jinja));
        Assert.True(Qwen3VLChatTemplate.IsKnownTemplate(jinja.Replace("\n", "\r\n").Replace("    ", "  ")));
        Assert.False(Qwen3VLChatTemplate.IsKnownTemplate(jinja.Replace("Picture ", "Image ")));

        string dir = Directory.CreateTempSubdirectory("qwen3vl-template-").FullName;
        try
        {
            Assert.False(Qwen3VLChatTemplate.Detect(dir).IsKnownQwen3VLInstruct);
            File.WriteAllText(Path.Combine(dir, "chat_template.json"), JsonSerializer.Serialize(new { chat_template = jinja }));
            ChatTemplateDetection found = Qwen3VLChatTemplate.Detect(dir);
            Assert.True(found.IsKnownQwen3VLInstruct, found.Message);
            File.WriteAllText(Path.Combine(dir, "chat_template.jinja"), "{{ messages[0].content }}");
            ChatTemplateDetection other = Qwen3VLChatTemplate.Detect(dir);
            Assert.False(other.IsKnownQwen3VLInstruct);
            Assert.EndsWith("chat_template.jinja", other.SourcePath);
            Assert.Contains("differs", other.Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData("1.0", "1.0")]
    [InlineData("0.5", "0.5")]
    [InlineData("1e20", "1e+20")]
    [InlineData("1e16", "1e+16")]
    [InlineData("1e15", "1000000000000000.0")]
    [InlineData("0.0001", "0.0001")]
    [InlineData("0.00001", "1e-05")]
    [InlineData("-2.5e-7", "-2.5e-07")]
    [InlineData("123456789012345678901234567890", "123456789012345678901234567890")]
    [InlineData("3.141592653589793", "3.141592653589793")]
    public void PythonJson_FormatsNumbersLikePython(string raw, string python)
    {
        using JsonDocument doc = JsonDocument.Parse(raw);
        Assert.Equal(python, PythonJson.Serialize(doc.RootElement));
    }
}
