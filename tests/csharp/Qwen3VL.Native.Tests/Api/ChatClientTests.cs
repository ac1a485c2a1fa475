using Microsoft.Extensions.AI;

namespace Qwen3VL.Native.Tests.Api;

/// <summary><see cref="Qwen3VLChatClient"/> used only through <see cref="IChatClient"/>, as an application would.</summary>
public sealed class ChatClientTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static IChatClient Client() => new Qwen3VLChatClient(ApiModels.Tiny);

    // Top-k and top-p off (the checkpoint defaults to 20 and 0.8), so the random-weight model writes varied text.
    private static ChatOptions Seeded(long seed, int maxTokens) => new() { Temperature = 1, TopK = 0, TopP = 1, Seed = seed, MaxOutputTokens = maxTokens };

    [Fact]
    public async Task ImageDataContentIsUsed()
    {
        using IChatClient client = Client();
        byte[] png = File.ReadAllBytes(ApiModels.ImagePath());
        ChatMessage withImage = new(ChatRole.User, [new DataContent(png, "image/png"), new TextContent("What is in the picture?")]);
        ChatMessage textOnly = new(ChatRole.User, "What is in the picture?");

        ChatResponse seen = await client.GetResponseAsync([withImage], Seeded(11, 12), Ct);
        ChatResponse unseen = await client.GetResponseAsync([textOnly], Seeded(11, 12), Ct);

        int imageTokens = ApiModels.Tiny.ImageProcessor.GetTokenCount(200, 300);
        Assert.True(imageTokens > 0);
        Assert.Equal(unseen.Usage!.InputTokenCount + imageTokens + 2, seen.Usage!.InputTokenCount); // + <|vision_start|>, <|vision_end|>
        Assert.NotEqual(unseen.Text, seen.Text);

        // The same image as a file: URI gives the same answer.
        ChatMessage byUri = new(ChatRole.User, [new UriContent(new Uri(ApiModels.ImagePath()), "image/png"), new TextContent("What is in the picture?")]);
        Assert.Equal(seen.Text, (await client.GetResponseAsync([byUri], Seeded(11, 12), Ct)).Text);
    }

    [Fact]
    public async Task SpecialTokenTextCanStayText()
    {
        ChatMessage[] typed = [new(ChatRole.User, "Look: <|image_pad|>")];
        using (IChatClient parsing = Client())
        {
            // Parsed as a control token, a typed image pad has no image: refused by name.
            var e = await Assert.ThrowsAsync<Qwen3VLInputException>(() => parsing.GetResponseAsync(typed, Seeded(1, 2), Ct));
            Assert.Equal("messages", e.Parameter);
        }
        using IChatClient plain = new Qwen3VLChatClient(ApiModels.Tiny) { SpecialTokensInContent = false };
        ChatResponse answer = await plain.GetResponseAsync(typed, Seeded(1, 2), Ct);
        Assert.Equal(2, answer.Usage!.OutputTokenCount);
        // As text, "<|image_pad|>" is several ordinary tokens, not one.
        ChatResponse shorter = await plain.GetResponseAsync([new(ChatRole.User, "Look: ")], Seeded(1, 2), Ct);
        Assert.True(answer.Usage.InputTokenCount > shorter.Usage!.InputTokenCount + 1);
    }

    [Fact]
    public async Task StreamingEqualsNonStreamingAndReportsUsage()
    {
        using IChatClient client = Client();
        ChatMessage[] messages = [new(ChatRole.System, "You are terse."), new(ChatRole.User, "Hello there")];
        ChatResponse whole = await client.GetResponseAsync(messages, Seeded(4, 10), Ct);
        var updates = new List<ChatResponseUpdate>();
        await foreach (ChatResponseUpdate u in client.GetStreamingResponseAsync(messages, Seeded(4, 10), Ct)) updates.Add(u);
        ChatResponse combined = updates.ToChatResponse();

        Assert.Equal(whole.Text, combined.Text);
        Assert.Equal(ChatRole.Assistant, combined.Messages.Single().Role);
        Assert.Equal(10, whole.Usage!.OutputTokenCount);
        Assert.Equal(whole.Usage.InputTokenCount, combined.Usage!.InputTokenCount);
        Assert.Equal(whole.Usage.OutputTokenCount, combined.Usage.OutputTokenCount);
        Assert.Equal(whole.Usage.InputTokenCount + whole.Usage.OutputTokenCount, combined.Usage.TotalTokenCount);
        Assert.Equal(ChatFinishReason.Length, combined.FinishReason);
        Assert.Equal("model", whole.ModelId);
    }

    [Fact]
    public async Task OptionsAreMapped()
    {
        using IChatClient client = Client();
        ChatMessage[] ask = [new(ChatRole.User, "Tell me a story.")];

        ChatResponse capped = await client.GetResponseAsync(ask, new ChatOptions { Temperature = 0, MaxOutputTokens = 3 }, Ct);
        Assert.InRange(capped.Usage!.OutputTokenCount!.Value, 1, 3);

        string a = (await client.GetResponseAsync(ask, Seeded(77, 30), Ct)).Text;
        string b = (await client.GetResponseAsync(ask, Seeded(77, 30), Ct)).Text;
        string c = (await client.GetResponseAsync(ask, Seeded(78, 30), Ct)).Text;
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);

        Assert.True(a.Length > 6, a);
        string stop = a.Substring(a.Length / 2, 2);
        ChatOptions withStop = Seeded(77, 30);
        withStop.StopSequences = [stop];
        ChatResponse cut = await client.GetResponseAsync(ask, withStop, Ct);
        Assert.Equal(a[..a.IndexOf(stop, StringComparison.Ordinal)], cut.Text);
        Assert.Equal(ChatFinishReason.Stop, cut.FinishReason);
    }

    [Fact]
    public async Task MetadataAndErrors()
    {
        using IChatClient client = Client();
        ChatClientMetadata metadata = client.GetService<ChatClientMetadata>()!;
        Assert.Equal("Qwen3VL.Native", metadata.ProviderName);
        Assert.Equal("model", metadata.DefaultModelId);

        ChatMessage corrupt = new(ChatRole.User, [new DataContent(new byte[] { 1, 2, 3, 4 }, "image/png"), new TextContent("?")]);
        await Assert.ThrowsAsync<Qwen3VL.Native.Processing.Images.ImageFormatException>(() => client.GetResponseAsync([corrupt], null, Ct));
        ChatMessage audio = new(ChatRole.User, [new DataContent(new byte[] { 1 }, "audio/wav")]);
        await Assert.ThrowsAsync<NotSupportedException>(() => client.GetResponseAsync([audio], null, Ct));
    }
}
