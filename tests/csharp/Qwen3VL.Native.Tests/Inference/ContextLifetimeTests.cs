using System.Runtime.CompilerServices;
using Qwen3VL.Native.Engine;
using Qwen3VL.Native.Inference;
using Qwen3VL.Native.Model;
using Qwen3VL.Native.Tests.Api;
using Qwen3VL.Native.Tests.Model;
using Qwen3VL.Native.Tests.Processing;

namespace Qwen3VL.Native.Tests.Inference;

/// <summary>
/// A context keeps its model alive: disposing the model while contexts (or sessions) live defers releasing the weights
/// until the last of them is disposed; a disposed model refuses new work with an ObjectDisposedException naming it, and
/// a disposed context names itself.
/// </summary>
public sealed class ContextLifetimeTests
{
    private static string TiedFixture => Path.Combine(TestPaths.RepoRoot, "tests", "fixtures", "tiny-tied");

    /// <summary>A model of its own (the shared ones of TestModels and ApiModels are never disposed), owning its CPU backend.</summary>
    private static Qwen3VLModel LoadOwnModel() => Qwen3VLModel.Load(ApiModels.TinyDirectory, new Qwen3VLModelOptions { Device = "cpu", ContextLength = 256 });

    private static (int[] Ids, VisionInput? Vision) Input(string caseName)
    {
        FixtureCase c = FixtureCatalog.GetCase(TiedFixture, caseName);
        return (c.InputIds, TestModels.FixtureVision(c));
    }

    /// <summary>Prefill <paramref name="ids"/>, then <paramref name="steps"/> greedy decode steps: every step's logits.</summary>
    private static List<float[]> Greedy(Qwen3VLContext context, int[] ids, VisionInput? vision, int steps)
    {
        var all = new List<float[]> { context.Prefill(ids, vision) };
        for (int i = 0; i < steps; i++) all.Add(context.Decode(Sampler.ArgMax(all[^1])));
        return all;
    }

