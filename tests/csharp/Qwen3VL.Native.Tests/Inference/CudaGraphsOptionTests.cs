using Qwen3VL.Native.Engine;
using Qwen3VL.Native.Inference;
using Qwen3VL.Native.Tests.Api;
using Qwen3VL.Native.Tests.Model;
using Qwen3VL.Native.Tests.Processing;

namespace Qwen3VL.Native.Tests.Inference;

/// <summary>
/// <see cref="Qwen3VLModelOptions.CudaGraphs"/> (formerly the library's own QWEN3VL_NO_GRAPHS read) reaches the
/// contexts: decode graphs on CUDA only when it is on; the CPU decodes eagerly either way, with the same results.
/// </summary>
public sealed class CudaGraphsOptionTests
{
    private static string TiedFixture => Path.Combine(TestPaths.RepoRoot, "tests", "fixtures", "tiny-tied");

    private static List<float[]> Greedy(Qwen3VLContext context, int[] ids, int steps)
    {
        var all = new List<float[]> { context.Prefill(ids) };
        for (int i = 0; i < steps; i++) all.Add(context.Decode(Sampler.ArgMax(all[^1])));
        return all;
    }

    [Fact]
    public void TheOptionDefaultsToGraphs() => Assert.True(new Qwen3VLModelOptions().CudaGraphs);

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void TheOptionReachesTheContextsAndTheCpuDecodesEagerlyEitherWay(bool cudaGraphs)
    {
        int[] ids = FixtureCatalog.GetCase(TiedFixture, "text_only").InputIds;
        List<float[]> expected;
        using (Qwen3VLContext reference = TestModels.Get(TiedFixture).CreateContext(64)) expected = Greedy(reference, ids, 3);

        var options = new Qwen3VLModelOptions { Device = "cpu", ContextLength = 64, CudaGraphs = cudaGraphs };
        using (Qwen3VLModel loaded = Qwen3VLModel.Load(ApiModels.TinyDirectory, options))
        {
            Assert.Equal(cudaGraphs, loaded.CudaGraphs);
            using Qwen3VLContext context = loaded.CreateContext(64);
            Assert.False(context.UsesDecodeGraph);
            List<float[]> got = Greedy(context, ids, 3);
            for (int i = 0; i < got.Count; i++) Assert.True(TestModels.RelativeL2(got[i], expected[i]) <= 1e-6, $"step {i}");
        }

        // The caller's-backend overload carries it too; without options it is on.
        using Backend backend = Backend.CreateCpu();
        using (Qwen3VLModel onBackend = Qwen3VLModel.Load(ApiModels.TinyDirectory, backend, options)) Assert.Equal(cudaGraphs, onBackend.CudaGraphs);
        using (Qwen3VLModel plain = Qwen3VLModel.Load(ApiModels.TinyDirectory, backend)) Assert.True(plain.CudaGraphs);
    }

    [Fact]
    public void OnCudaTheOptionChoosesGraphsOrEagerOps()
    {
        NativeInfo info = NativeInfo.Query();
        Assert.SkipUnless(info.HasCudaBackend && info.CudaDevices.Count > 0, "needs the CUDA build of the native library and a CUDA device");
        int[] ids = FixtureCatalog.GetCase(TiedFixture, "text_only").InputIds;
        var results = new Dictionary<bool, List<float[]>>();
        foreach (bool cudaGraphs in new[] { true, false })
        {
            using Backend backend = Backend.CreateCuda(info.CudaDevices[0].Index, fp32Math: true);
            using Qwen3VLModel model = Qwen3VLModel.Load(ApiModels.TinyDirectory, backend, new Qwen3VLModelOptions { CudaGraphs = cudaGraphs });
            using Qwen3VLContext context = model.CreateContext(64);
            Assert.Equal(cudaGraphs, context.UsesDecodeGraph);
            results[cudaGraphs] = Greedy(context, ids, 3);
            Assert.Equal(cudaGraphs, !double.IsNaN(context.StepReplaySeconds(Sampler.ArgMax(results[cudaGraphs][^1]), 2)));
        }
        for (int i = 0; i < results[true].Count; i++) Assert.True(TestModels.RelativeL2(results[true][i], results[false][i]) <= 1e-5, $"step {i}");
    }
}
