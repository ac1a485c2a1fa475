using System.Text;
using System.Text.Json;
using Qwen3VL.Native.Processing.Tokenization;

namespace Qwen3VL.Native.Processing.Templates;

/// <summary>
/// Renderer of the Qwen3-VL Instruct chat template (the Jinja text in <see cref="TemplateSource"/>), reproducing what
/// transformers' <c>apply_chat_template</c> produces with it, and builder of the prompt token ids as the Qwen3-VL
/// processor computes them.
/// </summary>
/// <remarks>
/// Source of <see cref="TemplateSource"/>: the <c>chat_template</c> of <c>Qwen/Qwen3-VL-2B-Instruct</c>
/// (<c>chat_template.json</c>; the same text ships with the 4B/8B/32B Instruct checkpoints). Transcribed from the public copy
/// declared byte-identical to <c>Qwen/Qwen3-VL-8B-Instruct</c>'s template in NVIDIA's cosmos "tao-vl-reason" data module
/// (constant <c>QWEN3VL_INSTRUCT_CHAT_TEMPLATE</c>) and cross-checked against a C++ test of the "caiwei" project that embeds the
/// same template. The Instruct template has no reasoning (<c>&lt;think&gt;</c>) handling: assistant text is emitted verbatim.
/// Behaviour reproduced: only a system message at index 0 is rendered (later ones and unknown roles are dropped);
/// images/videos in user and tool messages become vision placeholders in place; system and assistant messages keep only
/// their text parts; tool calls and tool responses (consecutive ones grouped into one user turn); the tools preamble;
/// <c>add_vision_id</c> ("Picture n: " / "Video n: "); <c>add_generation_prompt</c>.
/// </remarks>
public static class Qwen3VLChatTemplate
{
    /// <summary>The Jinja source of the Qwen3-VL Instruct chat template this class renders.</summary>
    public static string TemplateSource { get; } = ReadTemplateResource();

    // The template text lives in one file, qwen3-vl-instruct.chat_template.jinja next to this class (embedded in the
    // assembly); the fixture generator (tools/reference/make_fixtures.py) reads the same file.
    private static string ReadTemplateResource()
    {
        using Stream stream = typeof(Qwen3VLChatTemplate).Assembly.GetManifestResourceStream("Qwen3VL.Native.Processing.Templates.qwen3-vl-instruct.chat_template.jinja")
            ?? throw new InvalidOperationException("The embedded Qwen3-VL chat template resource is missing from the assembly.");
        using var reader = new StreamReader(stream, System.Text.Encoding.UTF8);
        return reader.ReadToEnd();
    }

    /// <summary>Renders the conversation to the prompt text.</summary>
    /// <param name="messages">The conversation; must not be empty.</param>
    /// <param name="addGenerationPrompt">Append <c>&lt;|im_start|&gt;assistant\n</c>.</param>
    /// <param name="addVisionId">Prefix each image/video with "Picture n: " / "Video n: " (template option <c>add_vision_id</c>).</param>
    /// <param name="tools">Tool definitions (JSON objects) for the tools preamble; null or empty for none.</param>
    public static string Render(
        IReadOnlyList<ChatMessage> messages,
        bool addGenerationPrompt,
        bool addVisionId = false,
        IReadOnlyList<JsonElement>? tools = null) => Render(messages, addGenerationPrompt, addVisionId, tools, null);

