using System.Globalization;
using System.Text.RegularExpressions;

namespace Qwen3VL.Native.Processing.Tokenization;

/// <summary>
/// Splits normalized text into the pieces that are byte-pair encoded independently.
/// </summary>
internal abstract class PreTokenizer
{
    /// <summary>Calls <paramref name="onPiece"/> with (start, length) of every piece of <paramref name="text"/>, in order.</summary>
    public abstract void Split(string text, Action<int, int> onPiece);
}

/// <summary>
/// Hand-written, allocation-free equivalent of the Qwen2 pre-tokenizer regex
/// <c>(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+</c>
/// as Hugging Face <c>tokenizers</c> runs it (Oniguruma, Split behaviour "Isolated").
/// </summary>
/// <remarks>
/// It works on Unicode code points, like Oniguruma on UTF-8 and unlike .NET's <see cref="Regex"/>, which sees the two
/// halves of a surrogate pair as category <c>Cs</c> (so supplementary letters and digits such as U+20000 or U+1D7CE
/// would be split differently). <c>\s</c> follows Oniguruma's Unicode definition: U+0009–U+000D, U+0085 and the
/// categories Zs, Zl, Zp.
/// </remarks>
internal sealed class Qwen2PreTokenizer : PreTokenizer
{
    /// <summary>The exact pattern this class implements, as written in Qwen2/Qwen3 <c>tokenizer.json</c>.</summary>
    public const string Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    public static readonly Qwen2PreTokenizer Instance = new();

    private const byte Letter = 1, Number = 2, Space = 4, NewLine = 8;

    /// <inheritdoc />
    public override void Split(string text, Action<int, int> onPiece)
    {
        int pos = 0;
        while (pos < text.Length)
        {
            int len = NextPieceLength(text, pos);
            onPiece(pos, len);
            pos += len;
        }
    }

    /// <summary>Length in UTF-16 units of the piece that starts at <paramref name="i"/>.</summary>
    public int NextPieceLength(string s, int i)
    {
        int n = s.Length;
        byte c0 = Classify(s, i, out int w0);

        // (?i:'s|'t|'re|'ve|'m|'ll|'d)
        if (s[i] == '\'' && i + 1 < n)
        {
            char c1 = Fold(s[i + 1]);
            if (c1 is 's' or 't' or 'm' or 'd')
            {
                return 2;
            }
            if (i + 2 < n)
            {
                char c2 = Fold(s[i + 2]);
                if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
                {
                    return 3;
                }
            }
        }

        // [^\r\n\p{L}\p{N}]?\p{L}+
        if ((c0 & Letter) != 0)
        {
            return LetterRunEnd(s, i) - i;
        }
        if ((c0 & (NewLine | Number)) == 0 && i + w0 < n && (Classify(s, i + w0, out _) & Letter) != 0)
        {
            return LetterRunEnd(s, i + w0) - i;
        }

        // \p{N}
        if ((c0 & Number) != 0)
        {
            return w0;
        }

        //  ?[^\s\p{L}\p{N}]+[\r\n]*
        int p = -1;
        if (c0 == 0)
        {
            p = i;
        }
        else if (s[i] == ' ' && i + 1 < n && Classify(s, i + 1, out _) == 0)
        {
            p = i + 1;
        }
        if (p >= 0)
        {
            while (p < n && Classify(s, p, out int w) == 0)
            {
                p += w;
            }
            while (p < n && s[p] is '\r' or '\n')
            {
                p++;
            }
            return p - i;
        }

        // The character is white space (all white-space code points are in the BMP).
        int end = i;
        int lastNewLine = -1;
        while (end < n && (Classify(s, end, out _) & Space) != 0)
        {
            if (s[end] is '\r' or '\n')
            {
                lastNewLine = end;
            }
            end++;
        }

        // \s*[\r\n]+
        if (lastNewLine >= 0)
        {
            return lastNewLine + 1 - i;
        }
        // \s+(?!\S)
        if (end == n)
        {
            return end - i;
        }
        if (end - i >= 2)
        {
            return end - 1 - i;
        }
        // \s+
        return end - i;
    }

    private static int LetterRunEnd(string s, int p)
    {
        int n = s.Length;
        while (p < n && (Classify(s, p, out int w) & Letter) != 0)
        {
            p += w;
        }
        return p;
    }

    /// <summary>Simple case folding of the letters used by the contraction alternative.</summary>
    private static char Fold(char c) => c switch
    {
        >= 'A' and <= 'Z' => (char)(c | 0x20),
        '\u017F' => 's', // LATIN SMALL LETTER LONG S folds to 's'
        _ => c,
    };

    private static byte Classify(string s, int i, out int width)
    {
        char c = s[i];
        if (c < 0x80)
        {
            width = 1;
            return AsciiClasses[c];
        }
        int cp = c;
        width = 1;
        if (char.IsHighSurrogate(c) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
        {
            cp = char.ConvertToUtf32(c, s[i + 1]);
            width = 2;
        }
        else if (char.IsSurrogate(c))
        {
            return 0; // lone surrogate: encoded as U+FFFD later, which is a symbol (So)
        }
        if (cp == 0x85)
        {
            return Space;
        }
        return CategoryClass(CharUnicodeInfo.GetUnicodeCategory(cp));
    }

    private static byte CategoryClass(UnicodeCategory category) => category switch
    {
        UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
            or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter => Letter,
        UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => Number,
        UnicodeCategory.SpaceSeparator or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator => Space,
        _ => 0,
    };

    private static readonly byte[] AsciiClasses = BuildAscii();

    private static byte[] BuildAscii()
    {
        var t = new byte[128];
        for (int c = 0; c < 128; c++)
        {
            t[c] = CategoryClass(CharUnicodeInfo.GetUnicodeCategory((char)c));
        }
        for (int c = 0x09; c <= 0x0D; c++)
        {
            t[c] = Space;
        }
        t['\r'] |= NewLine;
        t['\n'] |= NewLine;
        return t;
    }
}

/// <summary>
/// Fallback for a <c>tokenizer.json</c> whose Split pattern is not the Qwen2 one: runs the pattern with .NET's
/// <see cref="Regex"/> (behaviour "Isolated": matches and the gaps between them are pieces).
/// </summary>
internal sealed class RegexPreTokenizer : PreTokenizer
{
    private readonly Regex _regex;

    public RegexPreTokenizer(string pattern)
    {
        _regex = new Regex(pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant);
    }

    /// <inheritdoc />
    public override void Split(string text, Action<int, int> onPiece)
    {
        int pos = 0;
        foreach (ValueMatch m in _regex.EnumerateMatches(text))
        {
            if (m.Length == 0)
            {
                continue;
            }
            if (m.Index > pos)
            {
                onPiece(pos, m.Index - pos);
            }
            onPiece(m.Index, m.Length);
            pos = m.Index + m.Length;
        }
        if (pos < text.Length)
        {
            onPiece(pos, text.Length - pos);
        }
    }
}
