using System.Globalization;
using Qwen3VL.Native;
using Qwen3VL.Server;

namespace Qwen3VL.Cli;

/// <summary><c>qwen3vl serve</c>: the OpenAI-compatible HTTP server (Qwen3VL.Server) until Ctrl+C / SIGTERM.</summary>
internal static class ServeCommand
{
    internal const string Usage =
        "usage: qwen3vl serve [--model DIR] [options]\n" +
        "OpenAI-compatible server: POST /v1/chat/completions (stream: true for server-sent events), GET /v1/models,\n" +
        "GET /health (state and counters), GET /metrics (Prometheus text). Point any OpenAI client at http://HOST:PORT/v1.\n" +
        "  --host ADDR            address to bind (default 127.0.0.1; anything else exposes the server to the network)\n" +
        "  --port N               TCP port (default 8080; 0 picks a free one)\n" +
        "  --parallel N           requests generating at once: N contexts on one model (default 1)\n" +
        "  --queue N              requests waiting for a context, first in first out; more get 429 (default 64)\n" +
        "  --api-key KEY          require 'Authorization: Bearer KEY' on /v1 (env QWEN3VL_API_KEY also sets it)\n" +
        "  --allow-local-files    accept image_url parts naming absolute paths or file: URLs on this machine\n" +
        "  --special-tokens-in-content  let special-token text in messages (<|im_start|>, <|image_pad|>) become those\n" +
        "                         tokens, as transformers does; off by default: clients' text stays text and cannot forge a turn\n" +
        "  --max-body-bytes N     largest request body (default 33554432); larger gets 413\n" +
        "  --max-images N         most images per request (default 8)\n" +
        "  --max-image-pixels N   largest image as its header declares, checked before decoding (default 16777216)\n" +
        "  --model-id NAME        model name reported to clients (default: the checkpoint folder's name)\n" +
        "  --max-tokens N         answer length when a request sets no max_tokens (default 512)\n" +
        "  --max-request-seconds N  longest a request may take, queue included; then 503 request_timeout (default 600, 0: none)\n" +
        "  --model DIR, --device D, --threads N, --context N (tokens per context), --min-pixels N, --max-pixels N,\n" +
        "  --weights W, --kv K (the KV cache of every context: auto, f32, bf16, q8), --no-graphs (env QWEN3VL_NO_GRAPHS=1):\n" +
        "  as for run";

    internal static int Run(string[] args)
    {
        string host = "127.0.0.1", modelId = "";
        int port = 8080, parallel = 1, queue = 64, maxImages = 8;
        long maxBody = 32L * 1024 * 1024, maxImagePixels = 16L * 1024 * 1024;
        bool allowLocal = false, maxTokensGiven = false, specialTokensInContent = false;
        int maxRequestSeconds = 600;
        string? apiKey = Environment.GetEnvironmentVariable("QWEN3VL_API_KEY");
        CliOptions o = CliOptions.Parse(args, (_, option, value) =>
        {
            switch (option)
            {
                case "--host": host = value(); return true;
                case "--port": port = Int(option, value(), 0, 65535); return true;
                case "--parallel": parallel = Int(option, value(), 1, 1024); return true;
                case "--queue": queue = Int(option, value(), 0, 1_000_000); return true;
                case "--api-key": apiKey = value(); return true;
                case "--allow-local-files": allowLocal = true; return true;
                case "--special-tokens-in-content": specialTokensInContent = true; return true;
                case "--max-body-bytes": maxBody = Long(option, value(), 1024); return true;
                case "--max-images": maxImages = Int(option, value(), 0, 1024); return true;
                case "--max-image-pixels": maxImagePixels = Long(option, value(), 1); return true;
                case "--model-id": modelId = value(); return true;
                case "--max-request-seconds": maxRequestSeconds = Int(option, value(), 0, 7 * 24 * 3600); return true;
                default: return false;
            }
        });
        maxTokensGiven = args.Contains("--max-tokens");
        if (o.Images.Count > 0) throw new UserErrorException("serve takes images from requests, not --image.");
        string modelDir = o.ResolveModelDirectory("serve");

        var options = new ServerOptions
        {
            ModelPath = modelDir,
            ModelOptions = new Qwen3VLModelOptions
            {
                Device = o.Device,
                Threads = o.Threads,
                ContextLength = o.Context,
                MinPixels = o.MinPixels,
                MaxPixels = o.MaxPixels,
                CudaGraphs = o.CudaGraphs,
                Weights = o.Weights,
                KvCache = o.Kv,
            },
            ModelId = modelId.Length > 0 ? modelId : null,
            Host = host,
            Port = port,
            Parallel = parallel,
            MaxQueue = queue,
            MaxRequestBodyBytes = maxBody,
            MaxImagesPerRequest = maxImages,
            MaxImagePixels = maxImagePixels,
            AllowLocalFiles = allowLocal,
            SpecialTokensInContent = specialTokensInContent,
            MaxRequestTime = maxRequestSeconds == 0 ? null : TimeSpan.FromSeconds(maxRequestSeconds),
            ApiKey = string.IsNullOrEmpty(apiKey) ? null : apiKey,
            DefaultMaxTokens = maxTokensGiven ? o.MaxTokens : 512,
            ConsoleLog = true,
        };
        return RunAsync(options).GetAwaiter().GetResult();
    }

    private static async Task<int> RunAsync(ServerOptions options)
    {
        Qwen3VLServer server;
        try
        {
            server = await Qwen3VLServer.StartAsync(options).ConfigureAwait(false);
        }
        catch (Exception e) when (e is ArgumentException or IOException)
        {
            throw new UserErrorException(e.Message);
        }
        await using (server.ConfigureAwait(false))
        {
            Console.Error.WriteLine($"qwen3vl serve: listening on {server.BaseAddress} (OpenAI base URL {server.BaseAddress}v1), model {server.ModelId} loading; " +
                "Ctrl+C stops");
            if (options.Host is not ("127.0.0.1" or "::1" or "localhost"))
            {
                Console.Error.WriteLine($"qwen3vl serve: warning: bound to {options.Host}, reachable from the network" +
                    (options.ApiKey is null ? " without an API key" : ""));
            }
            await server.WaitForShutdownAsync().ConfigureAwait(false);
            Console.Error.WriteLine("qwen3vl serve: stopping");
        }
        return 0;
    }

    private static int Int(string option, string v, int min, int max)
    {
        if (!int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) || n < min || n > max)
        {
            throw new UserErrorException($"{option}: '{v}' is not an integer from {min} to {max}.");
        }
        return n;
    }

    private static long Long(string option, string v, long min)
    {
        if (!long.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out long n) || n < min)
        {
            throw new UserErrorException($"{option}: '{v}' is not an integer >= {min}.");
        }
        return n;
    }
}
