using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Text;
using Microsoft.CodeAnalysis.CSharp;

namespace Qwen3VL.Native.Interop.Generation;

/// <summary>
/// Writes the C# binding for a parsed header. Declarations whose types cannot be mapped are reported and left out
/// (the build fails on the diagnostic, so nothing is skipped silently).
/// </summary>
/// <remarks>
/// Source generators cannot see each other's output, so <c>[LibraryImport]</c> stubs emitted here would never be
/// implemented. The generator therefore writes what LibraryImport would: a blittable <c>[DllImport]</c> (the
/// assembly disables runtime marshalling, so the runtime adds no marshalling of its own, as with LibraryImport) plus,
/// where SafeHandles or strings are involved, a managed stub doing the marshalling by hand.
/// </remarks>
internal sealed class CSharpEmitter
{
    private const string Prefix = "qwen3vl_";
    private const string MacroPrefix = "QWEN3VL_";
    private const string StatusEnum = "qwen3vl_status";
    private const string Library = "qwen3vl";

    private static readonly Dictionary<string, string> Primitives = new Dictionary<string, string>
    {
        ["int8_t"] = "sbyte", ["uint8_t"] = "byte", ["int16_t"] = "short", ["uint16_t"] = "ushort",
        ["int32_t"] = "int", ["uint32_t"] = "uint", ["int64_t"] = "long", ["uint64_t"] = "ulong",
        ["int"] = "int", ["size_t"] = "nuint", ["float"] = "float", ["double"] = "double",
        ["char"] = "byte", ["void"] = "void",
    };

    private readonly HeaderModel _model;
    private readonly List<HeaderError> _errors;
    private readonly Dictionary<string, EnumDecl> _enums = new Dictionary<string, EnumDecl>();
    private readonly Dictionary<string, StructDecl> _structs = new Dictionary<string, StructDecl>();
    private readonly Dictionary<string, StructDecl> _handles = new Dictionary<string, StructDecl>();
    private readonly Dictionary<string, FunctionDecl> _functionPointers = new Dictionary<string, FunctionDecl>();
    private readonly Dictionary<string, DefineConstant> _constants = new Dictionary<string, DefineConstant>();
    private readonly StringBuilder _sb = new StringBuilder();

    private CSharpEmitter(HeaderModel model, List<HeaderError> errors)
    {
        _model = model;
        _errors = errors;
    }

    private sealed class EmitException : System.Exception
    {
        public EmitException(string message) : base(message) { }
    }

    public static string Emit(HeaderModel model, List<HeaderError> errors)
    {
        var emitter = new CSharpEmitter(model, errors);
        emitter.EmitAll();
        return emitter._sb.ToString();
    }

    // ---- names -------------------------------------------------------------------------------------------------

    internal static string Pascal(string snake)
    {
        var sb = new StringBuilder();
        foreach (string part in snake.Split('_'))
        {
            if (part.Length == 0) continue;
            sb.Append(char.ToUpperInvariant(part[0]));
            sb.Append(part.Substring(1).ToLowerInvariant());
        }
        string result = sb.ToString();
        return result.Length > 0 && char.IsDigit(result[0]) ? "_" + result : result;
    }

    private static string StripPrefix(string name, string prefix) =>
        name.StartsWith(prefix, System.StringComparison.Ordinal) ? name.Substring(prefix.Length) : name;

    private static string TypeName(string cName) => Pascal(StripPrefix(cName, Prefix));

    private static string HandleName(string cName) => TypeName(cName) + "Handle";

    /// <summary>The blittable form of a struct with handle fields, nested in its C# form.</summary>
    private const string RawName = "Raw";

    /// <summary>
    /// A struct with handle fields ("bound"): its C# form holds SafeHandles and the raw form (<see cref="RawName"/>)
    /// the native pointers; the generated stub of a function taking it fills the raw form, holding a reference on each
    /// handle for the call.
    /// </summary>
    private bool IsBound(StructDecl s) => s.Fields != null && s.Fields.Any(f => _handles.ContainsKey(f.Type.Name));

    private bool IsBoundStruct(string cName) => _structs.TryGetValue(cName, out StructDecl? s) && IsBound(s!);

