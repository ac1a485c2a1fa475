using System.Collections.Generic;

namespace Qwen3VL.Native.Interop.Generation;

/// <summary>
/// Recursive-descent parser of the header grammar (see the top comment of qwen3vl.h):
/// <code>
/// typedef enum N { M = int, ... } N;
/// typedef struct N { type name; | type name[LEN]; ... } N;
/// typedef struct N N;                          (opaque handle)
/// typedef ret (*N)(params);                    (function pointer)
/// QWEN3VL_API ret name(params);
/// </code>
/// A declaration it cannot read is reported with its line and skipped up to the next ';' at brace depth 0.
/// </summary>
internal sealed class HeaderParser
{
    private static readonly HashSet<string> TypeQualifiersIgnored = new HashSet<string> { "struct", "enum" };

    private readonly List<Token> _tokens;
    private readonly List<HeaderError> _errors;
    private readonly HeaderModel _model = new HeaderModel();
    private int _pos;

    private HeaderParser(List<Token> tokens, List<HeaderError> errors)
    {
        _tokens = tokens;
        _errors = errors;
    }

    public static HeaderModel Parse(string text, List<HeaderError> errors)
    {
        var (tokens, constants) = CLexer.Lex(text, errors);
        var parser = new HeaderParser(tokens, errors);
        parser._model.Constants.AddRange(constants);
        parser.ParseAll();
        return parser._model;
    }

    private sealed class ParseException : System.Exception
    {
        public ParseException(int line, string message) : base(message) { Line = line; }
        public int Line { get; }
    }

    private Token Current => _tokens[_pos];

    private Token Next() => _tokens[_pos < _tokens.Count - 1 ? _pos++ : _pos];

    private Token Expect(string text)
    {
        if (!Current.Is(text)) throw Error("expected '" + text + "' but found " + Current);
        return Next();
    }

    private string ExpectIdentifier(string what)
    {
        if (Current.Kind != TokenKind.Identifier) throw Error("expected " + what + " but found " + Current);
        return Next().Text;
    }

    private ParseException Error(string message) => new ParseException(Current.Line, message);

    private void ParseAll()
    {
        while (Current.Kind != TokenKind.End)
        {
            int start = _pos;
            try
            {
                ParseDeclaration();
            }
            catch (ParseException e)
            {
                _errors.Add(new HeaderError(e.Line, e.Message + " (declaration starting at line " + _tokens[start].Line + ")"));
                Recover(start);
            }
        }
    }

    /// <summary>Skips to just after the next ';' at brace depth 0, counted from the declaration's first token.</summary>
    private void Recover(int start)
    {
        _pos = start;
        int depth = 0;
        while (Current.Kind != TokenKind.End)
        {
            Token t = Next();
            if (t.Is("{")) depth++;
            else if (t.Is("}")) depth--;
            else if (t.Is(";") && depth <= 0) return;
        }
    }

    private void ParseDeclaration()
    {
        Token first = Current;
        if (first.Is("typedef"))
        {
            Next();
            if (Current.Is("enum")) { Next(); ParseEnum(first); return; }
            if (Current.Is("struct")) { Next(); ParseStruct(first); return; }
            ParseFunctionPointer(first);
            return;
        }
        if (first.Is("QWEN3VL_API"))
        {
            Next();
            ParseFunction(first);
            return;
        }
        throw Error("unexpected " + first + "; expected 'typedef' or 'QWEN3VL_API'");
    }

    private void ParseEnum(Token first)
    {
        string name = ExpectIdentifier("enum name");
        Expect("{");
        var members = new List<EnumMember>();
        while (!Current.Is("}"))
        {
            Token memberToken = Current;
            string member = ExpectIdentifier("enum member");
            if (!Current.Is("=")) throw Error("enum member " + member + " needs an explicit value");
            Next();
            long value = ParseIntegerValue();
            members.Add(new EnumMember(member, value, memberToken.Doc));
            if (Current.Is(",")) Next();
            else if (!Current.Is("}")) throw Error("expected ',' or '}' after enum member " + member + " but found " + Current);
        }
        Next();
        ExpectTypedefName(name);
        if (members.Count == 0) throw new ParseException(first.Line, "enum " + name + " has no members");
        _model.Enums.Add(new EnumDecl(name, first.Doc, first.Line, members));
    }

