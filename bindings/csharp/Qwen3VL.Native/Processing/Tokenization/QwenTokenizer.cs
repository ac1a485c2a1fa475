using System.Buffers;
using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;

namespace Qwen3VL.Native.Processing.Tokenization;

/// <summary>
/// Byte-level BPE tokenizer of Qwen2/Qwen3/Qwen3-VL, loaded from a Hugging Face <c>tokenizer.json</c>, producing the
/// same ids as Hugging Face <c>tokenizers</c>: added tokens are matched literally first (leftmost-longest), the
/// text between them is NFC-normalized, split with the Qwen2 pre-tokenizer regex, mapped to the byte-level
/// alphabet and merged by rank.
/// </summary>
/// <remarks>
/// Instances are immutable and thread-safe. The BPE result of every distinct piece is cached, so long prompts
/// cost little more than the pre-tokenizer scan. Unpaired UTF-16 surrogates in the input are encoded as U+FFFD.
/// </remarks>
public sealed class QwenTokenizer
{
    private const int MaxCacheEntries = 1 << 18;
    private const int SimpleMergeLimit = 48;

    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<long, (int Rank, int Id)> _merges;
    private readonly int[] _byteIds = new int[256];
    private readonly byte[]?[] _tokenBytes;
    private readonly string?[] _idToToken;
    private readonly bool[] _isSpecial;
    private readonly Dictionary<string, AddedToken> _addedByContent;
    private readonly Dictionary<char, string[]> _addedByFirstChar;
    private readonly SearchValues<char> _addedFirstChars;
    private readonly PreTokenizer _preTokenizer;
    private readonly bool _nfc;
    private readonly bool _ignoreMerges;
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _cacheLookup;
    private int _cacheCount;