    private static string FieldName(StructDecl s, StructField f)
    {
        string fieldName = Pascal(f.Name);
        return fieldName == TypeName(s.Name) || fieldName == RawName ? fieldName + "Value" : fieldName;
    }

    private static string ParamName(string cName)
    {
        string pascal = Pascal(cName).TrimStart('_');
        string camel = pascal.Length == 0 ? "arg" : char.ToLowerInvariant(pascal[0]) + pascal.Substring(1);
        bool keyword = SyntaxFacts.GetKeywordKind(camel) != SyntaxKind.None || SyntaxFacts.GetContextualKeywordKind(camel) != SyntaxKind.None;
        return keyword ? "@" + camel : camel;
    }

    /// <summary>Longest prefix ending in '_' shared by all member names.</summary>
    private static string CommonPrefix(List<EnumMember> members)
    {
        string prefix = members[0].Name;
        foreach (EnumMember m in members)
        {
            int n = 0;
            while (n < prefix.Length && n < m.Name.Length && prefix[n] == m.Name[n]) n++;
            prefix = prefix.Substring(0, n);
        }
        int cut = prefix.LastIndexOf('_');
        // Never strip a whole name: keep at least one segment of every member.
        while (cut >= 0 && members.Any(m => m.Name.Length == cut + 1)) cut = prefix.LastIndexOf('_', cut - 1);
        return cut < 0 ? "" : prefix.Substring(0, cut + 1);
    }

    private static string Escape(string text) =>
        text.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;");

    private void Doc(string indent, string? doc)
    {
        if (string.IsNullOrEmpty(doc)) return;
        _sb.Append(indent).Append("/// <summary>").Append(Escape(doc!)).AppendLine("</summary>");
    }

    private static string NativeNameAttribute(string name) => "[NativeName(\"" + name + "\")]";

    // ---- types -------------------------------------------------------------------------------------------------

    /// <summary>The blittable C# type of a C type (fields, raw P/Invoke signatures, function pointers).</summary>
    private string Blittable(CType type)
    {
        string stars = new string('*', type.Pointers);
        if (Primitives.TryGetValue(type.Name, out string? primitive))
        {
            if (type.Pointers == 0 && type.Name == "char") throw new EmitException("'char' is only supported as an array or a pointer");
            return primitive + stars;
        }
        if (_enums.ContainsKey(type.Name)) return TypeName(type.Name) + stars;
        if (_structs.ContainsKey(type.Name))
            return TypeName(type.Name) + (IsBoundStruct(type.Name) ? "." + RawName : "") + stars;
        if (_handles.ContainsKey(type.Name))
        {
            if (type.Pointers == 0) throw new EmitException("opaque type " + type.Name + " can only be used through a pointer");
            return "nint" + new string('*', type.Pointers - 1);
        }
        if (_functionPointers.TryGetValue(type.Name, out FunctionDecl? fn))
        {
            if (type.Pointers != 0) throw new EmitException("pointers to function pointer " + type.Name + " are not supported");
            return FunctionPointerType(fn!);
        }
        throw new EmitException("unknown type '" + type + "'");
    }

    private string FunctionPointerType(FunctionDecl fn)
    {
        var types = fn.Parameters.Select(p => NonVoid(p.Type)).ToList();
        types.Add(Blittable(fn.ReturnType));
        return "delegate* unmanaged[Cdecl]<" + string.Join(", ", types) + ">";
    }

    private string NonVoid(CType type)
    {
        if (type.Name == "void" && type.Pointers == 0) throw new EmitException("'void' parameter or field");
        return Blittable(type);
    }

    // ---- declarations ------------------------------------------------------------------------------------------

