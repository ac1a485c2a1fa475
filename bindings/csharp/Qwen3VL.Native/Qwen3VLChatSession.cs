using System.Runtime.CompilerServices;
using System.Text;
using System.Threading.Channels;
using Qwen3VL.Native.Inference;
using Qwen3VL.Native.Model;
using Qwen3VL.Native.Processing.Images;
using Qwen3VL.Native.Processing.Templates;
using Qwen3VL.Native.Processing.Tokenization;

namespace Qwen3VL.Native;

/// <summary>
/// A conversation with a <see cref="Qwen3VLModel"/>: the system prompt, the user messages (text and images) and the
/// answers, and its own KV cache. Each turn reuses the cache for the part of the prompt it already holds (the earlier
/// turns), so only the new message is computed. Dispose after use: until then the session keeps its model's weights loaded
/// (through its <see cref="Qwen3VLContext"/>), even when the model is disposed first.
/// </summary>
/// <remarks>
/// Threading: a session serves one call at a time (a second concurrent call throws <see cref="InvalidOperationException"/>);
/// any number of sessions may run concurrently on one model. Generation runs on a thread-pool thread, so awaiting it does
/// not block the caller. A cancelled generation keeps the text produced so far as the answer in the history.
/// </remarks>
public sealed class Qwen3VLChatSession : IDisposable
{
    private readonly Qwen3VLContext _context;
    private readonly List<ChatTurn> _history = [];
    private readonly Lock _gate = new();
    private List<ImageSpan> _cachedImages = []; // images whose tokens the cache holds, to tell equal pad runs apart
    private readonly bool _specialTokensInContent;
    private bool _busy, _disposed;

    internal Qwen3VLChatSession(Qwen3VLModel model, ChatSessionOptions options)
    {
        Model = model;
        SystemPrompt = options.SystemPrompt;
        _specialTokensInContent = options.SpecialTokensInContent;
        _context = model.CreateContext(options.ContextLength ?? model.ContextLength);
    }

    /// <summary>The model.</summary>
    public Qwen3VLModel Model { get; }
    /// <summary>The system prompt; null or empty for none. Changing it makes the next turn compute the prompt anew.</summary>
    public string? SystemPrompt { get; set; }
    /// <summary>The messages so far, in order.</summary>
    public IReadOnlyList<ChatTurn> History => _history;
    /// <summary>Tokens the conversation may hold (prompts, images and answers).</summary>
    public int ContextLength => _context.Capacity;
    /// <summary>Tokens in the KV cache now (what the next turn can reuse).</summary>
    public int CachedTokens => _context.Length;
    /// <summary>Bytes of the session's KV caches (allocated for <see cref="ContextLength"/> tokens, in
    /// <see cref="Qwen3VLModel.KvCache"/>'s format).</summary>
    public ulong CacheBytes => _context.CacheBytes;
    /// <summary>Usage and text of the last completed generation (set when a streaming enumeration ends).</summary>
    public GenerationResult? LastResult { get; private set; }

    /// <summary>Appends a user message to the history (to answer with <see cref="GenerateAsync"/>).</summary>
    /// <param name="text">The text.</param>
    /// <param name="images">Images shown before the text, in order; null for none.</param>
    /// <exception cref="InvalidOperationException">The session is generating.</exception>
    public void AddUserMessage(string text, IEnumerable<ChatImage>? images = null) => Add(ChatTurn.User(text, images));

    /// <summary>Appends a user message of text and images in the order given (to answer with <see cref="GenerateAsync"/>).</summary>
    /// <param name="parts">The parts, in order, e.g. <c>["Compare ", imageA, " with ", imageB]</c>.</param>
    /// <exception cref="ArgumentException">A part is null, or there is none.</exception>
    /// <exception cref="InvalidOperationException">The session is generating.</exception>
    public void AddUserMessage(IEnumerable<ChatTurnPart> parts) => Add(ChatTurn.User(parts));

    /// <summary>Appends a message (a user message or an answer) to the history.</summary>
    /// <exception cref="InvalidOperationException">The session is generating.</exception>
    public void AddMessage(ChatTurn turn) => Add(turn ?? throw new ArgumentNullException(nameof(turn)));