    private QwenTokenizer(
        Dictionary<string, int> vocab,
        List<(string Left, string Right)> merges,
        IReadOnlyList<AddedToken> addedTokens,
        PreTokenizer preTokenizer,
        bool nfc,
        bool ignoreMerges)
    {
        _vocab = vocab;
        _preTokenizer = preTokenizer;
        _nfc = nfc;
        _ignoreMerges = ignoreMerges;
        _cacheLookup = _cache.GetAlternateLookup<ReadOnlySpan<char>>();

        int maxId = -1;
        foreach (int id in vocab.Values)
        {
            maxId = Math.Max(maxId, id);
        }
        foreach (AddedToken t in addedTokens)
        {
            maxId = Math.Max(maxId, t.Id);
        }
        VocabSize = maxId + 1;
        _tokenBytes = new byte[]?[VocabSize];
        _idToToken = new string?[VocabSize];
        _isSpecial = new bool[VocabSize];

        foreach ((string token, int id) in vocab)
        {
            _idToToken[id] = token;
            _tokenBytes[id] = ByteLevelAlphabet.TryGetBytes(token) ?? Encoding.UTF8.GetBytes(token);
        }
        for (int b = 0; b < 256; b++)
        {
            if (!vocab.TryGetValue(ByteLevelAlphabet.ByteToChar[b].ToString(), out _byteIds[b]))
            {
                throw new InvalidDataException($"tokenizer.json: the vocabulary lacks the byte-level token for byte 0x{b:X2}.");
            }
        }

        _merges = new Dictionary<long, (int, int)>(merges.Count);
        for (int rank = 0; rank < merges.Count; rank++)
        {
            (string left, string right) = merges[rank];
            if (!vocab.TryGetValue(left, out int l) || !vocab.TryGetValue(right, out int r)
                || !vocab.TryGetValue(left + right, out int merged))
            {
                throw new InvalidDataException($"tokenizer.json: merge #{rank} '{left} {right}' refers to tokens missing from the vocabulary.");
            }
            _merges.TryAdd(PairKey(l, r), (rank, merged));
        }

        _addedByContent = new Dictionary<string, AddedToken>(StringComparer.Ordinal);
        var sorted = new List<AddedToken>(addedTokens);
        sorted.Sort((a, b) => a.Id.CompareTo(b.Id));
        foreach (AddedToken t in sorted)
        {
            if (t.Content.Length == 0)
            {
                continue;
            }
            _addedByContent[t.Content] = t;
            _idToToken[t.Id] = t.Content;
            _tokenBytes[t.Id] = Encoding.UTF8.GetBytes(t.Content);
            _isSpecial[t.Id] = t.IsSpecial;
        }
        AddedTokens = sorted;
        _addedByFirstChar = _addedByContent.Keys
            .GroupBy(k => k[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(k => k.Length).ToArray());
        _addedFirstChars = SearchValues.Create(_addedByFirstChar.Keys.ToArray());
    }

    /// <summary>Number of token ids (highest id + 1), added tokens included.</summary>
    public int VocabSize { get; }

    /// <summary>The added tokens, by id.</summary>
    public IReadOnlyList<AddedToken> AddedTokens { get; }

    /// <summary>
    /// True when the pre-tokenizer pattern of <c>tokenizer.json</c> is the Qwen2 one and runs on the exact
    /// code-point implementation; false when it fell back to .NET <see cref="System.Text.RegularExpressions.Regex"/>.
    /// </summary>
    public bool UsesQwen2PreTokenizer => _preTokenizer is Qwen2PreTokenizer;

    /// <summary>Loads the tokenizer of a checkpoint folder: <c>tokenizer.json</c> plus, when present, the added tokens of <c>tokenizer_config.json</c>.</summary>
    /// <param name="directory">The checkpoint folder.</param>
    /// <param name="fallbackTokenizerJson">A <c>tokenizer.json</c> used when the folder has none.</param>
    public static QwenTokenizer FromDirectory(string directory, string? fallbackTokenizerJson = null)
    {
        string json = Path.Combine(directory, "tokenizer.json");
        if (!File.Exists(json))
        {
            json = fallbackTokenizerJson ?? throw new FileNotFoundException($"No tokenizer.json in '{directory}'.", json);
        }
        string config = Path.Combine(directory, "tokenizer_config.json");
        return FromFile(json, File.Exists(config) ? config : null);
    }

    /// <summary>Loads a tokenizer from a <c>tokenizer.json</c> and optionally a <c>tokenizer_config.json</c> (for its <c>added_tokens_decoder</c>).</summary>
    /// <exception cref="NotSupportedException">The file describes a tokenizer other than byte-level BPE.</exception>
    /// <exception cref="InvalidDataException">A file is not JSON, lacks a field the tokenizer needs, or has one of the wrong kind.</exception>
    public static QwenTokenizer FromFile(string tokenizerJsonPath, string? tokenizerConfigPath = null)
    {
        try
        {
            return Load(tokenizerJsonPath, tokenizerConfigPath);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException or OverflowException
                                      or ArgumentException or IndexOutOfRangeException)
        {
            // JsonElement accessors throw these for a missing property or a value of the wrong kind.
            throw new InvalidDataException($"'{tokenizerJsonPath}'{(tokenizerConfigPath is null ? "" : $" (with '{tokenizerConfigPath}')")} " +
                $"is not a usable Qwen tokenizer: {e.Message}", e);
        }
    }

    /// <summary>Largest tokenizer.json / tokenizer_config.json read (Qwen's tokenizer.json is 11 MB).</summary>
    private const long MaxTokenizerFileBytes = 512L << 20;

    private static QwenTokenizer Load(string tokenizerJsonPath, string? tokenizerConfigPath)
    {
        using JsonDocument doc = JsonDocument.Parse(BoundedFile.ReadAllBytes(tokenizerJsonPath, MaxTokenizerFileBytes, "tokenizer file"));
        JsonElement root = doc.RootElement;

        JsonElement model = root.GetProperty("model");
        if (model.TryGetProperty("type", out JsonElement type) && type.GetString() != "BPE")
        {
            throw new NotSupportedException($"tokenizer.json model type '{type.GetString()}' is not BPE.");
        }
        if (model.TryGetProperty("byte_fallback", out JsonElement bf) && bf.ValueKind == JsonValueKind.True)
        {
            throw new NotSupportedException("tokenizer.json: byte_fallback BPE is not supported.");
        }
        bool ignoreMerges = model.TryGetProperty("ignore_merges", out JsonElement im) && im.ValueKind == JsonValueKind.True;

        JsonElement vocabJson = model.GetProperty("vocab");
        var vocab = new Dictionary<string, int>(200_000, StringComparer.Ordinal);
        foreach (JsonProperty p in vocabJson.EnumerateObject())
        {
            vocab[p.Name] = p.Value.GetInt32();
        }

        var merges = new List<(string, string)>(200_000);
        foreach (JsonElement m in model.GetProperty("merges").EnumerateArray())
        {
            if (m.ValueKind == JsonValueKind.String)
            {
                string s = m.GetString()!;
                int space = s.IndexOf(' ', 1);
                if (space < 0)
                {
                    throw new InvalidDataException($"tokenizer.json: malformed merge '{s}'.");
                }
                merges.Add((s[..space], s[(space + 1)..]));
            }
            else
            {
                merges.Add((m[0].GetString()!, m[1].GetString()!));
            }
        }

        var added = new Dictionary<int, AddedToken>();
        if (root.TryGetProperty("added_tokens", out JsonElement addedJson) && addedJson.ValueKind == JsonValueKind.Array)
        {
            foreach (JsonElement t in addedJson.EnumerateArray())
            {
                int id = t.GetProperty("id").GetInt32();
                added[id] = new AddedToken(id, t.GetProperty("content").GetString()!, IsTrue(t, "special"));
            }
        }
        if (tokenizerConfigPath is not null)
        {
            using JsonDocument cfg = JsonDocument.Parse(BoundedFile.ReadAllBytes(tokenizerConfigPath, MaxTokenizerFileBytes, "tokenizer config"));
            if (cfg.RootElement.TryGetProperty("added_tokens_decoder", out JsonElement dec) && dec.ValueKind == JsonValueKind.Object)
            {
                foreach (JsonProperty p in dec.EnumerateObject())
                {
                    int id = int.Parse(p.Name, System.Globalization.CultureInfo.InvariantCulture);
                    if (!added.ContainsKey(id))
                    {
                        added[id] = new AddedToken(id, p.Value.GetProperty("content").GetString()!, IsTrue(p.Value, "special"));
                    }
                }
            }
        }

        bool nfc = ReadNormalizer(root);
        PreTokenizer pre = ReadPreTokenizer(root);
        return new QwenTokenizer(vocab, merges, added.Values.ToList(), pre, nfc, ignoreMerges);
    }

    private static bool IsTrue(JsonElement e, string name) =>
        e.TryGetProperty(name, out JsonElement v) && v.ValueKind == JsonValueKind.True;

    private static bool ReadNormalizer(JsonElement root)
    {
        if (!root.TryGetProperty("normalizer", out JsonElement n) || n.ValueKind == JsonValueKind.Null)
        {
            return false;
        }
        string? type = n.GetProperty("type").GetString();
        if (type == "NFC")
        {
            return true;
        }
        if (type == "Sequence" && n.GetProperty("normalizers") is { } seq
            && seq.GetArrayLength() == 1 && seq[0].GetProperty("type").GetString() == "NFC")
        {
            return true;
        }
        throw new NotSupportedException($"tokenizer.json normalizer '{n.GetRawText()}' is not supported (only NFC).");
    }

    private static PreTokenizer ReadPreTokenizer(JsonElement root)
    {
        JsonElement pre = root.GetProperty("pre_tokenizer");
        string? pattern = null;
        bool byteLevel = false;
        IEnumerable<JsonElement> steps = pre.GetProperty("type").GetString() == "Sequence"
            ? pre.GetProperty("pretokenizers").EnumerateArray()
            : [pre];
        foreach (JsonElement step in steps)
        {
            switch (step.GetProperty("type").GetString())
            {
                case "Split" when pattern is null
                                  && step.GetProperty("behavior").GetString() == "Isolated"
                                  && !IsTrue(step, "invert")
                                  && step.GetProperty("pattern").TryGetProperty("Regex", out JsonElement rx):
                    pattern = rx.GetString();
                    break;
                case "ByteLevel" when !IsTrue(step, "add_prefix_space") && !IsTrue(step, "use_regex"):
                    byteLevel = true;
                    break;
                default:
                    throw new NotSupportedException($"tokenizer.json pre-tokenizer step '{step.GetRawText()}' is not supported.");
            }
        }
        if (pattern is null || !byteLevel)
        {
            throw new NotSupportedException("tokenizer.json: expected a regex Split followed by ByteLevel(use_regex=false).");
        }
        return pattern == Qwen2PreTokenizer.Pattern ? Qwen2PreTokenizer.Instance : new RegexPreTokenizer(pattern);
    }

    /// <summary>Encodes text; added/special tokens written in the text (e.g. <c>&lt;|im_start|&gt;</c>) become their ids.</summary>
    public int[] Encode(string text)
    {
        var ids = new List<int>(text.Length / 3 + 4);
        Encode(text, ids);
        return ids.ToArray();
    }

    /// <summary>Encodes text and appends the ids to <paramref name="ids"/>.</summary>
    public void Encode(string text, List<int> ids) => Encode(text, ids, null);

    /// <summary>
    /// Encodes text and appends the ids to <paramref name="ids"/>; in the <paramref name="plainText"/> ranges (ascending,
    /// not overlapping: the text a caller wrote into a rendered prompt) added-token text such as <c>&lt;|im_start|&gt;</c>
    /// stays text (as transformers' <c>split_special_tokens=True</c> does), so a message cannot forge a turn or an image
    /// pad. Elsewhere added tokens become their ids. Text without added-token text encodes the same either way.
    /// </summary>
    public void Encode(string text, List<int> ids, IReadOnlyList<(int Start, int Length)>? plainText)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(ids);
        int start = 0;
        int pos = 0;
        int range = 0;
        while (pos < text.Length)
        {
            int hit = text.AsSpan(pos).IndexOfAny(_addedFirstChars);
            if (hit < 0)
            {
                break;
            }
            pos += hit;
            if (plainText is not null)
            {
                while (range < plainText.Count && plainText[range].Start + plainText[range].Length <= pos) range++;
                if (range < plainText.Count && plainText[range].Start <= pos)
                {
                    pos = plainText[range].Start + plainText[range].Length; // no added token starts inside the range
                    continue;
                }
            }
            AddedToken? match = MatchAdded(text, pos);
            if (match is null)
            {
                pos++;
                continue;
            }
            if (pos > start)
            {
                EncodeOrdinary(text.Substring(start, pos - start), ids);
            }
            ids.Add(match.Id);
            pos += match.Content.Length;
            start = pos;
        }
        if (start < text.Length)
        {
            EncodeOrdinary(start == 0 ? text : text[start..], ids);
        }
    }

