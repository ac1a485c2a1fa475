// Tensor names and shapes verified against transformers' Qwen3-VL implementation:
//   huggingface/transformers src/transformers/models/qwen3_vl/modeling_qwen3_vl.py (Qwen3VLVisionPatchEmbed,
//   Qwen3VLVisionPatchMerger, Qwen3VLVisionAttention, Qwen3VLVisionMLP, Qwen3VLVisionModel, Qwen3VLTextAttention,
//   Qwen3VLTextMLP, Qwen3VLTextDecoderLayer) and configuration_qwen3_vl.py (defaults), read at commits 00709b86
//   (modeling) and 000c33fd (configuration). nn.Linear weights are [out_features, in_features]:
//   - patch_embed.proj: Conv3d(in_channels -> hidden, kernel [temporal_patch, patch, patch]), bias;
//   - blocks.N.attn.qkv [3*hidden, hidden] + bias, attn.proj [hidden, hidden] + bias, norm1/norm2 LayerNorm(hidden);
//   - blocks.N.mlp.linear_fc1 [intermediate, hidden], linear_fc2 [hidden, intermediate], both with bias;
//   - merger (use_postshuffle_norm=False): norm LayerNorm(hidden), linear_fc1 [hidden*m^2, hidden*m^2],
//     linear_fc2 [out_hidden, hidden*m^2]; deepstack mergers (use_postshuffle_norm=True): norm LayerNorm(hidden*m^2);
//   - text: q_proj [heads*head_dim, hidden], k/v_proj [kv_heads*head_dim, hidden], o_proj [hidden, heads*head_dim],
//     no bias (attention_bias=False), q_norm/k_norm RMSNorm(head_dim), gate/up [intermediate, hidden],
//     down [hidden, intermediate], embed_tokens [vocab, hidden], lm_head [vocab, hidden] when untied.
// Note: text hidden_size need not equal heads*head_dim (Qwen3-VL-4B: 2560 vs 32*128), so that is not checked.
#include "checkpoint.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <set>

#include "dtype.h"
#include "error.h"
#include "platform.h"

namespace qwen3vl {

namespace {

// Hostile configs must not make us build huge tensor lists or overflow shape arithmetic.
constexpr int64_t kMaxSize = int64_t(1) << 24;     // widths, vocabulary, positions
constexpr int64_t kMaxSmall = 1024;                 // patch, merge, channels, temporal patch
constexpr int64_t kMaxLayers = 4096;

// Reads typed keys of one JSON object, naming "<source>: <path>.<key>" in every error.
class ConfigReader {
public:
    ConfigReader(const json::Value& object, std::string path, const std::string& source)
        : object_(object), path_(std::move(path)), source_(source) {}