    private void EmitAll()
    {
        foreach (DefineConstant c in _model.Constants) _constants[c.Name] = c;
        foreach (EnumDecl e in _model.Enums) _enums[e.Name] = e;
        foreach (StructDecl s in _model.Structs) (s.Fields == null ? _handles : _structs)[s.Name] = s;
        foreach (FunctionDecl f in _model.FunctionPointers) _functionPointers[f.Name] = f;

        _sb.AppendLine("// <auto-generated>Generated by Qwen3VL.Native.Generator from native/capi/qwen3vl.h. Do not edit.</auto-generated>");
        _sb.AppendLine("#nullable enable");
        _sb.AppendLine("using System;");
        _sb.AppendLine("using System.Runtime.InteropServices;");
        _sb.AppendLine("using System.Runtime.InteropServices.Marshalling;");
        _sb.AppendLine();
        _sb.AppendLine("namespace Qwen3VL.Native.Interop;");
        _sb.AppendLine();

        EmitConstants();
        foreach (EnumDecl e in _model.Enums) Guarded(e.Line, () => EmitEnum(e));
        foreach (StructDecl s in _model.Structs) Guarded(s.Line, () => { if (s.Fields == null) EmitHandle(s); else EmitStruct(s); });
        foreach (FunctionDecl f in _model.FunctionPointers) Guarded(f.Line, () => FunctionPointerType(f));
        EmitFunctions();
    }

    private void Guarded(int line, System.Action action)
    {
        int length = _sb.Length;
        try
        {
            action();
        }
        catch (EmitException e)
        {
            _sb.Length = length;
            _errors.Add(new HeaderError(line, e.Message));
        }
    }

    private void EmitConstants()
    {
        _sb.AppendLine("/// <summary>The integer <c>#define</c>s of qwen3vl.h.</summary>");
        _sb.AppendLine("internal static class NativeConstants");
        _sb.AppendLine("{");
        foreach (DefineConstant c in _model.Constants)
        {
            Doc("    ", c.Doc);
            string type = c.Value >= int.MinValue && c.Value <= int.MaxValue ? "int" : "long";
            _sb.Append("    ").AppendLine(NativeNameAttribute(c.Name));
            _sb.Append("    public const ").Append(type).Append(' ').Append(Pascal(StripPrefix(c.Name, MacroPrefix)))
                .Append(" = ").Append(c.Value.ToString(CultureInfo.InvariantCulture)).AppendLine(";");
        }
        _sb.AppendLine("}");
        _sb.AppendLine();
    }

    private void EmitEnum(EnumDecl e)
    {
        string prefix = CommonPrefix(e.Members);
        bool flags = e.Name.EndsWith("_flag", System.StringComparison.Ordinal) || e.Name.EndsWith("_feature", System.StringComparison.Ordinal);
        Doc("", e.Doc);
        _sb.AppendLine(NativeNameAttribute(e.Name));
        if (flags) _sb.AppendLine("[Flags]");
        _sb.Append("internal enum ").AppendLine(TypeName(e.Name));
        _sb.AppendLine("{");
        foreach (EnumMember m in e.Members)
        {
            if (m.Value < int.MinValue || m.Value > int.MaxValue) throw new EmitException("value of " + m.Name + " does not fit a C enum (int)");
            Doc("    ", m.Doc);
            _sb.Append("    ").AppendLine(NativeNameAttribute(m.Name));
            _sb.Append("    ").Append(Pascal(m.Name.Substring(prefix.Length))).Append(" = ")
                .Append(m.Value.ToString(CultureInfo.InvariantCulture)).AppendLine(",");
        }
        _sb.AppendLine("}");
        _sb.AppendLine();
    }

    private void EmitStruct(StructDecl s)
    {
        if (IsBound(s))
        {
            EmitBoundStruct(s);
            return;
        }
        string typeName = TypeName(s.Name);
        Doc("", s.Doc);
        _sb.AppendLine(NativeNameAttribute(s.Name));
        _sb.AppendLine("[StructLayout(LayoutKind.Sequential)]");
        _sb.Append("internal unsafe struct ").AppendLine(typeName);
        _sb.AppendLine("{");
        EmitRawFields(s, "    ");
        _sb.AppendLine("}");
        _sb.AppendLine();
    }

