using System.ClientModel;
using System.Net;
using System.Text;
using System.Text.Json;
using OpenAI.Chat;
using static Qwen3VL.Server.Tests.ServerHarness;

namespace Qwen3VL.Server.Tests;

/// <summary>One server (API key, small limits) shared by the tests of <see cref="OpenAIClientTests"/>.</summary>
public sealed class SharedServer : IAsyncLifetime
{
    public Qwen3VLServer Server { get; private set; } = null!;

    public async ValueTask InitializeAsync() => Server = await StartAsync(o => o with
    {
        ApiKey = ApiKey,
        MaxImagesPerRequest = 2,
        MaxImagePixels = 50_000, // rgb_97x131 passes, rgb_300x200 (60000) does not
        MaxRequestBodyBytes = 256 * 1024,
    });

    public async ValueTask DisposeAsync() => await Server.DisposeAsync();
}

/// <summary>The official OpenAI .NET SDK (and raw HTTP for the error shapes) against the running server.</summary>
[Collection("server")] // one server test at a time: timings and counters stay predictable on 2 cores
public sealed class OpenAIClientTests(SharedServer shared) : IClassFixture<SharedServer>
{
    private Qwen3VLServer Server => shared.Server;

    [Fact]
    public async Task NonStreamingAndStreamingGiveTheSameGreedyText()
    {
        ChatClient client = ChatClient(Server);
        ChatMessage[] messages = [new SystemChatMessage("You are terse."), new UserChatMessage("Name three colours.")];
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 12 };

        ChatCompletion completion = (await client.CompleteChatAsync(messages, options, Ct)).Value;
        Assert.Equal(ChatMessageRole.Assistant, completion.Role);
        Assert.Equal("qwen3vl-tiny", completion.Model);
        Assert.StartsWith("chatcmpl-", completion.Id);
        string text = Assert.Single(completion.Content).Text;
        Assert.NotEmpty(text);
        Assert.True(completion.Usage.InputTokenCount > 0);
        Assert.Equal(12, completion.Usage.OutputTokenCount);
        Assert.Equal(completion.Usage.InputTokenCount + completion.Usage.OutputTokenCount, completion.Usage.TotalTokenCount);

