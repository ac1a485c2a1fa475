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
