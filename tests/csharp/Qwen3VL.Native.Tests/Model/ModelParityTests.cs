using Qwen3VL.Native.Inference;
using Qwen3VL.Native.Tests.Processing;

namespace Qwen3VL.Native.Tests.Model;

/// <summary>
/// Model parity with transformers on the fixtures' own inputs (input_ids and pixel_values fed in): logits at
/// logits_positions within relative L2 1e-4, and greedy generation equal to greedy_tokens up to the first step whose
/// reference margin (top1 − top2) is below 1e-2.
/// </summary>
public sealed class ModelParityTests(ITestOutputHelper output)
{
    public const double LogitTolerance = 1e-4;
    public const double MarginFloor = 1e-2;

    public static TheoryData<string, string> Cases => FixtureCatalog.AllCases();

    [Theory]
    [MemberData(nameof(Cases))]
    public void LogitsMatchReference(string fixtureDirectory, string caseName)
    {
        FixtureCase c = FixtureCatalog.GetCase(fixtureDirectory, caseName);
        Qwen3VLModel model = TestModels.Get(fixtureDirectory);
        int[] ids = c.InputIds;
        int[] positions = TestModels.LogitPositions(c);
        using Qwen3VLContext context = model.CreateContext(ids.Length + 8);
        float[] ours = context.Prefill(ids, TestModels.FixtureVision(c), positions);
        float[] reference = TestModels.ReferenceLogits(c);
        if (c.RopeDelta is { } delta) Assert.Equal(delta, context.RopeDelta);

        int vocab = model.Config.VocabSize;
        double worst = 0;
        for (int i = 0; i < positions.Length; i++)
        {
            double rel = TestModels.RelativeL2(ours.AsSpan(i * vocab, vocab), reference.AsSpan(i * vocab, vocab));
            worst = Math.Max(worst, rel);
            output.WriteLine($"{Path.GetFileName(fixtureDirectory)}/{caseName} position {positions[i]}: rel L2 {rel:E3}");
        }
        Assert.True(worst <= LogitTolerance, $"max relative L2 {worst:E3} > {LogitTolerance:E0}");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void GreedyGenerationMatchesReference(string fixtureDirectory, string caseName)
    {
        FixtureCase c = FixtureCatalog.GetCase(fixtureDirectory, caseName);
        Qwen3VLModel model = TestModels.Get(fixtureDirectory);
        int[] expected = TestModels.GreedyTokens(c);
        double[] margins = TestModels.GreedyMargins(c);
        int[] ids = c.InputIds;
        using Qwen3VLContext context = model.CreateContext(ids.Length + expected.Length + 1);
        var generator = new Generator(context, Processing.TestPaths.Tokenizer);
        GenerationResult result = generator.Generate(ids, TestModels.FixtureVision(c),
            new GenerationOptions { Sampling = SamplingOptions.Greedy, MaxNewTokens = expected.Length, StopTokenIds = [] }, null, TestContext.Current.CancellationToken);

        // Compare every step before the first one whose reference margin is too small to decide the token.
        int strict = 0;
        while (strict < expected.Length && margins[strict] >= MarginFloor) strict++;
        Assert.Equal(expected.Take(strict), result.TokenIds.Take(strict));
        output.WriteLine($"{caseName}: {strict}/{expected.Length} greedy steps compared: {string.Join(",", result.TokenIds)}");
    }
}