    std::string name(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

    [[noreturn]] void bad(const std::string& key, const std::string& what) const {
        fail(QWEN3VL_STATUS_BAD_FORMAT, source_ + ": " + name(key) + ": " + what);
    }
    [[noreturn]] void unsupported(const std::string& key, const std::string& what) const {
        fail(QWEN3VL_STATUS_UNSUPPORTED, source_ + ": " + name(key) + ": " + what);
    }

    // Absent and null are treated alike (transformers writes null for unset optional settings).
    const json::Value* get(const std::string& key) const {
        const json::Value* v = object_.find(key);
        return v && !v->is_null() ? v : nullptr;
    }

    const json::Value& required(const std::string& key) const {
        const json::Value* v = get(key);
        if (!v) bad(key, "missing required key");
        return *v;
    }

    int64_t to_int(const std::string& key, const json::Value& v) const {
        if (!v.is_int()) bad(key, std::string("expected an integer, got ") + json::type_name(v.type()));
        return v.as_int();
    }

    int64_t required_int(const std::string& key) const { return to_int(key, required(key)); }

    int64_t optional_int(const std::string& key, int64_t fallback) const {
        const json::Value* v = get(key);
        return v ? to_int(key, *v) : fallback;
    }

    // A positive size within [1, limit].
    int64_t size(const std::string& key, int64_t value, int64_t limit) const {
        if (value <= 0) bad(key, "must be positive, got " + std::to_string(value));
        if (value > limit) bad(key, "too large (" + std::to_string(value) + " > " + std::to_string(limit) + ")");
        return value;
    }

    double number(const std::string& key, const json::Value& v) const {
        if (!v.is_number()) bad(key, std::string("expected a number, got ") + json::type_name(v.type()));
        return v.as_double();
    }

    bool optional_bool(const std::string& key, bool fallback) const {
        const json::Value* v = get(key);
        if (!v) return fallback;
        if (!v->is_bool()) bad(key, std::string("expected a boolean, got ") + json::type_name(v->type()));
        return v->as_bool();
    }

    std::string optional_string(const std::string& key, const std::string& fallback) const {
        const json::Value* v = get(key);
        if (!v) return fallback;
        if (!v->is_string()) bad(key, std::string("expected a string, got ") + json::type_name(v->type()));
        return v->as_string();
    }

    ConfigReader child(const std::string& key) const {
        const json::Value& v = required(key);
        if (!v.is_object()) bad(key, std::string("expected an object, got ") + json::type_name(v.type()));
        return ConfigReader(v, name(key), source_);
    }

    const json::Value* optional_object(const std::string& key) const {
        const json::Value* v = get(key);
        if (v && !v->is_object()) bad(key, std::string("expected an object, got ") + json::type_name(v->type()));
        return v;
    }

    std::vector<int64_t> int_list(const std::string& key, const json::Value& v) const {
        std::vector<int64_t> out;
        if (v.is_int()) {
            out.push_back(v.as_int());
            return out;
        }
        if (!v.is_array()) bad(key, std::string("expected an integer or a list of integers, got ") +
                                    json::type_name(v.type()));
        for (const json::Value& item : v.as_array()) out.push_back(to_int(key, item));
        return out;
    }

    const std::string& source() const { return source_; }

private:
    const json::Value& object_;
    std::string path_;
    const std::string& source_;
};

void parse_text_config(const ConfigReader& r, TextConfig& t) {
    t.hidden_size = r.size("hidden_size", r.required_int("hidden_size"), kMaxSize);
    t.num_hidden_layers = r.size("num_hidden_layers", r.required_int("num_hidden_layers"), kMaxLayers);
    t.num_attention_heads = r.size("num_attention_heads", r.required_int("num_attention_heads"), kMaxSize);
    t.num_key_value_heads =
        r.size("num_key_value_heads", r.optional_int("num_key_value_heads", t.num_attention_heads), kMaxSize);
    if (t.num_attention_heads % t.num_key_value_heads != 0)
        r.bad("num_key_value_heads", std::to_string(t.num_key_value_heads) + " does not divide num_attention_heads " +
                                         std::to_string(t.num_attention_heads));
    if (r.get("head_dim")) {
        t.head_dim = r.size("head_dim", r.required_int("head_dim"), kMaxSize);
    } else {
        if (t.hidden_size % t.num_attention_heads != 0)
            r.bad("num_attention_heads", std::to_string(t.num_attention_heads) + " does not divide hidden_size " +
                                             std::to_string(t.hidden_size) + " (and head_dim is not given)");
        t.head_dim = t.hidden_size / t.num_attention_heads;
    }
    if (t.head_dim % 2 != 0) r.bad("head_dim", "must be even for rotary embeddings, got " + std::to_string(t.head_dim));
    t.intermediate_size = r.size("intermediate_size", r.required_int("intermediate_size"), kMaxSize);
    t.vocab_size = r.size("vocab_size", r.required_int("vocab_size"), kMaxSize);
    t.max_position_embeddings =
        r.size("max_position_embeddings", r.optional_int("max_position_embeddings", 128000), int64_t(1) << 40);
    t.rms_norm_eps = r.number("rms_norm_eps", r.required("rms_norm_eps"));
    if (!(t.rms_norm_eps > 0.0 && t.rms_norm_eps < 1.0))
        r.bad("rms_norm_eps", "must be in (0, 1), got " + std::to_string(t.rms_norm_eps));
    t.hidden_act = r.optional_string("hidden_act", "silu");
    if (t.hidden_act != "silu") r.unsupported("hidden_act", "'" + t.hidden_act + "' (only silu is implemented)");
    if (r.optional_bool("attention_bias", false)) r.unsupported("attention_bias", "attention biases are not implemented");

    // transformers 5 writes rope_parameters {rope_theta, ...}; hub checkpoints write rope_theta + rope_scaling {...}.
    const bool v5 = r.get("rope_parameters") != nullptr;
    const char* rope_key = v5 ? "rope_parameters" : "rope_scaling";
    const json::Value* rope_object = r.optional_object(rope_key);
    if (!rope_object) r.bad(rope_key, "missing required key (mrope_section lives there)");
    ConfigReader rope(*rope_object, r.name(rope_key), r.source());
    const ConfigReader& theta_reader = rope.get("rope_theta") ? rope : r;
    t.rope_theta = theta_reader.number("rope_theta", theta_reader.required("rope_theta"));
    if (!(t.rope_theta > 1.0)) theta_reader.bad("rope_theta", "must be > 1, got " + std::to_string(t.rope_theta));
    std::string rope_type = rope.optional_string("rope_type", rope.optional_string("type", "default"));
    if (rope_type != "default") rope.unsupported("rope_type", "'" + rope_type + "' (only default M-RoPE is implemented)");
    t.mrope_interleaved = rope.optional_bool("mrope_interleaved", true);
    const json::Value& section = rope.required("mrope_section");
    if (!section.is_array() || section.as_array().size() != 3)
        rope.bad("mrope_section", "expected a list of 3 integers");
    int64_t sum = 0;
    for (int i = 0; i < 3; ++i) {
        t.mrope_section[i] = rope.to_int("mrope_section", section.as_array()[i]);
        if (t.mrope_section[i] < 0 || t.mrope_section[i] > kMaxSize) rope.bad("mrope_section", "entries must be >= 0");
        sum += t.mrope_section[i];
    }
    if (sum != t.head_dim / 2)
        rope.bad("mrope_section", "sums to " + std::to_string(sum) + " but head_dim / 2 is " +
                                      std::to_string(t.head_dim / 2));
}

void parse_vision_config(const ConfigReader& r, VisionConfig& v) {
    v.depth = r.size("depth", r.required_int("depth"), kMaxLayers);
    v.hidden_size = r.size("hidden_size", r.required_int("hidden_size"), kMaxSize);
    v.num_heads = r.size("num_heads", r.required_int("num_heads"), kMaxSize);
    if (v.hidden_size % v.num_heads != 0)
        r.bad("num_heads", std::to_string(v.num_heads) + " does not divide hidden_size " + std::to_string(v.hidden_size));
    if (v.head_dim() % 4 != 0)
        r.bad("num_heads", "head dim " + std::to_string(v.head_dim()) + " must be a multiple of 4 for 2D rotary");
    v.intermediate_size = r.size("intermediate_size", r.required_int("intermediate_size"), kMaxSize);
    v.patch_size = r.size("patch_size", r.required_int("patch_size"), kMaxSmall);
    v.temporal_patch_size = r.size("temporal_patch_size", r.required_int("temporal_patch_size"), kMaxSmall);
    v.spatial_merge_size = r.size("spatial_merge_size", r.required_int("spatial_merge_size"), kMaxSmall);
    v.out_hidden_size = r.size("out_hidden_size", r.required_int("out_hidden_size"), kMaxSize);
    v.in_channels = r.size("in_channels", r.optional_int("in_channels", 3), kMaxSmall);
    v.num_position_embeddings =
        r.size("num_position_embeddings", r.required_int("num_position_embeddings"), kMaxSize);
    int64_t side = 0;
    while ((side + 1) * (side + 1) <= v.num_position_embeddings) ++side;
    if (side * side != v.num_position_embeddings)
        r.bad("num_position_embeddings", std::to_string(v.num_position_embeddings) + " is not a square number");
    const json::Value& indexes = r.required("deepstack_visual_indexes");
    if (!indexes.is_array()) r.bad("deepstack_visual_indexes", "expected a list of integers");
    for (const json::Value& item : indexes.as_array()) {
        int64_t index = r.to_int("deepstack_visual_indexes", item);
        if (index < 0 || index >= v.depth)
            r.bad("deepstack_visual_indexes", "index " + std::to_string(index) + " is outside [0, depth " +
                                                  std::to_string(v.depth) + ")");
        if (!v.deepstack_visual_indexes.empty() && index <= v.deepstack_visual_indexes.back())
            r.bad("deepstack_visual_indexes", "indexes must be strictly increasing");
        v.deepstack_visual_indexes.push_back(index);
    }
    v.hidden_act = r.optional_string("hidden_act", "gelu_pytorch_tanh");
    if (v.hidden_act != "gelu_pytorch_tanh" && v.hidden_act != "gelu")
        r.unsupported("hidden_act", "'" + v.hidden_act + "' (gelu_pytorch_tanh or gelu expected)");
    if (const json::Value* rope_object = r.optional_object("rope_parameters")) {
        ConfigReader rope(*rope_object, r.name("rope_parameters"), r.source());
        if (const json::Value* theta = rope.get("rope_theta")) v.rope_theta = rope.number("rope_theta", *theta);
    } else if (const json::Value* theta = r.get("rope_theta")) {
        v.rope_theta = r.number("rope_theta", *theta);
    }
    if (!(v.rope_theta > 1.0)) r.bad("rope_theta", "must be > 1, got " + std::to_string(v.rope_theta));
}

}  // namespace

ModelConfig parse_model_config(const json::Value& config, const json::Value* generation_config,
                               const std::string& source) {
    if (!config.is_object()) fail(QWEN3VL_STATUS_BAD_FORMAT, source + ": not a JSON object");
    ConfigReader top(config, "", source);
    ModelConfig c;
    const std::string model_type = top.optional_string("model_type", "qwen3_vl");
    if (model_type != "qwen3_vl") top.unsupported("model_type", "'" + model_type + "' (expected qwen3_vl)");

    ConfigReader text = top.child("text_config");
    ConfigReader vision = top.child("vision_config");
    parse_text_config(text, c.text);
    parse_vision_config(vision, c.vision);

    if (c.vision.out_hidden_size != c.text.hidden_size)
        vision.bad("out_hidden_size", std::to_string(c.vision.out_hidden_size) + " differs from text_config.hidden_size " +
                                          std::to_string(c.text.hidden_size));
    if (static_cast<int64_t>(c.vision.deepstack_visual_indexes.size()) > c.text.num_hidden_layers)
        vision.bad("deepstack_visual_indexes", "more deepstack levels than text layers");

    if (const json::Value* q = top.optional_object("quantization_config")) {
        ConfigReader qr(*q, "quantization_config", source);
        const std::string method = qr.optional_string("quant_method", "");
        if (method == "qwen3vl") {
            const std::string weights = qr.optional_string("weights", "");
            if (weights != "q8" && weights != "q4")
                qr.unsupported("weights", "'" + weights + "' is not a weight format of this engine (q8, q4)");
            const bool q4 = weights == "q4";
            const int64_t block = qr.optional_int("block_size", q4 ? 256 : 32);
            if (block != (q4 ? 256 : 32))
                qr.unsupported("block_size", std::to_string(block) + (q4 ? " (q4 super-blocks are 256)" : " (q8 blocks are 32)"));
            c.quantization.q8 = true;  // a q4 checkpoint holds its embedding table and lm_head in q8
            c.quantization.q4 = q4;
        } else if (method == "fp8") {
            const std::string activations = qr.optional_string("activation_scheme", "dynamic");
            if (activations != "dynamic")
                qr.unsupported("activation_scheme", "'" + activations + "' (static activation scales) is not supported; "
                                                                        "only dynamic");
            if (const json::Value* block = qr.get("weight_block_size")) {
                const std::vector<int64_t> b = qr.int_list("weight_block_size", *block);
                if (b.size() != 2) qr.bad("weight_block_size", "expected [rows, columns]");
                c.quantization.block_rows = qr.size("weight_block_size", b[0], kMaxSize);
                c.quantization.block_cols = qr.size("weight_block_size", b[1], kMaxSize);
            }
            c.quantization.fp8 = true;
        } else {
            qr.unsupported("quant_method", "'" + method +
                                               "' is not supported: this engine reads fine-grained FP8 checkpoints "
                                               "(quant_method fp8, e.g. Qwen's -FP8 releases), its own q8 ones "
                                               "(qwen3vl quantize) and dense bf16/f16/f32 ones");
        }
    }

    if (top.get("tie_word_embeddings")) c.tie_word_embeddings = top.optional_bool("tie_word_embeddings", false);
    else c.tie_word_embeddings = text.optional_bool("tie_word_embeddings", false);

    auto token = [&](const char* key, int64_t fallback) {
        int64_t id = top.optional_int(key, fallback);
        if (id < 0 || id >= c.text.vocab_size)
            top.bad(key, std::to_string(id) + " is outside the vocabulary (" + std::to_string(c.text.vocab_size) + ")");
        return id;
    };
    c.image_token_id = token("image_token_id", 151655);
    c.video_token_id = token("video_token_id", 151656);
    c.vision_start_token_id = token("vision_start_token_id", 151652);
    c.vision_end_token_id = token("vision_end_token_id", 151653);

    // eos ids: generation_config.json, else config.json (top level, then text_config).
    const std::string generation_source = "generation_config.json";
    std::unique_ptr<ConfigReader> generation;
    if (generation_config) {
        if (!generation_config->is_object()) fail(QWEN3VL_STATUS_BAD_FORMAT, generation_source + ": not a JSON object");
        generation.reset(new ConfigReader(*generation_config, "", generation_source));
    }
    const ConfigReader* eos_reader = nullptr;
    if (generation && generation->get("eos_token_id")) eos_reader = generation.get();
    else if (top.get("eos_token_id")) eos_reader = &top;
    else if (text.get("eos_token_id")) eos_reader = &text;
    if (!eos_reader) top.bad("eos_token_id", "missing in generation_config.json and config.json");
    c.eos_token_ids = eos_reader->int_list("eos_token_id", *eos_reader->get("eos_token_id"));
    if (c.eos_token_ids.empty()) eos_reader->bad("eos_token_id", "empty list");
    for (int64_t id : c.eos_token_ids)
        if (id < 0 || id >= c.text.vocab_size)
            eos_reader->bad("eos_token_id", std::to_string(id) + " is outside the vocabulary (" +
                                                std::to_string(c.text.vocab_size) + ")");
    return c;
}

std::vector<ExpectedTensor> expected_tensors(const ModelConfig& config) {
    const TextConfig& t = config.text;
    const VisionConfig& v = config.vision;
    std::vector<ExpectedTensor> out;
    auto add = [&](std::string name, std::vector<int64_t> shape, bool optional = false) {
        out.push_back(ExpectedTensor{std::move(name), std::move(shape), optional});
    };

    auto linear = [&](std::string name, std::vector<int64_t> shape, bool optional = false) {
        out.push_back(ExpectedTensor{std::move(name), std::move(shape), optional, true});
    };

    const std::string lm = "model.language_model.";
    out.push_back(ExpectedTensor{lm + "embed_tokens.weight", {t.vocab_size, t.hidden_size}, false, false, true});
    for (int64_t i = 0; i < t.num_hidden_layers; ++i) {
        const std::string p = lm + "layers." + std::to_string(i) + ".";
        add(p + "input_layernorm.weight", {t.hidden_size});
        add(p + "post_attention_layernorm.weight", {t.hidden_size});
        linear(p + "self_attn.q_proj.weight", {t.num_attention_heads * t.head_dim, t.hidden_size});
        linear(p + "self_attn.k_proj.weight", {t.num_key_value_heads * t.head_dim, t.hidden_size});
        linear(p + "self_attn.v_proj.weight", {t.num_key_value_heads * t.head_dim, t.hidden_size});
        linear(p + "self_attn.o_proj.weight", {t.hidden_size, t.num_attention_heads * t.head_dim});
        add(p + "self_attn.q_norm.weight", {t.head_dim});
        add(p + "self_attn.k_norm.weight", {t.head_dim});
        linear(p + "mlp.gate_proj.weight", {t.intermediate_size, t.hidden_size});
        linear(p + "mlp.up_proj.weight", {t.intermediate_size, t.hidden_size});
        linear(p + "mlp.down_proj.weight", {t.hidden_size, t.intermediate_size});
    }
    add(lm + "norm.weight", {t.hidden_size});
    // A tied model reuses embed_tokens; some exporters still write lm_head.weight, which is then accepted and unused.
    linear("lm_head.weight", {t.vocab_size, t.hidden_size}, config.tie_word_embeddings);

    const std::string vis = "model.visual.";
    const int64_t h = v.hidden_size;
    const int64_t merged = v.merged_hidden_size();
    add(vis + "patch_embed.proj.weight", {h, v.in_channels, v.temporal_patch_size, v.patch_size, v.patch_size});
    add(vis + "patch_embed.proj.bias", {h});
    add(vis + "pos_embed.weight", {v.num_position_embeddings, h});
    for (int64_t i = 0; i < v.depth; ++i) {
        const std::string p = vis + "blocks." + std::to_string(i) + ".";
        add(p + "norm1.weight", {h});
        add(p + "norm1.bias", {h});
        add(p + "norm2.weight", {h});
        add(p + "norm2.bias", {h});
        linear(p + "attn.qkv.weight", {3 * h, h});
        add(p + "attn.qkv.bias", {3 * h});
        linear(p + "attn.proj.weight", {h, h});
        add(p + "attn.proj.bias", {h});
        linear(p + "mlp.linear_fc1.weight", {v.intermediate_size, h});
        add(p + "mlp.linear_fc1.bias", {v.intermediate_size});
        linear(p + "mlp.linear_fc2.weight", {h, v.intermediate_size});
        add(p + "mlp.linear_fc2.bias", {h});
    }
    auto merger = [&](const std::string& p, int64_t norm_width) {
        add(p + "norm.weight", {norm_width});
        add(p + "norm.bias", {norm_width});
        linear(p + "linear_fc1.weight", {merged, merged});
        add(p + "linear_fc1.bias", {merged});
        linear(p + "linear_fc2.weight", {v.out_hidden_size, merged});
        add(p + "linear_fc2.bias", {v.out_hidden_size});
    };
    merger(vis + "merger.", h);  // use_postshuffle_norm=False: LayerNorm before the 2x2 shuffle
    for (size_t k = 0; k < v.deepstack_visual_indexes.size(); ++k)
        merger(vis + "deepstack_merger_list." + std::to_string(k) + ".", merged);  // postshuffle norm
    return out;
}

namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

// A U8 weight of a q4 checkpoint: the nibble plane [N, K / 2] of an [N, K] matrix (K a multiple of 256) and its
// "<name>_header" U8 [N, K / 256, 16], every super-block's d and dmin finite and not negative.
void check_q4_weight(const ModelConfig& config, const ExpectedTensor& e, const TensorView& t,
                     const std::unordered_map<std::string, const TensorView*>& present,
                     std::set<std::string>& expected_names, std::vector<std::string>& problems, bool& structural) {
    auto problem = [&](const std::string& p) {  // every problem of a q4 weight is structural
        problems.push_back(p);
        structural = true;
    };
    if (!config.quantization.q4) {
        problem("tensor '" + e.name + "' is U8 but config.json has no qwen3vl q4 quantization_config (" +
                           t.file + ")");
        return;
    }
    const std::string hname = q4_header_name(e.name);
    expected_names.insert(hname);
    if (e.shape.size() != 2 || e.shape[1] % 256 != 0) {
        problem("tensor '" + e.name + "' is U8 but its rows are not whole super-blocks of 256 (" + t.file + ")");
        return;
    }
    const std::vector<int64_t> vshape = {e.shape[0], e.shape[1] / 2}, hshape = {e.shape[0], e.shape[1] / 256, 16};
    if (t.shape != vshape) {
        problem("tensor '" + e.name + "' (q4 values) has shape " + t.shape_string() + ", expected " +
                           shape_text(vshape) + " (two weights a byte of the " + shape_text(e.shape) + " matrix) (" +
                           t.file + ")");
        return;
    }
    auto ht = present.find(hname);
    if (ht == present.end()) {
        problem("missing tensor '" + hname + "' " + shape_text(hshape) + " (the super-block headers of the q4 " +
                           "weight '" + e.name + "')");
        return;
    }
    const TensorView& hv = *ht->second;
    if (hv.shape != hshape || hv.dtype != SafetensorsDType::U8) {
        problem("tensor '" + hname + "' is " + dtype_name(hv.dtype) + " " + hv.shape_string() + ", expected U8 " +
                           shape_text(hshape) + " (" + hv.file + ")");
        return;
    }
    for (uint64_t i = 0; i < hv.element_count() / 16; ++i)
        for (int j = 0; j < 2; ++j) {
            uint16_t h;
            std::memcpy(&h, hv.data + 16 * i + 2 * j, 2);
            if ((h & 0x7c00) == 0x7c00 || (h & 0x8000) != 0) {
                problem("tensor '" + hname + "' holds a non-finite or negative " + (j ? "dmin" : "d") +
                                   " in super-block [" + std::to_string(i / uint64_t(hshape[1])) + ", " +
                                   std::to_string(i % uint64_t(hshape[1])) + "] (" + hv.file + ")");
                return;
            }
        }
}

}  // namespace

void validate_tensors(const ModelConfig& config, const std::vector<const TensorView*>& tensors,
                      const std::string& source) {
    std::unordered_map<std::string, const TensorView*> present;
    present.reserve(tensors.size());
    for (const TensorView* t : tensors) present.emplace(t->name, t);

    std::vector<std::string> problems;
    bool structural = false;
    std::set<std::string> expected_names;
    for (const ExpectedTensor& e : expected_tensors(config)) {
        expected_names.insert(e.name);
        auto it = present.find(e.name);
        if (it == present.end()) {
            if (!e.optional) {
                problems.push_back("missing tensor '" + e.name + "' " + shape_text(e.shape));
                structural = true;
            }
            continue;
        }
        const TensorView& t = *it->second;
        if ((e.linear || e.table) && t.dtype == SafetensorsDType::U8) {
            check_q4_weight(config, e, t, present, expected_names, problems, structural);
            continue;
        }
        if (t.shape != e.shape) {
            problems.push_back("tensor '" + e.name + "' has shape " + t.shape_string() + ", expected " +
                               shape_text(e.shape) + " (" + t.file + ")");
            structural = true;
        }
        if ((e.linear || e.table) && t.dtype == SafetensorsDType::I8) {
            if (!config.quantization.q8) {
                problems.push_back("tensor '" + e.name + "' is I8 but config.json has no qwen3vl q8 quantization_config (" +
                                   t.file + ")");
                structural = true;
                continue;
            }
            const std::string sname = q8_scale_name(e.name);
            expected_names.insert(sname);
            if (e.shape.size() != 2 || e.shape[1] % 32 != 0) {
                problems.push_back("tensor '" + e.name + "' is I8 but its rows are not whole blocks of 32 (" + t.file + ")");
                structural = true;
                continue;
            }
            const std::vector<int64_t> sshape = {e.shape[0], e.shape[1] / 32};
            auto st = present.find(sname);
            if (st == present.end()) {
                problems.push_back("missing tensor '" + sname + "' " + shape_text(sshape) +
                                   " (the f16 scales of the q8 weight '" + e.name + "')");
                structural = true;
                continue;
            }
            const TensorView& sv = *st->second;
            if (sv.shape != sshape || sv.dtype != SafetensorsDType::F16) {
                problems.push_back("tensor '" + sname + "' is " + dtype_name(sv.dtype) + " " + sv.shape_string() +
                                   ", expected F16 " + shape_text(sshape) + " (" + sv.file + ")");
                structural = true;
                continue;
            }
            for (uint64_t i = 0; i < sv.element_count(); ++i) {
                uint16_t h;
                std::memcpy(&h, sv.data + 2 * i, 2);
                if ((h & 0x7c00) == 0x7c00) {
                    problems.push_back("tensor '" + sname + "' holds a non-finite scale at [" +
                                       std::to_string(i / uint64_t(sshape[1])) + ", " +
                                       std::to_string(i % uint64_t(sshape[1])) + "] (" + sv.file + ")");
                    structural = true;
                    break;
                }
            }
            continue;
        }
        if (e.linear && t.dtype == SafetensorsDType::F8_E4M3) {
            if (!config.quantization.fp8) {
                problems.push_back("tensor '" + e.name + "' is F8_E4M3 but config.json has no fp8 quantization_config (" +
                                   t.file + ")");
                structural = true;
                continue;
            }
            const std::string sname = scale_inv_name(e.name);
            expected_names.insert(sname);
            const std::vector<int64_t> sshape = {
                (e.shape[0] + config.quantization.block_rows - 1) / config.quantization.block_rows,
                (e.shape[1] + config.quantization.block_cols - 1) / config.quantization.block_cols};
            auto st = present.find(sname);
            if (st == present.end()) {
                problems.push_back("missing tensor '" + sname + "' " + shape_text(sshape) +
                                   " (the block scales of the F8_E4M3 weight '" + e.name + "')");
                structural = true;
                continue;
            }
            const TensorView& sv = *st->second;
            if (sv.shape != sshape) {
                problems.push_back("tensor '" + sname + "' has shape " + sv.shape_string() + ", expected " +
                                   shape_text(sshape) + " (one scale per " +
                                   std::to_string(config.quantization.block_rows) + "x" +
                                   std::to_string(config.quantization.block_cols) + " block) (" + sv.file + ")");
                structural = true;
            } else if (sv.dtype != SafetensorsDType::F32 && sv.dtype != SafetensorsDType::BF16) {
                problems.push_back("tensor '" + sname + "' has unsupported dtype " + dtype_name(sv.dtype) +
                                   " (F32 or BF16 expected) (" + sv.file + ")");
            } else {
                const uint64_t n = sv.element_count();
                for (uint64_t i = 0; i < n; ++i) {
                    float v;
                    if (sv.dtype == SafetensorsDType::F32) {
                        std::memcpy(&v, sv.data + 4 * i, 4);
                    } else {
                        uint16_t h;
                        std::memcpy(&h, sv.data + 2 * i, 2);
                        v = bf16_to_f32(h);
                    }
                    if (!(std::isfinite(v) && v >= 0.0f)) {
                        problems.push_back("tensor '" + sname + "' holds a non-finite or negative scale (" +
                                           std::to_string(v) + ") at [" + std::to_string(i / uint64_t(sshape[1])) +
                                           ", " + std::to_string(i % uint64_t(sshape[1])) + "] (" + sv.file + ")");
                        structural = true;
                        break;
                    }
                }
            }
            continue;
        }
        if (!is_weight_dtype(t.dtype))
            problems.push_back("tensor '" + e.name + "' has unsupported dtype " + dtype_name(t.dtype) +
                               " (BF16, F16 or F32 expected) (" + t.file + ")");
    }
    std::vector<std::string> unexpected;
    for (const auto& entry : present)
        if (!expected_names.count(entry.first)) unexpected.push_back(entry.first);
    std::sort(unexpected.begin(), unexpected.end());
    for (const std::string& name : unexpected) {
        problems.push_back("unexpected tensor '" + name + "' " + present[name]->shape_string() + " (" +
                           present[name]->file + ")");
        structural = true;
    }
    if (problems.empty()) return;

    constexpr size_t kMaxLines = 20;
    std::string message = source + ": the checkpoint does not match its config (" + std::to_string(problems.size()) +
                          (problems.size() == 1 ? " problem):" : " problems):");
    for (size_t i = 0; i < problems.size() && i < kMaxLines; ++i) message += "\n  " + problems[i];
    if (problems.size() > kMaxLines) message += "\n  and " + std::to_string(problems.size() - kMaxLines) + " more";
    fail(structural ? QWEN3VL_STATUS_BAD_FORMAT : QWEN3VL_STATUS_UNSUPPORTED, message);
}

namespace {

json::Value read_json_file(const std::string& path) {
    const std::string text = read_text_file(path);
    return json::parse(text, path);
}

// A shard name from the index must be a plain file name inside the checkpoint folder.
bool is_plain_file_name(const std::string& name) {
    if (name.empty() || name == "." || name == "..") return false;
    for (char c : name)
        if (c == '/' || c == '\\' || c == ':' || c == '\0') return false;
    return true;
}

}  // namespace

// Whether a checkpoint file is there: anything but a directory counts, so that a FIFO or a device in its place is
// refused by the read ("not a regular file") rather than reported missing.
static bool present(const std::string& path) {
    const FileKind kind = file_kind(path);
    return kind == FileKind::Regular || kind == FileKind::Other;
}

Checkpoint Checkpoint::open(const std::string& directory) {
    if (!is_directory(directory)) fail(QWEN3VL_STATUS_IO_ERROR, "'" + directory + "' is not a directory");
    Checkpoint ck;
    ck.directory_ = directory;

    const std::string config_path = path_join(directory, "config.json");
    if (!present(config_path)) fail(QWEN3VL_STATUS_IO_ERROR, "missing '" + config_path + "'");
    const json::Value config = read_json_file(config_path);
    const std::string generation_path = path_join(directory, "generation_config.json");
    json::Value generation;
    const bool has_generation = present(generation_path);
    if (has_generation) generation = read_json_file(generation_path);
    ck.config_ = parse_model_config(config, has_generation ? &generation : nullptr, config_path);

    const std::string single_path = path_join(directory, "model.safetensors");
    const std::string index_path = path_join(directory, "model.safetensors.index.json");
    if (present(single_path)) {
        ck.files_.push_back(SafetensorsFile::open(single_path));
    } else if (present(index_path)) {
        const json::Value index = read_json_file(index_path);
        auto bad = [&](const std::string& what) { fail(QWEN3VL_STATUS_BAD_FORMAT, index_path + ": " + what); };
        if (!index.is_object()) bad("not a JSON object");
        const json::Value* weight_map = index.find("weight_map");
        if (!weight_map || !weight_map->is_object()) bad("missing object 'weight_map'");
        std::map<std::string, size_t> shard_of_file;  // shard file name -> index in files_
        std::unordered_map<std::string, std::string> listed;  // tensor name -> shard file
        for (const json::Member& m : weight_map->as_object()) {
            if (!m.value.is_string()) bad("weight_map entry '" + m.key + "' is not a string");
            const std::string& shard = m.value.as_string();
            if (!is_plain_file_name(shard)) bad("weight_map entry '" + m.key + "' names '" + shard +
                                                "', which is not a plain file name in the checkpoint folder");
            shard_of_file.emplace(shard, 0);
            listed.emplace(m.key, shard);
        }
        for (auto& entry : shard_of_file) {
            const std::string shard_path = path_join(directory, entry.first);
            if (!present(shard_path))
                fail(QWEN3VL_STATUS_IO_ERROR, "missing shard '" + shard_path + "' (listed in " + index_path + ")");
            entry.second = ck.files_.size();
            ck.files_.push_back(SafetensorsFile::open(shard_path));
        }
        for (const json::Member& m : weight_map->as_object()) {
            const std::string& shard = m.value.as_string();
            if (!ck.files_[shard_of_file[shard]].find(m.key))
                fail(QWEN3VL_STATUS_BAD_FORMAT, index_path + ": tensor '" + m.key + "' is listed in shard '" + shard +
                                                    "' but that shard does not hold it");
        }
        for (const SafetensorsFile& file : ck.files_)
            for (const TensorView& t : file.tensors())
                if (!listed.count(t.name))
                    fail(QWEN3VL_STATUS_BAD_FORMAT, file.name() + ": tensor '" + t.name + "' is not listed in " +
                                                        index_path);
    } else {
        fail(QWEN3VL_STATUS_IO_ERROR, "'" + directory + "' has neither model.safetensors nor model.safetensors.index.json");
    }

    std::vector<const TensorView*> all;
    for (size_t f = 0; f < ck.files_.size(); ++f) {
        const std::vector<TensorView>& tensors = ck.files_[f].tensors();
        for (size_t i = 0; i < tensors.size(); ++i) {
            auto inserted = ck.index_.emplace(tensors[i].name, std::make_pair(f, i));
            if (!inserted.second)
                fail(QWEN3VL_STATUS_BAD_FORMAT, "tensor '" + tensors[i].name + "' is in two shards: '" +
                                                    ck.files_[inserted.first->second.first].name() + "' and '" +
                                                    ck.files_[f].name() + "'");
            all.push_back(&tensors[i]);
        }
    }
    validate_tensors(ck.config_, all, directory);
    return ck;
}

const TensorView* Checkpoint::find(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &files_[it->second.first].tensors()[it->second.second];
}

const TensorView& Checkpoint::scale_inv(const TensorView& weight) const {
    const TensorView* s = find(scale_inv_name(weight.name));
    if (!s) fail(QWEN3VL_STATUS_INTERNAL_ERROR, directory_ + ": no block scales for '" + weight.name + "'");
    return *s;
}

const TensorView& Checkpoint::q8_scale(const TensorView& weight) const {
    const TensorView* s = find(q8_scale_name(weight.name));
    if (!s) fail(QWEN3VL_STATUS_INTERNAL_ERROR, directory_ + ": no q8 scales for '" + weight.name + "'");
    return *s;
}

const TensorView& Checkpoint::q4_header(const TensorView& weight) const {
    const TensorView* s = find(q4_header_name(weight.name));
    if (!s) fail(QWEN3VL_STATUS_INTERNAL_ERROR, directory_ + ": no q4 headers for '" + weight.name + "'");
    return *s;
}

const TensorView& Checkpoint::tensor(const std::string& name) const {
    const TensorView* t = find(name);
    if (!t) fail(QWEN3VL_STATUS_INVALID_ARGUMENT, directory_ + ": no tensor named '" + name + "'");
    return *t;
}

}  // namespace qwen3vl
