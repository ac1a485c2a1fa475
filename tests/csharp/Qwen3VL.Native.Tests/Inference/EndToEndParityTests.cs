using Qwen3VL.Native.Inference;
using Qwen3VL.Native.Model;
using Qwen3VL.Native.Processing.Images;
using Qwen3VL.Native.Processing.Templates;
using Qwen3VL.Native.Tests.Model;
using Qwen3VL.Native.Tests.Processing;

namespace Qwen3VL.Native.Tests.Inference;

/// <summary>
/// End to end from the case's messages with our tokenizer, chat template and image preprocessing. Text-only cases: logits
/// within relative L2 1e-4 and greedy tokens as in <see cref="ModelParityTests"/>. Image cases (our pixels differ slightly
/// from torchvision's): relative L2 within 5e-3 and the same top-1 token wherever the reference top1−top2 gap exceeds 5e-2.
/// </summary>
public sealed class EndToEndParityTests(ITestOutputHelper output)
{
    public const double ImageTolerance = 5e-3;
    public const double TopGapFloor = 5e-2;

    public static TheoryData<string, string> Cases => FixtureCatalog.AllCases();

    [Theory]
    [MemberData(nameof(Cases))]
    public void LogitsFromMessagesMatchReference(string fixtureDirectory, string caseName)
    {
        FixtureCase c = FixtureCatalog.GetCase(fixtureDirectory, caseName);
        Qwen3VLModel model = TestModels.Get(fixtureDirectory);
        var messages = c.Json.GetProperty("messages").EnumerateArray().Select(ChatMessage.FromJson).ToList();
        var processor = ImageProcessor.FromCheckpointDirectory(c.ModelDirectory);
        var images = TestModels.ImagePaths(c.Json.GetProperty("messages")).Select(p => processor.Process(Path.Combine(fixtureDirectory, p))).ToList();
        int[] ids = Qwen3VLChatTemplate.BuildPromptIds(TestPaths.Tokenizer, messages, c.AddGenerationPrompt, i => images[i].TokenCount);
        Assert.Equal(c.InputIds, ids);

        int[] positions = TestModels.LogitPositions(c);
        VisionInput? vision = images.Count == 0 ? null : VisionInput.FromImages(images);
        using Qwen3VLContext context = model.CreateContext(ids.Length + 8);
        float[] ours = context.Prefill(ids, vision, positions);
        float[] reference = TestModels.ReferenceLogits(c);
        int vocab = model.Config.VocabSize;
        double tolerance = images.Count == 0 ? ModelParityTests.LogitTolerance : ImageTolerance;
        double worst = 0;
        for (int i = 0; i < positions.Length; i++)
        {
            ReadOnlySpan<float> o = ours.AsSpan(i * vocab, vocab), r = reference.AsSpan(i * vocab, vocab);
            double rel = TestModels.RelativeL2(o, r);
            worst = Math.Max(worst, rel);
            (int refTop, double gap) = TestModels.Top1(r);
            (int ourTop, _) = TestModels.Top1(o);
            output.WriteLine($"{Path.GetFileName(fixtureDirectory)}/{caseName} position {positions[i]}: rel L2 {rel:E3}, top1 {ourTop} (ref {refTop}, gap {gap:F3})");
            if (gap > TopGapFloor) Assert.Equal(refTop, ourTop);
        }
        Assert.True(worst <= tolerance, $"max relative L2 {worst:E3} > {tolerance:E0}");

        if (images.Count == 0)
        {
            int[] expected = TestModels.GreedyTokens(c);
            double[] margins = TestModels.GreedyMargins(c);
            using Qwen3VLContext generation = model.CreateContext(ids.Length + expected.Length + 1);
            GenerationResult result = new Generator(generation, TestPaths.Tokenizer)
                .Generate(ids, null, new GenerationOptions { Sampling = SamplingOptions.Greedy, MaxNewTokens = expected.Length, StopTokenIds = [] }, null, TestContext.Current.CancellationToken);
            int strict = 0;
            while (strict < expected.Length && margins[strict] >= ModelParityTests.MarginFloor) strict++;
            Assert.Equal(expected.Take(strict), result.TokenIds.Take(strict));
        }
    }
}
