namespace Qwen3VL.Native.Engine;

using Qwen3VL.Native.Interop;

/// <summary>
/// An opened Hugging Face checkpoint folder (config.json, safetensors weights, generation_config.json). The native
/// library validates every tensor against the configuration when the folder is opened. Dispose after use; tensors
/// taken from it stay valid (they keep the memory mapping alive).
/// </summary>
public sealed class Checkpoint : IDisposable
{
    private readonly CheckpointHandle _handle;
    private volatile bool _disposed;

    private Checkpoint(CheckpointHandle handle, string directory)
    {
        _handle = handle;
        Directory = directory;
    }

    /// <summary>The folder this checkpoint was opened from (full path).</summary>
    public string Directory { get; }

    internal CheckpointHandle Handle
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _handle;
        }
    }

    /// <summary>Opens and validates a checkpoint folder.</summary>
    /// <exception cref="Qwen3VLIOException">A file could not be read.</exception>
    /// <exception cref="Qwen3VLFormatException">A file is malformed or a tensor does not match the configuration.</exception>
    /// <exception cref="Qwen3VLUnsupportedException">The model is valid but not supported.</exception>
    public static Checkpoint Open(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        string full = Path.GetFullPath(directory);
        Native.CheckpointOpen(full, out CheckpointHandle handle);
        return new Checkpoint(handle, full);
    }

    /// <summary>Reads the native configuration struct.</summary>
    internal unsafe Interop.ModelConfig ReadNativeConfig()
    {
        Interop.ModelConfig config = NativeMethods.ModelConfigInit();
        Native.CheckpointConfig(Handle, &config);
        return config;
    }

    /// <summary>
    /// The weight called <paramref name="name"/> as a tensor on <paramref name="backend"/>, in its stored dtype (on the CPU a
    /// view of the mapped file, on a GPU uploaded once). The tensor keeps the backend alive until disposed.
    /// </summary>
    /// <exception cref="Qwen3VLInvalidArgumentException">The checkpoint has no such tensor.</exception>
    public Tensor GetTensor(Backend backend, string name) => GetTensorCore(backend, name, null);

    /// <summary>
    /// The weight called <paramref name="name"/> as <paramref name="dtype"/> on <paramref name="backend"/>: its stored dtype, another
    /// float dtype (converted), or <see cref="TensorDType.Q8"/> for a 2-D weight with rows of whole blocks of 32 (quantized on the
    /// backend while loading).
    /// </summary>
    /// <exception cref="Qwen3VLInvalidArgumentException">The checkpoint has no such tensor, or it cannot take <paramref name="dtype"/>.</exception>
    public Tensor GetTensor(Backend backend, string name, TensorDType dtype) => GetTensorCore(backend, name, dtype);

    private Tensor GetTensorCore(Backend backend, string name, TensorDType? dtype)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentException.ThrowIfNullOrEmpty(name);
        BackendHandle parent = backend.Handle;
        bool added = false;
        TensorHandle handle;
        try
        {
            parent.DangerousAddRef(ref added);
            if (dtype is { } d) Native.CheckpointTensorAs(Handle, parent, name, (Dtype)d, out handle);
            else Native.CheckpointTensor(Handle, parent, name, out handle);
            handle.KeepParentAlive(parent);
        }
        finally
        {
            if (added) parent.DangerousRelease();
        }
        return Tensor.FromHandle(handle);
    }

    /// <summary>Whether the checkpoint holds a tensor called <paramref name="name"/> (asks the library; absent names are not an error).</summary>
    public bool TryGetTensor(Backend backend, string name, out Tensor? tensor)
    {
        try
        {
            tensor = GetTensor(backend, name);
            return true;
        }
        catch (Qwen3VLInvalidArgumentException)
        {
            tensor = null;
            return false;
        }
    }

    /// <summary>Releases the checkpoint; tensors already taken from it stay valid.</summary>
    public void Dispose()
    {
        _disposed = true;
        _handle.Dispose();
    }
}
