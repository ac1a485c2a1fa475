using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;

namespace Qwen3VL.Native;

/// <summary>
/// <see cref="IChatClient"/> (Microsoft.Extensions.AI) over a <see cref="Qwen3VLModel"/>. Each call is stateless: it builds
/// a session from the messages given (system, user and assistant; images from <see cref="DataContent"/> with an image/*
/// media type or a <see cref="UriContent"/> with a file: URI), answers, and releases it. Calls may run concurrently.
/// </summary>
/// <remarks>
/// Options mapped: <see cref="ChatOptions.Instructions"/> (added to the system prompt), <see cref="ChatOptions.Temperature"/>,
/// <see cref="ChatOptions.TopP"/>, <see cref="ChatOptions.TopK"/>, <see cref="ChatOptions.PresencePenalty"/>,
/// <see cref="ChatOptions.Seed"/> (over the model's generation_config.json defaults), <see cref="ChatOptions.MaxOutputTokens"/>
/// and <see cref="ChatOptions.StopSequences"/>. Tools are not supported and are ignored. Usage reports input, output and
/// total tokens (input includes the image tokens).
/// </remarks>
public sealed class Qwen3VLChatClient : IChatClient
{
    private readonly bool _ownsModel;

    /// <summary>Creates a client over a loaded model.</summary>
    /// <param name="model">The model.</param>
    /// <param name="ownsModel">Dispose the model with the client.</param>
    public Qwen3VLChatClient(Qwen3VLModel model, bool ownsModel = false)
    {
        Model = model ?? throw new ArgumentNullException(nameof(model));
        _ownsModel = ownsModel;
        Metadata = new ChatClientMetadata("Qwen3VL.Native", null, model.ModelId);
    }

    /// <summary>The model.</summary>
    public Qwen3VLModel Model { get; }

    /// <summary>
    /// Whether special-token text in messages (<c>&lt;|im_start|&gt;</c>, <c>&lt;|image_pad|&gt;</c>) becomes those tokens
    /// (true, transformers' default) or stays text (false: the choice for text from untrusted users, so that a message
    /// cannot open a turn of another role). See <see cref="ChatSessionOptions.SpecialTokensInContent"/>.
    /// </summary>
    public bool SpecialTokensInContent { get; init; } = true;

    /// <summary>Provider name "Qwen3VL.Native" and the model's id.</summary>
    public ChatClientMetadata Metadata { get; }

