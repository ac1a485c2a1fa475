using System.Text.Json;
using Qwen3VL.Native.Engine;
using Qwen3VL.Native.Model;
using Qwen3VL.Native.Tests.Processing;

namespace Qwen3VL.Native.Tests.Model;

public sealed class ModelConfigTests
{
    public static TheoryData<string> Fixtures()
    {
        var data = new TheoryData<string>();
        foreach (string d in FixtureCatalog.FixtureDirectories()) data.Add(d);
        return data;
    }

    [Theory]
    [MemberData(nameof(Fixtures))]
    public void ConfigMatchesConfigJson(string fixtureDirectory)
    {
        string modelDir = Path.Combine(fixtureDirectory, "model");
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(modelDir, "config.json")));
        JsonElement text = doc.RootElement.GetProperty("text_config"), vision = doc.RootElement.GetProperty("vision_config");

        using Checkpoint checkpoint = Checkpoint.Open(modelDir);
        ModelConfig c = ModelConfig.FromCheckpoint(checkpoint);

        Assert.Equal(text.GetProperty("hidden_size").GetInt32(), c.TextHiddenSize);
        Assert.Equal(text.GetProperty("num_hidden_layers").GetInt32(), c.TextNumLayers);
        Assert.Equal(text.GetProperty("num_attention_heads").GetInt32(), c.TextNumHeads);
        Assert.Equal(text.GetProperty("num_key_value_heads").GetInt32(), c.TextNumKvHeads);
        Assert.Equal(text.GetProperty("head_dim").GetInt32(), c.TextHeadDim);
        Assert.Equal(text.GetProperty("intermediate_size").GetInt32(), c.TextIntermediateSize);
        Assert.Equal(text.GetProperty("vocab_size").GetInt32(), c.VocabSize);
        JsonElement rope = text.TryGetProperty("rope_parameters", out JsonElement rp) ? rp : text.GetProperty("rope_scaling");
        Assert.Equal(rope.GetProperty("mrope_section").EnumerateArray().Select(e => e.GetInt64()), c.MropeSection);
        Assert.Equal(vision.GetProperty("depth").GetInt32(), c.VisionDepth);
        Assert.Equal(vision.GetProperty("hidden_size").GetInt32(), c.VisionHiddenSize);
        Assert.Equal(vision.GetProperty("out_hidden_size").GetInt32(), c.VisionOutHiddenSize);
        Assert.Equal(vision.GetProperty("deepstack_visual_indexes").EnumerateArray().Select(e => e.GetInt32()), c.DeepstackVisualIndexes);
        Assert.Equal(vision.GetProperty("hidden_act").GetString() == "gelu_pytorch_tanh", c.VisionGeluTanh);
        bool tied = doc.RootElement.TryGetProperty("tie_word_embeddings", out JsonElement t) ? t.GetBoolean() : text.GetProperty("tie_word_embeddings").GetBoolean();
        Assert.Equal(tied, c.TieWordEmbeddings);
        Assert.Equal(151655, c.ImageTokenId);
        Assert.Equal(151652, c.VisionStartTokenId);
        Assert.Contains(151645, c.EosTokenIds);
        Assert.Equal(1536, c.VisionPatchDim);
    }

    [Fact]
    public void MissingFolderIsAnIOError()
    {
        Assert.ThrowsAny<Qwen3VLException>(() => Checkpoint.Open(Path.Combine(Path.GetTempPath(), "no-such-qwen3vl-model-" + Guid.NewGuid())));
    }
}
