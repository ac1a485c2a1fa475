using Qwen3VL.Native.Engine;

namespace Qwen3VL.Native.Model;

/// <summary>
/// Per-layer key and value caches [capacity, kv_heads, head_dim] of one conversation, in f32, f16, bf16 or Q8 (each head's row in
/// blocks of 32 int8 with one f16 scale, quantized by the attention ops as they write a token). Dispose after use.
/// </summary>
public sealed class KvCache : IDisposable
{
    private readonly Tensor[] _keys;
    private readonly Tensor[] _values;

    /// <summary>Allocates caches for <paramref name="capacity"/> tokens on <paramref name="backend"/>.</summary>
    /// <param name="backend">Where the caches live (the model's backend).</param>
    /// <param name="config">The model configuration (layers, kv heads, head dim).</param>
    /// <param name="capacity">Tokens the caches hold.</param>
    /// <param name="dtype">Element type: F32 (exact parity with an fp32 reference), F16, BF16 or Q8 (head_dim a multiple of 32).</param>
    /// <exception cref="ArgumentException"><paramref name="dtype"/> is not a KV cache format, or Q8 with a head_dim that is not a
    /// multiple of 32.</exception>
    public KvCache(Backend backend, ModelConfig config, int capacity, TensorDType dtype = TensorDType.F32)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        if (dtype is not (TensorDType.F32 or TensorDType.F16 or TensorDType.BF16 or TensorDType.Q8))
        {
            throw new ArgumentException($"A KV cache is F32, F16, BF16 or Q8, not {dtype}.", nameof(dtype));
        }
        if (dtype == TensorDType.Q8) RequireQ8HeadDim(config.TextHeadDim);
        Capacity = capacity;
        DType = dtype;
        _keys = new Tensor[config.TextNumLayers];
        _values = new Tensor[config.TextNumLayers];
        try
        {
            for (int l = 0; l < _keys.Length; l++)
            {
                _keys[l] = backend.CreateTensor(dtype, capacity, config.TextNumKvHeads, config.TextHeadDim);
                _values[l] = backend.CreateTensor(dtype, capacity, config.TextNumKvHeads, config.TextHeadDim);
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>Elements per block of the Q8 format along a head's row (as for <see cref="TensorDType.Q8"/> weights).</summary>
    internal const int Q8Block = 32;

    /// <summary>
    /// The element type of the caches for <paramref name="format"/> (<see cref="Qwen3VLModelOptions.KvCache"/>) on a backend
    /// whose products are fp32 (<paramref name="fp32Math"/>) or not, for a model whose text decoder has
    /// <paramref name="headDim"/> values per head: Auto is F32 with fp32 math, else BF16.
    /// </summary>
    /// <exception cref="ArgumentException">Q8 with a head_dim that is not a multiple of 32, or a value that is not a
    /// <see cref="KvCacheFormat"/>; the message names KvCache.</exception>
    internal static TensorDType DTypeFor(KvCacheFormat format, bool fp32Math, int headDim)
    {
        switch (format)
        {
            case KvCacheFormat.Auto: return fp32Math ? TensorDType.F32 : TensorDType.BF16;
            case KvCacheFormat.F32: return TensorDType.F32;
            case KvCacheFormat.BF16: return TensorDType.BF16;
            case KvCacheFormat.Q8:
                RequireQ8HeadDim(headDim);
                return TensorDType.Q8;
            default:
                throw new ArgumentException($"KvCache = {(int)format} is not a KvCacheFormat (Auto, F32, BF16, Q8).", nameof(Qwen3VLModelOptions.KvCache));
        }
    }

    private static void RequireQ8HeadDim(int headDim)
    {
        if (headDim % Q8Block != 0)
        {
            throw new ArgumentException($"KvCache = Q8 needs the text decoder's head_dim to be a multiple of {Q8Block} (the 8-bit "
                + $"format's block), but this model's head_dim is {headDim}; use KvCache = Auto, F32 or BF16.", nameof(Qwen3VLModelOptions.KvCache));
        }
    }

    /// <summary>Tokens the caches hold.</summary>
    public int Capacity { get; }
    /// <summary>Element type of the caches.</summary>
    public TensorDType DType { get; }
    /// <summary>Number of layers.</summary>
    public int Layers => _keys.Length;

    /// <summary>Key cache of layer <paramref name="layer"/>.</summary>
    public Tensor Keys(int layer) => _keys[layer];
    /// <summary>Value cache of layer <paramref name="layer"/>.</summary>
    public Tensor Values(int layer) => _values[layer];

    /// <summary>Bytes held by all caches, as the backend stores them (for Q8: the int8 values and the f16 scales, 17/16 bytes
    /// per element).</summary>
    public ulong ByteCount => _keys.Aggregate(0UL, (sum, t) => sum + (t?.ByteCount ?? 0)) * 2;

    /// <summary>Releases the caches.</summary>
    public void Dispose()
    {
        foreach (Tensor? t in _keys) t?.Dispose();
        foreach (Tensor? t in _values) t?.Dispose();
    }
}
