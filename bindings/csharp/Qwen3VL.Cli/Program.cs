using System.Text.Json;
using Qwen3VL.Native;

namespace Qwen3VL.Cli;

/// <summary>The <c>qwen3vl</c> command line.</summary>
internal static class Program
{
    private const string Usage =
        "usage: qwen3vl [info [--json] | run [options] | bench [options]]\n" +
        "  info         print the native build and device report\n" +
        "  info --json  the same report as JSON\n" +
        "  run          answer a prompt (with images) from a Qwen3-VL checkpoint; 'qwen3vl run --help' for options\n" +
        "  bench        prefill/decode/image-encode speed on a checkpoint; 'qwen3vl bench --help' for options\n" +
        "  --version    print the version\n" +
        "  --help       print this help\n" +
        "environment: QWEN3VL_NATIVE_LIBRARY=<path>, QWEN3VL_DEVICE=cpu, QWEN3VL_LOG=1";

    private static int Main(string[] args)
    {
        try
        {
            return Run(args);
        }
        catch (Qwen3VLException e)
        {
            Console.Error.WriteLine("qwen3vl: error: " + e.Message);
            return 1;
        }
        catch (DllNotFoundException e)
        {
            Console.Error.WriteLine("qwen3vl: error: the native library could not be loaded: " + e.Message);
            return 1;
        }
    }

    private static int Run(string[] args)
    {
        if (args.Length == 0)
        {
            PrintReport(NativeInfo.Query());
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
                foreach (string option in args.Skip(1))
                {
                    if (option == "--json") json = true;
                    else return UsageError("unknown option for info: " + option);
                }
                NativeInfo info = NativeInfo.Query();
                if (json) PrintJson(info);
                else PrintReport(info);
                return 0;
            case "run":
                if (args.Skip(1).Any(a => a is "-h" or "--help"))
                {
                    Console.WriteLine(RunCommand.Usage);
                    return 0;
                }
                return RunCommand.Run(args[1..]);
            case "bench":
                if (args.Skip(1).Any(a => a is "-h" or "--help"))
                {
                    Console.WriteLine(BenchCommand.Usage);
                    return 0;
                }
                return BenchCommand.Run(args[1..]);
            default:
                return UsageError("unknown command: " + args[0]);
        }
    }

    private static int UsageError(string message)
    {
        Console.Error.WriteLine("qwen3vl: " + message);
        Console.Error.WriteLine(Usage);
        return 2;
    }

    private static string Gib(ulong bytes) => (bytes / (1024.0 * 1024 * 1024)).ToString("0.0", System.Globalization.CultureInfo.InvariantCulture) + " GiB";

    private static void PrintReport(NativeInfo info)
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
    }

    private static void PrintJson(NativeInfo info)
    {
        using Stream stdout = Console.OpenStandardOutput();
        using (var w = new Utf8JsonWriter(stdout, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("version", info.Version);
            w.WriteString("libraryPath", info.LibraryPath);
            w.WriteString("libraryResolution", info.LibraryResolution);
            w.WriteString("compiler", info.Compiler);
            w.WriteStartArray("backends");
            if (info.HasCpuBackend) w.WriteStringValue("cpu");
            if (info.HasCudaBackend) w.WriteStringValue("cuda");
            w.WriteEndArray();
            w.WriteNumber("logicalCpus", info.LogicalCpus);
            w.WriteStartArray("cpuFeatures");
            foreach (string f in info.CpuFeatures) w.WriteStringValue(f);
            w.WriteEndArray();
            w.WriteString("cpuKernels", info.CpuKernels);
            w.WriteNumber("cudaRuntimeVersion", info.CudaRuntimeVersion);
            w.WriteNumber("cudaDriverVersion", info.CudaDriverVersion);
            w.WriteString("cudaArchitectures", info.CudaArchitectures);
            w.WriteStartArray("cudaDevices");
            foreach (CudaDeviceInfo d in info.CudaDevices)
            {
                w.WriteStartObject();
                w.WriteNumber("index", d.Index);
                w.WriteString("name", d.Name);
                w.WriteString("computeCapability", $"{d.ComputeMajor}.{d.ComputeMinor}");
                w.WriteNumber("multiprocessors", d.Multiprocessors);
                w.WriteNumber("totalMemory", d.TotalMemory);
                w.WriteNumber("freeMemory", d.FreeMemory);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        stdout.WriteByte((byte)'\n');
    }
}
