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

/// <summary>
/// <see cref="WeightFormat.Q4"/> on a test-time random checkpoint of tests/fixtures/random-256's shapes (every decoder row
/// is whole 256-weight super-blocks, as in every Qwen3-VL size; the tiny fixtures' rows are not, so on them Q4 is Q8):
/// which matrices take which format, the logits against the same model with its bf16 weights, and the written q4 folder
/// against quantize-on-load. There is no transformers reference for these shapes; the model-level Q4 comparison with
/// transformers is the parity runner on the full-size fixture (GPU machine, docs/BENCHMARKS.md).
/// </summary>
public sealed class Q4WeightsTests(ITestOutputHelper output)
{
    /// <summary>The random-256 checkpoint folder (also used by <see cref="KvCacheFormatTests"/>: head_dim 64).</summary>
    internal static readonly Lazy<string> Random256 = new(MakeRandom256);

    /// <summary>Writes random bf16 weights for random-256's config (qwen3vl_make_random_checkpoint, built with the native
    /// tests) with the Qwen tokenizer (TestPaths.TokenizerJson), once per test run.</summary>
    private static string MakeRandom256()
    {
        string root = TestPaths.RepoRoot;
        string tool = new[] { "cpu", "cuda", "debug-asan" }
            .Select(p => Path.Combine(root, "build", p, "tests", "qwen3vl_make_random_checkpoint"))
            .FirstOrDefault(File.Exists)
            ?? throw new InvalidOperationException("qwen3vl_make_random_checkpoint is not built: run `cmake --build --preset cpu` first.");
        string dir = Path.Combine(Path.GetTempPath(), "qwen3vl-random-256-" + Environment.ProcessId);
        if (Directory.Exists(dir)) Directory.Delete(dir, true);
        Directory.CreateDirectory(dir);
        var psi = new System.Diagnostics.ProcessStartInfo(tool)
        {
            ArgumentList = { dir, Path.Combine(root, "tests", "fixtures", "random-256", "config.json"), "--seed", "5" },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var p = System.Diagnostics.Process.Start(psi)!;
        string err = p.StandardError.ReadToEnd();
        p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"{tool} failed ({p.ExitCode}): {err}");
        File.Copy(TestPaths.TokenizerJson, Path.Combine(dir, "tokenizer.json"));
        AppDomain.CurrentDomain.ProcessExit += (_, _) => { try { Directory.Delete(dir, true); } catch (IOException) { } };
        return dir;
    }

    private static Qwen3VLModel Load(string dir, WeightFormat w) =>
        Qwen3VLModel.Load(dir, TestModels.Backend, new Qwen3VLModelOptions { Weights = w });

    private static readonly int[] Prompt = Enumerable.Range(0, 24).Select(i => (i * 7919 + 13) % 151643).ToArray();

    private static float[] PromptLogits(Qwen3VLModel m)
    {
        using Qwen3VLContext ctx = m.CreateContext(Prompt.Length + 4);
        return ctx.Prefill(Prompt, null, [Prompt.Length - 3, Prompt.Length - 2, Prompt.Length - 1]);
    }

    [Fact]
    public void Q4TakesTheLayersAndQ8TheTable()
    {
        using Qwen3VLModel q4 = Load(Random256.Value, WeightFormat.Q4);
        using Qwen3VLModel q8 = Load(Random256.Value, WeightFormat.Q8);
        using Qwen3VLModel stored = Load(Random256.Value, WeightFormat.Stored);
        foreach (DecoderLayer l in q4.Text.Layers)
            foreach (Tensor t in new[] { l.QProjWeight, l.KProjWeight, l.VProjWeight, l.OProjWeight, l.GateProjWeight, l.UpProjWeight, l.DownProjWeight })
                Assert.Equal(TensorDType.Q4, t.DType);
        Assert.Equal(TensorDType.Q8, q4.Text.EmbedTokensWeight.DType);
        Assert.Same(q4.Text.EmbedTokensWeight, q4.Text.LmHeadWeight);
        Assert.Equal(TensorDType.BF16, q4.Text.Layers[0].InputLayernormWeight.DType);
        // Per layer 4.5 bits instead of 8.5 and 16; the 151936 x 256 table (q8 in both) dominates these small shapes.
        long layers(Qwen3VLModel m) => m.Text.Layers.Sum(l => new[] { l.QProjWeight, l.KProjWeight, l.VProjWeight, l.OProjWeight,
            l.GateProjWeight, l.UpProjWeight, l.DownProjWeight }.Sum(t => (long)t.ByteCount));
        Assert.Equal(layers(stored) * 9 / 32, layers(q4));
        Assert.Equal(layers(stored) * 17 / 32, layers(q8));
    }

