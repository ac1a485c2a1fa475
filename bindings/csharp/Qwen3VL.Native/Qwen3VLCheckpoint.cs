using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Qwen3VL.Native.Engine;
using Qwen3VL.Native.Model;

namespace Qwen3VL.Native;

/// <summary>What <see cref="Qwen3VLCheckpoint.Quantize"/> wrote.</summary>
/// <param name="Directory">The new checkpoint folder.</param>
/// <param name="QuantizedTensors">Matrices written in the quantized format.</param>
/// <param name="SourceBytes">Bytes of the source's weights.</param>
/// <param name="WrittenBytes">Bytes of the new weight file.</param>
public readonly record struct QuantizeResult(string Directory, int QuantizedTensors, long SourceBytes, long WrittenBytes);

/// <summary>Writes checkpoint folders in the engine's own formats.</summary>
public static class Qwen3VLCheckpoint
{
    /// <summary>
    /// Writes <paramref name="source"/> (a Hugging Face Qwen3-VL folder: bf16/f16/f32, or fine-grained FP8) to
    /// <paramref name="destination"/> with the text decoder's matrices in <paramref name="weights"/> (<see cref="WeightFormat.Q8"/> or
    /// <see cref="WeightFormat.Q4"/>: the same matrices and the same bits as <see cref="Qwen3VLModelOptions.Weights"/> quantizes
    /// while loading), one
    /// model.safetensors that later loads memory-mapped with no quantization step (on the CPU the quantized planes are used where
    /// they lie in the file). Everything else is copied (FP8 vision weights dequantized to bf16); config.json gets the
    /// engine's quantization_config; the tokenizer and processor files come along. The destination must not exist or be
    /// empty; on any failure what was written is removed.
    /// </summary>
    /// <exception cref="ArgumentException">An unsupported format, or the destination is not empty.</exception>
    /// <exception cref="Qwen3VLException">The source is unreadable, malformed or already quantized.</exception>
    public static QuantizeResult Quantize(string source, string destination, WeightFormat weights,
        IProgress<LoadProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(source);
        ArgumentException.ThrowIfNullOrEmpty(destination);
        if (weights is not (WeightFormat.Q8 or WeightFormat.Q4))
            throw new ArgumentException($"Quantize writes q8 or q4 checkpoints; {weights} is not a quantized format.", nameof(weights));
        ModelFolder folder = ModelFolder.Inspect(source);
        string dst = Path.GetFullPath(destination);
        if (Directory.Exists(dst) && Directory.EnumerateFileSystemEntries(dst).Any())
            throw new ArgumentException($"'{destination}' exists and is not empty.", nameof(destination));
        if (folder.Tensors.Any(t => t.DType is "I8" or "U8"))
            throw new Qwen3VLUnsupportedException($"'{source}' is already a quantized checkpoint of this engine (it holds I8/U8 weights).");

        bool created = !Directory.Exists(dst);
        Directory.CreateDirectory(dst);
        try
        {
            using Backend backend = Backend.CreateCpu();
            using Checkpoint checkpoint = Checkpoint.Open(folder.Directory);
            ModelConfig config = ModelConfig.FromCheckpoint(checkpoint);
            if (config.Fp8 && weights == WeightFormat.Q4)
                throw new Qwen3VLUnsupportedException($"'{source}' is a fine-grained FP8 checkpoint: re-quantizing its 8-bit blocks to q4 "
                    + "compounds two roundings; quantize the original bf16 checkpoint to q4 (or this one to q8).");
            var plan = Plan(folder, config, weights);
            long written = WriteWeights(Path.Combine(dst, "model.safetensors"), plan, backend, checkpoint, folder, progress, cancellationToken);
            WriteConfig(folder.Directory, dst, weights);
            foreach (string file in Directory.EnumerateFiles(folder.Directory))
            {
                string name = Path.GetFileName(file);
                if (name.EndsWith(".safetensors", StringComparison.Ordinal) || name == "model.safetensors.index.json" || name == "config.json") continue;
                File.Copy(file, Path.Combine(dst, name));
            }
            return new QuantizeResult(dst, plan.Count(p => p.Kind == EntryKind.Values), folder.TotalBytes, written);
        }
        catch
        {
            if (created) Directory.Delete(dst, recursive: true);
            else foreach (string f in Directory.EnumerateFiles(dst)) File.Delete(f);
            throw;
        }
    }

    private enum EntryKind { Copy, Values, Scales, Dequantized }

    // Format: for EntryKind.Values, the quantized dtype whose planes it writes.
    private sealed record Entry(string Name, string DType, long[] Shape, long Bytes, EntryKind Kind, StoredTensor Source,
        TensorDType Format = TensorDType.Q8);

