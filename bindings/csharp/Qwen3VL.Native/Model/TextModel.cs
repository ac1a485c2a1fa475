using Qwen3VL.Native.Engine;
using Qwen3VL.Native.Processing;

namespace Qwen3VL.Native.Model;

/// <summary>
/// The text decoder, <c>model.language_model</c> (+ <c>lm_head</c>): token embedding with the visual tokens scattered into the
/// image-pad rows, the decoder layers with DeepStack features added after the first layers, the final RMSNorm and the
/// output projection (the tied embedding when there is no <c>lm_head.weight</c>).
/// </summary>
public sealed class TextModel
{
    private readonly ModelConfig _config;
    private readonly Backend _backend;

    internal TextModel(WeightLoader w)
    {
        _config = w.Config;
        _backend = w.Backend;
        long hidden = _config.TextHiddenSize;
        EmbedTokensWeight = w.GetMatrix("model.language_model.embed_tokens.weight", _config.VocabSize, hidden);
        var layers = new DecoderLayer[_config.TextNumLayers];
        for (int i = 0; i < layers.Length; i++) layers[i] = new DecoderLayer(w, i);
        Layers = layers;
        NormWeight = w.Get("model.language_model.norm.weight", hidden);
        LmHeadWeight = _config.TieWordEmbeddings ? EmbedTokensWeight : w.GetMatrix("lm_head.weight", _config.VocabSize, hidden);
    }

    /// <summary><c>model.language_model.embed_tokens.weight</c> [vocab, hidden].</summary>
    public Tensor EmbedTokensWeight { get; }
    /// <summary><c>model.language_model.layers.N</c>.</summary>
    public IReadOnlyList<DecoderLayer> Layers { get; }
    /// <summary><c>model.language_model.norm.weight</c>.</summary>
    public Tensor NormWeight { get; }
    /// <summary><c>lm_head.weight</c>, or the embedding when the checkpoint ties them.</summary>
    public Tensor LmHeadWeight { get; }

    /// <summary>
    /// Runs T new tokens through the decoder, appending their keys and values to <paramref name="cache"/> at
    /// <paramref name="nPast"/>, and returns the logits of the requested rows.
    /// </summary>
    /// <param name="ids">The new tokens.</param>
    /// <param name="positions">Their M-RoPE positions (<see cref="RopePositions.Length"/> = T).</param>
    /// <param name="cache">The conversation's KV caches.</param>
    /// <param name="nPast">Tokens already in the cache.</param>
    /// <param name="vision">Visual tokens for the image/video pad rows of <paramref name="ids"/> (in order); null to embed every token as
    /// text (decoding, where a sampled pad id is an ordinary token).</param>
    /// <param name="logitRows">Rows of the chunk (0 .. T-1) whose logits are wanted.</param>
    /// <returns>Logits [logitRows.Length, vocab], row-major.</returns>
    public float[] Forward(ReadOnlySpan<int> ids, RopePositions positions, KvCache cache, long nPast, VisionFeatures? vision, ReadOnlySpan<int> logitRows)
    {
        using Tensor? logits = ForwardLogits(ids, positions, cache, nPast, vision, logitRows);
        if (logits is null) return [];
        var result = new float[logits.ElementCount];
        logits.Read(result);
        return result;
    }

