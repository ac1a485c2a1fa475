namespace Qwen3VL.Native.Engine;

using Qwen3VL.Native.Interop;

/// <summary>Element types of tensors (mirrors <c>qwen3vl_dtype</c>).</summary>
public enum TensorDType
{
    /// <summary>32-bit float.</summary>
    F32 = 0,
    /// <summary>IEEE 16-bit float (<see cref="Half"/>).</summary>
    F16 = 1,
    /// <summary>bfloat16, passed as its raw 16 bits.</summary>
    BF16 = 2,
    /// <summary>32-bit signed integer.</summary>
    I32 = 3,
    /// <summary>
    /// Block-quantized 8 bits: a 2-D [N, K] weight matrix (K a multiple of 32), or a KV cache [capacity, kv_heads, head_dim]
    /// (head_dim a multiple of 32), stored as all int8 values then one f16 scale per 32 along the last dimension
    /// (<c>QWEN3VL_DTYPE_Q8</c>: 17/16 bytes per element). Written from f32/f16/bf16 (quantized) or as its raw bytes.
    /// </summary>
    Q8 = 4,
    /// <summary>
    /// Block-quantized 4-bit weights: a 2-D [N, K] matrix (K a multiple of 256) stored as N*K/2 bytes of nibbles then one 16-byte
    /// header per 256 (<c>QWEN3VL_DTYPE_Q4</c>: f16 d and dmin, 6-bit scales and minimums of 8 groups of 32). Written from
    /// f32/f16/bf16 (quantized) or as its raw bytes.
    /// </summary>
    Q4 = 5,
}

/// <summary>Allocation counters of a backend's memory pool.</summary>
/// <param name="BytesInUse">Bytes handed out to live tensors.</param>
/// <param name="PeakBytesInUse">Largest <paramref name="BytesInUse"/> seen.</param>
/// <param name="BytesReserved">Bytes the pool holds from the system.</param>
/// <param name="SystemAllocations">Calls to the system allocator.</param>
/// <param name="SystemFrees">Calls to the system deallocator.</param>
/// <param name="PoolAllocations">Tensor allocations served by the pool.</param>
public readonly record struct BackendMemoryStats(
    ulong BytesInUse, ulong PeakBytesInUse, ulong BytesReserved, ulong SystemAllocations, ulong SystemFrees, ulong PoolAllocations);

/// <summary>A compute backend: the CPU or one CUDA device, with its memory pool. Dispose after use.</summary>
/// <remarks>Tensors keep their backend alive: the native backend is freed after the last of them is disposed.</remarks>
public sealed class Backend : IDisposable
{
    private readonly BackendHandle _handle;
    private volatile bool _disposed;

    private Backend(BackendHandle handle, bool isCuda, bool fp32Math)
    {
        _handle = handle;
        IsCuda = isCuda;
        Fp32Math = fp32Math;
    }

