using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Qwen3VL.Native;

namespace Qwen3VL.Server;

/// <summary>
/// An OpenAI-compatible HTTP server over one <see cref="Qwen3VLModel"/>: <c>POST /v1/chat/completions</c> (streaming as
/// server-sent events), <c>GET /v1/models</c>, <c>GET /health</c> and <c>GET /metrics</c>. Requests wait in a bounded
/// first-in-first-out queue for one of <see cref="ServerOptions.Parallel"/> contexts; a client that disconnects stops its
/// generation. The server listens at once and loads the model in the background (503 until it is ready).
/// </summary>
public sealed class Qwen3VLServer : IAsyncDisposable
{
    private static readonly byte[] DoneEvent = "data: [DONE]\n\n"u8.ToArray();

    private readonly ServerOptions _options;
    private readonly WebApplication _app;
    private readonly CancellationTokenSource _stopping = new();
    private readonly string _modelId;
    private readonly byte[]? _apiKey;
    private Task _loading = Task.CompletedTask;
    private Qwen3VLModel? _model;
    private ContextPool<Qwen3VLChatSession>? _pool;
    private volatile ServerState _state = ServerState.Loading;
    private string? _loadError;
    private int _disposed;

    private Qwen3VLServer(ServerOptions options, WebApplication app)
    {
        _options = options;
        _app = app;
        _modelId = options.ModelId ?? Path.GetFileName(Path.GetFullPath(options.ModelPath).TrimEnd('/', '\\'));
        _apiKey = string.IsNullOrEmpty(options.ApiKey) ? null : Encoding.UTF8.GetBytes(options.ApiKey);
    }

    /// <summary>The address clients use, e.g. <c>http://127.0.0.1:8080/</c> (the OpenAI base URL is this plus <c>v1</c>).</summary>
    public Uri BaseAddress { get; private set; } = null!;
    /// <summary>What the server is doing.</summary>
    public ServerState State => _state;
    /// <summary>The model id reported to clients.</summary>
    public string ModelId => _modelId;
    /// <summary>The request counters now (all zero until the model is loaded).</summary>
    public ServerCounters Counters => _pool?.Snapshot() ?? default;
    /// <summary>Why loading failed (state <see cref="ServerState.Failed"/>).</summary>
    public string? LoadError => _loadError;

