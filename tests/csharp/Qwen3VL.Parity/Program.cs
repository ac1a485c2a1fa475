using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using Qwen3VL.Native;
using Qwen3VL.Native.Engine;
using Qwen3VL.Native.Inference;
using Qwen3VL.Native.Model;
using Qwen3VL.Native.Processing;

// qwen3vl-parity [--device cpu|cuda[:N]] [--fp32-math] [--tolerance REL_L2] [--weights stored|bf16|q8|q4] [--kv auto|f32|bf16|q8]
//                FIXTURE_DIR...
// For every case: the fixture's input_ids and pixel_values fed in, logits at logits_positions against the reference
// (relative L2 <= 1e-4, the CPU criterion; a documented bf16 bound may replace it on GPUs), and greedy decoding equal to
// greedy_tokens up to the first step whose reference margin is below 1e-2. Exit code 1 when any case fails.
// With --weights q8 the quantized model is measured against transformers-fp32 and against our own model with the weights
// as stored (relative L2, top-1 agreement, mean KL of the softmax: LogitQuality); it passes when its relative L2 against
// fp32 is within sqrt(n + 1) * 2 * 5.4e-3 for n quantized matrices (the per-matrix relative RMS error of the format on
// Gaussian weights, doubled for the decode GEMV's activation rounding, over independent matrices: QuantizedWeightsTests)
// and greedy decoding equals greedy_tokens up to the first step whose reference margin is below 5e-2.
// With --weights q4 the same, each q4 matrix counted with the q4 format's relative RMS error on Gaussian weights (7.2e-2,
// Q4Format.ErrorIsBelowQ4_0sAtTheSameBits) instead of q8's: the bound is 2 sqrt((n8 + 1) r8^2 + n4 r4^2), and the greedy
// margin floor scales with the error, 5e-2 * r4 / r8.
// With --kv q8 (Qwen3VLModelOptions.KvCache = Q8) every key and value row written to the caches is rounded to the Q8
// format (blocks of 32 int8 with an f16 scale along head_dim): each cached vector carries an independent relative error of
// RMS 5.4e-3 (the format's on near-Gaussian rows, as for a weight row), which attention passes on as a product passes on
// a quantized matrix's. So each layer's K and V caches are 2 more independently-rounded sources, n_kv = 2 * layers, counted
// like the quantized matrices (factor 2 included, as margin): with the weights stored (or bf16) the bound is
// sqrt((2 sqrt(n_kv + 1) 5.4e-3)^2 + base^2), base the criterion in force without --kv (1e-4 or --tolerance; the FP8
// --weights bf16 tolerance; for a full-size case with transformers-bf16 logits, that case's bf16 error against fp32),
// 0.029 for the 3-layer tiny-tied fixture at base 1e-4; with --weights q8 / q4 n_kv joins the sum:
// 2 sqrt((n8 + n_kv + 1) r8^2 + n4 r4^2). The model is measured as the quantized weights are (LogitQuality against
// transformers-fp32 and against our own model with the default KV cache, same weights) and greedy decoding must agree
// up to the first step whose reference margin is below 5e-2 (q4 weights: their larger floor). The KV format needs
// head_dim a multiple of 32 (tiny-untied's is 16: its load is refused, which counts as a failure). --kv f32 / bf16 only
// choose the cache's dtype; the criterion stays that of the weights (bf16 on the CPU needs a --tolerance).
const double LogitTolerance = 1e-4, Q8RelativeRms = 5.4e-3, Q4RelativeRms = 7.2e-2, Bf16RelativeRms = 2.26e-3;
string device = "cpu";
bool fp32Math = false;
double tolerance = LogitTolerance;
WeightFormat weights = WeightFormat.Stored;
KvCacheFormat kv = KvCacheFormat.Auto;
var fixtures = new List<string>();
const string Usage = "usage: qwen3vl-parity [--device cpu|cuda[:N]] [--fp32-math] [--tolerance REL_L2] [--weights stored|bf16|q8|q4] [--kv auto|f32|bf16|q8] FIXTURE_DIR...";
try
{
for (int i = 0; i < args.Length; i++)
{
    if (args[i] == "--device" && i + 1 < args.Length) device = args[++i];
    else if (args[i] == "--fp32-math") fp32Math = true;
    else if (args[i] == "--tolerance" && i + 1 < args.Length) tolerance = double.Parse(args[++i], CultureInfo.InvariantCulture);
    else if (args[i] == "--weights" && i + 1 < args.Length)
        weights = args[++i] switch
        {
            "stored" => WeightFormat.Stored,
            "bf16" => WeightFormat.BF16,
            "q8" => WeightFormat.Q8,
            "q4" => WeightFormat.Q4,
            string w => throw new ArgumentException($"--weights: '{w}' is not one of stored, bf16, q8, q4"),
        };
    else if (args[i] == "--kv" && i + 1 < args.Length)
        kv = args[++i] switch
        {
            "auto" => KvCacheFormat.Auto,
            "f32" => KvCacheFormat.F32,
            "bf16" => KvCacheFormat.BF16,
            "q8" => KvCacheFormat.Q8,
            string k => throw new ArgumentException($"--kv: '{k}' is not one of auto, f32, bf16, q8"),
        };
    else fixtures.Add(args[i]);
}
}
catch (Exception e) when (e is ArgumentException or FormatException)
{
    // A bad option value: one line naming it, and the usage (not a stack trace).
    Console.Error.WriteLine($"qwen3vl-parity: {e.Message}");
    Console.Error.WriteLine(Usage);
    return 2;
}
if (fixtures.Count == 0)
{
    Console.Error.WriteLine(Usage);
    return 2;
}
bool quantized = weights is WeightFormat.Q8 or WeightFormat.Q4;
bool kvQ8 = kv == KvCacheFormat.Q8;
double MarginFloor = weights == WeightFormat.Q4 ? 5e-2 * Q4RelativeRms / Q8RelativeRms : quantized || kvQ8 ? 5e-2 : 1e-2;