    /// <summary>The blittable fields of a struct: handles as <c>nint</c>, arrays as fixed buffers.</summary>
    private void EmitRawFields(StructDecl s, string indent)
    {
        foreach (StructField f in s.Fields!)
        {
            if (f.Optional && !_handles.ContainsKey(f.Type.Name))
                throw new EmitException("field " + f.Name + " of " + s.Name + ": QWEN3VL_OPTIONAL applies to handle fields only");
            if (_handles.ContainsKey(f.Type.Name) && (f.Type.Pointers != 1 || f.ArrayLength != null))
                throw new EmitException("field " + f.Name + " of " + s.Name + ": a handle field must be a single pointer ('" + f.Type.Name + "* " + f.Name + ";')");
            if (IsBoundStruct(f.Type.Name)) throw new EmitException("field " + f.Name + " of " + s.Name + ": a struct with handle fields cannot be nested");
            Doc(indent, f.Doc);
            _sb.Append(indent).AppendLine(NativeNameAttribute(f.Name));
            if (f.ArrayLength == null)
            {
                _sb.Append(indent).Append("public ").Append(NonVoid(f.Type)).Append(' ').Append(FieldName(s, f)).AppendLine(";");
                continue;
            }
            _sb.Append(indent).Append("public fixed ").Append(ArrayElement(s, f)).Append(' ').Append(FieldName(s, f)).Append('[').Append(ArrayLength(s, f)).AppendLine("];");
        }
    }

    private static string ArrayElement(StructDecl s, StructField f)
    {
        if (f.Type.Pointers != 0 || !Primitives.TryGetValue(f.Type.Name, out string? element) || element == "void" || element == "nuint")
            throw new EmitException("array field " + f.Name + " of struct " + s.Name + " must have a fixed-size primitive element type, not '" + f.Type + "'");
        return element!;
    }

    private string ArrayLength(StructDecl s, StructField f)
    {
        if (CLexer.TryParseInteger(f.ArrayLength!, out long n)) return n.ToString(CultureInfo.InvariantCulture);
        if (_constants.ContainsKey(f.ArrayLength!)) return "NativeConstants." + Pascal(StripPrefix(f.ArrayLength!, MacroPrefix));
        throw new EmitException("array length '" + f.ArrayLength + "' of " + s.Name + "." + f.Name + " is not a number or a QWEN3VL_ constant");
    }

    /// <summary>
    /// A struct with handle fields: the C# form (handles as nullable SafeHandles, no native name: it has no native
    /// layout) with the blittable <see cref="RawName"/> form nested in it, and <c>FromRaw</c> for values the library
    /// returns (which must hold no handles).
    /// </summary>
    private void EmitBoundStruct(StructDecl s)
    {
        string typeName = TypeName(s.Name);
        Doc("", s.Doc);
        _sb.Append("/// <remarks>The C# form of <c>").Append(s.Name).Append("</c>: handles are SafeHandles; the generated call takes a reference on each for its duration and passes <see cref=\"").Append(RawName).AppendLine("\"/>.</remarks>");
        _sb.Append("internal unsafe struct ").AppendLine(typeName);
        _sb.AppendLine("{");
        foreach (StructField f in s.Fields!)
        {
            Doc("    ", f.Doc);
            string name = FieldName(s, f);
            if (_handles.ContainsKey(f.Type.Name))
                _sb.Append("    public ").Append(HandleName(f.Type.Name)).Append("? ").Append(name).AppendLine(";");
            else if (f.ArrayLength == null)
                _sb.Append("    public ").Append(NonVoid(f.Type)).Append(' ').Append(name).AppendLine(";");
            else
                _sb.Append("    public fixed ").Append(ArrayElement(s, f)).Append(' ').Append(name).Append('[').Append(ArrayLength(s, f)).AppendLine("];");
        }
        _sb.AppendLine();
        _sb.Append("    /// <summary>The native layout of <c>").Append(s.Name).AppendLine("</c>.</summary>");
        _sb.Append("    ").AppendLine(NativeNameAttribute(s.Name));
        _sb.AppendLine("    [StructLayout(LayoutKind.Sequential)]");
        _sb.Append("    internal unsafe struct ").AppendLine(RawName);
        _sb.AppendLine("    {");
        EmitRawFields(s, "        ");
        _sb.AppendLine("    }");
        _sb.AppendLine();
        _sb.Append("    /// <summary>The C# form of a value the library returned; a handle in it is refused (its ownership would be unclear).</summary>");
        _sb.AppendLine();
        _sb.Append("    internal static ").Append(typeName).Append(" FromRaw(in ").Append(RawName).AppendLine(" raw)");
        _sb.AppendLine("    {");
        _sb.Append("        var value = new ").Append(typeName).AppendLine("();");
        foreach (StructField f in s.Fields!)
        {
            string name = FieldName(s, f);
            if (_handles.ContainsKey(f.Type.Name))
                _sb.Append("        if (raw.").Append(name).Append(" != 0) throw new InvalidOperationException(\"").Append(s.Name).Append('.').Append(f.Name).AppendLine(" returned a handle\");");
            else if (f.ArrayLength == null)
                _sb.Append("        value.").Append(name).Append(" = raw.").Append(name).AppendLine(";");
            else
                _sb.Append("        for (int i = 0; i < ").Append(ArrayLength(s, f)).Append("; i++) value.").Append(name).Append("[i] = raw.").Append(name).AppendLine("[i];");
        }
        _sb.AppendLine("        return value;");
        _sb.AppendLine("    }");
        _sb.AppendLine("}");
        _sb.AppendLine();
    }

