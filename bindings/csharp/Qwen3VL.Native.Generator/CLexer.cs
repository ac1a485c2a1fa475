using System.Collections.Generic;
using System.Text;

namespace Qwen3VL.Native.Interop.Generation;

internal enum TokenKind { Identifier, Number, String, Punct, End }

/// <summary>A C token with its 1-based line and the doc comment (slash-star-star) that stood right before it.</summary>
internal sealed class Token
{
    public Token(TokenKind kind, string text, int line, string? doc)
    {
        Kind = kind;
        Text = text;
        Line = line;
        Doc = doc;
    }

    public TokenKind Kind { get; }
    public string Text { get; }
    public int Line { get; }
    public string? Doc { get; }

    public bool Is(string text) => Text == text && Kind != TokenKind.String;

    public override string ToString() => Kind == TokenKind.End ? "end of file" : "'" + Text + "'";
}

/// <summary>An integer <c>#define QWEN3VL_NAME value</c>.</summary>
internal sealed class DefineConstant
{
    public DefineConstant(string name, long value, string? doc, int line)
    {
        Name = name;
        Value = value;
        Doc = doc;
        Line = line;
    }

    public string Name { get; }
    public long Value { get; }
    public string? Doc { get; }
    public int Line { get; }
}

/// <summary>
/// Splits the header into tokens. Comments are dropped except doc comments, which are attached to the next token
/// (or #define). Preprocessor lines are handled here: integer QWEN3VL_ defines become constants, code inside
/// <c>#ifdef __cplusplus</c> is skipped, and everything else in a directive (include guard, API macro block) is ignored.
/// </summary>
internal sealed class CLexer
{
    private readonly string _text;
    private readonly List<Token> _tokens = new List<Token>();
    private readonly List<DefineConstant> _constants = new List<DefineConstant>();
    private readonly List<HeaderError> _errors;
    private readonly Stack<bool> _skip = new Stack<bool>();
    private int _pos;
    private int _line = 1;
    private string? _pendingDoc;
    private bool _atLineStart = true;

    private CLexer(string text, List<HeaderError> errors)
    {
        _text = text;
        _errors = errors;
    }

    public static (List<Token> Tokens, List<DefineConstant> Constants) Lex(string text, List<HeaderError> errors)
    {
        var lexer = new CLexer(text, errors);
        lexer.Run();
        return (lexer._tokens, lexer._constants);
    }

    private bool Skipping => _skip.Count > 0 && _skip.Peek();

    private char Peek(int ahead = 0) => _pos + ahead < _text.Length ? _text[_pos + ahead] : '\0';

    private void Run()
    {
        while (_pos < _text.Length)
        {
            char c = _text[_pos];
            if (c == '\n')
            {
                _line++;
                _pos++;
                _atLineStart = true;
                continue;
            }
            if (char.IsWhiteSpace(c))
            {
                _pos++;
                continue;
            }
            if (c == '/' && Peek(1) == '*')
            {
                ReadBlockComment();
                continue;
            }
            if (c == '/' && Peek(1) == '/')
            {
                while (_pos < _text.Length && _text[_pos] != '\n') _pos++;
                continue;
            }
            if (c == '#' && _atLineStart)
            {
                ReadDirective();
                continue;
            }
            _atLineStart = false;
            int line = _line;
            Token token;
            if (char.IsLetter(c) || c == '_')
            {
                int start = _pos;
                while (_pos < _text.Length && (char.IsLetterOrDigit(_text[_pos]) || _text[_pos] == '_')) _pos++;
                token = new Token(TokenKind.Identifier, _text.Substring(start, _pos - start), line, _pendingDoc);
            }
            else if (char.IsDigit(c))
            {
                int start = _pos;
                while (_pos < _text.Length && (char.IsLetterOrDigit(_text[_pos]))) _pos++;
                token = new Token(TokenKind.Number, _text.Substring(start, _pos - start), line, _pendingDoc);
            }
            else if (c == '"')
            {
                int start = ++_pos;
                while (_pos < _text.Length && _text[_pos] != '"' && _text[_pos] != '\n') _pos++;
                token = new Token(TokenKind.String, _text.Substring(start, _pos - start), line, _pendingDoc);
                _pos++;
            }
            else
            {
                _pos++;
                token = new Token(TokenKind.Punct, c.ToString(), line, _pendingDoc);
            }
            _pendingDoc = null;
            if (!Skipping) _tokens.Add(token);
        }
        if (_skip.Count != 0) _errors.Add(new HeaderError(_line, "unterminated #if block"));
        _tokens.Add(new Token(TokenKind.End, "", _line, null));
    }

