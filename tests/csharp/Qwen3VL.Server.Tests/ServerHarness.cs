using System.ClientModel;
using System.ClientModel.Primitives;
using System.Net;
using System.Text;
using System.Text.Json;
using OpenAI;
using OpenAI.Chat;

namespace Qwen3VL.Server.Tests;

/// <summary>Paths of the repository's tiny checkpoint and images, and helpers to run a server on a free loopback port.</summary>
internal static class ServerHarness
{
    private static readonly Lazy<string> Root = new(() =>
    {
        string? env = Environment.GetEnvironmentVariable("QWEN3VL_REPO_ROOT");
        if (!string.IsNullOrEmpty(env)) return env;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Qwen3VL.sln"))) return dir.FullName;
        }
        throw new InvalidOperationException("Cannot find the repository root (Qwen3VL.sln); set QWEN3VL_REPO_ROOT.");
    });

    internal const string ApiKey = "test-key";

    internal static CancellationToken Ct => TestContext.Current.CancellationToken;
    internal static string ModelDir => Path.Combine(Root.Value, "tests", "fixtures", "tiny-tied", "model");
    internal static string Image(string name) => Path.Combine(Root.Value, "tests", "fixtures", "tiny-tied", "images", name);
    internal static string DataUri(string imageName) => "data:image/png;base64," + Convert.ToBase64String(File.ReadAllBytes(Image(imageName)));

    /// <summary>Starts a server on 127.0.0.1 with a free port and waits for the model.</summary>
    internal static async Task<Qwen3VLServer> StartAsync(Func<ServerOptions, ServerOptions>? configure = null, bool waitReady = true)
    {
        var options = new ServerOptions
        {
            ModelPath = ModelDir,
            ModelId = "qwen3vl-tiny",
            ModelOptions = new Qwen3VL.Native.Qwen3VLModelOptions { Device = "cpu", ContextLength = 1024 },
            Port = 0,
            Parallel = 2,
            MaxQueue = 8,
        };
        if (configure is not null) options = configure(options);
        Qwen3VLServer server = await Qwen3VLServer.StartAsync(options, Ct);
        if (waitReady) await server.WaitUntilReadyAsync(Ct);
        return server;
    }

    internal static ChatClient ChatClient(Qwen3VLServer server, string apiKey = ApiKey) =>
        new("qwen3vl-tiny", new ApiKeyCredential(apiKey), new OpenAIClientOptions
        {
            Endpoint = new Uri(server.BaseAddress, "v1"),
            RetryPolicy = new ClientRetryPolicy(maxRetries: 0),
        });

    internal static HttpClient Http(Qwen3VLServer server, string? apiKey = ApiKey)
    {
        // No draining of unread response bodies: an abandoned stream closes the connection at once (disconnect test).
        var client = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0, PooledConnectionLifetime = TimeSpan.FromSeconds(30) })
        {
            BaseAddress = server.BaseAddress,
            Timeout = TimeSpan.FromSeconds(60),
        };
        if (apiKey is not null) client.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", apiKey);
        return client;
    }

    internal static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    /// <summary>Checks OpenAI's error shape and returns the error object.</summary>
    internal static async Task<JsonElement> AssertErrorAsync(HttpResponseMessage response, HttpStatusCode status, string? code = null)
    {
        string body = await response.Content.ReadAsStringAsync(Ct);
        Assert.True(status == response.StatusCode, $"expected {(int)status}, got {(int)response.StatusCode}: {body}");
        Assert.StartsWith("application/json", response.Content.Headers.ContentType?.ToString());
        using JsonDocument doc = JsonDocument.Parse(body);
        JsonElement error = doc.RootElement.GetProperty("error");
        Assert.Equal(JsonValueKind.String, error.GetProperty("message").ValueKind);
        Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()));
        Assert.Equal(JsonValueKind.String, error.GetProperty("type").ValueKind);
        Assert.True(error.TryGetProperty("param", out _), "error.param missing");
        Assert.True(error.TryGetProperty("code", out JsonElement c), "error.code missing");
        if (code is not null) Assert.Equal(code, c.GetString());
        return error.Clone();
    }

    /// <summary>Polls until <paramref name="condition"/> holds (at most <paramref name="seconds"/>).</summary>
    internal static async Task<bool> EventuallyAsync(Func<bool> condition, double seconds = 10)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(seconds);
        while (DateTime.UtcNow < deadline)
        {
            if (condition()) return true;
            await Task.Delay(20, Ct);
        }
        return condition();
    }
}
