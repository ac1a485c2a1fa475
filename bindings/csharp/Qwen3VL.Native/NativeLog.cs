namespace Qwen3VL.Native;

/// <summary>
/// Where the binding reports which native library it loaded and why. By default lines go to standard error only
/// when the environment variable <c>QWEN3VL_LOG=1</c> is set; set <see cref="Sink"/> to route them elsewhere.
/// </summary>
public static class NativeLog
{
    /// <summary>Receives each log line; null drops them (they stay readable in <see cref="LastResolution"/>).</summary>
    // An environment variable, not an option: the library is chosen (and this logged) at the first native call, before
    // any Qwen3VLModelOptions exist. Setting Sink is the programmatic way.
    public static Action<string>? Sink { get; set; } =
        Environment.GetEnvironmentVariable("QWEN3VL_LOG") == "1" ? static line => Console.Error.WriteLine(line) : null;

    /// <summary>The line saying which native library was chosen and why; null before the first native call.</summary>
    public static string? LastResolution { get; private set; }

    /// <summary>The file of the native library in use; null before the first native call.</summary>
    public static string? LoadedLibraryPath { get; private set; }

    internal static void Write(string line) => Sink?.Invoke(line);

    internal static void Resolved(string? path, string line)
    {
        LoadedLibraryPath = path;
        LastResolution = line;
        Write(line);
    }
}
