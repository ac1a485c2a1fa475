using System.Text;
using System.Text.Json;
using Qwen3VL.Native;
using Qwen3VL.Native.Processing.Images;
using Qwen3VL.Native.Processing.Templates;
using Qwen3VL.Native.Processing.Tokenization;
using Qwen3VL.Server;
using SharpFuzz;

namespace Qwen3VL.Fuzz;

/// <summary>
/// The managed fuzz targets (issue 12). Each takes arbitrary bytes to one input path a caller reaches and lets through
/// only the typed errors that path documents; any other exception, a failed property check (below) or a crash of the
/// process is a finding.
/// <list type="bullet">
/// <item><c>image</c>: <see cref="ImageDecoder.Decode(ReadOnlySpan{byte}, ImageDecoderOptions?)"/> then
/// <see cref="ImageProcessor.Process(RgbImage, long?, long?)"/>: an image, or <see cref="ImageFormatException"/> /
/// <see cref="Qwen3VLInputException"/>; a result has the promised grid and finite values.</item>
/// <item><c>request</c>: the server's <c>POST /v1/chat/completions</c> body through <c>ChatRequest.Parse</c> and the
/// prompt it builds before taking a context (<c>Qwen3VLChatSession.BuildPrompt</c>): a prompt, or an error the
/// server answers 4xx (never 500).</item>
/// <item><c>template</c>: messages of every role with text, images and tool calls, decoded from the bytes, through
/// <see cref="Qwen3VLChatTemplate.BuildPromptIds"/> with both special-token settings: ids in the vocabulary that
/// decode to the rendered text, image pads where the images are, and none from plain content.</item>
/// </list>
/// Run under libFuzzer: <c>tools/fuzz-dotnet.sh</c>. Replay: <c>dotnet Qwen3VL.Fuzz.dll &lt;target&gt; &lt;file|dir&gt;...</c>
/// (<c>QWEN3VL_FUZZ_MODEL</c>: a checkpoint folder with the tokenizer, such as tests/fixtures/tiny-tied/model).
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        if (args.Length < 1 || Targets.For(args[0]) is not { } target)
        {
            Console.Error.WriteLine("usage: Qwen3VL.Fuzz <image|request|template> [input file or folder...]  (under libFuzzer: no files)");
            return 2;
        }
        if (Environment.GetEnvironmentVariable("__LIBFUZZER_SHM_ID") is not null)
        {
            Fuzzer.LibFuzzer.Run(span => target(span));
            return 0;
        }
        // Replay: every file given, or every file in a folder given; the first finding ends it with its trace.
        int count = 0;
        foreach (string arg in args.Skip(1))
        {
            IEnumerable<string> files = Directory.Exists(arg) ? Directory.EnumerateFiles(arg).Order(StringComparer.Ordinal) : [arg];
            foreach (string file in files)
            {
                try
                {
                    target(File.ReadAllBytes(file));
                }
                catch (Exception e)
                {
                    Console.Error.WriteLine($"{args[0]}: finding on {file}:\n{e}");
                    return 1;
                }
                count++;
            }
        }
        Console.WriteLine($"{args[0]}: {count} input(s) replayed, no finding");
        return 0;
    }
}

/// <summary>The fuzz targets and the checks they make.</summary>
internal static class Targets
{
    internal delegate void Target(ReadOnlySpan<byte> data);

    internal static Target? For(string name) => name switch
    {
        "image" => Image,
        "request" => Request,
        "template" => Template,
        // The harness's own check (tools/fuzz-dotnet.sh runs it first): an input beginning "!" escapes as an exception,
        // so a driver or instrumentation that stopped reporting findings fails the run instead of fuzzing blind.
        "selftest" => data => { if (data.Length > 0 && data[0] == (byte)'!') throw new FuzzFinding("selftest: the harness reports findings"); },
        _ => null,
    };

    // Caps that keep one input fast (a fuzzer wants thousands per second): 1 Mpixel decoded, the processor's own bounds.
    private static readonly ImageDecoderOptions DecoderCaps = new() { MaxPixels = 1L << 20, MaxEncodedBytes = 1L << 20 };
    private static readonly ImageProcessor Processor = new();

    private static readonly Lazy<QwenTokenizer> Tokenizer = new(() =>
        QwenTokenizer.FromDirectory(Environment.GetEnvironmentVariable("QWEN3VL_FUZZ_MODEL") is { Length: > 0 } dir ? dir
            : throw new InvalidOperationException("Set QWEN3VL_FUZZ_MODEL to a checkpoint folder with tokenizer.json (tools/fuzz-dotnet.sh does).")));

    private static readonly ServerOptions ServerLimits = new()
    {
        ModelPath = "unused",
        MaxImagePixels = 1L << 20,
        MaxImagesPerRequest = 4,
        AllowLocalFiles = false,
    };

    private static void Check(bool condition, string what)
    {
        if (!condition) throw new FuzzFinding(what);
    }

    private static void Image(ReadOnlySpan<byte> data)
    {
        RgbImage image;
        try
        {
            image = ImageDecoder.Decode(data, DecoderCaps);
        }
        catch (ImageFormatException)
        {
            return;
        }
        Check(image.Width > 0 && image.Height > 0 && (long)image.Width * image.Height <= DecoderCaps.MaxPixels,
            $"decoded {image.Width}x{image.Height} past the {DecoderCaps.MaxPixels}-pixel cap");
        ProcessedImage processed;
        try
        {
            processed = Processor.Process(image);
        }
        catch (Qwen3VLInputException)
        {
            return; // an aspect ratio past smart_resize's 200, named
        }
        Check(processed.TokenCount == Processor.GetTokenCount(image.Height, image.Width), "token count differs from the sizing's");
        foreach (float v in processed.PixelValues) Check(float.IsFinite(v), "a pixel value is not finite");
    }