    [Fact]
    public void Q4KeepsLmHeadAndATiedTableInEightBits()
    {
        const string embed = "model.language_model.embed_tokens.weight", head = "lm_head.weight", down = "model.language_model.layers.3.mlp.down_proj.weight";
        Assert.Equal(TensorDType.Q4, WeightLoader.MatrixDType(WeightFormat.Q4, WeightLoader.KeepsEightBits(embed, tied: false), 4096, fp8: false));
        Assert.Equal(TensorDType.Q8, WeightLoader.MatrixDType(WeightFormat.Q4, WeightLoader.KeepsEightBits(embed, tied: true), 4096, fp8: false));
        Assert.Equal(TensorDType.Q8, WeightLoader.MatrixDType(WeightFormat.Q4, WeightLoader.KeepsEightBits(head, tied: false), 4096, fp8: false));
        Assert.Equal(TensorDType.Q4, WeightLoader.MatrixDType(WeightFormat.Q4, WeightLoader.KeepsEightBits(down, tied: true), 12288, fp8: false));
        Assert.Equal(TensorDType.Q8, WeightLoader.MatrixDType(WeightFormat.Q4, false, 32 * 5, fp8: false));  // rows of whole 32 only
        Assert.Null(WeightLoader.MatrixDType(WeightFormat.Q4, false, 88, fp8: false));                        // ragged: as stored
        Assert.Equal(TensorDType.Q8, WeightLoader.MatrixDType(WeightFormat.Stored, false, 4096, fp8: true));
        Assert.Null(WeightLoader.MatrixDType(WeightFormat.Stored, false, 4096, fp8: false));
    }

    [Fact]
    public void Q4LogitsAreWithinTheFormatsErrorOfTheBf16Model()
    {
        // Bound as the parity runner states it: 2 sqrt((n8 + 1) r8^2 + n4 r4^2) over the quantized matrices on the path
        // (14 q4 layers' matrices, the q8 tied table), r4 = 7.2e-2 (Q4Format.ErrorIsBelowQ4_0sAtTheSameBits, Gaussian:
        // these random weights are uniform, whose q4 error is lower). The lower end fails a load that quantized nothing.
        using Qwen3VLModel q4 = Load(Random256.Value, WeightFormat.Q4);
        using Qwen3VLModel q8 = Load(Random256.Value, WeightFormat.Q8);
        using Qwen3VLModel stored = Load(Random256.Value, WeightFormat.Stored);
        float[] reference = PromptLogits(stored);
        int vocab = stored.Config.VocabSize;
        var e4 = LogitQuality.Of(PromptLogits(q4), reference, vocab);
        var e8 = LogitQuality.Of(PromptLogits(q8), reference, vocab);
        double bound4 = 2 * Math.Sqrt(2 * 5.4e-3 * 5.4e-3 + 14 * 7.2e-2 * 7.2e-2), bound8 = 2 * Math.Sqrt(16 * 5.4e-3 * 5.4e-3);
        output.WriteLine($"random-256 q4 vs bf16: {e4} (bound {bound4:E2}); q8 vs bf16: {e8} (bound {bound8:E2})");
        Assert.InRange(e4.MaxRelativeL2, 1e-3, bound4);
        Assert.InRange(e8.MaxRelativeL2, 1e-5, bound8);
        Assert.True(e4.MaxRelativeL2 > e8.MaxRelativeL2, "4-bit weights must cost more than 8-bit ones");
    }

    [Fact]
    public void TheWrittenQ4FolderComputesWhatQuantizeOnLoadComputes()
    {
        string dst = Path.Combine(Path.GetTempPath(), "qwen3vl-q4-" + Guid.NewGuid().ToString("N"));
        try
        {
            QuantizeResult r = Qwen3VLCheckpoint.Quantize(Random256.Value, dst, WeightFormat.Q4, null, TestContext.Current.CancellationToken);
            Assert.Equal(15, r.QuantizedTensors);  // 7 per layer x 2 in q4 + the tied embedding in q8
            Assert.Contains("\"q4\"", File.ReadAllText(Path.Combine(dst, "config.json")));
            using Qwen3VLModel written = Load(dst, WeightFormat.Stored);
            using Qwen3VLModel onLoad = Load(Random256.Value, WeightFormat.Q4);
            Assert.Equal(TensorDType.Q4, written.Text.Layers[1].DownProjWeight.DType);
            Assert.Equal(TensorDType.Q8, written.Text.EmbedTokensWeight.DType);
            Assert.Equal(PromptLogits(onLoad), PromptLogits(written));
            // Loading the q4 folder as Q8 would re-quantize 4-bit weights: refused, by name.
            var e = Assert.Throws<Qwen3VLUnsupportedException>(() => Load(dst, WeightFormat.Q8));
            Assert.Contains("is stored in q4 and cannot be loaded as q8", e.Message);
            Assert.Throws<Qwen3VLUnsupportedException>(() => Qwen3VLCheckpoint.Quantize(dst, dst + "-again", WeightFormat.Q8, null, TestContext.Current.CancellationToken));
        }
        finally
        {
            if (Directory.Exists(dst)) Directory.Delete(dst, true);
        }
    }
}