    /// <summary>Appends an answer to the history (e.g. to replay a conversation).</summary>
    /// <exception cref="InvalidOperationException">The session is generating.</exception>
    public void AddAssistantMessage(string text) => Add(ChatTurn.Assistant(text));

    /// <summary>Forgets the history and the cache; the system prompt stays.</summary>
    /// <exception cref="InvalidOperationException">The session is generating.</exception>
    public void Reset()
    {
        lock (_gate)
        {
            ThrowIfUnavailable();
            _history.Clear();
            _context.Reset();
            _cachedImages = [];
            LastResult = null;
        }
    }

    /// <summary>Number of tokens of the prompt the next generation would process (the whole history, image tokens included).</summary>
    /// <exception cref="InvalidOperationException">The history has no message.</exception>
    public int CountPromptTokens() => BuildPrompt(Model, SystemPrompt, _history).Ids.Length;

    /// <summary>Tokens of the prompt for a conversation (without creating a session), image tokens included.</summary>
    internal static int CountPromptTokens(Qwen3VLModel model, string? systemPrompt, IReadOnlyList<ChatTurn> history) =>
        BuildPrompt(model, systemPrompt, history).Ids.Length;

    /// <summary>Adds a user message and streams the answer; see <see cref="GenerateStreamingAsync"/>.</summary>
    /// <param name="text">The user's text.</param>
    /// <param name="images">Images shown before the text, in order; null for none.</param>
    /// <param name="options">Generation options; null for the defaults (model's sampling, 256 tokens).</param>
    /// <param name="cancellationToken">Stops generation; the enumeration then throws <see cref="OperationCanceledException"/>.</param>
    /// <returns>The answer's text pieces, each complete UTF-8 text.</returns>
    public async IAsyncEnumerable<string> SendStreamingAsync(string text, IEnumerable<ChatImage>? images = null, GenerationOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        Add(ChatTurn.User(text, images));
        await foreach (string piece in StreamAsync(options, retractLastTurn: true, cancellationToken).ConfigureAwait(false))
        {
            yield return piece;
        }
    }

    /// <summary>Adds a user message of text and images in the order given and streams the answer; see <see cref="GenerateStreamingAsync"/>.</summary>
    /// <param name="parts">The user's message, in order, e.g. <c>["Compare ", imageA, " with ", imageB]</c>.</param>
    /// <param name="options">Generation options; null for the defaults (model's sampling, 256 tokens).</param>
    /// <param name="cancellationToken">Stops generation; the enumeration then throws <see cref="OperationCanceledException"/>.</param>
    /// <returns>The answer's text pieces, each complete UTF-8 text.</returns>
    public async IAsyncEnumerable<string> SendStreamingAsync(IEnumerable<ChatTurnPart> parts, GenerationOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        Add(ChatTurn.User(parts));
        await foreach (string piece in StreamAsync(options, retractLastTurn: true, cancellationToken).ConfigureAwait(false))
        {
            yield return piece;
        }
    }

    /// <summary>Adds a user message and returns the whole answer with its usage; see <see cref="GenerateAsync"/>.</summary>
    /// <param name="text">The user's text.</param>
    /// <param name="images">Images shown before the text, in order; null for none.</param>
    /// <param name="options">Generation options; null for the defaults (model's sampling, 256 tokens).</param>
    /// <param name="cancellationToken">Stops generation.</param>
    public Task<GenerationResult> SendAsync(string text, IEnumerable<ChatImage>? images = null, GenerationOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        Add(ChatTurn.User(text, images));
        return RunAsync(options, retractLastTurn: true, cancellationToken);
    }

    /// <summary>Adds a user message of text and images in the order given and returns the whole answer with its usage; see <see cref="GenerateAsync"/>.</summary>
    /// <param name="parts">The user's message, in order, e.g. <c>["Compare ", imageA, " with ", imageB]</c>.</param>
    /// <param name="options">Generation options; null for the defaults (model's sampling, 256 tokens).</param>
    /// <param name="cancellationToken">Stops generation.</param>
    public Task<GenerationResult> SendAsync(IEnumerable<ChatTurnPart> parts, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        Add(ChatTurn.User(parts));
        return RunAsync(options, retractLastTurn: true, cancellationToken);
    }

