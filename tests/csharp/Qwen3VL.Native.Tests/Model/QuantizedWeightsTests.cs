using Qwen3VL.Native.Engine;
using Qwen3VL.Native.Inference;
using Qwen3VL.Native.Model;
using Qwen3VL.Native.Tests.Processing;
using Qwen3VL.Native.Tests.Shared;

namespace Qwen3VL.Native.Tests.Model;

/// <summary>
/// <see cref="Qwen3VLModelOptions.Weights"/> on the fixtures (CPU): which matrices a Q8 load quantizes, and the logits of the
/// quantized model against transformers' fp32 reference. The reference's own weights are Gaussian (the fixtures' random
/// initialisation), for which the Q8 format's relative RMS error is 5.4e-3 per matrix (tests/native/test_quant.cpp);
/// the activations of the decode GEMV are quantized per 32 too (same order). Each quantized matrix adds an independent
/// relative error of that size to its output, so after L layers of 6 quantized matrices plus lm_head the logits' relative
/// error is about sqrt(n + 1) * 2 * 5.4e-3 for n quantized matrices on the path if every product passed its full error on
/// (the residual stream dilutes it in practice): 0.047 for the 3-layer tiny-tied fixture (6 per layer and the tied lm_head),
/// 0.02 for tiny-untied (only o_proj has whole blocks). The bound is that estimate; the measured values (printed) sit
/// under it; a quantization that was skipped or wrong lands outside [1e-4, bound].
/// </summary>
public sealed class QuantizedWeightsTests(ITestOutputHelper output)
{
    private const double Q8RelativeRms = 5.4e-3;

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, Lazy<Qwen3VLModel>> Q8Models = new();

    private static Qwen3VLModel Q8(string fixtureDirectory) => Q8Models.GetOrAdd(Path.GetFullPath(fixtureDirectory), d =>
        new Lazy<Qwen3VLModel>(() => Qwen3VLModel.Load(Path.Combine(d, "model"), TestModels.Backend,
            new Qwen3VLModelOptions { Weights = WeightFormat.Q8 }))).Value;

    private static string Fixture(string name) => Path.Combine(TestPaths.RepoRoot, "tests", "fixtures", name);

    [Fact]
    public void Q8QuantizesTheDecoderMatricesWithWholeBlocksAndNothingElse()
    {
        Qwen3VLModel m = Q8(Fixture("tiny-tied"));
        DecoderLayer l = m.Text.Layers[0];
        foreach (Tensor t in new[] { l.QProjWeight, l.KProjWeight, l.VProjWeight, l.OProjWeight, l.GateProjWeight, l.UpProjWeight })
            Assert.Equal(TensorDType.Q8, t.DType);
        Assert.Equal(88, m.Config.TextIntermediateSize);  // down_proj's rows are 88 long: not whole blocks, kept as stored
        Assert.Equal(TensorDType.BF16, l.DownProjWeight.DType);
        Assert.Equal(TensorDType.BF16, l.InputLayernormWeight.DType);
        Assert.Equal(TensorDType.Q8, m.Text.EmbedTokensWeight.DType);
        Assert.Same(m.Text.EmbedTokensWeight, m.Text.LmHeadWeight);  // the tied table is quantized once
        Qwen3VLModel stored = TestModels.Get(Fixture("tiny-tied"));
        Assert.Equal(TensorDType.BF16, stored.Text.Layers[0].QProjWeight.DType);
        // 8.5 bits per weight instead of 16 for the quantized ones; the vision tower is unchanged.
        Assert.True(m.WeightBytes < stored.WeightBytes * 0.6, $"{m.WeightBytes} vs {stored.WeightBytes}");

        // tiny-untied (hidden 24): only o_proj (rows of 4 heads x 16 = 64) has whole blocks.
        Qwen3VLModel u = Q8(Fixture("tiny-untied"));
        Assert.Equal(TensorDType.Q8, u.Text.Layers[1].OProjWeight.DType);
        Assert.Equal(TensorDType.BF16, u.Text.Layers[1].QProjWeight.DType);
        Assert.Equal(TensorDType.BF16, u.Text.LmHeadWeight.DType);
    }

    /// <summary>Quantized matrices on the path from the embedding to the logits of <paramref name="m"/>.</summary>
    private static int QuantizedMatrices(Qwen3VLModel m)
    {
        int n = m.Text.LmHeadWeight.DType == TensorDType.Q8 ? 1 : 0;
        foreach (DecoderLayer l in m.Text.Layers)
            n += new[] { l.QProjWeight, l.KProjWeight, l.VProjWeight, l.OProjWeight, l.GateProjWeight, l.UpProjWeight, l.DownProjWeight }
                .Count(t => t.DType == TensorDType.Q8);
        return n;
    }

    public static TheoryData<string, string> Cases => FixtureCatalog.AllCases();

