using System.Runtime.InteropServices;

namespace Qwen3VL.Native.Engine;

using Qwen3VL.Native.Interop;

/// <summary>A tensor living on a <see cref="Backend"/>. Dispose after use; it keeps its backend alive until then.</summary>
public sealed class Tensor : IDisposable
{
    private Tensor(TensorHandle handle, TensorDType dtype, long[] shape, ulong byteCount)
    {
        Handle = handle;
        DType = dtype;
        Shape = shape;
        ByteCount = byteCount;
        long count = 1;
        foreach (long d in shape) count *= d;
        ElementCount = count;
    }

    internal TensorHandle Handle { get; }

    /// <summary>Element type.</summary>
    public TensorDType DType { get; }
    /// <summary>Dimensions, outermost first.</summary>
    public IReadOnlyList<long> Shape { get; }
    /// <summary>Number of elements.</summary>
    public long ElementCount { get; }
    /// <summary>Size of the data in bytes.</summary>
    public ulong ByteCount { get; }

    internal static unsafe Tensor Create(Backend backend, TensorDType dtype, ReadOnlySpan<long> shape)
    {
        ArgumentNullException.ThrowIfNull(backend);
        BackendHandle parent = backend.Handle;
        bool added = false;
        TensorHandle handle;
        try
        {
            // Held across create + KeepParentAlive so the backend cannot be freed in between.
            parent.DangerousAddRef(ref added);
            fixed (long* dims = shape)
            {
                Native.TensorCreate(parent, (Dtype)dtype, shape.Length, dims, out handle);
            }
            handle.KeepParentAlive(parent);
        }
        finally
        {
            if (added) parent.DangerousRelease();
        }
        return FromHandle(handle);
    }

    /// <summary>Wraps a live handle (which already keeps its parent alive); disposes it when describing it fails.</summary>
    internal static unsafe Tensor FromHandle(TensorHandle handle)
    {
        try
        {
            TensorDesc desc = NativeMethods.TensorDescInit();
            Native.TensorDescribe(handle, &desc);
            var dimsOut = new long[desc.Ndim];
            for (int i = 0; i < dimsOut.Length; i++) dimsOut[i] = desc.Shape[i];
            return new Tensor(handle, (TensorDType)desc.Dtype, dimsOut, desc.Bytes);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A view of <paramref name="shape"/>'s element count of contiguous elements starting at element <paramref name="offset"/>,
    /// sharing this tensor's memory. The view keeps this tensor (and so its backend) alive until the view is disposed.
    /// </summary>
    /// <exception cref="Qwen3VLInvalidArgumentException">The range lies outside the tensor or the shape is invalid.</exception>
    public unsafe Tensor View(long offset, params ReadOnlySpan<long> shape)
    {
        TensorHandle parent = Handle;
        bool added = false;
        TensorHandle view;
        try
        {
            parent.DangerousAddRef(ref added);
            fixed (long* dims = shape)
            {
                Native.TensorView(parent, offset, shape.Length, dims, out view);
            }
            view.KeepParentAlive(parent);
        }
        finally
        {
            if (added) parent.DangerousRelease();
        }
        return FromHandle(view);
    }

    /// <summary>The same memory seen with another shape of the same element count (a view from element 0).</summary>
    public Tensor Reshape(params ReadOnlySpan<long> shape) => View(0, shape);

    /// <summary>Copies <paramref name="data"/> into the tensor, converting to its dtype. The length must equal <see cref="ElementCount"/>.</summary>
    public void Write(ReadOnlySpan<float> data) => WriteBytes(Dtype.F32, MemoryMarshal.AsBytes(data));

    /// <summary>Copies F16 <paramref name="data"/> into the tensor, converting to its dtype.</summary>
    public void Write(ReadOnlySpan<Half> data) => WriteBytes(Dtype.F16, MemoryMarshal.AsBytes(data));

    /// <summary>Copies I32 <paramref name="data"/> into the tensor, converting to its dtype.</summary>
    public void Write(ReadOnlySpan<int> data) => WriteBytes(Dtype.I32, MemoryMarshal.AsBytes(data));

    /// <summary>Copies bfloat16 <paramref name="data"/> (raw bits) into the tensor, converting to its dtype.</summary>
    public void WriteBFloat16(ReadOnlySpan<ushort> data) => WriteBytes(Dtype.Bf16, MemoryMarshal.AsBytes(data));

    /// <summary>Copies the tensor into <paramref name="destination"/> as F32. The length must equal <see cref="ElementCount"/>.</summary>
    public void Read(Span<float> destination) => ReadBytes(Dtype.F32, MemoryMarshal.AsBytes(destination));

    /// <summary>Copies the tensor into <paramref name="destination"/> as F16.</summary>
    public void Read(Span<Half> destination) => ReadBytes(Dtype.F16, MemoryMarshal.AsBytes(destination));

    /// <summary>Copies the tensor into <paramref name="destination"/> as I32.</summary>
    public void Read(Span<int> destination) => ReadBytes(Dtype.I32, MemoryMarshal.AsBytes(destination));

    /// <summary>Copies the tensor into <paramref name="destination"/> as bfloat16 raw bits.</summary>
    public void ReadBFloat16(Span<ushort> destination) => ReadBytes(Dtype.Bf16, MemoryMarshal.AsBytes(destination));

    /// <summary>Copies the tensor's own bytes (<see cref="ByteCount"/> of them: a Q8 tensor's int8 values then its f16 scales).</summary>
    internal void ReadStored(Span<byte> destination) => ReadBytes((Dtype)DType, destination);

    private unsafe void WriteBytes(Dtype source, ReadOnlySpan<byte> bytes)
    {
        fixed (byte* p = bytes) Native.TensorWrite(Handle, source, p, (nuint)bytes.Length);
    }

    private unsafe void ReadBytes(Dtype destination, Span<byte> bytes)
    {
        fixed (byte* p = bytes) Native.TensorRead(Handle, destination, p, (nuint)bytes.Length);
    }

    /// <summary>Frees the tensor and drops its reference on the backend.</summary>
    public void Dispose() => Handle.Dispose();
}
