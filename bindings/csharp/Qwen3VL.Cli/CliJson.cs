using System.Text.Json;
using System.Text.Json.Serialization;

namespace Qwen3VL.Cli;

/// <summary>JSON of <c>qwen3vl info --json</c>.</summary>
internal sealed record InfoReport(
    string Version, string? LibraryPath, string? LibraryResolution, string Compiler, IReadOnlyList<string> Backends, int LogicalCpus,
    IReadOnlyList<string> CpuFeatures, string CpuKernels, int CudaRuntimeVersion, int CudaDriverVersion, string CudaArchitectures,
    IReadOnlyList<DeviceReport> CudaDevices, ModelReport? Model);

/// <summary>One CUDA device in <see cref="InfoReport"/>.</summary>
internal sealed record DeviceReport(int Index, string Name, string ComputeCapability, int Multiprocessors, ulong TotalMemory, ulong FreeMemory);

/// <summary>The checkpoint summary of <c>qwen3vl info --model DIR</c>.</summary>
internal sealed record ModelReport(
    string Directory, int Tensors, long WeightBytes, int TextLayers, int HiddenSize, int AttentionHeads, int KvHeads, int VocabSize,
    long MaxPositionEmbeddings, int VisionBlocks, bool TieWordEmbeddings, string ChatTemplate);

/// <summary>JSON of <c>qwen3vl run --json</c>: the answer and its usage.</summary>
internal sealed record RunReport(
    string Model, string Device, string Text, string StopReason, int PromptTokens, int CompletionTokens, double PrefillSeconds,
    double DecodeSeconds, double PromptTokensPerSecond, double GeneratedTokensPerSecond, long? PeakRssBytes);

/// <summary>Source-generated serialization (no reflection: NativeAOT and trimming safe).</summary>
[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(InfoReport))]
[JsonSerializable(typeof(RunReport))]
internal sealed partial class CliJsonContext : JsonSerializerContext
{
    /// <summary>Writes <paramref name="value"/> as indented UTF-8 JSON and a newline to stdout.</summary>
    internal static void WriteToStdout<T>(T value, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type)
    {
        using Stream stdout = Console.OpenStandardOutput();
        JsonSerializer.Serialize(stdout, value, type);
        stdout.WriteByte((byte)'\n');
    }
}
