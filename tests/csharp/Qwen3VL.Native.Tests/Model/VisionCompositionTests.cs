using Qwen3VL.Native.Engine;
using Qwen3VL.Native.Model;
using Qwen3VL.Native.Processing;
using Qwen3VL.Native.Tests.Processing;

namespace Qwen3VL.Native.Tests.Model;

/// <summary>
/// The vision tower's fused ops (LayerNormLinear, RopeVision, segment Attention, LinearResidual, MlpGelu) checked against
/// an independent double-precision host reference (<see cref="VisionReference"/>) on a fixture model's weights with random
/// patch states: a block's Forward, and both kinds of patch merger.
/// </summary>
/// <remarks>
/// Tolerance. On the CPU the engine widens the bf16 weights to f32 exactly and computes in f32 with f32 accumulation, so
/// it differs from the double reference by rounding alone. A length-K dot product in f32 carries a relative error of at
/// most K·u (u = 2⁻²⁴ ≈ 6e-8) of Σ|xᵢwᵢ| and typically √K·u; here K ≤ 256 (the merger's fc1), so one matmul is
/// ≲ 1.5e-5 in the worst case and ≈ 1e-6 typically, and LayerNorm, softmax, rotary and GELU add a few u each. The
/// checks: relative L2 ≤ 1e-5 (about 10× the typical accumulated error of the chain, below the worst-case bound of one
/// matmul), and per element |ours − ref| ≤ 1e-4·rms(ref) (an element may sit in the tail of the rounding distribution,
/// so a looser bound, still far below what a wrong op gives). For the block the same bounds also hold the block's update
/// (output − input) to the reference's, so that a fault in a branch is not masked by the residual stream it is added to.
/// Measured on tiny-tied: relative L2 ≈ 2–3e-7 and worst element ≈ 1.6e-6·rms; a wrong op is far out (a dropped bias
/// ≈ 3e-2, GELU erf↔tanh ≈ 1.3e-4, LayerNorm eps 1e-5 for 1e-6 ≈ 2e-5).
/// </remarks>
public sealed class VisionCompositionTests(ITestOutputHelper output)
{
    /// <summary>Relative L2 bound (see the remarks).</summary>
    private const double RelativeL2Bound = 1e-5;
    /// <summary>Per-element bound, in units of the reference's RMS (see the remarks).</summary>
    private const double ElementBound = 1e-4;

    private static readonly GridThw[] Grids = [new GridThw(1, 4, 6), new GridThw(2, 2, 2)];

    private static Qwen3VLModel Model => TestModels.Get(FixtureCatalog.FixtureDirectories()[0]);

    private static Backend Backend => TestModels.Backend;

    private static float[] RandomValues(Random rng, long count)
    {
        var values = new float[count];
        for (int i = 0; i < values.Length; i++) values[i] = (float)(rng.NextDouble() * 2 - 1);
        return values;
    }

    private static float[] Read(Tensor t)
    {
        var values = new float[t.ElementCount];
        t.Read(values);
        return values;
    }

    private void AssertClose(double[] reference, float[] ours, string what) => AssertClose(reference, Array.ConvertAll(ours, v => (double)v), what);

    private void AssertClose(double[] reference, double[] ours, string what)
    {
        Assert.Equal(reference.Length, ours.Length);
        double num = 0, den = 0, worst = 0;
        int worstAt = 0;
        for (int i = 0; i < ours.Length; i++)
        {
            Assert.True(double.IsFinite(ours[i]), $"{what}: element {i} is {ours[i]}");
            double d = Math.Abs(ours[i] - reference[i]);
            num += d * d;
            den += reference[i] * reference[i];
            if (d > worst) (worst, worstAt) = (d, i);
        }
        double rms = Math.Sqrt(den / ours.Length), rel = Math.Sqrt(num / den);
        output.WriteLine($"{what}: relative L2 {rel:E2}, worst element {worst / rms:E2}·rms (element {worstAt}), rms {rms:E3}");
        Assert.True(rel <= RelativeL2Bound, $"{what}: relative L2 error {rel:E3} > {RelativeL2Bound:E0}");
        Assert.True(worst <= ElementBound * rms,
            $"{what}: element {worstAt} is {ours[worstAt]:R}, the reference {reference[worstAt]:R} (error {worst / rms:E3}·rms > {ElementBound:E0}·rms)");
    }

