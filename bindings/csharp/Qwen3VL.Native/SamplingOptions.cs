using System.Text.Json;

namespace Qwen3VL.Native;

/// <summary>
/// How the next token is chosen. Applied in transformers' order: repetition penalty, presence penalty, then (unless
/// greedy) temperature, top-k, top-p, min-p, and a draw from the remaining distribution.
/// </summary>
public sealed record SamplingOptions
{
    /// <summary>Greedy decoding (argmax after penalties; first index on ties).</summary>
    public static SamplingOptions Greedy { get; } = new() { Temperature = 0 };

    /// <summary>Softmax temperature; 0 (or less) means greedy.</summary>
    public float Temperature { get; init; } = 0.7f;
    /// <summary>Keep the k most likely tokens (ties with the k-th kept); 0 disables.</summary>
    public int TopK { get; init; }
    /// <summary>Keep the smallest set of most likely tokens whose probability reaches p; 1 disables.</summary>
    public float TopP { get; init; } = 1f;
    /// <summary>Drop tokens whose probability is below min_p times the top probability; 0 disables.</summary>
    public float MinP { get; init; }
    /// <summary>transformers' repetition penalty over every token of the context (prompt and generated): a positive logit is
    /// divided by it, a negative one multiplied; 1 disables.</summary>
    public float RepetitionPenalty { get; init; } = 1f;
    /// <summary>OpenAI-style presence penalty: subtracted once from the logit of every token generated so far; 0 disables.</summary>
    public float PresencePenalty { get; init; }
    /// <summary>Seed of the random draws; null seeds from the system. Equal seeds and inputs give equal outputs.</summary>
    public ulong? Seed { get; init; }

    /// <summary>Whether the options select greedy decoding.</summary>
    public bool IsGreedy => Temperature <= 0 || TopK == 1;

    /// <summary>
    /// The sampling defaults of a checkpoint's <c>generation_config.json</c> (do_sample, temperature, top_k, top_p, min_p,
    /// repetition_penalty); greedy when the file is absent or do_sample is false.
    /// </summary>
    /// <exception cref="InvalidDataException">The file is not valid JSON.</exception>
    public static SamplingOptions FromGenerationConfig(string checkpointDirectory)
    {
        string path = Path.Combine(checkpointDirectory, "generation_config.json");
        if (!File.Exists(path)) return Greedy;
        try
        {
            using JsonDocument doc = JsonDocument.Parse(Qwen3VL.Native.Processing.BoundedFile.ReadConfigBytes(path));
            JsonElement root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) return Greedy;
            bool sample = root.TryGetProperty("do_sample", out JsonElement ds) && ds.ValueKind == JsonValueKind.True;
            if (!sample) return Greedy;
            float F(string name, float fallback) =>
                root.TryGetProperty(name, out JsonElement e) && e.ValueKind == JsonValueKind.Number ? e.GetSingle() : fallback;
            var options = new SamplingOptions
            {
                Temperature = F("temperature", 1f),
                TopK = root.TryGetProperty("top_k", out JsonElement k) && k.ValueKind == JsonValueKind.Number ? k.GetInt32() : 50,
                TopP = F("top_p", 1f),
                MinP = F("min_p", 0f),
                RepetitionPenalty = F("repetition_penalty", 1f),
            };
            options.Validate();
            return options;
        }
        catch (Exception e) when (e is JsonException or FormatException or ArgumentOutOfRangeException)
        {
            throw new InvalidDataException($"{path}: {e.Message}", e);
        }
    }

    /// <summary>Checks the ranges.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A value is out of range.</exception>
    public void Validate()
    {
        if (float.IsNaN(Temperature)) throw new ArgumentOutOfRangeException(nameof(Temperature), "temperature is NaN");
        if (TopK < 0) throw new ArgumentOutOfRangeException(nameof(TopK), TopK, "top-k must be >= 0");
        if (!(TopP > 0 && TopP <= 1)) throw new ArgumentOutOfRangeException(nameof(TopP), TopP, "top-p must be in (0, 1]");
        if (!(MinP >= 0 && MinP <= 1)) throw new ArgumentOutOfRangeException(nameof(MinP), MinP, "min-p must be in [0, 1]");
        if (!(RepetitionPenalty > 0)) throw new ArgumentOutOfRangeException(nameof(RepetitionPenalty), RepetitionPenalty, "repetition penalty must be > 0");
        if (float.IsNaN(PresencePenalty)) throw new ArgumentOutOfRangeException(nameof(PresencePenalty), "presence penalty is NaN");
    }
}
