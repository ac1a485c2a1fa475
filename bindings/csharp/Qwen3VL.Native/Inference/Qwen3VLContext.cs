using Qwen3VL.Native.Engine;
using Qwen3VL.Native.Model;
using Qwen3VL.Native.Processing;

namespace Qwen3VL.Native.Inference;

/// <summary>
/// One conversation on a <see cref="Qwen3VLModel"/>: its KV caches (in <see cref="Qwen3VLModel.KvCache"/>'s format: by default f32; bf16 on a GPU with bf16 math), the tokens seen, the next M-RoPE position and
/// rope_delta. Not thread-safe (one caller at a time); several contexts may run concurrently on one model. Dispose after use.
/// </summary>
/// <remarks>A context keeps its model's weights loaded: disposing the <see cref="Model"/> while the context is alive
/// defers releasing them until the context (the model's last one) is disposed, and the context goes on working
/// meanwhile. A disposed context throws <see cref="ObjectDisposedException"/>.</remarks>
public sealed class Qwen3VLContext : IDisposable
{
    private readonly KvCache _cache;
    private readonly List<int> _tokens = [];
    private readonly List<int> _nextPositions = []; // NextPosition after each cached token, for Truncate
    private int _busy;
    private int _disposed; // 1 once Dispose was called

    internal Qwen3VLContext(Qwen3VLModel model, int capacity)
    {
        // The model's weights stay loaded until this context is disposed (a disposed model throws here).
        model.AddContextReference();
        Model = model;
        try
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
            if (capacity > model.Config.MaxPositionEmbeddings)
            {
                throw new ArgumentOutOfRangeException(nameof(capacity), capacity, $"The model supports at most {model.Config.MaxPositionEmbeddings} positions.");
            }
            // The model's KV format (Qwen3VLModelOptions.KvCache, resolved and checked at load): by default bf16 caches where
            // the math is bf16 anyway (tensor cores round q, k, v to bf16 in attention): half the memory and half the bytes
            // each decoding step reads; f32 keeps the CPU's (and fp32 math's) exact parity; Q8 when asked for.
            _cache = new KvCache(model.Backend, model.Config, capacity, model.KvCacheDType);
            if (DecodePolicy.UsesGraph(model.Backend, model.CudaGraphs)) _step = new DecodeStep(model.Text, model.Backend, model.Config, _cache);
        }
        catch
        {
            _cache?.Dispose();
            model.ReleaseContextReference();
            throw;
        }
    }

    // The decoding step as replayed graphs (CUDA; null on the CPU or with Qwen3VLModelOptions.CudaGraphs false: eager
    // ops; see DecodePolicy, which also picks the graph of each step).
    private readonly DecodeStep? _step;

    /// <summary>Whether decoding steps replay a recorded graph (CUDA with <see cref="Qwen3VLModelOptions.CudaGraphs"/>)
    /// rather than run eager ops.</summary>
    internal bool UsesDecodeGraph => _step is not null;

    /// <summary>The model (kept loaded by this context until it is disposed).</summary>
    public Qwen3VLModel Model { get; }
    /// <summary>Tokens the context can hold.</summary>
    public int Capacity => _cache.Capacity;
    /// <summary>Tokens in the cache (n_past).</summary>
    public int Length => _tokens.Count;
    /// <summary>Tokens still free.</summary>
    public int Remaining => Capacity - Length;
    /// <summary>Position of the next text token (max position so far + 1).</summary>
    public int NextPosition { get; private set; }
    /// <summary>transformers' rope_delta: cache row n decodes at position n + RopeDelta.</summary>
    public int RopeDelta => NextPosition - Length;
    /// <summary>The tokens in the cache, in order.</summary>
    public IReadOnlyList<int> Tokens => _tokens;
    internal ReadOnlySpan<int> TokenSpan => System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_tokens);
    /// <summary>Bytes of the KV caches, as stored (a Q8 cache's int8 values and f16 scales).</summary>
    public ulong CacheBytes => _cache.ByteCount;

    // After DecodeTopK (until the context changes): where LastLogits finds the step's row; on the eager path that row's
    // tensor (on the backend, read only when asked for).
    private bool _topKStep;
    private Tensor? _topKLogits;

    /// <summary>Forgets the conversation (the caches are reused).</summary>
    public void Reset() => Truncate(0);

    /// <summary>
    /// Keeps the first <paramref name="length"/> tokens and forgets the rest (their cache rows are overwritten by what comes
    /// next), so a conversation can continue from a shared prefix. Do not cut inside an image's tokens.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="length"/> is negative or beyond <see cref="Length"/>.</exception>
    public void Truncate(int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, Length);
        Enter();
        ForgetTopKStep();
        _tokens.RemoveRange(length, _tokens.Count - length);
        _nextPositions.RemoveRange(length, _nextPositions.Count - length);
        NextPosition = length == 0 ? 0 : _nextPositions[length - 1];
        Exit();
    }

    /// <summary>
    /// Appends a prompt chunk (with its images, if any) and returns the logits of the chunk's last token, [vocab].
    /// </summary>
    public float[] Prefill(ReadOnlySpan<int> ids, VisionInput? vision = null) => Prefill(ids, vision, [ids.Length - 1]);

    /// <summary>
    /// Appends a prompt chunk: runs the vision tower on <paramref name="vision"/> (the images of the chunk's pad tokens,
    /// in order), computes the M-RoPE positions (get_rope_index, continuing at <see cref="NextPosition"/>) and runs the
    /// decoder; returns logits [logitRows.Length, vocab] of the chunk rows <paramref name="logitRows"/>.
    /// </summary>
    /// <exception cref="Qwen3VLLimitExceededException">The chunk does not fit the remaining capacity.</exception>
    public float[] Prefill(ReadOnlySpan<int> ids, VisionInput? vision, ReadOnlySpan<int> logitRows)
    {
        if (ids.IsEmpty) throw new ArgumentException("The prompt is empty.", nameof(ids));
        if (ids.Length > Remaining)
        {
            throw new Qwen3VLLimitExceededException($"The prompt needs {ids.Length} tokens but the context has {Remaining} of {Capacity} left.");
        }
        ModelConfig c = Model.Config;
        if (vision is null && (ids.Contains(c.ImageTokenId) || ids.Contains(c.VideoTokenId)))
        {
            throw new ArgumentException("The prompt holds image/video pad tokens but no images were given.", nameof(vision));
        }
        Enter();
        ForgetTopKStep();
        try
        {
            RopePositions positions = RopeIndex.Compute(ids, vision?.Grids ?? [], null, c.VisionSpatialMergeSize,
                c.ImageTokenId, c.VideoTokenId, c.VisionStartTokenId, NextPosition);
            // The tower itself, not Model.EncodeImages: a disposed model's weights still serve its live contexts.
            using VisionFeatures? features = vision is null ? null : Model.Vision.Forward(vision);
            float[] logits = Model.Text.Forward(ids, positions, _cache, Length, features, logitRows);
            _tokens.AddRange(ids);
            int next = NextPosition;
            for (int i = 0; i < ids.Length; i++)
            {
                next = Math.Max(next, Math.Max(positions[0, i], Math.Max(positions[1, i], positions[2, i])) + 1);
                _nextPositions.Add(next);
            }
            NextPosition = positions.NextPosition;
            return logits;
        }
        finally
        {
            Exit();
        }
    }

    /// <summary>Appends one token (decoding: position n + rope_delta on all streams) and returns its logits [vocab].</summary>
    /// <exception cref="Qwen3VLLimitExceededException">The context is full.</exception>
    public float[] Decode(int token)
    {
        float[]? logits = null;
        DecodeCore(token, StepResult.Logits, ref logits, default, default);
        return logits!;
    }

    /// <summary>
    /// Appends one token like <see cref="Decode"/> and returns the argmax of its logits (first index on ties) without
    /// copying the logits to the host: greedy decoding's fast path.
    /// </summary>
    /// <exception cref="Qwen3VLLimitExceededException">The context is full.</exception>
    public int DecodeArgMax(int token)
    {
        float[]? logits = null;
        return DecodeCore(token, StepResult.ArgMax, ref logits, default, default);
    }

    /// <summary>
    /// Appends one token like <see cref="Decode"/> and writes the <c>values.Length</c> largest of its logits, in
    /// descending order, to <paramref name="values"/> and their token ids to <paramref name="ids"/> (ties: the lower id
    /// first; a NaN counts as the largest), without copying the logits to the host: on a GPU the decoding graph selects
    /// them (<see cref="Ops.TopK"/>). Sampling with top-k draws from these alone
    /// (<see cref="Sampler.TrySampleCandidates"/>); <see cref="LastLogits"/> gives the whole row when they do not settle
    /// a draw.
    /// </summary>
    /// <exception cref="ArgumentException">The spans differ in length, or hold none or more than <see cref="Ops.TopKMax"/> or the vocabulary.</exception>
    /// <exception cref="Qwen3VLLimitExceededException">The context is full.</exception>
    public void DecodeTopK(int token, Span<float> values, Span<int> ids)
    {
        if (values.Length != ids.Length) throw new ArgumentException("values and ids differ in length.", nameof(ids));
        if (values.Length < 1 || values.Length > Math.Min(Ops.TopKMax, Model.Config.VocabSize))
        {
            throw new ArgumentException($"{values.Length} candidates: between 1 and {Math.Min(Ops.TopKMax, Model.Config.VocabSize)} can be selected.", nameof(values));
        }
        float[]? logits = null;
        DecodeCore(token, StepResult.TopK, ref logits, values, ids);
    }

    /// <summary>
    /// The logits [vocab] of the token the last <see cref="DecodeTopK"/> appended, copied to the host: the whole row, for
    /// a draw its candidates do not settle.
    /// </summary>
    /// <exception cref="InvalidOperationException">The last call that changed the context was not <see cref="DecodeTopK"/>.</exception>
    public float[] LastLogits()
    {
        Enter();
        try
        {
            if (!_topKStep) throw new InvalidOperationException("LastLogits follows DecodeTopK, before the context changes.");
            var logits = new float[Model.Config.VocabSize];
            (_topKLogits ?? _step!.Logits).Read(logits);
            return logits;
        }
        finally
        {
            Exit();
        }
    }

    private enum StepResult
    {
        Logits,
        ArgMax,
        TopK,
    }

    private int DecodeCore(int token, StepResult want, ref float[]? logits, Span<float> topValues, Span<int> topIds)
    {
        if (Remaining < 1) throw new Qwen3VLLimitExceededException($"The context is full ({Capacity} tokens).");
        ModelConfig c = Model.Config;
        if ((uint)token >= (uint)c.VocabSize) throw new ArgumentOutOfRangeException(nameof(token), token, $"Token id outside the vocabulary of {c.VocabSize}.");
        Enter();
        ForgetTopKStep();
        try
        {
            int best = -1;
            if (_step is not null)
            {
                int candidates = want == StepResult.TopK ? DecodePolicy.CandidateBucket(topValues.Length, c.VocabSize) : 0;
                _step.Run(token, NextPosition, Length, DecodePolicy.Bound(Length, Capacity), candidates);
                if (want == StepResult.Logits)
                {
                    logits = new float[c.VocabSize];
                    _step.Logits.Read(logits);
                }
                else if (want == StepResult.ArgMax)
                {
                    Span<int> b = stackalloc int[1];
                    _step.Best.Read(b);
                    best = b[0];
                    ThrowIfNonFiniteAt(_step.Logits, best);
                }
                else
                {
                    ReadTop(_step, topValues, topIds);
                }
            }
            else
            {
                RopePositions positions = RopeIndex.Text(1, NextPosition);
                if (want == StepResult.TopK)
                {
                    // The logits stay on the backend: the candidates are selected there and only they are read
                    // (the row itself only if LastLogits asks for it).
                    Tensor row = Model.Text.ForwardLogits([token], positions, _cache, Length, null, [0])!;
                    try
                    {
                        TopKOnBackend(row, topValues, topIds);
                    }
                    catch
                    {
                        row.Dispose();
                        throw;
                    }
                    _topKLogits = row;
                }
                else
                {
                    logits = Model.Text.Forward([token], positions, _cache, Length, null, [0]);
                    if (want == StepResult.ArgMax)
                    {
                        if (Sampler.NonFinite(logits) is { } fault) throw new Qwen3VLNumericalException("the model produced " + fault);
                        best = Sampler.ArgMax(logits);
                    }
                }
            }
            _topKStep = want == StepResult.TopK;
            _tokens.Add(token);
            NextPosition++;
            _nextPositions.Add(NextPosition);
            return best;
        }
        finally
        {
            Exit();
        }
    }

    /// <summary>
    /// A measurement for <c>qwen3vl bench</c>: the seconds of one greedy decoding step when its graph is replayed
    /// <paramref name="steps"/> times back to back with one read at the end (the GPU time of a step, without the host's
    /// read, input write and launch between tokens). The replays rewrite the cache row of the next token with the same
    /// values; the context's tokens do not change. NaN without a decode graph (CPU, or <see cref="Qwen3VLModelOptions.CudaGraphs"/> false).
    /// </summary>
    internal double StepReplaySeconds(int token, int steps)
    {
        if (_step is null || Remaining < 1) return double.NaN;
        Enter();
        ForgetTopKStep();
        try
        {
            Span<int> b = stackalloc int[1];
            int bound = DecodePolicy.Bound(Length, Capacity);
            _step.Run(token, NextPosition, Length, bound);
            _step.Best.Read(b);
            var sw = System.Diagnostics.Stopwatch.StartNew();
            for (int i = 0; i < steps; i++) _step.Replay(bound);
            _step.Best.Read(b);
            return sw.Elapsed.TotalSeconds / steps;
        }
        finally
        {
            Exit();
        }
    }

    // The argmax counts a NaN as the largest value and +infinity is larger than any finite one, so the logit at the argmax
    // is finite exactly when the row can be sampled (-infinity there: every logit is -infinity). One 4-byte read.
    private static void ThrowIfNonFiniteAt(Tensor logits, int best)
    {
        Span<float> v = stackalloc float[1];
        using (Tensor at = logits.View(best, 1)) at.Read(v);
        if (!float.IsFinite(v[0]))
        {
            throw new Qwen3VLNumericalException($"the model produced {(float.IsNaN(v[0]) ? "NaN" : "infinite")} logits (token id {best} is the first)");
        }
    }

    // The first values.Length of the step's selected logits (it selected at least that many).
    private static void ReadTop(DecodeStep step, Span<float> values, Span<int> ids)
    {
        using Tensor v = step.TopValues.View(0, 1, values.Length), i = step.TopIds.View(0, 1, ids.Length);
        v.Read(values);
        i.Read(ids);
    }

    // The eager path (the CPU, or CudaGraphs false): the candidates of the step's logits row [1, vocab], selected by the
    // backend's op where the row is, as the graph does.
    private void TopKOnBackend(Tensor row, Span<float> values, Span<int> ids)
    {
        Backend b = Model.Backend;
        using Tensor v = b.CreateTensor(TensorDType.F32, 1, values.Length), i = b.CreateTensor(TensorDType.I32, 1, ids.Length);
        Ops.TopK(v, i, row, values.Length);
        v.Read(values);
        i.Read(ids);
    }

    private void ForgetTopKStep()
    {
        _topKStep = false;
        _topKLogits?.Dispose();
        _topKLogits = null;
    }

    private void Enter()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            throw new InvalidOperationException("The context is in use by another call; a context serves one caller at a time.");
        }
        if (Volatile.Read(ref _disposed) != 0)
        {
            Exit();
            throw new ObjectDisposedException(GetType().FullName);
        }
    }

    // A Dispose that came while the call ran (from another thread: a caller's mistake, but not a native crash) left the
    // release to the call: whichever of the two takes _busy after _disposed is set releases (both fences are full).
    private void Exit()
    {
        Interlocked.Exchange(ref _busy, 0);
        if (Volatile.Read(ref _disposed) != 0 && Interlocked.CompareExchange(ref _busy, 1, 0) == 0) Release();
    }

    /// <summary>
    /// Releases the caches and drops the context's reference on its model (the model's weights are released here when the
    /// model was disposed and this was its last context). When a call is running on another thread (a misuse: one caller
    /// at a time), the release waits for that call to return instead of freeing memory under it. Calling it again does
    /// nothing.
    /// </summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        if (Interlocked.CompareExchange(ref _busy, 1, 0) == 0) Release();
    }

    // Runs once: Dispose and the Exit of a call running meanwhile both try to take _busy after _disposed is set, and the
    // one that takes it keeps it, so nothing enters or releases again (later calls see _disposed and throw).
    private void Release()
    {
        try
        {
            _topKLogits?.Dispose();
            _step?.Dispose();
            _cache.Dispose();
        }
        finally
        {
            Model.ReleaseContextReference();
        }
    }
}
