using Qwen3VL.Native.Inference;
using Qwen3VL.Native.Model;
using Qwen3VL.Native.Tests.Model;
using Qwen3VL.Native.Tests.Processing;

namespace Qwen3VL.Native.Tests.Inference;

/// <summary>Contexts share one model: interleaved or concurrent use gives the results of sequential use; generation stops on request.</summary>
public sealed class ContextTests
{
    private static string TiedFixture => Path.Combine(TestPaths.RepoRoot, "tests", "fixtures", "tiny-tied");

    private static (int[] Ids, VisionInput? Vision) Input(string caseName)
    {
        FixtureCase c = FixtureCatalog.GetCase(TiedFixture, caseName);
        return (c.InputIds, TestModels.FixtureVision(c));
    }

    /// <summary>Prefill, then <paramref name="steps"/> greedy decode steps; returns every step's logits.</summary>
    private static IEnumerable<float[]> Steps(Qwen3VLContext context, int[] ids, VisionInput? vision, int steps)
    {
        float[] logits = context.Prefill(ids, vision);
        yield return logits;
        var sampler = new Sampler(SamplingOptions.Greedy);
        for (int i = 0; i < steps; i++)
        {
            logits = context.Decode(sampler.Sample(logits));
            yield return logits;
        }
    }

    [Fact]
    public void InterleavedContextsMatchSequentialOnes()
    {
        Qwen3VLModel model = TestModels.Get(TiedFixture);
        var (idsA, visionA) = Input("one_image");
        var (idsB, visionB) = Input("two_images_text_between");
        const int steps = 5;

        List<float[]> seqA, seqB;
        using (Qwen3VLContext a = model.CreateContext(256)) seqA = Steps(a, idsA, visionA, steps).ToList();
        using (Qwen3VLContext b = model.CreateContext(256)) seqB = Steps(b, idsB, visionB, steps).ToList();

        using Qwen3VLContext ca = model.CreateContext(256), cb = model.CreateContext(256);
        using IEnumerator<float[]> ea = Steps(ca, idsA, visionA, steps).GetEnumerator(), eb = Steps(cb, idsB, visionB, steps).GetEnumerator();
        for (int i = 0; i <= steps; i++)
        {
            Assert.True(ea.MoveNext());
            Assert.True(eb.MoveNext());
            Assert.True(TestModels.RelativeL2(ea.Current, seqA[i]) <= 1e-6, $"context A step {i}");
            Assert.True(TestModels.RelativeL2(eb.Current, seqB[i]) <= 1e-6, $"context B step {i}");
        }
        Assert.Equal(idsA.Length + steps, ca.Length);
        Assert.Equal(steps + 1, seqA.Count);
    }

    [Fact]
    public void ConcurrentContextsMatchSequentialOnes()
    {
        Qwen3VLModel model = TestModels.Get(TiedFixture);
        var inputs = new[] { Input("one_image"), Input("text_only"), Input("system_rgba") };
        const int steps = 4;
        var sequential = inputs.Select(x =>
        {
            using Qwen3VLContext c = model.CreateContext(256);
            return Steps(c, x.Ids, x.Vision, steps).ToList();
        }).ToList();
        var concurrent = new List<float[]>[inputs.Length];
        Parallel.For(0, inputs.Length, new ParallelOptions { MaxDegreeOfParallelism = inputs.Length }, i =>
        {
            using Qwen3VLContext c = model.CreateContext(256);
            concurrent[i] = Steps(c, inputs[i].Ids, inputs[i].Vision, steps).ToList();
        });
        for (int i = 0; i < inputs.Length; i++)
        {
            for (int s = 0; s <= steps; s++) Assert.True(TestModels.RelativeL2(concurrent[i][s], sequential[i][s]) <= 1e-6, $"input {i} step {s}");
        }
    }

