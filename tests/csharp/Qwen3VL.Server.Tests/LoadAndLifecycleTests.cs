using System.Diagnostics;
using System.Net;
using System.Text.Json;
using static Qwen3VL.Server.Tests.ServerHarness;

namespace Qwen3VL.Server.Tests;

/// <summary>Queueing, load, client disconnects and the server's lifecycle, checked through its counters.</summary>
[Collection("server")] // one server test at a time: timings and counters stay predictable on 2 cores
public sealed class LoadAndLifecycleTests
{
    private const string StreamBody = """{"messages":[{"role":"user","content":"Tell me a story."}],"stream":true,"temperature":0,"max_tokens":16}""";

    /// <summary>What one streaming client saw.</summary>
    private sealed record Outcome(int Status, string? ErrorCode, int Chunks, bool Done);

    private static async Task<Outcome> StreamOnceAsync(HttpClient http, string body)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = Json(body) };
        using HttpResponseMessage response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, Ct);
        if (response.StatusCode != HttpStatusCode.OK)
        {
            JsonElement error = await AssertErrorAsync(response, response.StatusCode);
            return new Outcome((int)response.StatusCode, error.GetProperty("code").GetString(), 0, false);
        }
        Assert.StartsWith("text/event-stream", response.Content.Headers.ContentType?.ToString());
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(Ct));
        int chunks = 0;
        bool done = false;
        while (await reader.ReadLineAsync(Ct) is { } line)
        {
            if (line.Length == 0) continue;
            Assert.StartsWith("data: ", line);
            string data = line["data: ".Length..];
            if (data == "[DONE]")
            {
                done = true;
                continue;
            }
            Assert.False(done, "data after [DONE]");
            using JsonDocument chunk = JsonDocument.Parse(data);
            Assert.Equal("chat.completion.chunk", chunk.RootElement.GetProperty("object").GetString());
            chunks++;
        }
        return new Outcome(200, null, chunks, done);
    }

    [Fact]
    public async Task ConcurrentStreamingClientsCompleteOrGetWellFormed429AndNothingLeaks()
    {
        await using Qwen3VLServer server = await StartAsync(o => o with { Parallel = 2, MaxQueue = 4 });
        using HttpClient http = Http(server, apiKey: null);
        http.DefaultRequestHeaders.ConnectionClose = false;
        const int clients = 32, total = 64;
        int next = 0;
        var outcomes = new System.Collections.Concurrent.ConcurrentBag<Outcome>();
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, clients).Select(_ => Task.Run(async () =>
        {
            // Each client streams, and after a 429 waits a little before its next request (the total stays fixed).
            var random = new Random();
            while (Interlocked.Increment(ref next) <= total)
            {
                Outcome o = await StreamOnceAsync(http, StreamBody);
                outcomes.Add(o);
                if (o.Status != 200) await Task.Delay(random.Next(100, 400), Ct);
            }
        }, Ct)));

        Assert.Equal(total, outcomes.Count);
        foreach (Outcome o in outcomes)
        {
            if (o.Status == 200) Assert.True(o.Done && o.Chunks >= 3, $"a stream ended early: {o}");
            else Assert.True(o is { Status: 429, ErrorCode: "queue_full" } or { Status: 503 }, $"unexpected outcome {o}");
        }
        int ok = outcomes.Count(o => o.Status == 200), rejected = outcomes.Count(o => o.Status != 200);
        Assert.True(ok >= 6, $"only {ok} of {total} completed");
        Assert.True(rejected > 0, "32 clients on 2 contexts + a queue of 4 never saw a 429");

        Assert.True(await EventuallyAsync(() => server.Counters is { Active: 0, Queued: 0, FreeContexts: 2 }), $"leaked: {server.Counters}");
        ServerCounters c = server.Counters;
        Assert.Equal(ok, c.Completed);
        Assert.Equal(rejected, c.Rejected);
        Assert.Equal(0, c.Failed);
        Assert.Equal(0, c.Cancelled);

        // Still healthy: the next request is served.
        using HttpResponseMessage health = await http.GetAsync("health", Ct);
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        Assert.Equal(200, (await StreamOnceAsync(http, StreamBody)).Status);
        TestContext.Current.TestOutputHelper?.WriteLine($"load: {ok} completed, {rejected} rejected in {clock.Elapsed.TotalSeconds:0.0} s");
    }

    [Fact]
    public async Task ClientDisconnectMidStreamCancelsTheGeneration()
    {
        await using Qwen3VLServer server = await StartAsync(o => o with { Parallel = 1, MaxQueue = 2 });
        using HttpClient http = Http(server, apiKey: null);
        using var abandon = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        using (var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions")
        {
            Content = Json("""{"messages":[{"role":"user","content":"Hi"}],"stream":true,"temperature":0,"max_tokens":900}"""),
        })
        {
            using HttpResponseMessage response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, abandon.Token);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Stream stream = await response.Content.ReadAsStreamAsync(abandon.Token);
            byte[] buffer = new byte[256];
            Assert.True(await stream.ReadAsync(buffer, abandon.Token) > 0);
            Assert.Equal(1, server.Counters.Active);
            await abandon.CancelAsync(); // the client goes away mid-stream
        }

        Assert.True(await EventuallyAsync(() => server.Counters is { Cancelled: 1, Active: 0 }), $"not cancelled: {server.Counters}");
        Assert.Equal(0, server.Counters.Completed);
        // The context went back to the pool and serves the next request.
        Assert.Equal(200, (await StreamOnceAsync(http, StreamBody)).Status);
        Assert.Equal(1, server.Counters.Completed);
    }

    [Fact]
    public async Task QueueIsFirstInFirstOutAndBounded()
    {
        var pool = new ContextPool<string>(["only"], maxQueue: 2);
        ContextPool<string>.Lease first = await pool.AcquireAsync(Ct);
        var order = new List<int>();
        Task Waiter(int i) => Task.Run(async () =>
        {
            using ContextPool<string>.Lease lease = await pool.AcquireAsync(Ct);
            lock (order) order.Add(i);
        }, Ct);
        Task a = Waiter(1);
        Assert.True(await EventuallyAsync(() => pool.Snapshot().Queued == 1));
        Task b = Waiter(2);
        Assert.True(await EventuallyAsync(() => pool.Snapshot().Queued == 2));
        await Assert.ThrowsAsync<QueueFullException>(async () => await pool.AcquireAsync(Ct));

        using var gone = new CancellationTokenSource();
        Task<ContextPool<string>.Lease> c = Task.Run(async () => await pool.AcquireAsync(gone.Token), Ct);
        await Assert.ThrowsAsync<QueueFullException>(() => c); // still full
        first.Dispose();
        await Task.WhenAll(a, b);
        Assert.Equal([1, 2], order);
        Assert.Equal(new ServerCounters(0, 0, 0, 0, 1 + 1, 0, 1), pool.Snapshot());

        // A waiter whose client leaves is taken out of the line.
        ContextPool<string>.Lease held = await pool.AcquireAsync(Ct);
        Task<ContextPool<string>.Lease> leaving = pool.AcquireAsync(gone.Token).AsTask();
        Assert.Equal(1, pool.Snapshot().Queued);
        await gone.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => leaving);
        Assert.Equal(0, pool.Snapshot().Queued);
        Assert.Equal(1, pool.Snapshot().Cancelled);
        held.Dispose();
        Assert.Equal(1, pool.Snapshot().FreeContexts);
    }

    /// <summary>Shutdown: Close retires the free items at once and each leased one when its lease ends (so the server
    /// disposes every session, and the model's weights go with the last), each once; nothing is handed out afterwards.</summary>
    [Fact]
    public async Task CloseRetiresFreeItemsNowAndLeasedOnesWhenTheirLeaseEnds()
    {
        var pool = new ContextPool<string>(["a", "b", "c"], maxQueue: 4);
        ContextPool<string>.Lease held = await pool.AcquireAsync(Ct);
        var retired = new List<string>();
        pool.Close(item => { lock (retired) retired.Add(item); });
        Assert.Equal(2, retired.Count);
        Assert.DoesNotContain(held.Item, retired);
        await Assert.ThrowsAsync<ServerStoppingException>(async () => await pool.AcquireAsync(Ct));
        pool.Close(item => throw new InvalidOperationException("a second Close retires nothing"));
        held.Dispose();
        held.Dispose();
        Assert.Equal(["a", "b", "c"], retired.Order());
        Assert.Equal(0, pool.Snapshot().FreeContexts);
    }

    [Fact]
    public async Task ServerThatCannotLoadItsModelAnswers503()
    {
        await using Qwen3VLServer server = await StartAsync(o => o with { ModelPath = Path.Combine(Path.GetTempPath(), "no-such-model-" + Guid.NewGuid()) },
            waitReady: false);
        await Assert.ThrowsAsync<InvalidOperationException>(() => server.WaitUntilReadyAsync(Ct));
        Assert.Equal(ServerState.Failed, server.State);
        using HttpClient http = Http(server, apiKey: null);
        using HttpResponseMessage r = await http.PostAsync("v1/chat/completions", Json("""{"messages":[{"role":"user","content":"Hi"}]}"""), Ct);
        await AssertErrorAsync(r, HttpStatusCode.ServiceUnavailable, "model_failed");
        using HttpResponseMessage health = await http.GetAsync("health", Ct);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, health.StatusCode);
    }

    /// <summary>The model options' KvCache reaches every pooled context: a server with 8-bit caches answers; one whose
    /// checkpoint cannot hold them (tiny-untied: head_dim 16) fails to load and says why, naming KvCache.</summary>
    [Fact]
    public async Task KvCacheFormatFlowsFromTheModelOptions()
    {
        await using (Qwen3VLServer server = await StartAsync(o => o with
        {
            Parallel = 1,
            ModelOptions = o.ModelOptions with { KvCache = Qwen3VL.Native.KvCacheFormat.Q8 },
        }))
        {
            using HttpClient http = Http(server, apiKey: null);
            using HttpResponseMessage r = await http.PostAsync("v1/chat/completions",
                Json("""{"messages":[{"role":"user","content":"Hi"}],"temperature":0,"max_tokens":3}"""), Ct);
            string body = await r.Content.ReadAsStringAsync(Ct);
            Assert.True(r.StatusCode == HttpStatusCode.OK, body);
            using JsonDocument doc = JsonDocument.Parse(body);
            Assert.Equal(3, doc.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        }

        string untied = Path.Combine(Path.GetDirectoryName(Path.GetDirectoryName(ModelDir))!, "tiny-untied", "model");
        await using Qwen3VLServer refused = await StartAsync(o => o with
        {
            ModelPath = untied,
            ModelOptions = o.ModelOptions with { KvCache = Qwen3VL.Native.KvCacheFormat.Q8 },
        }, waitReady: false);
        await Assert.ThrowsAsync<InvalidOperationException>(() => refused.WaitUntilReadyAsync(Ct));
        Assert.Equal(ServerState.Failed, refused.State);
        using HttpClient client = Http(refused, apiKey: null);
        using HttpResponseMessage health = await client.GetAsync("health", Ct);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, health.StatusCode);
        using JsonDocument h = JsonDocument.Parse(await health.Content.ReadAsStringAsync(Ct));
        Assert.Contains("KvCache = Q8 needs the text decoder's head_dim to be a multiple of 32", h.RootElement.GetProperty("error").GetString());
    }

    [Fact]
    public async Task LocalFilesAreReadOnlyWhenAllowed()
    {
        await using Qwen3VLServer server = await StartAsync(o => o with { Parallel = 1, AllowLocalFiles = true });
        using HttpClient http = Http(server, apiKey: null);
        string path = Image("rgb_50x37.png");
        foreach (string url in new[] { path, new Uri(path).AbsoluteUri })
        {
            using HttpResponseMessage r = await http.PostAsync("v1/chat/completions", Json($$$"""
                {"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"{{{url}}}"}},{"type":"text","text":"What?"}]}],"max_tokens":2}
                """), Ct);
            Assert.True(r.IsSuccessStatusCode, await r.Content.ReadAsStringAsync(Ct));
        }
        using HttpResponseMessage relative = await http.PostAsync("v1/chat/completions", Json("""
            {"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"images/a.png"}}]}]}
            """), Ct);
        await AssertErrorAsync(relative, HttpStatusCode.BadRequest, "invalid_image_url");
    }
}
