using System.Globalization;
using Qwen3VL.Native;

namespace Qwen3VL.Cli;

/// <summary>A mistake of the user (bad option, missing model, unreadable image, prompt too long): message and exit code 2.</summary>
internal sealed class UserErrorException(string message) : Exception(message);

/// <summary>The options <c>run</c> and <c>chat</c> share: the model, how it loads, and how answers are generated.</summary>
internal sealed class CliOptions
{
    internal const string CommonUsage =
        "  --model DIR          a Hugging Face Qwen3-VL checkpoint folder (e.g. Qwen3-VL-2B-Instruct); without it the tiny\n" +
        "                       random-weight test checkpoint of the repository runs (env QWEN3VL_DEFAULT_MODEL overrides)\n" +
        "  --system TEXT        system prompt\n" +
        "  --max-tokens N       most tokens per answer (default 256)\n" +
        "  --temperature T, --top-k K, --top-p P, --min-p P, --repetition-penalty R, --presence-penalty P, --seed S\n" +
        "                       sampling; defaults from the checkpoint's generation_config.json; --temperature 0 is greedy\n" +
        "  --stop TEXT          stop when the answer contains TEXT (repeatable)\n" +
        "  --device D           auto (default), cpu, cuda or cuda:N\n" +
        "  --threads N          CPU threads (default: all)\n" +
        "  --context N          tokens of context (prompt + answer; the whole conversation in chat), default 4096\n" +
        "  --min-pixels N, --max-pixels N   image token budget (pixels after resizing; one token per 32x32)\n" +
        "  --weights W          the text decoder's matrices: stored (default: as the checkpoint holds them), bf16, q8\n" +
        "                       (8-bit blocks quantized while loading: ~1.9x fewer bytes per token, ~0.5% weight error)\n" +
        "                       or q4 (4.5-bit groups for the layers, lm_head in q8: ~3.2x fewer bytes, ~7% error)\n" +
        "  --kv K               the KV cache: auto (default: f32 on the CPU and with fp32 math, bf16 on a GPU), f32, bf16\n" +
        "                       or q8 (8-bit blocks: ~1.9x smaller than bf16, ~3.8x than f32, ~0.5% error per cached\n" +
        "                       vector; for long prompts and many images; needs head_dim a multiple of 32)\n" +
        "  --no-graphs          CUDA: run each decoding step as eager ops instead of replaying it as a CUDA graph (slower;\n" +
        "                       for before/after measurements); env QWEN3VL_NO_GRAPHS=1 does the same";

    public string? Model;
    public readonly List<string> Images = [];
    public readonly List<string> Stops = [];
    public string? Prompt;
    public string? System;
    public int MaxTokens = 256;
    public float? Temperature, TopP, MinP, RepetitionPenalty, PresencePenalty;
    public int? TopK;
    public ulong? Seed;
    public int Threads;
    public int Context = 4096;
    public string Device = "auto";
    public long? MinPixels, MaxPixels;
    public bool CudaGraphs = CudaGraphsByDefault;
    public bool Json;
    public WeightFormat Weights = WeightFormat.Stored;
    public KvCacheFormat Kv = KvCacheFormat.Auto;

    /// <summary>
    /// <see cref="Qwen3VLModelOptions.CudaGraphs"/> unless --no-graphs is given: false when the environment sets
    /// QWEN3VL_NO_GRAPHS=1. The command line keeps honouring that variable (scripts such as tools/device/gpu-run.sh use it);
    /// the library reads no environment for it, only the option.
    /// </summary>
    internal static bool CudaGraphsByDefault => Environment.GetEnvironmentVariable("QWEN3VL_NO_GRAPHS") != "1";

    /// <summary>Whether no --model was given and the repository's tiny test checkpoint stands in.</summary>
    public bool IsDemo => Model is null;

