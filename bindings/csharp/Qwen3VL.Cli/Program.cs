using Qwen3VL.Native;
using Qwen3VL.Native.Engine;
using Qwen3VL.Native.Model;

namespace Qwen3VL.Cli;

/// <summary>The <c>qwen3vl</c> command line.</summary>
internal static class Program
{
    private const string Usage =
        "usage: qwen3vl [info [--json] [--model DIR] | run [options] | chat [options] | bench [options] | serve [options] | quantize [options]]\n" +
        "  info         print the native build and device report (--model DIR adds a checkpoint summary)\n" +
        "  info --json  the same report as JSON\n" +
        "  run          answer a prompt (with images) from a Qwen3-VL checkpoint; 'qwen3vl run --help' for options\n" +
        "  chat         talk with a checkpoint interactively (/image PATH, /reset, /exit); 'qwen3vl chat --help'\n" +
        "  bench        prefill/decode/image-encode speed on a checkpoint; 'qwen3vl bench --help' for options\n" +
        "  serve        OpenAI-compatible HTTP server (/v1/chat/completions, /v1/models, /health); 'qwen3vl serve --help'\n" +
        "  quantize     write a checkpoint with the text decoder in q8, loaded later with no quantization step\n" +
        "  --version    print the version\n" +
        "  --help       print this help\n" +
        "environment: QWEN3VL_NATIVE_LIBRARY=<path>, QWEN3VL_DEVICE=cpu, QWEN3VL_LOG=1, QWEN3VL_NO_GRAPHS=1 (as --no-graphs)\n" +
        "exit codes: 0 done, 1 the engine or model failed (native error, NaN logits, out of memory), 2 the command line or\n" +
        "  its input was refused (option, file, image, prompt), 70 a bug in qwen3vl, 130 cancelled (Ctrl-C)";

    private static int Main(string[] args)
    {
        try
        {
            return Run(args);
        }
        catch (Exception e)
        {
            (int code, string text) = Describe(e);
            string command = args.Length > 0 && args[0] is "run" or "chat" or "info" or "serve" or "bench" or "quantize" ? args[0] + ": " : "";
            Console.Error.WriteLine($"qwen3vl {command}{text}");
            return code;
        }
    }

    /// <summary>Exit code: the command did what was asked.</summary>
    internal const int ExitOk = 0;
    /// <summary>Exit code: the engine or the model failed (a native error, NaN logits, out of memory, a file that cannot be read).</summary>
    internal const int ExitFailed = 1;
    /// <summary>Exit code: the command line or its input was refused (an option, a missing or corrupt file, an image, a prompt).</summary>
    internal const int ExitRefused = 2;
    /// <summary>Exit code: a bug in qwen3vl (an exception it did not expect); the line names it.</summary>
    internal const int ExitInternal = 70;
    /// <summary>Exit code: cancelled with Ctrl-C.</summary>
    internal const int ExitCancelled = 130;

    /// <summary>
    /// The one error path of the command line: every failure becomes an exit code and one line of text (no stack trace).
    /// <c>chat</c> uses the same words for a message it refuses and goes on.
    /// </summary>
    internal static (int Code, string Text) Describe(Exception e) => e switch
    {
        UserErrorException => (ExitRefused, "error: " + e.Message),
        Qwen3VLInputException => (ExitRefused, "error: " + e.Message),
        Qwen3VL.Native.Processing.Images.ImageFormatException => (ExitRefused, "error: " + e.Message),
        InvalidDataException or FileNotFoundException or DirectoryNotFoundException => (ExitRefused, "error: " + e.Message),
        Qwen3VLNumericalException => (ExitFailed, "error: " + e.Message),
        Qwen3VLException => (ExitFailed, "error: " + e.Message),
        DllNotFoundException => (ExitFailed, "error: the native library could not be loaded: " + e.Message),
        OutOfMemoryException => (ExitFailed, "error: out of host memory: " + e.Message),
        IOException or UnauthorizedAccessException => (ExitFailed, "error: " + e.Message),
        OperationCanceledException => (ExitCancelled, "cancelled."),
        _ => (ExitInternal, $"internal error (a bug in qwen3vl; please report it): {e.GetType().Name}: {e.Message}"),
    };

    private static int Run(string[] args)
    {
        if (args.Length == 0)
        {
            PrintReport(NativeInfo.Query(), null);
            Console.WriteLine();
            Console.WriteLine("Run a model with 'qwen3vl run --model /path/to/Qwen3-VL-2B-Instruct --image FILE --prompt TEXT'");
            Console.WriteLine("('qwen3vl run' alone runs the tiny random-weight test checkpoint of the repository).");
            return 0;
        }
        switch (args[0])
        {
            case "-h":
            case "--help":
            case "help":
                Console.WriteLine(Usage);
                return 0;
            case "--version":
                Console.WriteLine(typeof(Program).Assembly.GetName().Version?.ToString(3) ?? "unknown");
                return 0;
            case "info":
                bool json = false;
                string? modelDir = null;
                for (int i = 1; i < args.Length; i++)
                {
                    if (args[i] == "--json") json = true;
                    else if (args[i] == "--model" && i + 1 < args.Length) modelDir = args[++i];
                    else return UsageError("unknown option for info: " + args[i]);
                }
                NativeInfo info = NativeInfo.Query();
                ModelReport? model = modelDir is null ? null : DescribeModel(modelDir);
                if (json) PrintJson(info, model);
                else PrintReport(info, model);
                return 0;
            case "run":
                return Subcommand(args, RunCommand.Usage, RunCommand.Run);
            case "chat":
                return Subcommand(args, ChatCommand.Usage, ChatCommand.Run);
            case "serve":
                return Subcommand(args, ServeCommand.Usage, ServeCommand.Run);
            case "bench":
                return Subcommand(args, BenchCommand.Usage, BenchCommand.Run);
            case "quantize":
                return Subcommand(args, QuantizeCommand.Usage, QuantizeCommand.Run);
            default:
                return UsageError("unknown command: " + args[0]);
        }
    }