    /// <summary>
    /// The handle, for calls made through this object. Throws once disposed: the SafeHandle itself stays usable while
    /// tensors hold references on it, but the Backend object must not.
    /// </summary>
    internal BackendHandle Handle
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _handle;
        }
    }

    /// <summary>Creates a CPU backend with <paramref name="threads"/> workers (0: one per logical processor).</summary>
    /// <exception cref="Qwen3VLException">The native library reported an error.</exception>
    public static Backend CreateCpu(int threads = 0) => Create(BackendType.Cpu, 0, threads);

    /// <summary>Creates a backend on CUDA device <paramref name="device"/>.</summary>
    /// <exception cref="Qwen3VLUnsupportedException">The library was built without CUDA.</exception>
    /// <param name="device">CUDA device index.</param>
    /// <param name="fp32Math">Compute every matrix product in fp32 (the CPU's numerics) instead of feeding bf16/f16
    /// weights to the tensor cores with activations rounded to the weight dtype.</param>
    public static Backend CreateCuda(int device = 0, bool fp32Math = false) => Create(BackendType.Cuda, device, 0, fp32Math);

    private static unsafe Backend Create(BackendType type, int device, int threads, bool fp32Math = false)
    {
        BackendParams p = NativeMethods.BackendDefaultParams();
        p.Type = type;
        p.Device = device;
        p.Threads = threads;
        p.CudaFp32Math = fp32Math ? 1 : 0;
        Native.BackendCreate(&p, out BackendHandle handle);
        return new Backend(handle, type == BackendType.Cuda, type == BackendType.Cpu || fp32Math);
    }

    /// <summary>The backend's name, e.g. "cpu (avx2, 8 threads)".</summary>
    public unsafe string Name
    {
        get
        {
            const int capacity = 256;
            byte* buffer = stackalloc byte[capacity];
            Native.BackendName(Handle, buffer, capacity);
            return NativeText.FromBuffer(buffer, capacity);
        }
    }

    /// <summary>Reads the memory pool counters.</summary>
    public unsafe BackendMemoryStats GetMemoryStats()
    {
        MemoryStats s = NativeMethods.MemoryStatsInit();
        Native.BackendMemoryStats(Handle, &s);
        return new BackendMemoryStats(s.BytesInUse, s.PeakBytesInUse, s.BytesReserved, s.SystemAllocations, s.SystemFrees, s.PoolAllocations);
    }

    /// <summary>Returns the pool's cached, unused blocks to the system.</summary>
    public void Trim() => Native.BackendTrim(Handle);

    /// <summary>Starts a new high-water mark of the pool: <see cref="BackendMemoryStats.PeakBytesInUse"/> becomes the
    /// bytes in use now, so that the next reading is the peak of the work in between.</summary>
    public void ResetPeakMemory() => Native.BackendResetPeak(Handle);

    /// <summary>Allocates an uninitialised tensor of the given type and shape (1 to 4 dimensions).</summary>
    /// <exception cref="Qwen3VLInvalidArgumentException">The shape is empty, too long or not positive.</exception>
    public Tensor CreateTensor(TensorDType dtype, params ReadOnlySpan<long> shape) => Tensor.Create(this, dtype, shape);

    /// <summary>True for a CUDA backend (where ops can be captured into a <see cref="Graph"/>).</summary>
    public bool IsCuda { get; }

    /// <summary>True when every product is computed in fp32 (the CPU, or a CUDA backend created with fp32Math); false
    /// when tensor cores take bf16/f16 operands, where the KV cache is kept in bf16 as well.</summary>
    public bool Fp32Math { get; }

    /// <summary>
    /// Records the ops that <paramref name="record"/> issues on this thread instead of running them, and returns them as
    /// a <see cref="Graph"/> to replay (a CUDA graph). Tensors created inside keep their memory reserved for the graph;
    /// tensor reads and writes inside throw. On an exception the recording is discarded.
    /// </summary>
    /// <exception cref="Qwen3VLUnsupportedException">The backend runs ops eagerly (the CPU).</exception>
    public Graph Capture(Action record)
    {
        ArgumentNullException.ThrowIfNull(record);
        BackendHandle handle = Handle;
        Native.BackendCaptureBegin(handle);
        try
        {
            record();
        }
        catch
        {
            try { Native.BackendCaptureDiscard(handle); } catch (Qwen3VLException) { }
            throw;
        }
        Native.BackendCaptureEnd(handle, out GraphHandle graph);
        try
        {
            graph.KeepParentAlive(handle);
        }
        catch
        {
            graph.Dispose();
            throw;
        }
        return new Graph(graph);
    }

    /// <summary>Drops this reference; the native backend is freed once no tensor uses it any more.</summary>
    public void Dispose()
    {
        _disposed = true;
        _handle.Dispose();
    }
}

/// <summary>
/// Ops recorded by <see cref="Backend.Capture"/>, replayed as one unit on the current contents of the tensors they use
/// (write inputs before <see cref="Launch"/>, read outputs after). Dispose before the tensors it uses.
/// </summary>
public sealed class Graph : IDisposable
{
    private readonly GraphHandle _handle;

    internal Graph(GraphHandle handle) => _handle = handle;

    /// <summary>Runs the recorded ops once more (queued after earlier work; returns before the GPU finishes).</summary>
    public void Launch() => Native.GraphLaunch(_handle);

    /// <summary>Frees the graph and the memory it reserved.</summary>
    public void Dispose() => _handle.Dispose();
}