    /// <summary>
    /// <see cref="Render(IReadOnlyList{ChatMessage}, bool, bool, IReadOnlyList{JsonElement}?)"/>, also recording in
    /// <paramref name="contentRanges"/> (when not null) where the messages' own text lies in the result: their text
    /// parts and tool calls, in ascending order. The template's structure lies outside them.
    /// </summary>
    public static string Render(
        IReadOnlyList<ChatMessage> messages,
        bool addGenerationPrompt,
        bool addVisionId,
        IReadOnlyList<JsonElement>? tools,
        List<(int Start, int Length)>? contentRanges)
    {
        ArgumentNullException.ThrowIfNull(messages);
        if (messages.Count == 0)
        {
            throw new ArgumentException("The conversation is empty.", nameof(messages));
        }
        var sb = new StringBuilder();
        ChatMessage first = messages[0];
        if (tools is { Count: > 0 })
        {
            sb.Append("<|im_start|>system\n");
            if (first.Role == "system")
            {
                AppendTextParts(sb, first, contentRanges);
                sb.Append("\n\n");
            }
            sb.Append("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
                      + "You are provided with function signatures within <tools></tools> XML tags:\n<tools>");
            foreach (JsonElement tool in tools)
            {
                sb.Append('\n').Append(PythonJson.Serialize(tool));
            }
            sb.Append("\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
                      + "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n"
                      + "</tool_call><|im_end|>\n");
        }
        else if (first.Role == "system")
        {
            sb.Append("<|im_start|>system\n");
            AppendTextParts(sb, first, contentRanges);
            sb.Append("<|im_end|>\n");
        }

        int images = 0, videos = 0;
        for (int i = 0; i < messages.Count; i++)
        {
            ChatMessage m = messages[i];
            switch (m.Role)
            {
                case "user":
                    sb.Append("<|im_start|>user\n");
                    AppendVisualContent(sb, m, addVisionId, ref images, ref videos, contentRanges);
                    sb.Append("<|im_end|>\n");
                    break;
                case "assistant":
                    sb.Append("<|im_start|>assistant\n");
                    AppendTextParts(sb, m, contentRanges);
                    for (int k = 0; k < m.ToolCalls.Count; k++)
                    {
                        if (k > 0 || IsTruthy(m))
                        {
                            sb.Append('\n');
                        }
                        ChatToolCall call = m.ToolCalls[k];
                        sb.Append("<tool_call>\n{\"name\": \"");
                        AppendContent(sb, call.Name, contentRanges);
                        sb.Append("\", \"arguments\": ");
                        AppendContent(sb, call.Arguments, contentRanges);
                        sb.Append("}\n</tool_call>");
                    }
                    sb.Append("<|im_end|>\n");
                    break;
                case "tool":
                    if (i == 0 || messages[i - 1].Role != "tool")
                    {
                        sb.Append("<|im_start|>user");
                    }
                    sb.Append("\n<tool_response>\n");
                    AppendVisualContent(sb, m, addVisionId, ref images, ref videos, contentRanges);
                    sb.Append("\n</tool_response>");
                    if (i == messages.Count - 1 || messages[i + 1].Role != "tool")
                    {
                        sb.Append("<|im_end|>\n");
                    }
                    break;
            }
        }
        if (addGenerationPrompt)
        {
            sb.Append("<|im_start|>assistant\n");
        }
        return sb.ToString();
    }

    /// <summary>Jinja truthiness of <c>message.content</c>: a non-empty string, or a non-empty part list.</summary>
    private static bool IsTruthy(ChatMessage m) =>
        m.ContentIsString ? m.Content[0].Text!.Length > 0 : m.Content.Count > 0;

    private static void AppendTextParts(StringBuilder sb, ChatMessage m, List<(int Start, int Length)>? ranges)
    {
        foreach (ContentPart part in m.Content)
        {
            if (part.Kind == ContentPartKind.Text)
            {
                AppendContent(sb, part.Text, ranges);
            }
        }
    }

    // A message's own text, with its range recorded (adjacent ranges merge, so they stay ascending and disjoint).
    private static void AppendContent(StringBuilder sb, string? text, List<(int Start, int Length)>? ranges)
    {
        if (string.IsNullOrEmpty(text)) return;
        if (ranges is not null)
        {
            if (ranges.Count > 0 && ranges[^1].Start + ranges[^1].Length == sb.Length) ranges[^1] = (ranges[^1].Start, ranges[^1].Length + text.Length);
            else ranges.Add((sb.Length, text.Length));
        }
        sb.Append(text);
    }

