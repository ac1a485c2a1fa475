namespace Qwen3VL.Native.Model;

/// <summary>
/// One conversation's decoding step as a replayable graph (CUDA): the step's inputs live in one small device tensor
/// (token id, the three M-RoPE positions, n_past) written once per token, the ~200 ops of the step are recorded once
/// (<see cref="Backend.Capture"/>) and replayed, so the per-token host cost is one upload, one launch and one read,
/// whatever the number of layers. Tied to the conversation's <see cref="KvCache"/> (the graphs hold its addresses); one
/// graph per length bucket (a few MB of activations each).
/// </summary>
internal sealed class DecodeStep : IDisposable
{
    private readonly TextModel _model;
    private readonly KvCache _cache;
    private readonly Tensor _inputs; // i32 [5]: id, position t, h, w, n_past
    private readonly int[] _staged = new int[5];
    // One graph per length bucket: a graph's attention launch is sized for the largest n_past it serves (its bound),
    // so short conversations in a long context do not pay for the whole capacity. Buckets double from 256 keys.
    private readonly Dictionary<int, Graph> _graphs = [];

    internal DecodeStep(TextModel model, Backend backend, ModelConfig config, KvCache cache)
    {
        _model = model;
        _cache = cache;
        var owned = new List<Tensor>();
        try
        {
            _inputs = Add(owned, backend.CreateTensor(TensorDType.I32, 5));
            Ids = Add(owned, _inputs.View(0, 1));
            Positions = Add(owned, _inputs.View(1, 3, 1));
            NPast = Add(owned, _inputs.View(4, 1));
            Hidden = Add(owned, backend.CreateTensor(TensorDType.F32, 1, config.TextHiddenSize));
            Logits = Add(owned, backend.CreateTensor(TensorDType.F32, 1, config.VocabSize));
            Best = Add(owned, backend.CreateTensor(TensorDType.I32, 1));
        }
        catch
        {
            foreach (Tensor t in owned) t.Dispose();
            throw;
        }
        Backend = backend;
    }

    private static Tensor Add(List<Tensor> owned, Tensor t)
    {
        owned.Add(t);
        return t;
    }

    internal Backend Backend { get; }
    /// <summary>i32 [1]: the token.</summary>
    internal Tensor Ids { get; }
    /// <summary>i32 [3, 1]: its M-RoPE positions.</summary>
    internal Tensor Positions { get; }
    /// <summary>i32 [1]: tokens already in the cache.</summary>
    internal Tensor NPast { get; }
    /// <summary>f32 [1, hidden]: the residual stream.</summary>
    internal Tensor Hidden { get; }
    /// <summary>f32 [1, vocab]: the logits.</summary>
    internal Tensor Logits { get; }
    /// <summary>i32 [1]: argmax of the logits.</summary>
    internal Tensor Best { get; }

    /// <summary>Runs the step for <paramref name="token"/> at <paramref name="position"/> (all three streams) with
    /// <paramref name="nPast"/> tokens in the cache; the results are then in <see cref="Logits"/> and <see cref="Best"/>.</summary>
    internal void Run(int token, int position, int nPast)
    {
        _staged[0] = token;
        _staged[1] = _staged[2] = _staged[3] = position;
        _staged[4] = nPast;
        _inputs.Write(_staged);
        int bound = Bound(nPast, _cache.Capacity);
        if (!_graphs.TryGetValue(bound, out Graph? graph))
        {
            graph = Backend.Capture(() => _model.RecordDecodeStep(this, _cache, bound));
            _graphs.Add(bound, graph);
        }
        graph.Launch();
    }

    /// <summary>The n_past bound of the graph for <paramref name="nPast"/>: one less than the smallest power of two of at
    /// least 256 keys holding nPast + 1 keys, at most capacity - 1.</summary>
    internal static int Bound(int nPast, int capacity)
    {
        long keys = 256;
        while (keys < nPast + 1L) keys *= 2;
        return (int)Math.Min(keys, capacity) - 1;
    }

    /// <summary>Releases the graph and the step's tensors.</summary>
    public void Dispose()
    {
        foreach (Graph g in _graphs.Values) g.Dispose();
        _graphs.Clear();
        foreach (Tensor t in new[] { Best, Logits, Hidden, NPast, Positions, Ids, _inputs }) t.Dispose();
    }
}
