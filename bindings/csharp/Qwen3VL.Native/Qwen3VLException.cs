using System.Runtime.InteropServices;

namespace Qwen3VL.Native;

using Qwen3VL.Native.Interop;

/// <summary>Result of a native call; mirrors <c>qwen3vl_status</c> (an ABI test checks the two agree).</summary>
public enum Qwen3VLStatus
{
    /// <summary>Success.</summary>
    Ok = 0,
    /// <summary>An argument is NULL, out of range or inconsistent with another.</summary>
    InvalidArgument = 1,
    /// <summary>A file could not be opened, read or mapped.</summary>
    IOError = 2,
    /// <summary>A file or buffer does not follow its format.</summary>
    BadFormat = 3,
    /// <summary>Valid, but not supported by this build or this model.</summary>
    Unsupported = 4,
    /// <summary>Host or device memory is exhausted.</summary>
    OutOfMemory = 5,
    /// <summary>The GPU reported an error.</summary>
    DeviceError = 6,
    /// <summary>The operation was cancelled by the caller.</summary>
    Cancelled = 7,
    /// <summary>A limit was exceeded (context length, image size, token budget).</summary>
    LimitExceeded = 8,
    /// <summary>A bug in the native library.</summary>
    InternalError = 9,
    /// <summary>The model's numbers went wrong: NaN or infinite logits, or nothing left to sample.</summary>
    NumericalError = 10,
}

/// <summary>A native call failed; <see cref="Status"/> says how, the message is the library's own.</summary>
public class Qwen3VLException : Exception
{
    /// <summary>Creates an exception for a failed native call.</summary>
    public Qwen3VLException(Qwen3VLStatus status, string message) : base(message) => Status = status;

    /// <summary>The status the native call returned.</summary>
    public Qwen3VLStatus Status { get; }

    /// <summary>
    /// The exception for a non-OK status, with the calling thread's <c>qwen3vl_last_error()</c> message. Must be
    /// called on the thread that made the failed call, before any other native call.
    /// </summary>
    internal static Qwen3VLException FromStatus(Status status)
    {
        string native = Marshal.PtrToStringUTF8(NativeMethods.LastError()) ?? "";
        string name = Marshal.PtrToStringUTF8(NativeMethods.StatusName(status)) ?? ("status " + (int)status);
        string message = native.Length == 0 ? name : native + " (" + name + ")";
        var publicStatus = (Qwen3VLStatus)(int)status;
        return publicStatus switch
        {
            Qwen3VLStatus.InvalidArgument => new Qwen3VLInvalidArgumentException(message),
            Qwen3VLStatus.IOError => new Qwen3VLIOException(message),
            Qwen3VLStatus.BadFormat => new Qwen3VLFormatException(message),
            Qwen3VLStatus.Unsupported => new Qwen3VLUnsupportedException(message),
            Qwen3VLStatus.OutOfMemory => new Qwen3VLOutOfMemoryException(message),
            Qwen3VLStatus.DeviceError => new Qwen3VLDeviceException(message),
            Qwen3VLStatus.Cancelled => new Qwen3VLCancelledException(message),
            Qwen3VLStatus.LimitExceeded => new Qwen3VLLimitExceededException(message),
            Qwen3VLStatus.InternalError => new Qwen3VLInternalException(message),
            Qwen3VLStatus.NumericalError => new Qwen3VLNumericalException(message),
            _ => new Qwen3VLException(publicStatus, message),
        };
    }
}

/// <summary>An argument is NULL, out of range or inconsistent with another (<see cref="Qwen3VLStatus.InvalidArgument"/>).</summary>
public sealed class Qwen3VLInvalidArgumentException(string message) : Qwen3VLException(Qwen3VLStatus.InvalidArgument, message);

/// <summary>A file could not be opened, read or mapped (<see cref="Qwen3VLStatus.IOError"/>).</summary>
public sealed class Qwen3VLIOException(string message) : Qwen3VLException(Qwen3VLStatus.IOError, message);

/// <summary>A file or buffer does not follow its format (<see cref="Qwen3VLStatus.BadFormat"/>).</summary>
public sealed class Qwen3VLFormatException(string message) : Qwen3VLException(Qwen3VLStatus.BadFormat, message);

/// <summary>Not supported by this build or model (<see cref="Qwen3VLStatus.Unsupported"/>).</summary>
public sealed class Qwen3VLUnsupportedException(string message) : Qwen3VLException(Qwen3VLStatus.Unsupported, message);

/// <summary>Host or device memory is exhausted (<see cref="Qwen3VLStatus.OutOfMemory"/>); the objects stay usable.</summary>
public sealed class Qwen3VLOutOfMemoryException(string message) : Qwen3VLException(Qwen3VLStatus.OutOfMemory, message);

/// <summary>The GPU reported an error (<see cref="Qwen3VLStatus.DeviceError"/>).</summary>
public sealed class Qwen3VLDeviceException(string message) : Qwen3VLException(Qwen3VLStatus.DeviceError, message);

/// <summary>The operation was cancelled (<see cref="Qwen3VLStatus.Cancelled"/>).</summary>
public sealed class Qwen3VLCancelledException(string message) : Qwen3VLException(Qwen3VLStatus.Cancelled, message);

/// <summary>A limit was exceeded (<see cref="Qwen3VLStatus.LimitExceeded"/>).</summary>
public sealed class Qwen3VLLimitExceededException(string message) : Qwen3VLException(Qwen3VLStatus.LimitExceeded, message);

/// <summary>A bug in the native library (<see cref="Qwen3VLStatus.InternalError"/>).</summary>
public sealed class Qwen3VLInternalException(string message) : Qwen3VLException(Qwen3VLStatus.InternalError, message);

/// <summary>
/// The model's numbers went wrong (<see cref="Qwen3VLStatus.NumericalError"/>): NaN or infinite logits, or options
/// (a repetition penalty of 1e-38, say) that leave no token to sample. The generation ends; the message names the step.
/// A checkpoint that produces NaN is broken; the context stays usable.
/// </summary>
public sealed class Qwen3VLNumericalException(string message) : Qwen3VLException(Qwen3VLStatus.NumericalError, message);

/// <summary>
/// The caller's input is refused: a prompt, an image or an option that the engine cannot take, for a reason the
/// message gives (an image's aspect ratio, special-token text where it is not allowed, a size above a cap).
/// <see cref="Parameter"/> names what was refused. Nothing changed: the session, context and model stay as they were.
/// </summary>
public sealed class Qwen3VLInputException(string message, string parameter, Exception? innerException = null) : Exception(message, innerException)
{
    /// <summary>What was refused: "prompt", "image", "messages", or an option's name.</summary>
    public string Parameter { get; } = parameter;
}
