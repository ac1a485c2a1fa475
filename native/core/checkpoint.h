// A Hugging Face Qwen3-VL checkpoint folder: config.json (+ generation_config.json), and model.safetensors or the
// shards listed by model.safetensors.index.json. Opening it parses and checks the configuration, maps every weight
// file, and checks the whole tensor set against the configuration before any compute: every problem (missing,
// unexpected, wrong shape, unsupported dtype) is reported in one error.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "json.h"
#include "safetensors.h"

namespace qwen3vl {

struct TextConfig {
    int64_t hidden_size = 0;
    int64_t num_hidden_layers = 0;
    int64_t num_attention_heads = 0;
    int64_t num_key_value_heads = 0;  // defaults to num_attention_heads
    int64_t head_dim = 0;             // defaults to hidden_size / num_attention_heads
    int64_t intermediate_size = 0;
    int64_t vocab_size = 0;
    int64_t max_position_embeddings = 0;  // defaults to 128000
    double rms_norm_eps = 0.0;
    double rope_theta = 0.0;
    int64_t mrope_section[3] = {0, 0, 0};  // sums to head_dim / 2
    // Read for completeness: transformers' Qwen3-VL always interleaves, whatever this flag says.
    bool mrope_interleaved = true;
    std::string hidden_act;  // "silu"
};

struct VisionConfig {
    int64_t depth = 0;
    int64_t hidden_size = 0;
    int64_t num_heads = 0;
    int64_t intermediate_size = 0;
    int64_t patch_size = 0;
    int64_t temporal_patch_size = 0;
    int64_t spatial_merge_size = 0;
    int64_t out_hidden_size = 0;  // equals the text hidden size
    int64_t in_channels = 0;      // defaults to 3
    int64_t num_position_embeddings = 0;  // a square number: the learned grid is sqrt x sqrt
    std::vector<int64_t> deepstack_visual_indexes;  // block indexes, increasing, each < depth
    std::string hidden_act;  // "gelu_pytorch_tanh" (or "gelu")
    double rope_theta = 10000.0;

    int64_t head_dim() const { return hidden_size / num_heads; }
    int64_t merged_hidden_size() const { return hidden_size * spatial_merge_size * spatial_merge_size; }
};

// config.json's quantization_config. Only transformers' fine-grained FP8 (quant_method "fp8", dynamic activations) is
// read: an nn.Linear weight [N, K] may then be F8_E4M3 with an F32 (or BF16) "<name>_scale_inv" of shape
// [ceil(N / block_rows), ceil(K / block_cols)], w = fp8 * scale_inv per block; the rest stays dense. Other methods and
// static activation scales are UNSUPPORTED by name.
// The engine's own quantized checkpoints (written by `qwen3vl quantize`): quant_method "qwen3vl" with "weights": "q8";
// an nn.Linear weight [N, K] (K a multiple of 32) may then be I8 with an F16 "<name>_scale" [N, K / 32]: the Q8 planes
// of core/quant.h as two tensors, loaded on the CPU as a view of the mapping. With "weights": "q4" (block_size 256) a
// weight [N, K] (K a multiple of 256) may also be U8 [N, K / 2] (the nibbles) with a U8 "<name>_header" [N, K / 256,
// 16] (the super-block headers), and I8 Q8 ones stay allowed (its embedding table and lm_head).
struct QuantizationConfig {
    bool fp8 = false;
    int64_t block_rows = 128;
    int64_t block_cols = 128;
    bool q8 = false;
    bool q4 = false;
};

struct ModelConfig {
    TextConfig text;
    VisionConfig vision;
    QuantizationConfig quantization;
    bool tie_word_embeddings = false;  // top level, else text_config, else false (the transformers default)
    int64_t image_token_id = 151655;
    int64_t video_token_id = 151656;
    int64_t vision_start_token_id = 151652;
    int64_t vision_end_token_id = 151653;
    std::vector<int64_t> eos_token_ids;  // generation_config.json, else config.json
};

// Parses config.json (and generation_config.json when given, else nullptr). Missing required keys and nonsensical
// values throw BAD_FORMAT naming the key (e.g. "config.json: text_config.hidden_size: ..."); valid settings this
// engine does not implement (another rope_type, activation, attention bias) throw UNSUPPORTED.
ModelConfig parse_model_config(const json::Value& config, const json::Value* generation_config,
                               const std::string& source);

struct ExpectedTensor {
    std::string name;
    std::vector<int64_t> shape;
    bool optional = false;  // lm_head.weight of a tied model: tolerated, never used
    bool linear = false;    // an nn.Linear weight: F8_E4M3 with its scale_inv allowed in an FP8 checkpoint
    bool table = false;     // the token embedding: I8 with its scales allowed in a q8 checkpoint (as the linears)
};

// The name of an FP8 weight's block scales.
inline std::string scale_inv_name(const std::string& weight) { return weight + "_scale_inv"; }
// The name of a Q8 weight's f16 scales.
inline std::string q8_scale_name(const std::string& weight) { return weight + "_scale"; }
// The name of a Q4 weight's super-block headers.
inline std::string q4_header_name(const std::string& weight) { return weight + "_header"; }

// The tensors a checkpoint of this configuration holds, with their shapes (transformers' Qwen3-VL layout).
std::vector<ExpectedTensor> expected_tensors(const ModelConfig& config);

// Checks a set of tensors against the configuration. Every problem is collected; when any is structural (missing,
// unexpected, wrong shape) it throws BAD_FORMAT, when the only problems are dtypes it throws UNSUPPORTED. The message
// lists the problems one a line (at most 20, then "and N more"). `source` names the checkpoint.
void validate_tensors(const ModelConfig& config, const std::vector<const TensorView*>& tensors,
                      const std::string& source);

class Checkpoint {
public:
    // Opens a checkpoint folder; throws IO_ERROR (missing folder or files), BAD_FORMAT or UNSUPPORTED.
    static Checkpoint open(const std::string& directory);

    Checkpoint(Checkpoint&&) noexcept = default;
    Checkpoint& operator=(Checkpoint&&) noexcept = default;

    const std::string& directory() const { return directory_; }
    const ModelConfig& config() const { return config_; }
    const std::vector<SafetensorsFile>& files() const { return files_; }
    size_t tensor_count() const { return index_.size(); }

    // The mapped tensor; views are valid for the life of the Checkpoint.
    const TensorView* find(const std::string& name) const;  // nullptr when absent
    // The block scales of an F8_E4M3 weight (validated at open: shape, dtype, every scale finite and >= 0).
    const TensorView& scale_inv(const TensorView& weight) const;
    // The f16 scales of an I8 (Q8) weight (validated at open: shape, dtype, every scale finite).
    const TensorView& q8_scale(const TensorView& weight) const;
    // The super-block headers of a U8 (Q4) weight (validated at open: shape, dtype, every d and dmin finite, >= 0).
    const TensorView& q4_header(const TensorView& weight) const;
    const TensorView& tensor(const std::string& name) const;  // throws INVALID_ARGUMENT when absent

private:
    Checkpoint() = default;

    std::string directory_;
    ModelConfig config_;
    std::vector<SafetensorsFile> files_;
    std::unordered_map<std::string, std::pair<size_t, size_t>> index_;  // name -> (file, tensor) indexes
};

}  // namespace qwen3vl
