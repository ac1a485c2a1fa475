namespace Qwen3VL.Native;

/// <summary>What a <see cref="ChatTurnPart"/> holds.</summary>
public enum ChatTurnPartKind
{
    /// <summary>Text.</summary>
    Text,
    /// <summary>An image.</summary>
    Image,
}

/// <summary>
/// One part of a user message: text or an image. A message's parts are shown to the model in their order, so text may
/// come before, between and after images ("Compare", image A, "with", image B). Strings and <see cref="ChatImage"/>s
/// convert implicitly, so a message can be written as <c>["Compare ", imageA, " with ", imageB]</c>. Immutable.
/// </summary>
public sealed class ChatTurnPart
{
    private ChatTurnPart(string? text, ChatImage? image)
    {
        Text = text;
        Image = image;
    }

    /// <summary>Whether the part is text or an image.</summary>
    public ChatTurnPartKind Kind => Image is null ? ChatTurnPartKind.Text : ChatTurnPartKind.Image;
    /// <summary>The text of a text part; null for an image.</summary>
    public string? Text { get; }
    /// <summary>The image of an image part; null for text.</summary>
    public ChatImage? Image { get; }

    /// <summary>A text part (written as is: parts are not separated by spaces or newlines).</summary>
    /// <exception cref="ArgumentNullException"><paramref name="text"/> is null.</exception>
    public static ChatTurnPart FromText(string text) => new(text ?? throw new ArgumentNullException(nameof(text)), null);

    /// <summary>An image part.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="image"/> is null.</exception>
    public static ChatTurnPart FromImage(ChatImage image) => new(null, image ?? throw new ArgumentNullException(nameof(image)));

    /// <summary>A text part; see <see cref="FromText"/>.</summary>
    public static implicit operator ChatTurnPart(string text) => FromText(text);

    /// <summary>An image part; see <see cref="FromImage"/>.</summary>
    public static implicit operator ChatTurnPart(ChatImage image) => FromImage(image);

    /// <inheritdoc />
    public override string ToString() => Image is null ? Text! : $"[{Image}]";
}