    /// <summary>Parses the options; <paramref name="extra"/> handles command-specific ones (returns false for unknown).</summary>
    /// <exception cref="UserErrorException">An option is unknown or its value is invalid.</exception>
    internal static CliOptions Parse(string[] args, Func<CliOptions, string, Func<string>, bool>? extra = null)
    {
        var o = new CliOptions();
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            string Value()
            {
                if (i + 1 >= args.Length) throw new UserErrorException($"{a} needs a value.");
                return args[++i];
            }
            int Int(int min)
            {
                string v = Value();
                if (!int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) || n < min) throw new UserErrorException($"{a}: '{v}' is not an integer >= {min}.");
                return n;
            }
            long Long(long min)
            {
                string v = Value();
                if (!long.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out long n) || n < min) throw new UserErrorException($"{a}: '{v}' is not an integer >= {min}.");
                return n;
            }
            float Float()
            {
                string v = Value();
                if (!float.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out float f) || !float.IsFinite(f)) throw new UserErrorException($"{a}: '{v}' is not a number.");
                return f;
            }
            // A value one of the Parse* functions reads: their ArgumentException (naming the option) is a user error.
            T Parsed<T>(Func<string, T> parse)
            {
                try
                {
                    return parse(Value());
                }
                catch (ArgumentException e)
                {
                    throw new UserErrorException(e.Message);
                }
            }
            switch (a)
            {
                case "--model": o.Model = Value(); break;
                case "--system": o.System = Value(); break;
                case "--max-tokens": o.MaxTokens = Int(1); break;
                case "--temperature": o.Temperature = Float(); break;
                case "--top-k": o.TopK = Int(0); break;
                case "--top-p": o.TopP = Float(); break;
                case "--min-p": o.MinP = Float(); break;
                case "--repetition-penalty": o.RepetitionPenalty = Float(); break;
                case "--presence-penalty": o.PresencePenalty = Float(); break;
                case "--stop": o.Stops.Add(Value()); break;
                case "--seed":
                    string sv = Value();
                    if (!ulong.TryParse(sv, NumberStyles.Integer, CultureInfo.InvariantCulture, out ulong seed)) throw new UserErrorException($"--seed: '{sv}' is not a non-negative integer.");
                    o.Seed = seed;
                    break;
                case "--threads": o.Threads = Int(0); break;
                case "--context": o.Context = Int(2); break;
                case "--device": o.Device = Value(); break;
                case "--min-pixels": o.MinPixels = Long(1); break;
                case "--max-pixels": o.MaxPixels = Long(1); break;
                case "--image": o.Images.Add(Value()); break;
                case "--no-graphs": o.CudaGraphs = false; break;
                case "--weights": o.Weights = Parsed(ParseWeights); break;
                case "--kv": o.Kv = Parsed(ParseKv); break;
                default:
                    if (extra is null || !extra(o, a, Value)) throw new UserErrorException("unknown option: " + a);
                    break;
            }
        }
        if (o.TopP is { } p && !(p > 0 && p <= 1)) throw new UserErrorException("--top-p must be in (0, 1].");
        if (o.MinP is { } m && !(m >= 0 && m <= 1)) throw new UserErrorException("--min-p must be in [0, 1].");
        if (o.RepetitionPenalty is { } r && !(r > 0)) throw new UserErrorException("--repetition-penalty must be > 0.");
        if (o.MinPixels > o.MaxPixels) throw new UserErrorException("--min-pixels must not exceed --max-pixels.");
        if (o.MinPixels > Qwen3VL.Native.Processing.Images.ImageProcessor.MaxResizedPixels)
        {
            throw new UserErrorException($"--min-pixels must not exceed {Qwen3VL.Native.Processing.Images.ImageProcessor.MaxResizedPixels} (the largest image the engine resizes to).");
        }
        return o;
    }

    /// <summary>The value of --weights.</summary>
    /// <exception cref="ArgumentException">Not a format this build has.</exception>
    internal static WeightFormat ParseWeights(string value) => value.ToLowerInvariant() switch
    {
        "stored" => WeightFormat.Stored,
        "bf16" => WeightFormat.BF16,
        "q8" => WeightFormat.Q8,
        "q4" => WeightFormat.Q4,
        _ => throw new ArgumentException($"--weights: '{value}' is not one of stored, bf16, q8, q4."),
    };

    /// <summary>The value of --kv.</summary>
    /// <exception cref="ArgumentException">Not a KV cache format this build has.</exception>
    internal static KvCacheFormat ParseKv(string value) => value.ToLowerInvariant() switch
    {
        "auto" => KvCacheFormat.Auto,
        "f32" => KvCacheFormat.F32,
        "bf16" => KvCacheFormat.BF16,
        "q8" => KvCacheFormat.Q8,
        _ => throw new ArgumentException($"--kv: '{value}' is not one of auto, f32, bf16, q8."),
    };

    /// <summary>A refusal of the library that names <see cref="Qwen3VLModelOptions.KvCache"/> as the option --kv: the message
    /// with the flag in front (e.g. q8 for a model whose head_dim is not a multiple of 32); other exceptions as they are.</summary>
    internal static string DescribeKvRefusal(ArgumentException e, KvCacheFormat kv) =>
        e.ParamName == nameof(Qwen3VLModelOptions.KvCache) ? $"--kv {kv.ToString().ToLowerInvariant()}: {e.Message}" : e.Message;

    /// <summary>The checkpoint folder: --model, else the repository's tiny test checkpoint (with a note on stderr).</summary>
    /// <exception cref="UserErrorException">No folder can be found.</exception>
    internal string ResolveModelDirectory(string command)
    {
        if (Model is not null) return Model;
        Console.Error.WriteLine("note: no --model given, so this runs the tiny test checkpoint shipped with the repository. It has random");
        Console.Error.WriteLine("      weights and its answer is gibberish; it only shows that the pipeline works. For real answers point it at a");
        Console.Error.WriteLine($"      Qwen3-VL checkpoint: qwen3vl {command} --model /path/to/Qwen3-VL-2B-Instruct ...");
        return DefaultModel() ?? throw new UserErrorException(
            "the shipped test checkpoint (tests/fixtures/tiny-tied/model) was not found next to this program; pass --model DIR or set QWEN3VL_DEFAULT_MODEL.");
    }

    /// <summary>Loads the model, with a progress bar on a terminal; folder problems become user errors.</summary>
    internal Qwen3VLModel LoadModel(string directory, int? contextLength = null)
    {
        var options = new Qwen3VLModelOptions
        {
            Device = Device,
            Threads = Threads,
            ContextLength = contextLength ?? Context,
            MinPixels = MinPixels,
            MaxPixels = MaxPixels,
            CudaGraphs = CudaGraphs,
            Weights = Weights,
            KvCache = Kv,
        };
        using var bar = LoadProgressBar.ForStandardError();
        try
        {
            return Qwen3VLModel.LoadAsync(directory, options, bar).GetAwaiter().GetResult();
        }
        catch (ArgumentException e)
        {
            throw new UserErrorException(DescribeKvRefusal(e, Kv));
        }
        catch (Exception e) when (e is DirectoryNotFoundException or FileNotFoundException or InvalidDataException)
        {
            throw new UserErrorException(e.Message);
        }
    }

    /// <summary>Reads the images named by --image / /image.</summary>
    /// <exception cref="UserErrorException">A file is missing or not a readable image.</exception>
    internal static ChatImage ReadImage(string path)
    {
        try
        {
            return ChatImage.FromFile(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or Qwen3VL.Native.Processing.Images.ImageFormatException)
        {
            throw new UserErrorException($"cannot read image '{path}': {e.Message}");
        }
    }

    /// <summary>Generation options: the model's sampling defaults with the options given on top.</summary>
    internal GenerationOptions BuildGeneration(Qwen3VLModel model, int? maxTokens = null)
    {
        SamplingOptions s = model.DefaultSampling;
        if (Temperature is { } t) s = s with { Temperature = t };
        if (TopK is { } k) s = s with { TopK = k };
        if (TopP is { } p) s = s with { TopP = p };
        if (MinP is { } m) s = s with { MinP = m };
        if (RepetitionPenalty is { } r) s = s with { RepetitionPenalty = r };
        if (PresencePenalty is { } pp) s = s with { PresencePenalty = pp };
        if (Seed is { } seed) s = s with { Seed = seed };
        // A sampling option given without a temperature on a greedy default samples at temperature 1.
        if (s.Temperature <= 0 && Temperature is null && (TopK is not null || TopP is not null || MinP is not null)) s = s with { Temperature = 1 };
        s.Validate();
        return new GenerationOptions { Sampling = s, MaxNewTokens = maxTokens ?? MaxTokens, StopSequences = Stops.Count == 0 ? null : Stops.ToArray() };
    }

    /// <summary>The default checkpoint: env QWEN3VL_DEFAULT_MODEL, else tests/fixtures/tiny-tied/model of the repository.</summary>
    private static string? DefaultModel()
    {
        string? env = Environment.GetEnvironmentVariable("QWEN3VL_DEFAULT_MODEL");
        if (!string.IsNullOrEmpty(env)) return env;
        string? root = FindRepoRoot();
        return root is null ? null : Path.Combine(root, "tests", "fixtures", "tiny-tied", "model");
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