    /// <summary>
    /// Streams the answer to the history as text pieces (UTF-8 safe: a character split across tokens comes whole) and
    /// appends it to the history. <see cref="LastResult"/> holds its usage once the enumeration ends.
    /// </summary>
    /// <param name="options">Generation options; null for the defaults (model's sampling, 256 tokens).</param>
    /// <param name="cancellationToken">Stops generation; the enumeration then throws <see cref="OperationCanceledException"/>.
    /// Leaving the enumeration early stops it too.</param>
    /// <exception cref="InvalidOperationException">The history has no message, or the session is already generating.</exception>
    /// <exception cref="Qwen3VLLimitExceededException">The prompt does not fit <see cref="ContextLength"/>.</exception>
    public IAsyncEnumerable<string> GenerateStreamingAsync(GenerationOptions? options = null, CancellationToken cancellationToken = default) =>
        StreamAsync(options, retractLastTurn: false, cancellationToken);

    /// <summary>Generates the answer to the history, appends it, and returns it with its usage statistics.</summary>
    /// <param name="options">Generation options; null for the defaults (model's sampling, 256 tokens).</param>
    /// <param name="cancellationToken">Stops generation.</param>
    /// <exception cref="InvalidOperationException">The history has no message, or the session is already generating.</exception>
    /// <exception cref="Qwen3VLLimitExceededException">The prompt does not fit <see cref="ContextLength"/>.</exception>
    /// <exception cref="OperationCanceledException">Cancelled.</exception>
    public Task<GenerationResult> GenerateAsync(GenerationOptions? options = null, CancellationToken cancellationToken = default) =>
        RunAsync(options, retractLastTurn: false, cancellationToken);

    /// <summary>
    /// <see cref="GenerateAsync(GenerationOptions?, CancellationToken)"/> with the prompt of the history already built
    /// (<see cref="BuildPrompt(Qwen3VLModel, string?, IReadOnlyList{ChatTurn}, bool)"/> with this session's model, system prompt, history and special-token choice), so that a
    /// server does that work before it takes a session.
    /// </summary>
    internal Task<GenerationResult> GeneratePreparedAsync(Prompt prompt, GenerationOptions? options, CancellationToken cancellationToken) =>
        RunAsync(options, retractLastTurn: false, cancellationToken, prompt);

    /// <summary>The streaming form of <see cref="GeneratePreparedAsync"/>.</summary>
    internal IAsyncEnumerable<string> GeneratePreparedStreamingAsync(Prompt prompt, GenerationOptions? options, CancellationToken cancellationToken) =>
        StreamAsync(options, retractLastTurn: false, cancellationToken, prompt);