    private static void Request(ReadOnlySpan<byte> data)
    {
        ChatRequest request;
        try
        {
            request = ChatRequest.Parse(data.ToArray(), ServerLimits, SamplingOptions.Greedy, contextLength: 4096);
        }
        catch (ApiError e) when (e.Status is >= 400 and < 500)
        {
            Check(!string.IsNullOrEmpty(e.Message), "a 4xx without a message");
            return;
        }
        // What the server does next, before it takes a context (the plain-text default of `qwen3vl serve`).
        foreach (bool special in (ReadOnlySpan<bool>)[false, true])
        {
            try
            {
                Qwen3VLChatSession.Prompt prompt = Qwen3VLChatSession.BuildPrompt(Tokenizer.Value, Processor,
                    QwenSpecialTokens.ImagePad, request.SystemPrompt, request.Turns, special);
                Check(prompt.Images.Count == request.ImageCount, $"{prompt.Images.Count} image spans for {request.ImageCount} images");
                CheckIds(prompt.Ids);
            }
            catch (Qwen3VLInputException) when (special)
            {
                // Special-token text typed in a message (<|image_pad|>, <|video_pad|>), refused by name.
            }
            catch (Qwen3VLInputException e) when (!special)
            {
                throw new FuzzFinding($"plain-text content was refused: {e.Message}");
            }
        }
    }

    private static void CheckIds(ReadOnlySpan<int> ids)
    {
        int vocab = Tokenizer.Value.VocabSize;
        foreach (int id in ids) Check(id >= 0 && id < vocab, $"id {id} outside the vocabulary of {vocab}");
    }

    private static readonly JsonElement Tool = JsonDocument.Parse(
        """{"type":"function","function":{"name":"get_weather","description":"Weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}""").RootElement;

    private static readonly string[] Roles = ["system", "user", "assistant", "tool", "developer"];

    // Layout of a template input: byte 0 holds options (bit 0 special tokens in content, bit 1 vision ids, bit 2 tools,
    // bit 3 generation prompt, bit 4 text as UTF-16 so lone surrogates occur); the text after it splits on U+0001 into
    // messages (the first char picks the role), each on U+0002 into parts: U+0003 starts an image, U+0004 a tool call
    // ("name U+0005 arguments"), anything else is text.
    private static void Template(ReadOnlySpan<byte> data)
    {
        if (data.Length < 2) return;
        byte flags = data[0];
        bool special = (flags & 1) != 0, visionIds = (flags & 2) != 0, tools = (flags & 4) != 0, generation = (flags & 8) != 0;
        string text = (flags & 16) != 0 ? new string(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, char>(data[1..(1 + (data.Length - 1) / 2 * 2)]))
            : Encoding.UTF8.GetString(data[1..]);
        var messages = new List<ChatMessage>();
        int images = 0;
        foreach (string m in text.Split('\u0001'))
        {
            if (m.Length == 0) continue;
            string role = Roles[m[0] % Roles.Length];
            var parts = new List<ContentPart>();
            var calls = new List<ChatToolCall>();
            foreach (string p in m[1..].Split('\u0002'))
            {
                if (p.StartsWith('\u0003')) { parts.Add(ContentPart.FromImage()); images++; }
                else if (p.StartsWith('\u0004') && role == "assistant")
                {
                    string[] call = p[1..].Split('\u0005', 2);
                    calls.Add(new ChatToolCall(call[0], call.Length > 1 ? call[1] : "{}"));
                }
                else parts.Add(ContentPart.FromText(p));
            }
            messages.Add(new ChatMessage(role, parts, calls));
        }
        if (messages.Count == 0) return;
        QwenTokenizer tok = Tokenizer.Value;
        IReadOnlyList<JsonElement>? toolList = tools ? [Tool] : null;
        string rendered = Qwen3VLChatTemplate.Render(messages, generation, visionIds, toolList);
        int[] ids;
        try
        {
            ids = Qwen3VLChatTemplate.BuildPromptIds(tok, messages, generation, _ => 1, visionIds, toolList, special);
        }
        catch (NotSupportedException) when (special && rendered.Contains(QwenSpecialTokens.VideoPadText, StringComparison.Ordinal))
        {
            return; // <|video_pad|> typed in a message: video is not supported yet, and says so
        }
        CheckIds(ids);
        // One pad per image: the ids are the rendered text's tokens and decode back to it (NFC, lone surrogates as U+FFFD).
        string Canonical(string s) => Encoding.UTF8.GetString(Encoding.UTF8.GetBytes(s)).Normalize(NormalizationForm.FormC);
        Check(Canonical(tok.Decode(ids)) == Canonical(rendered), "the prompt ids do not decode to the rendered template");
        if (!special)
        {
            // Plain content: the only pads and video pads are the template's own, one per image part of a rendered message.
            int pads = ids.Count(id => id == QwenSpecialTokens.ImagePad);
            Check(pads <= images, $"{pads} image pads for {images} image parts");
            Check(!ids.Contains(QwenSpecialTokens.VideoPad), "a video pad from plain content");
            int[] expanded = Qwen3VLChatTemplate.BuildPromptIds(tok, messages, generation, i => 2 + i % 3, visionIds, toolList, special);
            int want = 0;
            for (int i = 0; i < pads; i++) want += 2 + i % 3;
            Check(expanded.Count(id => id == QwenSpecialTokens.ImagePad) == want, "image pad expansion differs from the counts asked");
        }
    }
}

/// <summary>A property a target checks did not hold.</summary>
internal sealed class FuzzFinding(string message) : Exception(message);
