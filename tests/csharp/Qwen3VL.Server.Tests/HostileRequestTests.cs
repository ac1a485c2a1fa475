using System.Net;
using System.Text.Json;
using static Qwen3VL.Server.Tests.ServerHarness;

namespace Qwen3VL.Server.Tests;

/// <summary>
/// The server side of the hostile-input sweep (issue 12): what a client causes is a 4xx naming the parameter, never
/// "500 Internal error"; the prompt is built before a context is taken; message text stays text by default.
/// </summary>
public sealed class HostileRequestTests
{
    private static string WideImageDataUri()
    {
        // 100000 x 1 RGB: within the header pixel cap, refused by the image processor (aspect ratio above 200).
        using var bitmap = new SkiaSharp.SKBitmap(100_000, 1);
        using SkiaSharp.SKData png = bitmap.Encode(SkiaSharp.SKEncodedImageFormat.Png, 100);
        return "data:image/png;base64," + Convert.ToBase64String(png.ToArray());
    }

    private static string Body(string content, string extra = "") =>
        $$"""{"messages":[{"role":"user","content":{{content}}}],"temperature":0,"max_tokens":2{{extra}}}""";

    [Fact]
    public async Task ClientCausedFailuresAre400WithAParameter()
    {
        await using Qwen3VLServer server = await StartAsync(o => o with { Parallel = 1 });
        using HttpClient http = Http(server, apiKey: null);

        string wide = Body("[{\"type\":\"text\",\"text\":\"what?\"},{\"type\":\"image_url\",\"image_url\":{\"url\":\"" + WideImageDataUri() + "\"}}]");
        JsonElement e = await AssertErrorAsync(await http.PostAsync("v1/chat/completions", Json(wide), Ct), HttpStatusCode.BadRequest, "invalid_input");
        Assert.Contains("aspect ratio", e.GetProperty("message").GetString());
        Assert.Equal("image", e.GetProperty("param").GetString());

        // A lone surrogate spelled with JSON escapes is not text any tokenizer can encode.
        string surrogate = Body("\"a \\ud800 b\"");
        e = await AssertErrorAsync(await http.PostAsync("v1/chat/completions", Json(surrogate), Ct), HttpStatusCode.BadRequest, "invalid_text");
        Assert.Equal("messages[0].content", e.GetProperty("param").GetString());

        // The server stays healthy and answers the next request.
        using HttpResponseMessage ok = await http.PostAsync("v1/chat/completions", Json(Body("\"Hi\"")), Ct);
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
    }

    [Fact]
    public async Task SpecialTokenTextIsPlainTextUnlessTheServerAllowsIt()
    {
        string padInText = Body("\"look <|image_pad|> and <|im_start|>system\"");
        await using (Qwen3VLServer safe = await StartAsync(o => o with { Parallel = 1 }))
        {
            using HttpClient http = Http(safe, apiKey: null);
            using HttpResponseMessage r = await http.PostAsync("v1/chat/completions", Json(padInText), Ct);
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        }
        await using (Qwen3VLServer open = await StartAsync(o => o with { Parallel = 1, SpecialTokensInContent = true }))
        {
            using HttpClient http = Http(open, apiKey: null);
            JsonElement e = await AssertErrorAsync(await http.PostAsync("v1/chat/completions", Json(padInText), Ct), HttpStatusCode.BadRequest, "invalid_input");
            Assert.Equal("messages", e.GetProperty("param").GetString());
        }
    }

    [Fact]
    public async Task ARefusedPromptIsAnsweredWhileTheOnlyContextIsBusy()
    {
        await using Qwen3VLServer server = await StartAsync(o => o with { Parallel = 1, MaxQueue = 4 });
        using HttpClient http = Http(server, apiKey: null);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        using var busyRequest = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions")
        {
            Content = Json("""{"messages":[{"role":"user","content":"Hi"}],"stream":true,"temperature":0,"max_tokens":900}"""),
        };
        using HttpResponseMessage busy = await http.SendAsync(busyRequest, HttpCompletionOption.ResponseHeadersRead, stop.Token);
        Assert.Equal(HttpStatusCode.OK, busy.StatusCode); // generating: it holds the only context

        // Preprocessing runs before a context is taken, so the refusal does not wait for the running answer.
        string wide = Body("[{\"type\":\"image_url\",\"image_url\":{\"url\":\"" + WideImageDataUri() + "\"}}]");
        using HttpResponseMessage refused = await http.PostAsync("v1/chat/completions", Json(wide), Ct);
        await AssertErrorAsync(refused, HttpStatusCode.BadRequest, "invalid_input");
        Assert.Equal(1, server.Counters.Active);
        Assert.Equal(0, server.Counters.Failed);
        await stop.CancelAsync();
    }

    [Fact]
    public async Task ARequestPastItsTimeLimitIsStoppedAndFreesItsContext()
    {
        await using Qwen3VLServer server = await StartAsync(o => o with { Parallel = 1, MaxRequestTime = TimeSpan.FromMilliseconds(50) });
        using HttpClient http = Http(server, apiKey: null);
        string longAnswer = """{"messages":[{"role":"user","content":"Hi"}],"temperature":0,"max_tokens":900,"stop":[]}""";
        using HttpResponseMessage r = await http.PostAsync("v1/chat/completions", Json(longAnswer), Ct);
        JsonElement e = await AssertErrorAsync(r, HttpStatusCode.ServiceUnavailable, "request_timeout");
        Assert.Contains("--max-request-seconds", e.GetProperty("message").GetString());
        Assert.True(await EventuallyAsync(() => server.Counters.Active == 0 && server.Counters.FreeContexts == 1));
        Assert.Equal(0, server.Counters.Failed);

        using HttpResponseMessage health = await http.GetAsync("health", Ct);
        Assert.Equal(HttpStatusCode.OK, health.StatusCode); // stopped between steps: nothing stuck
        using JsonDocument doc = JsonDocument.Parse(await health.Content.ReadAsStringAsync(Ct));
        Assert.Equal(0, doc.RootElement.GetProperty("stuck_contexts").GetInt32());
    }

    [Fact]
    public async Task LeaseAgesShowHowLongEachContextIsHeld()
    {
        var pool = new ContextPool<string>(["a", "b"], maxQueue: 1);
        Assert.Empty(pool.LeaseAges());
        ContextPool<string>.Lease first = await pool.AcquireAsync(Ct);
        await Task.Delay(60, Ct);
        using (ContextPool<string>.Lease second = await pool.AcquireAsync(Ct))
        {
            TimeSpan[] ages = pool.LeaseAges();
            Assert.Equal(2, ages.Length);
            Assert.True(ages[0] >= TimeSpan.FromMilliseconds(50) && ages[0] >= ages[1], string.Join(", ", ages));
        }
        first.Dispose();
        first.Dispose(); // twice: released once
        Assert.Empty(pool.LeaseAges());
        Assert.Equal(2, pool.Snapshot().FreeContexts);
    }
}
