using System.Text.Json;
using Microsoft.Extensions.AI;
using Qwen3VL.Native.Processing.Images;
using Qwen3VL.Native.Processing.Templates;
using Qwen3VL.Native.Tests.Processing;
using AIChatMessage = Microsoft.Extensions.AI.ChatMessage;
using TemplateMessage = Qwen3VL.Native.Processing.Templates.ChatMessage;

namespace Qwen3VL.Native.Tests.Api;

/// <summary>A user message's text and images reach the prompt (and the vision encoder) in the order the caller gave them.</summary>
public sealed class OrderedContentTests
{
    private static Qwen3VLModel Model => ApiModels.Tiny;

    private static ChatImage Tall => ChatImage.FromFile(ApiModels.ImagePath("rgb_97x131.png"));
    private static ChatImage Small => ChatImage.FromFile(ApiModels.ImagePath("rgb_50x37.png"));

    private static Qwen3VLChatSession.Prompt PromptOf(params ChatTurn[] turns) => Qwen3VLChatSession.BuildPrompt(Model, null, turns);

    [Fact]
    public void InterleavedUserTurnMatchesTheTemplateAndNotImagesFirst()
    {
        ChatImage a = Tall, b = ChatImage.FromFile(ApiModels.ImagePath("gray_160x100.png"));
        ChatTurn turn = ChatTurn.User(["Compare ", a, " with ", b, " please."]);

        Assert.Equal([ChatTurnPartKind.Text, ChatTurnPartKind.Image, ChatTurnPartKind.Text, ChatTurnPartKind.Image, ChatTurnPartKind.Text],
            turn.Parts.Select(p => p.Kind));
        Assert.Equal("Compare  with  please.", turn.Text);
        Assert.Equal([a, b], turn.Images);

        int[] session = PromptOf(turn).Ids;
        ProcessedImage pa = a.Process(Model.ImageProcessor), pb = b.Process(Model.ImageProcessor);
        int[] pads = [pa.TokenCount, pb.TokenCount];
        Assert.NotEqual(pads[0], pads[1]); // the two images are told apart by their pad runs
        TemplateMessage message = TemplateMessage.User(ContentPart.FromText("Compare "), ContentPart.FromImage(), ContentPart.FromText(" with "),
            ContentPart.FromImage(), ContentPart.FromText(" please."));
        int[] template = Qwen3VLChatTemplate.BuildPromptIds(Model.Tokenizer, [message], addGenerationPrompt: true, i => pads[i]);
        Assert.Equal(template, session);

        string rendered = Model.Tokenizer.Decode(session.Where(id => id != Model.Config.ImageTokenId).ToArray());
        Assert.Contains("Compare <|vision_start|><|vision_end|> with <|vision_start|><|vision_end|> please.", rendered);

        int[] imagesFirst = PromptOf(ChatTurn.User(turn.Text, turn.Images)).Ids;
        Assert.NotEqual(session, imagesFirst);

        // The convenience overload keeps its images-first meaning.
        Assert.Equal(imagesFirst, PromptOf(ChatTurn.User([a, b, turn.Text])).Ids);
    }

    [Fact]
    public void ImagesFollowTheirPadsAcrossTheConversation()
    {
        ChatImage a = Tall, b = Small, c = ChatImage.FromFile(ApiModels.ImagePath("gray_160x100.png"));
        Qwen3VLChatSession.Prompt prompt = PromptOf(
            ChatTurn.User(["First ", b, " then ", a]),
            ChatTurn.Assistant("Seen."),
            ChatTurn.User([c, "And this?"]));

        Assert.Equal([b, a, c], prompt.Images.Select(s => s.Image));
        int pad = Model.Config.ImageTokenId;
        foreach (Qwen3VLChatSession.ImageSpan span in prompt.Images)
        {
            Assert.Equal(span.Image.Process(Model.ImageProcessor).TokenCount, span.Length);
            Assert.All(prompt.Ids[span.Start..span.End], id => Assert.Equal(pad, id));
            Assert.NotEqual(pad, prompt.Ids[span.End]);
        }
        Assert.True(prompt.Images.Zip(prompt.Images.Skip(1)).All(p => p.First.End < p.Second.Start));
    }

    [Fact]
    public async Task SessionGeneratesFromAnInterleavedMessage()
    {
        using Qwen3VLChatSession session = Model.CreateSession();
        GenerationResult result = await session.SendAsync(["Compare ", Tall, " with ", Small, "."], ApiModels.Greedy(3), TestContext.Current.CancellationToken);
        Assert.Equal(3, result.CompletionTokens);
        Assert.Equal(PromptOf(session.History[0]).Ids.Length, result.PromptTokens);
        Assert.Equal(5, session.History[0].Parts.Count);
    }

