using System.Runtime.InteropServices;
using Qwen3VL.Native.Engine;
using Qwen3VL.Native.Interop;

namespace Qwen3VL.Native.Tests;

public unsafe class ErrorTests
{
    private static string LastError() => Marshal.PtrToStringUTF8(NativeMethods.LastError()) ?? "";

    /// <summary>The exception carries the status and the thread's native message (still readable right after the throw).</summary>
    private static void AssertNativeError(Qwen3VLException e, Qwen3VLStatus status, string statusName)
    {
        Assert.Equal(status, e.Status);
        string native = LastError();
        Assert.NotEmpty(native);
        Assert.Contains(native, e.Message);
        Assert.Contains(statusName, e.Message);
    }

    private static void BuildInfoWithZeroStructSize()
    {
        BuildInfo info = default;
        Interop.Native.BuildInfoGet(&info);
    }

    private static void CudaDeviceMinusOne()
    {
        CudaDevice device = NativeMethods.CudaDeviceInit();
        Interop.Native.CudaDeviceGet(-1, &device);
    }

    [Fact]
    public void BuildInfoWithoutStructSizeIsInvalidArgument()
    {
        var e = Assert.Throws<Qwen3VLInvalidArgumentException>(BuildInfoWithZeroStructSize);
        AssertNativeError(e, Qwen3VLStatus.InvalidArgument, "QWEN3VL_STATUS_INVALID_ARGUMENT");
    }

    [Fact]
    public void CudaDeviceMinusOneIsRejected()
    {
        if (NativeInfo.Query().HasCudaBackend)
        {
            var e = Assert.Throws<Qwen3VLInvalidArgumentException>(CudaDeviceMinusOne);
            AssertNativeError(e, Qwen3VLStatus.InvalidArgument, "QWEN3VL_STATUS_INVALID_ARGUMENT");
        }
        else
        {
            var e = Assert.Throws<Qwen3VLUnsupportedException>(CudaDeviceMinusOne);
            AssertNativeError(e, Qwen3VLStatus.Unsupported, "QWEN3VL_STATUS_UNSUPPORTED");
        }
    }

    [Fact]
    public void TensorWithoutDimensionsIsInvalidArgument()
    {
        using Backend backend = Backend.CreateCpu(1);
        var e = Assert.Throws<Qwen3VLInvalidArgumentException>(() => backend.CreateTensor(TensorDType.F32));
        AssertNativeError(e, Qwen3VLStatus.InvalidArgument, "QWEN3VL_STATUS_INVALID_ARGUMENT");
        Assert.Throws<Qwen3VLInvalidArgumentException>(() => backend.CreateTensor(TensorDType.F32, 1, 1, 1, 1, 1));
    }

    [Fact]
    public void CudaBackendWithoutCudaIsUnsupported()
    {
        Assert.SkipWhen(NativeInfo.Query().HasCudaBackend, "this build has CUDA");
        var e = Assert.Throws<Qwen3VLUnsupportedException>(() => Backend.CreateCuda(0));
        AssertNativeError(e, Qwen3VLStatus.Unsupported, "QWEN3VL_STATUS_UNSUPPORTED");
    }
}