    /// <summary>
    /// <see cref="Forward"/> with the logits left on the backend: a tensor [logitRows.Length, vocab] the caller disposes
    /// (null when no row is wanted), for work that continues there (the candidates of a top-k draw).
    /// </summary>
    public Tensor? ForwardLogits(ReadOnlySpan<int> ids, RopePositions positions, KvCache cache, long nPast, VisionFeatures? vision,
        ReadOnlySpan<int> logitRows)
    {
        ArgumentNullException.ThrowIfNull(positions);
        ArgumentNullException.ThrowIfNull(cache);
        int t = ids.Length;
        if (t == 0) throw new ArgumentException("No tokens.", nameof(ids));
        if (positions.Length != t) throw new ArgumentException("Positions and ids differ in length.", nameof(positions));
        if (nPast < 0 || nPast + t > cache.Capacity)
        {
            throw new Qwen3VLLimitExceededException($"{nPast} + {t} tokens exceed the context capacity of {cache.Capacity}.");
        }
        foreach (int r in logitRows)
        {
            if ((uint)r >= (uint)t) throw new ArgumentOutOfRangeException(nameof(logitRows), r, $"Logit row outside 0..{t - 1}.");
        }
        var visualRows = new List<int>();
        for (int i = 0; i < t; i++)
        {
            if (ids[i] == _config.ImageTokenId || ids[i] == _config.VideoTokenId) visualRows.Add(i);
        }
        if (vision is not null && vision.TokenCount != visualRows.Count)
        {
            throw new ArgumentException($"Image features and image tokens do not match: tokens {visualRows.Count}, features {vision.TokenCount}.", nameof(vision));
        }

        long hidden = _config.TextHiddenSize;
        using Tensor x = _backend.CreateTensor(TensorDType.F32, t, hidden);
        using (Tensor idTensor = _backend.CreateTensor(TensorDType.I32, t))
        {
            idTensor.Write(ids);
            Ops.Embedding(x, EmbedTokensWeight, idTensor);
        }
        using Tensor pos = _backend.CreateTensor(TensorDType.I32, 3, t);
        pos.Write(positions.Positions);

        Tensor? rows = null;
        try
        {
            if (vision is not null)
            {
                rows = _backend.CreateTensor(TensorDType.I32, visualRows.Count);
                rows.Write(visualRows.ToArray());
                Ops.ScatterRows(x, rows, vision.Embeddings, accumulate: false);
            }
            for (int l = 0; l < Layers.Count; l++)
            {
                Layers[l].Forward(x, pos, cache, nPast);
                if (vision is not null && l < vision.Deepstack.Count)
                {
                    Ops.ScatterRows(x, rows!, vision.Deepstack[l], accumulate: true);
                }
            }
        }
        finally
        {
            rows?.Dispose();
        }

        int p = logitRows.Length;
        if (p == 0) return null;
        Tensor logits = _backend.CreateTensor(TensorDType.F32, p, _config.VocabSize);
        try
        {
            ProjectLogits(logits, x, logitRows);
        }
        catch
        {
            logits.Dispose();
            throw;
        }
        return logits;
    }

    // logits [P, vocab] of the rows logitRows of x [T, hidden].
    private void ProjectLogits(Tensor logits, Tensor x, ReadOnlySpan<int> logitRows)
    {
        long hidden = _config.TextHiddenSize;
        int p = logitRows.Length;
        if (p == 1)
        {
            using Tensor src = x.View(logitRows[0] * hidden, 1, hidden);
            Logits(logits, src);
        }
        else
        {
            // Several rows: normalise each into one block, then a single pass over the output projection.
            using Tensor normed = _backend.CreateTensor(TensorDType.F32, p, hidden);
            for (int i = 0; i < p; i++)
            {
                using Tensor src = x.View(logitRows[i] * hidden, 1, hidden);
                using Tensor dst = normed.View(i * hidden, 1, hidden);
                Ops.RmsNorm(dst, src, NormWeight, (float)_config.RmsNormEps);
            }
            Ops.Linear(logits, normed, LmHeadWeight);
        }
    }

    // logits [P, vocab] = lm_head(norm(x)) for x [P, hidden]: the final RMSNorm fused into the output projection.
    private void Logits(Tensor logits, Tensor x) =>
        Ops.NormLinear(logits, LmHeadWeight, null, null, null, null, x, NormWeight, (float)_config.RmsNormEps);

    /// <summary>
    /// Records one decoding step on <paramref name="step"/>'s tensors (token id, positions and n_past read from device
    /// memory) so it can be replayed as a graph: embedding, the layers, the final norm, the logits and their argmax.
    /// </summary>
    /// <param name="step">The step's tensors.</param>
    /// <param name="cache">The conversation's caches.</param>
    /// <param name="bound">The largest n_past the recorded step serves (sizes the attention launch).</param>
    internal void RecordDecodeStep(DecodeStep step, KvCache cache, int bound)
    {
        Ops.Embedding(step.Hidden, EmbedTokensWeight, step.Ids);
        for (int l = 0; l < Layers.Count; l++) Layers[l].Forward(step.Hidden, step.Positions, cache, step.NPast, bound);
        Logits(step.Logits, step.Hidden);
        Ops.Argmax(step.Best, step.Logits);
    }
}