    /// <inheritdoc />
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        using Qwen3VLChatSession session = CreateSession(messages, options);
        GenerationResult result = await session.GenerateAsync(MapOptions(options), cancellationToken).ConfigureAwait(false);
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, result.Text))
        {
            ResponseId = Guid.NewGuid().ToString("N"),
            ModelId = Model.ModelId,
            CreatedAt = DateTimeOffset.UtcNow,
            FinishReason = MapFinishReason(result.StopReason),
            Usage = MapUsage(result),
        };
    }

    /// <inheritdoc />
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        using Qwen3VLChatSession session = CreateSession(messages, options);
        string responseId = Guid.NewGuid().ToString("N");
        string messageId = Guid.NewGuid().ToString("N");
        await foreach (string piece in session.GenerateStreamingAsync(MapOptions(options), cancellationToken).ConfigureAwait(false))
        {
            yield return new ChatResponseUpdate(ChatRole.Assistant, piece)
            {
                ResponseId = responseId,
                MessageId = messageId,
                ModelId = Model.ModelId,
                CreatedAt = DateTimeOffset.UtcNow,
            };
        }
        GenerationResult result = session.LastResult!;
        yield return new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(MapUsage(result))])
        {
            ResponseId = responseId,
            MessageId = messageId,
            ModelId = Model.ModelId,
            CreatedAt = DateTimeOffset.UtcNow,
            FinishReason = MapFinishReason(result.StopReason),
        };
    }

    /// <inheritdoc />
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return Metadata;
        if (serviceType == typeof(Qwen3VLModel)) return Model;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    /// <summary>Disposes the model when the client owns it.</summary>
    public void Dispose()
    {
        if (_ownsModel) Model.Dispose();
    }

    /// <summary>A session holding <paramref name="messages"/> (the system prompt and the turns), ready to generate.</summary>
    internal Qwen3VLChatSession CreateSession(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var system = new List<string>();
        var turns = new List<ChatTurn>();
        foreach (ChatMessage message in messages)
        {
            if (message.Role == ChatRole.System)
            {
                if (!string.IsNullOrEmpty(message.Text)) system.Add(message.Text);
            }
            else if (message.Role == ChatRole.User)
            {
                turns.Add(ChatTurn.User(Parts(message)));
            }
            else if (message.Role == ChatRole.Assistant)
            {
                turns.Add(ChatTurn.Assistant(message.Text));
            }
            // Tool messages: tools are not supported by this client.
        }
        if (!string.IsNullOrEmpty(options?.Instructions)) system.Add(options.Instructions);
        if (turns.Count == 0) throw new ArgumentException("No user or assistant message to answer.", nameof(messages));

        Qwen3VLChatSession session = Model.CreateSession(new ChatSessionOptions
        {
            SystemPrompt = system.Count == 0 ? null : string.Join("\n\n", system),
            SpecialTokensInContent = SpecialTokensInContent,
        });
        try
        {
            foreach (ChatTurn turn in turns) session.AddMessage(turn);
            return session;
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The text and images of a user message in their order (texts as <see cref="TextContent"/>s, images as above);
    /// non-image data is refused rather than silently dropped; other contents (reasoning, tool calls…) are skipped.
    /// </summary>
    private static List<ChatTurnPart> Parts(ChatMessage message)
    {
        var parts = new List<ChatTurnPart>();
        foreach (AIContent content in message.Contents)
        {
            switch (content)
            {
                case TextContent text:
                    parts.Add(ChatTurnPart.FromText(text.Text ?? ""));
                    break;
                case DataContent data when data.HasTopLevelMediaType("image"):
                    parts.Add(ChatImage.FromBytes(data.Data));
                    break;
                case DataContent data:
                    throw new NotSupportedException($"Content of media type '{data.MediaType}' is not supported; Qwen3-VL takes text and images.");
                case UriContent uri when uri.Uri.IsFile:
                    parts.Add(ChatImage.FromFile(uri.Uri.LocalPath));
                    break;
                case UriContent uri:
                    throw new NotSupportedException($"Image URI '{uri.Uri}' is not a local file; download it and pass a DataContent.");
            }
        }
        if (parts.Count == 0) parts.Add(ChatTurnPart.FromText(""));
        return parts;
    }

    private GenerationOptions MapOptions(ChatOptions? options)
    {
        if (options is null) return new GenerationOptions();
        SamplingOptions s = Model.DefaultSampling;
        if (options.Temperature is { } t) s = s with { Temperature = t };
        if (options.TopP is { } p) s = s with { TopP = p };
        if (options.TopK is { } k) s = s with { TopK = k };
        if (options.PresencePenalty is { } pp) s = s with { PresencePenalty = pp };
        if (options.Seed is { } seed) s = s with { Seed = unchecked((ulong)seed) };
        // TopP/TopK given without a temperature on a greedy default: sample at temperature 1 rather than ignore them.
        if (s.Temperature <= 0 && options.Temperature is null && (options.TopP is not null || options.TopK is not null)) s = s with { Temperature = 1 };
        s.Validate();
        return new GenerationOptions
        {
            Sampling = s,
            MaxNewTokens = options.MaxOutputTokens ?? new GenerationOptions().MaxNewTokens,
            StopSequences = options.StopSequences?.ToArray(),
        };
    }

    private static ChatFinishReason MapFinishReason(StopReason reason) =>
        reason is StopReason.EndOfSequence or StopReason.StopSequence ? ChatFinishReason.Stop : ChatFinishReason.Length;

    private static UsageDetails MapUsage(GenerationResult r) => new()
    {
        InputTokenCount = r.PromptTokens,
        OutputTokenCount = r.CompletionTokens,
        TotalTokenCount = r.PromptTokens + r.CompletionTokens,
        CachedInputTokenCount = r.CachedPromptTokens,
    };
}
