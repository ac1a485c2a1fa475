using System.Globalization;

namespace Qwen3VL.Native;

public sealed partial class Qwen3VLModel
{
    /// <summary>
    /// Loads a Hugging Face Qwen3-VL checkpoint folder (config.json, tokenizer.json, safetensors weights, and optionally
    /// generation_config.json and the processor settings) onto the device the options choose.
    /// </summary>
    /// <param name="path">The checkpoint folder, e.g. a download of Qwen/Qwen3-VL-2B-Instruct.</param>
    /// <param name="options">Device, context length, image token budget, threads; null for the defaults.</param>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="FileNotFoundException">The folder lacks config.json, tokenizer.json or its weights (the message says which).</exception>
    /// <exception cref="ArgumentException">An option is invalid (e.g. an unknown device).</exception>
    /// <exception cref="Qwen3VLException">The native loader rejected the checkpoint (it names the missing or malformed tensor),
    /// or the device could not be opened.</exception>
    public static Qwen3VLModel Load(string path, Qwen3VLModelOptions? options = null) => LoadCore(path, options, null, CancellationToken.None);

    /// <summary>Loads a checkpoint folder on a worker thread, reporting progress; see <see cref="Load(string, Qwen3VLModelOptions?)"/>.</summary>
    /// <param name="path">The checkpoint folder.</param>
    /// <param name="options">Loading options; null for the defaults.</param>
    /// <param name="progress">Receives the weights loaded so far (called once per weight and once at the end).</param>
    /// <param name="cancellationToken">Stops loading between weights.</param>
    /// <exception cref="OperationCanceledException">Cancelled; nothing stays allocated.</exception>
    public static Task<Qwen3VLModel> LoadAsync(string path, Qwen3VLModelOptions? options = null, IProgress<LoadProgress>? progress = null,
        CancellationToken cancellationToken = default) =>
        Task.Run(() => LoadCore(path, options, progress, cancellationToken), cancellationToken);

    /// <summary>Starts a conversation on this model; each session has its own history and KV cache.</summary>
    /// <param name="options">System prompt and context length; null for the defaults.</param>
    /// <exception cref="ArgumentOutOfRangeException">The context length is not positive or exceeds max_position_embeddings.</exception>
    /// <exception cref="ObjectDisposedException">The model has been disposed (a session created before keeps the model's
    /// weights loaded until it is disposed).</exception>
    public Qwen3VLChatSession CreateSession(ChatSessionOptions? options = null)
    {
        ThrowIfDisposed();
        return new(this, options ?? new ChatSessionOptions());
    }

    private static Qwen3VLModel LoadCore(string path, Qwen3VLModelOptions? options, IProgress<LoadProgress>? progress, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        options ??= new Qwen3VLModelOptions();
        ValidateOptions(options);
        ModelFolder folder = ModelFolder.Inspect(path);
        cancellationToken.ThrowIfCancellationRequested();

        Backend backend = CreateBackend(options.Device, options.Threads);
        Qwen3VLModel? model = null;
        try
        {
            int loaded = 0;
            long bytes = 0;
            model = LoadWeights(folder.Directory, backend, ownsBackend: true, options, t =>
            {
                cancellationToken.ThrowIfCancellationRequested();
                loaded++;
                bytes += (long)t.ByteCount;
                progress?.Report(new LoadProgress(loaded, Math.Max(loaded, folder.TensorCount), bytes, Math.Max(bytes, folder.TotalBytes)));
            });
            progress?.Report(new LoadProgress(loaded, loaded, bytes, bytes));
            // The tokenizer and processor settings are part of the model: fail now, not at the first prompt.
            _ = model.Tokenizer;
            _ = model.ImageProcessor;
            return model;
        }
        catch
        {
            if (model is not null) model.Dispose();
            else backend.Dispose();
            throw;
        }
    }

    private static void ValidateOptions(Qwen3VLModelOptions options)
    {
        if (options.ContextLength < 1) throw new ArgumentOutOfRangeException(nameof(options), options.ContextLength, "ContextLength must be positive.");
        if (options.Threads < 0) throw new ArgumentOutOfRangeException(nameof(options), options.Threads, "Threads must be 0 (all logical processors) or more.");
        if (options.MinPixels is <= 0 || options.MaxPixels is <= 0 || options.MinPixels > options.MaxPixels)
        {
            throw new ArgumentException($"Invalid image budget: MinPixels {options.MinPixels}, MaxPixels {options.MaxPixels}.", nameof(options));
        }
    }

    /// <summary>The backend for a device string: "auto", "cpu", "cuda" or "cuda:N".</summary>
    private static Backend CreateBackend(string? device, int threads)
    {
        string d = (device ?? "auto").Trim().ToLowerInvariant();
        if (d is "" or "auto")
        {
            NativeInfo info = NativeInfo.Query();
            if (info.HasCudaBackend && info.CudaDevices.Count > 0)
            {
                try
                {
                    return Backend.CreateCuda(info.CudaDevices[0].Index);
                }
                catch (Qwen3VLException)
                {
                    // A device that cannot be opened (driver, memory) is not an error for "auto": the CPU serves.
                }
            }
            return Backend.CreateCpu(threads);
        }
        if (d == "cpu") return Backend.CreateCpu(threads);
        if (d == "cuda") return Backend.CreateCuda(0);
        if (d.StartsWith("cuda:", StringComparison.Ordinal)
            && int.TryParse(d.AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture, out int index))
        {
            return Backend.CreateCuda(index);
        }
        throw new ArgumentException($"Unknown device '{device}': use \"auto\", \"cpu\", \"cuda\" or \"cuda:N\".", nameof(device));
    }
}
