using System.Diagnostics.CodeAnalysis;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Qwen3VL.Native.Interop;

/// <summary>
/// Chooses the native library for <c>[DllImport("qwen3vl")]</c>:
/// <list type="number">
/// <item>the file named by <c>QWEN3VL_NATIVE_LIBRARY</c>;</item>
/// <item>unless <c>QWEN3VL_DEVICE=cpu</c>, the CUDA build (runtimes/&lt;rid&gt;/native/libqwen3vl_cuda.so) when it loads and sees a CUDA device;</item>
/// <item>the CPU build (libqwen3vl.so), next to the application or this assembly, then the system search path.</item>
/// </list>
/// The choice and its reason go to <see cref="NativeLog"/>.
/// </summary>
internal static unsafe class NativeLibraryResolver
{
    internal const string LibraryName = "qwen3vl";
    internal const string PathVariable = "QWEN3VL_NATIVE_LIBRARY";
    internal const string DeviceVariable = "QWEN3VL_DEVICE";

    private static readonly Lock Gate = new();
    private static nint s_handle;

    [ModuleInitializer]
    [SuppressMessage("Usage", "CA2255", Justification = "The resolver must be in place before the first P/Invoke of this assembly.")]
    internal static void Register() => NativeLibrary.SetDllImportResolver(typeof(NativeLibraryResolver).Assembly, Resolve);

    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? searchPath)
    {
        if (name != LibraryName) return 0;
        lock (Gate)
        {
            if (s_handle == 0) s_handle = Load(assembly, searchPath);
            return s_handle;
        }
    }

    private static string Rid =>
        (OperatingSystem.IsWindows() ? "win" : OperatingSystem.IsMacOS() ? "osx" : "linux") + "-" +
        RuntimeInformation.ProcessArchitecture.ToString().ToLowerInvariant();

    private static string FileName(string baseName) =>
        OperatingSystem.IsWindows() ? baseName + ".dll" : OperatingSystem.IsMacOS() ? "lib" + baseName + ".dylib" : "lib" + baseName + ".so";

    [UnconditionalSuppressMessage("SingleFile", "IL3000", Justification = "Location is empty in single-file/NativeAOT apps; AppContext.BaseDirectory covers those.")]
    private static List<string> CandidateDirectories(Assembly assembly)
    {
        var dirs = new List<string> { AppContext.BaseDirectory };
        string location = assembly.Location;
        if (!string.IsNullOrEmpty(location) && Path.GetDirectoryName(location) is { Length: > 0 } dir && !dirs.Contains(dir)) dirs.Add(dir);
        return dirs;
    }

    private static string? Find(List<string> dirs, string file)
    {
        foreach (string dir in dirs)
        {
            string nested = Path.Combine(dir, "runtimes", Rid, "native", file);
            if (File.Exists(nested)) return nested;
            string flat = Path.Combine(dir, file);
            if (File.Exists(flat)) return flat;
        }
        return null;
    }

    private static bool TryLoad(string path, out nint handle, out string error)
    {
        try
        {
            handle = NativeLibrary.Load(path);
            error = "";
            return true;
        }
        catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
        {
            handle = 0;
            error = e.Message;
            return false;
        }
    }

    private static nint Load(Assembly assembly, DllImportSearchPath? searchPath)
    {
        // QWEN3VL_NATIVE_LIBRARY and QWEN3VL_DEVICE stay environment variables: this runs at the first native call,
        // before any Qwen3VLModelOptions exist, and picks the library for the whole process.
        string? explicitPath = Environment.GetEnvironmentVariable(PathVariable);
        if (!string.IsNullOrEmpty(explicitPath))
        {
            if (!TryLoad(explicitPath, out nint chosen, out string error))
            {
                NativeLog.Resolved(null, "qwen3vl: " + PathVariable + "=" + explicitPath + " failed to load: " + error);
                throw new DllNotFoundException(PathVariable + "=" + explicitPath + " failed to load: " + error);
            }
            NativeLog.Resolved(explicitPath, "qwen3vl: using " + explicitPath + " (set by " + PathVariable + ")");
            return chosen;
        }

        List<string> dirs = CandidateDirectories(assembly);
        nint cuda = 0;
        string? cudaPath = null;
        string reason = Environment.GetEnvironmentVariable(DeviceVariable) is { } device && device.Equals("cpu", StringComparison.OrdinalIgnoreCase)
            ? DeviceVariable + "=cpu"
            : TryCuda(dirs, out cuda, out cudaPath);
        if (reason.Length == 0)
        {
            NativeLog.Resolved(cudaPath, "qwen3vl: using CUDA build " + cudaPath);
            return cuda;
        }

        string? cpuPath = Find(dirs, FileName(LibraryName));
        if (cpuPath != null)
        {
            if (!TryLoad(cpuPath, out nint cpu, out string error))
            {
                NativeLog.Resolved(null, "qwen3vl: CPU build " + cpuPath + " failed to load: " + error);
                throw new DllNotFoundException("qwen3vl: CPU build " + cpuPath + " failed to load: " + error);
            }
            NativeLog.Resolved(cpuPath, "qwen3vl: using CPU build " + cpuPath + " (" + reason + ")");
            return cpu;
        }
        if (NativeLibrary.TryLoad(LibraryName, assembly, searchPath, out nint system))
        {
            NativeLog.Resolved(LibraryName + " (system library search path)", "qwen3vl: using CPU build from the system library search path (" + reason + ")");
            return system;
        }
        NativeLog.Resolved(null, "qwen3vl: no native library found in " + string.Join(", ", dirs) + " or on the system library search path (" + reason + ")");
        return 0;
    }

    /// <summary>Loads the CUDA build when usable; otherwise returns why not (empty string on success).</summary>
    private static string TryCuda(List<string> dirs, out nint handle, out string? path)
    {
        handle = 0;
        path = Find(dirs, FileName(LibraryName + "_cuda"));
        if (path == null) return "CUDA build not found";
        if (!TryLoad(path, out nint lib, out string error)) return "CUDA build failed to load: " + error;
        string why;
        if (!NativeLibrary.TryGetExport(lib, "qwen3vl_cuda_device_count", out nint export))
        {
            why = "CUDA build lacks qwen3vl_cuda_device_count";
        }
        else
        {
            int count = 0;
            int status = ((delegate* unmanaged[Cdecl]<int*, int>)export)(&count);
            if (status == 0 && count >= 1)
            {
                handle = lib;
                return "";
            }
            why = status != 0 ? "CUDA build reported status " + status + " counting devices" : "no CUDA device";
        }
        NativeLibrary.Free(lib);
        NativeLog.Write("qwen3vl: not using CUDA build " + path + ": " + why);
        return why;
    }
}
