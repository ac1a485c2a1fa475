using Qwen3VL.Native.Engine;

namespace Qwen3VL.Native.Model;

/// <summary>
/// One text decoder layer, <c>model.language_model.layers.N</c>: h = x + o_proj(attn(rope(q_norm(q)), rope(k_norm(k)), v)) with
/// q/k/v from input_layernorm(x), causal GQA over the KV cache; x = h + down_proj(silu(gate_proj(y)) · up_proj(y)) with
/// y = post_attention_layernorm(h).
/// </summary>
public sealed class DecoderLayer
{
    private readonly ModelConfig _config;
    private readonly Backend _backend;
    private readonly long[] _mropeSection;

    internal DecoderLayer(WeightLoader w, int index)
    {
        _config = w.Config;
        _backend = w.Backend;
        _mropeSection = _config.MropeSection.ToArray();
        Index = index;
        string p = $"model.language_model.layers.{index}.";
        long hidden = _config.TextHiddenSize, d = _config.TextHeadDim, inter = _config.TextIntermediateSize;
        long qDim = _config.TextNumHeads * d, kvDim = _config.TextNumKvHeads * d;
        InputLayernormWeight = w.Get(p + "input_layernorm.weight", hidden);
        PostAttentionLayernormWeight = w.Get(p + "post_attention_layernorm.weight", hidden);
        QProjWeight = w.GetMatrix(p + "self_attn.q_proj.weight", qDim, hidden);
        KProjWeight = w.GetMatrix(p + "self_attn.k_proj.weight", kvDim, hidden);
        VProjWeight = w.GetMatrix(p + "self_attn.v_proj.weight", kvDim, hidden);
        OProjWeight = w.GetMatrix(p + "self_attn.o_proj.weight", hidden, qDim);
        QNormWeight = w.Get(p + "self_attn.q_norm.weight", d);
        KNormWeight = w.Get(p + "self_attn.k_norm.weight", d);
        GateProjWeight = w.GetMatrix(p + "mlp.gate_proj.weight", inter, hidden);
        UpProjWeight = w.GetMatrix(p + "mlp.up_proj.weight", inter, hidden);
        DownProjWeight = w.GetMatrix(p + "mlp.down_proj.weight", hidden, inter);
    }

    /// <summary>Layer index N.</summary>
    public int Index { get; }
    /// <summary><c>input_layernorm.weight</c>.</summary>
    public Tensor InputLayernormWeight { get; }
    /// <summary><c>post_attention_layernorm.weight</c>.</summary>
    public Tensor PostAttentionLayernormWeight { get; }
    /// <summary><c>self_attn.q_proj.weight</c>.</summary>
    public Tensor QProjWeight { get; }
    /// <summary><c>self_attn.k_proj.weight</c>.</summary>
    public Tensor KProjWeight { get; }
    /// <summary><c>self_attn.v_proj.weight</c>.</summary>
    public Tensor VProjWeight { get; }
    /// <summary><c>self_attn.o_proj.weight</c>.</summary>
    public Tensor OProjWeight { get; }
    /// <summary><c>self_attn.q_norm.weight</c> [head_dim].</summary>
    public Tensor QNormWeight { get; }
    /// <summary><c>self_attn.k_norm.weight</c> [head_dim].</summary>
    public Tensor KNormWeight { get; }
    /// <summary><c>mlp.gate_proj.weight</c>.</summary>
    public Tensor GateProjWeight { get; }
    /// <summary><c>mlp.up_proj.weight</c>.</summary>
    public Tensor UpProjWeight { get; }
    /// <summary><c>mlp.down_proj.weight</c>.</summary>
    public Tensor DownProjWeight { get; }

    /// <summary>Runs the layer on <paramref name="x"/> [T, hidden] (the residual stream, updated in place).</summary>
    /// <param name="x">Hidden states of the T new tokens; updated in place.</param>
    /// <param name="positions">i32 [3, T] M-RoPE positions.</param>
    /// <param name="cache">The conversation's caches; rows nPast .. nPast+T-1 of this layer are written.</param>
    /// <param name="nPast">Tokens already in the cache.</param>
    /// <remarks>
    /// Five fused ops: q/k/v from input_layernorm(x) in one pass, the QK-norm + M-RoPE + cache write with the attention after
    /// it (one kernel when decoding on a GPU), x += o_proj(attn), the gate/up SwiGLU of post_attention_layernorm(x) in one
    /// pass, x += down_proj(g). On the CPU each fused op runs the unfused steps in the same order, so the numerics are those
    /// of the plain sequence.
    /// </remarks>
    public void Forward(Tensor x, Tensor positions, KvCache cache, long nPast) => Forward(x, positions, cache, nPast, null, 0);

    /// <summary>As <see cref="Forward(Tensor, Tensor, KvCache, long)"/> with n_past read from device memory when the ops run
    /// (a captured decode step replayed for each token).</summary>
    /// <param name="x">Hidden states of the T new tokens; updated in place.</param>
    /// <param name="positions">i32 [3, T] M-RoPE positions.</param>
    /// <param name="cache">The conversation's caches.</param>
    /// <param name="nPastTensor">i32 [1] holding the tokens already in the cache.</param>
    /// <param name="nPastBound">The largest value <paramref name="nPastTensor"/> may hold (0: the whole cache); a tighter bound
    /// makes a smaller attention launch.</param>
    public void Forward(Tensor x, Tensor positions, KvCache cache, Tensor nPastTensor, long nPastBound)
    {
        ArgumentNullException.ThrowIfNull(nPastTensor);
        Forward(x, positions, cache, 0, nPastTensor, nPastBound);
    }

    private void Forward(Tensor x, Tensor positions, KvCache cache, long nPast, Tensor? nPastTensor, long nPastBound)
    {
        ArgumentNullException.ThrowIfNull(cache);
        long t = x.Shape[0], d = _config.TextHeadDim;
        long hq = _config.TextNumHeads, hkv = _config.TextNumKvHeads;
        float eps = (float)_config.RmsNormEps;

        using (Tensor q = _backend.CreateTensor(TensorDType.F32, t, hq, d))
        using (Tensor k = _backend.CreateTensor(TensorDType.F32, t, hkv, d))
        using (Tensor v = _backend.CreateTensor(TensorDType.F32, t, hkv, d))
        using (Tensor q2 = q.Reshape(t, hq * d))
        using (Tensor k2 = k.Reshape(t, hkv * d))
        using (Tensor v2 = v.Reshape(t, hkv * d))
        using (Tensor attn = _backend.CreateTensor(TensorDType.F32, t, hq, d))
        using (Tensor attn2 = attn.Reshape(t, hq * d))
        {
            Ops.NormLinear(q2, QProjWeight, k2, KProjWeight, v2, VProjWeight, x, InputLayernormWeight, eps);
            Ops.QkNormRopeAttention(attn, q, k, v, QNormWeight, KNormWeight, eps, positions, (float)_config.RopeTheta,
                _mropeSection, cache.Keys(Index), cache.Values(Index), nPast, nPastTensor, nPastBound);
            Ops.LinearResidual(x, attn2, OProjWeight, null, x);
        }
        using (Tensor g = _backend.CreateTensor(TensorDType.F32, t, _config.TextIntermediateSize))
        {
            Ops.NormLinearSwiglu(g, x, PostAttentionLayernormWeight, eps, GateProjWeight, UpProjWeight);
            Ops.LinearResidual(x, g, DownProjWeight, null, x);
        }
    }
}
