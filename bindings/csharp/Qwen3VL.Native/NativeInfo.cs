namespace Qwen3VL.Native;

using Qwen3VL.Native.Interop;

/// <summary>One CUDA device as the native library sees it.</summary>
public sealed class CudaDeviceInfo
{
    internal CudaDeviceInfo(int index, string name, int computeMajor, int computeMinor, int multiprocessors, ulong totalMemory, ulong freeMemory)
    {
        Index = index;
        Name = name;
        ComputeMajor = computeMajor;
        ComputeMinor = computeMinor;
        Multiprocessors = multiprocessors;
        TotalMemory = totalMemory;
        FreeMemory = freeMemory;
    }

    /// <summary>CUDA device index.</summary>
    public int Index { get; }
    /// <summary>Device name, e.g. "NVIDIA H100".</summary>
    public string Name { get; }
    /// <summary>Compute capability, major part.</summary>
    public int ComputeMajor { get; }
    /// <summary>Compute capability, minor part.</summary>
    public int ComputeMinor { get; }
    /// <summary>Number of streaming multiprocessors.</summary>
    public int Multiprocessors { get; }
    /// <summary>Device memory in bytes.</summary>
    public ulong TotalMemory { get; }
    /// <summary>Free device memory in bytes when queried.</summary>
    public ulong FreeMemory { get; }
}

/// <summary>How the native library was built and what it found on this machine (a snapshot).</summary>
public sealed class NativeInfo
{
    private NativeInfo() { }

    /// <summary>Version text, e.g. "0.1.0".</summary>
    public string Version { get; private init; } = "";
    /// <summary>Major version.</summary>
    public int VersionMajor { get; private init; }
    /// <summary>Minor version.</summary>
    public int VersionMinor { get; private init; }
    /// <summary>Patch version.</summary>
    public int VersionPatch { get; private init; }
    /// <summary>Compiler that built the library.</summary>
    public string Compiler { get; private init; } = "";
    /// <summary>Whether the CPU backend is compiled in.</summary>
    public bool HasCpuBackend { get; private init; }
    /// <summary>Whether the CUDA backend is compiled in.</summary>
    public bool HasCudaBackend { get; private init; }
    /// <summary>CPU features detected (lower case, e.g. "avx2", "fma").</summary>
    public IReadOnlyList<string> CpuFeatures { get; private init; } = [];
    /// <summary>CPU kernel set chosen at run time: "avx512", "avx2" or "scalar".</summary>
    public string CpuKernels { get; private init; } = "";
    /// <summary>Logical processors available to this process.</summary>
    public int LogicalCpus { get; private init; }
    /// <summary>CUDA runtime version built against (1000*major + 10*minor), 0 without CUDA.</summary>
    public int CudaRuntimeVersion { get; private init; }
    /// <summary>CUDA driver version installed (same encoding), 0 when none.</summary>
    public int CudaDriverVersion { get; private init; }
    /// <summary>CUDA architectures compiled in, empty without CUDA.</summary>
    public string CudaArchitectures { get; private init; } = "";
    /// <summary>Usable CUDA devices.</summary>
    public IReadOnlyList<CudaDeviceInfo> CudaDevices { get; private init; } = [];
    /// <summary>The native library file in use.</summary>
    public string? LibraryPath { get; private init; }
    /// <summary>Which native library was chosen and why.</summary>
    public string? LibraryResolution { get; private init; }

    /// <summary>Formats a CUDA version number (12040 as "12.4"); "none" for 0.</summary>
    public static string FormatCudaVersion(int version) => version <= 0 ? "none" : $"{version / 1000}.{version % 1000 / 10}";

    /// <summary>Loads the native library if needed and reads its build information.</summary>
    /// <exception cref="Qwen3VLException">The native library reported an error.</exception>
    public static unsafe NativeInfo Query()
    {
        BuildInfo info = NativeMethods.BuildInfoInit();
        Native.BuildInfoGet(&info);

        var features = new List<string>();
        foreach (CpuFeature f in Enum.GetValues<CpuFeature>())
        {
            if ((info.CpuFeatures & (uint)f) != 0) features.Add(f.ToString().ToLowerInvariant());
        }
        var devices = new List<CudaDeviceInfo>();
        for (int i = 0; i < info.CudaDeviceCount; i++)
        {
            CudaDevice d = NativeMethods.CudaDeviceInit();
            Native.CudaDeviceGet(i, &d);
            devices.Add(new CudaDeviceInfo(d.Index, NativeText.FromBuffer(d.Name, NativeConstants.NameLength), d.ComputeMajor, d.ComputeMinor,
                d.Multiprocessors, d.TotalMemory, d.FreeMemory));
        }
        return new NativeInfo
        {
            Version = NativeText.FromBuffer(info.Version, NativeConstants.NameLength),
            VersionMajor = info.VersionMajor,
            VersionMinor = info.VersionMinor,
            VersionPatch = info.VersionPatch,
            Compiler = NativeText.FromBuffer(info.Compiler, NativeConstants.NameLength),
            HasCpuBackend = (info.Backends & (uint)BackendFlag.Cpu) != 0,
            HasCudaBackend = (info.Backends & (uint)BackendFlag.Cuda) != 0,
            CpuFeatures = features,
            CpuKernels = NativeText.FromBuffer(info.CpuKernels, NativeConstants.NameLength),
            LogicalCpus = info.LogicalCpus,
            CudaRuntimeVersion = info.CudaRuntimeVersion,
            CudaDriverVersion = info.CudaDriverVersion,
            CudaArchitectures = NativeText.FromBuffer(info.CudaArchitectures, NativeConstants.NameLength),
            CudaDevices = devices,
            LibraryPath = NativeLog.LoadedLibraryPath,
            LibraryResolution = NativeLog.LastResolution,
        };
    }
}
