using System.Text;
using System.Text.Json;
using Qwen3VL.Native;
using Qwen3VL.Native.Processing.Images;
using SkiaSharp;

namespace Qwen3VL.Server;

/// <summary>A validated <c>POST /v1/chat/completions</c> body: the conversation (images decoded) and the generation settings.</summary>
internal sealed class ChatRequest
{
    private ChatRequest(string? systemPrompt, List<ChatTurn> turns, GenerationOptions generation, bool stream, bool includeUsage, int imageCount)
    {
        SystemPrompt = systemPrompt;
        Turns = turns;
        Generation = generation;
        Stream = stream;
        IncludeUsage = includeUsage;
        ImageCount = imageCount;
    }

    internal string? SystemPrompt { get; }
    internal List<ChatTurn> Turns { get; }
    internal GenerationOptions Generation { get; }
    internal bool Stream { get; }
    internal bool IncludeUsage { get; }
    internal int ImageCount { get; }

    /// <summary>Parses and checks a request body; images are checked against the limits from their headers, then decoded.</summary>
    /// <exception cref="ApiError">400 with the offending parameter.</exception>
    internal static ChatRequest Parse(ReadOnlyMemory<byte> body, ServerOptions limits, SamplingOptions modelDefaults, int contextLength)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(body, new JsonDocumentOptions { MaxDepth = 32 });
        }
        catch (JsonException e)
        {
            throw ApiError.BadRequest($"The request body is not valid JSON: {e.Message}", code: "invalid_json");
        }
        using (doc)
        {
            try
            {
                return Parse(doc.RootElement, limits, modelDefaults, contextLength);
            }
            catch (InvalidOperationException e)
            {
                // JsonElement's accessors refuse a value they cannot read (a string escaping a lone surrogate where a name
                // or option is expected): the client's JSON, not a server fault.
                throw ApiError.BadRequest($"The request holds a value that cannot be read: {e.Message}", code: "invalid_request");
            }
        }
    }

    private static ChatRequest Parse(JsonElement root, ServerOptions limits, SamplingOptions modelDefaults, int contextLength)
    {
        {
            if (root.ValueKind != JsonValueKind.Object) throw ApiError.BadRequest("The request body must be a JSON object.");

            bool stream = OptionalBool(root, "stream") ?? false;
            bool includeUsage = false;
            if (root.TryGetProperty("stream_options", out JsonElement so) && so.ValueKind == JsonValueKind.Object)
            {
                includeUsage = OptionalBool(so, "include_usage", "stream_options.include_usage") ?? false;
            }
            if (root.TryGetProperty("n", out JsonElement n) && n.ValueKind != JsonValueKind.Null && !(n.TryGetInt32(out int count) && count == 1))
            {
                throw ApiError.BadRequest("Only n = 1 is supported.", "n");
            }

            // Sampling: the model's defaults (generation_config.json), overridden by what the request sets.
            SamplingOptions sampling = modelDefaults;
            if (OptionalNumber(root, "temperature", 0, 2) is { } t) sampling = sampling with { Temperature = (float)t };
            if (OptionalNumber(root, "top_p", 0, 1) is { } p)
            {
                if (p <= 0) throw ApiError.BadRequest("top_p must be greater than 0.", "top_p");
                sampling = sampling with { TopP = (float)p };
            }
            if (OptionalNumber(root, "presence_penalty", -2, 2) is { } pp) sampling = sampling with { PresencePenalty = (float)pp };
            _ = OptionalNumber(root, "frequency_penalty", -2, 2); // accepted, not applied
            if (root.TryGetProperty("seed", out JsonElement seed) && seed.ValueKind != JsonValueKind.Null)
            {
                if (!seed.TryGetInt64(out long s)) throw ApiError.BadRequest("seed must be an integer.", "seed");
                sampling = sampling with { Seed = unchecked((ulong)s) };
            }

            int? maxTokens = OptionalInt(root, "max_completion_tokens") ?? OptionalInt(root, "max_tokens");
            int budget = Math.Min(maxTokens ?? limits.DefaultMaxTokens, contextLength);

            List<string>? stops = null;
            if (root.TryGetProperty("stop", out JsonElement stop) && stop.ValueKind != JsonValueKind.Null)
            {
                stops = [];
                if (stop.ValueKind == JsonValueKind.String) stops.Add(stop.GetString()!);
                else if (stop.ValueKind == JsonValueKind.Array)
                {
                    foreach (JsonElement e in stop.EnumerateArray())
                    {
                        if (e.ValueKind != JsonValueKind.String) throw ApiError.BadRequest("stop must be a string or an array of strings.", "stop");
                        stops.Add(e.GetString()!);
                    }
                    if (stops.Count > 4) throw ApiError.BadRequest("stop holds at most 4 sequences.", "stop");
                }
                else throw ApiError.BadRequest("stop must be a string or an array of strings.", "stop");
            }

            if (!root.TryGetProperty("messages", out JsonElement messages) || messages.ValueKind != JsonValueKind.Array)
            {
                throw ApiError.BadRequest("'messages' is required and must be an array.", "messages");
            }
            if (messages.GetArrayLength() == 0) throw ApiError.BadRequest("'messages' must hold at least one message.", "messages");

            var system = new StringBuilder();
            var turns = new List<ChatTurn>();
            int images = 0, index = 0;
            foreach (JsonElement m in messages.EnumerateArray())
            {
                string at = $"messages[{index++}]";
                if (m.ValueKind != JsonValueKind.Object) throw ApiError.BadRequest($"{at} must be an object.", at);
                string role = m.TryGetProperty("role", out JsonElement r) && r.ValueKind == JsonValueKind.String ? r.GetString()! : "";
                m.TryGetProperty("content", out JsonElement content);
                switch (role)
                {
                    case "system":
                    case "developer":
                        string sysText = JoinText(ReadContent(content, at, allowImages: false, limits, ref images));
                        if (system.Length > 0) system.Append('\n');
                        system.Append(sysText);
                        break;
                    case "user":
                        // Text and images stay in the order of the content parts, as the chat template renders them.
                        turns.Add(ChatTurn.User(ReadContent(content, at, allowImages: true, limits, ref images)));
                        break;
                    case "assistant":
                        string answer = content.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined
                            ? ""
                            : JoinText(ReadContent(content, at, allowImages: false, limits, ref images));
                        turns.Add(ChatTurn.Assistant(answer));
                        break;
                    case "":
                        throw ApiError.BadRequest($"{at}.role is required.", $"{at}.role");
                    default:
                        throw ApiError.BadRequest($"{at}.role '{role}' is not supported (system, developer, user, assistant).", $"{at}.role");
                }
            }
            if (!turns.Any(t => t.Role == ChatTurnRole.User)) throw ApiError.BadRequest("'messages' must hold a user message.", "messages");

            var generation = new GenerationOptions
            {
                MaxNewTokens = budget,
                Sampling = sampling,
                StopSequences = stops,
            };
            return new ChatRequest(system.Length > 0 ? system.ToString() : null, turns, generation, stream, includeUsage, images);
        }
    }

    /// <summary>
    /// A JSON string as text, refused when it is not valid Unicode: JSON's \u escapes can spell a lone surrogate
    /// ("\ud800"), which System.Text.Json refuses to unescape (raw invalid UTF-8 already fails the parse).
    /// </summary>
    private static string Text(JsonElement e, string param)
    {
        try
        {
            return e.GetString()!;
        }
        catch (InvalidOperationException)
        {
            throw ApiError.BadRequest($"{param} is not valid Unicode: it escapes a lone surrogate.", param, "invalid_text");
        }
    }

    /// <summary>The text parts of a system or assistant message (which hold no images), one per line.</summary>
    private static string JoinText(List<ChatTurnPart> parts) => string.Join('\n', parts.Select(p => p.Text));

    /// <summary>A message's content as text and image parts in the order given (a string is one text part; never empty).</summary>
    private static List<ChatTurnPart> ReadContent(JsonElement content, string at, bool allowImages, ServerOptions limits, ref int imageCount)
    {
        string param = at + ".content";
        if (content.ValueKind == JsonValueKind.String) return [ChatTurnPart.FromText(Text(content, param))];
        if (content.ValueKind != JsonValueKind.Array) throw ApiError.BadRequest($"{param} must be a string or an array of content parts.", param);
        var parts = new List<ChatTurnPart>();
        int i = 0;
        foreach (JsonElement part in content.EnumerateArray())
        {
            string partAt = $"{param}[{i++}]";
            string type = part.ValueKind == JsonValueKind.Object && part.TryGetProperty("type", out JsonElement ty) && ty.ValueKind == JsonValueKind.String
                ? ty.GetString()! : "";
            switch (type)
            {
                case "text":
                    if (!part.TryGetProperty("text", out JsonElement tx) || tx.ValueKind != JsonValueKind.String)
                    {
                        throw ApiError.BadRequest($"{partAt}.text must be a string.", $"{partAt}.text");
                    }
                    parts.Add(ChatTurnPart.FromText(Text(tx, $"{partAt}.text")));
                    break;
                case "image_url":
                    if (!allowImages) throw ApiError.BadRequest($"{partAt}: images are only accepted in user messages.", partAt);
                    if (++imageCount > limits.MaxImagesPerRequest)
                    {
                        throw ApiError.BadRequest($"The request holds more than {limits.MaxImagesPerRequest} images.", partAt, "too_many_images");
                    }
                    string? url = part.TryGetProperty("image_url", out JsonElement iu) ? iu.ValueKind switch
                    {
                        JsonValueKind.Object when iu.TryGetProperty("url", out JsonElement u) && u.ValueKind == JsonValueKind.String => u.GetString(),
                        JsonValueKind.String => iu.GetString(),
                        _ => null,
                    } : null;
                    if (string.IsNullOrEmpty(url)) throw ApiError.BadRequest($"{partAt}.image_url.url is required.", $"{partAt}.image_url.url");
                    parts.Add(LoadImage(url, $"{partAt}.image_url.url", limits));
                    break;
                default:
                    throw ApiError.BadRequest($"{partAt}.type '{type}' is not supported (text, image_url).", $"{partAt}.type");
            }
        }
        if (parts.Count == 0) parts.Add(ChatTurnPart.FromText(""));
        return parts;
    }

    /// <summary>A data: URI (base64) or, when allowed, a local file; the header's size is checked before any pixel is decoded.</summary>
    private static ChatImage LoadImage(string url, string param, ServerOptions limits)
    {
        byte[] data;
        if (url.StartsWith("data:", StringComparison.OrdinalIgnoreCase))
        {
            int comma = url.IndexOf(',');
            if (comma < 0 || !url.AsSpan(5, comma - 5).EndsWith(";base64", StringComparison.OrdinalIgnoreCase))
            {
                throw ApiError.BadRequest("Image data URIs must be base64 (data:image/png;base64,...).", param, "invalid_image_url");
            }
            try
            {
                data = Convert.FromBase64String(url[(comma + 1)..]);
            }
            catch (FormatException)
            {
                throw ApiError.BadRequest("The image data URI is not valid base64.", param, "invalid_image_url");
            }
        }
        else if (url.StartsWith("http://", StringComparison.OrdinalIgnoreCase) || url.StartsWith("https://", StringComparison.OrdinalIgnoreCase))
        {
            throw ApiError.BadRequest("Remote image URLs are not fetched; send the image as a data: URI (base64).", param, "invalid_image_url");
        }
        else
        {
            if (!limits.AllowLocalFiles)
            {
                throw ApiError.BadRequest("Local image files are disabled; send the image as a data: URI, or start the server with --allow-local-files.",
                    param, "invalid_image_url");
            }
            string path = url;
            if (url.StartsWith("file:", StringComparison.OrdinalIgnoreCase))
            {
                if (!Uri.TryCreate(url, UriKind.Absolute, out Uri? uri) || !uri.IsFile) throw ApiError.BadRequest($"'{url}' is not a file URL.", param, "invalid_image_url");
                path = uri.LocalPath;
            }
            if (!Path.IsPathFullyQualified(path)) throw ApiError.BadRequest("Local image paths must be absolute.", param, "invalid_image_url");
            try
            {
                data = Qwen3VL.Native.Processing.BoundedFile.ReadAllBytes(path, limits.MaxRequestBodyBytes, "image file");
            }
            catch (FileNotFoundException)
            {
                throw ApiError.BadRequest($"Image file '{path}' does not exist.", param, "invalid_image_url");
            }
            catch (InvalidDataException e)
            {
                throw ApiError.BadRequest(e.Message, param, "image_too_large");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw ApiError.BadRequest($"Image file '{path}' cannot be read: {e.Message}", param, "invalid_image_url");
            }
        }

        // Header only: SKCodec reads the dimensions without decoding pixels.
        using (var skData = SKData.CreateCopy(data))
        using (SKCodec? codec = SKCodec.Create(skData))
        {
            if (codec is null) throw ApiError.BadRequest("The image is not a readable PNG, JPEG, BMP, GIF or WebP.", param, "invalid_image");
            long pixels = (long)codec.Info.Width * codec.Info.Height;
            if (pixels > limits.MaxImagePixels)
            {
                throw ApiError.BadRequest($"The image is {codec.Info.Width}x{codec.Info.Height} pixels, above the limit of {limits.MaxImagePixels}.",
                    param, "image_too_large");
            }
        }
        try
        {
            return ChatImage.FromBytes(data);
        }
        catch (ImageFormatException e)
        {
            throw ApiError.BadRequest("The image could not be decoded: " + e.Message, param, "invalid_image");
        }
    }

    private static bool? OptionalBool(JsonElement o, string name, string? param = null)
    {
        if (!o.TryGetProperty(name, out JsonElement e) || e.ValueKind == JsonValueKind.Null) return null;
        return e.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw ApiError.BadRequest($"{param ?? name} must be a boolean.", param ?? name),
        };
    }

    private static double? OptionalNumber(JsonElement o, string name, double min, double max)
    {
        if (!o.TryGetProperty(name, out JsonElement e) || e.ValueKind == JsonValueKind.Null) return null;
        if (e.ValueKind != JsonValueKind.Number || !e.TryGetDouble(out double v) || v < min || v > max)
        {
            throw ApiError.BadRequest($"{name} must be a number from {min} to {max}.", name);
        }
        return v;
    }

    private static int? OptionalInt(JsonElement o, string name)
    {
        if (!o.TryGetProperty(name, out JsonElement e) || e.ValueKind == JsonValueKind.Null) return null;
        if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out int v) || v < 1) throw ApiError.BadRequest($"{name} must be an integer >= 1.", name);
        return v;
    }
}
