using System.Diagnostics;
using Qwen3VL.Native.Model;
using Qwen3VL.Native.Processing.Tokenization;

namespace Qwen3VL.Native.Inference;

/// <summary>Options of <see cref="Generator.Generate"/>.</summary>
public sealed record GenerationOptions
{
    /// <summary>Most tokens to generate (the end-of-sequence token included).</summary>
    public int MaxNewTokens { get; init; } = 256;
    /// <summary>How tokens are chosen.</summary>
    public SamplingOptions Sampling { get; init; } = SamplingOptions.Greedy;
    /// <summary>Tokens that end generation; null uses the model's eos ids (generation_config.json).</summary>
    public IReadOnlyCollection<int>? StopTokenIds { get; init; }
    /// <summary>Leave special tokens out of the streamed text.</summary>
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
}

/// <summary>What one generation produced, with timings.</summary>
public sealed record GenerationResult
{
    /// <summary>The generated token ids (a final stop token included).</summary>
    public required IReadOnlyList<int> TokenIds { get; init; }
    /// <summary>The generated text (stop token and, by default, special tokens left out).</summary>
    public required string Text { get; init; }
    /// <summary>Why generation ended.</summary>
    public required StopReason StopReason { get; init; }
    /// <summary>Prompt tokens prefilled.</summary>
    public required int PromptTokens { get; init; }
    /// <summary>Time of the prefill (vision tower included).</summary>
    public required TimeSpan PrefillTime { get; init; }
    /// <summary>Time of the decode steps.</summary>
    public required TimeSpan DecodeTime { get; init; }
    /// <summary>Prompt tokens per second.</summary>
    public double PromptTokensPerSecond => PrefillTime.TotalSeconds > 0 ? PromptTokens / PrefillTime.TotalSeconds : 0;
    /// <summary>Generated tokens per second, counted over the decode steps (the first token comes from the prefill).</summary>
    public double GeneratedTokensPerSecond => DecodeTime.TotalSeconds > 0 ? Math.Max(0, TokenIds.Count - 1) / DecodeTime.TotalSeconds : 0;
}

/// <summary>
/// Prefill + decode loop on one <see cref="Qwen3VLContext"/>: samples tokens, streams their text through a
/// <see cref="StreamingDecoder"/>, and stops on a stop token, the token budget, a full context or cancellation.
/// </summary>
public sealed class Generator
{
    /// <summary>Creates a generator for a context and the model's tokenizer.</summary>
    public Generator(Qwen3VLContext context, QwenTokenizer tokenizer)
    {
        Context = context ?? throw new ArgumentNullException(nameof(context));
        Tokenizer = tokenizer ?? throw new ArgumentNullException(nameof(tokenizer));
    }

    /// <summary>The conversation.</summary>
    public Qwen3VLContext Context { get; }
    /// <summary>The tokenizer used for the text.</summary>
    public QwenTokenizer Tokenizer { get; }

    /// <summary>
    /// Prefills <paramref name="promptIds"/> (with the images of its pad tokens) and generates. The last generated token is
    /// not fed back into the context (as in transformers); the context then holds the prompt and all other generated tokens.
    /// </summary>
    /// <param name="promptIds">The prompt chunk (appended to whatever the context holds).</param>
    /// <param name="vision">Images of the prompt's pad tokens, or null.</param>
    /// <param name="options">Generation options.</param>
    /// <param name="onText">Called with each piece of text as soon as it is complete UTF-8.</param>
    /// <param name="cancellationToken">Stops generation between steps.</param>
    /// <exception cref="OperationCanceledException">Cancelled; the text streamed so far stands.</exception>
    /// <exception cref="Qwen3VLLimitExceededException">The prompt does not fit the context.</exception>
    public GenerationResult Generate(ReadOnlySpan<int> promptIds, VisionInput? vision, GenerationOptions options,
        Action<string>? onText = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxNewTokens, 0);
        var sampler = new Sampler(options.Sampling);
        var stop = new HashSet<int>(options.StopTokenIds ?? Context.Model.Config.EosTokenIds);
        StreamingDecoder decoder = Tokenizer.CreateStreamingDecoder(options.SkipSpecialTokens);
        var text = new System.Text.StringBuilder();
        var generated = new List<int>();

        cancellationToken.ThrowIfCancellationRequested();
        var clock = Stopwatch.StartNew();
        float[] logits = Context.Prefill(promptIds, vision);
        TimeSpan prefill = clock.Elapsed;
        clock.Restart();

        StopReason reason = StopReason.MaxTokens;
        while (generated.Count < options.MaxNewTokens)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int token = sampler.Sample(logits, Context.TokenSpan,
                System.Runtime.InteropServices.CollectionsMarshal.AsSpan(generated));
            generated.Add(token);
            if (stop.Contains(token))
            {
                reason = StopReason.EndOfSequence;
                break;
            }
            string piece = decoder.Push(token);
            if (piece.Length > 0)
            {
                text.Append(piece);
                onText?.Invoke(piece);
            }
            if (generated.Count >= options.MaxNewTokens) break;
            if (Context.Remaining < 1)
            {
                reason = StopReason.ContextFull;
                break;
            }
            cancellationToken.ThrowIfCancellationRequested();
            logits = Context.Decode(token);
        }
        string tail = decoder.Flush();
        if (tail.Length > 0)
        {
            text.Append(tail);
            onText?.Invoke(tail);
        }
        return new GenerationResult
        {
            TokenIds = generated,
            Text = text.ToString(),
            StopReason = reason,
            PromptTokens = promptIds.Length,
            PrefillTime = prefill,
            DecodeTime = clock.Elapsed,
        };
    }
}
