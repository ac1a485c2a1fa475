using System.Diagnostics;
using System.Globalization;
using Qwen3VL.Native;
using Qwen3VL.Native.Engine;
using Qwen3VL.Native.Inference;
using Qwen3VL.Native.Model;
using Qwen3VL.Native.Processing.Images;

namespace Qwen3VL.Cli;

/// <summary>
/// <c>qwen3vl bench</c>: the engine's speed on a checkpoint — prefill tokens/s, decode tokens/s, one image encode,
/// peak memory — with the effective weight bandwidth of decode and the arithmetic rate of prefill, to set next to the
/// machine's ceilings (docs/BENCHMARKS.md). Prompts are random token ids, so any checkpoint works, including the
/// random-weight one written by qwen3vl_make_random_checkpoint.
/// </summary>
internal static class BenchCommand
{
    internal const string Usage =
        "usage: qwen3vl bench --model DIR [--device cpu|cuda[:N]] [--prompt-tokens N] [--new-tokens N] [--image-size S]\n" +
        "                     [--threads N] [--repeat N] [--context N] [--sample] [--no-graphs] [--weights W] [--kv K]\n" +
        "  defaults: 512 prompt tokens, 128 new tokens (greedy), one SxS image with S = 448, all logical CPUs, 1 repeat,\n" +
        "  a context of exactly prompt + new tokens (--context sets a larger one, as a chat session would hold)\n" +
        "  --sample: also decode with Qwen3-VL's sampling (top_k 20, top_p 0.8, temperature 0.7), the candidates selected on\n" +
        "  the backend and, for comparison, from the whole logits row copied to the host\n" +
        "  --no-graphs: CUDA: decode with eager ops instead of replaying each step as a CUDA graph (the before/after of the\n" +
        "  graphs); env QWEN3VL_NO_GRAPHS=1 does the same\n" +
        "  --weights stored|bf16|q8|q4: the form of the text decoder's matrices (see qwen3vl run --help)\n" +
        "  --kv auto|f32|bf16|q8: the KV cache's format (see qwen3vl run --help)";