        var streamed = new StringBuilder();
        ChatFinishReason? finish = null;
        ChatTokenUsage? usage = null;
        int updates = 0;
        await foreach (StreamingChatCompletionUpdate update in client.CompleteChatStreamingAsync(messages, options, Ct))
        {
            updates++;
            foreach (ChatMessageContentPart part in update.ContentUpdate) streamed.Append(part.Text);
            finish ??= update.FinishReason;
            usage ??= update.Usage;
        }
        Assert.Equal(text, streamed.ToString());
        Assert.True(updates > 2, $"expected several chunks, got {updates}");
        Assert.Equal(completion.FinishReason, finish);
        Assert.NotNull(usage); // the SDK asks for stream_options.include_usage
        Assert.Equal(completion.Usage.InputTokenCount, usage.InputTokenCount);
        Assert.Equal(completion.Usage.OutputTokenCount, usage.OutputTokenCount);
    }

    [Fact]
    public async Task MaxTokensEndsWithFinishReasonLength()
    {
        ChatCompletion completion = (await ChatClient(Server).CompleteChatAsync([new UserChatMessage("Count to one hundred.")],
            new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 5 }, Ct)).Value;
        Assert.Equal(ChatFinishReason.Length, completion.FinishReason);
        Assert.Equal(5, completion.Usage.OutputTokenCount);

        // The legacy max_tokens field too.
        using HttpClient http = Http(Server);
        using HttpResponseMessage r = await http.PostAsync("v1/chat/completions",
            Json("""{"messages":[{"role":"user","content":"Hi"}],"max_tokens":3,"temperature":0,"seed":7}"""), Ct);
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        using JsonDocument doc = JsonDocument.Parse(await r.Content.ReadAsStringAsync(Ct));
        Assert.Equal("chat.completion", doc.RootElement.GetProperty("object").GetString());
        Assert.Equal("length", doc.RootElement.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.Equal(3, doc.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task ImagePartIsAcceptedAndCountedInPromptTokens()
    {
        ChatClient client = ChatClient(Server);
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 4 };
        ChatCompletion textOnly = (await client.CompleteChatAsync([new UserChatMessage("What is this?")], options, Ct)).Value;

        byte[] png = await File.ReadAllBytesAsync(Image("rgb_97x131.png"), Ct);
        var message = new UserChatMessage(
            ChatMessageContentPart.CreateImagePart(BinaryData.FromBytes(png), "image/png"),
            ChatMessageContentPart.CreateTextPart("What is this?"));
        ChatCompletion withImage = (await client.CompleteChatAsync([message], options, Ct)).Value;

        // 97x131 resizes to 96x128 (patch 16, merge 2): 3x4 = 12 image tokens, plus <|vision_start|> and <|vision_end|>.
        int extra = withImage.Usage.InputTokenCount - textOnly.Usage.InputTokenCount;
        Assert.True(extra >= 12, $"the image added {extra} prompt tokens");
        Assert.Equal(4, withImage.Usage.OutputTokenCount);
    }

    [Fact]
    public async Task WrongApiKeyIs401()
    {
        ClientResultException e = await Assert.ThrowsAsync<ClientResultException>(() =>
            ChatClient(Server, apiKey: "wrong").CompleteChatAsync([new UserChatMessage("Hi")], cancellationToken: Ct));
        Assert.Equal(401, e.Status);

        using HttpClient http = Http(Server, apiKey: null);
        using HttpResponseMessage r = await http.PostAsync("v1/chat/completions", Json("""{"messages":[{"role":"user","content":"Hi"}]}"""), Ct);
        await AssertErrorAsync(r, HttpStatusCode.Unauthorized, "invalid_api_key");
        using HttpResponseMessage models = await http.GetAsync("v1/models", Ct);
        Assert.Equal(HttpStatusCode.Unauthorized, models.StatusCode);
        using HttpResponseMessage health = await http.GetAsync("health", Ct); // open to probes
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
    }

    [Fact]
    public async Task BadRequestsAre400InOpenAIsErrorShape()
    {
        // Through the SDK: the server's 400 surfaces as a ClientResultException with the status.
        ClientResultException e = await Assert.ThrowsAsync<ClientResultException>(() =>
            ChatClient(Server).CompleteChatAsync([new AssistantChatMessage("only an answer")], cancellationToken: Ct));
        Assert.Equal(400, e.Status);

        using HttpClient http = Http(Server);
        async Task<JsonElement> Post(string body, HttpStatusCode status = HttpStatusCode.BadRequest, string? code = null)
        {
            using HttpResponseMessage r = await http.PostAsync("v1/chat/completions", Json(body), Ct);
            return await AssertErrorAsync(r, status, code);
        }

        await Post("{not json", code: "invalid_json");
        Assert.Equal("messages", (await Post("""{"model":"x"}""")).GetProperty("param").GetString());
        Assert.Equal("messages[0].role", (await Post("""{"messages":[{"role":"tool","content":"x"}]}""")).GetProperty("param").GetString());
        Assert.Equal("temperature", (await Post("""{"messages":[{"role":"user","content":"x"}],"temperature":5}""")).GetProperty("param").GetString());
        Assert.Equal("max_tokens", (await Post("""{"messages":[{"role":"user","content":"x"}],"max_tokens":0}""")).GetProperty("param").GetString());
        Assert.Equal("stop", (await Post("""{"messages":[{"role":"user","content":"x"}],"stop":7}""")).GetProperty("param").GetString());
        Assert.Equal("n", (await Post("""{"messages":[{"role":"user","content":"x"}],"n":2}""")).GetProperty("param").GetString());
        await Post("""{"messages":[{"role":"user","content":[{"type":"audio","audio":{}}]}]}""");

        string image = DataUri("rgb_97x131.png");
        string Images(int n) => "{\"messages\":[{\"role\":\"user\",\"content\":[" +
            string.Join(",", Enumerable.Repeat($"{{\"type\":\"image_url\",\"image_url\":{{\"url\":\"{image}\"}}}}", n)) + ",{\"type\":\"text\",\"text\":\"hi\"}]}]}";
        await Post(Images(3), code: "too_many_images");
        await Post($$$"""{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"{{{DataUri("rgb_300x200.png")}}}"}}]}]}""",
            code: "image_too_large");
        await Post("""{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}]}""",
            code: "invalid_image");
        await Post($$$"""{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"{{{Image("rgb_97x131.png")}}}"}}]}]}""",
            code: "invalid_image_url"); // local files need --allow-local-files
        await Post("""{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]}]}""",
            code: "invalid_image_url");
        await Post("{\"messages\":[{\"role\":\"user\",\"content\":\"" + new string('x', 300 * 1024) + "\"}]}", HttpStatusCode.RequestEntityTooLarge,
            "request_too_large");
        await Post("""{"messages":[{"role":"user","content":"x"}],"max_tokens":1}""".Replace("\"x\"", "\"" + string.Concat(Enumerable.Repeat("word ", 1100)) + "\""),
            code: "context_length_exceeded");

        using HttpResponseMessage unknown = await http.GetAsync("v1/nothing", Ct);
        await AssertErrorAsync(unknown, HttpStatusCode.NotFound);

        Assert.True(await EventuallyAsync(() => Server.Counters is { Active: 0, Queued: 0 }));
    }

    [Fact]
    public async Task ModelsHealthAndMetrics()
    {
        using HttpClient http = Http(Server);
        using JsonDocument models = JsonDocument.Parse(await http.GetStringAsync("v1/models", Ct));
        Assert.Equal("list", models.RootElement.GetProperty("object").GetString());
        Assert.Equal("qwen3vl-tiny", models.RootElement.GetProperty("data")[0].GetProperty("id").GetString());

        using JsonDocument health = JsonDocument.Parse(await http.GetStringAsync("health", Ct));
        Assert.Equal("ok", health.RootElement.GetProperty("status").GetString());
        Assert.Equal(2, health.RootElement.GetProperty("parallel").GetInt32());
        Assert.Equal(2, health.RootElement.GetProperty("free_contexts").GetInt32());

        string metrics = await http.GetStringAsync("metrics", Ct);
        Assert.Contains("qwen3vl_active_contexts 0", metrics);
        Assert.Contains("qwen3vl_queued_requests 0", metrics);
    }

    [Fact]
    public async Task StopSequencesAndSystemPromptsAreAccepted()
    {
        using HttpClient http = Http(Server);
        // The tiny checkpoint answers greedily with newlines: a stop of "\n" ends the answer at once, with finish_reason stop.
        using HttpResponseMessage r = await http.PostAsync("v1/chat/completions", Json("""
            {"model":"any","messages":[{"role":"developer","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hi"}]},
             {"role":"assistant","content":"Hello"},{"role":"user","content":"Again"}],"temperature":0,"top_p":0.9,"stop":["\n"],"max_completion_tokens":20}
            """), Ct);
        string body = await r.Content.ReadAsStringAsync(Ct);
        Assert.True(r.IsSuccessStatusCode, body);
        using JsonDocument doc = JsonDocument.Parse(body);
        JsonElement choice = doc.RootElement.GetProperty("choices")[0];
        Assert.Equal("stop", choice.GetProperty("finish_reason").GetString());
        Assert.DoesNotContain("\n", choice.GetProperty("message").GetProperty("content").GetString());
    }
}
