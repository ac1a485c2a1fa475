using System.Diagnostics;
using Qwen3VL.Native.Model;
using Qwen3VL.Native.Processing.Tokenization;

namespace Qwen3VL.Native.Inference;

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
    /// <param name="options">Generation options; a null <see cref="GenerationOptions.Sampling"/> takes the model's defaults.</param>
    /// <param name="onText">Called with each piece of text as soon as it is complete UTF-8 and cannot be the start of a stop sequence.</param>
    /// <param name="cancellationToken">Stops generation between steps.</param>
    /// <exception cref="OperationCanceledException">Cancelled; the text streamed so far stands.</exception>
    /// <exception cref="Qwen3VLLimitExceededException">The prompt does not fit the context.</exception>
    public GenerationResult Generate(ReadOnlySpan<int> promptIds, VisionInput? vision, GenerationOptions options,
        Action<string>? onText = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxNewTokens, 0);
        var sampler = new Sampler(options.Sampling ?? Context.Model.DefaultSampling);
        var stop = new HashSet<int>(options.StopTokenIds ?? Context.Model.Config.EosTokenIds);
        StreamingDecoder decoder = Tokenizer.CreateStreamingDecoder(options.SkipSpecialTokens);
        var text = new StopSequenceFilter(options.StopSequences, onText);
        var generated = new List<int>();

        cancellationToken.ThrowIfCancellationRequested();
        var clock = Stopwatch.StartNew();
        float[] logits = Context.Prefill(promptIds, vision);
        TimeSpan prefill = clock.Elapsed;
        clock.Restart();

        StopReason reason = StopReason.MaxTokens;
        // Greedy without penalties: the argmax is taken on the backend and only the token id comes back. Sampling with
        // top-k and no penalties: only the k + 1 largest logits come back, and the draw from them is the full row's
        // (Sampler.TrySampleCandidates; the row is fetched in the rare case they do not settle it).
        bool deviceArgMax = sampler.IsPlainArgMax;
        int candidates = deviceArgMax ? 0 : sampler.CandidateCount(Context.Model.Config.VocabSize);
        float[] topValues = new float[candidates];
        int[] topIds = new int[candidates];
        int next = -1;
        try
        {
        while (generated.Count < options.MaxNewTokens)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int token = next >= 0 ? next : sampler.Sample(logits, Context.TokenSpan,
                System.Runtime.InteropServices.CollectionsMarshal.AsSpan(generated));
            generated.Add(token);
            if (stop.Contains(token))
            {
                reason = StopReason.EndOfSequence;
                break;
            }
            if (text.Append(decoder.Push(token)))
            {
                reason = StopReason.StopSequence;
                break;
            }
            if (generated.Count >= options.MaxNewTokens) break;
            if (Context.Remaining < 1)
            {
                reason = StopReason.ContextFull;
                break;
            }
            cancellationToken.ThrowIfCancellationRequested();
            if (deviceArgMax) next = Context.DecodeArgMax(token);
            else if (candidates > 0)
            {
                Context.DecodeTopK(token, topValues, topIds);
                if (!sampler.TrySampleCandidates(topValues, topIds, out next)) logits = Context.LastLogits();
            }
            else logits = Context.Decode(token);
        }
        }
        catch (Qwen3VLNumericalException e)
        {
            // The step that failed is the one choosing token generated.Count + 1 (step 1: from the prefill's logits).
            throw new Qwen3VLNumericalException($"Generation stopped at step {generated.Count + 1}: {e.Message}.");
        }
        if (reason != StopReason.StopSequence && text.Append(decoder.Flush())) reason = StopReason.StopSequence;
        text.Complete();
        return new GenerationResult
        {
            TokenIds = generated,
            Text = text.Text,
            StopReason = reason,
            PromptTokens = promptIds.Length,
            PrefillTime = prefill,
            DecodeTime = clock.Elapsed,
        };
    }
}
