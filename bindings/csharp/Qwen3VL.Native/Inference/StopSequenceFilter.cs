using System.Text;

namespace Qwen3VL.Native.Inference;

/// <summary>
/// Accumulates generated text and passes it on, holding back any tail that could be the start of a stop sequence, so
/// that a stop sequence is never streamed; once one appears the text is cut before it.
/// </summary>
internal sealed class StopSequenceFilter
{
    private readonly string[] _stops;
    private readonly int _longest;
    private readonly Action<string>? _onText;
    private readonly StringBuilder _text = new();
    private int _emitted;
    private bool _stopped;

    internal StopSequenceFilter(IReadOnlyList<string>? stopSequences, Action<string>? onText)
    {
        _stops = stopSequences?.Where(s => !string.IsNullOrEmpty(s)).Distinct(StringComparer.Ordinal).ToArray() ?? [];
        _longest = _stops.Length == 0 ? 0 : _stops.Max(s => s.Length);
        _onText = onText;
    }

    /// <summary>The text so far (cut before a stop sequence once one was seen).</summary>
    internal string Text => _text.ToString();

    /// <summary>Adds a piece; returns true when the text now contains a stop sequence (generation should end).</summary>
    internal bool Append(string piece)
    {
        if (_stopped || piece.Length == 0) return _stopped;
        int searchFrom = Math.Max(0, _text.Length - _longest + 1);
        _text.Append(piece);
        if (_stops.Length == 0)
        {
            Emit(_text.Length);
            return false;
        }
        string window = _text.ToString(searchFrom, _text.Length - searchFrom);
        int cut = -1;
        foreach (string stop in _stops)
        {
            int at = window.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (cut < 0 || at < cut)) cut = at;
        }
        if (cut >= 0)
        {
            _text.Length = searchFrom + cut;
            Emit(_text.Length);
            _stopped = true;
            return true;
        }
        Emit(_text.Length - HeldBack());
        return false;
    }

    /// <summary>Passes on what was held back (generation ended without a stop sequence).</summary>
    internal void Complete() => Emit(_text.Length);

    /// <summary>Length of the longest tail of the text that is a proper prefix of a stop sequence.</summary>
    private int HeldBack()
    {
        int max = Math.Min(_longest - 1, _text.Length - _emitted);
        for (int k = max; k > 0; k--)
        {
            string tail = _text.ToString(_text.Length - k, k);
            foreach (string stop in _stops)
            {
                if (stop.Length > k && stop.StartsWith(tail, StringComparison.Ordinal)) return k;
            }
        }
        return 0;
    }

    private void Emit(int upTo)
    {
        if (upTo <= _emitted) return;
        string piece = _text.ToString(_emitted, upTo - _emitted);
        _emitted = upTo;
        _onText?.Invoke(piece);
    }
}