    /// <summary>The output tensors in order: each quantized matrix as its value plane and its scales (Q8: I8 values [N, K] and F16
    /// "_scale" [N, K / 32]; Q4: U8 nibbles [N, K / 2] and U8 "_header" [N, K / 256, 16]), chosen per matrix as loading with
    /// <paramref name="weights"/> chooses (<see cref="WeightLoader.MatrixDType"/>); FP8 weights outside the decoder as bf16;
    /// their scale_inv tensors dropped; the rest as stored.</summary>
    private static List<Entry> Plan(ModelFolder folder, ModelConfig config, WeightFormat weights)
    {
        var fp8 = folder.Tensors.Where(t => t.DType == "F8_E4M3").Select(t => t.Name + "_scale_inv").ToHashSet(StringComparer.Ordinal);
        var plan = new List<Entry>();
        foreach (StoredTensor t in folder.Tensors)
        {
            if (fp8.Contains(t.Name)) continue;
            if (t.Name == "lm_head.weight" && config.TieWordEmbeddings) continue;  // unused: the embedding serves
            TensorDType? q = WeightLoader.IsTextMatrix(t.Name) && t.Shape.Length == 2
                ? WeightLoader.MatrixDType(weights, WeightLoader.KeepsEightBits(t.Name, config.TieWordEmbeddings), t.Shape[1], config.Fp8)
                : null;
            if (q == TensorDType.Q4)
            {
                long n = t.Shape[0] * t.Shape[1];
                plan.Add(new Entry(t.Name, "U8", [t.Shape[0], t.Shape[1] / 2], n / 2, EntryKind.Values, t, TensorDType.Q4));
                plan.Add(new Entry(t.Name + "_header", "U8", [t.Shape[0], t.Shape[1] / 256, 16], n / 16, EntryKind.Scales, t));
            }
            else if (q == TensorDType.Q8)
            {
                long n = t.Shape[0] * t.Shape[1];
                plan.Add(new Entry(t.Name, "I8", t.Shape, n, EntryKind.Values, t));
                plan.Add(new Entry(t.Name + "_scale", "F16", [t.Shape[0], t.Shape[1] / 32], n / 32 * 2, EntryKind.Scales, t));
            }
            else if (t.DType == "F8_E4M3")
            {
                plan.Add(new Entry(t.Name, "BF16", t.Shape, t.Shape.Aggregate(2L, (a, d) => a * d), EntryKind.Dequantized, t));
            }
            else
            {
                plan.Add(new Entry(t.Name, t.DType, t.Shape, t.Bytes, EntryKind.Copy, t));
            }
        }
        return plan;
    }

    private static long WriteWeights(string path, List<Entry> plan, Backend backend, Checkpoint checkpoint, ModelFolder folder,
        IProgress<LoadProgress>? progress, CancellationToken cancellationToken)
    {
        var header = new StringBuilder("{\"__metadata__\":{\"format\":\"pt\"}");
        long offset = 0;
        foreach (Entry e in plan)
        {
            header.Append(',').Append(JsonValue.Create(e.Name).ToJsonString()).Append(":{\"dtype\":\"").Append(e.DType)
                .Append("\",\"shape\":[").Append(string.Join(',', e.Shape)).Append("],\"data_offsets\":[")
                .Append(offset).Append(',').Append(offset + e.Bytes).Append("]}");
            offset += e.Bytes;
        }
        header.Append('}');
        while ((8 + Encoding.UTF8.GetByteCount(header.ToString())) % 8 != 0) header.Append(' ');
        byte[] headerBytes = Encoding.UTF8.GetBytes(header.ToString());

        using var output = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)headerBytes.Length);
        output.Write(length);
        output.Write(headerBytes);
        int done = 0;
        long doneBytes = 0;
        byte[]? planes = null;
        for (int i = 0; i < plan.Count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            Entry e = plan[i];
            switch (e.Kind)
            {
                case EntryKind.Copy:
                    using (var input = new FileStream(e.Source.File, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20))
                    {
                        input.Seek(e.Source.Offset, SeekOrigin.Begin);
                        CopyExactly(input, output, e.Bytes);
                    }
                    break;
                case EntryKind.Values:
                    using (Tensor q = checkpoint.GetTensor(backend, e.Name, e.Format))
                    {
                        planes = new byte[checked((int)q.ByteCount)];
                        q.ReadStored(planes);
                    }
                    output.Write(planes, 0, checked((int)e.Bytes));
                    break;
                case EntryKind.Scales:
                    output.Write(planes!, checked((int)(planes!.Length - e.Bytes)), checked((int)e.Bytes));
                    planes = null;
                    break;
                case EntryKind.Dequantized:
                    using (Tensor b = checkpoint.GetTensor(backend, e.Name, TensorDType.BF16))
                    {
                        var bytes = new byte[checked((int)b.ByteCount)];
                        b.ReadStored(bytes);
                        output.Write(bytes);
                    }
                    break;
            }
            if (e.Kind != EntryKind.Scales)
            {
                done++;
                doneBytes += e.Source.Bytes;
                progress?.Report(new LoadProgress(done, folder.TensorCount, doneBytes, folder.TotalBytes));
            }
        }
        output.Flush(flushToDisk: true);
        return output.Length;
    }

    private static void CopyExactly(Stream input, Stream output, long bytes)
    {
        byte[] buffer = new byte[1 << 20];
        while (bytes > 0)
        {
            int n = input.Read(buffer, 0, (int)Math.Min(buffer.Length, bytes));
            if (n <= 0) throw new Qwen3VLIOException("A weight file ended early while it was copied.");
            output.Write(buffer, 0, n);
            bytes -= n;
        }
    }

    /// <summary>config.json with the engine's quantization_config in place of any other.</summary>
    private static void WriteConfig(string source, string destination, WeightFormat weights)
    {
        JsonNode config = JsonNode.Parse(File.ReadAllBytes(Path.Combine(source, "config.json")))
            ?? throw new InvalidDataException("config.json is null.");
        config["quantization_config"] = weights == WeightFormat.Q4
            ? new JsonObject { ["quant_method"] = "qwen3vl", ["weights"] = "q4", ["block_size"] = 256 }
            : new JsonObject { ["quant_method"] = "qwen3vl", ["weights"] = "q8", ["block_size"] = 32 };
        File.WriteAllText(Path.Combine(destination, "config.json"), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }
}
