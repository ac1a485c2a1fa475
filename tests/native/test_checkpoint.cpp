#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "checkpoint.h"
#include "error.h"
#include "safetensors_test_util.h"

using qwen3vl::Checkpoint;
using qwen3vl::Error;
using namespace qwen3vl::testing;

namespace {

// A tiny Qwen3-VL: text hidden 16 (2 layers, 4 heads, 2 KV heads, head_dim 8), vision hidden 8 (3 blocks, 2 heads),
// 2x2 merge -> merged width 32, deepstack after blocks 0 and 2.
struct ConfigOptions {
    bool v5_rope = false;
    bool tied = true;
    bool generation_config = true;
};

std::string config_json(const ConfigOptions& o) {
    std::string rope = o.v5_rope
        ? R"("rope_parameters":{"rope_theta":5000000,"mrope_section":[2,1,1],"mrope_interleaved":true,"rope_type":"default"})"
        : R"("rope_theta":5000000,"rope_scaling":{"mrope_section":[2,1,1],"mrope_interleaved":true,"rope_type":"default"})";
    std::string vision_rope = o.v5_rope ? R"(,"rope_parameters":{"rope_theta":10000})" : "";
    return std::string("{\"architectures\":[\"Qwen3VLForConditionalGeneration\"],\"model_type\":\"qwen3_vl\",") +
           "\"image_token_id\":60,\"video_token_id\":61,\"vision_start_token_id\":58,\"vision_end_token_id\":59," +
           "\"tie_word_embeddings\":" + (o.tied ? "true" : "false") + "," +
           "\"text_config\":{\"hidden_size\":16,\"num_hidden_layers\":2,\"num_attention_heads\":4," +
           "\"num_key_value_heads\":2,\"head_dim\":8,\"intermediate_size\":24,\"vocab_size\":64," +
           "\"max_position_embeddings\":4096,\"rms_norm_eps\":1e-06,\"hidden_act\":\"silu\",\"eos_token_id\":3," +
           "\"attention_bias\":false,\"dtype\":\"bfloat16\"," + rope + "}," +
           "\"vision_config\":{\"depth\":3,\"hidden_size\":8,\"num_heads\":2,\"intermediate_size\":12," +
           "\"patch_size\":2,\"temporal_patch_size\":2,\"spatial_merge_size\":2,\"out_hidden_size\":16," +
           "\"in_channels\":3,\"num_position_embeddings\":16,\"deepstack_visual_indexes\":[0,2]," +
           "\"hidden_act\":\"gelu_pytorch_tanh\"" + vision_rope + "}}";
}

// The tensor list written independently of checkpoint.cpp's expected_tensors(), from the transformers modules.
std::vector<TensorSpec> tiny_tensors(bool with_lm_head, const std::string& dtype = "BF16") {
    std::vector<TensorSpec> t;
    auto add = [&](const std::string& n, std::vector<int64_t> s) { t.push_back({n, dtype, std::move(s)}); };
    add("model.language_model.embed_tokens.weight", {64, 16});
    for (int i = 0; i < 2; ++i) {
        const std::string p = "model.language_model.layers." + std::to_string(i) + ".";
        add(p + "input_layernorm.weight", {16});
        add(p + "post_attention_layernorm.weight", {16});
        add(p + "self_attn.q_proj.weight", {32, 16});
        add(p + "self_attn.k_proj.weight", {16, 16});
        add(p + "self_attn.v_proj.weight", {16, 16});
        add(p + "self_attn.o_proj.weight", {16, 32});
        add(p + "self_attn.q_norm.weight", {8});
        add(p + "self_attn.k_norm.weight", {8});
        add(p + "mlp.gate_proj.weight", {24, 16});
        add(p + "mlp.up_proj.weight", {24, 16});
        add(p + "mlp.down_proj.weight", {16, 24});
    }
    add("model.language_model.norm.weight", {16});
    if (with_lm_head) add("lm_head.weight", {64, 16});
    add("model.visual.patch_embed.proj.weight", {8, 3, 2, 2, 2});
    add("model.visual.patch_embed.proj.bias", {8});
    add("model.visual.pos_embed.weight", {16, 8});
    for (int i = 0; i < 3; ++i) {
        const std::string p = "model.visual.blocks." + std::to_string(i) + ".";
        for (const char* n : {"norm1", "norm2"}) {
            add(p + n + ".weight", {8});
            add(p + n + ".bias", {8});
        }
        add(p + "attn.qkv.weight", {24, 8});
        add(p + "attn.qkv.bias", {24});
        add(p + "attn.proj.weight", {8, 8});
        add(p + "attn.proj.bias", {8});
        add(p + "mlp.linear_fc1.weight", {12, 8});
        add(p + "mlp.linear_fc1.bias", {12});
        add(p + "mlp.linear_fc2.weight", {8, 12});
        add(p + "mlp.linear_fc2.bias", {8});
    }
    auto merger = [&](const std::string& p, int64_t norm) {
        add(p + "norm.weight", {norm});
        add(p + "norm.bias", {norm});
        add(p + "linear_fc1.weight", {32, 32});
        add(p + "linear_fc1.bias", {32});
        add(p + "linear_fc2.weight", {16, 32});
        add(p + "linear_fc2.bias", {16});
    };
    merger("model.visual.merger.", 8);
    merger("model.visual.deepstack_merger_list.0.", 32);
    merger("model.visual.deepstack_merger_list.1.", 32);
    return t;
}

void write_checkpoint(const TempDir& dir, const ConfigOptions& o, const std::vector<TensorSpec>& tensors) {
    write_file(dir.file("config.json"), config_json(o));
    if (o.generation_config) write_file(dir.file("generation_config.json"), R"({"eos_token_id":[1,2],"top_k":20})");
    write_file(dir.file("model.safetensors"), build_safetensors(tensors, R"({"format":"pt"})"));
}

// Splits the tensors over `shards` files and writes the index (with `extra_index` entries added verbatim).
void write_sharded(const TempDir& dir, const ConfigOptions& o, const std::vector<TensorSpec>& tensors, int shards,
                   const std::string& extra_index = "") {
    write_file(dir.file("config.json"), config_json(o));
    std::vector<std::vector<TensorSpec>> parts(shards);
    std::string map;
    for (size_t i = 0; i < tensors.size(); ++i) {
        const int s = static_cast<int>(i % shards);
        parts[s].push_back(tensors[i]);
        map += (map.empty() ? "" : ",") + ("\"" + tensors[i].name + "\":\"model-0000" + std::to_string(s + 1) +
                                           "-of-0000" + std::to_string(shards) + ".safetensors\"");
    }
    for (int s = 0; s < shards; ++s)
        write_file(dir.file("model-0000" + std::to_string(s + 1) + "-of-0000" + std::to_string(shards) + ".safetensors"),
                   build_safetensors(parts[s]));
    write_file(dir.file("model.safetensors.index.json"),
               "{\"metadata\":{\"total_size\":0},\"weight_map\":{" + map + extra_index + "}}");
}

struct Outcome {
    qwen3vl_status status;
    std::string message;
};

Outcome open_dir(const TempDir& dir) {
    try {
        Checkpoint::open(dir.path().string());
        return {QWEN3VL_STATUS_OK, ""};
    } catch (const Error& e) {
        return {e.status(), e.what()};
    }
}

bool contains(const std::string& s, const std::string& needle) { return s.find(needle) != std::string::npos; }

}  // namespace