    [Fact]
    public void BlockForwardMatchesTheDoubleReference()
    {
        ModelConfig c = Model.Config;
        int merge = c.VisionSpatialMergeSize;
        long n = Grids.Sum(g => (long)g.Patches), hidden = c.VisionHiddenSize;
        int[] positions = VisionTower.RotaryPositions(Grids, merge), cu = VisionTower.Segments(Grids);
        using Tensor positionsT = Backend.CreateTensor(TensorDType.I32, n, 2);
        positionsT.Write(positions);
        using Tensor segments = Backend.CreateTensor(TensorDType.I32, cu.Length);
        segments.Write(cu);
        var rng = new Random(1234);
        foreach (VisionBlock block in Model.Vision.Blocks)
        {
            float[] x0 = RandomValues(rng, n * hidden);
            using Tensor x = Backend.CreateTensor(TensorDType.F32, n, hidden);
            x.Write(x0);

            block.Forward(x, positionsT, segments);

            float[] ours = Read(x);
            double[] reference = VisionReference.Block(block, c, Array.ConvertAll(x0, v => (double)v), positions, cu);
            AssertClose(reference, ours, $"vision block {block.Index}");
            var ourUpdate = new double[ours.Length];
            var referenceUpdate = new double[ours.Length];
            for (int i = 0; i < ours.Length; i++)
            {
                ourUpdate[i] = (double)ours[i] - x0[i]; // exact in double
                referenceUpdate[i] = reference[i] - x0[i];
            }
            AssertClose(referenceUpdate, ourUpdate, $"vision block {block.Index} update");
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void PatchMergerMatchesTheDoubleReference(bool deepstack)
    {
        ModelConfig c = Model.Config;
        IEnumerable<PatchMerger> mergers = deepstack ? Model.Vision.DeepstackMergers : [Model.Vision.Merger];
        long unit = c.VisionMergeUnit, hidden = c.VisionHiddenSize, m = 6, n = m * unit;
        var rng = new Random(deepstack ? 7 : 8);
        foreach (PatchMerger merger in mergers)
        {
            Assert.Equal(deepstack, merger.UsePostShuffleNorm);
            float[] x0 = RandomValues(rng, n * hidden);
            using Tensor x = Backend.CreateTensor(TensorDType.F32, n, hidden);
            x.Write(x0);

            using Tensor ours = merger.Forward(x);

            Assert.Equal(new[] { m, (long)c.VisionOutHiddenSize }, ours.Shape);
            Assert.Equal(x0, Read(x)); // the input is left as it was
            AssertClose(VisionReference.Merger(merger, c, Array.ConvertAll(x0, v => (double)v)), Read(ours), merger.Prefix);
        }
    }

    [Fact]
    public void EveryFrameOfAVideoGetsThePositionEmbedding()
    {
        // A two-frame grid whose second frame repeats the first one's patches: each frame is its own attention segment
        // with the same rotary positions, so the frames' features agree only if the second frame also received the
        // position embedding (computed per frame on the backend). A frame with none differs by the whole table.
        ModelConfig c = Model.Config;
        int merge = c.VisionSpatialMergeSize;
        var grid = new GridThw(2, 2 * merge, 2 * merge);
        int patchDim = c.VisionInChannels * c.VisionTemporalPatchSize * c.VisionPatchSize * c.VisionPatchSize;
        long frame = (long)grid.H * grid.W * patchDim;
        float[] pixels = RandomValues(new Random(7), 2 * frame);
        Array.Copy(pixels, 0, pixels, frame, frame);
        using VisionFeatures features = Model.Vision.Forward(new VisionInput(pixels, [grid]));
        float[] all = Read(features.Embeddings);
        int half = all.Length / 2;
        AssertClose(Array.ConvertAll(all[..half], v => (double)v), all[half..], "second frame vs first");
    }
}
