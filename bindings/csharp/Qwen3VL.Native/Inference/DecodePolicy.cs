using Qwen3VL.Native.Engine;

namespace Qwen3VL.Native.Inference;

/// <summary>
/// How a <see cref="Qwen3VLContext"/> decodes: whether its steps replay recorded graphs (<see cref="Model.DecodeStep"/>)
/// or run eager ops, and which of the step's graphs serves a token: its length bucket (the largest n_past the graph's
/// attention launch is sized for, so short conversations in a long context do not pay for the whole capacity) and its
/// candidate bucket (how many of the largest logits it selects for a top-k draw, so a handful of graphs serves every
/// top-k). Both kinds of bucket double, so a context records few graphs.
/// </summary>
internal static class DecodePolicy
{
    /// <summary>Keys of the smallest length bucket.</summary>
    internal const int SmallestLengthBucket = 256;

    /// <summary>Candidates of the smallest candidate bucket.</summary>
    internal const int SmallestCandidateBucket = 32;

    /// <summary>Whether a context on <paramref name="backend"/> replays its decoding step as a graph: on CUDA with
    /// <see cref="Qwen3VLModelOptions.CudaGraphs"/> (<paramref name="cudaGraphs"/>); eager ops otherwise.</summary>
    internal static bool UsesGraph(Backend backend, bool cudaGraphs) => backend.IsCuda && cudaGraphs;

    /// <summary>The n_past bound of the graph for <paramref name="nPast"/>: one less than the smallest power of two of at
    /// least <see cref="SmallestLengthBucket"/> keys holding nPast + 1 keys, at most capacity - 1.</summary>
    internal static int Bound(int nPast, int capacity)
    {
        long keys = SmallestLengthBucket;
        while (keys < nPast + 1L) keys *= 2;
        return (int)Math.Min(keys, capacity) - 1;
    }

    /// <summary>The number of largest logits a step selects for <paramref name="candidates"/>: a power of two from
    /// <see cref="SmallestCandidateBucket"/> up to <see cref="Ops.TopKMax"/> and the vocabulary, so a handful of graphs
    /// serves every top-k (the first ones of a larger top_k are the smaller one's).</summary>
    internal static int CandidateBucket(int candidates, int vocab)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(candidates, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(candidates, Math.Min(Ops.TopKMax, vocab));
        int bucket = SmallestCandidateBucket;
        while (bucket < candidates) bucket *= 2;
        return Math.Min(bucket, Math.Min(Ops.TopKMax, vocab));
    }
}