TEST(Checkpoint, LoadsTiedSingleFileHubSpelling) {
    TempDir dir;
    write_checkpoint(dir, ConfigOptions(), tiny_tensors(false));
    Checkpoint ck = Checkpoint::open(dir.path().string());
    const qwen3vl::ModelConfig& c = ck.config();
    EXPECT_EQ(c.text.hidden_size, 16);
    EXPECT_EQ(c.text.num_hidden_layers, 2);
    EXPECT_EQ(c.text.num_attention_heads, 4);
    EXPECT_EQ(c.text.num_key_value_heads, 2);
    EXPECT_EQ(c.text.head_dim, 8);
    EXPECT_EQ(c.text.intermediate_size, 24);
    EXPECT_EQ(c.text.vocab_size, 64);
    EXPECT_EQ(c.text.max_position_embeddings, 4096);
    EXPECT_DOUBLE_EQ(c.text.rms_norm_eps, 1e-6);
    EXPECT_DOUBLE_EQ(c.text.rope_theta, 5e6);
    EXPECT_EQ(c.text.mrope_section[0], 2);
    EXPECT_EQ(c.text.mrope_section[1], 1);
    EXPECT_EQ(c.text.mrope_section[2], 1);
    EXPECT_TRUE(c.text.mrope_interleaved);
    EXPECT_TRUE(c.tie_word_embeddings);
    EXPECT_EQ(c.vision.depth, 3);
    EXPECT_EQ(c.vision.merged_hidden_size(), 32);
    EXPECT_EQ(c.vision.deepstack_visual_indexes, (std::vector<int64_t>{0, 2}));
    EXPECT_DOUBLE_EQ(c.vision.rope_theta, 10000.0);
    EXPECT_EQ(c.vision.hidden_act, "gelu_pytorch_tanh");
    EXPECT_EQ(c.image_token_id, 60);
    EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{1, 2}));  // generation_config.json wins
    EXPECT_EQ(ck.tensor_count(), tiny_tensors(false).size());
    const qwen3vl::TensorView& w = ck.tensor("model.visual.patch_embed.proj.weight");
    EXPECT_EQ(w.shape, (std::vector<int64_t>{8, 3, 2, 2, 2}));
    EXPECT_EQ(w.dtype, qwen3vl::SafetensorsDType::BF16);
    EXPECT_EQ(w.bytes, 8u * 3 * 2 * 2 * 2 * 2);
    EXPECT_EQ(ck.find("lm_head.weight"), nullptr);
    EXPECT_THROW(ck.tensor("nope"), Error);
}

