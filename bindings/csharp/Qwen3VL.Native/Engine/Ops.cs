namespace Qwen3VL.Native.Engine;

using Qwen3VL.Native.Interop;

/// <summary>Masks of <see cref="Ops.Attention"/> (mirrors <c>qwen3vl_attention_mask</c>).</summary>
public enum AttentionMode
{
    /// <summary>Query i (at cache position n_past + i) sees keys 0 .. n_past + i (text prefill and decoding).</summary>
    Causal = 0,
    /// <summary>Queries see every key of their own segment (vision: one image or one video frame per segment).</summary>
    Segments = 1,
}

/// <summary>
/// Thin managed wrappers of the native ops (<c>qwen3vl_op_*</c>). Activations are f32 and contiguous; weights may be
/// f32, f16 or bf16; all tensors of one call live on the same backend, which runs the op synchronously. Every method
/// throws a <see cref="Qwen3VLException"/> subclass when the library rejects the call (shape errors name the tensor).
/// </summary>
public static class Ops
{
    private static TensorHandle H(Tensor t)
    {
        ArgumentNullException.ThrowIfNull(t);
        return t.Handle;
    }

    private static TensorHandle? Optional(Tensor? t) => t?.Handle;

    /// <summary><paramref name="output"/>[M, N] = <paramref name="x"/>[M, K] · <paramref name="weight"/>[N, K]ᵀ (+ <paramref name="bias"/>[N]).</summary>
    public static void Linear(Tensor output, Tensor x, Tensor weight, Tensor? bias = null) =>
        Native.OpLinear(H(output), H(x), H(weight), Optional(bias));

    /// <summary>
    /// Up to three projections of one input in one pass: out_i = y · weight_iᵀ, y = rms_norm(x) · normWeight (or x when
    /// <paramref name="normWeight"/> is null). Pairs 1 and 2 are optional (pair 2 only with pair 1).
    /// </summary>
    public static void NormLinear(Tensor out0, Tensor weight0, Tensor? out1, Tensor? weight1, Tensor? out2, Tensor? weight2,
        Tensor x, Tensor? normWeight, float eps)
    {
        NormLinearParams p = NativeMethods.NormLinearDefaultParams();
        p.X = H(x);
        p.NormWeight = Optional(normWeight);
        p.Eps = eps;
        p.Out0 = H(out0);
        p.Weight0 = H(weight0);
        p.Out1 = Optional(out1);
        p.Weight1 = Optional(weight1);
        p.Out2 = Optional(out2);
        p.Weight2 = Optional(weight2);
        Native.OpNormLinear(in p);
    }

    /// <summary><paramref name="output"/> = silu(y · gateᵀ) ⊙ (y · upᵀ), y = rms_norm(x) · normWeight (or x when null).</summary>
    public static void NormLinearSwiglu(Tensor output, Tensor x, Tensor? normWeight, float eps, Tensor gate, Tensor up) =>
        Native.OpNormLinearSwiglu(H(output), H(x), Optional(normWeight), eps, H(gate), H(up));

    /// <summary><paramref name="output"/> = residual + x · weightᵀ (+ bias); output may be residual (in-place update).</summary>
    public static void LinearResidual(Tensor output, Tensor x, Tensor weight, Tensor? bias, Tensor residual) =>
        Native.OpLinearResidual(H(output), H(x), H(weight), Optional(bias), H(residual));

    /// <summary>
    /// <paramref name="output"/> = layer_norm(x) · weightᵀ (+ bias): LayerNorm over the last dimension (normWeight, normBias,
    /// eps), then one projection (the vision blocks' norm1 + qkv).
    /// </summary>
    public static void LayerNormLinear(Tensor output, Tensor x, Tensor normWeight, Tensor normBias, float eps, Tensor weight, Tensor? bias)
    {
        LayerNormLinearParams p = NativeMethods.LayerNormLinearDefaultParams();
        p.Out = H(output);
        p.X = H(x);
        p.NormWeight = H(normWeight);
        p.NormBias = H(normBias);
        p.Eps = eps;
        p.Weight = H(weight);
        p.Bias = Optional(bias);
        Native.OpLayerNormLinear(in p);
    }