    private static void AppendVisualContent(StringBuilder sb, ChatMessage m, bool addVisionId, ref int images, ref int videos,
        List<(int Start, int Length)>? ranges)
    {
        foreach (ContentPart part in m.Content)
        {
            switch (part.Kind)
            {
                case ContentPartKind.Image:
                    images++;
                    if (addVisionId)
                    {
                        sb.Append("Picture ").Append(images).Append(": ");
                    }
                    sb.Append("<|vision_start|><|image_pad|><|vision_end|>");
                    break;
                case ContentPartKind.Video:
                    videos++;
                    if (addVisionId)
                    {
                        sb.Append("Video ").Append(videos).Append(": ");
                    }
                    sb.Append("<|vision_start|><|video_pad|><|vision_end|>");
                    break;
                default:
                    AppendContent(sb, part.Text, ranges);
                    break;
            }
        }
    }

    /// <summary>
    /// Renders the conversation, tokenizes the whole prompt (special tokens recognized) and expands the i-th
    /// <c>&lt;|image_pad|&gt;</c> to <paramref name="imagePadCount"/>(i) copies — the ids the Qwen3-VL processor gives
    /// (it expands the pad in the text before tokenizing; both orders give the same ids because the pad is an added token).
    /// </summary>
    /// <param name="tokenizer">The Qwen tokenizer.</param>
    /// <param name="messages">The conversation.</param>
    /// <param name="addGenerationPrompt">Append the assistant generation prompt.</param>
    /// <param name="imagePadCount">
    /// Number of <c>&lt;|image_pad|&gt;</c> tokens of image <c>i</c> (0-based, in prompt order): <c>t*h*w/4</c> of its
    /// <c>image_grid_thw</c> with spatial merge size 2. Note that a literal "&lt;|image_pad|&gt;" typed in message text counts as
    /// an image too, as in transformers.
    /// </param>
    /// <param name="addVisionId">Template option <c>add_vision_id</c>.</param>
    /// <param name="tools">Tool definitions for the tools preamble.</param>
    /// <param name="specialTokensInContent">
    /// True (transformers' default): special-token text in the messages (<c>&lt;|im_start|&gt;</c>, <c>&lt;|image_pad|&gt;</c>)
    /// becomes those tokens, so a message can open a turn of another role. False: the messages' own text is tokenized as
    /// text (as with <c>split_special_tokens=True</c>) and only the template's structure holds special tokens; the safe
    /// choice for content from untrusted users. Without such text both give the same ids.
    /// </param>
    /// <exception cref="NotSupportedException">The prompt contains a video (video expansion, with timestamps, is not implemented yet).</exception>
    public static int[] BuildPromptIds(
        QwenTokenizer tokenizer,
        IReadOnlyList<ChatMessage> messages,
        bool addGenerationPrompt,
        Func<int, int> imagePadCount,
        bool addVisionId = false,
        IReadOnlyList<JsonElement>? tools = null,
        bool specialTokensInContent = true)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(imagePadCount);
        List<(int Start, int Length)>? content = specialTokensInContent ? null : [];
        string text = Render(messages, addGenerationPrompt, addVisionId, tools, content);
        var ids = new List<int>(text.Length / 3 + 16);
        tokenizer.Encode(text, ids, content);
        return ExpandImagePads(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(ids), imagePadCount);
    }

    /// <summary>Expands every <c>&lt;|image_pad|&gt;</c> id, the i-th into <paramref name="imagePadCount"/>(i) copies.</summary>
    public static int[] ExpandImagePads(ReadOnlySpan<int> ids, Func<int, int> imagePadCount)
    {
        ArgumentNullException.ThrowIfNull(imagePadCount);
        var result = new List<int>(ids.Length);
        int image = 0;
        foreach (int id in ids)
        {
            if (id == QwenSpecialTokens.VideoPad)
            {
                throw new NotSupportedException("Video prompts are not supported yet (the Qwen3-VL processor expands <|video_pad|> per frame group with timestamps).");
            }
            if (id != QwenSpecialTokens.ImagePad)
            {
                result.Add(id);
                continue;
            }
            int count = imagePadCount(image);
            if (count <= 0)
            {
                throw new ArgumentOutOfRangeException(nameof(imagePadCount), count, $"Image {image}: the number of image tokens must be positive.");
            }
            image++;
            for (int k = 0; k < count; k++)
            {
                result.Add(QwenSpecialTokens.ImagePad);
            }
        }
        return result.ToArray();
    }

    /// <summary>Number of image tokens for an <c>image_grid_thw</c> of (t, h, w) patches with merge size 2: <c>t*h*w/4</c>.</summary>
    public static int ImageTokenCount(int t, int h, int w) => checked(t * h * w) / 4;

    /// <summary>Whether a Jinja template text is the Qwen3-VL Instruct template (compared with white-space runs collapsed).</summary>
    public static bool IsKnownTemplate(string templateText) =>
        NormalizeWhitespace(templateText) == KnownNormalized;

    private static readonly string KnownNormalized = NormalizeWhitespace(TemplateSource);

    private static string NormalizeWhitespace(string s)
    {
        var sb = new StringBuilder(s.Length);
        bool pendingSpace = false;
        foreach (char c in s.AsSpan().Trim())
        {
            if (char.IsWhiteSpace(c))
            {
                pendingSpace = true;
                continue;
            }
            if (pendingSpace)
            {
                sb.Append(' ');
                pendingSpace = false;
            }
            sb.Append(c);
        }
        return sb.ToString();
    }

    /// <summary>
    /// Finds the chat template of a checkpoint folder — <c>chat_template.jinja</c>, else <c>chat_template.json</c>,
    /// else the <c>chat_template</c> of <c>tokenizer_config.json</c> (the processor's order) — and tells whether it is
    /// the template this class renders.
    /// </summary>
    public static ChatTemplateDetection Detect(string checkpointDirectory)
    {
        string jinja = Path.Combine(checkpointDirectory, "chat_template.jinja");
        if (File.Exists(jinja))
        {
            return ChatTemplateDetection.Create(jinja, Qwen3VL.Native.Processing.BoundedFile.ReadConfigText(jinja));
        }
        foreach (string name in new[] { "chat_template.json", "tokenizer_config.json" })
        {
            string path = Path.Combine(checkpointDirectory, name);
            if (!File.Exists(path))
            {
                continue;
            }
            using JsonDocument doc = JsonDocument.Parse(Qwen3VL.Native.Processing.BoundedFile.ReadConfigBytes(path));
            if (!doc.RootElement.TryGetProperty("chat_template", out JsonElement t))
            {
                continue;
            }
            if (t.ValueKind == JsonValueKind.String)
            {
                return ChatTemplateDetection.Create(path, t.GetString()!);
            }
            if (t.ValueKind == JsonValueKind.Array)
            {
                foreach (JsonElement named in t.EnumerateArray())
                {
                    if (named.TryGetProperty("name", out JsonElement n) && n.GetString() == "default")
                    {
                        return ChatTemplateDetection.Create(path, named.GetProperty("template").GetString()!);
                    }
                }
            }
        }
        return ChatTemplateDetection.Create(null, null);
    }
}

/// <summary>Result of <see cref="Qwen3VLChatTemplate.Detect"/>.</summary>
/// <param name="SourcePath">The file the template was read from; null when the folder has none.</param>
/// <param name="TemplateText">The template text; null when none was found.</param>
/// <param name="IsKnownQwen3VLInstruct">True when it is the template <see cref="Qwen3VLChatTemplate"/> renders exactly.</param>
/// <param name="Message">A human-readable verdict for logs and errors.</param>
public sealed record ChatTemplateDetection(string? SourcePath, string? TemplateText, bool IsKnownQwen3VLInstruct, string Message)
{
    internal static ChatTemplateDetection Create(string? path, string? text)
    {
        if (text is null)
        {
            return new(path, null, false, "No chat template found (chat_template.jinja, chat_template.json, tokenizer_config.json); the built-in Qwen3-VL Instruct template would be an assumption.");
        }
        bool known = Qwen3VLChatTemplate.IsKnownTemplate(text);
        return new(path, text, known, known
            ? $"Chat template in '{path}' is the Qwen3-VL Instruct template."
            : $"Chat template in '{path}' differs from the Qwen3-VL Instruct template (e.g. a Thinking or fine-tuned variant); the built-in renderer would not reproduce it.");
    }
}
