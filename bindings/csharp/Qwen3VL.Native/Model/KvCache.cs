using Qwen3VL.Native.Engine;

namespace Qwen3VL.Native.Model;

/// <summary>Per-layer key and value caches [capacity, kv_heads, head_dim] of one conversation. Dispose after use.</summary>
public sealed class KvCache : IDisposable
{
    private readonly Tensor[] _keys;
    private readonly Tensor[] _values;

    /// <summary>Allocates caches for <paramref name="capacity"/> tokens on <paramref name="backend"/>.</summary>
    /// <param name="backend">Where the caches live (the model's backend).</param>
    /// <param name="config">The model configuration (layers, kv heads, head dim).</param>
    /// <param name="capacity">Tokens the caches hold.</param>
    /// <param name="dtype">Element type; f32 keeps exact parity with an fp32 reference.</param>
    public KvCache(Backend backend, ModelConfig config, int capacity, TensorDType dtype = TensorDType.F32)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
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

    /// <summary>Bytes held by all caches.</summary>
    public ulong ByteCount => _keys.Aggregate(0UL, (sum, t) => sum + (t?.ByteCount ?? 0)) * 2;

    /// <summary>Releases the caches.</summary>
    public void Dispose()
    {
        foreach (Tensor? t in _keys) t?.Dispose();
        foreach (Tensor? t in _values) t?.Dispose();
    }
}