    /// <summary>Prints <paramref name="usage"/> for -h/--help, else runs the subcommand with the arguments after its name.</summary>
    private static int Subcommand(string[] args, string usage, Func<string[], int> run)
    {
        if (args.Skip(1).Any(a => a is "-h" or "--help"))
        {
            Console.WriteLine(usage);
            return 0;
        }
        return run(args[1..]);
    }

    private static int UsageError(string message)
    {
        Console.Error.WriteLine("qwen3vl: " + message);
        Console.Error.WriteLine(Usage);
        return 2;
    }

    private static string Gib(ulong bytes) => (bytes / (1024.0 * 1024 * 1024)).ToString("0.0", System.Globalization.CultureInfo.InvariantCulture) + " GiB";

    /// <summary>A summary of a checkpoint folder from its configuration and safetensors headers (no weights are loaded).</summary>
    private static ModelReport DescribeModel(string directory)
    {
        ModelFolder folder;
        try
        {
            folder = ModelFolder.Inspect(directory);
        }
        catch (Exception e) when (e is DirectoryNotFoundException or FileNotFoundException or InvalidDataException)
        {
            throw new UserErrorException(e.Message);
        }
        using Checkpoint checkpoint = Checkpoint.Open(folder.Directory);
        Qwen3VL.Native.Model.ModelConfig c = Qwen3VL.Native.Model.ModelConfig.FromCheckpoint(checkpoint);
        var template = Qwen3VL.Native.Processing.Templates.Qwen3VLChatTemplate.Detect(folder.Directory);
        return new ModelReport(folder.Directory, folder.TensorCount, folder.TotalBytes, c.TextNumLayers, c.TextHiddenSize, c.TextNumHeads,
            c.TextNumKvHeads, c.VocabSize, c.MaxPositionEmbeddings, c.VisionDepth, c.TieWordEmbeddings, template.Message);
    }

    private static void PrintReport(NativeInfo info, ModelReport? model)
    {
        var backends = new List<string>();
        if (info.HasCpuBackend) backends.Add("cpu");
        if (info.HasCudaBackend) backends.Add("cuda");
        Console.WriteLine($"qwen3vl {info.Version}");
        Console.WriteLine($"native library:  {info.LibraryPath ?? "unknown"}");
        Console.WriteLine($"chosen because:  {info.LibraryResolution ?? "unknown"}");
        Console.WriteLine($"compiler:        {info.Compiler}");
        Console.WriteLine($"backends:        {string.Join(", ", backends)}");
        Console.WriteLine($"logical cpus:    {info.LogicalCpus}");
        Console.WriteLine($"cpu features:    {(info.CpuFeatures.Count == 0 ? "none" : string.Join(" ", info.CpuFeatures))}");
        Console.WriteLine($"cpu kernels:     {info.CpuKernels}");
        Console.WriteLine($"cuda runtime:    {NativeInfo.FormatCudaVersion(info.CudaRuntimeVersion)}");
        Console.WriteLine($"cuda driver:     {NativeInfo.FormatCudaVersion(info.CudaDriverVersion)}");
        Console.WriteLine($"cuda archs:      {(info.CudaArchitectures.Length == 0 ? "none" : info.CudaArchitectures)}");
        Console.WriteLine($"cuda devices:    {info.CudaDevices.Count}");
        foreach (CudaDeviceInfo d in info.CudaDevices)
        {
            Console.WriteLine($"  [{d.Index}] {d.Name}, compute {d.ComputeMajor}.{d.ComputeMinor}, {d.Multiprocessors} SMs, " +
                $"{Gib(d.TotalMemory)} total, {Gib(d.FreeMemory)} free");
        }
        if (model is null) return;
        Console.WriteLine($"model:           {model.Directory}");
        Console.WriteLine($"  weights:       {model.Tensors} tensors, {model.WeightBytes / 1e9:0.00} GB");
        Console.WriteLine($"  text:          {model.TextLayers} layers, hidden {model.HiddenSize}, {model.AttentionHeads} heads ({model.KvHeads} kv), " +
                          $"vocab {model.VocabSize}, max positions {model.MaxPositionEmbeddings}{(model.TieWordEmbeddings ? ", tied embeddings" : "")}");
        Console.WriteLine($"  vision:        {model.VisionBlocks} blocks");
        Console.WriteLine($"  chat template: {model.ChatTemplate}");
    }

    private static void PrintJson(NativeInfo info, ModelReport? model)
    {
        var backends = new List<string>();
        if (info.HasCpuBackend) backends.Add("cpu");
        if (info.HasCudaBackend) backends.Add("cuda");
        var report = new InfoReport(info.Version, info.LibraryPath, info.LibraryResolution, info.Compiler, backends, info.LogicalCpus,
            info.CpuFeatures, info.CpuKernels, info.CudaRuntimeVersion, info.CudaDriverVersion, info.CudaArchitectures,
            info.CudaDevices.Select(d => new DeviceReport(d.Index, d.Name, $"{d.ComputeMajor}.{d.ComputeMinor}", d.Multiprocessors,
                d.TotalMemory, d.FreeMemory)).ToList(), model);
        CliJsonContext.WriteToStdout(report, CliJsonContext.Default.InfoReport);
    }
}