    /// <summary>
    /// The GELU MLP in one call: <paramref name="output"/> = residual + (gelu(y · fc1ᵀ + fc1Bias) · fc2ᵀ + fc2Bias), y =
    /// layer_norm(x) (normWeight, normBias, eps; both null: y = x); without a residual the MLP alone. Output may be the
    /// residual and may be x (the vision block's x += mlp(norm2(x))).
    /// </summary>
    public static void MlpGelu(Tensor output, Tensor x, Tensor? normWeight, Tensor? normBias, float eps, Tensor fc1Weight, Tensor? fc1Bias,
        bool tanhApproximation, Tensor fc2Weight, Tensor? fc2Bias, Tensor? residual)
    {
        MlpGeluParams p = NativeMethods.MlpGeluDefaultParams();
        p.Out = H(output);
        p.X = H(x);
        p.NormWeight = Optional(normWeight);
        p.NormBias = Optional(normBias);
        p.Eps = eps;
        p.Fc1Weight = H(fc1Weight);
        p.Fc1Bias = Optional(fc1Bias);
        p.Fc2Weight = H(fc2Weight);
        p.Fc2Bias = Optional(fc2Bias);
        p.Residual = Optional(residual);
        p.TanhApproximation = tanhApproximation ? 1 : 0;
        Native.OpMlpGelu(in p);
    }

    /// <summary>RMSNorm over the last dimension: x / sqrt(mean(x²) + eps) · weight. Output may be x.</summary>
    public static void RmsNorm(Tensor output, Tensor x, Tensor weight, float eps) =>
        Native.OpRmsNorm(H(output), H(x), H(weight), eps);

    /// <summary>LayerNorm over the last dimension with weight and bias. Output may be x.</summary>
    public static void LayerNorm(Tensor output, Tensor x, Tensor weight, Tensor bias, float eps) =>
        Native.OpLayerNorm(H(output), H(x), H(weight), H(bias), eps);

    /// <summary><paramref name="output"/>[i] (i32) = index of the largest element of row i of x (first index on ties).</summary>
    public static void Argmax(Tensor output, Tensor x) => Native.OpArgmax(H(output), H(x));

    /// <summary>Largest k of <see cref="TopK"/>.</summary>
    public const int TopKMax = NativeConstants.TopKMax;

    /// <summary>
    /// The <paramref name="k"/> largest elements of each row of x in descending order: <paramref name="values"/> (f32)
    /// and their <paramref name="indices"/> in the row (i32), both of x's shape with the last dimension k. Ties go to the
    /// lower index, a NaN counts as the largest, -0 equals +0; 1 ≤ k ≤ min(row length, <see cref="TopKMax"/>).
    /// </summary>
    public static void TopK(Tensor values, Tensor indices, Tensor x, int k) => Native.OpTopK(H(values), H(indices), H(x), k);

    /// <summary><paramref name="output"/>[T, H] = table[ids[t], :] (ids: i32 [T]).</summary>
    public static void Embedding(Tensor output, Tensor table, Tensor ids) => Native.OpEmbedding(H(output), H(table), H(ids));

    /// <summary>x[rows[r], :] = src[r, :] (or += when <paramref name="accumulate"/>) for each r; rows: i32 [N].</summary>
    public static void ScatterRows(Tensor x, Tensor rows, Tensor src, bool accumulate) =>
        Native.OpScatterRows(H(x), H(rows), H(src), accumulate ? 1 : 0);