TEST(Checkpoint, LoadsUntiedTransformers5Spelling) {
    TempDir dir;
    ConfigOptions o;
    o.v5_rope = true;
    o.tied = false;
    o.generation_config = false;
    write_checkpoint(dir, o, tiny_tensors(true, "F32"));
    Checkpoint ck = Checkpoint::open(dir.path().string());
    EXPECT_FALSE(ck.config().tie_word_embeddings);
    EXPECT_DOUBLE_EQ(ck.config().text.rope_theta, 5e6);
    EXPECT_EQ(ck.config().eos_token_ids, (std::vector<int64_t>{3}));  // from text_config
    EXPECT_EQ(ck.tensor("lm_head.weight").shape, (std::vector<int64_t>{64, 16}));
}

TEST(Checkpoint, TiedModelToleratesAnExportedLmHead) {
    TempDir dir;
    write_checkpoint(dir, ConfigOptions(), tiny_tensors(true));
    EXPECT_EQ(open_dir(dir).status, QWEN3VL_STATUS_OK);
}

TEST(Checkpoint, UntiedModelNeedsLmHead) {
    TempDir dir;
    ConfigOptions o;
    o.tied = false;
    write_checkpoint(dir, o, tiny_tensors(false));
    Outcome r = open_dir(dir);
    EXPECT_EQ(r.status, QWEN3VL_STATUS_BAD_FORMAT);
    EXPECT_TRUE(contains(r.message, "missing tensor 'lm_head.weight' [64, 16]")) << r.message;
}

TEST(Checkpoint, LoadsSharded) {
    TempDir dir;
    write_sharded(dir, ConfigOptions(), tiny_tensors(false), 3);
    Checkpoint ck = Checkpoint::open(dir.path().string());
    EXPECT_EQ(ck.files().size(), 3u);
    EXPECT_EQ(ck.tensor_count(), tiny_tensors(false).size());
    EXPECT_TRUE(contains(ck.tensor("model.language_model.norm.weight").file, "-of-00003.safetensors"));
}

