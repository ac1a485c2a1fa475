using Qwen3VL.Native.Engine;
using Qwen3VL.Native.Inference;
using Qwen3VL.Native.Tests.Model;
using Qwen3VL.Native.Tests.Processing;

namespace Qwen3VL.Native.Tests.Inference;

/// <summary>
/// Sampling from a step's top_k + 1 largest logits (Qwen3VLContext.DecodeTopK, Sampler.TrySampleCandidates) draws the
/// token the full-row path draws with the same seed, or declines and leaves the generator state alone; options whose
/// result could depend on the rest of the row (penalties, top-k off, greedy) always take the full row. On the CPU
/// backend, whose top_k op the tests use to select the candidates (the CUDA op is tested equal to it natively).
/// </summary>
public sealed class CandidateSamplingTests
{
    private static string TiedFixture => Path.Combine(TestPaths.RepoRoot, "tests", "fixtures", "tiny-tied");

    public static TheoryData<int, float, float, float> OptionSets => new()
    {
        { 20, 0.8f, 0.7f, 0f },   // Qwen3-VL's generation_config
        { 5, 1f, 1.5f, 0f },
        { 50, 1f, 1f, 0.05f },
        { 3, 0.5f, 0.3f, 0f },
        { 100, 0.95f, 1.2f, 0.01f },
        { 2, 1f, 1f, 0f },
    };

    private static SamplingOptions Options(int topK, float topP, float temperature, float minP, ulong seed) =>
        new() { TopK = topK, TopP = topP, Temperature = temperature, MinP = minP, Seed = seed };

    /// <summary>The <paramref name="count"/> largest of a row with their ids, from the backend's top_k op.</summary>
    private static (float[] Values, int[] Ids) Top(float[] row, int count)
    {
        Backend b = TestModels.Backend;
        using Tensor x = b.CreateTensor(TensorDType.F32, 1, row.Length);
        using Tensor v = b.CreateTensor(TensorDType.F32, 1, count), i = b.CreateTensor(TensorDType.I32, 1, count);
        x.Write(row);
        Ops.TopK(v, i, x, count);
        var values = new float[count];
        var ids = new int[count];
        v.Read(values);
        i.Read(ids);
        return (values, ids);
    }

    /// <summary>Random logits in [-12, 12] on a grid of 1/<paramref name="steps"/> (a coarse grid: many ties) and a few -inf.</summary>
    private static float[] RandomLogits(Random rng, int vocab, int steps)
    {
        var row = new float[vocab];
        for (int i = 0; i < row.Length; i++) row[i] = MathF.Round((float)(rng.NextDouble() * 24 - 12) * steps) / steps;
        for (int i = 0; i < 5; i++) row[rng.Next(vocab)] = float.NegativeInfinity;
        return row;
    }

    [Theory]
    [MemberData(nameof(OptionSets))]
    public void CandidateDrawsAreTheFullRowDraws(int topK, float topP, float temperature, float minP)
    {
        const int vocab = 5000;
        var rng = new Random(topK * 1000 + (int)(topP * 100));
        int settled = 0, declined = 0;
        for (int trial = 0; trial < 30; trial++)
        {
            SamplingOptions options = Options(topK, topP, temperature, minP, (ulong)trial);
            var full = new Sampler(options);
            var fromCandidates = new Sampler(options);
            int count = fromCandidates.CandidateCount(vocab);
            Assert.Equal(topK + 1, count);
            for (int draw = 0; draw < 4; draw++)
            {
                float[] row = RandomLogits(rng, vocab, trial % 2 == 0 ? 8 : 4096);
                (float[] values, int[] ids) = Top(row, count);
                int want = full.Sample(row);
                if (fromCandidates.TrySampleCandidates(values, ids, out int got))
                {
                    settled++;
                }
                else
                {
                    // Declined (a tie at the k-th logit): nothing was drawn, so the full row gives the same token.
                    declined++;
                    Assert.Equal(-1, got);
                    Assert.Equal(values[topK - 1], values[topK]);
                    got = fromCandidates.Sample(row);
                }
                Assert.Equal(want, got);
            }
        }
        Assert.True(settled > 0, "no draw was settled by the candidates");
        Assert.True(settled + declined == 120);
    }