    private void ReadBlockComment()
    {
        int start = _pos;
        int end = _text.IndexOf("*/", _pos + 2, System.StringComparison.Ordinal);
        if (end < 0)
        {
            _errors.Add(new HeaderError(_line, "unterminated comment"));
            end = _text.Length - 2;
        }
        string body = _text.Substring(start + 2, end - start - 2);
        _pos = end + 2;
        foreach (char ch in body) if (ch == '\n') _line++;
        bool isDoc = body.StartsWith("*", System.StringComparison.Ordinal) && !body.StartsWith("**", System.StringComparison.Ordinal) && body.Length > 1;
        if (isDoc) _pendingDoc = CleanDoc(body.Substring(1));
    }

    /// <summary>Joins the lines of a doc comment, dropping the leading '*' decoration.</summary>
    private static string CleanDoc(string body)
    {
        var sb = new StringBuilder();
        foreach (string raw in body.Split('\n'))
        {
            string line = raw.Trim();
            if (line.StartsWith("*", System.StringComparison.Ordinal)) line = line.Substring(1).Trim();
            if (line.Length == 0) continue;
            if (sb.Length > 0) sb.Append(' ');
            sb.Append(line);
        }
        return sb.ToString();
    }

    private void ReadDirective()
    {
        int line = _line;
        var sb = new StringBuilder();
        while (_pos < _text.Length && _text[_pos] != '\n')
        {
            if (_text[_pos] == '\\' && Peek(1) == '\n')
            {
                _pos += 2;
                _line++;
                sb.Append(' ');
                continue;
            }
            if (_text[_pos] == '/' && Peek(1) == '*')
            {
                int save = _line;
                string? doc = _pendingDoc;
                ReadBlockComment();
                _pendingDoc = doc;
                if (_line != save) break;
                continue;
            }
            if (_text[_pos] == '/' && Peek(1) == '/')
            {
                while (_pos < _text.Length && _text[_pos] != '\n') _pos++;
                break;
            }
            sb.Append(_text[_pos]);
            _pos++;
        }
        string[] words = sb.ToString().Substring(1).Trim().Split(new[] { ' ', '\t' }, System.StringSplitOptions.RemoveEmptyEntries);
        string directive = words.Length > 0 ? words[0] : "";
        string? doc2 = _pendingDoc;
        _pendingDoc = null;
        switch (directive)
        {
            case "if":
            case "ifdef":
            case "ifndef":
                bool cplusplus = directive == "ifdef" && words.Length == 2 && words[1] == "__cplusplus";
                _skip.Push(Skipping || cplusplus);
                break;
            case "elif":
            case "else":
                if (_skip.Count == 0) _errors.Add(new HeaderError(line, "#" + directive + " without #if"));
                break;
            case "endif":
                if (_skip.Count == 0) _errors.Add(new HeaderError(line, "#endif without #if"));
                else _skip.Pop();
                break;
            case "define":
                if (!Skipping) ReadDefine(words, line, doc2);
                break;
            case "include":
            case "undef":
            case "pragma":
            case "error":
                break;
            default:
                _errors.Add(new HeaderError(line, "unsupported preprocessor directive '#" + directive + "'"));
                break;
        }
    }

    private void ReadDefine(string[] words, int line, string? doc)
    {
        if (words.Length < 2) return;
        string name = words[1];
        // The include guard, the export macro block and macros of other prefixes are not part of the binding.
        if (!name.StartsWith("QWEN3VL_", System.StringComparison.Ordinal) || name == "QWEN3VL_API" || name == "QWEN3VL_H"
            || name == HeaderParser.OptionalMarker) return;
        if (words.Length == 3 && TryParseInteger(words[2], out long value))
        {
            _constants.Add(new DefineConstant(name, value, doc, line));
            return;
        }
        _errors.Add(new HeaderError(line, "#define " + name + " is not of the form '#define QWEN3VL_<NAME> <integer literal>'"));
    }

    /// <summary>Decimal or hexadecimal integer literal, optionally negative, with an optional u/l suffix.</summary>
    public static bool TryParseInteger(string text, out long value)
    {
        value = 0;
        bool negative = text.StartsWith("-", System.StringComparison.Ordinal);
        if (negative) text = text.Substring(1);
        text = text.TrimEnd('u', 'U', 'l', 'L');
        bool ok = text.StartsWith("0x", System.StringComparison.OrdinalIgnoreCase)
            ? long.TryParse(text.Substring(2), System.Globalization.NumberStyles.AllowHexSpecifier, System.Globalization.CultureInfo.InvariantCulture, out value)
            : text.Length > 0 && char.IsDigit(text[0]) && long.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out value);
        if (negative) value = -value;
        return ok;
    }
}
