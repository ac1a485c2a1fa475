using Qwen3VL.Native.Engine;
using Qwen3VL.Native.Inference;
using Qwen3VL.Native.Model;
using Qwen3VL.Native.Tests.Processing;
using Qwen3VL.Native.Tests.Shared;

namespace Qwen3VL.Native.Tests.Model;

/// <summary>
/// <see cref="Qwen3VLModelOptions.KvCache"/> on the CPU: which caches a context gets and their true size, and the logits of a
/// model with 8-bit caches against the same model with f32 caches and against transformers' fp32 reference. The bound is
/// the parity runner's (tests/csharp/Qwen3VL.Parity/Program.cs): each layer's K and V caches are 2 independently-rounded
/// sources of relative RMS error 5.4e-3 (the Q8 format's per cached vector), n_kv = 2 * layers of them accumulated as the
/// quantized matrices are, 2 sqrt(n_kv + 1) 5.4e-3, in quadrature with the base criterion (1e-4, the CPU's against fp32):
/// 0.029 for the 3-layer tiny-tied fixture (measured: 1e-3 .. 3e-3). A cache that was not quantized computes the f32 one's
/// logits (to rounding noise) and fails the lower end, 1e-4. tiny-tied has head_dim 32 (one block per head row), random-256 head_dim 64 (two); tiny-untied's head_dim 16 is
/// refused.
/// </summary>
public sealed class KvCacheFormatTests(ITestOutputHelper output)
{
    private const double Q8RelativeRms = 5.4e-3, BaseTolerance = 1e-4, MarginFloor = 5e-2;

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, Lazy<Qwen3VLModel>> Q8KvModels = new();

    private static string Fixture(string name) => Path.Combine(TestPaths.RepoRoot, "tests", "fixtures", name);

    /// <summary>The fixture's model with Q8 KV caches (weights as stored), loaded once.</summary>
    private static Qwen3VLModel Q8Kv(string fixtureDirectory) => Q8KvModels.GetOrAdd(Path.GetFullPath(fixtureDirectory), d =>
        new Lazy<Qwen3VLModel>(() => Qwen3VLModel.Load(Path.Combine(d, "model"), TestModels.Backend,
            new Qwen3VLModelOptions { KvCache = KvCacheFormat.Q8 }))).Value;

    private static double Bound(int layers, double baseTolerance) =>
        Math.Sqrt(Math.Pow(2 * Math.Sqrt(2 * layers + 1) * Q8RelativeRms, 2) + baseTolerance * baseTolerance);

    [Fact]
    public void Q8CachesHoldAByteAndAScaleSixteenthPerElement()
    {
        Qwen3VLModel q8 = Q8Kv(Fixture("tiny-tied"));
        Qwen3VLModel auto = TestModels.Get(Fixture("tiny-tied"));
        Assert.Equal(KvCacheFormat.Q8, q8.KvCache);
        Assert.Equal(KvCacheFormat.F32, auto.KvCache);  // Auto on the CPU (fp32 math)
        ModelConfig c = q8.Config;
        const int capacity = 40;
        long elements = (long)capacity * c.TextNumKvHeads * c.TextHeadDim;  // per layer, per K or V
        using (Qwen3VLContext ctx = q8.CreateContext(capacity))
        {
            // int8 values plus one f16 scale per 32: 17/16 bytes per element.
            Assert.Equal((ulong)(c.TextNumLayers * 2 * (elements * 17 / 16)), ctx.CacheBytes);
        }
        using (Qwen3VLContext ctx = auto.CreateContext(capacity)) Assert.Equal((ulong)(c.TextNumLayers * 2 * elements * 4), ctx.CacheBytes);

        // The caches themselves: Q8 tensors [capacity, kv_heads, head_dim], and the other formats by name.
        using (var cache = new KvCache(TestModels.Backend, c, capacity, TensorDType.Q8))
        {
            Assert.Equal(TensorDType.Q8, cache.Keys(0).DType);
            Assert.Equal(TensorDType.Q8, cache.Values(c.TextNumLayers - 1).DType);
            Assert.Equal([capacity, c.TextNumKvHeads, c.TextHeadDim], cache.Keys(1).Shape);
            Assert.Equal((ulong)(elements + elements / 32 * 2), cache.Keys(0).ByteCount);
            Assert.Equal((ulong)(c.TextNumLayers * 2 * (elements + elements / 32 * 2)), cache.ByteCount);
        }
        using (Qwen3VLModel bf16 = Qwen3VLModel.Load(Path.Combine(Fixture("tiny-tied"), "model"), TestModels.Backend,
                   new Qwen3VLModelOptions { KvCache = KvCacheFormat.BF16 }))
        using (Qwen3VLContext ctx = bf16.CreateContext(capacity))
        {
            Assert.Equal(KvCacheFormat.BF16, bf16.KvCache);
            Assert.Equal((ulong)(c.TextNumLayers * 2 * elements * 2), ctx.CacheBytes);
        }

        // A session reports its context's caches.
        using Qwen3VLChatSession session = q8.CreateSession(new ChatSessionOptions { ContextLength = capacity });
        Assert.Equal((ulong)(c.TextNumLayers * 2 * (elements * 17 / 16)), session.CacheBytes);
    }

