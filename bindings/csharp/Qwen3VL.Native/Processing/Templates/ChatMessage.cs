using System.Text.Json;

namespace Qwen3VL.Native.Processing.Templates;

/// <summary>Kind of a <see cref="ContentPart"/>.</summary>
public enum ContentPartKind
{
    /// <summary>Plain text.</summary>
    Text,
    /// <summary>An image; rendered as <c>&lt;|vision_start|&gt;&lt;|image_pad|&gt;&lt;|vision_end|&gt;</c>.</summary>
    Image,
    /// <summary>A video; rendered as <c>&lt;|vision_start|&gt;&lt;|video_pad|&gt;&lt;|vision_end|&gt;</c>.</summary>
    Video,
}

/// <summary>One part of a message's content: text, or an opaque reference to an image or video.</summary>
public sealed class ContentPart
{
    private ContentPart(ContentPartKind kind, string? text, object? source)
    {
        Kind = kind;
        Text = text;
        Source = source;
    }

    /// <summary>What the part is.</summary>
    public ContentPartKind Kind { get; }

    /// <summary>The text of a <see cref="ContentPartKind.Text"/> part; null otherwise.</summary>
    public string? Text { get; }

    /// <summary>Caller-defined reference to the image or video (path, URL, decoded pixels…); the template ignores it.</summary>
    public object? Source { get; }

    /// <summary>Creates a text part.</summary>
    public static ContentPart FromText(string text) => new(ContentPartKind.Text, text ?? throw new ArgumentNullException(nameof(text)), null);

    /// <summary>Creates an image part.</summary>
    public static ContentPart FromImage(object? source = null) => new(ContentPartKind.Image, null, source);

    /// <summary>Creates a video part.</summary>
    public static ContentPart FromVideo(object? source = null) => new(ContentPartKind.Video, null, source);
}

/// <summary>A tool call made by the assistant.</summary>
/// <param name="Name">Function name.</param>
/// <param name="Arguments">
/// The arguments exactly as they are written into the prompt: a JSON object text. Use <see cref="FromJson(string, JsonElement)"/>
/// to serialize a JSON value the way the template's <c>tojson</c> filter (Python <c>json.dumps</c>) does.
/// </param>
public sealed record ChatToolCall(string Name, string Arguments)
{
    /// <summary>Creates a tool call whose arguments are a JSON value; strings are taken verbatim, as the template does.</summary>
    public static ChatToolCall FromJson(string name, JsonElement arguments) =>
        new(name, arguments.ValueKind == JsonValueKind.String ? arguments.GetString()! : PythonJson.Serialize(arguments));
}

/// <summary>A chat message (OpenAI-like): a role and a list of content parts.</summary>
public sealed class ChatMessage
{
    /// <summary>Creates a message from parts.</summary>
    /// <param name="role"><c>system</c>, <c>user</c>, <c>assistant</c> or <c>tool</c> (the template ignores other roles).</param>
    /// <param name="content">The parts, in order.</param>
    /// <param name="toolCalls">Tool calls of an assistant message.</param>
    public ChatMessage(string role, IReadOnlyList<ContentPart> content, IReadOnlyList<ChatToolCall>? toolCalls = null)
    {
        Role = role ?? throw new ArgumentNullException(nameof(role));
        Content = content ?? throw new ArgumentNullException(nameof(content));
        ToolCalls = toolCalls ?? [];
    }

    private ChatMessage(string role, string text, IReadOnlyList<ChatToolCall>? toolCalls)
        : this(role, [ContentPart.FromText(text)], toolCalls)
    {
        ContentIsString = true;
    }

    /// <summary>The role.</summary>
    public string Role { get; }

    /// <summary>The content parts.</summary>
    public IReadOnlyList<ContentPart> Content { get; }

    /// <summary>
    /// True when the content was given as a plain string (one text part). The template renders both forms the same,
    /// except that an empty string is "falsy" where an empty-text part list is not (it matters before tool calls).
    /// </summary>
    public bool ContentIsString { get; }

    /// <summary>Tool calls (assistant messages).</summary>
    public IReadOnlyList<ChatToolCall> ToolCalls { get; }

    /// <summary>Creates a message whose content is a plain string.</summary>
    public static ChatMessage FromText(string role, string text, IReadOnlyList<ChatToolCall>? toolCalls = null) =>
        new(role, text ?? throw new ArgumentNullException(nameof(text)), toolCalls);

    /// <summary>A system message.</summary>
    public static ChatMessage System(string text) => FromText("system", text);

    /// <summary>A user message with plain text.</summary>
    public static ChatMessage User(string text) => FromText("user", text);

    /// <summary>A user message with parts (text, images, videos in any order).</summary>
    public static ChatMessage User(params ContentPart[] parts) => new("user", parts);

    /// <summary>An assistant message.</summary>
    public static ChatMessage Assistant(string text, IReadOnlyList<ChatToolCall>? toolCalls = null) => FromText("assistant", text, toolCalls);

    /// <summary>A tool response.</summary>
    public static ChatMessage Tool(string text) => FromText("tool", text);

    /// <summary>
    /// Parses an OpenAI/transformers-style message: <c>{"role", "content": string | [{"type":"text","text"}, {"type":"image",…},
    /// {"type":"image_url",…}, {"type":"video",…}], "tool_calls": [{"function": {"name","arguments"}}]}</c>. Parts are classified
    /// like the template does (a part is an image when its type is "image" or it has an "image"/"image_url" key); parts that
    /// are neither image, video nor text are dropped.
    /// </summary>
    public static ChatMessage FromJson(JsonElement message)
    {
        string role = message.GetProperty("role").GetString() ?? throw new FormatException("message role is null");
        var toolCalls = new List<ChatToolCall>();
        if (message.TryGetProperty("tool_calls", out JsonElement calls) && calls.ValueKind == JsonValueKind.Array)
        {
            foreach (JsonElement call in calls.EnumerateArray())
            {
                JsonElement fn = call.TryGetProperty("function", out JsonElement f) && f.ValueKind == JsonValueKind.Object ? f : call;
                string name = fn.GetProperty("name").GetString() ?? "";
                toolCalls.Add(fn.TryGetProperty("arguments", out JsonElement args)
                    ? ChatToolCall.FromJson(name, args)
                    : new ChatToolCall(name, ""));
            }
        }

        message.TryGetProperty("content", out JsonElement content);
        if (content.ValueKind == JsonValueKind.String)
        {
            return FromText(role, content.GetString()!, toolCalls);
        }
        var parts = new List<ContentPart>();
        if (content.ValueKind == JsonValueKind.Array)
        {
            foreach (JsonElement part in content.EnumerateArray())
            {
                string? type = part.TryGetProperty("type", out JsonElement t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
                if (type == "image" || part.TryGetProperty("image", out _) || part.TryGetProperty("image_url", out _))
                {
                    parts.Add(ContentPart.FromImage(part.Clone()));
                }
                else if (type == "video" || part.TryGetProperty("video", out _))
                {
                    parts.Add(ContentPart.FromVideo(part.Clone()));
                }
                else if (part.TryGetProperty("text", out JsonElement text))
                {
                    parts.Add(ContentPart.FromText(text.ValueKind == JsonValueKind.String ? text.GetString()! : text.GetRawText()));
                }
            }
        }
        return new ChatMessage(role, parts, toolCalls);
    }
}
