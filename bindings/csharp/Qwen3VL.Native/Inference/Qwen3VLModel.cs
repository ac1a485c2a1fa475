using Qwen3VL.Native.Model;

namespace Qwen3VL.Native.Inference;

/// <summary>
/// A loaded Qwen3-VL model: the immutable weights on one backend (memory-mapped on the CPU), loaded once. Thread-safe:
/// any number of <see cref="Qwen3VLContext"/>s (conversations) may use it concurrently. Dispose after its contexts.
/// </summary>
public sealed class Qwen3VLModel : IDisposable
{
    private readonly WeightLoader _weights;

    private Qwen3VLModel(string directory, Backend backend, ModelConfig config, WeightLoader weights, VisionTower vision, TextModel text)
    {
        Directory = directory;
        Backend = backend;
        Config = config;
        _weights = weights;
        Vision = vision;
        Text = text;
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

    /// <summary>Number of weight elements (parameters) loaded.</summary>
    public long WeightElements => _weights.Loaded.Sum(t => t.ElementCount);

    /// <summary>Opens the checkpoint folder <paramref name="directory"/> and takes every weight onto <paramref name="backend"/>.</summary>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="Qwen3VLException">The checkpoint is unreadable, malformed or unsupported.</exception>
    public static Qwen3VLModel Load(string directory, Backend backend)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        ArgumentNullException.ThrowIfNull(backend);
        if (!System.IO.Directory.Exists(directory)) throw new DirectoryNotFoundException($"Model folder '{directory}' does not exist.");
        using Checkpoint checkpoint = Checkpoint.Open(directory);
        ModelConfig config = ModelConfig.FromCheckpoint(checkpoint);
        var weights = new WeightLoader(checkpoint, backend, config);
        try
        {
            var vision = new VisionTower(weights);
            var text = new TextModel(weights);
            return new Qwen3VLModel(checkpoint.Directory, backend, config, weights, vision, text);
        }
        catch
        {
            weights.Dispose();
            throw;
        }
    }

    /// <summary>Creates a conversation with room for <paramref name="capacity"/> tokens (prompt and generated), f32 KV caches.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The capacity is not positive or exceeds max_position_embeddings.</exception>
    public Qwen3VLContext CreateContext(int capacity = 4096) => new(this, capacity);

    /// <summary>Runs the vision tower on preprocessed images.</summary>
    public VisionFeatures EncodeImages(VisionInput input) => Vision.Forward(input);

    /// <summary>Releases the weights. Contexts must not be used afterwards.</summary>
    public void Dispose() => _weights.Dispose();
}