    private void EmitHandle(StructDecl s)
    {
        string free = s.Name + "_free";
        FunctionDecl? fn = _model.Functions.FirstOrDefault(f => f.Name == free);
        if (fn == null || fn.ReturnType.Name != "void" || fn.ReturnType.Pointers != 0 || fn.Parameters.Count != 1
            || fn.Parameters[0].Type.Name != s.Name || fn.Parameters[0].Type.Pointers != 1)
            throw new EmitException("opaque type " + s.Name + " needs a release function 'QWEN3VL_API void " + free + "(" + s.Name + "* x);'");
        string name = HandleName(s.Name);
        Doc("", s.Doc);
        _sb.AppendLine(NativeNameAttribute(s.Name));
        _sb.Append("internal sealed class ").Append(name).AppendLine(" : NativeHandle");
        _sb.AppendLine("{");
        _sb.AppendLine("    /// <summary>An invalid handle; the binding fills it from an out-parameter.</summary>");
        _sb.Append("    public ").Append(name).AppendLine("() { }");
        _sb.AppendLine();
        _sb.Append("    /// <summary>Releases the native object with <c>").Append(free).AppendLine("</c>.</summary>");
        _sb.Append("    protected override void Free(nint handle) => NativeMethods.").Append(TypeName(free)).AppendLine("(handle);");
        _sb.AppendLine("}");
        _sb.AppendLine();
    }

    // ---- functions ---------------------------------------------------------------------------------------------

    private enum ParamKind { Blittable, HandleIn, HandleOut, Utf8String, BoundStructIn }

    private sealed class MappedParam
    {
        public MappedParam(ParamKind kind, string managedType, string nativeType, string name, string local, bool optional = false,
            StructDecl? boundStruct = null)
        {
            BoundStruct = boundStruct;
            Kind = kind;
            ManagedType = managedType;
            NativeType = nativeType;
            Name = name;
            Local = local;
            Optional = optional;
        }

        public bool Optional { get; }

        /// <summary>For <see cref="ParamKind.BoundStructIn"/>: the struct passed.</summary>
        public StructDecl? BoundStruct { get; }

        public ParamKind Kind { get; }
        public string ManagedType { get; }
        public string NativeType { get; }
        public string Name { get; }
        public string Local { get; }

        private string Modifier => Kind switch { ParamKind.HandleOut => "out ", ParamKind.BoundStructIn => "in ", _ => "" };
        public string Declaration => Modifier + ManagedType + (Optional ? "? " : " ") + Name;
        public string Argument => Modifier + Name;
    }

    private MappedParam MapParam(FunctionDecl fn, CParam p)
    {
        string name = ParamName(p.Name);
        string local = "__" + name.TrimStart('@');
        CType t = p.Type;
        bool isFree = fn.Name == t.Name + "_free" && _handles.ContainsKey(t.Name);
        if (_handles.ContainsKey(t.Name) && !isFree)
        {
            if (t.Pointers == 1) return new MappedParam(ParamKind.HandleIn, HandleName(t.Name), "nint", name, local, p.Optional);
            if (t.Pointers == 2 && !t.IsConst) return new MappedParam(ParamKind.HandleOut, HandleName(t.Name), "nint*", name, local);
            throw new EmitException("parameter " + p.Name + " of " + fn.Name + ": '" + t + "' is not a handle (X*) or an out-handle (X**)");
        }
        if (p.Optional) throw new EmitException("parameter " + p.Name + " of " + fn.Name + ": QWEN3VL_OPTIONAL applies to handle parameters only");
        if (IsBoundStruct(t.Name))
        {
            if (t.Pointers != 1 || !t.IsConst)
                throw new EmitException("parameter " + p.Name + " of " + fn.Name + ": a struct with handle fields is passed as 'const " + t.Name + "*' only");
            return new MappedParam(ParamKind.BoundStructIn, TypeName(t.Name), TypeName(t.Name) + "." + RawName + "*", name, local,
                boundStruct: _structs[t.Name]);
        }
        if (t.Name == "char" && t.Pointers == 1 && t.IsConst) return new MappedParam(ParamKind.Utf8String, "string?", "byte*", name, local);
        string type = NonVoid(t);
        return new MappedParam(ParamKind.Blittable, type, type, name, local);
    }