    [Fact]
    public void TiesAtTheKthLogitAndNaNsAreDeclined()
    {
        var options = Options(3, 1f, 1f, 0f, 5);
        var full = new Sampler(options);
        var fromCandidates = new Sampler(options);
        float[] tied = [0f, 5f, 4f, 3f, 3f, 1f];  // the 3rd and 4th largest are equal: top-k keeps both
        (float[] values, int[] ids) = Top(tied, 4);
        Assert.False(fromCandidates.TrySampleCandidates(values, ids, out int token));
        Assert.Equal(-1, token);
        Assert.Equal(full.Sample(tied), fromCandidates.Sample(tied));

        // A NaN logit is a fault of the model (issue 12): the candidates decline, and the row names it on both samplers.
        float[] withNaN = [0f, 5f, float.NaN, 3f, 2f, 1f];
        (values, ids) = Top(withNaN, 4);
        Assert.True(float.IsNaN(values[0]));
        Assert.False(fromCandidates.TrySampleCandidates(values, ids, out _));
        Assert.Contains("NaN", Assert.Throws<Qwen3VLNumericalException>(() => full.Sample(withNaN)).Message);
        Assert.Contains("NaN", Assert.Throws<Qwen3VLNumericalException>(() => fromCandidates.Sample(withNaN)).Message);

        float[] clear = [0f, 5f, 4f, 3f, 2f, 1f];
        (values, ids) = Top(clear, 4);
        Assert.True(fromCandidates.TrySampleCandidates(values, ids, out token));
        Assert.Equal(full.Sample(clear), token);
        Assert.Throws<ArgumentException>(() => fromCandidates.TrySampleCandidates(values.AsSpan(0, 3), ids.AsSpan(0, 3), out _));
    }

    [Fact]
    public void OptionsThatNeedTheWholeRowGetNoCandidates()
    {
        const int vocab = 151936;
        Assert.Equal(21, new Sampler(Options(20, 0.8f, 0.7f, 0f, 1)).CandidateCount(vocab));
        SamplingOptions[] needRow =
        [
            Options(20, 0.8f, 0.7f, 0f, 1) with { RepetitionPenalty = 1.05f },
            Options(20, 0.8f, 0.7f, 0f, 1) with { PresencePenalty = 0.5f },
            Options(0, 0.8f, 0.7f, 0f, 1),             // top-k off: any token may be drawn
            Options(20, 0.8f, 0f, 0f, 1),              // greedy (the backend's argmax path)
            Options(1, 1f, 0.7f, 0f, 1),               // top-k 1 is greedy
        ];
        foreach (SamplingOptions o in needRow)
        {
            var s = new Sampler(o);
            Assert.Equal(0, s.CandidateCount(vocab));
            Assert.Throws<InvalidOperationException>(() => s.TrySampleCandidates(new float[30], new int[30], out _));
        }
        Assert.Equal(0, new Sampler(Options(Ops.TopKMax, 1f, 0.7f, 0f, 1)).CandidateCount(vocab));  // k + 1 above what top_k selects
        Assert.Equal(0, new Sampler(Options(20, 1f, 0.7f, 0f, 1)).CandidateCount(20));  // k >= vocabulary: top-k keeps all
    }

    [Fact]
    public void DecodeTopKIsTheTopOfTheDecodeLogits()
    {
        Qwen3VLModel model = TestModels.Get(TiedFixture);
        FixtureCase fc = FixtureCatalog.GetCase(TiedFixture, "text_only");
        using Qwen3VLContext a = model.CreateContext(fc.InputIds.Length + 8), b = model.CreateContext(fc.InputIds.Length + 8);
        int token = Sampler.ArgMax(a.Prefill(fc.InputIds));
        b.Prefill(fc.InputIds);
        var values = new float[21];
        var ids = new int[21];
        for (int step = 0; step < 4; step++)
        {
            a.DecodeTopK(token, values, ids);
            float[] logits = a.LastLogits();
            int[] order = Enumerable.Range(0, logits.Length).OrderByDescending(i => logits[i]).ThenBy(i => i).Take(21).ToArray();
            Assert.Equal(order, ids);
            Assert.Equal(order.Select(i => logits[i]).ToArray(), values);
            Assert.True(TestModels.RelativeL2(logits, b.Decode(token)) <= 1e-6, $"step {step}: DecodeTopK appends like Decode");
            token = ids[step % 3];
        }
        Assert.Equal(b.Tokens, a.Tokens);
        a.Decode(token);
        Assert.Throws<InvalidOperationException>(() => a.LastLogits());
        Assert.Throws<ArgumentException>(() => a.DecodeTopK(token, new float[3], new int[2]));
        Assert.Throws<ArgumentException>(() => a.DecodeTopK(token, new float[Ops.TopKMax + 1], new int[Ops.TopKMax + 1]));
        Assert.Throws<ArgumentException>(() => a.DecodeTopK(token, [], []));
    }

