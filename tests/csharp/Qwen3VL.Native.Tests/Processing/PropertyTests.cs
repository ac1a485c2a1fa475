using System.Text;
using CsCheck;
using Qwen3VL.Native.Processing.Images;
using Qwen3VL.Native.Processing.Templates;
using Qwen3VL.Native.Processing.Tokenization;

namespace Qwen3VL.Native.Tests.Processing;

/// <summary>
/// Property tests (CsCheck, seeded random inputs with shrinking) of the managed input paths a caller's text and images
/// go through (issue 12): the tokenizer, the chat template with special-token text, and image sizing/preprocessing.
/// A failure prints the shrunk input and the seed that reproduces it.
/// </summary>
public sealed class PropertyTests
{
    private static QwenTokenizer Tok => TestPaths.Tokenizer;

    // Text that stresses the tokenizer: any UTF-16 (lone surrogates included), special-token spellings, digits,
    // whitespace runs, CJK and emoji, in any mix.
    private static readonly Gen<string> Piece = Gen.OneOf(
        Gen.String[0, 12],
        Gen.OneOf("<|im_start|>", "<|im_end|>", "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|endoftext|>", "<|", "|>",
            "<think>", "\n\n", "   ", "\t", "12345", "'s", "你好", "😀", "\u00e9", "e\u0301", "\r\n"));

    private static readonly Gen<string> Text = Piece.Array[0, 8].Select(p => string.Concat(p));

    private static bool IsValidUtf16(string s)
    {
        for (int i = 0; i < s.Length; i++)
        {
            if (!char.IsSurrogate(s[i])) continue;
            if (!char.IsHighSurrogate(s[i]) || i + 1 >= s.Length || !char.IsLowSurrogate(s[i + 1])) return false;
            i++;
        }
        return true;
    }

    [Fact]
    public void TokenizerNeverThrowsAndRoundTripsValidText()
    {
        Text.Sample(s =>
        {
            int[] ids = Tok.Encode(s);
            string back = Tok.Decode(ids);
            Assert.All(ids, id => Assert.InRange(id, 0, Tok.VocabSize - 1));
            // The normalizer is NFC; a lone surrogate becomes U+FFFD in UTF-8 (as in transformers).
            string expected = IsValidUtf16(s) ? s.Normalize(NormalizationForm.FormC)
                : Encoding.UTF8.GetString(Encoding.UTF8.GetBytes(s)).Normalize(NormalizationForm.FormC);
            Assert.Equal(expected, back);
        }, iter: 300, threads: 1);
    }

    [Fact]
    public void PlainTextRangesNeverProduceAddedTokensInside()
    {
        Text.Sample(s =>
        {
            var ids = new List<int>();
            Tok.Encode(s, ids, [(0, s.Length)]);
            Assert.DoesNotContain(ids, id => Tok.IsSpecialToken(id));
            if (IsValidUtf16(s)) Assert.Equal(s.Normalize(NormalizationForm.FormC), Tok.Decode(ids.ToArray()));
        }, iter: 300, threads: 1);
    }

    [Fact]
    public void TemplateWithPlainContentHasExactlyTheTemplatesTurns()
    {
        int imStart = Tok.TokenToId("<|im_start|>")!.Value, imEnd = Tok.TokenToId("<|im_end|>")!.Value;
        Gen.Select(Text, Text, Text).Sample((system, user, assistant) =>
        {
            var messages = new List<ChatMessage>();
            if (system.Length > 0) messages.Add(ChatMessage.System(system));
            messages.Add(ChatMessage.User(user));
            messages.Add(ChatMessage.Assistant(assistant));
            messages.Add(ChatMessage.User(ContentPart.FromText(user), ContentPart.FromImage()));
            int[] ids = Qwen3VLChatTemplate.BuildPromptIds(Tok, messages, true, _ => 3, specialTokensInContent: false);
            int turns = messages.Count + 1; // and the generation prompt
            Assert.Equal(turns, ids.Count(id => id == imStart));
            Assert.Equal(turns - 1, ids.Count(id => id == imEnd));
            Assert.Equal(3, ids.Count(id => id == QwenSpecialTokens.ImagePad)); // only the image's pads
            Assert.DoesNotContain(QwenSpecialTokens.VideoPad, ids);
            bool addedTokenText = messages.Any(m => m.Content.Any(p => p.Text is { } t && Tok.AddedTokens.Any(a => t.Contains(a.Content, StringComparison.Ordinal))));
            if (!addedTokenText)
            {
                Assert.Equal(Qwen3VLChatTemplate.BuildPromptIds(Tok, messages, true, _ => 3), ids);
            }
        }, iter: 150, threads: 1);
    }

    [Fact]
    public void ImageSizingGivesAValidGridOrAnInputError()
    {
        var processor = new ImageProcessor();
        int factor = processor.Config.Factor;
        Gen.Select(Gen.Int[1, 300_000], Gen.Int[1, 300_000], Gen.Long[1, 1L << 40]).Sample((h, w, minPixels) =>
        {
            long maxPixels = Math.Max(minPixels, processor.Config.MaxPixels);
            double ratio = (double)Math.Max(h, w) / Math.Min(h, w);
            try
            {
                (int rh, int rw) = processor.GetResizedSize(h, w, minPixels, maxPixels);
                Assert.True(ratio <= ImageSizing.MaxAspectRatio, $"{h}x{w} accepted at aspect {ratio}");
                Assert.True(rh > 0 && rw > 0 && rh % factor == 0 && rw % factor == 0, $"{h}x{w} -> {rh}x{rw}");
            }
            catch (ArgumentException)
            {
                // The port of smart_resize refuses what transformers refuses: too extreme an aspect, or a size past int.
                Assert.True(ratio > ImageSizing.MaxAspectRatio || (double)h * w * minPixels > 1e18 || minPixels > int.MaxValue,
                    $"{h}x{w} min {minPixels} refused at aspect {ratio}");
            }
        }, iter: 2000, threads: 1);
    }

    [Fact]
    public void PreprocessingSmallImagesGivesTheGridItPromises()
    {
        var processor = new ImageProcessor();
        Gen.Select(Gen.Int[1, 96], Gen.Int[1, 96], Gen.Byte).Sample((w, h, fill) =>
        {
            var pixels = new byte[w * h * 3];
            Array.Fill(pixels, fill);
            try
            {
                ProcessedImage p = processor.Process(new RgbImage(w, h, pixels));
                Assert.Equal(processor.GetTokenCount(h, w), p.TokenCount);
                Assert.All(p.PixelValues.ToArray(), v => Assert.True(float.IsFinite(v)));
            }
            catch (Qwen3VLInputException e)
            {
                Assert.True((double)Math.Max(h, w) / Math.Min(h, w) > ImageSizing.MaxAspectRatio, e.Message);
            }
        }, iter: 60, threads: 1);
    }
}