    private IEnumerable<StructField> BoundHandleFields(MappedParam p) =>
        p.BoundStruct!.Fields!.Where(f => _handles.ContainsKey(f.Type.Name));

    /// <summary>Fills the raw form of a struct argument: values copied, each handle present referenced (a required one
    /// missing is an <see cref="System.ArgumentNullException"/>, as for a handle parameter).</summary>
    private void EmitBoundStructFill(StringBuilder raw, MappedParam p)
    {
        StructDecl s = p.BoundStruct!;
        string value = p.Local + "Value";
        foreach (StructField f in s.Fields!)
        {
            string field = FieldName(s, f);
            if (_handles.ContainsKey(f.Type.Name))
            {
                string added = p.Local + "_" + field + "Added";
                string indent = f.Optional ? "                " : "            ";
                if (f.Optional)
                {
                    raw.Append("            if (").Append(value).Append('.').Append(field).AppendLine(" is not null)");
                    raw.AppendLine("            {");
                }
                else
                {
                    raw.Append("            if (").Append(value).Append('.').Append(field).Append(" is null) throw new ArgumentNullException(nameof(").Append(p.Name)
                        .Append("), \"").Append(s.Name).Append('.').Append(f.Name).AppendLine(" is required\");");
                }
                raw.Append(indent).Append(value).Append('.').Append(field).Append(".DangerousAddRef(ref ").Append(added).AppendLine(");");
                raw.Append(indent).Append(p.Local).Append('.').Append(field).Append(" = ").Append(value).Append('.').Append(field).AppendLine(".DangerousGetHandle();");
                if (f.Optional) raw.AppendLine("            }");
            }
            else if (f.ArrayLength == null)
                raw.Append("            ").Append(p.Local).Append('.').Append(field).Append(" = ").Append(value).Append('.').Append(field).AppendLine(";");
            else
                raw.Append("            for (int __i = 0; __i < ").Append(ArrayLength(s, f)).Append("; __i++) ").Append(p.Local).Append('.').Append(field)
                    .Append("[__i] = ").Append(value).Append('.').Append(field).AppendLine("[__i];");
        }
    }

    private string MapReturn(FunctionDecl fn)
    {
        CType t = fn.ReturnType;
        if (t.Name == "char" && t.Pointers == 1) return "nint"; // library-owned string: never freed by the binding
        if (_handles.ContainsKey(t.Name)) throw new EmitException(fn.Name + " returns a handle; return handles through an out-parameter (X**)");
        if (IsBoundStruct(t.Name) && t.Pointers != 0) throw new EmitException(fn.Name + " returns a pointer to a struct with handle fields");
        return Blittable(t);
    }