    [Theory]
    [MemberData(nameof(Cases))]
    public void Q8LogitsAreWithinTheFormatsErrorOfTheReference(string fixtureDirectory, string caseName)
    {
        FixtureCase c = FixtureCatalog.GetCase(fixtureDirectory, caseName);
        Qwen3VLModel m = Q8(fixtureDirectory);
        int[] ids = c.InputIds, positions = TestModels.LogitPositions(c);
        using Qwen3VLContext context = m.CreateContext(ids.Length + 8);
        float[] ours = context.Prefill(ids, TestModels.FixtureVision(c), positions);
        var q = LogitQuality.Of(ours, TestModels.ReferenceLogits(c), m.Config.VocabSize);
        int quantized = QuantizedMatrices(m);
        double bound = Math.Sqrt(quantized + 1) * 2 * Q8RelativeRms;
        output.WriteLine($"{Path.GetFileName(fixtureDirectory)}/{caseName} q8 ({quantized} matrices) vs transformers fp32: {q} (bound {bound:E2})");
        Assert.InRange(q.MaxRelativeL2, 1e-4, bound);
    }
}

/// <summary>
/// <see cref="Qwen3VLCheckpoint.Quantize"/>: the written q8 folder loads with no quantization step and computes exactly what
/// the source computes with <see cref="WeightFormat.Q8"/> (the same planes, the same kernels: bit-equal logits); refusals.
/// </summary>
public sealed class QuantizeCheckpointTests
{
    private static string Fixture(string name) => Path.Combine(TestPaths.RepoRoot, "tests", "fixtures", name);

    [Fact]
    public void TheWrittenFolderComputesWhatQuantizeOnLoadComputes()
    {
        string dst = Path.Combine(Path.GetTempPath(), "qwen3vl-q8-" + Guid.NewGuid().ToString("N"));
        try
        {
            var reports = new List<LoadProgress>();
            QuantizeResult r = Qwen3VLCheckpoint.Quantize(Path.Combine(Fixture("tiny-tied"), "model"), dst, WeightFormat.Q8,
                new SyncProgress(reports.Add), TestContext.Current.CancellationToken);
            Assert.Equal(19, r.QuantizedTensors);  // 6 per layer x 3 + the tied embedding
            Assert.True(r.WrittenBytes < r.SourceBytes);
            Assert.Equal(1.0, reports[^1].Fraction);
            Assert.True(File.Exists(Path.Combine(dst, "tokenizer.json")));
            Assert.Contains("\"qwen3vl\"", File.ReadAllText(Path.Combine(dst, "config.json")));

            using Qwen3VLModel written = Qwen3VLModel.Load(dst, TestModels.Backend, new Qwen3VLModelOptions());
            using Qwen3VLModel onLoad = Qwen3VLModel.Load(Path.Combine(Fixture("tiny-tied"), "model"), TestModels.Backend,
                new Qwen3VLModelOptions { Weights = WeightFormat.Q8 });
            Assert.Equal(TensorDType.Q8, written.Text.Layers[2].GateProjWeight.DType);
            Assert.Equal(TensorDType.BF16, written.Text.Layers[2].DownProjWeight.DType);  // ragged rows: copied as stored
            Assert.Equal(TensorDType.Q8, written.Text.EmbedTokensWeight.DType);
            FixtureCase c = FixtureCatalog.LoadCases(Fixture("tiny-tied")).First(x => x.Name == "one_image");
            int[] positions = TestModels.LogitPositions(c);
            using Qwen3VLContext a = written.CreateContext(c.InputIds.Length + 1);
            using Qwen3VLContext b = onLoad.CreateContext(c.InputIds.Length + 1);
            Assert.Equal(b.Prefill(c.InputIds, TestModels.FixtureVision(c), positions), a.Prefill(c.InputIds, TestModels.FixtureVision(c), positions));
            Assert.Equal(b.Decode(198), a.Decode(198));

            // Already q8: refused; a destination that is not empty: refused, and left as it was.
            Assert.Throws<Qwen3VLUnsupportedException>(() => Qwen3VLCheckpoint.Quantize(dst, dst + "-again", WeightFormat.Q8, null, TestContext.Current.CancellationToken));
            Assert.False(Directory.Exists(dst + "-again"));
            int before = Directory.GetFiles(dst).Length;
            Assert.Throws<ArgumentException>(() => Qwen3VLCheckpoint.Quantize(Path.Combine(Fixture("tiny-tied"), "model"), dst, WeightFormat.Q8, null, TestContext.Current.CancellationToken));
            Assert.Equal(before, Directory.GetFiles(dst).Length);
            Assert.Throws<ArgumentException>(() => Qwen3VLCheckpoint.Quantize(Path.Combine(Fixture("tiny-tied"), "model"), dst + "-bf16", WeightFormat.BF16, null, TestContext.Current.CancellationToken));
        }
        finally
        {
            if (Directory.Exists(dst)) Directory.Delete(dst, true);
        }
    }

    [Fact]
    public void ACancelledQuantizeLeavesNothing()
    {
        string dst = Path.Combine(Path.GetTempPath(), "qwen3vl-q8-" + Guid.NewGuid().ToString("N"));
        using var cts = new CancellationTokenSource();
        int n = 0;
        Assert.ThrowsAny<OperationCanceledException>(() => Qwen3VLCheckpoint.Quantize(Path.Combine(Fixture("tiny-tied"), "model"), dst,
            WeightFormat.Q8, new SyncProgress(_ => { if (++n == 10) cts.Cancel(); }), cts.Token));
        Assert.False(Directory.Exists(dst));
    }

    private sealed class SyncProgress(Action<LoadProgress> report) : IProgress<LoadProgress>
    {
        public void Report(LoadProgress value) => report(value);
    }
}
