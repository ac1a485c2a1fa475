using Qwen3VL.Native.Engine;

namespace Qwen3VL.Native.Model;

/// <summary>
/// Hyper-parameters of a Qwen3-VL checkpoint as the native loader read them (<c>qwen3vl_model_config</c>: config.json
/// in either spelling, plus the eos ids of generation_config.json). Nothing of the model's shape is hard-coded elsewhere.
/// </summary>
public sealed record ModelConfig
{
    /// <summary>Whether the output projection shares the token embedding (no <c>lm_head.weight</c>).</summary>
    public bool TieWordEmbeddings { get; init; }
    /// <summary>Text hidden size.</summary>
    public int TextHiddenSize { get; init; }
    /// <summary>Number of decoder layers.</summary>
    public int TextNumLayers { get; init; }
    /// <summary>Query heads.</summary>
    public int TextNumHeads { get; init; }
    /// <summary>Key/value heads (GQA).</summary>
    public int TextNumKvHeads { get; init; }
    /// <summary>Head dimension of the text attention.</summary>
    public int TextHeadDim { get; init; }
    /// <summary>Width of the gated MLP.</summary>
    public int TextIntermediateSize { get; init; }
    /// <summary>Vocabulary size (rows of the embedding and of the logits).</summary>
    public int VocabSize { get; init; }
    /// <summary>Largest position the model was trained for (bounds a context's capacity).</summary>
    public long MaxPositionEmbeddings { get; init; }
    /// <summary>RMSNorm epsilon of the text model.</summary>
    public double RmsNormEps { get; init; }
    /// <summary>RoPE base of the text model.</summary>
    public double RopeTheta { get; init; }
    /// <summary>Interleaved M-RoPE sections (t, h, w); they sum to head_dim / 2.</summary>
    public IReadOnlyList<long> MropeSection { get; init; } = [];
    /// <summary>Number of vision blocks.</summary>
    public int VisionDepth { get; init; }
    /// <summary>Vision hidden size.</summary>
    public int VisionHiddenSize { get; init; }
    /// <summary>Vision attention heads.</summary>
    public int VisionNumHeads { get; init; }
    /// <summary>Vision MLP width.</summary>
    public int VisionIntermediateSize { get; init; }
    /// <summary>Patch side in pixels.</summary>
    public int VisionPatchSize { get; init; }
    /// <summary>Frames per temporal patch.</summary>
    public int VisionTemporalPatchSize { get; init; }
    /// <summary>Spatial merge size (patches per merged token side).</summary>
    public int VisionSpatialMergeSize { get; init; }
    /// <summary>Width of the merged visual tokens (equals the text hidden size).</summary>
    public int VisionOutHiddenSize { get; init; }
    /// <summary>Image channels.</summary>
    public int VisionInChannels { get; init; }
    /// <summary>Rows of the learned position-embedding table (a square grid).</summary>
    public int VisionNumPositionEmbeddings { get; init; }
    /// <summary>RoPE base of the vision 2D rotary.</summary>
    public double VisionRopeTheta { get; init; }
    /// <summary>Whether the vision blocks' MLP uses the tanh GELU approximation (else erf).</summary>
    public bool VisionGeluTanh { get; init; }
    /// <summary>Vision blocks after which a DeepStack merger taps the hidden states, in merger order.</summary>
    public IReadOnlyList<int> DeepstackVisualIndexes { get; init; } = [];
    /// <summary><c>&lt;|image_pad|&gt;</c> id.</summary>
    public int ImageTokenId { get; init; }
    /// <summary><c>&lt;|video_pad|&gt;</c> id.</summary>
    public int VideoTokenId { get; init; }
    /// <summary><c>&lt;|vision_start|&gt;</c> id.</summary>
    public int VisionStartTokenId { get; init; }
    /// <summary><c>&lt;|vision_end|&gt;</c> id.</summary>
    public int VisionEndTokenId { get; init; }
    /// <summary>Token ids that end generation (generation_config.json, else config.json).</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];
    /// <summary>Whether the checkpoint is a fine-grained FP8 one (quantization_config quant_method fp8): its nn.Linear weights
    /// may be F8_E4M3 with block scales.</summary>
    public bool Fp8 { get; init; }

    /// <summary>Vision head dimension (hidden / heads).</summary>
    public int VisionHeadDim => VisionHiddenSize / VisionNumHeads;

    /// <summary>Patches merged into one visual token (merge²).</summary>
    public int VisionMergeUnit => VisionSpatialMergeSize * VisionSpatialMergeSize;