    [Fact]
    public void ChatClientKeepsTheOrderOfTheContents()
    {
        byte[] tall = File.ReadAllBytes(ApiModels.ImagePath("rgb_97x131.png"));
        byte[] small = File.ReadAllBytes(ApiModels.ImagePath("rgb_50x37.png"));
        AIChatMessage[] messages =
        [
            new(ChatRole.System, "Be brief."),
            new(ChatRole.User, [new TextContent("Compare "), new DataContent(tall, "image/png"), new TextContent(" with "),
                new DataContent(small, "image/png"), new TextContent(" please.")]),
        ];
        using var client = new Qwen3VLChatClient(Model);
        using Qwen3VLChatSession session = client.CreateSession(messages, null);
        int[] viaClient = Qwen3VLChatSession.BuildPrompt(Model, session.SystemPrompt, session.History).Ids;

        int[] viaSession = Qwen3VLChatSession.BuildPrompt(Model, "Be brief.", [ChatTurn.User(["Compare ", Tall, " with ", Small, " please."])]).Ids;
        Assert.Equal(viaSession, viaClient);

        // [text, image, text] as in the brief.
        AIChatMessage[] three = [new(ChatRole.User, [new TextContent("Look at "), new DataContent(tall, "image/png"), new TextContent(" now.")])];
        using Qwen3VLChatSession s3 = client.CreateSession(three, null);
        Assert.Equal(PromptOf(ChatTurn.User(["Look at ", Tall, " now."])).Ids, Qwen3VLChatSession.BuildPrompt(Model, null, s3.History).Ids);
        Assert.NotEqual(PromptOf(ChatTurn.User("Look at  now.", [Tall])).Ids, Qwen3VLChatSession.BuildPrompt(Model, null, s3.History).Ids);
    }

    [Fact]
    public void FixtureTwoImagesTextBetweenReproducesInputIds()
    {
        string fixture = Path.Combine(TestPaths.RepoRoot, "tests", "fixtures", "tiny-tied");
        FixtureCase c = FixtureCatalog.GetCase(fixture, "two_images_text_between");

        var turns = new List<ChatTurn>();
        string? system = null;
        foreach (JsonElement m in c.Json.GetProperty("messages").EnumerateArray())
        {
            string role = m.GetProperty("role").GetString()!;
            JsonElement content = m.GetProperty("content");
            if (role == "system") system = content.GetString();
            else if (role == "assistant") turns.Add(ChatTurn.Assistant(content.GetString()!));
            else if (content.ValueKind == JsonValueKind.String) turns.Add(ChatTurn.User(content.GetString()!));
            else
            {
                var parts = new List<ChatTurnPart>();
                foreach (JsonElement part in content.EnumerateArray())
                {
                    if (part.GetProperty("type").GetString() == "image")
                    {
                        parts.Add(ChatImage.FromFile(Path.Combine(fixture, part.GetProperty("image").GetString()!)));
                    }
                    else parts.Add(part.GetProperty("text").GetString()!);
                }
                turns.Add(ChatTurn.User(parts));
            }
        }
        Assert.Contains(turns[0].Parts, p => p.Kind == ChatTurnPartKind.Text && !ReferenceEquals(p, turns[0].Parts[0]) && !ReferenceEquals(p, turns[0].Parts[^1]));

        Qwen3VLChatSession.Prompt prompt = Qwen3VLChatSession.BuildPrompt(Model, system, turns);
        Assert.Equal(c.InputIds, prompt.Ids);

        // Pixel values in the order of the pads: the fixture's grids and concatenated pixel values.
        Assert.Equal(c.ImageGridThw, prompt.Images.Select(s => new[] { s.Processed.GridT, s.Processed.GridH, s.Processed.GridW }).ToArray());
        float[] expected = Qwen3VL.Native.Tests.Model.TestModels.ReadF32(Path.Combine(fixture, c.Json.GetProperty("pixel_values_file").GetString()!));
        float[] actual = prompt.Images.SelectMany(s => s.Processed.PixelValues).ToArray();
        Assert.Equal(expected.Length, actual.Length);
        double sum = 0;
        for (int i = 0; i < expected.Length; i++) sum += Math.Abs(expected[i] - actual[i]);
        Assert.True(sum / expected.Length <= 1e-3, $"mean |diff| = {sum / expected.Length:E3}");
    }

    [Fact]
    public void PartsAreChecked()
    {
        Assert.Throws<ArgumentNullException>(() => ChatTurnPart.FromText(null!));
        Assert.Throws<ArgumentNullException>(() => ChatTurnPart.FromImage(null!));
        Assert.Throws<ArgumentException>(() => ChatTurn.User(Array.Empty<ChatTurnPart>()));
        Assert.Throws<ArgumentException>(() => ChatTurn.User(new ChatTurnPart[] { "a", null! }));
        Assert.Equal(ChatTurnPartKind.Text, ChatTurn.Assistant("x").Parts.Single().Kind);
    }
}
