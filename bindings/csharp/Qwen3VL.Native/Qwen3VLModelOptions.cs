namespace Qwen3VL.Native;

/// <summary>How <see cref="Qwen3VLModel.Load(string, Qwen3VLModelOptions?)"/> loads a model.</summary>
public sealed record Qwen3VLModelOptions
{
    /// <summary>
    /// Where the model runs: <c>"auto"</c> (the default: the first CUDA device when the native library has CUDA and a
    /// device can be opened, else the CPU), <c>"cpu"</c>, or <c>"cuda"</c> / <c>"cuda:N"</c> for CUDA device N.
    /// </summary>
    public string Device { get; init; } = "auto";
    /// <summary>Tokens a session holds by default (prompt, images and answers of the whole conversation); capped at the
    /// model's max_position_embeddings. The KV cache of each session is allocated at this size. Default 4096.</summary>
    public int ContextLength { get; init; } = 4096;
    /// <summary>Smallest image area in pixels after resizing (the lower end of the image token budget: one token per
    /// 32x32 pixels); null keeps the checkpoint's setting.</summary>
    public long? MinPixels { get; init; }
    /// <summary>Largest image area in pixels after resizing (the upper end of the image token budget); null keeps the
    /// checkpoint's setting.</summary>
    public long? MaxPixels { get; init; }
    /// <summary>CPU worker threads; 0 (the default) uses one per logical processor.</summary>
    public int Threads { get; init; }
    /// <summary>
    /// Whether each context's decoding step on a CUDA device is recorded once as CUDA graphs and replayed per token
    /// (true, the default: one input upload, one launch and one read per token, whatever the number of layers). False runs
    /// every op of a step eagerly (a launch per op, as prefill does): the same computation, slower; a before/after
    /// measurement switch. No effect on the CPU, which always runs ops eagerly. Applies to the contexts and sessions
    /// created on the model. The <c>qwen3vl</c> command line sets it to false for <c>--no-graphs</c> or the environment
    /// variable <c>QWEN3VL_NO_GRAPHS=1</c>; the library itself reads no environment variable for it.
    /// </summary>
    public bool CudaGraphs { get; init; } = true;
    /// <summary>
    /// The form the text decoder's matrices take in memory (<see cref="WeightFormat"/>): as stored (the default), bf16, or
    /// quantized to 8 or 4 bits while loading. The vision tower, the norms and the biases always stay as stored.
    /// </summary>
    public WeightFormat Weights { get; init; } = WeightFormat.Stored;
    /// <summary>
    /// The form of each context's key and value caches (<see cref="KvCacheFormat"/>): the backend's choice (the default: f32 on
    /// the CPU and with fp32 math, bf16 with tensor-core math), f32, bf16, or 8-bit blocks (~1.9x smaller than bf16, for long
    /// prompts and many images on small GPUs). Applies to the contexts and sessions created on the model.
    /// </summary>
    public KvCacheFormat KvCache { get; init; } = KvCacheFormat.Auto;
}

/// <summary>The element format of the KV caches of a model's contexts (<see cref="Qwen3VLModelOptions.KvCache"/>).</summary>
public enum KvCacheFormat
{
    /// <summary>
    /// The backend's choice: f32 where every product is computed in fp32 (the CPU, a CUDA backend with fp32 math: exact parity
    /// with an fp32 reference), bf16 where tensor cores take bf16 operands anyway (half the memory and half the bytes each
    /// decoding step reads).
    /// </summary>
    Auto = 0,
    /// <summary>32-bit floats: 4 bytes per cached element.</summary>
    F32 = 1,
    /// <summary>bfloat16: 2 bytes per cached element (8 significant bits; relative rounding error ~2e-3 RMS).</summary>
    BF16 = 2,
    /// <summary>
    /// 8-bit blocks, the format of <see cref="WeightFormat.Q8"/>: each head's row of head_dim values is cut into blocks of 32
    /// int8 with one f16 scale (8.5 bits per element: ~1.9x smaller than bf16, ~3.8x smaller than f32; relative rounding
    /// error ~5.4e-3 RMS per cached vector), quantized as each token's keys and values are written and read back by attention.
    /// Needs head_dim to be a multiple of 32 (every Qwen3-VL size: 128); loading a checkpoint whose head_dim is not is
    /// refused (<see cref="ArgumentException"/> naming KvCache), never done in another format.
    /// </summary>
    Q8 = 3,
}

/// <summary>The form of the text decoder's weight matrices (<see cref="Qwen3VLModelOptions.Weights"/>).</summary>
public enum WeightFormat
{
    /// <summary>
    /// As the checkpoint stores them (bf16 for Qwen's published folders): on the CPU read in place from the mapped files. For a
    /// fine-grained FP8 checkpoint (Qwen's -FP8 folders) the text decoder runs in the engine's 8-bit format, as with
    /// <see cref="Q8"/> (its FP8 blocks dequantized and requantized to Q8 while loading), and the vision tower in bf16.
    /// </summary>
    Stored = 0,
    /// <summary>bf16, converted while loading where the checkpoint stores another float type (f32, f16).</summary>
    BF16 = 1,
    /// <summary>
    /// 8-bit blocks (32 int8 weights with one f16 scale: 8.5 bits per weight, relative error ~5e-3 RMS on near-Gaussian
    /// weights), quantized while loading on the model's backend: the q/k/v/o, gate/up/down projections of every decoder layer
    /// and the token embedding and lm_head (a tied checkpoint's one table serves both, quantized once). ~1.9x fewer bytes read
    /// per decoded token than bf16. A matrix whose rows are not whole blocks of 32 (only tiny test shapes) stays as stored.
    /// </summary>
    Q8 = 2,
    /// <summary>
    /// 4-bit groups (super-blocks of 256 weights along a row: 8 groups of 32, each with a 6-bit scale and a 6-bit minimum under
    /// the super-block's f16 scales; 4.5 bits per weight, relative error ~7e-2 RMS on near-Gaussian weights, 20-25% below
    /// llama.cpp's Q4_0 at the same size), quantized while loading: the decoder layers' projections (rows of whole
    /// super-blocks of 256: every Qwen3-VL size) and an untied token embedding (only looked up). lm_head stays 8-bit as with
    /// <see cref="Q8"/> (its error reaches the logits directly), and so does a tied embedding table (it is lm_head too), as does
    /// a projection whose rows are whole blocks of 32 but not of 256 (tiny test shapes). ~3.2x fewer bytes read per decoded token than bf16. Not for an FP8 checkpoint
    /// (re-quantizing its 8-bit blocks compounds two roundings): that load is refused.
    /// </summary>
    Q4 = 3,
}

/// <summary>Progress of loading the weights.</summary>
/// <param name="TensorsLoaded">Weights taken so far.</param>
/// <param name="TensorCount">Weights in the checkpoint.</param>
/// <param name="BytesLoaded">Bytes of the weights taken so far (as stored).</param>
/// <param name="TotalBytes">Bytes of all weights in the checkpoint.</param>
public readonly record struct LoadProgress(int TensorsLoaded, int TensorCount, long BytesLoaded, long TotalBytes)
{
    /// <summary>Fraction done, 0 to 1 (by bytes).</summary>
    public double Fraction => TotalBytes > 0 ? Math.Min(1.0, (double)BytesLoaded / TotalBytes) : TensorCount > 0 ? (double)TensorsLoaded / TensorCount : 0;
}
