using System.Diagnostics;
using System.Globalization;
using Qwen3VL.Native;
using Qwen3VL.Native.Engine;

namespace Qwen3VL.Cli;

/// <summary><c>qwen3vl run</c>: one prompt (with images) through a checkpoint, the answer streamed to stdout, statistics to stderr
/// (or, with --json, one JSON object with the answer and its usage on stdout).</summary>
internal static class RunCommand
{
    internal const string Usage =
        "usage: qwen3vl run [--model DIR] [--image FILE]... [--prompt TEXT] [--json] [options]\n" +
        "  --image FILE         an image to show the model before the prompt (repeatable)\n" +
        "  --prompt TEXT        the question\n" +
        "  --json               print one JSON object (answer, token counts, timings) instead of streaming text\n" +
        CliOptions.CommonUsage;

    private const string DefaultPrompt = "Describe this image in one sentence.";

    internal static int Run(string[] args)
    {
        CliOptions o = CliOptions.Parse(args, static (o, option, value) =>
        {
            switch (option)
            {
                case "--prompt": o.Prompt = value(); return true;
                case "--json": o.Json = true; return true;
                default: return false;
            }
        });
        string modelDir = o.ResolveModelDirectory("run");
        if (o.IsDemo)
        {
            if (o.Images.Count == 0 && o.Prompt is null)
            {
                string sample = Path.Combine(modelDir, "..", "images", "rgb_300x200.png");
                if (File.Exists(sample)) o.Images.Add(Path.GetFullPath(sample));
            }
            o.Prompt ??= DefaultPrompt;
        }
        if (string.IsNullOrEmpty(o.Prompt)) throw new UserErrorException("--prompt TEXT is required with --model.");
        if (!Directory.Exists(modelDir)) throw new UserErrorException($"model folder '{modelDir}' does not exist.");

        // Images first: their errors are the user's, and cheap to report before the weights load.
        List<ChatImage> images = o.Images.Select(CliOptions.ReadImage).ToList();
        using Qwen3VLModel model = o.LoadModel(modelDir);
        var turn = ChatTurn.User(o.Prompt, images);
        int promptTokens = Qwen3VLChatSession.CountPromptTokens(model, o.System, [turn]);
        if (promptTokens >= model.ContextLength)
        {
            throw new UserErrorException($"the prompt has {promptTokens} tokens but the context holds {model.ContextLength} " +
                                         "(prompt and answer); use a larger --context, a shorter prompt or smaller images (--max-pixels).");
        }
        int maxTokens = Math.Min(o.MaxTokens, model.ContextLength - promptTokens);
        GenerationOptions generation = o.BuildGeneration(model, maxTokens);
        // Room for this prompt and answer only: the KV cache is allocated at the session's context length.
        using Qwen3VLChatSession session = model.CreateSession(new ChatSessionOptions { SystemPrompt = o.System, ContextLength = promptTokens + maxTokens });
        session.AddMessage(turn);

        using var cts = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true;
            cts.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        using Stream stdout = Console.OpenStandardOutput();
        var writer = new StreamWriter(stdout, new System.Text.UTF8Encoding(false)) { AutoFlush = true };
        var clock = Stopwatch.StartNew();
        GenerationResult result;
        try
        {
            if (o.Json)
            {
                result = session.GenerateAsync(generation, cts.Token).GetAwaiter().GetResult();
            }
            else
            {
                Task stream = Stream(session, generation, writer, cts.Token);
                stream.GetAwaiter().GetResult();
                result = session.LastResult!;
                writer.WriteLine();
            }
        }
        catch (OperationCanceledException)
        {
            if (!o.Json) writer.WriteLine();
            Console.Error.WriteLine("qwen3vl run: cancelled.");
            Console.Error.WriteLine(string.Format(CultureInfo.InvariantCulture, "prompt tokens:      {0}", promptTokens));
            Console.Error.WriteLine(string.Format(CultureInfo.InvariantCulture, "generated tokens:   {0} (cancelled after {1:F2} s)",
                Math.Max(0, session.CachedTokens - promptTokens), clock.Elapsed.TotalSeconds));
            return 130;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
        if (o.Json)
        {
            CliJsonContext.WriteToStdout(new RunReport(model.ModelId, model.DeviceName, result.Text, result.StopReason.ToString(), result.PromptTokens,
                result.CompletionTokens, result.PrefillTime.TotalSeconds, result.DecodeTime.TotalSeconds, result.PromptTokensPerSecond,
                result.GeneratedTokensPerSecond, PeakRssBytes()), CliJsonContext.Default.RunReport);
        }
        else
        {
            PrintStats(result, model.Backend);
        }
        return 0;
    }

    private static async Task Stream(Qwen3VLChatSession session, GenerationOptions options, TextWriter writer, CancellationToken cancellationToken)
    {
        await foreach (string piece in session.GenerateStreamingAsync(options, cancellationToken).ConfigureAwait(false))
        {
            writer.Write(piece);
        }
    }

    private static void PrintStats(GenerationResult r, Backend backend)
    {
        CultureInfo inv = CultureInfo.InvariantCulture;
        BackendMemoryStats pool = backend.GetMemoryStats();
        long? rss = PeakRssBytes();
        Console.Error.WriteLine(string.Format(inv, "prompt tokens:      {0}", r.PromptTokens));
        Console.Error.WriteLine(string.Format(inv, "prompt tokens/s:    {0:F1} ({1:F2} s, vision tower included)", r.PromptTokensPerSecond, r.PrefillTime.TotalSeconds));
        Console.Error.WriteLine(string.Format(inv, "generated tokens:   {0} (stop: {1})", r.CompletionTokens, r.StopReason));
        Console.Error.WriteLine(string.Format(inv, "generated tokens/s: {0:F1} ({1:F2} s)", r.GeneratedTokensPerSecond, r.DecodeTime.TotalSeconds));
        Console.Error.WriteLine(string.Format(inv, "peak memory:        process RSS {0}, backend pool {1}",
            rss is null ? "n/a" : Mib((ulong)rss.Value), Mib(pool.PeakBytesInUse)));
    }

    private static string Mib(ulong bytes) => (bytes / (1024.0 * 1024)).ToString("0.0", CultureInfo.InvariantCulture) + " MiB";

    /// <summary>Peak resident set size (VmHWM of /proc/self/status) on Linux, else the process peak working set.</summary>
    internal static long? PeakRssBytes()
    {
        try
        {
            if (OperatingSystem.IsLinux() && File.Exists("/proc/self/status"))
            {
                foreach (string line in File.ReadLines("/proc/self/status"))
                {
                    if (!line.StartsWith("VmHWM:", StringComparison.Ordinal)) continue;
                    string[] f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                    if (f.Length >= 2 && long.TryParse(f[1], NumberStyles.Integer, CultureInfo.InvariantCulture, out long kb)) return kb * 1024;
                }
            }
            return Process.GetCurrentProcess().PeakWorkingSet64;
        }
        catch (IOException)
        {
            return null;
        }
    }
}
