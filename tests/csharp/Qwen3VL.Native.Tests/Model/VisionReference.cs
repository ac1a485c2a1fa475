using Qwen3VL.Native.Engine;
using Qwen3VL.Native.Model;

namespace Qwen3VL.Native.Tests.Model;

/// <summary>
/// The vision block and the patch mergers in plain double precision on the host, written from the model's definition
/// (transformers' Qwen3VLVisionBlock / Qwen3VLVisionPatchMerger), not from the engine's ops: the reference that
/// <see cref="VisionCompositionTests"/> holds the fused ops to. Matrices are row-major; a weight is [out, in].
/// </summary>
internal static class VisionReference
{
    /// <summary>A tensor's values on the host as doubles (the engine widens bf16 / f16 weights to f32 exactly, and so does this).</summary>
    public static double[] Host(Tensor t)
    {
        var values = new float[t.ElementCount];
        t.Read(values);
        return Array.ConvertAll(values, v => (double)v);
    }

    /// <summary>LayerNorm over rows of <paramref name="width"/>: (x - mean) / sqrt(var + eps) * w + b, var the biased variance.</summary>
    public static double[] LayerNorm(double[] x, int width, double[] w, double[] b, double eps)
    {
        var y = new double[x.Length];
        for (int r = 0; r < x.Length / width; r++)
        {
            int o = r * width;
            double mean = 0, var = 0;
            for (int i = 0; i < width; i++) mean += x[o + i];
            mean /= width;
            for (int i = 0; i < width; i++) var += (x[o + i] - mean) * (x[o + i] - mean);
            var /= width;
            double inv = 1 / Math.Sqrt(var + eps);
            for (int i = 0; i < width; i++) y[o + i] = (x[o + i] - mean) * inv * w[i] + b[i];
        }
        return y;
    }

    /// <summary>y [M, N] = x [M, K] · Wᵀ (W [N, K]) + bias [N].</summary>
    public static double[] Linear(double[] x, double[] w, double[] bias)
    {
        int n = bias.Length, k = w.Length / n, m = x.Length / k;
        var y = new double[m * n];
        for (int r = 0; r < m; r++)
        for (int j = 0; j < n; j++)
        {
            double s = bias[j];
            for (int i = 0; i < k; i++) s += x[r * k + i] * w[j * k + i];
            y[r * n + j] = s;
        }
        return y;
    }