TEST(Checkpoint, MissingShard) {
    TempDir dir;
    write_sharded(dir, ConfigOptions(), tiny_tensors(false), 2);
    std::filesystem::remove(dir.path() / "model-00002-of-00002.safetensors");
    Outcome r = open_dir(dir);
    EXPECT_EQ(r.status, QWEN3VL_STATUS_IO_ERROR);
    EXPECT_TRUE(contains(r.message, "model-00002-of-00002.safetensors")) << r.message;
}

TEST(Checkpoint, IndexedTensorMissingFromItsShard) {
    TempDir dir;
    write_sharded(dir, ConfigOptions(), tiny_tensors(false), 2, ",\"ghost.weight\":\"model-00001-of-00002.safetensors\"");
    Outcome r = open_dir(dir);
    EXPECT_EQ(r.status, QWEN3VL_STATUS_BAD_FORMAT);
    EXPECT_TRUE(contains(r.message, "'ghost.weight'")) << r.message;
    EXPECT_TRUE(contains(r.message, "model-00001-of-00002.safetensors")) << r.message;
}

TEST(Checkpoint, TensorInTwoShards) {
    TempDir dir;
    std::vector<TensorSpec> tensors = tiny_tensors(false);
    write_sharded(dir, ConfigOptions(), tensors, 2);
    // Rewrite shard 2 with one of shard 1's tensors added.
    std::vector<TensorSpec> second;
    for (size_t i = 1; i < tensors.size(); i += 2) second.push_back(tensors[i]);
    second.push_back(tensors[0]);
    write_file(dir.file("model-00002-of-00002.safetensors"), build_safetensors(second));
    Outcome r = open_dir(dir);
    EXPECT_EQ(r.status, QWEN3VL_STATUS_BAD_FORMAT);
    EXPECT_TRUE(contains(r.message, tensors[0].name)) << r.message;
}

TEST(Checkpoint, ShardOutsideTheFolderIsRejected) {
    TempDir dir;
    write_sharded(dir, ConfigOptions(), tiny_tensors(false), 1, ",\"x\":\"../evil.safetensors\"");
    Outcome r = open_dir(dir);
    EXPECT_EQ(r.status, QWEN3VL_STATUS_BAD_FORMAT);
    EXPECT_TRUE(contains(r.message, "../evil.safetensors")) << r.message;
}

TEST(Checkpoint, ReportsEveryProblemInOneError) {
    std::vector<TensorSpec> tensors = tiny_tensors(false);
    std::vector<TensorSpec> broken;
    for (TensorSpec t : tensors) {
        if (t.name == "model.language_model.layers.1.mlp.up_proj.weight") continue;  // missing
        if (t.name == "model.visual.merger.linear_fc1.weight") t.shape = {8, 8};       // wrong shape
        if (t.name == "model.visual.blocks.2.attn.qkv.bias") t.dtype = "I32";          // unsupported dtype
        broken.push_back(t);
    }
    broken.push_back({"model.visual.blocks.3.norm1.weight", "BF16", {8}});  // unexpected
    TempDir dir;
    write_checkpoint(dir, ConfigOptions(), broken);
    Outcome r = open_dir(dir);
    EXPECT_EQ(r.status, QWEN3VL_STATUS_BAD_FORMAT);
    EXPECT_TRUE(contains(r.message, "(4 problems)")) << r.message;
    EXPECT_TRUE(contains(r.message, "missing tensor 'model.language_model.layers.1.mlp.up_proj.weight' [24, 16]"))
        << r.message;
    EXPECT_TRUE(contains(r.message, "'model.visual.merger.linear_fc1.weight' has shape [8, 8], expected [32, 32]"))
        << r.message;
    EXPECT_TRUE(contains(r.message, "'model.visual.blocks.2.attn.qkv.bias' has unsupported dtype I32")) << r.message;
    EXPECT_TRUE(contains(r.message, "unexpected tensor 'model.visual.blocks.3.norm1.weight'")) << r.message;
}