    internal static int Run(string[] args)
    {
        string? model = null;
        string device = "cpu";
        int promptTokens = 512, newTokens = 128, imageSize = 448, threads = 0, repeat = 1, context = 0;
        bool sample = false, cudaGraphs = CliOptions.CudaGraphsByDefault;
        WeightFormat weights = WeightFormat.Stored;
        KvCacheFormat kv = KvCacheFormat.Auto;
        try
        {
            for (int i = 0; i < args.Length; i++)
            {
                string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException(args[i] + " needs a value");
                int Int() => int.TryParse(Value(), NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) && v >= 0
                    ? v : throw new ArgumentException(args[i] + " needs a non-negative integer");
                switch (args[i])
                {
                    case "--model": model = Value(); break;
                    case "--device": device = Value(); break;
                    case "--prompt-tokens": promptTokens = Int(); break;
                    case "--new-tokens": newTokens = Int(); break;
                    case "--image-size": imageSize = Int(); break;
                    case "--threads": threads = Int(); break;
                    case "--repeat": repeat = Math.Max(1, Int()); break;
                    case "--context": context = Int(); break;
                    case "--sample": sample = true; break;
                    case "--no-graphs": cudaGraphs = false; break;
                    case "--weights": weights = CliOptions.ParseWeights(Value()); break;
                    case "--kv": kv = CliOptions.ParseKv(Value()); break;
                    default: throw new ArgumentException("unknown option " + args[i]);
                }
            }
            if (model is null) throw new ArgumentException("--model is required");
            if (promptTokens < 1) throw new ArgumentException("--prompt-tokens must be at least 1");
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine("qwen3vl bench: " + e.Message);
            Console.Error.WriteLine(Usage);
            return 2;
        }
        if (!File.Exists(Path.Combine(model, "config.json")))
        {
            Console.Error.WriteLine($"qwen3vl bench: error: '{model}' is not a checkpoint folder (no config.json).");
            return 2;
        }

        var load = Stopwatch.StartNew();
        using Backend backend = device == "cpu" ? Backend.CreateCpu(threads)
            : device.StartsWith("cuda", StringComparison.Ordinal)
                ? Backend.CreateCuda(device.Length > 5 && device[4] == ':' ? int.Parse(device[5..], CultureInfo.InvariantCulture) : 0)
                : throw new ArgumentException("--device must be cpu or cuda[:N]");
        using Qwen3VLModel m = Load(model, backend, new Qwen3VLModelOptions { CudaGraphs = cudaGraphs, Weights = weights, KvCache = kv });
        // What the loaded weights hold in the pool (on the CPU, weights used as stored are mapped from the files instead).
        ulong poolWeights = backend.GetMemoryStats().BytesInUse;
        load.Stop();
        ModelConfig c = m.Config;
        Console.WriteLine($"model:   {model}");
        Console.WriteLine($"backend: {backend.Name}; weights {m.WeightBytes / 1e9:0.00} GB; load {load.Elapsed.TotalSeconds:0.00} s");

        // Weight bytes one decode step reads, as loaded (bf16, Q8, ...): every text layer's projections plus the output
        // projection; and the multiply-adds of one prompt token in the layers' projections.
        TextModel text = m.Text;
        double layerProjectionBytes = 0, layerProjectionElements = 0;
        foreach (DecoderLayer l in text.Layers)
        {
            foreach (Tensor w in new[] { l.QProjWeight, l.KProjWeight, l.VProjWeight, l.OProjWeight, l.GateProjWeight, l.UpProjWeight, l.DownProjWeight })
            {
                layerProjectionBytes += w.ByteCount;
                layerProjectionElements += w.ElementCount;
            }
        }
        double decodeBytes = layerProjectionBytes + text.LmHeadWeight.ByteCount;
        double flopsPerPromptToken = 2.0 * layerProjectionElements;
        Console.WriteLine($"text weights: {Describe(text.Layers[0].QProjWeight)} projections, {Describe(text.LmHeadWeight)} lm_head; "
            + $"KV cache {m.KvCache.ToString().ToLowerInvariant()}");

        var rng = new Random(1234);
        int[] prompt = new int[promptTokens];
        for (int i = 0; i < prompt.Length; i++) prompt[i] = rng.Next(0, 151643);  // ordinary (non-special) ids

        double bestPrefill = double.MaxValue, bestDecode = double.MaxValue, bestImage = double.MaxValue, bestPre = double.MaxValue;
        double bestImageQueued = 0;  // of the best encode: when the host had queued every op (a GPU then still runs)
        double bestFirstStep = double.MaxValue, bestTtft = double.MaxValue, bestReplay = double.MaxValue;
        double bestSampled = double.MaxValue, bestSampledRow = double.MaxValue;
        int declined = 0;
        int imageTokens = 0;
        ulong cacheBytes = 0, imageCacheBytes = 0;
        // Pool high-water marks per phase (Backend.ResetPeakMemory before each): the text prompt and its decode in a
        // context of --context tokens; the image's vision pass and its prompt in a context of that size.
        ulong textPeak = 0, imagePeak = 0;
        for (int r = 0; r < repeat; r++)
        {
            backend.ResetPeakMemory();
            var sw = new Stopwatch();
            using (Qwen3VLContext ctx = m.CreateContext(Math.Max(context, promptTokens + newTokens + 1)))
            {
                cacheBytes = ctx.CacheBytes;
                sw.Restart();
                float[] logits = ctx.Prefill(prompt);
                bestPrefill = Math.Min(bestPrefill, sw.Elapsed.TotalSeconds);
                int token = ArgMax(logits);
                if (newTokens > 0)
                {
                    // The first step also records the decoding graph (CUDA): timed on its own; the rate is the steady state.
                    sw.Restart();
                    token = ctx.DecodeArgMax(token);
                    bestFirstStep = Math.Min(bestFirstStep, sw.Elapsed.TotalSeconds);
                    sw.Restart();
                    for (int n = 1; n < newTokens; n++) token = ctx.DecodeArgMax(token);
                    if (newTokens > 1) bestDecode = Math.Min(bestDecode, sw.Elapsed.TotalSeconds);
                    // The same step's graph replayed back to back: what a step costs the GPU without the host round trip
                    // (read the token, write the next inputs, launch) between tokens.
                    double replay = ctx.StepReplaySeconds(token, 100);
                    if (!double.IsNaN(replay)) bestReplay = Math.Min(bestReplay, replay);
                }
                if (sample && newTokens > 1)
                {
                    int capacity = Math.Max(context, promptTokens + newTokens + 1);
                    (double seconds, int misses) = SampledDecode(m, prompt, newTokens, capacity, fromCandidates: true);
                    bestSampled = Math.Min(bestSampled, seconds);
                    declined = misses;
                    bestSampledRow = Math.Min(bestSampledRow, SampledDecode(m, prompt, newTokens, capacity, fromCandidates: false).Seconds);
                }
            }
            textPeak = Math.Max(textPeak, backend.GetMemoryStats().PeakBytesInUse);

            if (imageSize > 0)
            {
                byte[] pixels = new byte[imageSize * imageSize * 3];
                rng.NextBytes(pixels);
                var processor = ImageProcessor.FromCheckpointDirectory(model);
                sw.Restart();
                ProcessedImage image = processor.Process(new RgbImage(imageSize, imageSize, pixels));
                bestPre = Math.Min(bestPre, sw.Elapsed.TotalSeconds);
                sw.Restart();
                using (VisionFeatures features = m.EncodeImages(VisionInput.FromImages([image])))
                {
                    double queued = sw.Elapsed.TotalSeconds;
                    // Ops on a GPU return before they finish: reading one value of the result waits for the encode.
                    using Tensor head = features.Embeddings.View(0, 1);
                    head.Read(new float[1]);
                    if (sw.Elapsed.TotalSeconds < bestImage) bestImageQueued = queued;
                }
                bestImage = Math.Min(bestImage, sw.Elapsed.TotalSeconds);
                imageTokens = image.TokenCount;

                // Time to first token: preprocess the image, prefill <vision_start> pads <vision_end> + 32 text tokens
                // (encoding the image on the way) and take the first token's argmax.
                var ids = new List<int> { (int)c.VisionStartTokenId };
                for (int i = 0; i < image.TokenCount; i++) ids.Add((int)c.ImageTokenId);
                ids.Add((int)c.VisionEndTokenId);
                for (int i = 0; i < 32; i++) ids.Add(prompt[i % prompt.Length]);
                // In a context of --context tokens (at least the prompt's): one conversation holding the image.
                backend.ResetPeakMemory();
                using Qwen3VLContext ttftContext = m.CreateContext(Math.Max(context, ids.Count + 1));
                imageCacheBytes = ttftContext.CacheBytes;
                sw.Restart();
                ProcessedImage again = processor.Process(new RgbImage(imageSize, imageSize, pixels));
                int first = ArgMax(ttftContext.Prefill(ids.ToArray(), VisionInput.FromImages([again])));
                bestTtft = Math.Min(bestTtft, sw.Elapsed.TotalSeconds);
                GC.KeepAlive(first);
                imagePeak = Math.Max(imagePeak, backend.GetMemoryStats().PeakBytesInUse);
            }
        }
        BackendMemoryStats memory = backend.GetMemoryStats();

        long? rss = RunCommand.PeakRssBytes();
        string F(double v, string fmt = "0.00") => v.ToString(fmt, CultureInfo.InvariantCulture);
        Console.WriteLine();
        Console.WriteLine("| measure | value |");
        Console.WriteLine("|---|---|");
        Console.WriteLine($"| prefill ({promptTokens} tokens) | {F(promptTokens / bestPrefill, "0.0")} tokens/s ({F(bestPrefill)} s), {F(flopsPerPromptToken * promptTokens / bestPrefill / 1e9, "0.0")} GFLOP/s in the text projections |");
        if (newTokens > 1)
        {
            int steady = newTokens - 1;
            Console.WriteLine($"| decode ({steady} greedy tokens after the first) | {F(steady / bestDecode)} tokens/s ({F(bestDecode * 1000 / steady, "0.000")} ms/token), weights read at {F(decodeBytes * steady / bestDecode / 1e9, "0.0")} GB/s ({F(decodeBytes / 1e9)} GB/token) |");
        }
        if (bestReplay < double.MaxValue)
            Console.WriteLine($"| decode step graph replayed back to back (GPU time, no host round trip) | {F(bestReplay * 1000, "0.000")} ms = {F(1 / bestReplay)} tokens/s |");
        if (newTokens > 0)
            Console.WriteLine($"| first decode step (records the graph on CUDA) | {F(bestFirstStep * 1000, "0.0")} ms |");
        if (sample && newTokens > 1)
        {
            int steady = newTokens - 1;
            Console.WriteLine($"| decode ({steady} sampled tokens after the first: top_k 20, top_p 0.8, temperature 0.7; the 21 largest logits selected on the backend) | {F(steady / bestSampled)} tokens/s ({F(bestSampled * 1000 / steady, "0.000")} ms/token; {declined} draws needed the whole row) |");
            Console.WriteLine($"| decode ({steady} sampled tokens after the first, same options, the whole logits row copied to the host) | {F(steady / bestSampledRow)} tokens/s ({F(bestSampledRow * 1000 / steady, "0.000")} ms/token) |");
        }
        if (imageSize > 0)
        {
            Console.WriteLine($"| image {imageSize}x{imageSize} ({imageTokens} tokens) | encode {F(bestImage * 1000, "0.0")} ms (all ops queued after {F(bestImageQueued * 1000, "0.0")} ms), preprocessing {F(bestPre * 1000, "0.0")} ms |");
            Console.WriteLine($"| time to first token, one {imageSize}x{imageSize} image + 32 text tokens | {F(bestTtft * 1000, "0.0")} ms |");
        }
        string kvName = m.KvCache.ToString().ToLowerInvariant();
        string Weights() => poolWeights + (1UL << 20) >= (ulong)m.WeightBytes
            ? $"weights {F(poolWeights / 1e9, "0.000")} GB"
            : $"weights {F(poolWeights / 1e9, "0.000")} GB in the pool (of {F(m.WeightBytes / 1e9, "0.000")} GB; the rest mapped from the checkpoint's files)";
        Console.WriteLine($"| backend memory (pool), the text prompt and its decode | peak {F(textPeak / 1e9, "0.000")} GB in use = {Weights()} + KV cache ({kvName}, {cacheBytes} bytes) {F(cacheBytes / 1e9, "0.000")} GB + {F(((double)textPeak - poolWeights - cacheBytes) / 1e9, "0.000")} GB activations/workspace |");
        if (imageSize > 0)
            Console.WriteLine($"| backend memory (pool), the image encoded and prefilled with 32 text tokens | peak {F(imagePeak / 1e9, "0.000")} GB in use = {Weights()} + KV cache ({kvName}, {imageCacheBytes} bytes) {F(imageCacheBytes / 1e9, "0.000")} GB + {F(((double)imagePeak - poolWeights - imageCacheBytes) / 1e9, "0.000")} GB activations/workspace |");
        Console.WriteLine($"| backend memory (pool) | peak {F(Math.Max(textPeak, imagePeak) / 1e9, "0.000")} GB in use (the larger of the above); {F(memory.BytesReserved / 1e9, "0.000")} GB reserved |");
        Console.WriteLine($"| peak RSS | {(rss is null ? "n/a" : F(rss.Value / 1e9) + " GB")} |");
        return 0;
    }

