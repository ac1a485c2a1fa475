using Microsoft.CodeAnalysis.Text;
using Qwen3VL.Native.Interop.Generation;

namespace Qwen3VL.Native.Tests;

/// <summary>The header parser directly: the real header is fully understood, and anything else is reported with its line.</summary>
public class GeneratorTests
{
    private static HeaderGenerationResult Run(string header) => HeaderGenerator.Generate("test.h", SourceText.From(header));

    [Fact]
    public void RealHeaderGeneratesWithoutDiagnostics()
    {
        HeaderGenerationResult r = Run(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "qwen3vl.h")));
        Assert.Empty(r.Diagnostics.Select(d => d.Line + ": " + d.Message));
        Assert.Contains("internal sealed class BackendHandle : NativeHandle", r.Source);
        Assert.Contains("public fixed byte CpuKernels[NativeConstants.NameLength];", r.Source);
        Assert.Contains("out TensorHandle tensor", r.Source);
        Assert.Contains("Avx512bf16 = 256", r.Source);
    }

    [Theory]
    [InlineData("QWEN3VL_API unsigned qwen3vl_x(void);", 3)]
    [InlineData("typedef enum qwen3vl_e { QWEN3VL_E_A } qwen3vl_e;", 3)]
    [InlineData("typedef struct qwen3vl_s { some_type x; } qwen3vl_s;", 3)]
    [InlineData("#define QWEN3VL_RATIO 1.5", 3)]
    [InlineData("int stray;", 3)]
    [InlineData("typedef struct qwen3vl_h qwen3vl_h;", 3)]
    public void UnderstoodNothingIsAnErrorWithItsLine(string declaration, int line)
    {
        string header = "typedef enum qwen3vl_status { QWEN3VL_STATUS_OK = 0 } qwen3vl_status;\n/** doc */\n" + declaration + "\n";
        HeaderGenerationResult r = Run(header);
        Assert.Contains(r.Diagnostics, d => d.Line == line);
    }

    [Fact]
    public void FunctionPointerTypedefsBecomeUnmanagedFunctionPointers()
    {
        const string header =
            "typedef enum qwen3vl_status { QWEN3VL_STATUS_OK = 0 } qwen3vl_status;\n" +
            "typedef int32_t (*qwen3vl_progress)(void* user, float fraction);\n" +
            "typedef struct qwen3vl_cb { qwen3vl_progress progress; void* user; } qwen3vl_cb;\n" +
            "QWEN3VL_API qwen3vl_status qwen3vl_run(qwen3vl_progress progress, const char* name, char* out, size_t n);\n";
        HeaderGenerationResult r = Run(header);
        Assert.Empty(r.Diagnostics);
        Assert.Contains("public delegate* unmanaged[Cdecl]<void*, float, int> Progress;", r.Source);
        Assert.Contains("Run(delegate* unmanaged[Cdecl]<void*, float, int> progress, string? name, byte* @out, nuint n)", r.Source);
    }

    private const string BoundHeader =
        "typedef enum qwen3vl_status { QWEN3VL_STATUS_OK = 0 } qwen3vl_status;\n" +
        "typedef struct qwen3vl_t qwen3vl_t;\n" +
        "QWEN3VL_API void qwen3vl_t_free(qwen3vl_t* t);\n";

    [Fact]
    public void StructsWithHandleFieldsGetASafeHandleFormAndAStubThatReferencesEachHandle()
    {
        const string header = BoundHeader +
            "typedef struct qwen3vl_p { uint32_t struct_size; float eps; const qwen3vl_t* x; QWEN3VL_OPTIONAL qwen3vl_t* y; int64_t s[3]; } qwen3vl_p;\n" +
            "QWEN3VL_API qwen3vl_p qwen3vl_p_default(void);\n" +
            "QWEN3VL_API qwen3vl_status qwen3vl_op(const qwen3vl_p* params);\n";
        HeaderGenerationResult r = Run(header);
        Assert.Empty(r.Diagnostics.Select(d => d.Line + ": " + d.Message));
        Assert.Contains("public THandle? X;", r.Source);
        Assert.Contains("public fixed long S[3];", r.Source);
        Assert.Contains("[NativeName(\"qwen3vl_p\")]\n    [StructLayout(LayoutKind.Sequential)]\n    internal unsafe struct Raw", r.Source.Replace("\r", ""));
        Assert.Contains("private static extern Status __Op_Native(P.Raw* @params);", r.Source);
        Assert.Contains("internal static Status Op(in P @params)", r.Source);
        Assert.Contains("__paramsValue.X.DangerousAddRef(ref __params_XAdded);", r.Source);
        Assert.Contains("if (__params_YAdded) __paramsValue.Y!.DangerousRelease();", r.Source);
        Assert.Contains("throw new ArgumentNullException(nameof(@params), \"qwen3vl_p.x is required\");", r.Source);
        Assert.DoesNotContain("qwen3vl_p.y is required", r.Source);
        Assert.Contains("return P.FromRaw(in __result);", r.Source);
    }

    [Theory]
    [InlineData("typedef struct qwen3vl_p { QWEN3VL_OPTIONAL int32_t n; } qwen3vl_p;")]        // optional on a value
    [InlineData("typedef struct qwen3vl_p { qwen3vl_t** x; } qwen3vl_p;")]                    // not a single pointer
    [InlineData("typedef struct qwen3vl_p { qwen3vl_t* x; } qwen3vl_p;\nQWEN3VL_API qwen3vl_status qwen3vl_op(qwen3vl_p* p);")] // not const
    [InlineData("typedef struct qwen3vl_p { qwen3vl_t* x; } qwen3vl_p;\nQWEN3VL_API qwen3vl_status qwen3vl_op(qwen3vl_p p);")]  // by value
    public void HandleFieldsOutsideTheGrammarAreErrors(string declarations)
    {
        HeaderGenerationResult r = Run(BoundHeader + declarations + "\n");
        Assert.NotEmpty(r.Diagnostics);
    }
}