    /// <summary>An integer literal (optionally negative) or a previously defined QWEN3VL_ constant.</summary>
    private long ParseIntegerValue()
    {
        bool negative = false;
        if (Current.Is("-")) { Next(); negative = true; }
        Token t = Current;
        long value;
        if (t.Kind == TokenKind.Number && CLexer.TryParseInteger(t.Text, out value)) { }
        else if (t.Kind == TokenKind.Identifier && TryConstant(t.Text, out value)) { }
        else throw Error("expected an integer literal but found " + t);
        Next();
        if (!Current.Is(",") && !Current.Is("}") && !Current.Is("]")) throw Error("only plain integer values are supported, found " + Current + " after " + t);
        return negative ? -value : value;
    }

    private bool TryConstant(string name, out long value)
    {
        foreach (DefineConstant c in _model.Constants)
        {
            if (c.Name == name) { value = c.Value; return true; }
        }
        value = 0;
        return false;
    }

    private void ExpectTypedefName(string name)
    {
        string alias = ExpectIdentifier("typedef name");
        if (alias != name) throw Error("typedef name " + alias + " must repeat the tag name " + name);
        Expect(";");
    }

    private void ParseStruct(Token first)
    {
        string name = ExpectIdentifier("struct name");
        if (Current.Kind == TokenKind.Identifier)
        {
            ExpectTypedefName(name);
            _model.Structs.Add(new StructDecl(name, first.Doc, first.Line, null));
            return;
        }
        Expect("{");
        var fields = new List<StructField>();
        while (!Current.Is("}"))
        {
            Token fieldToken = Current;
            bool optional = Current.Is(OptionalMarker);
            if (optional) Next();
            CType type = ParseType();
            string field = ExpectIdentifier("field name");
            string? length = null;
            if (Current.Is("["))
            {
                Next();
                Token len = Current;
                if (len.Kind != TokenKind.Number && len.Kind != TokenKind.Identifier) throw Error("expected an array length but found " + len);
                length = Next().Text;
                Expect("]");
            }
            Expect(";");
            fields.Add(new StructField(type, field, length, fieldToken.Doc, fieldToken.Line, optional));
        }
        Next();
        ExpectTypedefName(name);
        if (fields.Count == 0) throw new ParseException(first.Line, "struct " + name + " has no fields");
        _model.Structs.Add(new StructDecl(name, first.Doc, first.Line, fields));
    }

    private void ParseFunctionPointer(Token first)
    {
        CType ret = ParseType();
        Expect("(");
        Expect("*");
        string name = ExpectIdentifier("function pointer type name");
        Expect(")");
        List<CParam> parameters = ParseParameters();
        Expect(";");
        _model.FunctionPointers.Add(new FunctionDecl(name, ret, parameters, first.Doc, first.Line, true));
    }

    private void ParseFunction(Token first)
    {
        CType ret = ParseType();
        string name = ExpectIdentifier("function name");
        List<CParam> parameters = ParseParameters();
        Expect(";");
        _model.Functions.Add(new FunctionDecl(name, ret, parameters, first.Doc, first.Line, false));
    }

    /// <summary>The header's marker for a parameter that may be NULL (defined empty in qwen3vl.h).</summary>
    public const string OptionalMarker = "QWEN3VL_OPTIONAL";

    private List<CParam> ParseParameters()
    {
        Expect("(");
        var list = new List<CParam>();
        if (Current.Is("void") && _tokens[_pos + 1].Is(")"))
        {
            Next();
            Next();
            return list;
        }
        while (true)
        {
            bool optional = Current.Is(OptionalMarker);
            if (optional) Next();
            CType type = ParseType();
            string name = ExpectIdentifier("parameter name");
            list.Add(new CParam(type, name, optional));
            if (Current.Is(",")) { Next(); continue; }
            Expect(")");
            return list;
        }
    }

    /// <summary><c>[const] name [const] {*}</c>; a leading 'struct'/'enum' keyword is allowed.</summary>
    private CType ParseType()
    {
        bool isConst = false;
        if (Current.Is("const")) { Next(); isConst = true; }
        if (TypeQualifiersIgnored.Contains(Current.Text) && Current.Kind == TokenKind.Identifier) Next();
        string name = ExpectIdentifier("type name");
        if (name == "unsigned" || name == "signed" || name == "long" || name == "short")
            throw Error("use the <stdint.h> types instead of '" + name + "'");
        if (Current.Is("const")) { Next(); isConst = true; }
        int pointers = 0;
        while (Current.Is("*"))
        {
            Next();
            pointers++;
            if (Current.Is("const")) Next(); // a const pointer is the same type for the binding
        }
        return new CType(name, isConst, pointers);
    }
}