    /// <summary>Loads the checkpoint; an option the model refuses (e.g. --kv q8 for a head_dim that is not a multiple of 32)
    /// is a user error.</summary>
    private static Qwen3VLModel Load(string directory, Backend backend, Qwen3VLModelOptions options)
    {
        try
        {
            return Qwen3VLModel.Load(directory, backend, options);
        }
        catch (ArgumentException e)
        {
            throw new UserErrorException(CliOptions.DescribeKvRefusal(e, options.KvCache));
        }
    }

    private static string Describe(Tensor t) => t.DType.ToString().ToLowerInvariant();

    // Seconds of newTokens - 1 sampled decoding steps after a first untimed one (which records the step's graph on
    // CUDA) with Qwen3-VL's sampling options, in a fresh context: the draws from the backend's candidates (as the
    // Generator does; Misses counts the draws they did not settle) or from the whole row.
    private static (double Seconds, int Misses) SampledDecode(Qwen3VLModel m, int[] prompt, int newTokens, int capacity, bool fromCandidates)
    {
        var sampler = new Sampler(new SamplingOptions { Temperature = 0.7f, TopK = 20, TopP = 0.8f, Seed = 1 });
        using Qwen3VLContext ctx = m.CreateContext(capacity);
        int token = sampler.Sample(ctx.Prefill(prompt));
        int count = fromCandidates ? sampler.CandidateCount(m.Config.VocabSize) : 0;
        var values = new float[count];
        var ids = new int[count];
        int misses = 0;
        int Step(int t)
        {
            if (!fromCandidates) return sampler.Sample(ctx.Decode(t));
            ctx.DecodeTopK(t, values, ids);
            if (sampler.TrySampleCandidates(values, ids, out int next)) return next;
            misses++;
            return sampler.Sample(ctx.LastLogits());
        }
        token = Step(token);
        var sw = Stopwatch.StartNew();
        for (int n = 1; n < newTokens; n++) token = Step(token);
        return (sw.Elapsed.TotalSeconds, misses);
    }

    private static int ArgMax(float[] v)
    {
        int best = 0;
        for (int i = 1; i < v.Length; i++) if (v[i] > v[best]) best = i;
        return best;
    }
}
