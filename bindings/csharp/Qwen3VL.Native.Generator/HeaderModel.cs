using System.Collections.Generic;

namespace Qwen3VL.Native.Interop.Generation;

/// <summary>Something in the header the generator does not understand, with its 1-based line.</summary>
internal sealed class HeaderError
{
    public HeaderError(int line, string message)
    {
        Line = line;
        Message = message;
    }

    public int Line { get; }
    public string Message { get; }
}

/// <summary>A C type as written: base name, constness of the pointee and pointer depth (e.g. <c>const char*</c>).</summary>
internal sealed class CType
{
    public CType(string name, bool isConst, int pointers)
    {
        Name = name;
        IsConst = isConst;
        Pointers = pointers;
    }

    public string Name { get; }
    public bool IsConst { get; }
    public int Pointers { get; }

    public override string ToString() => (IsConst ? "const " : "") + Name + new string('*', Pointers);
}

internal sealed class CParam
{
    public CParam(CType type, string name, bool optional)
    {
        Type = type;
        Name = name;
        Optional = optional;
    }

    public CType Type { get; }
    public string Name { get; }

    /// <summary>Marked QWEN3VL_OPTIONAL in the header: NULL is allowed (a nullable handle in C#).</summary>
    public bool Optional { get; }
}

internal sealed class EnumMember
{
    public EnumMember(string name, long value, string? doc)
    {
        Name = name;
        Value = value;
        Doc = doc;
    }

    public string Name { get; }
    public long Value { get; }
    public string? Doc { get; }
}

internal sealed class EnumDecl
{
    public EnumDecl(string name, string? doc, int line, List<EnumMember> members)
    {
        Name = name;
        Doc = doc;
        Line = line;
        Members = members;
    }

    public string Name { get; }
    public string? Doc { get; }
    public int Line { get; }
    public List<EnumMember> Members { get; }
}

internal sealed class StructField
{
    public StructField(CType type, string name, string? arrayLength, string? doc, int line, bool optional = false)
    {
        Optional = optional;
        Type = type;
        Name = name;
        ArrayLength = arrayLength;
        Doc = doc;
        Line = line;
    }

    public CType Type { get; }
    public string Name { get; }
    /// <summary>Marked QWEN3VL_OPTIONAL in the header: a handle field that may be NULL.</summary>
    public bool Optional { get; }
    /// <summary>The array bound as written (a number or a QWEN3VL_ constant), null for a scalar.</summary>
    public string? ArrayLength { get; }
    public string? Doc { get; }
    public int Line { get; }
}

internal sealed class StructDecl
{
    public StructDecl(string name, string? doc, int line, List<StructField>? fields)
    {
        Name = name;
        Doc = doc;
        Line = line;
        Fields = fields;
    }

    public string Name { get; }
    public string? Doc { get; }
    public int Line { get; }
    /// <summary>Null for an opaque handle type.</summary>
    public List<StructField>? Fields { get; }
}

/// <summary>An exported function, or (when <see cref="IsPointerTypedef"/>) a function-pointer typedef.</summary>
internal sealed class FunctionDecl
{
    public FunctionDecl(string name, CType returnType, List<CParam> parameters, string? doc, int line, bool isPointerTypedef)
    {
        Name = name;
        ReturnType = returnType;
        Parameters = parameters;
        Doc = doc;
        Line = line;
        IsPointerTypedef = isPointerTypedef;
    }

    public string Name { get; }
    public CType ReturnType { get; }
    public List<CParam> Parameters { get; }
    public string? Doc { get; }
    public int Line { get; }
    public bool IsPointerTypedef { get; }
}

internal sealed class HeaderModel
{
    public List<DefineConstant> Constants { get; } = new List<DefineConstant>();
    public List<EnumDecl> Enums { get; } = new List<EnumDecl>();
    public List<StructDecl> Structs { get; } = new List<StructDecl>();
    public List<FunctionDecl> FunctionPointers { get; } = new List<FunctionDecl>();
    public List<FunctionDecl> Functions { get; } = new List<FunctionDecl>();
}
