using Qwen3VL.Native.Engine;

namespace Qwen3VL.Native.Model;

/// <summary>
/// A patch merger, <c>model.visual.merger</c> or <c>model.visual.deepstack_merger_list.K</c>: LayerNorm (over hidden per patch, or
/// over merge²·hidden after the shuffle for the DeepStack mergers), then merge² consecutive patches concatenated,
/// linear_fc1, GELU (erf), linear_fc2 to the text hidden size.
/// </summary>
public sealed class PatchMerger
{
    private readonly ModelConfig _config;
    private readonly Backend _backend;

    internal PatchMerger(WeightLoader w, string prefix, bool usePostShuffleNorm)
    {
        _config = w.Config;
        _backend = w.Backend;
        Prefix = prefix;
        UsePostShuffleNorm = usePostShuffleNorm;
        long hidden = _config.VisionHiddenSize, merged = hidden * _config.VisionMergeUnit, normSize = usePostShuffleNorm ? merged : hidden;
        NormWeight = w.Get(prefix + "norm.weight", normSize);
        NormBias = w.Get(prefix + "norm.bias", normSize);
        Fc1Weight = w.Get(prefix + "linear_fc1.weight", merged, merged);
        Fc1Bias = w.Get(prefix + "linear_fc1.bias", merged);
        Fc2Weight = w.Get(prefix + "linear_fc2.weight", _config.VisionOutHiddenSize, merged);
        Fc2Bias = w.Get(prefix + "linear_fc2.bias", _config.VisionOutHiddenSize);
    }

    /// <summary>Tensor name prefix, e.g. <c>model.visual.merger.</c>.</summary>
    public string Prefix { get; }
    /// <summary>Whether the norm runs over the merged (shuffled) vector: true for the DeepStack mergers.</summary>
    public bool UsePostShuffleNorm { get; }
    /// <summary><c>norm.weight</c>.</summary>
    public Tensor NormWeight { get; }
    /// <summary><c>norm.bias</c>.</summary>
    public Tensor NormBias { get; }
    /// <summary><c>linear_fc1.weight</c>.</summary>
    public Tensor Fc1Weight { get; }
    /// <summary><c>linear_fc1.bias</c>.</summary>
    public Tensor Fc1Bias { get; }
    /// <summary><c>linear_fc2.weight</c>.</summary>
    public Tensor Fc2Weight { get; }
    /// <summary><c>linear_fc2.bias</c>.</summary>
    public Tensor Fc2Bias { get; }

    /// <summary>Maps patch states <paramref name="x"/> [N, hidden] (N a multiple of merge²) to a new tensor [N / merge², out_hidden].</summary>
    public Tensor Forward(Tensor x)
    {
        long n = x.Shape[0], hidden = _config.VisionHiddenSize, unit = _config.VisionMergeUnit;
        if (n % unit != 0) throw new ArgumentException($"{n} patches are not a multiple of the merge unit {unit}.", nameof(x));
        long m = n / unit, merged = hidden * unit;

        Tensor output = _backend.CreateTensor(TensorDType.F32, m, _config.VisionOutHiddenSize);
        try
        {
            if (UsePostShuffleNorm)
            {
                // The norm runs over the rows of the MLP's input: one op for all of it.
                using Tensor shuffled = x.Reshape(m, merged);
                Ops.MlpGelu(output, shuffled, NormWeight, NormBias, VisionBlock.LayerNormEps, Fc1Weight, Fc1Bias, tanhApproximation: false,
                    Fc2Weight, Fc2Bias, residual: null);
            }
            else
            {
                using Tensor normed = _backend.CreateTensor(TensorDType.F32, m, merged);
                using (Tensor perPatch = normed.Reshape(n, hidden)) Ops.LayerNorm(perPatch, x, NormWeight, NormBias, VisionBlock.LayerNormEps);
                Ops.MlpGelu(output, normed, null, null, VisionBlock.LayerNormEps, Fc1Weight, Fc1Bias, tanhApproximation: false,
                    Fc2Weight, Fc2Bias, residual: null);
            }
            return output;
        }
        catch
        {
            output.Dispose();
            throw;
        }
    }
}
