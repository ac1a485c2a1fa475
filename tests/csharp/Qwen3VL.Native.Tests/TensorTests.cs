using Qwen3VL.Native.Engine;

namespace Qwen3VL.Native.Tests;

public class TensorTests
{
    // Values with at most 8 significant bits and a float32 exponent: exactly representable in bfloat16.
    private static readonly float[] Bf16Exact = [1.0f, -2.25f, 0.09375f, 255f, -65280f, 1f / 1024, 0f, -0.5f, 3.0f, 96f, -7.5f, 0.001953125f];

    [Fact]
    public void F32ThroughBf16RoundTripsExactly()
    {
        using Backend backend = Backend.CreateCpu(1);
        using Tensor t = backend.CreateTensor(TensorDType.BF16, 3, 4);
        Assert.Equal([3L, 4L], t.Shape);
        Assert.Equal(12, t.ElementCount);
        Assert.Equal(24UL, t.ByteCount);

        t.Write(Bf16Exact);
        var back = new float[12];
        t.Read(back);
        Assert.Equal(Bf16Exact, back);

        var bits = new ushort[12];
        t.ReadBFloat16(bits);
        for (int i = 0; i < bits.Length; i++)
            Assert.Equal((ushort)(BitConverter.SingleToUInt32Bits(Bf16Exact[i]) >> 16), bits[i]);
    }

    [Fact]
    public void HalfAndIntRoundTrip()
    {
        using Backend backend = Backend.CreateCpu(1);
        using Tensor h = backend.CreateTensor(TensorDType.F16, 4);
        Half[] halves = [(Half)1.5f, (Half)(-3f), (Half)0.25f, (Half)1024f];
        h.Write(halves);
        var f = new float[4];
        h.Read(f);
        Assert.Equal([1.5f, -3f, 0.25f, 1024f], f);

        using Tensor i = backend.CreateTensor(TensorDType.I32, 2, 2);
        i.Write([1, -2, 300000, int.MinValue]);
        var ints = new int[4];
        i.Read(ints);
        Assert.Equal([1, -2, 300000, int.MinValue], ints);
    }

    [Fact]
    public void ByteCountMismatchIsInvalidArgument()
    {
        using Backend backend = Backend.CreateCpu(1);
        using Tensor t = backend.CreateTensor(TensorDType.F32, 2, 3);
        Assert.Throws<Qwen3VLInvalidArgumentException>(() => t.Write(new float[5]));
        Assert.Throws<Qwen3VLInvalidArgumentException>(() => t.Read(new float[7]));
        Assert.Throws<Qwen3VLInvalidArgumentException>(() => t.Write(new Half[12])); // right bytes, wrong element count
        t.WriteBFloat16(new ushort[6]);
        var zeros = new float[6];
        t.Read(zeros);
        Assert.All(zeros, z => Assert.Equal(0f, z));
    }

    [Fact]
    public void TensorKeepsItsBackendAlive()
    {
        var backend = Backend.CreateCpu(1);
        Tensor t = backend.CreateTensor(TensorDType.F32, 8);
        Assert.True(backend.GetMemoryStats().BytesInUse >= 32);
        backend.Dispose();

        // The backend is closed for callers but its native object lives on for the tensor.
        Assert.Throws<ObjectDisposedException>(() => backend.Name);
        float[] data = [1, 2, 3, 4, 5, 6, 7, 8];
        t.Write(data);
        var back = new float[8];
        t.Read(back);
        Assert.Equal(data, back);

        t.Dispose();
        Assert.True(t.Handle.IsClosed);
        Assert.Throws<ObjectDisposedException>(() => t.Read(back));
    }

    [Fact]
    public void FreeingATensorReturnsItsMemoryToThePool()
    {
        using Backend backend = Backend.CreateCpu(1);
        Assert.StartsWith("cpu", backend.Name);
        ulong before = backend.GetMemoryStats().BytesInUse;
        using (Tensor t = backend.CreateTensor(TensorDType.F32, 16, 16))
        {
            Assert.True(backend.GetMemoryStats().BytesInUse >= before + 1024);
        }
        Assert.Equal(before, backend.GetMemoryStats().BytesInUse);
        backend.Trim();
    }
}
