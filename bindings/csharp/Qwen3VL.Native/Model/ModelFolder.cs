using System.Buffers.Binary;
using System.Text.Json;

namespace Qwen3VL.Native.Model;

/// <summary>
/// Checks a checkpoint folder before the native loader sees it, so a wrong or incomplete folder is reported by what it
/// lacks, and counts its weights (from the safetensors headers) for progress reporting.
/// </summary>
/// <summary>A tensor as a safetensors header describes it: its bytes are at <paramref name="Offset"/> of <paramref name="File"/>.</summary>
internal sealed record StoredTensor(string Name, string DType, long[] Shape, string File, long Offset, long Bytes);

internal sealed class ModelFolder
{
    private ModelFolder(string directory, int tensorCount, long totalBytes, Dictionary<string, long> storedBytes,
        List<StoredTensor> tensors, List<string> shards)
    {
        StoredBytes = storedBytes;
        Tensors = tensors;
        Shards = shards;
        Directory = directory;
        TensorCount = tensorCount;
        TotalBytes = totalBytes;
    }

    internal string Directory { get; }
    internal int TensorCount { get; }
    internal long TotalBytes { get; }
    /// <summary>Bytes of each tensor as stored, by name (progress counts these whatever form a weight is loaded in).</summary>
    internal IReadOnlyDictionary<string, long> StoredBytes { get; }
    /// <summary>Every tensor of the weight files, in file order then data order.</summary>
    internal IReadOnlyList<StoredTensor> Tensors { get; }
    /// <summary>The weight files (full paths).</summary>
    internal IReadOnlyList<string> Shards { get; }

    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="FileNotFoundException">config.json, tokenizer.json or the weights are missing (the message says which).</exception>
    /// <exception cref="InvalidDataException">A safetensors header or the shard index is malformed.</exception>
    internal static ModelFolder Inspect(string directory)
    {
        string full = Path.GetFullPath(directory);
        if (!System.IO.Directory.Exists(full)) throw new DirectoryNotFoundException($"Model folder '{directory}' does not exist.");
        Require(full, "config.json", "it is not a Hugging Face checkpoint folder");
        Require(full, "tokenizer.json", "the tokenizer is missing");

        var shards = new List<string>();
        string single = Path.Combine(full, "model.safetensors");
        string index = Path.Combine(full, "model.safetensors.index.json");
        if (File.Exists(single))
        {
            shards.Add(single);
        }
        else if (File.Exists(index))
        {
            foreach (string name in ReadShardNames(index))
            {
                string shard = Path.Combine(full, name);
                if (!File.Exists(shard)) throw new FileNotFoundException($"Model folder '{directory}' is incomplete: weight shard '{name}' (listed in model.safetensors.index.json) is missing.", shard);
                shards.Add(shard);
            }
        }
        else
        {
            throw new FileNotFoundException($"Model folder '{directory}' has no weights: expected model.safetensors or model.safetensors.index.json with its shards.", single);
        }

        int count = 0;
        long bytes = 0;
        var stored = new Dictionary<string, long>(StringComparer.Ordinal);
        var tensors = new List<StoredTensor>();
        foreach (string shard in shards)
        {
            (int c, long b) = ReadHeader(shard, stored, tensors);
            count += c;
            bytes += b;
        }
        return new ModelFolder(full, count, bytes, stored, tensors, shards);
    }

    private static void Require(string directory, string file, string consequence)
    {
        string path = Path.Combine(directory, file);
        if (!File.Exists(path)) throw new FileNotFoundException($"Model folder '{directory}' has no {file}: {consequence}.", path);
    }

    private static IEnumerable<string> ReadShardNames(string indexPath)
    {
        try
        {
            using JsonDocument doc = JsonDocument.Parse(Qwen3VL.Native.Processing.BoundedFile.ReadConfigBytes(indexPath));
            return doc.RootElement.GetProperty("weight_map").EnumerateObject()
                .Select(p => p.Value.GetString() ?? throw new InvalidDataException("null shard name"))
                .Distinct(StringComparer.Ordinal).ToList();
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new InvalidDataException($"{indexPath}: not a safetensors index ({e.Message}).", e);
        }
    }

    /// <summary>Number of tensors and their bytes, from a safetensors header (u64 length, then a JSON object).</summary>
    private static (int Count, long Bytes) ReadHeader(string path, Dictionary<string, long> stored, List<StoredTensor> tensors)
    {
        using FileStream f = File.OpenRead(path);
        Span<byte> prefix = stackalloc byte[8];
        if (f.ReadAtLeast(prefix, 8, throwOnEndOfStream: false) != 8) throw new InvalidDataException($"{path}: too short for a safetensors file.");
        ulong length = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (length == 0 || length > 100_000_000 || (long)length > f.Length - 8) throw new InvalidDataException($"{path}: bad safetensors header length {length}.");
        byte[] header = new byte[(int)length];
        f.ReadExactly(header);
        try
        {
            using JsonDocument doc = JsonDocument.Parse(header);
            int count = 0;
            long bytes = 0;
            foreach (JsonProperty p in doc.RootElement.EnumerateObject())
            {
                if (p.Name == "__metadata__") continue;
                JsonElement offsets = p.Value.GetProperty("data_offsets");
                long begin = offsets[0].GetInt64(), size = offsets[1].GetInt64() - begin;
                bytes += size;
                stored[p.Name] = size;
                long[] shape = p.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                tensors.Add(new StoredTensor(p.Name, p.Value.GetProperty("dtype").GetString() ?? "", shape, path, 8 + (long)length + begin, size));
                count++;
            }
            return (count, bytes);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or IndexOutOfRangeException)
        {
            throw new InvalidDataException($"{path}: malformed safetensors header ({e.Message}).", e);
        }
    }
}
