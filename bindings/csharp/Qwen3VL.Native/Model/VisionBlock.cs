using Qwen3VL.Native.Engine;

namespace Qwen3VL.Native.Model;

/// <summary>
/// One vision transformer block, <c>model.visual.blocks.N</c>: x += proj(attn(norm1(x))); x += linear_fc2(gelu(linear_fc1(norm2(x)))).
/// Attention is bidirectional within each image (segments), with the 2D rotary on q and k.
/// </summary>
public sealed class VisionBlock
{
    /// <summary>LayerNorm epsilon of the vision tower (fixed in the reference implementation).</summary>
    public const float LayerNormEps = 1e-6f;

    private readonly ModelConfig _config;
    private readonly Backend _backend;

    internal VisionBlock(WeightLoader w, int index)
    {
        _config = w.Config;
        _backend = w.Backend;
        Index = index;
        string p = $"model.visual.blocks.{index}.";
        long hidden = _config.VisionHiddenSize, inter = _config.VisionIntermediateSize;
        Norm1Weight = w.Get(p + "norm1.weight", hidden);
        Norm1Bias = w.Get(p + "norm1.bias", hidden);
        Norm2Weight = w.Get(p + "norm2.weight", hidden);
        Norm2Bias = w.Get(p + "norm2.bias", hidden);
        QkvWeight = w.Get(p + "attn.qkv.weight", 3 * hidden, hidden);
        QkvBias = w.Get(p + "attn.qkv.bias", 3 * hidden);
        ProjWeight = w.Get(p + "attn.proj.weight", hidden, hidden);
        ProjBias = w.Get(p + "attn.proj.bias", hidden);
        Fc1Weight = w.Get(p + "mlp.linear_fc1.weight", inter, hidden);
        Fc1Bias = w.Get(p + "mlp.linear_fc1.bias", inter);
        Fc2Weight = w.Get(p + "mlp.linear_fc2.weight", hidden, inter);
        Fc2Bias = w.Get(p + "mlp.linear_fc2.bias", hidden);
    }

    /// <summary>Block index N.</summary>
    public int Index { get; }
    /// <summary><c>norm1.weight</c>.</summary>
    public Tensor Norm1Weight { get; }
    /// <summary><c>norm1.bias</c>.</summary>
    public Tensor Norm1Bias { get; }
    /// <summary><c>norm2.weight</c>.</summary>
    public Tensor Norm2Weight { get; }
    /// <summary><c>norm2.bias</c>.</summary>
    public Tensor Norm2Bias { get; }
    /// <summary><c>attn.qkv.weight</c> [3·hidden, hidden].</summary>
    public Tensor QkvWeight { get; }
    /// <summary><c>attn.qkv.bias</c>.</summary>
    public Tensor QkvBias { get; }
    /// <summary><c>attn.proj.weight</c>.</summary>
    public Tensor ProjWeight { get; }
    /// <summary><c>attn.proj.bias</c>.</summary>
    public Tensor ProjBias { get; }
    /// <summary><c>mlp.linear_fc1.weight</c>.</summary>
    public Tensor Fc1Weight { get; }
    /// <summary><c>mlp.linear_fc1.bias</c>.</summary>
    public Tensor Fc1Bias { get; }
    /// <summary><c>mlp.linear_fc2.weight</c>.</summary>
    public Tensor Fc2Weight { get; }
    /// <summary><c>mlp.linear_fc2.bias</c>.</summary>
    public Tensor Fc2Bias { get; }

    /// <summary>Runs the block in place on <paramref name="x"/> [N, hidden].</summary>
    /// <param name="x">Patch hidden states, updated in place.</param>
    /// <param name="positions">i32 [N, 2]: full-resolution (row, col) of each patch.</param>
    /// <param name="segments">i32 [S+1]: cumulative patch counts of the images (frames).</param>
    public void Forward(Tensor x, Tensor positions, Tensor segments)
    {
        long n = x.Shape[0];
        long hidden = _config.VisionHiddenSize, heads = _config.VisionNumHeads, headDim = _config.VisionHeadDim;

        // The fused ops equal the unfused sequence (LayerNorm, Linear, ..., Add) bit for bit on the CPU; on a GPU the norms
        // write the GEMMs' 16-bit inputs, and bias, GELU (tanh) and residual ride in the GEMM epilogues.
        using (Tensor qkv = _backend.CreateTensor(TensorDType.F32, n, 3 * hidden))
        using (Tensor qkv4 = qkv.Reshape(n, 3, heads, headDim))
        using (Tensor attn = _backend.CreateTensor(TensorDType.F32, n, heads, headDim))
        using (Tensor attn2 = attn.Reshape(n, hidden))
        {
            Ops.LayerNormLinear(qkv, x, Norm1Weight, Norm1Bias, LayerNormEps, QkvWeight, QkvBias);
            Ops.RopeVision(qkv4, positions, (float)_config.VisionRopeTheta);
            Ops.Attention(attn, qkv4, null, null, 0, AttentionMode.Segments, segments);
            Ops.LinearResidual(x, attn2, ProjWeight, ProjBias, x);
        }
        Ops.MlpGelu(x, x, Norm2Weight, Norm2Bias, LayerNormEps, Fc1Weight, Fc1Bias, _config.VisionGeluTanh, Fc2Weight, Fc2Bias, x);
    }
}