    public static TheoryData<string, string> TiedCases => FixtureCatalog.AllCases(c => Path.GetFileName(c.FixtureDirectory) == "tiny-tied");

    [Theory]
    [MemberData(nameof(TiedCases))]
    public void Q8KvLogitsAreWithinTheFormatsErrorButNotBitEqual(string fixtureDirectory, string caseName)
    {
        FixtureCase c = FixtureCatalog.GetCase(fixtureDirectory, caseName);
        Qwen3VLModel q8 = Q8Kv(fixtureDirectory), f32 = TestModels.Get(fixtureDirectory);
        Assert.Equal(KvCacheFormat.F32, f32.KvCache);
        int[] ids = c.InputIds, positions = TestModels.LogitPositions(c), greedy = TestModels.GreedyTokens(c);
        double[] margins = TestModels.GreedyMargins(c);
        int vocab = q8.Config.VocabSize;
        double bound = Bound(q8.Config.TextNumLayers, BaseTolerance);

        using Qwen3VLContext a = q8.CreateContext(ids.Length + greedy.Length + 1);
        using Qwen3VLContext b = f32.CreateContext(ids.Length + greedy.Length + 1);
        float[] ours = a.Prefill(ids, TestModels.FixtureVision(c), positions);
        float[] exact = b.Prefill(ids, TestModels.FixtureVision(c), positions);
        var vsFp32 = LogitQuality.Of(ours, TestModels.ReferenceLogits(c), vocab);
        var vsF32Kv = LogitQuality.Of(ours, exact, vocab);

        // Greedy decoding from the prompt's last logits, fed the reference tokens in both contexts: each step's logits
        // within the bound of the f32-KV ones, and the Q8 model's argmax equal to the reference token where its margin is
        // large.
        int last = Array.IndexOf(positions, ids.Length - 1);
        float[] stepQ8 = ours.AsSpan(last * vocab, vocab).ToArray(), stepF32 = exact.AsSpan(last * vocab, vocab).ToArray();
        var decodeErrors = new List<double>();
        int agreed = 0, strict = 0;
        while (strict < greedy.Length && margins[strict] >= MarginFloor) strict++;
        for (int step = 0; step < greedy.Length; step++)
        {
            if (step < strict && TestModels.Top1(stepQ8).Top == greedy[step]) agreed++;
            if (step + 1 == greedy.Length) break;
            stepQ8 = a.Decode(greedy[step]);
            stepF32 = b.Decode(greedy[step]);
            decodeErrors.Add(TestModels.RelativeL2(stepQ8, stepF32));
        }
        output.WriteLine($"{Path.GetFileName(fixtureDirectory)}/{caseName} KV q8 vs transformers fp32: {vsFp32}; vs KV f32: {vsF32Kv}; "
            + $"decode steps vs KV f32: rel L2 max {decodeErrors.Max():E2} (bound {bound:E2}); greedy {agreed}/{strict}");

        Assert.InRange(vsFp32.MaxRelativeL2, 0, bound);
        Assert.InRange(vsF32Kv.MaxRelativeL2, 0, bound);
        Assert.All(decodeErrors, e => Assert.InRange(e, 0, bound));
        // Really quantized: the prompt's attention and every decode step read cached rows that were rounded to 8 bits, so
        // nothing is bit-equal, nor within f32 rounding noise (~1e-7): measured 1e-3 .. 3e-3, the lower end is 1e-4.
        Assert.True(vsF32Kv.MaxRelativeL2 > 1e-4, $"the prompt's logits with Q8 caches are those of f32 caches (rel L2 {vsF32Kv.MaxRelativeL2:E2})");
        Assert.All(decodeErrors, e => Assert.True(e > 1e-4, $"a decode step with Q8 caches computes what f32 caches do (rel L2 {e:E2})"));
        Assert.Equal(strict, agreed);
    }