using Backend backend = device.StartsWith("cuda", StringComparison.Ordinal)
    ? Backend.CreateCuda(device.Contains(':') ? int.Parse(device[(device.IndexOf(':') + 1)..], CultureInfo.InvariantCulture) : 0, fp32Math)
    : Backend.CreateCpu();
Console.WriteLine($"backend: {backend.Name}; weights {weights}; KV cache {kv}; "
    + (quantized || kvQ8 ? "bound per case from the quantized matrices and caches" : $"tolerance rel L2 {tolerance:E0}"));
int failures = 0, cases = 0;
foreach (string dir in fixtures)
{
    Qwen3VLModel loaded;
    try
    {
        loaded = Qwen3VLModel.Load(Path.Combine(dir, "model"), backend, new Qwen3VLModelOptions { Weights = weights, KvCache = kv });
    }
    catch (ArgumentException e) when (e.ParamName == nameof(Qwen3VLModelOptions.KvCache))
    {
        // A shape the KV format cannot hold (head_dim not a multiple of 32) is refused by name: this fixture fails.
        cases++;
        failures++;
        Console.WriteLine($"FAIL {Path.GetFileName(Path.GetFullPath(dir))}: {e.Message}");
        continue;
    }
    using Qwen3VLModel model = loaded;
    // The same checkpoint with its weights as stored: what the quantized model is compared with, besides transformers.
    using Qwen3VLModel? stored = quantized ? Qwen3VLModel.Load(Path.Combine(dir, "model"), backend, new Qwen3VLModelOptions()) : null;
    // The same weights with the default KV cache: what the q8 KV cache is compared with, besides transformers.
    using Qwen3VLModel? defaultKv = kvQ8 ? Qwen3VLModel.Load(Path.Combine(dir, "model"), backend, new Qwen3VLModelOptions { Weights = weights }) : null;
    if (kvQ8 && model.KvCache != KvCacheFormat.Q8) throw new InvalidOperationException($"{dir}: --kv q8 gave a {model.KvCache} cache");
    (int n8, int n4) = QuantizedMatrices(model);
    int nKv = kvQ8 ? 2 * model.Config.TextNumLayers : 0;
    double quantizedBound = 2 * Math.Sqrt((n8 + nKv + 1) * Q8RelativeRms * Q8RelativeRms + n4 * Q4RelativeRms * Q4RelativeRms);
    // An FP8 checkpoint loaded with --weights bf16: each of its F8_E4M3 matrices dequantized exactly, then rounded to bf16
    // (8 significant bits: a relative rounding error uniform within half an ulp, RMS at most 2^-7 / sqrt(12) = 2.26e-3 at
    // the bottom of a binade), against the reference of the same weights dequantized in fp32. The same accumulation as
    // for the quantized formats gives 2 sqrt(n + 1) 2.26e-3 for n converted matrices; with tensor-core math the documented
    // 1e-2 of bf16 activations is added in quadrature.
    int fp8Matrices = model.Config.Fp8 && weights == WeightFormat.BF16
        ? Fp8Matrices(Path.Combine(dir, "model"))
        : 0;
    double caseTolerance = fp8Matrices == 0 ? tolerance
        : Math.Sqrt(Math.Pow(2 * Math.Sqrt(fp8Matrices + 1) * Bf16RelativeRms, 2) + (backend.Fp32Math ? 0 : 1e-2 * 1e-2));
    if (fp8Matrices > 0) Console.WriteLine($"{dir}: {fp8Matrices} FP8 matrices rounded to bf16: tolerance rel L2 {caseTolerance:E2}");
    using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "cases.json")));
    foreach (JsonElement c in doc.RootElement.GetProperty("cases").EnumerateArray())
    {
        cases++;
        string name = Path.GetFileName(Path.GetFullPath(dir)) + "/" + c.GetProperty("name").GetString();
        int[] ids = Ints(c, "input_ids");
        int[] positions = Ints(c, "logits_positions");
        VisionInput? vision = null;
        if (c.TryGetProperty("pixel_values_file", out JsonElement pv) && pv.ValueKind == JsonValueKind.String)
        {
            GridThw[] grids = c.GetProperty("image_grid_thw").EnumerateArray()
                .Select(g => new GridThw(g[0].GetInt32(), g[1].GetInt32(), g[2].GetInt32())).ToArray();
            vision = new VisionInput(ReadF32(Path.Combine(dir, pv.GetString()!)), grids);
        }
        int[] greedy = Ints(c, "greedy_tokens");
        double[] margins = c.GetProperty("greedy_margins").EnumerateArray().Select(e => e.GetDouble()).ToArray();

        var sw = Stopwatch.StartNew();
        using Qwen3VLContext ctx = model.CreateContext(ids.Length + greedy.Length + 1);
        float[] ours = ctx.Prefill(ids, vision, positions);
        float[] reference = ReadF32(Path.Combine(dir, c.GetProperty("logits_file").GetString()!));
        int vocab = model.Config.VocabSize;
        double worst = 0;
        for (int p = 0; p < positions.Length; p++)
            worst = Math.Max(worst, RelativeL2(ours.AsSpan(p * vocab, vocab), reference.AsSpan(p * vocab, vocab)));

        // Greedy: the last prompt position's logits give the first token; each decoded token gives the next.
        int strict = 0;
        while (strict < greedy.Length && margins[strict] >= MarginFloor) strict++;
        int lastIndex = Array.IndexOf(positions, ids.Length - 1);
        float[] logits = lastIndex >= 0 ? ours.AsSpan(lastIndex * vocab, vocab).ToArray() : throw new InvalidDataException(name + ": logits_positions lacks the last prompt position");
        int agree = 0;
        var ourTokens = new List<int>();
        for (int step = 0; step < strict; step++)
        {
            int token = ArgMax(logits);
            ourTokens.Add(token);
            if (token != greedy[step]) break;
            agree++;
            if (step + 1 < strict) logits = ctx.Decode(token);
        }
        bool ok = agree == strict;
        string extra = "";
        // The same greedy steps with the argmax taken by the backend (DecodeArgMax: on a GPU the replayed decoding
        // graph's argmax kernel, no logits copied back) must pick the same tokens.
        if (ourTokens.Count > 1)
        {
            using Qwen3VLContext fast = model.CreateContext(ids.Length + greedy.Length + 1);
            float[] first = fast.Prefill(ids, vision, [ids.Length - 1]);
            int next = ArgMax(first);
            int same = next == ourTokens[0] ? 1 : 0;
            for (int step = 1; step < ourTokens.Count && same == step; step++)
            {
                next = fast.DecodeArgMax(next);
                if (next == ourTokens[step]) same++;
            }
            if (same != ourTokens.Count) ok = false;
            extra += $"  device argmax {same}/{ourTokens.Count}";
        }
        // Sampling with Qwen3-VL's options from the backend's candidates (DecodeTopK: on a GPU the decoding graph's top_k,
        // 21 logits copied back) must draw what the whole row draws: at every step the candidates are the top of that
        // step's row (exactly) and the two draws, from equally seeded samplers, agree.
        if (ourTokens.Count > 1)
        {
            var options = new SamplingOptions { Temperature = 0.7f, TopK = 20, TopP = 0.8f, Seed = (ulong)cases };
            var fromRow = new Sampler(options);
            var fromCandidates = new Sampler(options);
            int count = fromCandidates.CandidateCount(vocab);
            var values = new float[count];
            var candidateIds = new int[count];
            using Qwen3VLContext sampled = model.CreateContext(ids.Length + greedy.Length + 1);
            float[] first = sampled.Prefill(ids, vision, [ids.Length - 1]);
            int token = fromRow.Sample(first);
            fromCandidates.Sample(first);
            int steps = greedy.Length - 1, same = 0;
            for (int step = 0; step < steps; step++)
            {
                sampled.DecodeTopK(token, values, candidateIds);
                float[] row = sampled.LastLogits();
                int[] top = Enumerable.Range(0, row.Length).OrderByDescending(i => row[i]).ThenBy(i => i).Take(count).ToArray();
                bool exact = top.SequenceEqual(candidateIds) && top.Select(i => row[i]).SequenceEqual(values);
                int want = fromRow.Sample(row);
                if (!fromCandidates.TrySampleCandidates(values, candidateIds, out int got)) got = fromCandidates.Sample(row);
                if (!exact || got != want) break;
                same++;
                token = want;
            }
            if (same != steps) ok = false;
            extra += $"  sampled from candidates {same}/{steps}";
        }
        if (quantized || kvQ8)
        {
            string what = kvQ8 ? $"{weights} + KV q8" : weights.ToString();
            var vsFp32 = Qwen3VL.Native.Tests.Shared.LogitQuality.Of(ours, reference, vocab);
            extra += $"\n      {what} vs transformers-fp32:  {vsFp32}";
            if (stored is not null)
            {
                using Qwen3VLContext sctx = stored.CreateContext(ids.Length + 1);
                var vsStored = Qwen3VL.Native.Tests.Shared.LogitQuality.Of(ours, sctx.Prefill(ids, vision, positions), vocab);
                extra += $"\n      {what} vs ours as stored:     {vsStored}";
            }
            if (defaultKv is not null)
            {
                using Qwen3VLContext dctx = defaultKv.CreateContext(ids.Length + 1);
                var vsDefaultKv = Qwen3VL.Native.Tests.Shared.LogitQuality.Of(ours, dctx.Prefill(ids, vision, positions), vocab);
                extra += $"\n      {what} vs ours with KV {defaultKv.KvCache.ToString().ToLowerInvariant()}: {vsDefaultKv}";
            }
            double bound = quantizedBound;
            string sources = $"{n8} q8 and {n4} q4 matrices" + (kvQ8 ? $", {nKv} q8 KV caches" : "");
            if (!quantized)
            {
                // Weights as stored (or bf16): the caches' term in quadrature with the criterion in force without --kv.
                double baseTolerance = caseTolerance;
                if (c.TryGetProperty("logits_bf16_file", out JsonElement kvBf16File) && kvBf16File.ValueKind == JsonValueKind.String)
                {
                    float[] hfBf16 = ReadF32(Path.Combine(dir, kvBf16File.GetString()!));
                    baseTolerance = 0;
                    for (int p = 0; p < positions.Length; p++)
                        baseTolerance = Math.Max(baseTolerance, RelativeL2(hfBf16.AsSpan(p * vocab, vocab), reference.AsSpan(p * vocab, vocab)));
                    sources += $"; base: transformers-bf16's rel L2 {baseTolerance:E2}";
                }
                else sources += $"; base {baseTolerance:E2}";
                bound = Math.Sqrt(Math.Pow(2 * Math.Sqrt(nKv + 1) * Q8RelativeRms, 2) + baseTolerance * baseTolerance);
            }
            if (vsFp32.MaxRelativeL2 > bound) ok = false;
            extra += $"\n      bound {bound:E2} ({sources})";
        }
        else if (c.TryGetProperty("logits_bf16_file", out JsonElement bf16File) && bf16File.ValueKind == JsonValueKind.String)
        {
            // The full-size criterion (it replaces the fixed tolerance): our error against transformers-fp32 is no
            // worse than transformers-bf16's own error against fp32 (relative L2 at every position), and top-1
            // agrees with fp32 at least as often as bf16's does.
            float[] hfBf16 = ReadF32(Path.Combine(dir, bf16File.GetString()!));
            double worstHf = 0;
            int top1Ours = 0, top1Hf = 0;
            for (int p = 0; p < positions.Length; p++)
            {
                ReadOnlySpan<float> r = reference.AsSpan(p * vocab, vocab);
                double oursErr = RelativeL2(ours.AsSpan(p * vocab, vocab), r), hfErr = RelativeL2(hfBf16.AsSpan(p * vocab, vocab), r);
                worstHf = Math.Max(worstHf, hfErr);
                int refTop = ArgMax(r.ToArray());
                if (ArgMax(ours.AsSpan(p * vocab, vocab).ToArray()) == refTop) top1Ours++;
                if (ArgMax(hfBf16.AsSpan(p * vocab, vocab).ToArray()) == refTop) top1Hf++;
                if (oursErr > hfErr) ok = false;
            }
            if (top1Ours < top1Hf) ok = false;
            extra += $"  (transformers-bf16: rel L2 {worstHf:E2}; top-1 agreement ours {top1Ours}/{positions.Length}, bf16 {top1Hf}/{positions.Length})";
        }
        else if (worst > caseTolerance)
        {
            ok = false;
        }
        if (!ok) failures++;
        Console.WriteLine($"{(ok ? "ok  " : "FAIL")} {name,-40} rel L2 {worst:E2}  greedy {agree}/{strict} (of {greedy.Length})  {sw.Elapsed.TotalMilliseconds:0} ms{extra}");
    }
}
Console.WriteLine($"{cases - failures} passed, {failures} failed");
return failures == 0 ? 0 : 1;