    /// <summary>The first index of the largest value, a NaN counting as larger than any number (torch.argmax): written
    /// here, independently of the engine's <see cref="Sampler"/>.</summary>
    private static int ReferenceArgMax(ReadOnlySpan<float> row)
    {
        int best = 0;
        for (int i = 1; i < row.Length; i++)
        {
            if (float.IsNaN(row[best])) break;
            if (float.IsNaN(row[i]) || row[i] > row[best]) best = i;
        }
        return best;
    }

    [Fact]
    public void DecodeArgMaxIsTheArgMaxOfDecodeLogits()
    {
        Assert.Equal(2, ReferenceArgMax([1f, 0f, 3f, 3f, float.NegativeInfinity]));
        Assert.Equal(1, ReferenceArgMax([1f, float.NaN, float.PositiveInfinity, float.NaN]));

        Qwen3VLModel model = TestModels.Get(TiedFixture);
        var (ids, vision) = Input("one_image");
        // a decodes through DecodeArgMax; b takes the same tokens through Decode, whose logits the reference reads.
        using Qwen3VLContext a = model.CreateContext(ids.Length + 8);
        using Qwen3VLContext b = model.CreateContext(ids.Length + 8);
        int token = ReferenceArgMax(b.Prefill(ids, vision));
        Assert.Equal(token, ReferenceArgMax(a.Prefill(ids, vision)));
        for (int i = 0; i < 6; i++)
        {
            int ours = a.DecodeArgMax(token);
            float[] logits = b.Decode(token);
            int expected = ReferenceArgMax(logits);
            Assert.True(ours == expected, $"step {i}: DecodeArgMax gave {ours} (logit {logits[ours]:R}), the argmax of the logits is {expected} (logit {logits[expected]:R})");
            token = expected;
        }
        Assert.Equal(b.Tokens, a.Tokens);
        Assert.Throws<ArgumentOutOfRangeException>(() => a.DecodeArgMax(model.Config.VocabSize));
        Assert.Equal(b.Length, a.Length);
    }