    private void EmitFunctions()
    {
        string? ok = null;
        if (_enums.TryGetValue(StatusEnum, out EnumDecl? status))
        {
            EnumMember? okMember = status!.Members.FirstOrDefault(m => m.Value == 0);
            if (okMember != null) ok = TypeName(StatusEnum) + "." + Pascal(okMember.Name.Substring(CommonPrefix(status.Members).Length));
        }
        if (ok == null) _errors.Add(new HeaderError(1, "the header must declare enum " + StatusEnum + " with an OK member of value 0"));

        var raw = new StringBuilder();
        var checkedWrappers = new StringBuilder();
        foreach (FunctionDecl fn in _model.Functions)
        {
            try
            {
                EmitFunction(fn, raw, checkedWrappers, ok);
            }
            catch (EmitException e)
            {
                _errors.Add(new HeaderError(fn.Line, e.Message));
            }
        }

        _sb.AppendLine("/// <summary>The raw exports of the native library, one per <c>QWEN3VL_API</c> function.</summary>");
        _sb.AppendLine("internal static unsafe partial class NativeMethods");
        _sb.AppendLine("{");
        _sb.Append(raw);
        _sb.AppendLine("}");
        _sb.AppendLine();
        _sb.AppendLine("/// <summary>Checked calls: each throws <see cref=\"global::Qwen3VL.Native.Qwen3VLException\"/> on a non-OK status.</summary>");
        _sb.AppendLine("internal static unsafe partial class Native");
        _sb.AppendLine("{");
        _sb.Append(checkedWrappers);
        _sb.AppendLine("}");
    }

