using Qwen3VL.Native.Inference;

namespace Qwen3VL.Native.Tests.Inference;

public sealed class SamplerTests
{
    private static double[] Probs(SamplingOptions o, float[] logits, int[]? context = null, int[]? generated = null) =>
        new Sampler(o).Probabilities(logits, context ?? [], generated ?? []);

    private static void Near(double[] expected, double[] actual, double tol = 1e-9)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++) Assert.True(Math.Abs(expected[i] - actual[i]) <= tol, $"[{i}] expected {expected[i]}, got {actual[i]}");
    }

    private static float[] LogOf(params double[] p) => p.Select(x => (float)Math.Log(x)).ToArray();

    [Fact]
    public void TemperatureScalesLogits()
    {
        // scores [0, ln 2] / 0.5 = [0, 2 ln 2]: probabilities 1/5, 4/5.
        Near([0.2, 0.8], Probs(new SamplingOptions { Temperature = 0.5f }, [0f, (float)Math.Log(2)]), 1e-6);
    }

    [Fact]
    public void TopKKeepsTheKLargest()
    {
        double e3 = Math.Exp(3), e4 = Math.Exp(4);
        Near([0, 0, e3 / (e3 + e4), e4 / (e3 + e4)], Probs(new SamplingOptions { Temperature = 1, TopK = 2 }, [1, 2, 3, 4]), 1e-6);
    }

    [Fact]
    public void TopPKeepsTheSmallestSetReachingP()
    {
        float[] logits = LogOf(0.5, 0.3, 0.15, 0.05);
        Near([0.5 / 0.8, 0.3 / 0.8, 0, 0], Probs(new SamplingOptions { Temperature = 1, TopP = 0.75f }, logits), 1e-6);
        Near([0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0], Probs(new SamplingOptions { Temperature = 1, TopP = 0.85f }, logits), 1e-6);
        Near([1, 0, 0, 0], Probs(new SamplingOptions { Temperature = 1, TopP = 0.1f }, logits), 1e-6);
    }

    [Fact]
    public void MinPDropsTokensBelowAFractionOfTheTop()
    {
        float[] logits = LogOf(0.05, 0.5, 0.3, 0.15);
        // limit 0.35 * 0.5 = 0.175: 0.15 and 0.05 go.
        Near([0, 0.5 / 0.8, 0.3 / 0.8, 0], Probs(new SamplingOptions { Temperature = 1, MinP = 0.35f }, logits), 1e-6);
    }

    [Fact]
    public void RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogits()
    {
        float[] logits = [2f, -1f, 0.5f, -2f];
        // tokens 3 and 0 seen (0 twice: penalised once): [1, -1, 0.5, -4]
        double[] s = [1, -1, 0.5, -4];
        double z = s.Sum(Math.Exp);
        Near(s.Select(x => Math.Exp(x) / z).ToArray(),
            Probs(new SamplingOptions { Temperature = 1, RepetitionPenalty = 2 }, logits, context: [3, 0, 0]), 1e-6);
        // Greedy sees the penalties too.
        Assert.Equal(2, new Sampler(new SamplingOptions { Temperature = 0, RepetitionPenalty = 10 }).Sample([2f, -1f, 0.5f, -2f], [0]));
    }

    [Fact]
    public void PresencePenaltySubtractsOncePerGeneratedToken()
    {
        float[] logits = [1f, 1f, 1f];
        double[] s = [1, -0.5, 1];
        double z = s.Sum(Math.Exp);
        Near(s.Select(x => Math.Exp(x) / z).ToArray(),
            Probs(new SamplingOptions { Temperature = 1, PresencePenalty = 1.5f }, logits, generated: [1, 1]), 1e-6);
    }

    [Fact]
    public void CombinedFiltersApplyInTransformersOrder()
    {
        // temperature 1, top-k 3 keeps {0.4, 0.3, 0.2}; top-p 0.6 over those (renormalised 4/9, 3/9, 2/9) keeps 2; min-p 0.5 keeps both.
        float[] logits = LogOf(0.4, 0.3, 0.2, 0.1);
        Near([4 / 7.0, 3 / 7.0, 0, 0], Probs(new SamplingOptions { Temperature = 1, TopK = 3, TopP = 0.6f, MinP = 0.5f }, logits), 1e-6);
    }

    [Fact]
    public void GreedyTakesTheFirstMaximum()
    {
        var s = new Sampler(SamplingOptions.Greedy);
        Assert.Equal(1, s.Sample([0f, 3f, 3f, 1f]));
        Assert.Equal(1, new Sampler(new SamplingOptions { Temperature = 1, TopK = 1 }).Sample([0f, 3f, 3f, 1f]));
    }

    [Fact]
    public void SeedReproducesAndFrequenciesFollowTheDistribution()
    {
        float[] logits = LogOf(0.5, 0.3, 0.15, 0.05);
        var options = new SamplingOptions { Temperature = 1, Seed = 42 };
        var a = new Sampler(options);
        var b = new Sampler(options);
        int[] first = Enumerable.Range(0, 200).Select(_ => a.Sample(logits)).ToArray();
        int[] second = Enumerable.Range(0, 200).Select(_ => b.Sample(logits)).ToArray();
        Assert.Equal(first, second);
        var c = new Sampler(options with { Seed = 43 });
        Assert.NotEqual(first, Enumerable.Range(0, 200).Select(_ => c.Sample(logits)).ToArray());

        var counts = new int[4];
        var d = new Sampler(options with { Seed = 7 });
        const int n = 40000;
        for (int i = 0; i < n; i++) counts[d.Sample(logits)]++;
        double[] expected = [0.5, 0.3, 0.15, 0.05];
        for (int i = 0; i < 4; i++) Assert.True(Math.Abs(counts[i] / (double)n - expected[i]) < 0.01, $"token {i}: {counts[i] / (double)n}");
    }

    [Fact]
    public void InvalidOptionsAreRejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new Sampler(new SamplingOptions { TopP = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Sampler(new SamplingOptions { TopK = -1 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Sampler(new SamplingOptions { MinP = 2 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Sampler(new SamplingOptions { RepetitionPenalty = 0 }));
    }
}
