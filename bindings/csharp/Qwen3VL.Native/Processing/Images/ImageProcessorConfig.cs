using System.Text.Json;

namespace Qwen3VL.Native.Processing.Images;

/// <summary>
/// Settings of the Qwen2-VL / Qwen3-VL image processor. Defaults are Qwen3-VL's
/// (patch 16, merge 2, temporal patch 2, min 65536 / max 16777216 pixels, mean = std = 0.5, rescale 1/255).
/// </summary>
public sealed record ImageProcessorConfig
{
    /// <summary>Spatial patch size of the vision encoder (<c>patch_size</c>).</summary>
    public int PatchSize { get; init; } = 16;

    /// <summary>Spatial merge size (<c>merge_size</c>).</summary>
    public int MergeSize { get; init; } = 2;

    /// <summary>Temporal patch size (<c>temporal_patch_size</c>); a still image is repeated to this many frames.</summary>
    public int TemporalPatchSize { get; init; } = 2;

    /// <summary>Lower bound on resized area (<c>size.shortest_edge</c> or <c>min_pixels</c>).</summary>
    public long MinPixels { get; init; } = 65536;

    /// <summary>Upper bound on resized area (<c>size.longest_edge</c> or <c>max_pixels</c>).</summary>
    public long MaxPixels { get; init; } = 16777216;

    /// <summary>Per-channel mean (<c>image_mean</c>).</summary>
    public IReadOnlyList<double> ImageMean { get; init; } = [0.5, 0.5, 0.5];

    /// <summary>Per-channel standard deviation (<c>image_std</c>).</summary>
    public IReadOnlyList<double> ImageStd { get; init; } = [0.5, 0.5, 0.5];

    /// <summary>Rescale factor applied to 0..255 values (<c>rescale_factor</c>).</summary>
    public double RescaleFactor { get; init; } = 1.0 / 255.0;

    /// <summary>Whether to resize with smart_resize (<c>do_resize</c>).</summary>
    public bool DoResize { get; init; } = true;

    /// <summary>Whether to rescale (<c>do_rescale</c>).</summary>
    public bool DoRescale { get; init; } = true;

    /// <summary>Whether to normalise (<c>do_normalize</c>).</summary>
    public bool DoNormalize { get; init; } = true;

    /// <summary>Resize factor: <see cref="PatchSize"/> * <see cref="MergeSize"/>.</summary>
    public int Factor => PatchSize * MergeSize;

    /// <summary>Values per patch for RGB input: 3 * TemporalPatchSize * PatchSize^2.</summary>
    public int PatchDim => 3 * TemporalPatchSize * PatchSize * PatchSize;

    /// <summary>
    /// Reads the image-processor settings of a checkpoint directory: <c>preprocessor_config.json</c> (hub layout) or,
    /// failing that, the <c>image_processor</c> object of <c>processor_config.json</c> (transformers 5 saves).
    /// Returns the Qwen3-VL defaults when neither file exists.
    /// </summary>
    /// <exception cref="InvalidDataException">A config file is malformed or names unsupported settings.</exception>
    public static ImageProcessorConfig FromCheckpointDirectory(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        string pre = Path.Combine(directory, "preprocessor_config.json");
        if (File.Exists(pre))
        {
            return FromJson(Qwen3VL.Native.Processing.BoundedFile.ReadConfigText(pre));
        }

        string proc = Path.Combine(directory, "processor_config.json");
        if (File.Exists(proc))
        {
            using JsonDocument doc = Parse(Qwen3VL.Native.Processing.BoundedFile.ReadConfigText(proc));
            if (doc.RootElement.ValueKind == JsonValueKind.Object
                && doc.RootElement.TryGetProperty("image_processor", out JsonElement ip)
                && ip.ValueKind == JsonValueKind.Object)
            {
                return FromElement(ip);
            }
        }

        return new ImageProcessorConfig();
    }

    /// <summary>
    /// Parses an image-processor JSON object (the content of <c>preprocessor_config.json</c>). Missing keys keep
    /// the Qwen3-VL defaults; <c>min_pixels</c> / <c>max_pixels</c> override <c>size</c>, as in the processor's constructor.
    /// </summary>
    /// <exception cref="InvalidDataException">The JSON is malformed or names unsupported settings.</exception>
    public static ImageProcessorConfig FromJson(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        using JsonDocument doc = Parse(json);
        return FromElement(doc.RootElement);
    }