    private AddedToken? MatchAdded(string text, int pos)
    {
        ReadOnlySpan<char> rest = text.AsSpan(pos);
        foreach (string candidate in _addedByFirstChar[text[pos]])
        {
            if (rest.StartsWith(candidate, StringComparison.Ordinal))
            {
                return _addedByContent[candidate];
            }
        }
        return null;
    }

    private void EncodeOrdinary(string segment, List<int> ids)
    {
        if (_nfc && !IsTriviallyNfc(segment))
        {
            segment = segment.Normalize(NormalizationForm.FormC);
        }
        if (_preTokenizer is Qwen2PreTokenizer qwen)
        {
            int pos = 0;
            while (pos < segment.Length)
            {
                int len = qwen.NextPieceLength(segment, pos);
                EncodePiece(segment.AsSpan(pos, len), ids);
                pos += len;
            }
        }
        else
        {
            _preTokenizer.Split(segment, (s, l) => EncodePiece(segment.AsSpan(s, l), ids));
        }
    }

    /// <summary>Text made only of code points below U+0300 is already in NFC (no composition starts there).</summary>
    private static bool IsTriviallyNfc(string s) => !s.AsSpan().ContainsAnyInRange('\u0300', '\uFFFF');

    private void EncodePiece(ReadOnlySpan<char> piece, List<int> ids)
    {
        if (_cacheLookup.TryGetValue(piece, out int[]? cached))
        {
            ids.AddRange(cached);
            return;
        }
        int[] result = BytePairEncode(piece);
        if (_cacheCount >= MaxCacheEntries)
        {
            _cache.Clear();
            _cacheCount = 0;
        }
        if (_cacheLookup.TryAdd(piece, result))
        {
            Interlocked.Increment(ref _cacheCount);
        }
        ids.AddRange(result);
    }

