namespace Qwen3VL.Native.Interop;

/// <summary>The C name (in qwen3vl.h) of a generated type, field, enum member or constant; used by the ABI tests.</summary>
[AttributeUsage(AttributeTargets.All, AllowMultiple = false, Inherited = false)]
internal sealed class NativeNameAttribute(string name) : Attribute
{
    /// <summary>The name as written in C.</summary>
    public string Name { get; } = name;
}
