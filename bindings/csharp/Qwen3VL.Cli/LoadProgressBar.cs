using System.Globalization;
using Qwen3VL.Native;

namespace Qwen3VL.Cli;

/// <summary>A one-line text progress bar for loading weights, on stderr and only when stderr is a terminal.</summary>
internal sealed class LoadProgressBar : IProgress<LoadProgress>, IDisposable
{
    private readonly Lock _gate = new();
    private int _lastPercent = -1;
    private bool _drawn;

    private LoadProgressBar() { }

    /// <summary>A bar on stderr, or null when stderr is redirected (logs and pipes get no carriage-return noise).</summary>
    internal static LoadProgressBar? ForStandardError() => Console.IsErrorRedirected ? null : new LoadProgressBar();

    public void Report(LoadProgress value)
    {
        int percent = (int)(value.Fraction * 100);
        lock (_gate)
        {
            if (percent == _lastPercent) return;
            _lastPercent = percent;
            _drawn = true;
            const int width = 30;
            int filled = percent * width / 100;
            Console.Error.Write(string.Create(CultureInfo.InvariantCulture,
                $"\rloading weights [{new string('#', filled)}{new string('.', width - filled)}] {percent,3}% ({value.TensorsLoaded}/{value.TensorCount} tensors, {value.BytesLoaded / 1e9:0.00}/{value.TotalBytes / 1e9:0.00} GB)"));
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_drawn) Console.Error.WriteLine();
        }
    }
}
