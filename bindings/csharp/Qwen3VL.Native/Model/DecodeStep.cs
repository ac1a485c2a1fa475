using Qwen3VL.Native.Engine;

namespace Qwen3VL.Native.Model;

/// <summary>
/// One conversation's decoding step as a replayable graph (CUDA): the step's inputs live in one small device tensor
/// (token id, the three M-RoPE positions, n_past) written once per token, the ~200 ops of the step are recorded once
/// (<see cref="Backend.Capture"/>) and replayed, so the per-token host cost is one upload, one launch and one read,
/// whatever the number of layers. Tied to the conversation's <see cref="KvCache"/> (the graphs hold its addresses); one
/// graph per length bucket (a few MB of activations each), and per candidate bucket for steps that also select the
/// largest logits for sampling (<see cref="CandidateBucket"/>).
/// </summary>
internal sealed class DecodeStep : IDisposable
{
    private readonly TextModel _model;
    private readonly KvCache _cache;
    private readonly Tensor _inputs; // i32 [5]: id, position t, h, w, n_past
    private readonly int[] _staged = new int[5];
    // One graph per length bucket: a graph's attention launch is sized for the largest n_past it serves (its bound),
    // so short conversations in a long context do not pay for the whole capacity. Buckets double from 256 keys.
    // Keyed by (bound, candidates): 0 candidates for the plain step, else the step followed by top_k of that many.
    private readonly Dictionary<(int Bound, int Candidates), Graph> _graphs = [];
    // Views [1, c] of TopValues and TopIds that the graphs of candidate bucket c write.
    private readonly Dictionary<int, (Tensor Values, Tensor Ids)> _topViews = [];

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
            TopValues = Add(owned, backend.CreateTensor(TensorDType.F32, 1, Ops.TopKMax));
            TopIds = Add(owned, backend.CreateTensor(TensorDType.I32, 1, Ops.TopKMax));
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
    /// <summary>f32 [1, <see cref="Ops.TopKMax"/>]: the largest logits, descending (the first candidates of them after a
    /// <see cref="Run"/> with candidates).</summary>
    internal Tensor TopValues { get; }
    /// <summary>i32 [1, <see cref="Ops.TopKMax"/>]: their token ids.</summary>
    internal Tensor TopIds { get; }

    /// <summary>Runs the step for <paramref name="token"/> at <paramref name="position"/> (all three streams) with
    /// <paramref name="nPast"/> tokens in the cache; the results are then in <see cref="Logits"/> and <see cref="Best"/>,
    /// and with <paramref name="candidates"/> &gt; 0 the <see cref="CandidateBucket"/>(candidates, vocab) largest logits in
    /// <see cref="TopValues"/> and <see cref="TopIds"/>.</summary>
    internal void Run(int token, int position, int nPast, int candidates = 0)
    {
        _staged[0] = token;
        _staged[1] = _staged[2] = _staged[3] = position;
        _staged[4] = nPast;
        _inputs.Write(_staged);
        int bound = Bound(nPast, _cache.Capacity);
        int bucket = candidates > 0 ? CandidateBucket(candidates, (int)Logits.Shape[1]) : 0;
        if (!_graphs.TryGetValue((bound, bucket), out Graph? graph))
        {
            (Tensor Values, Tensor Ids)? top = bucket > 0 ? TopViews(bucket) : null;
            graph = Backend.Capture(() =>
            {
                _model.RecordDecodeStep(this, _cache, bound);
                if (top is { } t) Ops.TopK(t.Values, t.Ids, Logits, bucket);
            });
            _graphs.Add((bound, bucket), graph);
        }
        graph.Launch();
    }

    /// <summary>Launches the greedy graph for <paramref name="nPast"/> again on the inputs as they are (a measurement: the
    /// GPU time of a step without the host's round trip between steps); <see cref="Run"/> must have recorded it.</summary>
    internal void Replay(int nPast) => _graphs[(Bound(nPast, _cache.Capacity), 0)].Launch();

    private (Tensor Values, Tensor Ids) TopViews(int bucket)
    {
        if (!_topViews.TryGetValue(bucket, out var views))
        {
            Tensor values = TopValues.View(0, 1, bucket);
            try
            {
                views = (values, TopIds.View(0, 1, bucket));
            }
            catch
            {
                values.Dispose();
                throw;
            }
            _topViews.Add(bucket, views);
        }
        return views;
    }

    /// <summary>The number of largest logits a step selects for <paramref name="candidates"/>: a power of two from 32
    /// up to <see cref="Ops.TopKMax"/> and the vocabulary, so a handful of graphs serves every top-k (the first ones of a
    /// larger top_k are the smaller one's).</summary>
    internal static int CandidateBucket(int candidates, int vocab)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(candidates, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(candidates, Math.Min(Ops.TopKMax, vocab));
        int bucket = 32;
        while (bucket < candidates) bucket *= 2;
        return Math.Min(bucket, Math.Min(Ops.TopKMax, vocab));
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
        foreach ((Tensor values, Tensor ids) in _topViews.Values)
        {
            values.Dispose();
            ids.Dispose();
        }
        _topViews.Clear();
        foreach (Tensor t in new[] { TopIds, TopValues, Best, Logits, Hidden, NPast, Positions, Ids, _inputs }) t.Dispose();
    }
}
