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
    private ChatTurn(ChatTurnRole role, string text, IReadOnlyList<ChatImage> images)
    {
        Role = role;
        Text = text;
        Images = images;
    }

    /// <summary>Who said it.</summary>
    public ChatTurnRole Role { get; }
    /// <summary>The text.</summary>
    public string Text { get; }
    /// <summary>The images of a user message, shown to the model before the text, in order; empty for answers.</summary>
    public IReadOnlyList<ChatImage> Images { get; }

    /// <summary>A user message.</summary>
    /// <param name="text">The text (may be empty when there are images).</param>
    /// <param name="images">Images, in order; null for none.</param>
    public static ChatTurn User(string text, IEnumerable<ChatImage>? images = null)
    {
        ArgumentNullException.ThrowIfNull(text);
        ChatImage[] list = images?.ToArray() ?? [];
        if (list.Any(i => i is null)) throw new ArgumentException("An image is null.", nameof(images));
        return new ChatTurn(ChatTurnRole.User, text, list);
    }

    /// <summary>An answer of the model.</summary>
    public static ChatTurn Assistant(string text) => new(ChatTurnRole.Assistant, text ?? throw new ArgumentNullException(nameof(text)), []);

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
}