    /// <summary>
    /// The text attention of a decoder layer after its projections, in one call: RMSNorm over head_dim of q [T, Hq, D] and
    /// k [T, Hkv, D], interleaved M-RoPE with positions (i32 [3, T]), k and v written to rows n_past .. n_past+T-1 of the
    /// caches [capacity, Hkv, D], then causal <see cref="Attention"/> over the caches into <paramref name="output"/>
    /// [T, Hq, D]. <paramref name="q"/> and <paramref name="k"/> are scratch (unspecified afterwards). On a GPU, decoding (at
    /// most 8 query rows per KV head) runs as one kernel with the same result bit for bit.
    /// </summary>
    /// <param name="output">The attention [T, Hq, D].</param>
    /// <param name="q">Queries [T, Hq, D] (scratch).</param>
    /// <param name="k">Keys [T, Hkv, D] (scratch).</param>
    /// <param name="v">Values [T, Hkv, D].</param>
    /// <param name="qNorm">q_norm weight [D].</param>
    /// <param name="kNorm">k_norm weight [D].</param>
    /// <param name="eps">RMSNorm epsilon.</param>
    /// <param name="positions">i32 [3, T]: the t, h and w position streams.</param>
    /// <param name="theta">RoPE base.</param>
    /// <param name="mropeSection">The three M-RoPE section sizes (t, h, w), summing to D/2.</param>
    /// <param name="kCache">Key cache [capacity, Hkv, D].</param>
    /// <param name="vCache">Value cache [capacity, Hkv, D].</param>
    /// <param name="nPast">Rows already in the cache (the first row written); 0 with <paramref name="nPastTensor"/>.</param>
    /// <param name="nPastTensor">Optional i32 [1] holding n_past, read when the op runs (a captured decode step).</param>
    /// <param name="nPastBound">With <paramref name="nPastTensor"/>: the largest value it may hold (0: the whole cache).</param>
    public static unsafe void QkNormRopeAttention(Tensor output, Tensor q, Tensor k, Tensor v, Tensor qNorm, Tensor kNorm, float eps,
        Tensor positions, float theta, ReadOnlySpan<long> mropeSection, Tensor kCache, Tensor vCache, long nPast,
        Tensor? nPastTensor = null, long nPastBound = 0)
    {
        if (mropeSection.Length != 3) throw new ArgumentException("mrope_section must have 3 entries.", nameof(mropeSection));
        QkNormRopeAttentionParams p = NativeMethods.QkNormRopeAttentionDefaultParams();
        p.Out = H(output);
        p.Q = H(q);
        p.K = H(k);
        p.V = H(v);
        p.QNorm = H(qNorm);
        p.KNorm = H(kNorm);
        p.Eps = eps;
        p.Positions = H(positions);
        p.Theta = theta;
        for (int i = 0; i < 3; i++) p.MropeSection[i] = mropeSection[i];
        p.KCache = H(kCache);
        p.VCache = H(vCache);
        p.NPast = nPast;
        p.NPastTensor = Optional(nPastTensor);
        p.NPastBound = nPastBound;
        Native.OpQkNormRopeAttention(in p);
    }

    /// <summary>Vision 2D rotary, in place, on the q and k parts of a fused qkv [T, 3, H, D]; positions i32 [T, 2] (row, col).</summary>
    public static void RopeVision(Tensor qkv, Tensor positions, float theta) => Native.OpRopeVision(H(qkv), H(positions), theta);

    /// <summary>
    /// Attention with scale 1/sqrt(D). <see cref="AttentionMode.Causal"/>: q [T, Hq, D] against the first n_past + T rows of
    /// the caches (segments null). <see cref="AttentionMode.Segments"/>: q is a fused qkv [T, 3, H, D], the caches are null,
    /// n_past 0 and segments (i32 [S+1]) holds cumulative segment lengths. Output [T, Hq, D].
    /// </summary>
    /// <remarks><paramref name="nPastTensor"/> (causal only): an i32 [1] holding n_past, read when the op runs
    /// (<paramref name="nPast"/> is then 0 and <paramref name="nPastBound"/> the largest value it may hold, 0: the whole
    /// cache).</remarks>
    public static void Attention(Tensor output, Tensor q, Tensor? kCache, Tensor? vCache, long nPast, AttentionMode mode, Tensor? segments,
        Tensor? nPastTensor = null, long nPastBound = 0)
    {
        AttentionParams p = NativeMethods.AttentionDefaultParams();
        p.Mask = (AttentionMask)(int)mode;
        p.Out = H(output);
        p.Q = H(q);
        p.KCache = Optional(kCache);
        p.VCache = Optional(vCache);
        p.Segments = Optional(segments);
        p.NPast = nPast;
        p.NPastTensor = Optional(nPastTensor);
        p.NPastBound = nPastBound;
        Native.OpAttention(in p);
    }

    /// <summary>
    /// Vision position embedding: the learned table [G*G, C] bilinearly interpolated (align-corners) to a grid_h x grid_w
    /// patch grid, written in merge-window order to <paramref name="output"/> [grid_h * grid_w, C].
    /// </summary>
    public static void PositionEmbedding(Tensor output, Tensor table, long gridH, long gridW, long merge) =>
        Native.OpPositionEmbedding(H(output), H(table), gridH, gridW, merge);
}