TEST(Checkpoint, OnlyDtypeProblemsAreUnsupported) {
    TempDir dir;
    std::vector<TensorSpec> tensors = tiny_tensors(false);
    tensors[3].dtype = "F64";
    tensors[7].dtype = "F8_E4M3";
    write_checkpoint(dir, ConfigOptions(), tensors);
    Outcome r = open_dir(dir);
    EXPECT_EQ(r.status, QWEN3VL_STATUS_UNSUPPORTED);
    EXPECT_TRUE(contains(r.message, "(2 problems)")) << r.message;
    EXPECT_TRUE(contains(r.message, "F64")) << r.message;
    EXPECT_TRUE(contains(r.message, "F8_E4M3")) << r.message;
}

TEST(Checkpoint, LongProblemListIsCapped) {
    TempDir dir;
    write_checkpoint(dir, ConfigOptions(), {{"junk", "BF16", {1}}});
    Outcome r = open_dir(dir);
    EXPECT_EQ(r.status, QWEN3VL_STATUS_BAD_FORMAT);
    const size_t expected_problems = tiny_tensors(false).size() + 1;
    EXPECT_TRUE(contains(r.message, "(" + std::to_string(expected_problems) + " problems)")) << r.message;
    EXPECT_TRUE(contains(r.message, "and " + std::to_string(expected_problems - 20) + " more")) << r.message;
    size_t lines = 0;
    for (char ch : r.message) lines += ch == '\n';
    EXPECT_EQ(lines, 21u);
}

TEST(Checkpoint, MissingFiles) {
    TempDir dir;
    EXPECT_EQ(open_dir(dir).status, QWEN3VL_STATUS_IO_ERROR);  // no config.json
    write_file(dir.file("config.json"), config_json(ConfigOptions()));
    Outcome r = open_dir(dir);
    EXPECT_EQ(r.status, QWEN3VL_STATUS_IO_ERROR);  // no weights
    EXPECT_TRUE(contains(r.message, "model.safetensors")) << r.message;
    try {
        Checkpoint::open(dir.file("not-there"));
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.status(), QWEN3VL_STATUS_IO_ERROR);
    }
}

TEST(Checkpoint, CorruptWeightFileIsBadFormat) {
    TempDir dir;
    write_checkpoint(dir, ConfigOptions(), tiny_tensors(false));
    write_file(dir.file("model.safetensors"), "garbage!garbage!");
    Outcome r = open_dir(dir);
    EXPECT_EQ(r.status, QWEN3VL_STATUS_BAD_FORMAT);
    EXPECT_TRUE(contains(r.message, "model.safetensors")) << r.message;
}

namespace {

Outcome config_outcome(const std::string& from, const std::string& to, bool v5 = false) {
    ConfigOptions o;
    o.v5_rope = v5;
    std::string text = config_json(o);
    const size_t at = text.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos) text.replace(at, from.size(), to);
    try {
        qwen3vl::json::Value v = qwen3vl::json::parse(text, "config.json");
        qwen3vl::parse_model_config(v, nullptr, "config.json");
        return {QWEN3VL_STATUS_OK, ""};
    } catch (const Error& e) {
        return {e.status(), e.what()};
    }
}

}  // namespace

