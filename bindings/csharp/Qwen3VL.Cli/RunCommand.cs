using System.Diagnostics;
using System.Globalization;
using Qwen3VL.Native;
using Qwen3VL.Native.Inference;
using Qwen3VL.Native.Model;
using Qwen3VL.Native.Processing;
using Qwen3VL.Native.Processing.Templates;
using Qwen3VL.Native.Processing.Tokenization;

namespace Qwen3VL.Cli;

/// <summary><c>qwen3vl run</c>: one prompt (with images) through a checkpoint, the answer streamed to stdout, statistics to stderr.</summary>
internal static class RunCommand
{
    internal const string Usage =
        "usage: qwen3vl run [--model DIR] [--image FILE]... [--prompt TEXT] [--system TEXT] [--max-tokens N]\n" +
        "                   [--temperature T] [--top-k K] [--top-p P] [--min-p P] [--repetition-penalty R]\n" +
        "                   [--presence-penalty P] [--seed S] [--threads N] [--context N]\n" +
        "  --model DIR     a Hugging Face Qwen3-VL checkpoint folder (e.g. Qwen3-VL-2B-Instruct); without it the tiny\n" +
        "                  random-weight test checkpoint of the repository runs (env QWEN3VL_DEFAULT_MODEL overrides)\n" +
        "  sampling        defaults from the checkpoint's generation_config.json; --temperature 0 is greedy\n" +
        "  --context N     tokens of context (prompt + answer), default 4096";

    private const string DefaultPrompt = "Describe this image in one sentence.";

    private sealed class Options
    {
        public string? Model;
        public readonly List<string> Images = [];
        public string? Prompt;
        public string? System;
        public int MaxTokens = 256;
        public float? Temperature, TopP, MinP, RepetitionPenalty, PresencePenalty;
        public int? TopK;
        public ulong? Seed;
        public int Threads;
        public int Context = 4096;
    }