// Quantized matrices on the path from the embedding to the logits, per format.
static (int Q8, int Q4) QuantizedMatrices(Qwen3VLModel m)
{
    var all = new List<Tensor> { m.Text.LmHeadWeight };
    foreach (DecoderLayer l in m.Text.Layers)
        all.AddRange([l.QProjWeight, l.KProjWeight, l.VProjWeight, l.OProjWeight, l.GateProjWeight, l.UpProjWeight, l.DownProjWeight]);
    return (all.Count(t => t.DType == TensorDType.Q8), all.Count(t => t.DType == TensorDType.Q4));
}

static int[] Ints(JsonElement c, string key) => c.GetProperty(key).EnumerateArray().Select(e => e.GetInt32()).ToArray();

static float[] ReadF32(string path) => MemoryMarshal.Cast<byte, float>(File.ReadAllBytes(path)).ToArray();

static double RelativeL2(ReadOnlySpan<float> ours, ReadOnlySpan<float> reference)
{
    double num = 0, den = 0;
    for (int i = 0; i < reference.Length; i++)
    {
        double d = (double)ours[i] - reference[i];
        num += d * d;
        den += (double)reference[i] * reference[i];
    }
    return Math.Sqrt(num / den);
}

static int ArgMax(float[] v)
{
    int best = 0;
    for (int i = 1; i < v.Length; i++) if (v[i] > v[best]) best = i;
    return best;
}

// The F8_E4M3 tensors of a checkpoint folder, from its safetensors headers (8-byte little-endian length, then JSON).
static int Fp8Matrices(string directory)
{
    int n = 0;
    foreach (string file in Directory.EnumerateFiles(directory, "*.safetensors"))
    {
        using var f = File.OpenRead(file);
        var length = new byte[8];
        f.ReadExactly(length);
        var header = new byte[checked((int)BitConverter.ToUInt64(length))];
        f.ReadExactly(header);
        using JsonDocument h = JsonDocument.Parse(header);
        foreach (JsonProperty t in h.RootElement.EnumerateObject())
            if (t.Value.ValueKind == JsonValueKind.Object && t.Value.TryGetProperty("dtype", out JsonElement d) && d.GetString() == "F8_E4M3") n++;
    }
    return n;
}