TEST(CheckpointConfig, RejectsMissingAndNonsensicalValues) {
    struct Case {
        const char* from;
        const char* to;
        const char* key;  // must appear in the message
    };
    const Case cases[] = {
        {"\"hidden_size\":16,", "", "text_config.hidden_size"},
        {"\"hidden_size\":16", "\"hidden_size\":0", "text_config.hidden_size"},
        {"\"num_attention_heads\":4", "\"num_attention_heads\":-4", "text_config.num_attention_heads"},
        {"\"num_key_value_heads\":2", "\"num_key_value_heads\":3", "text_config.num_key_value_heads"},
        {"\"head_dim\":8,", "\"num_attention_heads\":3,", "duplicate key 'num_attention_heads'"},
        {"\"vocab_size\":64", "\"vocab_size\":\"64\"", "text_config.vocab_size"},
        {"\"rms_norm_eps\":1e-06", "\"rms_norm_eps\":0", "text_config.rms_norm_eps"},
        {"\"mrope_section\":[2,1,1]", "\"mrope_section\":[2,2,2]", "text_config.rope_scaling.mrope_section"},
        {"\"mrope_section\":[2,1,1]", "\"mrope_section\":[4]", "text_config.rope_scaling.mrope_section"},
        {"\"rope_theta\":5000000,", "", "text_config.rope_theta"},
        {"\"depth\":3", "\"depth\":0", "vision_config.depth"},
        {"\"num_heads\":2", "\"num_heads\":3", "vision_config.num_heads"},
        {"\"out_hidden_size\":16", "\"out_hidden_size\":32", "vision_config.out_hidden_size"},
        {"\"deepstack_visual_indexes\":[0,2]", "\"deepstack_visual_indexes\":[0,3]", "vision_config.deepstack_visual_indexes"},
        {"\"deepstack_visual_indexes\":[0,2]", "\"deepstack_visual_indexes\":[2,0]", "vision_config.deepstack_visual_indexes"},
        {"\"deepstack_visual_indexes\":[0,2]", "\"deepstack_visual_indexes\":[0,1,2]", "vision_config.deepstack_visual_indexes"},
        {"\"num_position_embeddings\":16", "\"num_position_embeddings\":15", "vision_config.num_position_embeddings"},
        {"\"patch_size\":2", "\"patch_size\":100000", "vision_config.patch_size"},
        {"\"image_token_id\":60", "\"image_token_id\":151655", "image_token_id"},
        {"\"num_hidden_layers\":2", "\"num_hidden_layers\":1000000000", "text_config.num_hidden_layers"},
        {"\"text_config\":{", "\"text_config\":7,\"x\":{", "text_config"},
    };
    for (const Case& c : cases) {
        Outcome r = config_outcome(c.from, c.to);
        EXPECT_EQ(r.status, QWEN3VL_STATUS_BAD_FORMAT) << c.from << " -> " << c.to << ": " << r.message;
        EXPECT_TRUE(contains(r.message, c.key)) << c.from << " -> " << c.to << ": " << r.message;
    }
    Outcome v5 = config_outcome("\"mrope_section\":[2,1,1]", "\"mrope_section\":[1,1,1]", true);
    EXPECT_EQ(v5.status, QWEN3VL_STATUS_BAD_FORMAT);
    EXPECT_TRUE(contains(v5.message, "text_config.rope_parameters.mrope_section")) << v5.message;
}

TEST(CheckpointConfig, UnsupportedSettings) {
    EXPECT_EQ(config_outcome("\"rope_type\":\"default\"", "\"rope_type\":\"yarn\"").status, QWEN3VL_STATUS_UNSUPPORTED);
    EXPECT_EQ(config_outcome("\"attention_bias\":false", "\"attention_bias\":true").status, QWEN3VL_STATUS_UNSUPPORTED);
    EXPECT_EQ(config_outcome("\"hidden_act\":\"silu\"", "\"hidden_act\":\"relu\"").status, QWEN3VL_STATUS_UNSUPPORTED);
    EXPECT_EQ(config_outcome("\"model_type\":\"qwen3_vl\"", "\"model_type\":\"qwen3_vl_moe\"").status,
              QWEN3VL_STATUS_UNSUPPORTED);
}

TEST(CheckpointConfig, DefaultsAndAlternatives) {
    // num_key_value_heads and head_dim default from the heads; head_dim = hidden / heads = 4 -> mrope sums to 2.
    Outcome r = config_outcome("\"num_key_value_heads\":2,\"head_dim\":8,", "");
    EXPECT_EQ(r.status, QWEN3VL_STATUS_BAD_FORMAT);  // [2,1,1] sums to 4, head_dim/2 is now 2
    EXPECT_TRUE(contains(r.message, "head_dim / 2 is 2")) << r.message;
    // tie_word_embeddings only in text_config.
    ConfigOptions o;
    std::string text = config_json(o);
    text.replace(text.find("\"tie_word_embeddings\":true,"), 27, "");
    text.replace(text.find("\"hidden_size\":16"), 16, "\"hidden_size\":16,\"tie_word_embeddings\":true");
    qwen3vl::ModelConfig c = qwen3vl::parse_model_config(qwen3vl::json::parse(text, "c"), nullptr, "c");
    EXPECT_TRUE(c.tie_word_embeddings);
    EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{3}));
    // generation_config.json eos as a single integer.
    qwen3vl::json::Value gen = qwen3vl::json::parse(R"({"eos_token_id":5})", "g");
    EXPECT_EQ(qwen3vl::parse_model_config(qwen3vl::json::parse(text, "c"), &gen, "c").eos_token_ids,
              (std::vector<int64_t>{5}));
    qwen3vl::json::Value bad_gen = qwen3vl::json::parse(R"({"eos_token_id":[5,640]})", "g");
    EXPECT_THROW(qwen3vl::parse_model_config(qwen3vl::json::parse(text, "c"), &bad_gen, "c"), Error);
}