    private void EmitFunction(FunctionDecl fn, StringBuilder raw, StringBuilder checkedWrappers, string? ok)
    {
        if (!fn.Name.StartsWith(Prefix, System.StringComparison.Ordinal)) throw new EmitException("function " + fn.Name + " lacks the " + Prefix + " prefix");
        string name = TypeName(fn.Name);
        string ret = MapReturn(fn);
        List<MappedParam> ps = fn.Parameters.Select(p => MapParam(fn, p)).ToList();
        bool boundReturn = IsBoundStruct(fn.ReturnType.Name);
        string managedRet = boundReturn ? TypeName(fn.ReturnType.Name) : ret;
        bool needsStub = boundReturn || ps.Any(p => p.Kind != ParamKind.Blittable);
        string doc = string.IsNullOrEmpty(fn.Doc) ? "" : "    /// <summary>" + Escape(fn.Doc!) + "</summary>\n";
        string dllImport = "    [DllImport(\"" + Library + "\", EntryPoint = \"" + fn.Name + "\", CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]\n";
        string nativeParams = string.Join(", ", ps.Select(p => p.NativeType + " " + p.Name));

        if (!needsStub)
        {
            raw.Append(doc).Append(dllImport);
            raw.Append("    internal static extern ").Append(ret).Append(' ').Append(name).Append('(').Append(nativeParams).AppendLine(");");
            raw.AppendLine();
        }
        else
        {
            string nativeName = "__" + name + "_Native";
            raw.Append(dllImport);
            raw.Append("    private static extern ").Append(ret).Append(' ').Append(nativeName).Append('(').Append(nativeParams).AppendLine(");");
            raw.AppendLine();
            raw.Append(doc);
            raw.Append("    internal static ").Append(managedRet).Append(' ').Append(name).Append('(')
                .Append(string.Join(", ", ps.Select(p => p.Declaration))).AppendLine(")");
            raw.AppendLine("    {");
            foreach (MappedParam p in ps)
            {
                switch (p.Kind)
                {
                    case ParamKind.HandleIn:
                        if (!p.Optional) raw.Append("        ArgumentNullException.ThrowIfNull(").Append(p.Name).AppendLine(");");
                        raw.Append("        bool ").Append(p.Local).AppendLine("Added = false;");
                        break;
                    case ParamKind.HandleOut:
                        raw.Append("        ").Append(p.Name).Append(" = new ").Append(p.ManagedType).AppendLine("();");
                        raw.Append("        nint ").Append(p.Local).AppendLine(" = 0;");
                        break;
                    case ParamKind.Utf8String:
                        raw.Append("        byte* ").Append(p.Local).AppendLine(" = null;");
                        break;
                    case ParamKind.BoundStructIn:
                        // A copy, so the handles released are the ones taken whatever the caller's struct holds meanwhile.
                        raw.Append("        ").Append(p.ManagedType).Append(' ').Append(p.Local).Append("Value = ").Append(p.Name).AppendLine(";");
                        raw.Append("        ").Append(p.ManagedType).Append('.').Append(RawName).Append(' ').Append(p.Local).AppendLine(" = default;");
                        foreach (StructField f in BoundHandleFields(p))
                            raw.Append("        bool ").Append(p.Local).Append('_').Append(FieldName(p.BoundStruct!, f)).AppendLine("Added = false;");
                        break;
                }
            }
            if (ret != "void") raw.Append("        ").Append(ret).AppendLine(" __result;");
            bool cleanup = ps.Any(p => p.Kind == ParamKind.HandleIn || p.Kind == ParamKind.Utf8String || p.Kind == ParamKind.BoundStructIn);
            string inner = cleanup ? "            " : "        ";
            if (cleanup)
            {
                raw.AppendLine("        try");
                raw.AppendLine("        {");
            }
            foreach (MappedParam p in ps)
            {
                if (p.Kind == ParamKind.HandleIn) raw.Append("            ").Append(p.Name).Append(p.Optional ? "?" : "").Append(".DangerousAddRef(ref ").Append(p.Local).AppendLine("Added);");
                if (p.Kind == ParamKind.Utf8String) raw.Append("            ").Append(p.Local).Append(" = Utf8StringMarshaller.ConvertToUnmanaged(").Append(p.Name).AppendLine(");");
                if (p.Kind == ParamKind.BoundStructIn) EmitBoundStructFill(raw, p);
            }
            var args = ps.Select(p => p.Kind switch
            {
                ParamKind.HandleIn => p.Optional ? "(" + p.Name + " is null ? 0 : " + p.Name + ".DangerousGetHandle())" : p.Name + ".DangerousGetHandle()",
                ParamKind.HandleOut => "&" + p.Local,
                ParamKind.Utf8String => p.Local,
                ParamKind.BoundStructIn => "&" + p.Local,
                _ => p.Name,
            });
            raw.Append(inner).Append(ret != "void" ? "__result = " : "").Append(nativeName).Append('(').Append(string.Join(", ", args)).AppendLine(");");
            foreach (MappedParam p in ps.Where(p => p.Kind == ParamKind.HandleOut))
                raw.Append(inner).Append("Marshal.InitHandle(").Append(p.Name).Append(", ").Append(p.Local).AppendLine(");");
            if (cleanup)
            {
                raw.AppendLine("        }");
                raw.AppendLine("        finally");
                raw.AppendLine("        {");
                foreach (MappedParam p in ps)
                {
                    if (p.Kind == ParamKind.HandleIn) raw.Append("            if (").Append(p.Local).Append("Added) ").Append(p.Name).Append(p.Optional ? "!" : "").AppendLine(".DangerousRelease();");
                    if (p.Kind == ParamKind.Utf8String) raw.Append("            Utf8StringMarshaller.Free(").Append(p.Local).AppendLine(");");
                    if (p.Kind == ParamKind.BoundStructIn)
                        foreach (StructField f in BoundHandleFields(p))
                        {
                            string field = FieldName(p.BoundStruct!, f);
                            raw.Append("            if (").Append(p.Local).Append('_').Append(field).Append("Added) ").Append(p.Local).Append("Value.")
                                .Append(field).AppendLine("!.DangerousRelease();");
                        }
                }
                raw.AppendLine("        }");
            }
            if (boundReturn) raw.Append("        return ").Append(managedRet).AppendLine(".FromRaw(in __result);");
            else if (ret != "void") raw.AppendLine("        return __result;");
            raw.AppendLine("    }");
            raw.AppendLine();
        }

        if (fn.ReturnType.Name == StatusEnum && fn.ReturnType.Pointers == 0 && ok != null)
        {
            checkedWrappers.Append(doc);
            checkedWrappers.AppendLine("    /// <exception cref=\"global::Qwen3VL.Native.Qwen3VLException\">The call returned a status other than OK.</exception>");
            checkedWrappers.Append("    internal static void ").Append(name).Append('(')
                .Append(string.Join(", ", ps.Select(p => p.Declaration))).AppendLine(")");
            checkedWrappers.AppendLine("    {");
            checkedWrappers.Append("        ").Append(ret).Append(" __status = NativeMethods.").Append(name).Append('(')
                .Append(string.Join(", ", ps.Select(p => p.Argument))).AppendLine(");");
            checkedWrappers.Append("        if (__status != ").Append(ok).AppendLine(") throw global::Qwen3VL.Native.Qwen3VLException.FromStatus(__status);");
            checkedWrappers.AppendLine("    }");
            checkedWrappers.AppendLine();
        }
    }
}