    /// <summary>Values of one flattened patch (channels · temporal · patch²).</summary>
    public int VisionPatchDim => VisionInChannels * VisionTemporalPatchSize * VisionPatchSize * VisionPatchSize;

    /// <summary>Reads the configuration of an opened checkpoint.</summary>
    public static unsafe ModelConfig FromCheckpoint(Checkpoint checkpoint)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        Interop.ModelConfig c = checkpoint.ReadNativeConfig();
        var deepstack = new int[Math.Clamp(c.DeepstackCount, 0, Interop.NativeConstants.MaxList)];
        for (int i = 0; i < deepstack.Length; i++) deepstack[i] = checked((int)c.DeepstackVisualIndexes[i]);
        var eos = new int[Math.Clamp(c.EosTokenCount, 0, Interop.NativeConstants.MaxList)];
        for (int i = 0; i < eos.Length; i++) eos[i] = checked((int)c.EosTokenIds[i]);
        var config = new ModelConfig
        {
            TieWordEmbeddings = c.TieWordEmbeddings != 0,
            TextHiddenSize = checked((int)c.TextHiddenSize),
            TextNumLayers = checked((int)c.TextNumLayers),
            TextNumHeads = checked((int)c.TextNumHeads),
            TextNumKvHeads = checked((int)c.TextNumKvHeads),
            TextHeadDim = checked((int)c.TextHeadDim),
            TextIntermediateSize = checked((int)c.TextIntermediateSize),
            VocabSize = checked((int)c.VocabSize),
            MaxPositionEmbeddings = c.MaxPositionEmbeddings,
            RmsNormEps = c.RmsNormEps,
            RopeTheta = c.RopeTheta,
            MropeSection = [c.MropeSection[0], c.MropeSection[1], c.MropeSection[2]],
            VisionDepth = checked((int)c.VisionDepth),
            VisionHiddenSize = checked((int)c.VisionHiddenSize),
            VisionNumHeads = checked((int)c.VisionNumHeads),
            VisionIntermediateSize = checked((int)c.VisionIntermediateSize),
            VisionPatchSize = checked((int)c.VisionPatchSize),
            VisionTemporalPatchSize = checked((int)c.VisionTemporalPatchSize),
            VisionSpatialMergeSize = checked((int)c.VisionSpatialMergeSize),
            VisionOutHiddenSize = checked((int)c.VisionOutHiddenSize),
            VisionInChannels = checked((int)c.VisionInChannels),
            VisionNumPositionEmbeddings = checked((int)c.VisionNumPositionEmbeddings),
            VisionRopeTheta = c.VisionRopeTheta,
            VisionGeluTanh = c.VisionGeluTanh != 0,
            DeepstackVisualIndexes = deepstack,
            ImageTokenId = checked((int)c.ImageTokenId),
            VideoTokenId = checked((int)c.VideoTokenId),
            VisionStartTokenId = checked((int)c.VisionStartTokenId),
            VisionEndTokenId = checked((int)c.VisionEndTokenId),
            EosTokenIds = eos,
            Fp8 = c.Fp8 != 0,
        };
        config.Validate();
        return config;
    }

    /// <summary>Checks the relations the managed model relies on.</summary>
    /// <exception cref="InvalidDataException">A value is inconsistent.</exception>
    public void Validate()
    {
        static void Require(bool ok, string what)
        {
            if (!ok) throw new InvalidDataException("Invalid model configuration: " + what);
        }
        Require(TextHiddenSize > 0 && TextNumLayers > 0 && TextNumHeads > 0 && TextNumKvHeads > 0 && TextHeadDim > 0, "text sizes must be positive");
        Require(TextNumHeads % TextNumKvHeads == 0, "query heads must be a multiple of key/value heads");
        Require(MropeSection.Count == 3 && MropeSection.Sum() * 2 == TextHeadDim, "mrope_section must sum to head_dim / 2");
        Require(VisionNumHeads > 0 && VisionHiddenSize % VisionNumHeads == 0, "vision hidden size must be a multiple of its heads");
        Require(VisionSpatialMergeSize > 0, "spatial merge size must be positive");
        Require(VisionOutHiddenSize == TextHiddenSize, "vision out_hidden_size must equal the text hidden size");
        Require(DeepstackVisualIndexes.All(i => i >= 0 && i < VisionDepth), "deepstack indexes must name vision blocks");
        Require(DeepstackVisualIndexes.Count <= TextNumLayers, "more deepstack features than decoder layers");
    }
}