    [Theory]
    [InlineData(1, 151936, 32)]
    [InlineData(21, 151936, 32)]
    [InlineData(33, 151936, 64)]
    [InlineData(1000, 151936, 1024)]
    [InlineData(1024, 151936, 1024)]
    [InlineData(5, 20, 20)]
    public void DecodeGraphsSelectCandidatesInBuckets(int candidates, int vocab, int bucket)
    {
        Assert.Equal(bucket, DecodePolicy.CandidateBucket(candidates, vocab));
        Assert.Throws<ArgumentOutOfRangeException>(() => DecodePolicy.CandidateBucket(Ops.TopKMax + 1, vocab));
    }

    /// <summary>The tokens of the plain loop: prefill, then sample from the full row and decode it, step by step.</summary>
    private static List<int> FullRowTokens(Qwen3VLContext context, int[] prompt, SamplingOptions options, int count)
    {
        var sampler = new Sampler(options);
        var generated = new List<int>();
        float[] logits = context.Prefill(prompt);
        while (true)
        {
            int token = sampler.Sample(logits, context.TokenSpan, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(generated));
            generated.Add(token);
            if (generated.Count == count) return generated;
            logits = context.Decode(token);
        }
    }

    [Theory]
    [MemberData(nameof(OptionSets))]
    public void GenerationFromCandidatesMatchesTheFullRowLoop(int topK, float topP, float temperature, float minP)
    {
        Qwen3VLModel model = TestModels.Get(TiedFixture);
        FixtureCase fc = FixtureCatalog.GetCase(TiedFixture, "text_only");
        const int newTokens = 12;
        SamplingOptions options = Options(topK, topP, temperature, minP, 11);
        Assert.True(new Sampler(options).CandidateCount(model.Config.VocabSize) > 0, "these options take the candidate path");
        using Qwen3VLContext a = model.CreateContext(fc.InputIds.Length + newTokens), b = model.CreateContext(fc.InputIds.Length + newTokens);
        GenerationResult result = new Generator(a, TestPaths.Tokenizer).Generate(fc.InputIds, null,
            new GenerationOptions { Sampling = options, MaxNewTokens = newTokens, StopTokenIds = [] }, null, TestContext.Current.CancellationToken);
        Assert.Equal(FullRowTokens(b, fc.InputIds, options, newTokens), result.TokenIds);
        Assert.Equal(model.Config.VocabSize, a.LastLogits().Length);  // the last step selected candidates
    }

    [Theory]
    [InlineData(1.3f, 0f)]
    [InlineData(1f, 0.8f)]
    public void PenaltiesTakeTheFullRow(float repetition, float presence)
    {
        Qwen3VLModel model = TestModels.Get(TiedFixture);
        FixtureCase fc = FixtureCatalog.GetCase(TiedFixture, "text_only");
        const int newTokens = 10;
        SamplingOptions options = Options(20, 0.8f, 0.7f, 0f, 3) with { RepetitionPenalty = repetition, PresencePenalty = presence };
        Assert.Equal(0, new Sampler(options).CandidateCount(model.Config.VocabSize));
        using Qwen3VLContext a = model.CreateContext(fc.InputIds.Length + newTokens), b = model.CreateContext(fc.InputIds.Length + newTokens);
        GenerationResult result = new Generator(a, TestPaths.Tokenizer).Generate(fc.InputIds, null,
            new GenerationOptions { Sampling = options, MaxNewTokens = newTokens, StopTokenIds = [] }, null, TestContext.Current.CancellationToken);
        Assert.Equal(FullRowTokens(b, fc.InputIds, options, newTokens), result.TokenIds);
        Assert.Throws<InvalidOperationException>(() => a.LastLogits());  // no step of this generation selected candidates
    }
}