    private int[] BytePairEncode(ReadOnlySpan<char> piece)
    {
        int maxBytes = Encoding.UTF8.GetMaxByteCount(piece.Length);
        byte[]? rented = null;
        Span<byte> bytes = maxBytes <= 512 ? stackalloc byte[512] : (rented = ArrayPool<byte>.Shared.Rent(maxBytes));
        try
        {
            int n = Encoding.UTF8.GetBytes(piece, bytes);
            bytes = bytes[..n];
            if (_ignoreMerges && _vocab.TryGetValue(ToByteLevel(bytes), out int direct))
            {
                return [direct];
            }
            var symbols = new int[n];
            for (int i = 0; i < n; i++)
            {
                symbols[i] = _byteIds[bytes[i]];
            }
            return n <= SimpleMergeLimit ? MergeSimple(symbols) : MergeWithHeap(symbols);
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    private static string ToByteLevel(ReadOnlySpan<byte> bytes)
    {
        return string.Create(bytes.Length, bytes.ToArray(), static (dst, src) =>
        {
            for (int i = 0; i < src.Length; i++)
            {
                dst[i] = ByteLevelAlphabet.ByteToChar[src[i]];
            }
        });
    }

    /// <summary>Quadratic merge loop for short pieces: repeatedly merges the leftmost pair of lowest rank.</summary>
    private int[] MergeSimple(int[] symbols)
    {
        int count = symbols.Length;
        while (count > 1)
        {
            int bestRank = int.MaxValue, bestAt = -1, bestId = 0;
            for (int k = 0; k < count - 1; k++)
            {
                if (_merges.TryGetValue(PairKey(symbols[k], symbols[k + 1]), out var m) && m.Rank < bestRank)
                {
                    bestRank = m.Rank;
                    bestAt = k;
                    bestId = m.Id;
                }
            }
            if (bestAt < 0)
            {
                break;
            }
            symbols[bestAt] = bestId;
            Array.Copy(symbols, bestAt + 2, symbols, bestAt + 1, count - bestAt - 2);
            count--;
        }
        return count == symbols.Length ? symbols : symbols[..count];
    }

    /// <summary>
    /// The algorithm of Hugging Face <c>tokenizers</c> (word.rs <c>merge_all</c>) for long pieces: a priority queue
    /// ordered by (rank, position) over a linked list of symbols, with stale entries skipped.
    /// </summary>
    private int[] MergeWithHeap(int[] ids)
    {
        int n = ids.Length;
        var prev = new int[n];
        var next = new int[n];
        var dead = new bool[n];
        var queue = new PriorityQueue<int, long>(n);
        for (int i = 0; i < n; i++)
        {
            prev[i] = i - 1;
            next[i] = i + 1 < n ? i + 1 : -1;
        }
        for (int i = 0; i + 1 < n; i++)
        {
            Enqueue(i, ids[i], ids[i + 1]);
        }
        while (queue.TryDequeue(out int pos, out long priority))
        {
            int right = next[pos];
            if (dead[pos] || right < 0)
            {
                continue;
            }
            if (!_merges.TryGetValue(PairKey(ids[pos], ids[right]), out var m) || m.Rank != (int)(priority >> 32))
            {
                continue;
            }
            ids[pos] = m.Id;
            dead[right] = true;
            next[pos] = next[right];
            if (next[pos] >= 0)
            {
                prev[next[pos]] = pos;
            }
            if (prev[pos] >= 0)
            {
                Enqueue(prev[pos], ids[prev[pos]], ids[pos]);
            }
            if (next[pos] >= 0)
            {
                Enqueue(pos, ids[pos], ids[next[pos]]);
            }
        }
        var result = new List<int>();
        for (int i = 0; i >= 0; i = next[i])
        {
            result.Add(ids[i]);
        }
        return result.ToArray();

        void Enqueue(int at, int left, int rightId)
        {
            if (_merges.TryGetValue(PairKey(left, rightId), out var merge))
            {
                queue.Enqueue(at, ((long)merge.Rank << 32) | (uint)at);
            }
        }
    }

    private static long PairKey(int left, int right) => ((long)left << 32) | (uint)right;

    /// <summary>Decodes ids to text (invalid UTF-8 becomes U+FFFD). Ids outside the vocabulary are ignored, as in Hugging Face.</summary>
    /// <param name="ids">Token ids.</param>
    /// <param name="skipSpecialTokens">Drop tokens marked special (<c>&lt;|im_end|&gt;</c>, …).</param>
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false)
    {
        var buffer = new ArrayBufferWriter<byte>(ids.Length * 4 + 16);
        foreach (int id in ids)
        {
            ReadOnlySpan<byte> b = GetTokenBytes(id, skipSpecialTokens);
            b.CopyTo(buffer.GetSpan(b.Length));
            buffer.Advance(b.Length);
        }
        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    /// <summary>Creates an incremental decoder for generated tokens.</summary>
    /// <param name="skipSpecialTokens">Drop tokens marked special.</param>
    public StreamingDecoder CreateStreamingDecoder(bool skipSpecialTokens = false) => new(this, skipSpecialTokens);

    /// <summary>The raw bytes of a token (empty for unknown ids, and for special tokens when skipping them).</summary>
    public ReadOnlySpan<byte> GetTokenBytes(int id, bool skipSpecialTokens = false)
    {
        if ((uint)id >= (uint)_tokenBytes.Length || (skipSpecialTokens && _isSpecial[id]))
        {
            return default;
        }
        return _tokenBytes[id];
    }

    /// <summary>Whether <paramref name="id"/> is an added token marked special.</summary>
    public bool IsSpecialToken(int id) => (uint)id < (uint)_isSpecial.Length && _isSpecial[id];

    /// <summary>The token string of an id (byte-level alphabet for BPE tokens, literal text for added tokens).</summary>
    public string? IdToToken(int id) => (uint)id < (uint)_idToToken.Length ? _idToToken[id] : null;

    /// <summary>The id of a token string (added token content or byte-level vocabulary entry), or null.</summary>
    public int? TokenToId(string token)
    {
        if (_addedByContent.TryGetValue(token, out AddedToken? added))
        {
            return added.Id;
        }
        return _vocab.TryGetValue(token, out int id) ? id : null;
    }
}
