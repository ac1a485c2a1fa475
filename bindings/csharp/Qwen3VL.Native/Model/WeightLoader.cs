using Qwen3VL.Native.Engine;

namespace Qwen3VL.Native.Model;

/// <summary>Takes named weights from a checkpoint onto a backend and remembers them, so their owner can release them together.</summary>
internal sealed class WeightLoader : IDisposable
{
    private readonly List<Tensor> _loaded = [];

    private readonly Action<Tensor>? _onLoaded;

    /// <param name="checkpoint">The opened checkpoint.</param>
    /// <param name="backend">Where the weights go.</param>
    /// <param name="config">The model's configuration.</param>
    /// <param name="onLoaded">Called after each weight is taken (progress reporting; may throw to stop, e.g. on cancellation).</param>
    internal WeightLoader(Checkpoint checkpoint, Backend backend, ModelConfig config, Action<Tensor>? onLoaded = null)
    {
        Checkpoint = checkpoint;
        Backend = backend;
        Config = config;
        _onLoaded = onLoaded;
    }

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
        _loaded.Add(t);
        _onLoaded?.Invoke(t);
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
