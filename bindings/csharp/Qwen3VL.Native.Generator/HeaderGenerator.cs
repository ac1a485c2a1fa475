using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Text;

namespace Qwen3VL.Native.Interop.Generation;

/// <summary>
/// Generates the P/Invoke layer of Qwen3VL.Native from native/capi/qwen3vl.h, passed as an AdditionalFiles item, so the
/// header and the binding cannot drift. Anything in the header it does not understand is a build error (QWEN3VL001).
/// </summary>
[Generator(LanguageNames.CSharp)]
public sealed class HeaderGenerator : IIncrementalGenerator
{
    private const string HeaderFileName = "qwen3vl.h";

    private static readonly DiagnosticDescriptor Unsupported = new DiagnosticDescriptor(
        "QWEN3VL001", "Unsupported declaration in qwen3vl.h", "{0}", "Qwen3VL.Interop", DiagnosticSeverity.Error, isEnabledByDefault: true);

    private static readonly DiagnosticDescriptor MissingHeader = new DiagnosticDescriptor(
        "QWEN3VL002", "qwen3vl.h not found", "Exactly one AdditionalFiles item named " + HeaderFileName + " is required; found {0}",
        "Qwen3VL.Interop", DiagnosticSeverity.Error, isEnabledByDefault: true);

    public void Initialize(IncrementalGeneratorInitializationContext context)
    {
        IncrementalValueProvider<ImmutableArray<HeaderGenerationResult>> results = context.AdditionalTextsProvider
            .Where(static file => System.IO.Path.GetFileName(file.Path) == HeaderFileName)
            .Select(static (file, ct) => Generate(file.Path, file.GetText(ct)))
            .Collect();

        context.RegisterSourceOutput(results, static (spc, all) =>
        {
            if (all.Length != 1)
            {
                spc.ReportDiagnostic(Diagnostic.Create(MissingHeader, Location.None, all.Length));
                return;
            }
            HeaderGenerationResult result = all[0];
            foreach (GenerationDiagnostic d in result.Diagnostics)
            {
                var location = Location.Create(result.Path, new TextSpan(d.Start, d.Length),
                    new LinePositionSpan(new LinePosition(d.Line - 1, 0), new LinePosition(d.Line - 1, d.Length)));
                spc.ReportDiagnostic(Diagnostic.Create(Unsupported, location, d.Message));
            }
            spc.AddSource("Qwen3VL.Native.Interop.g.cs", result.Source);
        });
    }

    internal static HeaderGenerationResult Generate(string path, SourceText? text)
    {
        var errors = new List<HeaderError>();
        string source = "";
        if (text == null)
        {
            errors.Add(new HeaderError(1, "could not read " + path));
        }
        else
        {
            HeaderModel model = HeaderParser.Parse(text.ToString(), errors);
            source = CSharpEmitter.Emit(model, errors);
        }
        var diagnostics = errors.Select(e =>
        {
            int line = text == null ? 1 : System.Math.Max(1, System.Math.Min(e.Line, text.Lines.Count));
            TextSpan span = text == null ? default : text.Lines[line - 1].Span;
            return new GenerationDiagnostic(e.Message, line, span.Start, span.Length);
        }).ToList();
        return new HeaderGenerationResult(path, source, diagnostics);
    }
}

/// <summary>One diagnostic, kept as plain values so the pipeline output is equatable.</summary>
internal sealed class GenerationDiagnostic : System.IEquatable<GenerationDiagnostic>
{
    public GenerationDiagnostic(string message, int line, int start, int length)
    {
        Message = message;
        Line = line;
        Start = start;
        Length = length;
    }

    public string Message { get; }
    public int Line { get; }
    public int Start { get; }
    public int Length { get; }

    public bool Equals(GenerationDiagnostic? other) =>
        other != null && other.Message == Message && other.Line == Line && other.Start == Start && other.Length == Length;

    public override bool Equals(object? obj) => Equals(obj as GenerationDiagnostic);

    public override int GetHashCode() => (Message.GetHashCode() * 31) ^ Line;
}

/// <summary>The generated source and diagnostics of one header; value-equal for incremental caching.</summary>
internal sealed class HeaderGenerationResult : System.IEquatable<HeaderGenerationResult>
{
    public HeaderGenerationResult(string path, string source, List<GenerationDiagnostic> diagnostics)
    {
        Path = path;
        Source = source;
        Diagnostics = diagnostics;
    }

    public string Path { get; }
    public string Source { get; }
    public List<GenerationDiagnostic> Diagnostics { get; }

    public bool Equals(HeaderGenerationResult? other) =>
        other != null && other.Path == Path && other.Source == Source && other.Diagnostics.SequenceEqual(Diagnostics);

    public override bool Equals(object? obj) => Equals(obj as HeaderGenerationResult);

    public override int GetHashCode() => Source.GetHashCode();
}