    /// <summary>
    /// <see cref="DecodePolicy.Bound"/>, for every nPast a context of <paramref name="capacity"/> can decode at (0 to
    /// capacity − 1). The rule it implements: the graph for nPast serves K = max(256, 2^⌈log₂(nPast + 1)⌉) keys, capped at
    /// the capacity, and its bound is K − 1; so the bounds are 256·2^k − 1 (k ≥ 0) below the capacity, then capacity − 1,
    /// and a context has 1 + ⌈log₂(capacity / 256)⌉ of them (1 up to 256 keys).
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(100)]
    [InlineData(255)]
    [InlineData(256)]
    [InlineData(257)]
    [InlineData(512)]
    [InlineData(4096)]
    [InlineData(5000)]
    [InlineData(1 << 20)]
    public void DecodeGraphsAreBucketedByLength(int capacity)
    {
        var bounds = new SortedSet<int>();
        int previous = -1;
        for (int nPast = 0; nPast < capacity; nPast++)
        {
            int bound = DecodePolicy.Bound(nPast, capacity);
            // The graph serves this step (its attention covers n_past keys) and fits the cache.
            if (bound < nPast) Assert.Fail($"capacity {capacity}: bound {bound} < nPast {nPast}");
            if (bound > capacity - 1) Assert.Fail($"capacity {capacity}: bound {bound} for nPast {nPast} is past the cache");
            if (bound < previous) Assert.Fail($"capacity {capacity}: bound {bound} for nPast {nPast} is below {previous} for nPast {nPast - 1}");
            // The exact rule, written independently: the smallest power of two of at least 256 holding nPast + 1 keys.
            long keys = Math.Max(256L, (long)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)nPast + 1));
            if (bound != (int)Math.Min(keys, capacity) - 1) Assert.Fail($"capacity {capacity}, nPast {nPast}: bound {bound}, expected {Math.Min(keys, capacity) - 1}");
            previous = bound;
            bounds.Add(bound);
        }
        // Few graphs: the bounds below the capacity are 256·2^k − 1 (each bucket twice the keys of the last), and there
        // are 1 + ⌈log₂(capacity / 256)⌉ of them.
        foreach (int bound in bounds)
        {
            bool bucket = bound + 1 >= 256 && System.Numerics.BitOperations.IsPow2(bound + 1);
            Assert.True(bucket || bound == capacity - 1, $"capacity {capacity}: bound {bound} is neither 256·2^k − 1 nor capacity − 1");
        }
        int expectedCount = capacity <= 256 ? 1 : 1 + (int)Math.Ceiling(Math.Log2(capacity / 256.0));
        Assert.Equal(expectedCount, bounds.Count);
        Assert.Equal(capacity - 1, bounds.Max);
        Assert.Equal(Math.Min(255, capacity - 1), bounds.Min);
    }

    [Fact]
    public void RopeDeltaDrivesDecodePositions()
    {
        Qwen3VLModel model = TestModels.Get(TiedFixture);
        var (ids, vision) = Input("one_image");
        using Qwen3VLContext c = model.CreateContext(ids.Length + 4);
        c.Prefill(ids, vision);
        Assert.Equal(-60, c.RopeDelta);
        c.Decode(198);
        Assert.Equal(-60, c.RopeDelta);
        Assert.Equal(ids.Length + 1, c.Length);
    }

    [Fact]
    public void PromptLongerThanTheContextIsRejected()
    {
        Qwen3VLModel model = TestModels.Get(TiedFixture);
        var (ids, _) = Input("text_only");
        using Qwen3VLContext c = model.CreateContext(ids.Length - 1);
        Assert.Throws<Qwen3VLLimitExceededException>(() => c.Prefill(ids));
        Assert.Equal(0, c.Length);
    }

    [Fact]
    public void CancellationStopsGeneration()
    {
        Qwen3VLModel model = TestModels.Get(TiedFixture);
        var (ids, _) = Input("text_only");
        using Qwen3VLContext c = model.CreateContext(ids.Length + 64);
        var generator = new Generator(c, TestPaths.Tokenizer);
        using var cts = new CancellationTokenSource();
        int pieces = 0;
        Assert.ThrowsAny<OperationCanceledException>(void () => generator.Generate(ids, null,
            new GenerationOptions { Sampling = SamplingOptions.Greedy, MaxNewTokens = 50, StopTokenIds = [] },
            _ => { pieces++; cts.Cancel(); }, cts.Token));
        Assert.Equal(1, pieces);
        Assert.True(c.Length <= ids.Length + 1);
    }

    [Fact]
    public void GenerationStopsOnStopTokensAndBudget()
    {
        Qwen3VLModel model = TestModels.Get(TiedFixture);
        FixtureCase fc = FixtureCatalog.GetCase(TiedFixture, "text_only");
        int first = TestModels.GreedyTokens(fc)[0];
        using Qwen3VLContext c = model.CreateContext(fc.InputIds.Length + 16);
        GenerationResult stopped = new Generator(c, TestPaths.Tokenizer).Generate(fc.InputIds, null, new GenerationOptions { Sampling = SamplingOptions.Greedy, MaxNewTokens = 8, StopTokenIds = [first] }, null, TestContext.Current.CancellationToken);
        Assert.Equal(StopReason.EndOfSequence, stopped.StopReason);
        Assert.Equal(new[] { first }, stopped.TokenIds);
        Assert.Equal("", stopped.Text);

        c.Reset();
        GenerationResult budget = new Generator(c, TestPaths.Tokenizer).Generate(fc.InputIds, null, new GenerationOptions { Sampling = SamplingOptions.Greedy, MaxNewTokens = 3, StopTokenIds = [] }, null, TestContext.Current.CancellationToken);
        Assert.Equal(StopReason.MaxTokens, budget.StopReason);
        Assert.Equal(3, budget.TokenIds.Count);
        Assert.Equal(TestPaths.Tokenizer.Decode(budget.TokenIds.ToArray(), skipSpecialTokens: true), budget.Text);
    }
}