    /// <summary>Binds the address and starts loading the model; returns once the server listens.</summary>
    /// <exception cref="ArgumentException">An option is invalid.</exception>
    /// <exception cref="IOException">The address cannot be bound (e.g. the port is in use).</exception>
    public static async Task<Qwen3VLServer> StartAsync(ServerOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            Args = [],
            ApplicationName = "Qwen3VL.Server",
            ContentRootPath = AppContext.BaseDirectory,
            EnvironmentName = Environments.Production,
        });
        builder.Logging.ClearProviders();
        if (options.ConsoleLog)
        {
            // Log lines go to stderr, beside the server's own lines; stdout stays free for the caller.
            builder.Logging.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
            builder.Logging.AddSimpleConsole(o => o.SingleLine = true);
            builder.Logging.SetMinimumLevel(LogLevel.Warning);
            // A failed start (the port in use) is thrown from StartAsync and reported by the caller in one line; the
            // host's own log of it is the same error with a stack trace.
            builder.Logging.AddFilter("Microsoft.Extensions.Hosting.Internal.Host", LogLevel.None);
        }
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(10));
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = null; // checked by the handler, to answer in OpenAI's error shape
            k.AddServerHeader = false;
            if (options.Host == "localhost") k.ListenLocalhost(options.Port);
            else k.Listen(IPAddress.Parse(options.Host), options.Port);
        });
        WebApplication app = builder.Build();
        var server = new Qwen3VLServer(options, app);
        server.MapEndpoints();
        app.Lifetime.ApplicationStopping.Register(server.BeginStopping);
        await app.StartAsync(cancellationToken).ConfigureAwait(false);

        string address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        server.BaseAddress = new Uri(address.EndsWith('/') ? address : address + "/");
        server._loading = Task.Run(server.LoadModel, CancellationToken.None);
        return server;
    }

    /// <summary>Waits until the model is loaded.</summary>
    /// <exception cref="InvalidOperationException">Loading failed (the message says why).</exception>
    public async Task WaitUntilReadyAsync(CancellationToken cancellationToken = default)
    {
        await _loading.WaitAsync(cancellationToken).ConfigureAwait(false);
        if (_state == ServerState.Failed) throw new InvalidOperationException("The model failed to load: " + _loadError);
    }

    /// <summary>Completes when the server is asked to stop (e.g. Ctrl+C under the CLI's host) and has stopped.</summary>
    public Task WaitForShutdownAsync(CancellationToken cancellationToken = default) => _app.WaitForShutdownAsync(cancellationToken);

    /// <summary>Stops listening, turns away queued requests (503), cancels running generations, and releases the model.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        BeginStopping();
        try
        {
            await _app.StopAsync().ConfigureAwait(false);
        }
        finally
        {
            await _app.DisposeAsync().ConfigureAwait(false);
            try
            {
                await _loading.ConfigureAwait(false);
            }
            catch (Exception)
            {
                // Reported through State / LoadError.
            }
            // Idle sessions are disposed now, a session still serving a request when its lease ends (a session disposed
            // during a generation frees its context when the generation returns). The model's weights go with the last
            // of them: each session's context holds a reference on the model, so disposing it here never pulls the
            // weights from under a running request.
            _pool?.Close(static s => s.Dispose());
            _model?.Dispose();
            _stopping.Dispose();
        }
    }

    private void BeginStopping()
    {
        if (_state != ServerState.Failed) _state = ServerState.Stopping;
        _pool?.Stop();
        try
        {
            _stopping.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    private void LoadModel()
    {
        try
        {
            var clock = Stopwatch.StartNew();
            Qwen3VLModel model = Qwen3VLModel.Load(_options.ModelPath, _options.ModelOptions);
            var sessions = new List<Qwen3VLChatSession>();
            for (int i = 0; i < _options.Parallel; i++) sessions.Add(model.CreateSession(new ChatSessionOptions
            {
                ContextLength = model.ContextLength,
                SpecialTokensInContent = _options.SpecialTokensInContent,
            }));
            _model = model;
            _pool = new ContextPool<Qwen3VLChatSession>(sessions, _options.MaxQueue);
            if (_stopping.IsCancellationRequested) _pool.Stop();
            else _state = ServerState.Ready;
            Log($"model {_modelId} loaded on {model.DeviceName} in {clock.Elapsed.TotalSeconds:0.0} s; {_options.Parallel} context(s) of {model.ContextLength} tokens, "
                + $"KV cache {model.KvCache.ToString().ToLowerInvariant()} ({sessions[0].CacheBytes / (1024.0 * 1024.0):0.0} MiB each)");
        }
        catch (Exception e)
        {
            _loadError = e.Message;
            _state = ServerState.Failed;
            Log("model failed to load: " + e.Message);
        }
    }

    private void Log(string line)
    {
        if (_options.ConsoleLog) Console.Error.WriteLine("qwen3vl serve: " + line);
    }

    private void MapEndpoints()
    {
        _app.MapPost("/v1/chat/completions", HandleCompletionsAsync);
        _app.MapGet("/v1/models", HandleModelsAsync);
        _app.MapGet("/health", HandleHealthAsync);
        _app.MapGet("/metrics", HandleMetricsAsync);
        _app.MapFallback(http => WriteErrorAsync(http.Response, new ApiError(404, $"Unknown endpoint {http.Request.Method} {http.Request.Path}.",
            "invalid_request_error", null, "unknown_url"), CancellationToken.None));
    }

    private async Task HandleCompletionsAsync(HttpContext http)
    {
        CancellationToken aborted = http.RequestAborted;
        using var deadline = new CancellationTokenSource();
        if (_options.MaxRequestTime is { } limit) deadline.CancelAfter(limit);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(aborted, _stopping.Token, deadline.Token);
        CancellationToken token = cts.Token;
        var clock = Stopwatch.StartNew();
        string outcome = "";
        try
        {
            Authorize(http);
            ContextPool<Qwen3VLChatSession> pool = ReadyPool();
            byte[] body = await ReadBodyAsync(http.Request, token).ConfigureAwait(false);
            ChatRequest request = ChatRequest.Parse(body, _options, _model!.DefaultSampling, _model.ContextLength);
            // The template, tokenizer and image preprocessing run before a context is taken: their work is bounded by the
            // body's size, and a client that leaves while they run frees nothing but this request.
            Qwen3VLModel model = _model;
            Qwen3VLChatSession.Prompt prompt = await Task.Run(() =>
                Qwen3VLChatSession.BuildPrompt(model, request.SystemPrompt, request.Turns, _options.SpecialTokensInContent), token)
                .WaitAsync(token).ConfigureAwait(false);
            if (prompt.Ids.Length > model.ContextLength)
            {
                throw new ApiError(400, $"The prompt needs {prompt.Ids.Length} tokens (images included) but the context holds {model.ContextLength}.",
                    "invalid_request_error", "messages", "context_length_exceeded");
            }

            ContextPool<Qwen3VLChatSession>.Lease lease;
            try
            {
                lease = await pool.AcquireAsync(token).ConfigureAwait(false);
            }
            catch (QueueFullException e)
            {
                http.Response.Headers.RetryAfter = "1";
                throw new ApiError(429, e.Message, "rate_limit_error", null, "queue_full");
            }
            catch (ServerStoppingException e)
            {
                throw new ApiError(503, e.Message, "server_error", null, "server_shutting_down");
            }
            catch (OperationCanceledException) when (deadline.IsCancellationRequested && !aborted.IsCancellationRequested && !_stopping.IsCancellationRequested)
            {
                throw TimedOut(); // counted by the pool as cancelled while queued
            }
            catch (OperationCanceledException)
            {
                outcome = "cancelled while queued";
                return; // counted by the pool
            }

            using (lease)
            {
                Qwen3VLChatSession session = lease.Item;
                try
                {
                    session.Reset();
                    session.SystemPrompt = request.SystemPrompt;
                    foreach (ChatTurn turn in request.Turns) session.AddMessage(turn);
                    outcome = request.Stream
                        ? await StreamAsync(http.Response, session, request, prompt, token).ConfigureAwait(false)
                        : await CompleteAsync(http.Response, session, request, prompt, token).ConfigureAwait(false);
                    pool.CountCompleted();
                }
                catch (OperationCanceledException) when (deadline.IsCancellationRequested && !aborted.IsCancellationRequested && !_stopping.IsCancellationRequested)
                {
                    pool.CountCancelled();
                    throw TimedOut();
                }
                catch (OperationCanceledException) when (token.IsCancellationRequested)
                {
                    pool.CountCancelled();
                    outcome = aborted.IsCancellationRequested ? "cancelled (client disconnected)" : "cancelled (shutdown)";
                    if (!aborted.IsCancellationRequested && !http.Response.HasStarted)
                    {
                        await WriteErrorAsync(http.Response, new ApiError(503, "The server is shutting down.", "server_error", null, "server_shutting_down"),
                            CancellationToken.None).ConfigureAwait(false);
                    }
                }
                catch (Exception)
                {
                    pool.CountFailed();
                    throw;
                }
            }
        }
        catch (Exception e) when (e is not OperationCanceledException || !aborted.IsCancellationRequested)
        {
            ApiError error = e is OperationCanceledException && deadline.IsCancellationRequested && !_stopping.IsCancellationRequested
                ? TimedOut() // in preprocessing
                : ErrorFor(e);
            outcome = $"{error.Status} {error.Code ?? error.Type}";
            if (http.Response.HasStarted)
            {
                await WriteEventAsync(http.Response, w => error.WriteJson(w), CancellationToken.None).ConfigureAwait(false);
            }
            else
            {
                await WriteErrorAsync(http.Response, error, CancellationToken.None).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
            outcome = "cancelled (client disconnected)";
        }
        finally
        {
            Log($"POST /v1/chat/completions {outcome} {clock.Elapsed.TotalSeconds:0.000} s");
        }
    }

    private ApiError TimedOut() => new(503, $"The request ran past the server's limit of {_options.MaxRequestTime!.Value.TotalSeconds:0.###} s " +
        "(qwen3vl serve --max-request-seconds).", "server_error", null, "request_timeout");

    /// <summary>
    /// The answer to a failed request: what the client caused is a 4xx naming the parameter; a model fault (NaN logits)
    /// and out-of-memory are 5xx with their own codes; anything else is a bug of the server, answered 500 with a
    /// correlation id that its log line (with the stack trace) carries too.
    /// </summary>
    private ApiError ErrorFor(Exception e)
    {
        switch (e)
        {
            case ApiError a:
                return a;
            case Qwen3VLLimitExceededException:
                return new ApiError(400, e.Message, "invalid_request_error", "messages", "context_length_exceeded");
            case Qwen3VLInputException input:
                return new ApiError(400, input.Message, "invalid_request_error", input.Parameter, "invalid_input");
            case Qwen3VL.Native.Processing.Images.ImageFormatException:
                return new ApiError(400, e.Message, "invalid_request_error", "messages", "invalid_image");
            case OperationCanceledException:
                return new ApiError(503, "The server is shutting down.", "server_error", null, "server_shutting_down");
            case Qwen3VLNumericalException:
                Log("model error: " + e.Message);
                return new ApiError(500, e.Message, "server_error", null, "model_numerical_error");
            case Qwen3VLOutOfMemoryException or OutOfMemoryException:
                Log("out of memory: " + e.Message);
                return new ApiError(503, "The server ran out of memory for this request: " + e.Message, "server_error", null, "out_of_memory");
            default:
                string id = "err_" + Guid.NewGuid().ToString("N")[..12];
                Log($"internal error {id}: {e}");
                return new ApiError(500, $"Internal error (id {id}; the server log has the details).", "server_error", null, "internal_error");
        }
    }

    private static async Task<string> CompleteAsync(HttpResponse response, Qwen3VLChatSession session, ChatRequest request,
        Qwen3VLChatSession.Prompt prompt, CancellationToken token)
    {
        GenerationResult result = await session.GeneratePreparedAsync(prompt, request.Generation, token).ConfigureAwait(false);
        string id = NewId();
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        string model = response.HttpContext.Items["model"] as string ?? "";
        await WriteJsonAsync(response, 200, w =>
        {
            w.WriteStartObject();
            w.WriteString("id", id);
            w.WriteString("object", "chat.completion");
            w.WriteNumber("created", created);
            w.WriteString("model", model);
            w.WriteStartArray("choices");
            w.WriteStartObject();
            w.WriteNumber("index", 0);
            w.WriteStartObject("message");
            w.WriteString("role", "assistant");
            w.WriteString("content", result.Text);
            w.WriteNull("refusal");
            w.WriteEndObject();
            w.WriteNull("logprobs");
            w.WriteString("finish_reason", FinishReason(result.StopReason));
            w.WriteEndObject();
            w.WriteEndArray();
            WriteUsage(w, result);
            w.WriteEndObject();
        }, token).ConfigureAwait(false);
        return $"200 prompt={result.PromptTokens} completion={result.CompletionTokens} {FinishReason(result.StopReason)}";
    }

    private static async Task<string> StreamAsync(HttpResponse response, Qwen3VLChatSession session, ChatRequest request,
        Qwen3VLChatSession.Prompt prompt, CancellationToken token)
    {
        string id = NewId();
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        string model = response.HttpContext.Items["model"] as string ?? "";
        void Header(Utf8JsonWriter w)
        {
            w.WriteStartObject();
            w.WriteString("id", id);
            w.WriteString("object", "chat.completion.chunk");
            w.WriteNumber("created", created);
            w.WriteString("model", model);
        }
        Action<Utf8JsonWriter> Delta(string? role, string? content, string? finish) => w =>
        {
            Header(w);
            w.WriteStartArray("choices");
            w.WriteStartObject();
            w.WriteNumber("index", 0);
            w.WriteStartObject("delta");
            if (role is not null) w.WriteString("role", role);
            if (content is not null) w.WriteString("content", content);
            w.WriteEndObject();
            w.WriteNull("logprobs");
            if (finish is null) w.WriteNull("finish_reason");
            else w.WriteString("finish_reason", finish);
            w.WriteEndObject();
            w.WriteEndArray();
            if (request.IncludeUsage) w.WriteNull("usage");
            w.WriteEndObject();
        };

        IAsyncEnumerator<string> pieces = session.GeneratePreparedStreamingAsync(prompt, request.Generation, token).GetAsyncEnumerator(token);
        try
        {
            // The first piece (or the end) comes before the headers, so a prompt that does not fit is still a clean 400.
            bool more = await pieces.MoveNextAsync().ConfigureAwait(false);
            response.StatusCode = 200;
            response.ContentType = "text/event-stream; charset=utf-8";
            response.Headers.CacheControl = "no-cache";
            response.Headers["X-Accel-Buffering"] = "no";
            await WriteEventAsync(response, Delta("assistant", "", null), token).ConfigureAwait(false);
            while (more)
            {
                await WriteEventAsync(response, Delta(null, pieces.Current, null), token).ConfigureAwait(false);
                more = await pieces.MoveNextAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            await pieces.DisposeAsync().ConfigureAwait(false);
        }
        GenerationResult result = session.LastResult ?? throw new InvalidOperationException("The generation left no result.");
        await WriteEventAsync(response, Delta(null, null, FinishReason(result.StopReason)), token).ConfigureAwait(false);
        if (request.IncludeUsage)
        {
            await WriteEventAsync(response, w =>
            {
                Header(w);
                w.WriteStartArray("choices");
                w.WriteEndArray();
                WriteUsage(w, result);
                w.WriteEndObject();
            }, token).ConfigureAwait(false);
        }
        await response.Body.WriteAsync(DoneEvent, token).ConfigureAwait(false);
        await response.Body.FlushAsync(token).ConfigureAwait(false);
        return $"200 stream prompt={result.PromptTokens} completion={result.CompletionTokens} {FinishReason(result.StopReason)}";
    }

    private static void WriteUsage(Utf8JsonWriter w, GenerationResult result)
    {
        w.WriteStartObject("usage");
        w.WriteNumber("prompt_tokens", result.PromptTokens);
        w.WriteNumber("completion_tokens", result.CompletionTokens);
        w.WriteNumber("total_tokens", result.PromptTokens + result.CompletionTokens);
        w.WriteEndObject();
    }

    private static string FinishReason(StopReason reason) => reason is StopReason.MaxTokens or StopReason.ContextFull ? "length" : "stop";

    private static string NewId() => "chatcmpl-" + Guid.NewGuid().ToString("N");

    private Task HandleModelsAsync(HttpContext http)
    {
        try
        {
            Authorize(http);
        }
        catch (ApiError e)
        {
            return WriteErrorAsync(http.Response, e, CancellationToken.None);
        }
        return WriteJsonAsync(http.Response, 200, w =>
        {
            w.WriteStartObject();
            w.WriteString("object", "list");
            w.WriteStartArray("data");
            w.WriteStartObject();
            w.WriteString("id", _modelId);
            w.WriteString("object", "model");
            w.WriteNumber("created", 0);
            w.WriteString("owned_by", "qwen3vl");
            w.WriteEndObject();
            w.WriteEndArray();
            w.WriteEndObject();
        }, CancellationToken.None);
    }

    private Task HandleHealthAsync(HttpContext http)
    {
        ServerCounters c = Counters;
        ServerState state = _state;
        // A context held past the request time limit (plus a grace) is in a step that does not return: the deadline
        // stops a generation between steps, so a lease that old is stuck, and /health must not say ok.
        TimeSpan stuckAfter = (_options.MaxRequestTime ?? TimeSpan.MaxValue / 2) + _options.StuckGrace;
        int stuck = _pool?.LeaseAges().Count(age => age > stuckAfter) ?? 0;
        bool degraded = state == ServerState.Ready && stuck > 0;
        return WriteJsonAsync(http.Response, state == ServerState.Ready && !degraded ? 200 : 503, w =>
        {
            w.WriteStartObject();
            w.WriteString("status", state switch
            {
                ServerState.Ready when degraded => "degraded",
                ServerState.Ready => "ok",
                ServerState.Loading => "loading",
                ServerState.Failed => "failed",
                _ => "stopping",
            });
            w.WriteString("model", _modelId);
            if (_model is { } m) w.WriteString("device", m.DeviceName);
            if (_loadError is not null) w.WriteString("error", _loadError);
            w.WriteNumber("parallel", _options.Parallel);
            w.WriteNumber("max_queue", _options.MaxQueue);
            w.WriteNumber("active", c.Active);
            w.WriteNumber("queued", c.Queued);
            w.WriteNumber("free_contexts", c.FreeContexts);
            w.WriteNumber("completed", c.Completed);
            w.WriteNumber("cancelled", c.Cancelled);
            w.WriteNumber("rejected", c.Rejected);
            w.WriteNumber("failed", c.Failed);
            w.WriteNumber("stuck_contexts", stuck);
            w.WriteEndObject();
        }, CancellationToken.None);
    }

    private Task HandleMetricsAsync(HttpContext http)
    {
        ServerCounters c = Counters;
        var text = new StringBuilder();
        void Metric(string name, string type, string help, double value) => text
            .Append(CultureInfo.InvariantCulture, $"# HELP {name} {help}\n# TYPE {name} {type}\n{name} {value.ToString(CultureInfo.InvariantCulture)}\n");
        Metric("qwen3vl_ready", "gauge", "1 when the model is loaded and requests are served.", _state == ServerState.Ready ? 1 : 0);
        Metric("qwen3vl_active_contexts", "gauge", "Requests holding a context.", c.Active);
        Metric("qwen3vl_queued_requests", "gauge", "Requests waiting for a context.", c.Queued);
        Metric("qwen3vl_requests_completed_total", "counter", "Requests answered in full.", c.Completed);
        Metric("qwen3vl_requests_cancelled_total", "counter", "Requests stopped by a client disconnect or shutdown.", c.Cancelled);
        Metric("qwen3vl_requests_rejected_total", "counter", "Requests turned away (queue full or not ready).", c.Rejected);
        Metric("qwen3vl_requests_failed_total", "counter", "Requests that failed after validation.", c.Failed);
        http.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
        return http.Response.WriteAsync(text.ToString());
    }

    private void Authorize(HttpContext http)
    {
        http.Items["model"] = _modelId;
        if (_apiKey is null) return;
        string header = http.Request.Headers.Authorization.ToString();
        const string prefix = "Bearer ";
        bool ok = header.StartsWith(prefix, StringComparison.OrdinalIgnoreCase)
            && CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(header[prefix.Length..].Trim()), _apiKey);
        if (!ok) throw new ApiError(401, "Incorrect API key provided.", "invalid_request_error", null, "invalid_api_key");
    }

    private ContextPool<Qwen3VLChatSession> ReadyPool()
    {
        switch (_state)
        {
            case ServerState.Ready when _pool is { } pool:
                return pool;
            case ServerState.Loading:
                throw new ApiError(503, "The model is loading; retry shortly.", "server_error", null, "model_loading");
            case ServerState.Failed:
                throw new ApiError(503, "The model failed to load: " + _loadError, "server_error", null, "model_failed");
            default:
                _pool?.CountRejected();
                throw new ApiError(503, "The server is shutting down.", "server_error", null, "server_shutting_down");
        }
    }

    private async Task<byte[]> ReadBodyAsync(HttpRequest request, CancellationToken token)
    {
        long max = _options.MaxRequestBodyBytes;
        ApiError TooLarge() => new(413, $"The request body is larger than {max} bytes.", "invalid_request_error", null, "request_too_large");
        if (request.ContentLength > max) throw TooLarge();
        using var buffer = new MemoryStream(request.ContentLength is { } n ? (int)n : 16 * 1024);
        byte[] chunk = ArrayPool<byte>.Shared.Rent(64 * 1024);
        try
        {
            int read;
            while ((read = await request.Body.ReadAsync(chunk, token).ConfigureAwait(false)) > 0)
            {
                if (buffer.Length + read > max) throw TooLarge();
                buffer.Write(chunk, 0, read);
            }
        }
        catch (BadHttpRequestException e)
        {
            throw new ApiError(400, "The request body could not be read: " + e.Message);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(chunk);
        }
        return buffer.ToArray();
    }

    private static Task WriteErrorAsync(HttpResponse response, ApiError error, CancellationToken token) =>
        WriteJsonAsync(response, error.Status, error.WriteJson, token);

    private static async Task WriteJsonAsync(HttpResponse response, int status, Action<Utf8JsonWriter> write, CancellationToken token)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer)) write(w);
        response.StatusCode = status;
        response.ContentType = "application/json";
        response.ContentLength = buffer.WrittenCount;
        await response.Body.WriteAsync(buffer.WrittenMemory, token).ConfigureAwait(false);
    }

    private static async Task WriteEventAsync(HttpResponse response, Action<Utf8JsonWriter> write, CancellationToken token)
    {
        var buffer = new ArrayBufferWriter<byte>();
        buffer.Write("data: "u8);
        using (var w = new Utf8JsonWriter(buffer)) write(w);
        buffer.Write("\n\n"u8);
        await response.Body.WriteAsync(buffer.WrittenMemory, token).ConfigureAwait(false);
        await response.Body.FlushAsync(token).ConfigureAwait(false);
    }
}
