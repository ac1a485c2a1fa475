using System.Reflection;
using System.Runtime.InteropServices;
using Qwen3VL.Native.Engine;
using Qwen3VL.Native.Interop;

namespace Qwen3VL.Native.Tests;

/// <summary>The generated types against the compiler's view of the header (qwen3vl_abi_layout).</summary>
public unsafe class AbiTests
{
    private static readonly Type[] Generated = typeof(NativeMethods).Assembly.GetTypes()
        .Where(t => t.Namespace == "Qwen3VL.Native.Interop" && t.GetCustomAttribute<NativeNameAttribute>() != null)
        .ToArray();

    // Declarations in the header itself, so a type the generator dropped cannot go unnoticed.
    private static readonly string Header = File.ReadAllText(
        Path.Combine(Processing.TestPaths.RepoRoot, "native", "capi", "qwen3vl.h"));

    private static int HeaderCount(string pattern) => System.Text.RegularExpressions.Regex.Matches(Header, pattern).Count;

    private static string CName(MemberInfo m) => m.GetCustomAttribute<NativeNameAttribute>()!.Name;

    private static long Layout(string type, string member)
    {
        long value = 0;
        Interop.Native.AbiLayout(type, member, &value);
        return value;
    }

    [Fact]
    public void StructSizesAndOffsetsMatchTheNativeLibrary()
    {
        Type[] structs = Generated.Where(t => t.IsValueType && !t.IsEnum).ToArray();
        Assert.Equal(HeaderCount(@"typedef struct \w+ \{"), structs.Length);
        int fields = 0;
        foreach (Type type in structs)
        {
            Assert.True(Layout(CName(type), "") == Marshal.SizeOf(type), $"sizeof({CName(type)})");
            foreach (FieldInfo field in type.GetFields(BindingFlags.Public | BindingFlags.Instance))
            {
                long native = Layout(CName(type), CName(field));
                Assert.True(native == (long)Marshal.OffsetOf(type, field.Name), $"offsetof({CName(type)}, {CName(field)}) is {native} natively");
                fields++;
            }
        }
        Assert.True(fields >= 40, "too few fields checked: " + fields);
    }

    [Fact]
    public void EnumValuesAndSizesMatchTheNativeLibrary()
    {
        Type[] enums = Generated.Where(t => t.IsEnum).ToArray();
        Assert.Equal(HeaderCount(@"typedef enum \w+ \{"), enums.Length);
        foreach (Type type in enums)
        {
            Assert.Equal(Layout(CName(type), ""), Marshal.SizeOf(Enum.GetUnderlyingType(type)));
            foreach (FieldInfo member in type.GetFields(BindingFlags.Public | BindingFlags.Static))
            {
                long native = Layout(CName(type), CName(member));
                Assert.True(native == Convert.ToInt64(member.GetValue(null)), $"{CName(member)} is {native} natively");
            }
        }
    }

    [Fact]
    public void PublicEnumsMirrorTheGeneratedOnes()
    {
        AssertSameEnum<Qwen3VLStatus, Status>();
        AssertSameEnum<TensorDType, Dtype>();
    }

    private static void AssertSameEnum<TPublic, TGenerated>() where TPublic : struct, Enum where TGenerated : struct, Enum
    {
        var expected = Enum.GetValues<TGenerated>().Select(v => (Convert.ToInt64(v), v.ToString().ToUpperInvariant())).ToArray();
        var actual = Enum.GetValues<TPublic>().Select(v => (Convert.ToInt64(v), v.ToString().ToUpperInvariant())).ToArray();
        Assert.Equal(expected, actual);
    }

    [Fact]
    public void UnknownAbiEntryIsAnInvalidArgument()
    {
        var e = Assert.Throws<Qwen3VLInvalidArgumentException>(() => Layout("qwen3vl_build_info", "no_such_member"));
        Assert.Contains("no_such_member", e.Message);
    }
}
