namespace Qwen3VL.Native;

/// <summary>Who said a <see cref="ChatTurn"/>.</summary>
public enum ChatTurnRole
{
    /// <summary>The user (text and images).</summary>
    User,
    /// <summary>The model.</summary>
    Assistant,
}

/// <summary>One message of a <see cref="Qwen3VLChatSession"/>'s history.</summary>
public sealed class ChatTurn
{
    private ChatTurn(ChatTurnRole role, IReadOnlyList<ChatTurnPart> parts)
    {
        Role = role;
        Parts = parts;
        Text = string.Concat(parts.Where(p => p.Kind == ChatTurnPartKind.Text).Select(p => p.Text));
        Images = parts.Where(p => p.Kind == ChatTurnPartKind.Image).Select(p => p.Image!).ToArray();
    }

    /// <summary>Who said it.</summary>
    public ChatTurnRole Role { get; }
    /// <summary>The content in the order the model sees it: text and images (images only in user messages).</summary>
    public IReadOnlyList<ChatTurnPart> Parts { get; }
    /// <summary>The text: the text parts joined (without separators).</summary>
    public string Text { get; }
    /// <summary>The images of a user message in the order of <see cref="Parts"/>; empty for answers.</summary>
    public IReadOnlyList<ChatImage> Images { get; }

    /// <summary>A user message whose images are shown to the model before the text.</summary>
    /// <param name="text">The text (may be empty when there are images).</param>
    /// <param name="images">Images, in order; null for none.</param>
    /// <remarks>To place text before or between images, use <see cref="User(IEnumerable{ChatTurnPart})"/>.</remarks>
    public static ChatTurn User(string text, IEnumerable<ChatImage>? images = null)
    {
        ArgumentNullException.ThrowIfNull(text);
        ChatImage[] list = images?.ToArray() ?? [];
        if (list.Any(i => i is null)) throw new ArgumentException("An image is null.", nameof(images));
        return new ChatTurn(ChatTurnRole.User, [.. list.Select(ChatTurnPart.FromImage), ChatTurnPart.FromText(text)]);
    }

    /// <summary>A user message of text and images in the order given, e.g. <c>ChatTurn.User(["Compare ", a, " with ", b])</c>.</summary>
    /// <param name="parts">The parts, in order (strings and <see cref="ChatImage"/>s convert implicitly).</param>
    /// <exception cref="ArgumentException">A part is null, or there is none.</exception>
    public static ChatTurn User(IEnumerable<ChatTurnPart> parts)
    {
        ArgumentNullException.ThrowIfNull(parts);
        ChatTurnPart[] list = parts.ToArray();
        if (list.Length == 0) throw new ArgumentException("A message needs at least one part (text or image).", nameof(parts));
        if (list.Any(p => p is null)) throw new ArgumentException("A part is null.", nameof(parts));
        return new ChatTurn(ChatTurnRole.User, list);
    }

    /// <summary>An answer of the model.</summary>
    public static ChatTurn Assistant(string text) =>
        new(ChatTurnRole.Assistant, [ChatTurnPart.FromText(text ?? throw new ArgumentNullException(nameof(text)))]);

    /// <inheritdoc />
    public override string ToString() => $"{Role}: {Text}" + (Images.Count > 0 ? $" [+{Images.Count} image(s)]" : "");
}

/// <summary>Options of <see cref="Qwen3VLModel.CreateSession"/>.</summary>
public sealed record ChatSessionOptions
{
    /// <summary>The system prompt; null for none.</summary>
    public string? SystemPrompt { get; init; }
    /// <summary>Tokens the conversation may hold (prompts, images and answers); null uses <see cref="Qwen3VLModel.ContextLength"/>.</summary>
    public int? ContextLength { get; init; }
    /// <summary>
    /// True (the default, as transformers): special-token text typed in a message (<c>&lt;|im_start|&gt;</c>,
    /// <c>&lt;|im_end|&gt;</c>) becomes those tokens, so message text can open a turn of another role, and a typed
    /// <c>&lt;|image_pad|&gt;</c> is refused (<see cref="Qwen3VLInputException"/>). False: the messages' text is always
    /// tokenized as text and only the chat template places special tokens - the choice for text from untrusted users
    /// (<c>qwen3vl serve</c> makes it unless started with <c>--special-tokens-in-content</c>).
    /// </summary>
    public bool SpecialTokensInContent { get; init; } = true;
}
