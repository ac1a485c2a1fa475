using System.Text;

namespace Qwen3VL.Native.Interop;

/// <summary>UTF-8 text in fixed-size, NUL-terminated native buffers.</summary>
internal static unsafe class NativeText
{
    internal static string FromBuffer(byte* buffer, int capacity)
    {
        var span = new ReadOnlySpan<byte>(buffer, capacity);
        int end = span.IndexOf((byte)0);
        return Encoding.UTF8.GetString(end < 0 ? span : span[..end]);
    }
}
