using Qwen3VL.Native.Engine;
using Qwen3VL.Native.Interop;

namespace Qwen3VL.Native.Tests;

/// <summary>
/// The ops that take a <c>*_params</c> struct, through the generated binding: the stub passes every handle and value,
/// holds a reference on each handle only for the call, refuses a missing required handle, and n_past, its tensor and
/// its bound each keep their one meaning.
/// </summary>
public class OpParamsTests
{
    private const int T = 2, Hq = 2, Hkv = 1, D = 4, Capacity = 5;

    private static float[] Random(int n, int seed)
    {
        var rng = new Random(seed);
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)(rng.NextDouble() * 2 - 1);
        return a;
    }

    private sealed class CausalCase : IDisposable
    {
        public readonly Backend Backend = Backend.CreateCpu(1);
        public readonly Tensor Q, KCache, VCache, Out, NPast;

        public CausalCase()
        {
            Q = Backend.CreateTensor(TensorDType.F32, T, Hq, D);
            KCache = Backend.CreateTensor(TensorDType.F32, Capacity, Hkv, D);
            VCache = Backend.CreateTensor(TensorDType.F32, Capacity, Hkv, D);
            Out = Backend.CreateTensor(TensorDType.F32, T, Hq, D);
            NPast = Backend.CreateTensor(TensorDType.I32, 1);
            Q.Write(Random(T * Hq * D, 1));
            KCache.Write(Random(Capacity * Hkv * D, 2));
            VCache.Write(Random(Capacity * Hkv * D, 3));
        }

        public float[] Result()
        {
            var r = new float[T * Hq * D];
            Out.Read(r);
            return r;
        }

        public void Dispose()
        {
            foreach (Tensor t in new[] { Q, KCache, VCache, Out, NPast }) t.Dispose();
            Backend.Dispose();
        }
    }

    [Fact]
    public void NPastFromTheTensorEqualsTheValue()
    {
        using var c = new CausalCase();
        Ops.Attention(c.Out, c.Q, c.KCache, c.VCache, 3, AttentionMode.Causal, null);
        float[] byValue = c.Result();
        c.Out.Write(new float[T * Hq * D]);
        c.NPast.Write([3]);
        Ops.Attention(c.Out, c.Q, c.KCache, c.VCache, 0, AttentionMode.Causal, null, c.NPast, nPastBound: 3);
        Assert.Equal(byValue, c.Result());
        // n_past 2 attends to fewer keys: a different result, so the value read really is the tensor's.
        c.NPast.Write([2]);
        Ops.Attention(c.Out, c.Q, c.KCache, c.VCache, 0, AttentionMode.Causal, null, c.NPast, nPastBound: 3);
        Assert.NotEqual(byValue, c.Result());
    }

    [Fact]
    public void NPastWithTheTensorIsRefusedByName()
    {
        using var c = new CausalCase();
        var e = Assert.Throws<Qwen3VLInvalidArgumentException>(() =>
            Ops.Attention(c.Out, c.Q, c.KCache, c.VCache, 1, AttentionMode.Causal, null, c.NPast));
        Assert.Contains("n_past 1 is given with n_past_tensor", e.Message);
    }

    [Fact]
    public void ABoundWithoutTheTensorIsRefusedByName()
    {
        using var c = new CausalCase();
        var e = Assert.Throws<Qwen3VLInvalidArgumentException>(() =>
            Ops.Attention(c.Out, c.Q, c.KCache, c.VCache, 1, AttentionMode.Causal, null, null, nPastBound: 2));
        Assert.Contains("n_past_bound 2 is given without n_past_tensor", e.Message);
    }

    [Fact]
    public void ABoundBeyondTheCacheIsRefused()
    {
        using var c = new CausalCase();
        var e = Assert.Throws<Qwen3VLInvalidArgumentException>(() =>
            Ops.Attention(c.Out, c.Q, c.KCache, c.VCache, 0, AttentionMode.Causal, null, c.NPast, nPastBound: Capacity - T + 1));
        Assert.Contains("n_past_bound", e.Message);
    }

    [Fact]
    public void HandlesAreReleasedAfterTheCall()
    {
        using var c = new CausalCase();
        c.NPast.Write([1]);
        Ops.Attention(c.Out, c.Q, c.KCache, c.VCache, 0, AttentionMode.Causal, null, c.NPast, nPastBound: 0);
        // A reference the stub kept would keep the native tensor alive after Dispose.
        c.Q.Dispose();
        c.NPast.Dispose();
        Assert.True(c.Q.Handle.IsClosed);
        Assert.True(c.NPast.Handle.IsClosed);
    }

    [Fact]
    public void ADisposedTensorIsRefusedBeforeTheCall()
    {
        using var c = new CausalCase();
        c.KCache.Dispose();
        Assert.Throws<ObjectDisposedException>(() => Ops.Attention(c.Out, c.Q, c.KCache, c.VCache, 0, AttentionMode.Causal, null));
    }

    [Fact]
    public void ARequiredHandleFieldLeftNullIsAnArgumentNullException()
    {
        using var c = new CausalCase();
        AttentionParams p = NativeMethods.AttentionDefaultParams();
        p.Out = c.Out.Handle;  // q left null
        var e = Assert.Throws<ArgumentNullException>(() => Interop.Native.OpAttention(in p));
        Assert.Contains("qwen3vl_attention_params.q is required", e.Message);
        // The output's reference taken before the refusal was given back.
        c.Out.Dispose();
        Assert.True(c.Out.Handle.IsClosed);
    }

    [Fact]
    public unsafe void DefaultParamsCarryTheDocumentedValues()
    {
        QkNormRopeAttentionParams a = NativeMethods.QkNormRopeAttentionDefaultParams();
        Assert.Equal(1e-6f, a.Eps);
        Assert.Equal(5_000_000f, a.Theta);
        Assert.Equal([24L, 20L, 20L], new[] { a.MropeSection[0], a.MropeSection[1], a.MropeSection[2] });
        Assert.Null(a.Out);
        Assert.Equal(0, a.NPast);
        MlpGeluParams m = NativeMethods.MlpGeluDefaultParams();
        Assert.Equal(1, m.TanhApproximation);
        Assert.Equal(1e-6f, m.Eps);
        Assert.Equal(AttentionMask.Causal, NativeMethods.AttentionDefaultParams().Mask);
        Assert.Equal(1e-6f, NativeMethods.NormLinearDefaultParams().Eps);
        Assert.Equal(1e-6f, NativeMethods.LayerNormLinearDefaultParams().Eps);
    }
}
