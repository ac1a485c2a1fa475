using System.Globalization;
using Qwen3VL.Native.Engine;
using Qwen3VL.Native.Inference;
using Qwen3VL.Native.Model;
using Qwen3VL.Native.Processing.Images;
using Qwen3VL.Native.Processing.Templates;
using Qwen3VL.Native.Processing.Tokenization;

namespace Qwen3VL.Native;

/// <summary>
/// A loaded Qwen3-VL model: the immutable weights on one backend (memory-mapped on the CPU), loaded once, with the
/// checkpoint's tokenizer, chat template and image processor. Thread-safe: any number of conversations
/// (<see cref="Qwen3VLChatSession"/>s, or low-level <see cref="Qwen3VLContext"/>s) may use it concurrently, each from
/// one caller at a time. Dispose when done; contexts and sessions still alive keep the weights loaded until they are
/// disposed (see <see cref="Dispose"/>).
/// </summary>
/// <remarks>Load with <see cref="Load(string, Qwen3VLModelOptions?)"/> or <see cref="LoadAsync"/>; talk to it through
/// <see cref="CreateSession"/> or <see cref="Qwen3VLChatClient"/>.
/// <para>Lifetime: every context (a session holds one) takes a reference on the model when it is created and drops it
/// when it is disposed, like a SafeHandle's DangerousAddRef/DangerousRelease; <see cref="Dispose"/> drops the model's own
/// reference. The weights (and the backend, when the model created it) are released when the last reference goes: at
/// once when no context is alive, else when the last one is disposed. A context also references its model object, so the
/// garbage collector never takes a model that a reachable context uses.</para></remarks>
public sealed class Qwen3VLModel : IDisposable
{
    private readonly WeightLoader _weights;
    private readonly bool _ownsBackend;
    private readonly Lazy<QwenTokenizer> _tokenizer;
    private readonly Lazy<ImageProcessor> _imageProcessor;
    private readonly Lazy<ChatTemplateDetection> _chatTemplate;

    // Lifetime (see the remarks): _liveContexts counts the references of contexts; Dispose sets _disposed; the native
    // resources go once both say so (disposed and no context left: no reference can be taken after Dispose).
    private readonly Lock _lifetime = new();
    private int _liveContexts;
    private bool _disposed;

    private Qwen3VLModel(string directory, Backend backend, bool ownsBackend, ModelConfig config, WeightLoader weights,
        VisionTower vision, TextModel text, Qwen3VLModelOptions options, TensorDType kvCacheDType)
    {
        Directory = directory;
        Backend = backend;
        _ownsBackend = ownsBackend;
        Config = config;
        _weights = weights;
        Vision = vision;
        Text = text;
        DefaultSampling = SamplingOptions.FromGenerationConfig(directory);
        ContextLength = (int)Math.Min(options.ContextLength, config.MaxPositionEmbeddings);
        CudaGraphs = options.CudaGraphs;
        KvCacheDType = kvCacheDType;
        _tokenizer = new Lazy<QwenTokenizer>(() => QwenTokenizer.FromDirectory(directory));
        _imageProcessor = new Lazy<ImageProcessor>(() =>
        {
            ImageProcessorConfig c = ImageProcessorConfig.FromCheckpointDirectory(directory);
            // One bound given alone moves the other when they would cross.
            if (options.MinPixels is { } min) c = c with { MinPixels = min, MaxPixels = Math.Max(min, c.MaxPixels) };
            if (options.MaxPixels is { } max) c = c with { MaxPixels = max, MinPixels = Math.Min(c.MinPixels, max) };
            return new ImageProcessor(c);
        });
        _chatTemplate = new Lazy<ChatTemplateDetection>(() => Qwen3VLChatTemplate.Detect(directory));
    }

    /// <summary>The checkpoint folder.</summary>
    public string Directory { get; }
    /// <summary>The backend holding the weights and running the ops.</summary>
    public Backend Backend { get; }
    /// <summary>The model's hyper-parameters.</summary>
    public ModelConfig Config { get; }
    /// <summary>The vision tower.</summary>
    public VisionTower Vision { get; }
    /// <summary>The text decoder and output projection.</summary>
    public TextModel Text { get; }
    /// <summary>Bytes of the weights (as stored: bf16 checkpoints stay bf16).</summary>
    public ulong WeightBytes => _weights.Loaded.Aggregate(0UL, (sum, t) => sum + t.ByteCount);

