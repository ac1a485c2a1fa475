using Qwen3VL.Native.Engine;

namespace Qwen3VL.Native.Model;

/// <summary>Takes named weights from a checkpoint onto a backend and remembers them, so their owner can release them together.</summary>
internal sealed class WeightLoader : IDisposable
{
    private readonly List<Tensor> _loaded = [];

    private readonly Action<string, Tensor>? _onLoaded;

    /// <param name="checkpoint">The opened checkpoint.</param>
    /// <param name="backend">Where the weights go.</param>
    /// <param name="config">The model's configuration.</param>
    /// <param name="format">The form of the projection matrices (<see cref="GetMatrix"/>).</param>
    /// <param name="onLoaded">Called after each weight is taken, with its name (progress reporting; may throw to stop, e.g. on cancellation).</param>
    internal WeightLoader(Checkpoint checkpoint, Backend backend, ModelConfig config, WeightFormat format = WeightFormat.Stored,
        Action<string, Tensor>? onLoaded = null)
    {
        Checkpoint = checkpoint;
        Backend = backend;
        Config = config;
        Format = format;
        _onLoaded = onLoaded;
    }

    internal WeightFormat Format { get; }

    internal Checkpoint Checkpoint { get; }
    internal Backend Backend { get; }
    internal ModelConfig Config { get; }

    /// <summary>The tensor called <paramref name="name"/>; when <paramref name="shape"/> is given it is checked (same element count and dims), or
    /// reshaped when only the element count agrees (e.g. the Conv3d patch weight seen as a matrix).</summary>
    internal Tensor Get(string name, params long[] shape)
    {
        Tensor t = Checkpoint.GetTensor(Backend, name);
        if (shape.Length > 0 && !t.Shape.SequenceEqual(shape))
        {
            long count = 1;
            foreach (long d in shape) count *= d;
            if (count != t.ElementCount)
            {
                t.Dispose();
                throw new InvalidDataException($"Weight '{name}' has shape [{string.Join(", ", t.Shape)}], expected [{string.Join(", ", shape)}].");
            }
            Tensor view = t.View(0, shape);
            t.Dispose(); // the view keeps the weight alive
            t = view;
        }
        return Keep(name, t);
    }

    /// <summary>
    /// A projection matrix or embedding table [<paramref name="rows"/>, <paramref name="cols"/>] of the text decoder in
    /// <see cref="Format"/>: as stored, converted to bf16, or quantized to Q8 / Q4 (<see cref="MatrixDType"/>) — where the row
    /// length is whole blocks (every matrix of the published Qwen3-VL sizes); a matrix with a ragged row (only in tiny test
    /// shapes) stays as stored.
    /// In an FP8 checkpoint "as stored" is Q8 too (the engine's 8-bit format: FP8 tensor-core kernels are not there yet), and
    /// a ragged FP8 matrix is dequantized to bf16.
    /// </summary>
    internal Tensor GetMatrix(string name, long rows, long cols)
    {
        TensorDType? dtype = MatrixDType(Format, KeepsEightBits(name, Config.TieWordEmbeddings), cols, Config.Fp8);
        if (dtype is null) return Get(name, rows, cols);
        Tensor t = Checkpoint.GetTensor(Backend, name, dtype.Value);
        if (t.Shape.Count != 2 || t.Shape[0] != rows || t.Shape[1] != cols)
        {
            string shape = string.Join(", ", t.Shape);
            t.Dispose();
            throw new InvalidDataException($"Weight '{name}' has shape [{shape}], expected [{rows}, {cols}].");
        }
        return Keep(name, t);
    }

    /// <summary>The dtype <see cref="GetMatrix"/> asks for, or null for the stored one: bf16; Q8 where rows are whole blocks of 32
    /// (<see cref="WeightFormat.Q8"/>, or an FP8 checkpoint as stored); Q4 for a decoder projection whose rows are whole
    /// super-blocks of 256 and an untied embedding table, Q8 for lm_head (and a tied table, which is lm_head too) and for rows of
    /// whole blocks of 32 only (<see cref="WeightFormat.Q4"/>).</summary>
    internal static TensorDType? MatrixDType(WeightFormat format, bool eightBits, long cols, bool fp8) => format switch
    {
        WeightFormat.BF16 => TensorDType.BF16,
        WeightFormat.Q4 when !eightBits && cols % 256 == 0 => TensorDType.Q4,
        WeightFormat.Q4 or WeightFormat.Q8 when cols % 32 == 0 => TensorDType.Q8,
        WeightFormat.Stored when fp8 && cols % 32 == 0 => TensorDType.Q8,
        _ => null,
    };

    /// <summary>Whether <paramref name="name"/> stays 8-bit in <see cref="WeightFormat.Q4"/>: lm_head (its error reaches the logits
    /// directly), and the embedding table when it is tied to lm_head. An untied table is only looked up: 4 bits.</summary>
    internal static bool KeepsEightBits(string name, bool tied) =>
        name == "lm_head.weight" || (tied && name == "model.language_model.embed_tokens.weight");

    /// <summary>Whether <paramref name="name"/> is one of the matrices <see cref="GetMatrix"/> serves: a decoder layer's projections,
    /// the token embedding, lm_head.</summary>
    internal static bool IsTextMatrix(string name) =>
        name is "model.language_model.embed_tokens.weight" or "lm_head.weight"
        || (name.StartsWith("model.language_model.layers.", StringComparison.Ordinal)
            && (name.EndsWith("_proj.weight", StringComparison.Ordinal)
                && (name.Contains(".self_attn.", StringComparison.Ordinal) || name.Contains(".mlp.", StringComparison.Ordinal))));

    private Tensor Keep(string name, Tensor t)
    {
        _loaded.Add(t);
        _onLoaded?.Invoke(name, t);
        return t;
    }

    /// <summary>Every tensor loaded so far.</summary>
    internal IReadOnlyList<Tensor> Loaded => _loaded;

    public void Dispose()
    {
        foreach (Tensor t in _loaded) t.Dispose();
        _loaded.Clear();
    }
}
