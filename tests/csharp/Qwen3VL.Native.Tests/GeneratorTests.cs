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
}
