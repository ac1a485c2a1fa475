using System.Text;

namespace Qwen3VL.Native.Processing.Tokenization;

/// <summary>
/// Incremental detokenizer: feed token ids one at a time and get back only complete text. Bytes of a UTF-8
/// sequence split across tokens are held back until the sequence is complete. The concatenation of everything
/// returned by <see cref="Push"/> and <see cref="Flush"/> equals <see cref="QwenTokenizer.Decode"/> of the same ids.
/// </summary>
/// <remarks>Not thread-safe; use one instance per generation stream.</remarks>
public sealed class StreamingDecoder
{
    private readonly QwenTokenizer _tokenizer;
    private readonly bool _skipSpecialTokens;
    private byte[] _pending = new byte[16];
    private int _count;

    internal StreamingDecoder(QwenTokenizer tokenizer, bool skipSpecialTokens)
    {
        _tokenizer = tokenizer;
        _skipSpecialTokens = skipSpecialTokens;
    }

    /// <summary>Whether bytes of an incomplete UTF-8 sequence are waiting for the next token.</summary>
    public bool HasPendingBytes => _count > 0;

    /// <summary>Adds one token and returns the text it completes (possibly empty).</summary>
    /// <param name="tokenId">The token id; ids unknown to the tokenizer are ignored, as Hugging Face does.</param>
    public string Push(int tokenId)
    {
        ReadOnlySpan<byte> bytes = _tokenizer.GetTokenBytes(tokenId, _skipSpecialTokens);
        if (bytes.IsEmpty)
        {
            return string.Empty;
        }
        if (_count == 0 && IsCompleteUtf8Ascii(bytes))
        {
            return Encoding.UTF8.GetString(bytes);
        }
        if (_count + bytes.Length > _pending.Length)
        {
            Array.Resize(ref _pending, Math.Max(_pending.Length * 2, _count + bytes.Length));
        }
        bytes.CopyTo(_pending.AsSpan(_count));
        _count += bytes.Length;

        int held = IncompleteTailLength(_pending.AsSpan(0, _count));
        int ready = _count - held;
        if (ready == 0)
        {
            return string.Empty;
        }
        string text = Encoding.UTF8.GetString(_pending, 0, ready);
        _pending.AsSpan(ready, held).CopyTo(_pending);
        _count = held;
        return text;
    }

    /// <summary>Ends the stream: returns the held-back bytes decoded with U+FFFD replacement, and resets.</summary>
    public string Flush()
    {
        string text = _count == 0 ? string.Empty : Encoding.UTF8.GetString(_pending, 0, _count);
        _count = 0;
        return text;
    }

    /// <summary>Drops any held-back bytes.</summary>
    public void Reset() => _count = 0;

    private static bool IsCompleteUtf8Ascii(ReadOnlySpan<byte> bytes) => System.Text.Ascii.IsValid(bytes);

    /// <summary>
    /// Length of the trailing bytes that start a valid UTF-8 sequence which is not complete yet
    /// (0 when the buffer ends on a sequence boundary or with invalid bytes, which are replaced anyway).
    /// </summary>
    internal static int IncompleteTailLength(ReadOnlySpan<byte> buffer)
    {
        int n = buffer.Length;
        for (int k = 1; k <= 3 && k <= n; k++)
        {
            byte b = buffer[n - k];
            if ((b & 0xC0) == 0x80)
            {
                continue; // continuation byte: keep looking for the lead byte
            }
            int need = b switch
            {
                >= 0xC2 and <= 0xDF => 2,
                >= 0xE0 and <= 0xEF => 3,
                >= 0xF0 and <= 0xF4 => 4,
                _ => 0,
            };
            if (need <= k)
            {
                return 0;
            }
            // The second byte of some lead bytes has a narrower range (no overlongs, surrogates or > U+10FFFF).
            if (k >= 2)
            {
                byte second = buffer[n - k + 1];
                bool ok = b switch
                {
                    0xE0 => second >= 0xA0,
                    0xED => second <= 0x9F,
                    0xF0 => second >= 0x90,
                    0xF4 => second <= 0x8F,
                    _ => true,
                };
                if (!ok)
                {
                    return 0;
                }
            }
            return k;
        }
        return 0;
    }
}