    private static JsonDocument Parse(string json)
    {
        try
        {
            return JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"Image processor config is not valid JSON: {e.Message}", e);
        }
    }

    private static ImageProcessorConfig FromElement(JsonElement e)
    {
        if (e.ValueKind != JsonValueKind.Object)
        {
            throw new InvalidDataException("Image processor config must be a JSON object.");
        }

        try
        {
            var c = new ImageProcessorConfig();
            if (e.TryGetProperty("size", out JsonElement size) && size.ValueKind == JsonValueKind.Object)
            {
                if (size.TryGetProperty("shortest_edge", out JsonElement se) && se.ValueKind == JsonValueKind.Number)
                {
                    c = c with { MinPixels = se.GetInt64() };
                }

                if (size.TryGetProperty("longest_edge", out JsonElement le) && le.ValueKind == JsonValueKind.Number)
                {
                    c = c with { MaxPixels = le.GetInt64() };
                }
            }

            if (Number(e, "min_pixels") is { } minPx)
            {
                c = c with { MinPixels = (long)minPx };
            }

            if (Number(e, "max_pixels") is { } maxPx)
            {
                c = c with { MaxPixels = (long)maxPx };
            }

            if (Number(e, "patch_size") is { } ps)
            {
                c = c with { PatchSize = (int)ps };
            }

            if (Number(e, "merge_size") is { } ms)
            {
                c = c with { MergeSize = (int)ms };
            }

            if (Number(e, "temporal_patch_size") is { } tps)
            {
                c = c with { TemporalPatchSize = (int)tps };
            }

            if (Number(e, "rescale_factor") is { } rf)
            {
                c = c with { RescaleFactor = rf };
            }

            if (Triple(e, "image_mean") is { } mean)
            {
                c = c with { ImageMean = mean };
            }

            if (Triple(e, "image_std") is { } std)
            {
                c = c with { ImageStd = std };
            }

            c = c with
            {
                DoResize = Bool(e, "do_resize") ?? c.DoResize,
                DoRescale = Bool(e, "do_rescale") ?? c.DoRescale,
                DoNormalize = Bool(e, "do_normalize") ?? c.DoNormalize,
            };

            if (Number(e, "resample") is { } resample && resample != 3)
            {
                throw new InvalidDataException($"Only bicubic resampling (resample = 3) is supported, the config asks for {resample}.");
            }

            if (Bool(e, "do_convert_rgb") == false)
            {
                throw new InvalidDataException("do_convert_rgb = false is not supported; images are always converted to RGB.");
            }

            c.Validate();
            return c;
        }
        catch (Exception ex) when (ex is InvalidOperationException or FormatException or ArgumentException)
        {
            throw new InvalidDataException($"Invalid image processor config: {ex.Message}", ex);
        }
    }

    /// <summary>Checks that the settings are usable.</summary>
    /// <exception cref="ArgumentException">A setting is out of range.</exception>
    public void Validate()
    {
        if (PatchSize <= 0 || MergeSize <= 0 || TemporalPatchSize <= 0)
        {
            throw new ArgumentException("patch_size, merge_size and temporal_patch_size must be positive.");
        }

        if (MinPixels <= 0 || MaxPixels <= 0 || MinPixels > MaxPixels)
        {
            throw new ArgumentException($"Pixel bounds must satisfy 0 < min_pixels <= max_pixels (got {MinPixels}, {MaxPixels}).");
        }

        if (ImageMean.Count != 3 || ImageStd.Count != 3)
        {
            throw new ArgumentException("image_mean and image_std must have 3 values.");
        }

        if (ImageStd.Any(s => s == 0))
        {
            throw new ArgumentException("image_std must not contain 0.");
        }
    }

    private static double? Number(JsonElement e, string name) =>
        e.TryGetProperty(name, out JsonElement v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : null;

    private static bool? Bool(JsonElement e, string name) =>
        e.TryGetProperty(name, out JsonElement v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : null;

    private static double[]? Triple(JsonElement e, string name)
    {
        if (!e.TryGetProperty(name, out JsonElement v))
        {
            return null;
        }

        return v.ValueKind switch
        {
            JsonValueKind.Number => [v.GetDouble(), v.GetDouble(), v.GetDouble()],
            JsonValueKind.Array => v.EnumerateArray().Select(x => x.GetDouble()).ToArray(),
            _ => null,
        };
    }
}
