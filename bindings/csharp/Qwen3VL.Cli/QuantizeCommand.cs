using System.Diagnostics;
using Qwen3VL.Native;

namespace Qwen3VL.Cli;

/// <summary><c>qwen3vl quantize</c>: writes a checkpoint folder with the text decoder in 8 or 4 bits, once, so that later starts
/// load it memory-mapped with no quantization step (<see cref="Qwen3VLCheckpoint.Quantize"/>).</summary>
internal static class QuantizeCommand
{
    internal const string Usage =
        "usage: qwen3vl quantize --model DIR --weights q8|q4 --out DIR2\n" +
        "  writes DIR2: the checkpoint DIR (bf16/f16/f32, or Qwen's fine-grained FP8 for q8) with the text decoder's matrices\n" +
        "  in q8 (32 int8 weights + one f16 scale per block) or q4 (the layers' projections and an untied embedding in 4.5-bit\n" +
        "  groups, lm_head in q8): the same bits as --weights q8 / q4 quantize while loading; the rest as stored. Load it like any\n" +
        "  checkpoint (qwen3vl run --model DIR2). DIR2 must not exist or be empty.";

    internal static int Run(string[] args)
    {
        string? model = null, output = null;
        WeightFormat? weights = null;
        for (int i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new UserErrorException(args[i] + " needs a value.");
            switch (args[i])
            {
                case "--model": model = Value(); break;
                case "--out": output = Value(); break;
                case "--weights":
                    try
                    {
                        weights = CliOptions.ParseWeights(Value());
                    }
                    catch (ArgumentException e)
                    {
                        throw new UserErrorException(e.Message);
                    }
                    break;
                default: throw new UserErrorException("unknown option: " + args[i]);
            }
        }
        if (model is null || output is null || weights is null) throw new UserErrorException("--model, --weights and --out are required.");
        if (weights is not (WeightFormat.Q8 or WeightFormat.Q4))
            throw new UserErrorException($"--weights {weights.ToString()!.ToLowerInvariant()} is not a quantized format; quantize writes q8 or q4.");
        var sw = Stopwatch.StartNew();
        QuantizeResult r;
        using (var bar = LoadProgressBar.ForStandardError())
        {
            try
            {
                r = Qwen3VLCheckpoint.Quantize(model, output, weights.Value, bar);
            }
            catch (ArgumentException e)
            {
                throw new UserErrorException(e.Message);
            }
        }
        Console.WriteLine($"wrote {r.Directory}: {r.QuantizedTensors} matrices in {(weights == WeightFormat.Q4 ? "q4 (lm_head and a tied embedding in q8)" : "q8")}, weights {r.SourceBytes / 1e9:0.00} GB -> {r.WrittenBytes / 1e9:0.00} GB in {sw.Elapsed.TotalSeconds:0.0} s");
        return Program.ExitOk;
    }
}
