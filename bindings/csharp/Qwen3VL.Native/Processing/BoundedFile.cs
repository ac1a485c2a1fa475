using Qwen3VL.Native.Interop;

namespace Qwen3VL.Native.Processing;

/// <summary>
/// Reads whole files with a size cap that holds for every kind of file: the bytes are counted as they are read, so a
/// character device (<c>/dev/zero</c> reports length 0) or a file that grows cannot make it read without end, and a
/// file whose content does not match its reported length (a <c>/proc</c> file) is refused as not a regular file; a FIFO,
/// device or socket is refused before it is opened.
/// </summary>
internal static class BoundedFile
{
    /// <summary>The cap for a checkpoint's JSON and template files (config.json, the index, preprocessor configs).</summary>
    public const long MaxConfigBytes = 64L << 20;

    /// <summary>A small text file of a checkpoint (UTF-8), within <see cref="MaxConfigBytes"/>.</summary>
    public static string ReadConfigText(string path)
    {
        byte[] bytes = ReadAllBytes(path, MaxConfigBytes, "file");
        int bom = bytes.AsSpan().StartsWith("\uFEFF"u8) ? 3 : 0; // as File.ReadAllText
        return System.Text.Encoding.UTF8.GetString(bytes, bom, bytes.Length - bom);
    }

    /// <summary>A small file of a checkpoint, within <see cref="MaxConfigBytes"/>.</summary>
    public static byte[] ReadConfigBytes(string path) => ReadAllBytes(path, MaxConfigBytes, "file");

    /// <summary>Reads <paramref name="path"/> if it holds at most <paramref name="maxBytes"/> bytes.</summary>
    /// <param name="path">The file.</param>
    /// <param name="maxBytes">The cap.</param>
    /// <param name="what">What the file is, for messages ("image file", "tokenizer.json").</param>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">It is larger than the cap, or not a regular file.</exception>
    /// <exception cref="IOException">It cannot be read.</exception>
    /// <exception cref="UnauthorizedAccessException">It may not be read.</exception>
    public static byte[] ReadAllBytes(string path, long maxBytes, string what)
    {
        ArgumentNullException.ThrowIfNull(path);
        // Examined before it is opened: opening a FIFO for reading blocks until a writer comes, and .NET reports neither
        // a FIFO nor a device as such (both are "Normal" files of length 0).
        switch (KindOf(path))
        {
            case FileKind.Directory: throw new InvalidDataException($"The {what} '{path}' is a folder, not a file.");
            case FileKind.None: throw new FileNotFoundException($"The {what} '{path}' does not exist.", path);
            case FileKind.Other: throw new InvalidDataException($"The {what} '{path}' is not a regular file (a FIFO, device or socket).");
        }
        var info = new FileInfo(path);
        long declared = info.Length;
        if (declared > maxBytes) throw new InvalidDataException($"The {what} '{path}' is {declared} bytes, above the limit of {maxBytes}.");
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, FileOptions.SequentialScan);
        var buffer = new MemoryStream(checked((int)Math.Min(declared, int.MaxValue - 1)));
        byte[] chunk = new byte[81920];
        long total = 0;
        int n;
        while ((n = stream.Read(chunk, 0, (int)Math.Min(chunk.Length, maxBytes - total + 1))) > 0)
        {
            total += n;
            if (total > maxBytes) throw new InvalidDataException($"The {what} '{path}' holds more than the limit of {maxBytes} bytes.");
            if (total > declared) throw new InvalidDataException($"The {what} '{path}' is not a regular file (it gives more bytes than its length of {declared}).");
            buffer.Write(chunk, 0, n);
        }
        return buffer.Length == buffer.Capacity ? buffer.GetBuffer() : buffer.ToArray();
    }

    /// <summary>What <paramref name="path"/> names, from the native library's stat (qwen3vl_path_kind).</summary>
    private static unsafe FileKind KindOf(string path)
    {
        FileKind kind;
        Interop.Native.PathKind(path, &kind);
        return kind;
    }
}
