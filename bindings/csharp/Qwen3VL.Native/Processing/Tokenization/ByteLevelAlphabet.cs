namespace Qwen3VL.Native.Processing.Tokenization;

/// <summary>
/// The GPT-2 / Hugging Face "ByteLevel" alphabet: a bijection between the 256 byte values and 256 printable
/// Unicode characters (<c>bytes_to_unicode</c> in the reference implementations).
/// </summary>
internal static class ByteLevelAlphabet
{
    /// <summary>Character standing for each byte value.</summary>
    public static readonly char[] ByteToChar = BuildByteToChar();

    /// <summary>Byte value for each alphabet character (index = char code, -1 when not in the alphabet).</summary>
    public static readonly short[] CharToByte = BuildCharToByte(ByteToChar);

    private static char[] BuildByteToChar()
    {
        var map = new char[256];
        var assigned = new bool[256];
        for (int b = '!'; b <= '~'; b++) { map[b] = (char)b; assigned[b] = true; }
        for (int b = 0xA1; b <= 0xAC; b++) { map[b] = (char)b; assigned[b] = true; }
        for (int b = 0xAE; b <= 0xFF; b++) { map[b] = (char)b; assigned[b] = true; }
        int n = 0;
        for (int b = 0; b < 256; b++)
        {
            if (!assigned[b])
            {
                map[b] = (char)(256 + n);
                n++;
            }
        }
        return map;
    }

    private static short[] BuildCharToByte(char[] byteToChar)
    {
        var inverse = new short[512];
        Array.Fill(inverse, (short)-1);
        for (int b = 0; b < 256; b++)
        {
            inverse[byteToChar[b]] = (short)b;
        }
        return inverse;
    }

    /// <summary>Converts a byte-level token string (as stored in <c>tokenizer.json</c>) back to its bytes.</summary>
    /// <returns>The bytes, or <see langword="null"/> when a character is outside the alphabet.</returns>
    public static byte[]? TryGetBytes(string token)
    {
        var bytes = new byte[token.Length];
        for (int i = 0; i < token.Length; i++)
        {
            char c = token[i];
            if (c >= CharToByte.Length || CharToByte[c] < 0)
            {
                return null;
            }
            bytes[i] = (byte)CharToByte[c];
        }
        return bytes;
    }
}