    /// <summary>Name of the model: its checkpoint folder's name (e.g. "Qwen3-VL-2B-Instruct").</summary>
    public string ModelId => Path.GetFileName(Directory.TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar));
    /// <summary>The device the model runs on, as the backend names it (e.g. "cpu (avx2, 8 threads)").</summary>
    public string DeviceName => Backend.Name;
    /// <summary>Default context length (prompt and answer tokens) of sessions: <see cref="Qwen3VLModelOptions.ContextLength"/>
    /// capped at max_position_embeddings.</summary>
    public int ContextLength { get; }
    /// <summary><see cref="Qwen3VLModelOptions.CudaGraphs"/>: whether contexts on a CUDA backend replay their decoding
    /// step as a graph.</summary>
    internal bool CudaGraphs { get; }
    /// <summary>The element type of the KV caches of this model's contexts (<see cref="Qwen3VLModelOptions.KvCache"/>
    /// resolved on the backend: F32, BF16 or Q8).</summary>
    internal TensorDType KvCacheDType { get; }
    /// <summary>The format of the KV caches of this model's contexts: <see cref="Qwen3VLModelOptions.KvCache"/> with Auto
    /// resolved (F32 on the CPU and with fp32 math, else BF16), so never <see cref="KvCacheFormat.Auto"/>.</summary>
    public KvCacheFormat KvCache => KvCacheDType switch
    {
        TensorDType.F32 => KvCacheFormat.F32,
        TensorDType.BF16 => KvCacheFormat.BF16,
        _ => KvCacheFormat.Q8,
    };
    /// <summary>The sampling defaults of the checkpoint's generation_config.json (greedy when it has none).</summary>
    public SamplingOptions DefaultSampling { get; }
    /// <summary>The checkpoint's tokenizer (tokenizer.json; loaded on first use when the model was loaded with a
    /// <see cref="Backend"/>).</summary>
    /// <exception cref="FileNotFoundException">The folder has no tokenizer.json.</exception>
    public QwenTokenizer Tokenizer => _tokenizer.Value;
    /// <summary>The image processor (the checkpoint's settings, with the pixel budget of <see cref="Qwen3VLModelOptions"/>).</summary>
    public ImageProcessor ImageProcessor => _imageProcessor.Value;
    /// <summary>The checkpoint's chat template and whether it is the Qwen3-VL Instruct template that prompts are built with.</summary>
    public ChatTemplateDetection ChatTemplate => _chatTemplate.Value;

    /// <summary>Number of weight elements (parameters) loaded.</summary>
    public long WeightElements => _weights.Loaded.Sum(t => t.ElementCount);

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

    /// <summary>
    /// Opens the checkpoint folder <paramref name="directory"/> and takes every weight onto <paramref name="backend"/>, which
    /// the caller keeps owning (dispose it after the model). The tokenizer and image processor load on first use.
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="Qwen3VLException">The checkpoint is unreadable, malformed or unsupported.</exception>
    public static Qwen3VLModel Load(string directory, Backend backend) => Load(directory, backend, null);

    /// <summary>
    /// Opens the checkpoint folder <paramref name="directory"/> and takes every weight onto <paramref name="backend"/>, which
    /// the caller keeps owning (dispose it after the model), with the context length, image budget, weight and KV cache formats
    /// and <see cref="Qwen3VLModelOptions.CudaGraphs"/> of <paramref name="options"/> (its <see cref="Qwen3VLModelOptions.Device"/>
    /// and <see cref="Qwen3VLModelOptions.Threads"/> are the backend's business and are ignored). The tokenizer and image
    /// processor load on first use.
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="ArgumentException">An option is invalid (e.g. <see cref="Qwen3VLModelOptions.KvCache"/> = Q8 for a
    /// head_dim that is not a multiple of 32).</exception>
    /// <exception cref="Qwen3VLException">The checkpoint is unreadable, malformed or unsupported.</exception>
    public static Qwen3VLModel Load(string directory, Backend backend, Qwen3VLModelOptions? options)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        ArgumentNullException.ThrowIfNull(backend);
        options ??= new Qwen3VLModelOptions();
        ValidateOptions(options);
        if (!System.IO.Directory.Exists(directory)) throw new DirectoryNotFoundException($"Model folder '{directory}' does not exist.");
        return LoadWeights(directory, backend, ownsBackend: false, options, onLoaded: null);
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
            model = LoadWeights(folder.Directory, backend, ownsBackend: true, options, (name, t) =>
            {
                cancellationToken.ThrowIfCancellationRequested();
                loaded++;
                bytes += folder.StoredBytes.TryGetValue(name, out long stored) ? stored : (long)t.ByteCount;
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
        if (!Enum.IsDefined(options.Weights)) throw new ArgumentOutOfRangeException(nameof(options), options.Weights, "Weights is not a WeightFormat.");
        if (!Enum.IsDefined(options.KvCache)) throw new ArgumentOutOfRangeException(nameof(options), options.KvCache, "KvCache is not a KvCacheFormat.");
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

    private static Qwen3VLModel LoadWeights(string directory, Backend backend, bool ownsBackend, Qwen3VLModelOptions options,
        Action<string, Tensor>? onLoaded)
    {
        using Checkpoint checkpoint = Checkpoint.Open(directory);
        ModelConfig config = ModelConfig.FromCheckpoint(checkpoint);
        if (config.Fp8 && options.Weights == WeightFormat.Q4)
        {
            throw new Qwen3VLUnsupportedException($"'{directory}' is a fine-grained FP8 checkpoint: Weights = Q4 would re-quantize its 8-bit "
                + "blocks to 4 bits (two roundings compounded). Load it as Stored (its decoder runs in the engine's 8-bit format) or "
                + "quantize the original bf16 checkpoint to Q4.");
        }
        // Before any weight is taken: a KV format the model's shapes cannot hold is refused at once, by name.
        TensorDType kvCacheDType = Model.KvCache.DTypeFor(options.KvCache, backend.Fp32Math, config.TextHeadDim);
        var weights = new WeightLoader(checkpoint, backend, config, options.Weights, onLoaded);
        try
        {
            var vision = new VisionTower(weights);
            var text = new TextModel(weights);
            // Quantizing or converting on a GPU staged each weight's source in pool memory that is now cached and unused:
            // give it back, so that what the device holds after loading is the weights.
            backend.Trim();
            return new Qwen3VLModel(checkpoint.Directory, backend, ownsBackend, config, weights, vision, text, options, kvCacheDType);
        }
        catch
        {
            weights.Dispose();
            throw;
        }
    }

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

    /// <summary>Creates a conversation with room for <paramref name="capacity"/> tokens (prompt and generated), KV caches in
    /// <see cref="KvCache"/>'s format.
    /// The context keeps the model's weights loaded until it is disposed, even when the model is disposed first.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The capacity is not positive or exceeds max_position_embeddings.</exception>
    /// <exception cref="ObjectDisposedException">The model has been disposed.</exception>
    public Qwen3VLContext CreateContext(int capacity = 4096) => new(this, capacity);

    /// <summary>Runs the vision tower on preprocessed images.</summary>
    /// <exception cref="ObjectDisposedException">The model has been disposed.</exception>
    public VisionFeatures EncodeImages(VisionInput input)
    {
        ThrowIfDisposed();
        return Vision.Forward(input);
    }

    /// <summary>
    /// Disposes the model: it creates no more contexts or sessions (<see cref="CreateContext"/>, <see cref="CreateSession"/>
    /// and <see cref="EncodeImages"/> throw <see cref="ObjectDisposedException"/>), and its weights (and the backend, when
    /// the model created it) are released, at once when no context or session is alive, else when the last of them is
    /// disposed: contexts and sessions created before go on working until then. Its descriptive members (configuration,
    /// tokenizer, template) stay readable. Calling it again does nothing.
    /// </summary>
    /// <remarks>A context that is never disposed keeps the weights until the garbage collector finalizes them.</remarks>
    public void Dispose()
    {
        lock (_lifetime)
        {
            if (_disposed) return;
            _disposed = true;
            if (_liveContexts > 0) return; // the last context releases
        }
        ReleaseNative();
    }

    /// <summary>Whether <see cref="Dispose"/> was called (live contexts may still hold the weights).</summary>
    internal bool IsDisposed
    {
        get { lock (_lifetime) return _disposed; }
    }

    /// <summary>Contexts (sessions' included) created on the model and not yet disposed.</summary>
    internal int LiveContexts
    {
        get { lock (_lifetime) return _liveContexts; }
    }

    /// <summary>Whether the weights have been released (disposed, and no context alive).</summary>
    internal bool IsReleased
    {
        get { lock (_lifetime) return _disposed && _liveContexts == 0; }
    }

    /// <summary>A new context's reference: keeps the weights until <see cref="ReleaseContextReference"/>.</summary>
    /// <exception cref="ObjectDisposedException">The model has been disposed.</exception>
    internal void AddContextReference()
    {
        lock (_lifetime)
        {
            ThrowIfDisposed();
            _liveContexts++;
        }
    }

    /// <summary>Drops a context's reference (exactly once per <see cref="AddContextReference"/>); the last one after
    /// <see cref="Dispose"/> releases the weights.</summary>
    internal void ReleaseContextReference()
    {
        lock (_lifetime)
        {
            if (_liveContexts <= 0) throw new InvalidOperationException("More context references released than taken.");
            if (--_liveContexts > 0 || !_disposed) return;
        }
        ReleaseNative();
    }

    /// <exception cref="ObjectDisposedException">The model has been disposed.</exception>
    internal void ThrowIfDisposed()
    {
        if (Volatile.Read(ref _disposed))
        {
            throw new ObjectDisposedException(GetType().FullName,
                $"The model '{ModelId}' has been disposed: it creates no more contexts or sessions (those created before keep working until they are disposed).");
        }
    }

    private void ReleaseNative()
    {
        try
        {
            _weights.Dispose();
        }
        finally
        {
            if (_ownsBackend) Backend.Dispose();
        }
    }
}
