namespace Qwen3VL.Server;

/// <summary>Settings of a <see cref="Qwen3VLServer"/> (the options of <c>qwen3vl serve</c>).</summary>
public sealed record ServerOptions
{
    /// <summary>The checkpoint folder to serve.</summary>
    public required string ModelPath { get; init; }
    /// <summary>How the model loads (device, threads, image budget). <see cref="Qwen3VL.Native.Qwen3VLModelOptions.ContextLength"/>
    /// is the context of each pooled session (prompt + answer of one request).</summary>
    public Qwen3VL.Native.Qwen3VLModelOptions ModelOptions { get; init; } = new();
    /// <summary>Name reported in responses and by <c>/v1/models</c>; null uses the checkpoint folder's name.</summary>
    public string? ModelId { get; init; }
    /// <summary>Address to bind; loopback by default. Any address other than loopback exposes the server to the network.</summary>
    public string Host { get; init; } = "127.0.0.1";
    /// <summary>TCP port; 0 picks a free one (see <see cref="Qwen3VLServer.BaseAddress"/>).</summary>
    public int Port { get; init; } = 8080;
    /// <summary>Requests generating at once (one model, this many contexts reused from a pool).</summary>
    public int Parallel { get; init; } = 1;
    /// <summary>Requests waiting for a context (served first in, first out); beyond this the server answers 429.</summary>
    public int MaxQueue { get; init; } = 64;
    /// <summary>Largest request body in bytes (413 above it). Default 32 MiB.</summary>
    public long MaxRequestBodyBytes { get; init; } = 32L * 1024 * 1024;
    /// <summary>Most images in one request (all messages together).</summary>
    public int MaxImagesPerRequest { get; init; } = 8;
    /// <summary>Largest image, in pixels as its header declares (checked before decoding). Default 16 megapixels.</summary>
    public long MaxImagePixels { get; init; } = 16L * 1024 * 1024;
    /// <summary>Whether image_url parts may name files on the server (absolute paths or file: URLs). Off by default.</summary>
    public bool AllowLocalFiles { get; init; }
    /// <summary>
    /// Whether special-token text in messages (<c>&lt;|im_start|&gt;</c>, <c>&lt;|image_pad|&gt;</c>) becomes those tokens,
    /// as transformers does. Off by default: a client's text is tokenized as text and cannot forge a turn of another
    /// role (<see cref="Qwen3VL.Native.ChatSessionOptions.SpecialTokensInContent"/>).
    /// </summary>
    public bool SpecialTokensInContent { get; init; }
    /// <summary>Required bearer token of the /v1 endpoints; null for none.</summary>
    public string? ApiKey { get; init; }
    /// <summary>Tokens generated when a request sets no max_tokens; the context's free room bounds it too.</summary>
    public int DefaultMaxTokens { get; init; } = 512;
    /// <summary>
    /// Longest a request may take from its arrival to its last token (queue, preprocessing and generation); past it the
    /// generation is stopped at the next step and the request answered 503 <c>request_timeout</c>. Null for no limit.
    /// Default 10 minutes. A context held more than this plus <see cref="StuckGrace"/> makes <c>/health</c> report
    /// <c>degraded</c> (a step that does not return).
    /// </summary>
    public TimeSpan? MaxRequestTime { get; init; } = TimeSpan.FromMinutes(10);
    /// <summary>How long past <see cref="MaxRequestTime"/> a context may stay held before <c>/health</c> says degraded.</summary>
    public TimeSpan StuckGrace { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>Write a line per request and the start-up messages to the console log.</summary>
    public bool ConsoleLog { get; init; }

    internal void Validate()
    {
        ArgumentException.ThrowIfNullOrEmpty(ModelPath);
        ArgumentOutOfRangeException.ThrowIfLessThan(Parallel, 1, nameof(Parallel));
        ArgumentOutOfRangeException.ThrowIfNegative(MaxQueue, nameof(MaxQueue));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxRequestBodyBytes, 1024, nameof(MaxRequestBodyBytes));
        ArgumentOutOfRangeException.ThrowIfNegative(MaxImagesPerRequest, nameof(MaxImagesPerRequest));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxImagePixels, 1, nameof(MaxImagePixels));
        ArgumentOutOfRangeException.ThrowIfLessThan(DefaultMaxTokens, 1, nameof(DefaultMaxTokens));
        if (MaxRequestTime is { } limit) ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(limit, TimeSpan.Zero, nameof(MaxRequestTime));
        ArgumentOutOfRangeException.ThrowIfLessThan(StuckGrace, TimeSpan.Zero, nameof(StuckGrace));
        if (Port is < 0 or > 65535) throw new ArgumentOutOfRangeException(nameof(Port), Port, "Port must be 0..65535.");
        if (!System.Net.IPAddress.TryParse(Host, out _) && Host != "localhost")
        {
            throw new ArgumentException($"Host '{Host}' is not an IP address (or localhost).", nameof(Host));
        }
    }
}

/// <summary>What the server is doing, as <c>/health</c> reports it.</summary>
public enum ServerState
{
    /// <summary>The model is loading; completions get 503.</summary>
    Loading,
    /// <summary>Serving.</summary>
    Ready,
    /// <summary>The model failed to load; completions get 503.</summary>
    Failed,
    /// <summary>Shutting down; new requests get 503.</summary>
    Stopping,
}

/// <summary>A snapshot of the request counters (<c>/health</c> and <c>/metrics</c>).</summary>
/// <param name="Active">Requests holding a context (generating) now.</param>
/// <param name="Queued">Requests waiting for a context now.</param>
/// <param name="Completed">Requests answered in full.</param>
/// <param name="Cancelled">Requests whose client went away (or that were stopped by shutdown) while queued or generating.</param>
/// <param name="Rejected">Requests turned away because the queue was full (429) or the server was not ready (503).</param>
/// <param name="Failed">Requests that failed (4xx after validation, e.g. prompt too long, or 5xx).</param>
/// <param name="FreeContexts">Contexts in the pool that are free.</param>
public readonly record struct ServerCounters(int Active, int Queued, long Completed, long Cancelled, long Rejected, long Failed, int FreeContexts);