    /// <summary>Releases the KV cache (after a running generation ends, if one does).</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            if (!_busy) _context.Dispose();
        }
    }

    private void Add(ChatTurn turn)
    {
        lock (_gate)
        {
            ThrowIfUnavailable();
            _history.Add(turn);
        }
    }

    private Task<GenerationResult> RunAsync(GenerationOptions? options, bool retractLastTurn, CancellationToken cancellationToken, Prompt? prepared = null)
    {
        Prompt prompt = Begin(retractLastTurn, prepared);
        return Task.Run(() => Run(prompt, options ?? new GenerationOptions(), null, cancellationToken), CancellationToken.None);
    }

    private async IAsyncEnumerable<string> StreamAsync(GenerationOptions? options, bool retractLastTurn,
        [EnumeratorCancellation] CancellationToken cancellationToken, Prompt? prepared = null)
    {
        Prompt prompt = Begin(retractLastTurn, prepared);
        var pieces = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        Task<GenerationResult> run = Task.Run(() =>
        {
            try
            {
                return Run(prompt, options ?? new GenerationOptions(), piece => pieces.Writer.TryWrite(piece), stop.Token);
            }
            finally
            {
                pieces.Writer.TryComplete();
            }
        }, CancellationToken.None);

        bool drained = false;
        try
        {
            await foreach (string piece in pieces.Reader.ReadAllAsync(CancellationToken.None).ConfigureAwait(false))
            {
                yield return piece;
            }
            drained = true;
        }
        finally
        {
            if (!drained)
            {
                // The consumer left early: stop generating and wait, so the session is free when this returns.
                await stop.CancelAsync().ConfigureAwait(false);
                try
                {
                    await run.ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                }
            }
        }
        await run.ConfigureAwait(false);
    }

    /// <summary>Takes the session for one generation and builds its prompt; gives it back (and the message, when asked) on failure.</summary>
    private Prompt Begin(bool retractLastTurn, Prompt? prepared)
    {
        lock (_gate)
        {
            try
            {
                ThrowIfUnavailable();
                Prompt prompt = prepared ?? BuildPrompt(Model, SystemPrompt, _history, _specialTokensInContent);
                if (prompt.Ids.Length > _context.Capacity)
                {
                    throw new Qwen3VLLimitExceededException(
                        $"The prompt needs {prompt.Ids.Length} tokens (images included) but the session holds {_context.Capacity}; " +
                        "use a larger ContextLength, a shorter conversation (Reset) or fewer or smaller images (MaxPixels).");
                }
                _busy = true;
                return prompt;
            }
            catch
            {
                if (retractLastTurn && _history.Count > 0 && !_busy) _history.RemoveAt(_history.Count - 1);
                throw;
            }
        }
    }

    private GenerationResult Run(Prompt prompt, GenerationOptions options, Action<string>? onText, CancellationToken cancellationToken)
    {
        var answer = new StringBuilder();
        GenerationResult? result = null;
        int reuse = 0;
        try
        {
            reuse = ReusablePrefix(prompt);
            if (reuse < _context.Length) _context.Truncate(reuse);
            _cachedImages = _cachedImages.Where(s => s.End <= reuse).ToList();
            int[] chunk = prompt.Ids[reuse..];
            List<ProcessedImage> chunkImages = prompt.Images.Where(s => s.Start >= reuse).Select(s => s.Processed).ToList();
            VisionInput? vision = chunkImages.Count == 0 ? null : VisionInput.FromImages(chunkImages);
            result = new Generator(_context, Model.Tokenizer).Generate(chunk, vision, options, piece =>
            {
                answer.Append(piece);
                onText?.Invoke(piece);
            }, cancellationToken);
            result = result with { PromptTokens = prompt.Ids.Length, CachedPromptTokens = reuse };
            return result;
        }
        finally
        {
            lock (_gate)
            {
                if (_context.Length >= prompt.Ids.Length) _cachedImages = prompt.Images;
                if (result is not null)
                {
                    _history.Add(ChatTurn.Assistant(result.Text));
                    LastResult = result;
                }
                else if (answer.Length > 0)
                {
                    _history.Add(ChatTurn.Assistant(answer.ToString()));
                }
                _busy = false;
                if (_disposed) _context.Dispose();
            }
        }
    }

    /// <summary>
    /// How many leading prompt tokens the cache already holds: the common token prefix, cut before the first image that is
    /// not the same image at the same place (equal pad runs may stand for different images), and at least one token short
    /// of the prompt (its last token's logits are needed).
    /// </summary>
    private int ReusablePrefix(Prompt prompt)
    {
        IReadOnlyList<int> cached = _context.Tokens;
        int n = Math.Min(cached.Count, prompt.Ids.Length - 1), common = 0;
        while (common < n && cached[common] == prompt.Ids[common]) common++;
        for (int i = 0; i < _cachedImages.Count; i++)
        {
            ImageSpan old = _cachedImages[i];
            if (old.Start >= common) break;
            bool same = i < prompt.Images.Count && prompt.Images[i].Start == old.Start && ReferenceEquals(prompt.Images[i].Image, old.Image);
            if (!same || old.End > common)
            {
                common = old.Start - 1; // keep the <|vision_start|> before it out too: a chunk must hold whole image blocks
                break;
            }
        }
        foreach (ImageSpan s in prompt.Images)
        {
            if (s.Start < common && s.End > common) common = s.Start - 1;
        }
        return Math.Max(0, common);
    }

    /// <summary>The prompt for a conversation: its token ids, and its images in the order of their pads (the order in which
    /// their pixel values reach the vision encoder).</summary>
    internal static Prompt BuildPrompt(Qwen3VLModel model, string? systemPrompt, IReadOnlyList<ChatTurn> history, bool specialTokensInContent = true) =>
        BuildPrompt(model.Tokenizer, model.ImageProcessor, model.Config.ImageTokenId, systemPrompt, history, specialTokensInContent);

    /// <summary><see cref="BuildPrompt(Qwen3VLModel, string?, IReadOnlyList{ChatTurn}, bool)"/> from the pieces of a model
    /// it uses (all of them managed: no weights, no native call), so that the server's pre-lease work can be fuzzed.</summary>
    internal static Prompt BuildPrompt(QwenTokenizer tokenizer, ImageProcessor processor, int imageTokenId, string? systemPrompt,
        IReadOnlyList<ChatTurn> history, bool specialTokensInContent = true)
    {
        var messages = new List<ChatMessage>();
        if (!string.IsNullOrEmpty(systemPrompt)) messages.Add(ChatMessage.System(systemPrompt));
        var images = new List<ChatImage>();
        foreach (ChatTurn turn in history)
        {
            if (turn.Role == ChatTurnRole.Assistant)
            {
                messages.Add(ChatMessage.Assistant(turn.Text));
                continue;
            }
            // The parts in their order; images are numbered in order of appearance across the conversation, which is the
            // order of the image pads in the prompt and of the pixel values given to the vision encoder.
            var parts = new List<ContentPart>(turn.Parts.Count);
            foreach (ChatTurnPart part in turn.Parts)
            {
                if (part.Image is { } image)
                {
                    images.Add(image);
                    parts.Add(ContentPart.FromImage(image));
                }
                else
                {
                    parts.Add(ContentPart.FromText(part.Text!));
                }
            }
            messages.Add(ChatMessage.User([.. parts]));
        }
        if (history.Count == 0) throw new InvalidOperationException("The conversation has no message to answer; add a user message first.");

        List<ProcessedImage> processed = images.Select(i => i.Process(processor)).ToList();
        int[] ids;
        try
        {
            ids = Qwen3VLChatTemplate.BuildPromptIds(tokenizer, messages, addGenerationPrompt: true, i =>
                i < processed.Count ? processed[i].TokenCount
                    : throw new Qwen3VLInputException("A message's text holds an <|image_pad|> token of its own; remove it, or let " +
                        "message text be plain text (ChatSessionOptions.SpecialTokensInContent = false).", "messages"),
                specialTokensInContent: specialTokensInContent);
        }
        catch (NotSupportedException e)
        {
            // Turns hold text and images only, so a <|video_pad|> can only have been typed into a message.
            throw new Qwen3VLInputException("A message's text holds a <|video_pad|> token; video input is not supported yet " +
                "(or let message text be plain text: ChatSessionOptions.SpecialTokensInContent = false).", "messages", e);
        }

        var spans = new List<ImageSpan>(images.Count);
        int pad = imageTokenId;
        for (int i = 0; i < ids.Length; i++)
        {
            if (ids[i] != pad || (i > 0 && ids[i - 1] == pad)) continue;
            int k = spans.Count;
            spans.Add(new ImageSpan(i, processed[k].TokenCount, images[k], processed[k]));
        }
        return new Prompt(ids, spans);
    }

    private void ThrowIfUnavailable()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_busy) throw new InvalidOperationException("The session is generating; a session serves one call at a time (use one session per conversation).");
    }

    internal sealed record Prompt(int[] Ids, List<ImageSpan> Images);

    internal sealed record ImageSpan(int Start, int Length, ChatImage Image, ProcessedImage Processed)
    {
        public int End => Start + Length;
    }
}
