using System.Text;
using System.Text.Json;
using Qwen3VL.Native.Processing.Tokenization;

namespace Qwen3VL.Native.Tests.Processing;

public sealed class QwenTokenizerTests
{
    private static QwenTokenizer Tok => TestPaths.Tokenizer;

    [Theory]
    [InlineData("<|endoftext|>", 151643)]
    [InlineData("<|im_start|>", 151644)]
    [InlineData("<|im_end|>", 151645)]
    [InlineData("<|vision_start|>", 151652)]
    [InlineData("<|vision_end|>", 151653)]
    [InlineData("<|image_pad|>", 151655)]
    [InlineData("<|video_pad|>", 151656)]
    public void SpecialTokens_HaveQwenIds(string token, int id)
    {
        Assert.Equal([id], Tok.Encode(token));
        Assert.Equal(id, Tok.TokenToId(token));
        Assert.True(Tok.IsSpecialToken(id));
        Assert.Equal(token, Tok.Decode([id]));
        Assert.Equal("", Tok.Decode([id], skipSpecialTokens: true));
    }

    [Fact]
    public void Loads_VocabularyAndAddedTokens()
    {
        Assert.Equal(151669, Tok.VocabSize);
        Assert.Equal(26, Tok.AddedTokens.Count);
        Assert.True(Tok.UsesQwen2PreTokenizer);
        Assert.False(Tok.IsSpecialToken(Tok.TokenToId("<think>")!.Value)); // added but not special, as in Hugging Face
    }

    /// <summary>Ids computed by Hugging Face tokenizers (Rust) — see tools/gen-tokenizer-reference.js.</summary>
    [Fact]
    public void Encode_MatchesHuggingFaceTokenizers() => AssertReference("tokenizer-reference.json");

    /// <summary>llama.cpp's public reference tokenizations for the Qwen2 vocabulary (models/ggml-vocab-qwen2.gguf.inp/.out).</summary>
    [Fact]
    public void Encode_MatchesLlamaCppQwen2Reference() => AssertReference("llama-cpp-qwen2-vocab.json");

    private static void AssertReference(string file)
    {
        var cases = LoadReference(file);
        Assert.NotEmpty(cases);
        var failures = new List<string>();
        foreach ((string text, int[] ids) in cases)
        {
            int[] actual = Tok.Encode(text);
            if (!actual.AsSpan().SequenceEqual(ids))
            {
                failures.Add($"{JsonSerializer.Serialize(text)}\n  expected [{string.Join(",", ids)}]\n  actual   [{string.Join(",", actual)}]");
            }
        }
        Assert.True(failures.Count == 0, $"{failures.Count}/{cases.Count} mismatches:\n" + string.Join("\n", failures.Take(10)));
    }

    internal static List<(string Text, int[] Ids)> LoadReference(string file)
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(TestPaths.TestData, file)));
        return doc.RootElement.GetProperty("cases").EnumerateArray()
            .Select(c => (c.GetProperty("text").GetString()!, c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray()))
            .ToList();
    }

    public static TheoryData<string> RoundTripTexts =>
    [
        "Hello, world! 你好，世界 مرحبا नमस्ते Привет 안녕하세요 ไทย",
        "👨‍👩‍👧‍👦 👍🏽 🏳️‍🌈 🧑🏿‍💻 😶‍🌫️ 🇫🇷",
        "e\u0301 a\u0308 A\u030A \u1100\u1161\u11A8 q\u0307\u0323 (NFD input is composed)",
        "3.14159 1,000,000 ١٢٣ ½ ① 𝟎𝟏𝟐 𠀀𠀁",
        "def f(x):\n\treturn x  *  2\r\n\r\n\t\tpass\n",
        new string(' ', 500) + "x" + new string('\t', 50) + "\n\n\n" + new string(' ', 1000),
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>hi<|im_end|>\n<think>x</think>",
        "I'm SURE you'LL see 'ſ what we've done",
        "",
    ];

    [Theory]
    [MemberData(nameof(RoundTripTexts))]
    public void DecodeOfEncode_IsNfcText(string text)
    {
        Assert.Equal(text.Normalize(NormalizationForm.FormC), Tok.Decode(Tok.Encode(text)));
    }

    [Fact]
    public void StreamingDecoder_MatchesDecode_AndHoldsPartialSequences()
    {
        foreach ((string text, int[] ids) in LoadReference("tokenizer-reference.json"))
        {
            foreach (bool skip in new[] { false, true })
            {
                var decoder = Tok.CreateStreamingDecoder(skip);
                var sb = new StringBuilder();
                foreach (int id in ids)
                {
                    string piece = decoder.Push(id);
                    Assert.False(piece.Contains('\uFFFD') && !text.Contains('\uFFFD'), $"partial sequence leaked for {JsonSerializer.Serialize(text)}");
                    sb.Append(piece);
                }
                sb.Append(decoder.Flush());
                Assert.Equal(Tok.Decode(ids, skip), sb.ToString());
            }
        }

        // "😀" is 4 bytes; fed byte-token by byte-token nothing comes out until the last one.
        int[] bytes = Encoding.UTF8.GetBytes("😀").Select(ByteTokenId).ToArray();
        var d = Tok.CreateStreamingDecoder();
        Assert.Equal("", d.Push(bytes[0]));
        Assert.Equal("", d.Push(bytes[1]));
        Assert.Equal("", d.Push(bytes[2]));
        Assert.True(d.HasPendingBytes);
        Assert.Equal("😀", d.Push(bytes[3]));
        Assert.Equal("", d.Push(151669 + 5)); // unknown id ignored
        // An incomplete sequence at the end is flushed as U+FFFD, like Hugging Face's lossy decoding.
        Assert.Equal("", d.Push(bytes[0]));
        Assert.Equal("\uFFFD", d.Flush());
        Assert.Equal("\uFFFD", Tok.Decode([bytes[0]]));
    }

    private static int ByteTokenId(byte b)
    {
        // The single-byte token of byte b in the byte-level alphabet.
        for (int id = 0; id < 256 * 4; id++)
        {
            ReadOnlySpan<byte> tb = Tok.GetTokenBytes(id);
            if (tb.Length == 1 && tb[0] == b)
            {
                return id;
            }
        }
        throw new InvalidOperationException($"no token for byte {b}");
    }

    [Fact]
    public void Encode_LongPrompt_EqualsTheConcatenatedReferences()
    {
        var cases = LoadReference("tokenizer-reference.json");
        var sb = new StringBuilder();
        var expected = new List<int>();
        int k = 0;
        while (expected.Count < 120_000)
        {
            // Separate cases with an added token so that the expected ids are the concatenation of the references.
            (string text, int[] ids) = cases[k++ % cases.Count];
            sb.Append(text).Append("<|im_end|>");
            expected.AddRange(ids);
            expected.Add(QwenSpecialTokens.ImEnd);
        }
        string prompt = sb.ToString();
        var fresh = QwenTokenizer.FromFile(TestPaths.TokenizerJson); // cold cache
        int[] actual = fresh.Encode(prompt);
        Assert.Equal(expected, actual);
    }
}
