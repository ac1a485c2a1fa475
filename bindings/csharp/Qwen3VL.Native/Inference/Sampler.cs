using Qwen3VL.Native.Engine;

namespace Qwen3VL.Native.Inference;

/// <summary>
/// Chooses next tokens from logits per <see cref="SamplingOptions"/>, with its own seeded generator (xoshiro256**), so
/// equal seeds reproduce equal choices on every platform and .NET version. One instance per generation stream.
/// </summary>
public sealed class Sampler
{
    private readonly SamplingOptions _options;
    private ulong _s0, _s1, _s2, _s3;

    /// <summary>Creates a sampler.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    public Sampler(SamplingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        ulong seed = options.Seed ?? (ulong)Random.Shared.NextInt64();
        _s0 = SplitMix(ref seed);
        _s1 = SplitMix(ref seed);
        _s2 = SplitMix(ref seed);
        _s3 = SplitMix(ref seed);
    }

    /// <summary>The options.</summary>
    public SamplingOptions Options => _options;

    /// <summary>Picks the next token.</summary>
    /// <param name="logits">Logits over the vocabulary.</param>
    /// <param name="contextTokens">Tokens of the context so far (prompt and generated) for the repetition penalty.</param>
    /// <param name="generatedTokens">Tokens generated so far for the presence penalty.</param>
    public int Sample(ReadOnlySpan<float> logits, ReadOnlySpan<int> contextTokens = default, ReadOnlySpan<int> generatedTokens = default)
    {
        if (logits.IsEmpty) throw new ArgumentException("No logits.", nameof(logits));
        float[] scores = Penalised(logits, contextTokens, generatedTokens);
        if (_options.IsGreedy) return ArgMax(scores);
        (int[] cand, double[] probs) = Candidates(scores);
        return Draw(cand, probs);
    }

    /// <summary>
    /// How many of a decoding step's largest logits (with their ids, <see cref="Qwen3VLContext.DecodeTopK"/>) settle a
    /// draw without the rest of the row, or 0 when <see cref="Sample"/> needs the whole row. Sampling with top-k
    /// (k below the vocabulary and below <see cref="Ops.TopKMax"/>) and no penalty needs k + 1: the one after the k-th
    /// shows whether the k-th is tied with a token outside the k. Greedy decoding, top-k off, or a repetition or
    /// presence penalty (it can move tokens into the k largest) need the row.
    /// </summary>
    /// <param name="vocabSize">Logits per step.</param>
    public int CandidateCount(int vocabSize)
    {
        if (!CandidatesCanSettle) return 0;
        int k = _options.TopK;
        return k < vocabSize && k < Ops.TopKMax ? k + 1 : 0;
    }

    private bool CandidatesCanSettle =>
        !_options.IsGreedy && _options.TopK > 0 && _options.RepetitionPenalty == 1f && _options.PresencePenalty == 0f;

    /// <summary>
    /// Draws the next token from a step's <see cref="CandidateCount"/> largest logits and their ids (descending, ties by
    /// the lower id, as <see cref="Qwen3VLContext.DecodeTopK"/> gives them): the token <see cref="Sample"/> draws from
    /// the whole row with the same generator state. When they do not settle the draw (the k-th logit equals the next
    /// one, so which tied tokens top-k keeps depends on the rest of the row; or a NaN among them) it draws nothing and
    /// returns false: then call <see cref="Sample"/> with the row.
    /// </summary>
    /// <param name="values">The largest logits, descending (at least top_k + 1).</param>
    /// <param name="ids">Their token ids.</param>
    /// <param name="token">The drawn token, or -1.</param>
    /// <exception cref="InvalidOperationException">The options need the whole row (<see cref="CandidateCount"/> is 0).</exception>
    /// <exception cref="ArgumentException">Fewer than top_k + 1 candidates, or values and ids differ in length.</exception>
    public bool TrySampleCandidates(ReadOnlySpan<float> values, ReadOnlySpan<int> ids, out int token)
    {
        token = -1;
        if (!CandidatesCanSettle) throw new InvalidOperationException("These sampling options need the whole logits row.");
        int k = _options.TopK;
        if (values.Length != ids.Length) throw new ArgumentException("values and ids differ in length.", nameof(ids));
        if (values.Length <= k) throw new ArgumentException($"top-k = {k} needs the {k + 1} largest logits.", nameof(values));
        for (int j = 0; j <= k; j++)
        {
            if (!float.IsFinite(values[j])) return false; // NaN or infinity: the row's check names the fault
        }
        if (!(values[k - 1] > values[k])) return false;
        // The row's top-k set is exactly these k (the full path keeps every score >= the k-th, and scaling by 1/T keeps
        // distinct floats distinct): the same candidates in the same id order, so the same scores and the same draw.
        int[] cand = ids[..k].ToArray();
        float[] kept = values[..k].ToArray();
        Array.Sort(cand, kept);
        double invT = 1.0 / _options.Temperature;
        var sc = new double[k];
        for (int j = 0; j < k; j++) sc[j] = kept[j] * invT;
        (int[] c, double[] probs) = Filter(cand, sc);
        token = Draw(c, probs);
        return true;
    }

    // A draw from the candidates' probabilities (one uniform number).
    private int Draw(int[] cand, double[] probs)
    {
        double u = NextDouble();
        double cumulative = 0;
        int last = -1;
        for (int j = 0; j < cand.Length; j++)
        {
            if (probs[j] <= 0) continue;
            cumulative += probs[j];
            last = cand[j];
            if (u < cumulative) return cand[j];
        }
        return last; // rounding: u beyond the summed mass
    }

    /// <summary>
    /// The distribution a non-greedy <see cref="Sample"/> draws from (penalties, temperature, top-k, top-p, min-p applied),
    /// as probabilities over the vocabulary with zeros for removed tokens. For greedy options: one-hot at the argmax.
    /// </summary>
    public double[] Probabilities(ReadOnlySpan<float> logits, ReadOnlySpan<int> contextTokens = default, ReadOnlySpan<int> generatedTokens = default)
    {
        float[] scores = Penalised(logits, contextTokens, generatedTokens);
        if (_options.IsGreedy)
        {
            var oneHot = new double[scores.Length];
            oneHot[ArgMax(scores)] = 1;
            return oneHot;
        }
        return Distribution(scores);
    }

    /// <summary>
    /// A copy of the logits with the penalties applied, after checking that both can be sampled: no NaN, no +infinity,
    /// and at least one finite score. A model that produced such logits is broken, and penalties that produce them
    /// (a repetition penalty of 1e-38 divides a logit into infinity) leave no distribution to draw from.
    /// </summary>
    /// <exception cref="Qwen3VLNumericalException">The logits, or the scores after the penalties, cannot be sampled.</exception>
    private float[] Penalised(ReadOnlySpan<float> logits, ReadOnlySpan<int> contextTokens, ReadOnlySpan<int> generatedTokens)
    {
        if (NonFinite(logits) is { } fault) throw new Qwen3VLNumericalException("the model produced " + fault);
        float[] scores = logits.ToArray();
        bool penalties = (_options.RepetitionPenalty != 1f && !contextTokens.IsEmpty) || (_options.PresencePenalty != 0f && !generatedTokens.IsEmpty);
        if (!penalties) return scores;
        ApplyPenalties(scores, contextTokens, generatedTokens);
        if (NonFinite(scores) is { } penalised)
        {
            throw new Qwen3VLNumericalException($"the repetition penalty ({_options.RepetitionPenalty}) and presence penalty " +
                $"({_options.PresencePenalty}) turned finite logits into {penalised}; choose penalties closer to 1 and 0");
        }
        return scores;
    }

    /// <summary>
    /// What makes a row of logits unsamplable, or null when it can be sampled: a NaN, a +infinity (softmax of it is NaN),
    /// or no finite value at all (-infinity everywhere: no token is possible). One pass over the row.
    /// </summary>
    internal static string? NonFinite(ReadOnlySpan<float> logits)
    {
        bool anyFinite = false;
        for (int i = 0; i < logits.Length; i++)
        {
            float x = logits[i];
            if (float.IsFinite(x))
            {
                anyFinite = true;
                continue;
            }
            if (float.IsNaN(x)) return $"NaN logits (token id {i} is the first)";
            if (float.IsPositiveInfinity(x)) return $"infinite logits (token id {i} is the first)";
        }
        return anyFinite ? null : "logits that are -infinity for every token";
    }

    private void ApplyPenalties(float[] scores, ReadOnlySpan<int> contextTokens, ReadOnlySpan<int> generatedTokens)
    {
        float r = _options.RepetitionPenalty;
        if (r != 1f && !contextTokens.IsEmpty)
        {
            var seen = new HashSet<int>();
            foreach (int id in contextTokens)
            {
                if ((uint)id >= (uint)scores.Length || !seen.Add(id)) continue;
                scores[id] = scores[id] < 0 ? scores[id] * r : scores[id] / r;
            }
        }
        float p = _options.PresencePenalty;
        if (p != 0f && !generatedTokens.IsEmpty)
        {
            var seen = new HashSet<int>();
            foreach (int id in generatedTokens)
            {
                if ((uint)id < (uint)scores.Length && seen.Add(id)) scores[id] -= p;
            }
        }
    }

    private double[] Distribution(float[] scores)
    {
        (int[] cand, double[] final) = Candidates(scores);
        var probs = new double[scores.Length];
        for (int j = 0; j < cand.Length; j++) probs[cand[j]] = final[j];
        return probs;
    }

    /// <summary>
    /// The tokens that can be drawn (in index order) and their probabilities: temperature, top-k, top-p and min-p applied.
    /// Only the candidates' scores are materialised (top-k keeps a handful of the vocabulary), so a step costs one pass
    /// over the logits plus work on the candidates.
    /// </summary>
    private (int[] Cand, double[] Prob) Candidates(float[] scores)
    {
        int v = scores.Length;
        double invT = 1.0 / _options.Temperature;
        int[] cand;
        int k = _options.TopK;
        if (k > 0 && k < v)
        {
            double threshold = KthLargest(scores, invT, k); // ties with the k-th are kept, as transformers does
            var kept = new List<int>(k + 8);
            for (int i = 0; i < v; i++) if (scores[i] * invT >= threshold) kept.Add(i);
            cand = kept.ToArray();
        }
        else
        {
            var kept = new List<int>();
            for (int i = 0; i < v; i++) if (!double.IsNegativeInfinity(scores[i] * invT)) kept.Add(i);
            cand = kept.ToArray();
        }
        if (cand.Length == 0) cand = [ArgMax(scores)];
        return Filter(cand, Scores(scores, invT, cand));
    }

    /// <summary>Top-p, then min-p, on candidates in id order with their scores (after temperature); their probabilities.</summary>
    private (int[] Cand, double[] Prob) Filter(int[] cand, double[] sc)
    {
        if (_options.TopP < 1f)
        {
            int[] kept = TopP(sc, cand, _options.TopP);
            (cand, sc) = (Pick(cand, kept), Pick(sc, kept));
        }
        if (_options.MinP > 0f)
        {
            double[] p = Softmax(sc);
            double limit = _options.MinP * p.Max();
            int[] kept = Enumerable.Range(0, p.Length).Where(j => p[j] >= limit).ToArray();
            if (kept.Length > 0) (cand, sc) = (Pick(cand, kept), Pick(sc, kept));
        }
        return (cand, Softmax(sc));
    }

    private static T[] Pick<T>(T[] items, int[] positions)
    {
        var picked = new T[positions.Length];
        for (int j = 0; j < positions.Length; j++) picked[j] = items[positions[j]];
        return picked;
    }

    private static double[] Scores(float[] scores, double invT, int[] cand)
    {
        var sc = new double[cand.Length];
        for (int j = 0; j < cand.Length; j++) sc[j] = scores[cand[j]] * invT;
        return sc;
    }

    /// <summary>
    /// The smallest prefix of the candidates sorted by descending score (ties by index) whose probability mass reaches
    /// <paramref name="topP"/>: a token is kept while the mass before it is below p. Only the likely part is sorted.
    /// Returns the kept candidates' positions, ascending.
    /// </summary>
    /// <param name="sc">The candidates' scores (after temperature).</param>
    /// <param name="cand">The candidates' token ids.</param>
    /// <param name="topP">The probability mass to keep.</param>
    private static int[] TopP(double[] sc, int[] cand, double topP)
    {
        double[] p = Softmax(sc);
        double max = p.Max();
        // Finite scores give 0 < max <= 1 (Sample checks them first); anything else would never end the widening below.
        if (!(max > 0 && max <= 1)) throw new Qwen3VLNumericalException($"top-p found no probability to keep (largest {max})");
        // Tokens below the cut-off thr can only be kept if the tokens at or above it hold less than p: widen until they do
        // (at most ~110 rounds: thr shrinks by 1e-3 from <= 1e-4 until it reaches 0).
        for (double thr = max * 1e-4; ; thr *= 1e-3)
        {
            double mass = 0;
            int count = 0;
            for (int j = 0; j < p.Length; j++)
            {
                if (p[j] >= thr)
                {
                    mass += p[j];
                    count++;
                }
            }
            if (mass >= topP || count == p.Length || thr == 0)
            {
                var idx = new int[count];
                for (int j = 0, n = 0; j < p.Length; j++)
                {
                    if (p[j] < thr) continue;
                    idx[n++] = j;
                }
                Array.Sort(idx, (a, b) => sc[b] != sc[a] ? sc[b].CompareTo(sc[a]) : cand[a].CompareTo(cand[b]));
                double before = 0;
                int keep = 0;
                while (keep < idx.Length && before < topP)
                {
                    before += p[idx[keep]];
                    keep++;
                }
                int[] kept = idx[..Math.Max(1, keep)];
                Array.Sort(kept);
                return kept;
            }
            if (thr < double.Epsilon * 1e3) thr = 0;
        }
    }

    /// <summary>The k-th largest of scores[i] * invT (a size-k min-heap pass).</summary>
    private static double KthLargest(float[] scores, double invT, int k)
    {
        var heap = new PriorityQueue<double, double>(k + 1);
        foreach (float f in scores)
        {
            double x = f * invT;
            if (heap.Count < k) heap.Enqueue(x, x);
            else if (x > heap.Peek()) heap.EnqueueDequeue(x, x);
        }
        return heap.Peek();
    }

    /// <summary>Softmax of the candidates' scores.</summary>
    private static double[] Softmax(double[] sc)
    {
        var p = new double[sc.Length];
        double max = double.NegativeInfinity, sum = 0;
        foreach (double x in sc) max = Math.Max(max, x);
        for (int j = 0; j < sc.Length; j++) sum += p[j] = Math.Exp(sc[j] - max);
        for (int j = 0; j < sc.Length; j++) p[j] /= sum;
        return p;
    }

    /// <summary>True when <see cref="Sample"/> is the plain argmax of the logits (greedy, no penalties), which the
    /// backend can compute next to the logits (<see cref="Qwen3VLContext.DecodeArgMax"/>).</summary>
    public bool IsPlainArgMax => _options.IsGreedy && _options.RepetitionPenalty == 1f && _options.PresencePenalty == 0f;

    internal static int ArgMax(ReadOnlySpan<float> scores)
    {
        int best = 0;
        for (int i = 1; i < scores.Length; i++)
        {
            if (scores[i] > scores[best]) best = i;
        }
        return best;
    }

    private static ulong SplitMix(ref ulong x)
    {
        ulong z = x += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    private ulong NextUInt64()
    {
        ulong result = ulong.RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0;
        _s3 ^= _s1;
        _s1 ^= _s2;
        _s0 ^= _s3;
        _s2 ^= t;
        _s3 = ulong.RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>A uniform double in [0, 1).</summary>
    internal double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));
}