TEST(CheckpointConfig, ExpectedTensorsOfQwen3VL2B) {
    const std::string config = R"({"model_type":"qwen3_vl","tie_word_embeddings":true,
      "text_config":{"hidden_size":2048,"num_hidden_layers":28,"num_attention_heads":16,"num_key_value_heads":8,
        "head_dim":128,"intermediate_size":6144,"vocab_size":151936,"rms_norm_eps":1e-06,"rope_theta":5000000,
        "rope_scaling":{"mrope_interleaved":true,"mrope_section":[24,20,20],"rope_type":"default"},
        "max_position_embeddings":262144,"eos_token_id":151645},
      "vision_config":{"depth":24,"hidden_size":1024,"num_heads":16,"intermediate_size":4096,"patch_size":16,
        "temporal_patch_size":2,"spatial_merge_size":2,"out_hidden_size":2048,"in_channels":3,
        "num_position_embeddings":2304,"deepstack_visual_indexes":[5,11,17],"hidden_act":"gelu_pytorch_tanh"}})";
    qwen3vl::ModelConfig c = qwen3vl::parse_model_config(qwen3vl::json::parse(config, "2b"), nullptr, "2b");
    std::vector<qwen3vl::ExpectedTensor> expected = qwen3vl::expected_tensors(c);
    auto shape_of = [&](const std::string& name) {
        for (const auto& e : expected)
            if (e.name == name) return e.shape;
        return std::vector<int64_t>{-1};
    };
    EXPECT_EQ(shape_of("model.visual.patch_embed.proj.weight"), (std::vector<int64_t>{1024, 3, 2, 16, 16}));
    EXPECT_EQ(shape_of("model.visual.pos_embed.weight"), (std::vector<int64_t>{2304, 1024}));
    EXPECT_EQ(shape_of("model.visual.blocks.23.attn.qkv.weight"), (std::vector<int64_t>{3072, 1024}));
    EXPECT_EQ(shape_of("model.visual.merger.norm.weight"), (std::vector<int64_t>{1024}));
    EXPECT_EQ(shape_of("model.visual.merger.linear_fc1.weight"), (std::vector<int64_t>{4096, 4096}));
    EXPECT_EQ(shape_of("model.visual.merger.linear_fc2.weight"), (std::vector<int64_t>{2048, 4096}));
    EXPECT_EQ(shape_of("model.visual.deepstack_merger_list.2.norm.weight"), (std::vector<int64_t>{4096}));
    EXPECT_EQ(shape_of("model.language_model.layers.27.self_attn.k_proj.weight"), (std::vector<int64_t>{1024, 2048}));
    EXPECT_EQ(shape_of("model.language_model.layers.0.self_attn.o_proj.weight"), (std::vector<int64_t>{2048, 2048}));
    EXPECT_EQ(shape_of("model.language_model.embed_tokens.weight"), (std::vector<int64_t>{151936, 2048}));
    // 1 embed + 28*11 + norm + (optional lm_head) + 3 vision stem + 24*12 + 6 merger + 3*6 deepstack.
    EXPECT_EQ(expected.size(), 1u + 28 * 11 + 1 + 1 + 3 + 24 * 12 + 6 + 18);
    EXPECT_EQ(c.image_token_id, 151655);
    EXPECT_EQ(c.vision_start_token_id, 151652);
}