    internal static int Run(string[] args)
    {
        Options o;
        try
        {
            o = Parse(args);
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine("qwen3vl run: " + e.Message);
            Console.Error.WriteLine(Usage);
            return 2;
        }

        bool demo = o.Model is null;
        string? modelDir = o.Model ?? DefaultModel();
        if (demo)
        {
            Console.Error.WriteLine("note: no --model given, so this runs the tiny test checkpoint shipped with the repository. It has random");
            Console.Error.WriteLine("      weights and its answer is gibberish; it only shows that the pipeline works. For real answers point it at a");
            Console.Error.WriteLine("      Qwen3-VL checkpoint: qwen3vl run --model /path/to/Qwen3-VL-2B-Instruct --image photo.jpg --prompt \"...\"");
            if (modelDir is null)
            {
                Console.Error.WriteLine("qwen3vl run: error: the shipped test checkpoint (tests/fixtures/tiny-tied/model) was not found next to this program; pass --model DIR or set QWEN3VL_DEFAULT_MODEL.");
                return 2;
            }
            if (o.Images.Count == 0 && o.Prompt is null)
            {
                string sample = Path.Combine(modelDir, "..", "images", "rgb_300x200.png");
                if (File.Exists(sample)) o.Images.Add(Path.GetFullPath(sample));
            }
            o.Prompt ??= DefaultPrompt;
        }
        if (!Directory.Exists(modelDir))
        {
            Console.Error.WriteLine($"qwen3vl run: error: model folder '{modelDir}' does not exist.");
            return 2;
        }
        if (!File.Exists(Path.Combine(modelDir, "config.json")))
        {
            Console.Error.WriteLine($"qwen3vl run: error: '{modelDir}' is not a Hugging Face checkpoint folder (no config.json).");
            return 2;
        }
        if (string.IsNullOrEmpty(o.Prompt))
        {
            Console.Error.WriteLine("qwen3vl run: error: --prompt TEXT is required with --model.");
            return 2;
        }

        // Tokenizer and images first: their errors are the user's, and cheap to report before the weights load.
        QwenTokenizer tokenizer;
        try
        {
            tokenizer = QwenTokenizer.FromDirectory(modelDir, FindFallbackTokenizer());
        }
        catch (Exception e) when (e is IOException or InvalidDataException or System.Text.Json.JsonException or NotSupportedException)
        {
            Console.Error.WriteLine($"qwen3vl run: error: cannot load the tokenizer of '{modelDir}': {e.Message}");
            return 2;
        }
        ImageProcessor processor;
        try
        {
            processor = ImageProcessor.FromCheckpointDirectory(modelDir);
        }
        catch (Exception e) when (e is IOException or InvalidDataException or ArgumentException)
        {
            Console.Error.WriteLine($"qwen3vl run: error: cannot read the image processor settings of '{modelDir}': {e.Message}");
            return 2;
        }
        var images = new List<ProcessedImage>();
        foreach (string path in o.Images)
        {
            try
            {
                images.Add(processor.Process(path));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ImageFormatException or ArgumentException)
            {
                Console.Error.WriteLine($"qwen3vl run: error: cannot read image '{path}': {e.Message}");
                return 2;
            }
        }

        var messages = new List<ChatMessage>();
        if (!string.IsNullOrEmpty(o.System)) messages.Add(ChatMessage.System(o.System));
        var parts = images.Select((_, i) => ContentPart.FromImage(o.Images[i])).ToList();
        parts.Add(ContentPart.FromText(o.Prompt));
        messages.Add(ChatMessage.User([.. parts]));
        int[] promptIds = Qwen3VLChatTemplate.BuildPromptIds(tokenizer, messages, addGenerationPrompt: true, i => images[i].TokenCount);

        using Backend backend = Backend.CreateCpu(o.Threads);
        using Qwen3VLModel model = Qwen3VLModel.Load(modelDir, backend);
        int contextLimit = (int)Math.Min(o.Context, model.Config.MaxPositionEmbeddings);
        if (promptIds.Length >= contextLimit)
        {
            Console.Error.WriteLine($"qwen3vl run: error: the prompt has {promptIds.Length} tokens but the context holds {contextLimit} " +
                                    "(prompt and answer); use a larger --context, a shorter prompt or smaller images.");
            return 2;
        }
        int maxTokens = Math.Min(o.MaxTokens, contextLimit - promptIds.Length);
        SamplingOptions sampling = BuildSampling(o, modelDir);
        using Qwen3VLContext context = model.CreateContext(promptIds.Length + Math.Max(1, maxTokens));

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
        GenerationResult? result = null;
        try
        {
            result = new Generator(context, tokenizer).Generate(promptIds, images.Count == 0 ? null : VisionInput.FromImages(images),
                new GenerationOptions { MaxNewTokens = maxTokens, Sampling = sampling }, writer.Write, cts.Token);
        }
        catch (OperationCanceledException)
        {
            writer.WriteLine();
            Console.Error.WriteLine("qwen3vl run: cancelled.");
            PrintStats(promptIds.Length, null, context.Length - promptIds.Length, clock.Elapsed, backend);
            return 130;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
        writer.WriteLine();
        PrintStats(promptIds.Length, result, result.TokenIds.Count, clock.Elapsed, backend);
        return 0;
    }

    private static void PrintStats(int promptTokens, GenerationResult? r, int generated, TimeSpan total, Backend backend)
    {
        CultureInfo inv = CultureInfo.InvariantCulture;
        BackendMemoryStats pool = backend.GetMemoryStats();
        long? rss = PeakRssBytes();
        Console.Error.WriteLine(string.Format(inv, "prompt tokens:      {0}", promptTokens));
        if (r is not null)
        {
            Console.Error.WriteLine(string.Format(inv, "prompt tokens/s:    {0:F1} ({1:F2} s, vision tower included)", r.PromptTokensPerSecond, r.PrefillTime.TotalSeconds));
            Console.Error.WriteLine(string.Format(inv, "generated tokens:   {0} (stop: {1})", generated, r.StopReason));
            Console.Error.WriteLine(string.Format(inv, "generated tokens/s: {0:F1} ({1:F2} s)", r.GeneratedTokensPerSecond, r.DecodeTime.TotalSeconds));
        }
        else
        {
            Console.Error.WriteLine(string.Format(inv, "generated tokens:   {0} (cancelled after {1:F2} s)", generated, total.TotalSeconds));
        }
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

    private static SamplingOptions BuildSampling(Options o, string modelDir)
    {
        SamplingOptions s;
        try
        {
            s = SamplingOptions.FromGenerationConfig(modelDir);
        }
        catch (InvalidDataException e)
        {
            Console.Error.WriteLine("qwen3vl run: warning: " + e.Message + "; using greedy decoding.");
            s = SamplingOptions.Greedy;
        }
        if (o.Temperature is { } t) s = s with { Temperature = t };
        if (o.TopK is { } k) s = s with { TopK = k };
        if (o.TopP is { } p) s = s with { TopP = p };
        if (o.MinP is { } m) s = s with { MinP = m };
        if (o.RepetitionPenalty is { } r) s = s with { RepetitionPenalty = r };
        if (o.PresencePenalty is { } pp) s = s with { PresencePenalty = pp };
        if (o.Seed is { } seed) s = s with { Seed = seed };
        // A sampling option given without a temperature on a greedy default samples at temperature 1.
        if (s.Temperature <= 0 && o.Temperature is null && (o.TopK is not null || o.TopP is not null || o.MinP is not null)) s = s with { Temperature = 1 };
        s.Validate();
        return s;
    }

    private static Options Parse(string[] args)
    {
        var o = new Options();
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            string Value()
            {
                if (i + 1 >= args.Length) throw new ArgumentException($"{a} needs a value.");
                return args[++i];
            }
            int Int(int min)
            {
                string v = Value();
                if (!int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) || n < min) throw new ArgumentException($"{a}: '{v}' is not an integer >= {min}.");
                return n;
            }
            float Float()
            {
                string v = Value();
                if (!float.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out float f) || !float.IsFinite(f)) throw new ArgumentException($"{a}: '{v}' is not a number.");
                return f;
            }
            switch (a)
            {
                case "--model": o.Model = Value(); break;
                case "--image": o.Images.Add(Value()); break;
                case "--prompt": o.Prompt = Value(); break;
                case "--system": o.System = Value(); break;
                case "--max-tokens": o.MaxTokens = Int(1); break;
                case "--temperature": o.Temperature = Float(); break;
                case "--top-k": o.TopK = Int(0); break;
                case "--top-p": o.TopP = Float(); break;
                case "--min-p": o.MinP = Float(); break;
                case "--repetition-penalty": o.RepetitionPenalty = Float(); break;
                case "--presence-penalty": o.PresencePenalty = Float(); break;
                case "--seed":
                    string sv = Value();
                    if (!ulong.TryParse(sv, NumberStyles.Integer, CultureInfo.InvariantCulture, out ulong seed)) throw new ArgumentException($"--seed: '{sv}' is not a non-negative integer.");
                    o.Seed = seed;
                    break;
                case "--threads": o.Threads = Int(0); break;
                case "--context": o.Context = Int(2); break;
                default: throw new ArgumentException("unknown option: " + a);
            }
        }
        if (o.TopP is { } p && !(p > 0 && p <= 1)) throw new ArgumentException("--top-p must be in (0, 1].");
        if (o.MinP is { } m && !(m >= 0 && m <= 1)) throw new ArgumentException("--min-p must be in [0, 1].");
        if (o.RepetitionPenalty is { } r && !(r > 0)) throw new ArgumentException("--repetition-penalty must be > 0.");
        return o;
    }

    /// <summary>The default checkpoint: env QWEN3VL_DEFAULT_MODEL, else tests/fixtures/tiny-tied/model of the repository.</summary>
    private static string? DefaultModel()
    {
        string? env = Environment.GetEnvironmentVariable("QWEN3VL_DEFAULT_MODEL");
        if (!string.IsNullOrEmpty(env)) return env;
        string? root = FindRepoRoot();
        return root is null ? null : Path.Combine(root, "tests", "fixtures", "tiny-tied", "model");
    }

    private static string? FindFallbackTokenizer()
    {
        string? root = FindRepoRoot();
        string? path = root is null ? null : Path.Combine(root, ".deps", "tokenizer", "tokenizer.json");
        return path is not null && File.Exists(path) ? path : null;
    }

    /// <summary>The first folder holding Qwen3VL.sln above the program (AppContext.BaseDirectory), else above the working directory.</summary>
    private static string? FindRepoRoot()
    {
        foreach (string start in new[] { AppContext.BaseDirectory, Environment.CurrentDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "Qwen3VL.sln"))) return dir.FullName;
            }
        }
        return null;
    }
}
