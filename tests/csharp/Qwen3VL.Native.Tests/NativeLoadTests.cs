using Qwen3VL.Native.Interop;

namespace Qwen3VL.Native.Tests;

public class NativeLoadTests
{
    [Fact]
    public void NativeLibraryLoadsThroughTheResolver()
    {
        NativeInfo info = NativeInfo.Query();

        Assert.NotNull(NativeLog.LastResolution);
        Assert.NotNull(NativeLog.LoadedLibraryPath);
        Assert.Equal(NativeLog.LoadedLibraryPath, info.LibraryPath);
        if (Environment.GetEnvironmentVariable(NativeLibraryResolver.PathVariable) is { Length: > 0 } explicitPath)
        {
            Assert.Contains(explicitPath, NativeLog.LastResolution);
        }
        else
        {
            // This machine has no GPU and the test output carries only the CPU build.
            Assert.Contains("using CPU build", NativeLog.LastResolution);
            Assert.EndsWith("libqwen3vl.so", NativeLog.LoadedLibraryPath);
            Assert.True(File.Exists(NativeLog.LoadedLibraryPath));
        }
    }

    [Fact]
    public void BuildInfoMatchesTheHeader()
    {
        NativeInfo info = NativeInfo.Query();

        Assert.Equal(NativeConstants.VersionMajor, info.VersionMajor);
        Assert.Equal(NativeConstants.VersionMinor, info.VersionMinor);
        Assert.Equal(NativeConstants.VersionPatch, info.VersionPatch);
        Assert.Equal($"{NativeConstants.VersionMajor}.{NativeConstants.VersionMinor}.{NativeConstants.VersionPatch}", info.Version);
        Assert.True(info.HasCpuBackend);
        Assert.Contains(info.CpuKernels, new[] { "avx512", "avx2", "scalar" });
        Assert.True(info.LogicalCpus >= 1);
        Assert.NotEmpty(info.Compiler);
        Assert.Equal(info.CudaDevices.Count, info.CudaDevices.Select(d => d.Index).Distinct().Count());
        if (!info.HasCudaBackend)
        {
            Assert.Equal(0, info.CudaRuntimeVersion);
            Assert.Empty(info.CudaDevices);
        }
    }
}
