using System.Runtime.InteropServices;

namespace Qwen3VL.Native.Interop;

/// <summary>
/// Base of the generated handle types: owns one native object and frees it with its <c>qwen3vl_*_free</c> function.
/// A child (a tensor) can hold a reference on its parent (the backend) so the parent is freed only after the child.
/// </summary>
internal abstract class NativeHandle : SafeHandle
{
    private SafeHandle? _parent;

    /// <summary>An invalid (zero) handle that owns what is later stored in it.</summary>
    protected NativeHandle() : base(0, ownsHandle: true) { }

    /// <inheritdoc/>
    public override bool IsInvalid => handle == 0;

    /// <summary>
    /// Keeps <paramref name="parent"/> alive until this handle has been released: adds a reference now and drops it
    /// right after this handle's own free function ran.
    /// </summary>
    internal void KeepParentAlive(SafeHandle parent)
    {
        ArgumentNullException.ThrowIfNull(parent);
        if (IsInvalid || IsClosed) throw new InvalidOperationException("Only a live handle can hold a reference on its parent.");
        bool added = false;
        parent.DangerousAddRef(ref added);
        if (Interlocked.CompareExchange(ref _parent, parent, null) != null)
        {
            parent.DangerousRelease();
            throw new InvalidOperationException("This handle already keeps a parent alive.");
        }
    }

    /// <summary>Frees the native object (the generated override calls the header's free function).</summary>
    protected abstract void Free(nint handle);

    /// <inheritdoc/>
    protected sealed override bool ReleaseHandle()
    {
        try
        {
            Free(handle);
        }
        finally
        {
            Interlocked.Exchange(ref _parent, null)?.DangerousRelease();
        }
        return true;
    }
}
