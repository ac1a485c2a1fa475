using Qwen3VL.Native.Engine;

namespace Qwen3VL.Native.Model;

/// <summary>
/// One conversation's decoding step as a replayable graph (CUDA): the step's inputs live in one small device tensor
/// (token id, the three M-RoPE positions, n_past) written once per token, the ~200 ops of the step are recorded once
/// (<see cref="Backend.Capture"/>) and replayed, so the per-token host cost is one upload, one launch and one read,
/// whatever the number of layers. Tied to the conversation's <see cref="KvCache"/> (the graphs hold its addresses); one
/// graph per n_past bound it is run with (a few MB of activations each), and per number of candidates for steps that
/// also select the largest logits for sampling. The caller chooses both (the buckets of <see cref="Inference.DecodePolicy"/>),
/// so that few graphs serve a conversation.
/// </summary>
internal sealed class DecodeStep : IDisposable
{
    private readonly TextModel _model;
    private readonly KvCache _cache;
    private readonly Tensor _inputs; // i32 [5]: id, position t, h, w, n_past
    private readonly int[] _staged = new int[5];
    // One graph per (bound, candidates): a graph's attention launch is sized for the largest n_past it serves (its
    // bound); 0 candidates for the plain step, else the step followed by top_k of that many.
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
    /// <paramref name="nPast"/> tokens in the cache, on the graph for <paramref name="bound"/> (recorded on first use):
    /// the results are then in <see cref="Logits"/> and <see cref="Best"/>, and with <paramref name="candidates"/> &gt; 0
    /// the candidates largest logits in <see cref="TopValues"/> and <see cref="TopIds"/>.</summary>
    /// <param name="token">The token.</param>
    /// <param name="position">Its position.</param>
    /// <param name="nPast">Tokens already in the cache.</param>
    /// <param name="bound">The largest n_past the graph serves: at least <paramref name="nPast"/>, below the cache's capacity.</param>
    /// <param name="candidates">The number of largest logits to select (at most <see cref="Ops.TopKMax"/> and the
    /// vocabulary), or 0 for none.</param>
    internal void Run(int token, int position, int nPast, int bound, int candidates = 0)
    {
        _staged[0] = token;
        _staged[1] = _staged[2] = _staged[3] = position;
        _staged[4] = nPast;
        _inputs.Write(_staged);
        if (!_graphs.TryGetValue((bound, candidates), out Graph? graph))
        {
            (Tensor Values, Tensor Ids)? top = candidates > 0 ? TopViews(candidates) : null;
            graph = Backend.Capture(() =>
            {
                _model.RecordDecodeStep(this, _cache, bound);
                if (top is { } t) Ops.TopK(t.Values, t.Ids, Logits, candidates);
            });
            _graphs.Add((bound, candidates), graph);
        }
        graph.Launch();
    }

    /// <summary>Launches the greedy graph for <paramref name="bound"/> again on the inputs as they are (a measurement: the
    /// GPU time of a step without the host's round trip between steps); <see cref="Run"/> must have recorded it.</summary>
    internal void Replay(int bound) => _graphs[(bound, 0)].Launch();

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
