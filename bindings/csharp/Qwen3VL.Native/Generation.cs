namespace Qwen3VL.Native;

/// <summary>How one answer is generated: token budget, sampling, stop conditions.</summary>
public sealed record GenerationOptions
{
    /// <summary>Most tokens to generate (a final end-of-sequence token included). Default 256.</summary>
    public int MaxNewTokens { get; init; } = 256;
    /// <summary>How tokens are chosen; null uses the model's defaults (<see cref="Qwen3VLModel.DefaultSampling"/>, from
    /// generation_config.json). Set <see cref="SamplingOptions.Seed"/> for reproducible sampling.</summary>
    public SamplingOptions? Sampling { get; init; }
    /// <summary>Strings that end generation as soon as the generated text contains one; the answer is cut before it.</summary>
    public IReadOnlyList<string>? StopSequences { get; init; }
    /// <summary>Tokens that end generation; null uses the model's eos ids (generation_config.json).</summary>
    public IReadOnlyCollection<int>? StopTokenIds { get; init; }
    /// <summary>Leave special tokens out of the text.</summary>
    public bool SkipSpecialTokens { get; init; } = true;
}

/// <summary>Why generation ended.</summary>
public enum StopReason
{
    /// <summary>A stop (end-of-sequence) token was generated.</summary>
    EndOfSequence,
    /// <summary><see cref="GenerationOptions.MaxNewTokens"/> tokens were generated.</summary>
    MaxTokens,
    /// <summary>The context is full.</summary>
    ContextFull,
    /// <summary>The text reached one of <see cref="GenerationOptions.StopSequences"/>.</summary>
    StopSequence,
}

/// <summary>What one generation produced, with its token counts and timings (the usage statistics).</summary>
public sealed record GenerationResult
{
    /// <summary>The generated token ids (a final stop token included).</summary>
    public required IReadOnlyList<int> TokenIds { get; init; }
    /// <summary>The generated text (stop token, stop sequence and, by default, special tokens left out).</summary>
    public required string Text { get; init; }
    /// <summary>Why generation ended.</summary>
    public required StopReason StopReason { get; init; }
    /// <summary>Tokens of the prompt, image tokens included (those reused from the KV cache too).</summary>
    public required int PromptTokens { get; init; }
    /// <summary>Prompt tokens that were already in the KV cache and not computed again (a conversation's earlier turns).</summary>
    public int CachedPromptTokens { get; init; }
    /// <summary>Generated tokens (<see cref="TokenIds"/>' count).</summary>
    public int CompletionTokens => TokenIds.Count;
    /// <summary>Time of the prefill (vision tower included).</summary>
    public required TimeSpan PrefillTime { get; init; }
    /// <summary>Time of the decode steps.</summary>
    public required TimeSpan DecodeTime { get; init; }
    /// <summary>Prompt tokens computed per second (cached tokens left out).</summary>
    public double PromptTokensPerSecond => PrefillTime.TotalSeconds > 0 ? (PromptTokens - CachedPromptTokens) / PrefillTime.TotalSeconds : 0;
    /// <summary>Generated tokens per second, counted over the decode steps (the first token comes from the prefill).</summary>
    public double GeneratedTokensPerSecond => DecodeTime.TotalSeconds > 0 ? Math.Max(0, TokenIds.Count - 1) / DecodeTime.TotalSeconds : 0;
}