    /// <summary>GELU: 0.5·x·(1 + erf(x/√2)), or the tanh form 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).</summary>
    public static double Gelu(double x, bool tanh) => tanh
        ? 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)))
        : 0.5 * x * (1 + Erf(x / Math.Sqrt(2)));

    /// <summary>
    /// erf(x) to about 1e-15 (.NET has none): 2/√π·e^(−x²)·Σ 2ⁿx^(2n+1)/(1·3···(2n+1)), a series of positive terms (no
    /// cancellation) that converges for every x; |erf(x)| rounds to 1 in double beyond |x| = 6.
    /// </summary>
    public static double Erf(double x)
    {
        double a = Math.Abs(x);
        if (a >= 6) return Math.Sign(x);
        double term = a, sum = a, x2 = a * a;
        for (int n = 1; n < 500 && term > 1e-17 * sum; n++)
        {
            term *= 2 * x2 / (2 * n + 1);
            sum += term;
        }
        return Math.Sign(x) * 2 / Math.Sqrt(Math.PI) * Math.Exp(-x2) * sum;
    }

    /// <summary>
    /// The 2-D vision rotary on the q and k parts of qkv [T, 3, H, D], in place: f_j = 1 / θ^(2j / (D/2)) for j &lt; D/4;
    /// angle a_j is row·f_j for j &lt; D/4 and col·f_(j−D/4) for D/4 ≤ j &lt; D/2; pairs (i, i + D/2) turn by a_i
    /// (x·cos + rotate_half(x)·sin, rotate_half(x) = (−x₂, x₁)).
    /// </summary>
    public static void RopeVision(double[] qkv, int tokens, int heads, int headDim, int[] positions, double theta)
    {
        int half = headDim / 2, quarter = headDim / 4;
        var freq = new double[quarter];
        for (int j = 0; j < quarter; j++) freq[j] = 1 / Math.Pow(theta, 2.0 * j / half);
        var angle = new double[half];
        for (int t = 0; t < tokens; t++)
        {
            for (int j = 0; j < quarter; j++)
            {
                angle[j] = positions[2 * t] * freq[j];
                angle[quarter + j] = positions[2 * t + 1] * freq[j];
            }
            for (int part = 0; part < 2; part++)
            for (int h = 0; h < heads; h++)
            {
                int o = ((t * 3 + part) * heads + h) * headDim;
                for (int i = 0; i < half; i++)
                {
                    double x1 = qkv[o + i], x2 = qkv[o + i + half], c = Math.Cos(angle[i]), s = Math.Sin(angle[i]);
                    qkv[o + i] = x1 * c - x2 * s;
                    qkv[o + i + half] = x2 * c + x1 * s;
                }
            }
        }
    }

    /// <summary>
    /// Bidirectional softmax attention with scale 1/√D of qkv [T, 3, H, D] within each segment [cu[s], cu[s+1]):
    /// returns [T, H·D] (head-major per token).
    /// </summary>
    public static double[] SegmentAttention(double[] qkv, int heads, int headDim, int[] cu)
    {
        int tokens = cu[^1], width = heads * headDim;
        double scale = 1 / Math.Sqrt(headDim);
        var output = new double[tokens * width];
        int Q(int t, int h) => ((t * 3 + 0) * heads + h) * headDim;
        int K(int t, int h) => ((t * 3 + 1) * heads + h) * headDim;
        int V(int t, int h) => ((t * 3 + 2) * heads + h) * headDim;
        for (int s = 0; s + 1 < cu.Length; s++)
        {
            int begin = cu[s], end = cu[s + 1];
            var p = new double[end - begin];
            for (int h = 0; h < heads; h++)
            for (int t = begin; t < end; t++)
            {
                double max = double.NegativeInfinity, sum = 0;
                for (int u = begin; u < end; u++)
                {
                    double dot = 0;
                    for (int d = 0; d < headDim; d++) dot += qkv[Q(t, h) + d] * qkv[K(u, h) + d];
                    p[u - begin] = dot * scale;
                    max = Math.Max(max, p[u - begin]);
                }
                for (int u = 0; u < p.Length; u++) sum += p[u] = Math.Exp(p[u] - max);
                for (int d = 0; d < headDim; d++)
                {
                    double acc = 0;
                    for (int u = begin; u < end; u++) acc += p[u - begin] * qkv[V(u, h) + d];
                    output[t * width + h * headDim + d] = acc / sum;
                }
            }
        }
        return output;
    }

    /// <summary>The block on x [T, hidden]: x + proj(attn(rope(qkv(norm1(x))))), then + fc2(gelu(fc1(norm2(·)))).</summary>
    public static double[] Block(VisionBlock block, ModelConfig c, double[] x, int[] positions, int[] cu)
    {
        int hidden = c.VisionHiddenSize, heads = c.VisionNumHeads, headDim = c.VisionHeadDim, tokens = x.Length / hidden;
        double eps = VisionBlock.LayerNormEps;
        double[] qkv = Linear(LayerNorm(x, hidden, Host(block.Norm1Weight), Host(block.Norm1Bias), eps), Host(block.QkvWeight), Host(block.QkvBias));
        RopeVision(qkv, tokens, heads, headDim, positions, c.VisionRopeTheta);
        double[] attn = Linear(SegmentAttention(qkv, heads, headDim, cu), Host(block.ProjWeight), Host(block.ProjBias));
        double[] r = new double[x.Length];
        for (int i = 0; i < r.Length; i++) r[i] = x[i] + attn[i];
        double[] f = Linear(LayerNorm(r, hidden, Host(block.Norm2Weight), Host(block.Norm2Bias), eps), Host(block.Fc1Weight), Host(block.Fc1Bias));
        for (int i = 0; i < f.Length; i++) f[i] = Gelu(f[i], c.VisionGeluTanh);
        double[] mlp = Linear(f, Host(block.Fc2Weight), Host(block.Fc2Bias));
        for (int i = 0; i < r.Length; i++) r[i] += mlp[i];
        return r;
    }

    /// <summary>
    /// A patch merger on x [N, hidden] (N a multiple of merge²): LayerNorm per patch (or, for the DeepStack mergers, over
    /// the merge² consecutive patches concatenated), those patches concatenated, fc1, GELU (erf), fc2: [N / merge², out_hidden].
    /// </summary>
    public static double[] Merger(PatchMerger merger, ModelConfig c, double[] x)
    {
        int width = merger.UsePostShuffleNorm ? c.VisionHiddenSize * c.VisionMergeUnit : c.VisionHiddenSize;
        // Row-major [N, hidden] read as [N / merge², merge²·hidden] is the concatenation of consecutive patches.
        double[] normed = LayerNorm(x, width, Host(merger.NormWeight), Host(merger.NormBias), VisionBlock.LayerNormEps);
        double[] f = Linear(normed, Host(merger.Fc1Weight), Host(merger.Fc1Bias));
        for (int i = 0; i < f.Length; i++) f[i] = Gelu(f[i], tanh: false);
        return Linear(f, Host(merger.Fc2Weight), Host(merger.Fc2Bias));
    }
}
