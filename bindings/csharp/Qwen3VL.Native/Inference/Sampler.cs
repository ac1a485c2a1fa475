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
        float[] scores = logits.ToArray();
        ApplyPenalties(scores, contextTokens, generatedTokens);
        if (_options.IsGreedy) return ArgMax(scores);
        double[] probs = Distribution(scores);
        double u = NextDouble();
        double cumulative = 0;
        int last = -1;
        for (int i = 0; i < probs.Length; i++)
        {
            if (probs[i] <= 0) continue;
            cumulative += probs[i];
            last = i;
            if (u < cumulative) return i;
        }
        return last; // rounding: u beyond the summed mass
    }

    /// <summary>
    /// The distribution a non-greedy <see cref="Sample"/> draws from (penalties, temperature, top-k, top-p, min-p applied),
    /// as probabilities over the vocabulary with zeros for removed tokens. For greedy options: one-hot at the argmax.
    /// </summary>
    public double[] Probabilities(ReadOnlySpan<float> logits, ReadOnlySpan<int> contextTokens = default, ReadOnlySpan<int> generatedTokens = default)
    {
        float[] scores = logits.ToArray();
        ApplyPenalties(scores, contextTokens, generatedTokens);
        if (_options.IsGreedy)
        {
            var oneHot = new double[scores.Length];
            oneHot[ArgMax(scores)] = 1;
            return oneHot;
        }
        return Distribution(scores);
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
        int v = scores.Length;
        double invT = 1.0 / _options.Temperature;
        var s = new double[v];
        for (int i = 0; i < v; i++) s[i] = scores[i] * invT;

        // Candidates, in index order.
        int[] cand;
        int k = _options.TopK;
        if (k > 0 && k < v)
        {
            double threshold = KthLargest(s, k); // ties with the k-th are kept, as transformers does
            cand = Filter(s, x => x >= threshold);
        }
        else
        {
            cand = Filter(s, x => !double.IsNegativeInfinity(x));
        }
        if (cand.Length == 0) cand = [ArgMax(scores)];

        if (_options.TopP < 1f) cand = TopP(s, cand, _options.TopP);
        if (_options.MinP > 0f)
        {
            double[] p = Softmax(s, cand);
            double limit = _options.MinP * p.Max();
            int[] kept = cand.Where((_, j) => p[j] >= limit).ToArray();
            if (kept.Length > 0) cand = kept;
        }
        double[] final = Softmax(s, cand);
        var probs = new double[v];
        for (int j = 0; j < cand.Length; j++) probs[cand[j]] = final[j];
        return probs;
    }

    /// <summary>
    /// The smallest prefix of the candidates sorted by descending score (ties by index) whose probability mass reaches
    /// <paramref name="topP"/>: a token is kept while the mass before it is below p. Only the likely part is sorted.
    /// </summary>
    private static int[] TopP(double[] s, int[] cand, double topP)
    {
        double[] p = Softmax(s, cand);
        double max = p.Max();
        // Tokens below the cut-off thr can only be kept if the tokens at or above it hold less than p: widen until they do.
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
                var prob = new double[count];
                for (int j = 0, n = 0; j < p.Length; j++)
                {
                    if (p[j] < thr) continue;
                    idx[n] = j;
                    prob[n++] = p[j];
                }
                Array.Sort(idx, (a, b) => s[cand[b]] != s[cand[a]] ? s[cand[b]].CompareTo(s[cand[a]]) : cand[a].CompareTo(cand[b]));
                double before = 0;
                int keep = 0;
                while (keep < idx.Length && before < topP)
                {
                    before += p[idx[keep]];
                    keep++;
                }
                int[] kept = new int[Math.Max(1, keep)];
                for (int j = 0; j < kept.Length; j++) kept[j] = cand[idx[j]];
                Array.Sort(kept);
                return kept;
            }
            if (thr < double.Epsilon * 1e3) thr = 0;
        }
    }

    private static int[] Filter(double[] s, Func<double, bool> keep)
    {
        var result = new List<int>();
        for (int i = 0; i < s.Length; i++) if (keep(s[i])) result.Add(i);
        return result.ToArray();
    }

    /// <summary>The k-th largest value (a size-k min-heap pass).</summary>
    private static double KthLargest(double[] s, int k)
    {
        var heap = new PriorityQueue<double, double>(k + 1);
        foreach (double x in s)
        {
            if (heap.Count < k) heap.Enqueue(x, x);
            else if (x > heap.Peek()) heap.EnqueueDequeue(x, x);
        }
        return heap.Peek();
    }

    /// <summary>Softmax of the scores of the candidates.</summary>
    private static double[] Softmax(double[] s, int[] cand)
    {
        var p = new double[cand.Length];
        double max = double.NegativeInfinity, sum = 0;
        foreach (int i in cand) max = Math.Max(max, s[i]);
        for (int j = 0; j < cand.Length; j++) sum += p[j] = Math.Exp(s[cand[j]] - max);
        for (int j = 0; j < cand.Length; j++) p[j] /= sum;
        return p;
    }

    private static int ArgMax(ReadOnlySpan<float> scores)
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