    [Fact]
    public void Q8KvOnTwoBlocksPerHeadRowIsWithinTheBoundOfTheF32Caches()
    {
        // random-256: head_dim 64, two Q8 blocks per head row (tiny-tied has one), 2 layers; weights as stored (bf16) in both.
        string dir = Q4WeightsTests.Random256.Value;
        using Qwen3VLModel q8 = Qwen3VLModel.Load(dir, TestModels.Backend, new Qwen3VLModelOptions { KvCache = KvCacheFormat.Q8 });
        using Qwen3VLModel f32 = Qwen3VLModel.Load(dir, TestModels.Backend, new Qwen3VLModelOptions { KvCache = KvCacheFormat.F32 });
        Assert.Equal(64, q8.Config.TextHeadDim);
        int[] prompt = Enumerable.Range(0, 24).Select(i => (i * 7919 + 13) % 151643).ToArray();
        using Qwen3VLContext a = q8.CreateContext(prompt.Length + 8);
        using Qwen3VLContext b = f32.CreateContext(prompt.Length + 8);
        // Two prefill chunks: the second attends to the first's cached (rounded) rows.
        int[] rows = [0, 1, 2];
        var errors = new List<double>
        {
            LogitQuality.Of(a.Prefill(prompt.AsSpan(0, 16), null, rows), b.Prefill(prompt.AsSpan(0, 16), null, rows), q8.Config.VocabSize).MaxRelativeL2,
            LogitQuality.Of(a.Prefill(prompt.AsSpan(16), null, rows), b.Prefill(prompt.AsSpan(16), null, rows), q8.Config.VocabSize).MaxRelativeL2,
        };
        int token = 198;
        for (int step = 0; step < 4; step++)
        {
            float[] x = a.Decode(token), y = b.Decode(token);
            errors.Add(TestModels.RelativeL2(x, y));
            token = TestModels.Top1(y).Top;
        }
        double bound = Bound(q8.Config.TextNumLayers, BaseTolerance);
        output.WriteLine($"random-256 KV q8 vs KV f32: rel L2 {string.Join(", ", errors.Select(e => e.ToString("E2", System.Globalization.CultureInfo.InvariantCulture)))} (bound {bound:E2})");
        Assert.All(errors, e => Assert.InRange(e, 0, bound));
        Assert.All(errors, e => Assert.True(e > 1e-4, $"logits that read Q8 caches are those of f32 caches (rel L2 {e:E2})"));
    }

    [Fact]
    public async Task Q8IsRefusedByNameForAHeadDimThatIsNotAMultipleOf32()
    {
        // tiny-untied: head_dim 16. Refused when the model loads, before any weight is taken, naming the option.
        string model = Path.Combine(Fixture("tiny-untied"), "model");
        var reports = new List<LoadProgress>();
        var e = await Assert.ThrowsAsync<ArgumentException>(() => Qwen3VLModel.LoadAsync(model,
            new Qwen3VLModelOptions { Device = "cpu", KvCache = KvCacheFormat.Q8 }, new SyncProgress(reports.Add),
            TestContext.Current.CancellationToken));
        Assert.Equal(nameof(Qwen3VLModelOptions.KvCache), e.ParamName);
        Assert.Contains("KvCache = Q8", e.Message);
        Assert.Contains("head_dim is 16", e.Message);
        Assert.Empty(reports);
        // The other formats load it.
        foreach (KvCacheFormat f in new[] { KvCacheFormat.Auto, KvCacheFormat.F32, KvCacheFormat.BF16 })
        {
            using Qwen3VLModel m = Qwen3VLModel.Load(model, TestModels.Backend, new Qwen3VLModelOptions { KvCache = f });
            Assert.Equal(f == KvCacheFormat.BF16 ? KvCacheFormat.BF16 : KvCacheFormat.F32, m.KvCache);
        }
        // A KvCache built directly is checked the same way, before anything is allocated.
        ModelConfig untied = TestModels.Get(Fixture("tiny-untied")).Config;
        var direct = Assert.Throws<ArgumentException>(() => new KvCache(TestModels.Backend, untied, 8, TensorDType.Q8));
        Assert.Contains("head_dim is 16", direct.Message);
        Assert.Throws<ArgumentException>(() => new KvCache(TestModels.Backend, untied, 8, TensorDType.Q4));
        Assert.Throws<ArgumentException>(() => new KvCache(TestModels.Backend, untied, 8, TensorDType.I32));
        // A value that is not a KvCacheFormat.
        Assert.Throws<ArgumentOutOfRangeException>(() => Qwen3VLModel.Load(model, TestModels.Backend, new Qwen3VLModelOptions { KvCache = (KvCacheFormat)7 }));
    }

    [Theory]
    [InlineData(KvCacheFormat.Auto, true, 16, TensorDType.F32)]
    [InlineData(KvCacheFormat.Auto, false, 16, TensorDType.BF16)]
    [InlineData(KvCacheFormat.F32, false, 16, TensorDType.F32)]
    [InlineData(KvCacheFormat.BF16, true, 16, TensorDType.BF16)]
    [InlineData(KvCacheFormat.Q8, true, 32, TensorDType.Q8)]
    [InlineData(KvCacheFormat.Q8, false, 128, TensorDType.Q8)]
    public void TheFormatResolvesOnTheBackend(KvCacheFormat format, bool fp32Math, int headDim, TensorDType expected) =>
        Assert.Equal(expected, KvCache.DTypeFor(format, fp32Math, headDim));

    [Theory]
    [InlineData(16)]
    [InlineData(48)]
    [InlineData(80)]
    [InlineData(100)]
    public void Q8IsRefusedForHeadDimsThatAreNotWholeBlocks(int headDim)
    {
        var e = Assert.Throws<ArgumentException>(() => KvCache.DTypeFor(KvCacheFormat.Q8, fp32Math: false, headDim));
        Assert.Equal("KvCache", e.ParamName);
        Assert.Contains($"head_dim is {headDim}", e.Message);
        Assert.Throws<ArgumentException>(() => KvCache.DTypeFor((KvCacheFormat)9, fp32Math: true, 128));
    }

    private sealed class SyncProgress(Action<LoadProgress> report) : IProgress<LoadProgress>
    {
        public void Report(LoadProgress value) => report(value);
    }
}