    private static void AssertSame(List<float[]> expected, List<float[]> actual)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++) Assert.True(TestModels.RelativeL2(actual[i], expected[i]) <= 1e-6, $"step {i}");
    }

    [Fact]
    public void AContextKeepsWorkingAfterItsModelIsDisposed()
    {
        var (ids, vision) = Input("one_image");
        const int steps = 4;
        List<float[]> expected;
        using (Qwen3VLContext reference = TestModels.Get(TiedFixture).CreateContext(256)) expected = Greedy(reference, ids, vision, steps);

        Qwen3VLModel model = LoadOwnModel();
        using Qwen3VLContext started = model.CreateContext(256), fresh = model.CreateContext(256);
        List<float[]> before = Greedy(started, ids, vision, 1);
        model.Dispose();
        model.Dispose(); // idempotent
        Assert.True(model.IsDisposed);
        Assert.False(model.IsReleased);
        Assert.Equal(2, model.LiveContexts);

        // A conversation under way goes on, and one that had not started runs whole (vision tower included).
        for (int i = 2; i <= steps; i++) before.Add(started.Decode(Sampler.ArgMax(before[^1])));
        AssertSame(expected, before);
        AssertSame(expected, Greedy(fresh, ids, vision, steps));
        started.Truncate(ids.Length);
        AssertSame(expected.GetRange(1, 1), [started.Decode(Sampler.ArgMax(expected[0]))]);

        // The last context releases the weights and the backend the model created.
        started.Dispose();
        Assert.False(model.IsReleased);
        fresh.Dispose();
        Assert.True(model.IsReleased);
        Assert.Equal(0, model.LiveContexts);
        Assert.Throws<ObjectDisposedException>(() => model.Backend.Trim());
    }

    [Fact]
    public void AContextKeepsTheWeightsOnTheCallersBackend()
    {
        var (ids, _) = Input("text_only");
        List<float[]> expected;
        using (Qwen3VLContext reference = TestModels.Get(TiedFixture).CreateContext(64)) expected = Greedy(reference, ids, null, 2);

        using Backend backend = Backend.CreateCpu();
        Qwen3VLModel model = Qwen3VLModel.Load(Path.Combine(TiedFixture, "model"), backend);
        Qwen3VLContext context = model.CreateContext(64);
        model.Dispose();
        AssertSame(expected, Greedy(context, ids, null, 2));
        context.Dispose();
        Assert.True(model.IsReleased);
        _ = backend.Name; // the caller's backend is the caller's to dispose
    }

    [Fact]
    public void ANewModelWithoutContextsIsReleasedAtOnce()
    {
        Qwen3VLModel model = LoadOwnModel();
        model.CreateContext(8).Dispose();
        Assert.False(model.IsReleased);
        model.Dispose();
        Assert.True(model.IsReleased);
    }

    [Fact]
    public void AFailedContextCreationTakesNoReference()
    {
        Qwen3VLModel model = LoadOwnModel();
        Assert.Throws<ArgumentOutOfRangeException>(() => model.CreateContext(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.CreateContext((int)model.Config.MaxPositionEmbeddings + 1));
        Assert.Equal(0, model.LiveContexts);
        model.Dispose();
        Assert.True(model.IsReleased);
    }

    [Fact]
    public void ADisposeFromAnotherThreadDuringACallWaitsForTheCall()
    {
        Qwen3VLModel model = LoadOwnModel();
        Qwen3VLContext context = model.CreateContext(64);
        model.Dispose();
        var (ids, _) = Input("text_only");
        using var started = new ManualResetEventSlim();
        // Dispose while prefills run back to back: a call in progress returns first (the caches are freed when it does,
        // not under it) and the next call names the context.
        Task run = Task.Run(() =>
        {
            started.Set();
            while (true)
            {
                context.Truncate(0);
                context.Prefill(ids);
            }
        }, TestContext.Current.CancellationToken);
        started.Wait(TestContext.Current.CancellationToken);
        Thread.Sleep(20);
        context.Dispose();
        var e = Assert.Throws<AggregateException>(() => run.Wait(TestContext.Current.CancellationToken));
        Assert.Equal(typeof(Qwen3VLContext).FullName, Assert.IsType<ObjectDisposedException>(e.InnerException).ObjectName);
        Assert.True(model.IsReleased);
        Assert.Equal(0, model.LiveContexts);
    }

    [Fact]
    public void DisposingOneContextTwiceDoesNotReleaseTheModelUnderAnother()
    {
        var (ids, _) = Input("text_only");
        List<float[]> expected;
        using (Qwen3VLContext reference = TestModels.Get(TiedFixture).CreateContext(64)) expected = Greedy(reference, ids, null, 2);

        Qwen3VLModel model = LoadOwnModel();
        Qwen3VLContext first = model.CreateContext(64);
        using Qwen3VLContext second = model.CreateContext(64);
        model.Dispose();
        first.Dispose();
        first.Dispose();
        AssertSame(expected, Greedy(second, ids, null, 2));
    }

    [Fact]
    public void ADisposedModelRefusesNewWorkNamingTheModel()
    {
        Qwen3VLModel model = LoadOwnModel();
        using Qwen3VLContext alive = model.CreateContext(16);
        model.Dispose();
        string name = typeof(Qwen3VLModel).FullName!;
        Assert.Equal(name, Assert.Throws<ObjectDisposedException>(() => model.CreateContext(16)).ObjectName);
        Assert.Equal(name, Assert.Throws<ObjectDisposedException>(() => model.CreateSession()).ObjectName);
        var (_, vision) = Input("one_image");
        Assert.Equal(name, Assert.Throws<ObjectDisposedException>(() => model.EncodeImages(vision!)).ObjectName);
        // Also once nothing holds the weights any more.
        alive.Dispose();
        Assert.Equal(name, Assert.Throws<ObjectDisposedException>(() => model.CreateContext(16)).ObjectName);
    }

    [Fact]
    public void ADisposedContextNamesItself()
    {
        Qwen3VLModel model = TestModels.Get(TiedFixture);
        Qwen3VLContext context = model.CreateContext(16);
        context.Prefill([1, 2, 3]);
        context.Dispose();
        string name = typeof(Qwen3VLContext).FullName!;
        Assert.Equal(name, Assert.Throws<ObjectDisposedException>(() => context.Decode(4)).ObjectName);
        Assert.Equal(name, Assert.Throws<ObjectDisposedException>(() => context.DecodeArgMax(4)).ObjectName);
        Assert.Equal(name, Assert.Throws<ObjectDisposedException>(() => context.Prefill([5])).ObjectName);
        Assert.Equal(name, Assert.Throws<ObjectDisposedException>(() => context.Truncate(1)).ObjectName);
        Assert.Equal(name, Assert.Throws<ObjectDisposedException>(() => context.DecodeTopK(4, new float[2], new int[2])).ObjectName);
    }

    [Fact]
    public async Task ASessionKeepsWorkingAfterItsModelIsDisposed()
    {
        GenerationOptions greedy = ApiModels.Greedy(4);
        string expected;
        using (Qwen3VLChatSession reference = ApiModels.Tiny.CreateSession())
        {
            expected = (await reference.SendAsync("Hello", null, greedy, TestContext.Current.CancellationToken)).Text;
        }
        Qwen3VLModel model = LoadOwnModel();
        using Qwen3VLChatSession session = model.CreateSession();
        model.Dispose();
        GenerationResult r = await session.SendAsync("Hello", null, greedy, TestContext.Current.CancellationToken);
        Assert.Equal(expected, r.Text);
    }

    // The model is reachable only through the context created here.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Qwen3VLContext ContextOfAnUnreferencedModel() => LoadOwnModel().CreateContext(64);

    [Fact]
    public void OnlyTheContextReferencedTheModelSurvivesCollection()
    {
        var (ids, _) = Input("text_only");
        List<float[]> expected;
        using (Qwen3VLContext reference = TestModels.Get(TiedFixture).CreateContext(64)) expected = Greedy(reference, ids, null, 3);

        using Qwen3VLContext context = ContextOfAnUnreferencedModel();
        for (int i = 0; i < 3; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        AssertSame(expected, Greedy(context, ids, null, 3));
        context.Model.Dispose();
    }
}
