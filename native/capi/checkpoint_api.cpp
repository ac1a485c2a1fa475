// The checkpoint part of the C API: open + validate a Hugging Face folder, report its configuration, hand out
// weights as tensors (views of the mapping on the CPU, uploaded copies elsewhere).
#include <algorithm>
#include <vector>
#include <cstring>
#include <memory>
#include <string>

#include "boundary.h"
#include "checkpoint.h"
#include "dtype.h"
#include "handles.h"
#include "qwen3vl.h"
#include "quant.h"
#include "safetensors.h"
#include "checkpoint_weights.h"
#include "tensor.h"

using namespace qwen3vl;

namespace {

template <size_t N>
int32_t copy_list(int64_t (&dst)[N], const std::vector<int64_t>& src, const char* what) {
    if (src.size() > N)
        fail(QWEN3VL_STATUS_UNSUPPORTED, std::string(what) + " has " + std::to_string(src.size()) +
                                             " entries; this build supports " + std::to_string(N));
    std::copy(src.begin(), src.end(), dst);
    return static_cast<int32_t>(src.size());
}

}  // namespace

extern "C" {

qwen3vl_status qwen3vl_checkpoint_open(const char* directory, qwen3vl_checkpoint** checkpoint) {
    return guarded([&] {
        require(checkpoint != nullptr, "checkpoint out-pointer is NULL");
        *checkpoint = nullptr;
        require(directory != nullptr && *directory, "directory is NULL or empty");
        auto c = std::make_unique<qwen3vl_checkpoint>();
        c->impl = std::make_shared<Checkpoint>(Checkpoint::open(directory));
        *checkpoint = c.release();
    });
}

void qwen3vl_checkpoint_free(qwen3vl_checkpoint* checkpoint) { delete checkpoint; }

qwen3vl_model_config qwen3vl_model_config_init(void) {
    qwen3vl_model_config c;
    std::memset(&c, 0, sizeof(c));
    c.struct_size = sizeof(c);
    return c;
}

qwen3vl_status qwen3vl_checkpoint_config(const qwen3vl_checkpoint* checkpoint, qwen3vl_model_config* config) {
    return guarded([&] {
        require(checkpoint != nullptr, "checkpoint is NULL");
        require_struct(config, "qwen3vl_model_config");
        const ModelConfig& m = checkpoint->impl->config();
        qwen3vl_model_config c = qwen3vl_model_config_init();
        c.tie_word_embeddings = m.tie_word_embeddings ? 1 : 0;
        c.text_hidden_size = m.text.hidden_size;
        c.text_num_layers = m.text.num_hidden_layers;
        c.text_num_heads = m.text.num_attention_heads;
        c.text_num_kv_heads = m.text.num_key_value_heads;
        c.text_head_dim = m.text.head_dim;
        c.text_intermediate_size = m.text.intermediate_size;
        c.vocab_size = m.text.vocab_size;
        c.max_position_embeddings = m.text.max_position_embeddings;
        c.rms_norm_eps = m.text.rms_norm_eps;
        c.rope_theta = m.text.rope_theta;
        for (int i = 0; i < 3; ++i) c.mrope_section[i] = m.text.mrope_section[i];
        c.vision_depth = m.vision.depth;
        c.vision_hidden_size = m.vision.hidden_size;
        c.vision_num_heads = m.vision.num_heads;
        c.vision_intermediate_size = m.vision.intermediate_size;
        c.vision_patch_size = m.vision.patch_size;
        c.vision_temporal_patch_size = m.vision.temporal_patch_size;
        c.vision_spatial_merge_size = m.vision.spatial_merge_size;
        c.vision_out_hidden_size = m.vision.out_hidden_size;
        c.vision_in_channels = m.vision.in_channels;
        c.vision_num_position_embeddings = m.vision.num_position_embeddings;
        c.vision_rope_theta = m.vision.rope_theta;
        c.vision_gelu_tanh = m.vision.hidden_act == "gelu" ? 0 : 1;
        c.deepstack_count = copy_list(c.deepstack_visual_indexes, m.vision.deepstack_visual_indexes,
                                      "vision_config.deepstack_visual_indexes");
        c.image_token_id = m.image_token_id;
        c.video_token_id = m.video_token_id;
        c.vision_start_token_id = m.vision_start_token_id;
        c.vision_end_token_id = m.vision_end_token_id;
        c.eos_token_count = copy_list(c.eos_token_ids, m.eos_token_ids, "eos_token_id");
        if (m.quantization.fp8) {
            c.fp8 = 1;
            c.fp8_block_rows = static_cast<int32_t>(std::min<int64_t>(m.quantization.block_rows, INT32_MAX));
            c.fp8_block_cols = static_cast<int32_t>(std::min<int64_t>(m.quantization.block_cols, INT32_MAX));
        }
        *config = c;
    });
}

qwen3vl_status qwen3vl_checkpoint_tensor(qwen3vl_checkpoint* checkpoint, qwen3vl_backend* backend, const char* name,
                                         qwen3vl_tensor** tensor) {
    return guarded([&] {
        require(tensor != nullptr, "tensor out-pointer is NULL");
        *tensor = nullptr;
        require(checkpoint != nullptr, "checkpoint is NULL");
        require(name != nullptr, "name is NULL");
        const TensorView& v = checkpoint->impl->tensor(name);
        require(backend != nullptr, "backend is NULL");
        auto t = std::make_unique<qwen3vl_tensor>();
        t->t = load_weight(checkpoint->impl, *backend->impl, v, stored_dtype(v));
        *tensor = t.release();
    });
}

qwen3vl_status qwen3vl_checkpoint_tensor_as(qwen3vl_checkpoint* checkpoint, qwen3vl_backend* backend, const char* name,
                                            qwen3vl_dtype dtype, qwen3vl_tensor** tensor) {
    return guarded([&] {
        require(tensor != nullptr, "tensor out-pointer is NULL");
        *tensor = nullptr;
        require(checkpoint != nullptr, "checkpoint is NULL");
        require(name != nullptr, "name is NULL");
        require(dtype_valid(raw_enum(dtype)), "unknown dtype " + std::to_string(raw_enum(dtype)));
        const TensorView& v = checkpoint->impl->tensor(name);
        require(backend != nullptr, "backend is NULL");
        auto t = std::make_unique<qwen3vl_tensor>();
        t->t = load_weight(checkpoint->impl, *backend->impl, v, dtype);
        *tensor = t.release();
    });
}

}  // extern "C"
