// qwen3vl_abi_layout: the compiler's view of the header's structs and enums, so the generated C# binding can be
// checked against it (tests/csharp ABI tests). Every struct field and enum value of qwen3vl.h is listed here; a
// field missing from this table shows up in those tests as a size mismatch or an unknown member.
#include <cstddef>
#include <cstring>
#include <string>

#include "boundary.h"
#include "qwen3vl.h"

namespace {

struct Entry {
    const char* type;
    const char* member;  // "" for the size of the type
    int64_t value;
};

#define QWEN3VL_SIZE(T) {#T, "", static_cast<int64_t>(sizeof(T))}
#define QWEN3VL_FIELD(T, m) {#T, #m, static_cast<int64_t>(offsetof(T, m))}
#define QWEN3VL_ENUM(T, v) {#T, #v, static_cast<int64_t>(v)}

const Entry kEntries[] = {
    QWEN3VL_SIZE(qwen3vl_build_info),
    QWEN3VL_FIELD(qwen3vl_build_info, struct_size),
    QWEN3VL_FIELD(qwen3vl_build_info, version_major),
    QWEN3VL_FIELD(qwen3vl_build_info, version_minor),
    QWEN3VL_FIELD(qwen3vl_build_info, version_patch),
    QWEN3VL_FIELD(qwen3vl_build_info, backends),
    QWEN3VL_FIELD(qwen3vl_build_info, cpu_features),
    QWEN3VL_FIELD(qwen3vl_build_info, logical_cpus),
    QWEN3VL_FIELD(qwen3vl_build_info, cuda_runtime_version),
    QWEN3VL_FIELD(qwen3vl_build_info, cuda_driver_version),
    QWEN3VL_FIELD(qwen3vl_build_info, cuda_device_count),
    QWEN3VL_FIELD(qwen3vl_build_info, version),
    QWEN3VL_FIELD(qwen3vl_build_info, compiler),
    QWEN3VL_FIELD(qwen3vl_build_info, cpu_kernels),
    QWEN3VL_FIELD(qwen3vl_build_info, cuda_architectures),

    QWEN3VL_SIZE(qwen3vl_cuda_device),
    QWEN3VL_FIELD(qwen3vl_cuda_device, struct_size),
    QWEN3VL_FIELD(qwen3vl_cuda_device, index),
    QWEN3VL_FIELD(qwen3vl_cuda_device, compute_major),
    QWEN3VL_FIELD(qwen3vl_cuda_device, compute_minor),
    QWEN3VL_FIELD(qwen3vl_cuda_device, multiprocessors),
    QWEN3VL_FIELD(qwen3vl_cuda_device, reserved),
    QWEN3VL_FIELD(qwen3vl_cuda_device, total_memory),
    QWEN3VL_FIELD(qwen3vl_cuda_device, free_memory),
    QWEN3VL_FIELD(qwen3vl_cuda_device, name),

    QWEN3VL_SIZE(qwen3vl_backend_params),
    QWEN3VL_FIELD(qwen3vl_backend_params, struct_size),
    QWEN3VL_FIELD(qwen3vl_backend_params, type),
    QWEN3VL_FIELD(qwen3vl_backend_params, device),
    QWEN3VL_FIELD(qwen3vl_backend_params, threads),
    QWEN3VL_FIELD(qwen3vl_backend_params, cuda_fp32_math),
    QWEN3VL_FIELD(qwen3vl_backend_params, cuda_kernel_arch),

    QWEN3VL_SIZE(qwen3vl_memory_stats),
    QWEN3VL_FIELD(qwen3vl_memory_stats, struct_size),
    QWEN3VL_FIELD(qwen3vl_memory_stats, reserved),
    QWEN3VL_FIELD(qwen3vl_memory_stats, bytes_in_use),
    QWEN3VL_FIELD(qwen3vl_memory_stats, peak_bytes_in_use),
    QWEN3VL_FIELD(qwen3vl_memory_stats, bytes_reserved),
    QWEN3VL_FIELD(qwen3vl_memory_stats, system_allocations),
    QWEN3VL_FIELD(qwen3vl_memory_stats, system_frees),
    QWEN3VL_FIELD(qwen3vl_memory_stats, pool_allocations),

    QWEN3VL_SIZE(qwen3vl_tensor_desc),
    QWEN3VL_FIELD(qwen3vl_tensor_desc, struct_size),
    QWEN3VL_FIELD(qwen3vl_tensor_desc, dtype),
    QWEN3VL_FIELD(qwen3vl_tensor_desc, ndim),
    QWEN3VL_FIELD(qwen3vl_tensor_desc, reserved),
    QWEN3VL_FIELD(qwen3vl_tensor_desc, shape),
    QWEN3VL_FIELD(qwen3vl_tensor_desc, bytes),

    QWEN3VL_SIZE(qwen3vl_model_config),
    QWEN3VL_FIELD(qwen3vl_model_config, struct_size),
    QWEN3VL_FIELD(qwen3vl_model_config, tie_word_embeddings),
    QWEN3VL_FIELD(qwen3vl_model_config, text_hidden_size),
    QWEN3VL_FIELD(qwen3vl_model_config, text_num_layers),
    QWEN3VL_FIELD(qwen3vl_model_config, text_num_heads),
    QWEN3VL_FIELD(qwen3vl_model_config, text_num_kv_heads),
    QWEN3VL_FIELD(qwen3vl_model_config, text_head_dim),
    QWEN3VL_FIELD(qwen3vl_model_config, text_intermediate_size),
    QWEN3VL_FIELD(qwen3vl_model_config, vocab_size),
    QWEN3VL_FIELD(qwen3vl_model_config, max_position_embeddings),
    QWEN3VL_FIELD(qwen3vl_model_config, rms_norm_eps),
    QWEN3VL_FIELD(qwen3vl_model_config, rope_theta),
    QWEN3VL_FIELD(qwen3vl_model_config, mrope_section),
    QWEN3VL_FIELD(qwen3vl_model_config, vision_depth),
    QWEN3VL_FIELD(qwen3vl_model_config, vision_hidden_size),
    QWEN3VL_FIELD(qwen3vl_model_config, vision_num_heads),
    QWEN3VL_FIELD(qwen3vl_model_config, vision_intermediate_size),
    QWEN3VL_FIELD(qwen3vl_model_config, vision_patch_size),
    QWEN3VL_FIELD(qwen3vl_model_config, vision_temporal_patch_size),
    QWEN3VL_FIELD(qwen3vl_model_config, vision_spatial_merge_size),
    QWEN3VL_FIELD(qwen3vl_model_config, vision_out_hidden_size),
    QWEN3VL_FIELD(qwen3vl_model_config, vision_in_channels),
    QWEN3VL_FIELD(qwen3vl_model_config, vision_num_position_embeddings),
    QWEN3VL_FIELD(qwen3vl_model_config, vision_rope_theta),
    QWEN3VL_FIELD(qwen3vl_model_config, vision_gelu_tanh),
    QWEN3VL_FIELD(qwen3vl_model_config, deepstack_count),
    QWEN3VL_FIELD(qwen3vl_model_config, deepstack_visual_indexes),
    QWEN3VL_FIELD(qwen3vl_model_config, image_token_id),
    QWEN3VL_FIELD(qwen3vl_model_config, video_token_id),
    QWEN3VL_FIELD(qwen3vl_model_config, vision_start_token_id),
    QWEN3VL_FIELD(qwen3vl_model_config, vision_end_token_id),
    QWEN3VL_FIELD(qwen3vl_model_config, eos_token_count),
    QWEN3VL_FIELD(qwen3vl_model_config, reserved),
    QWEN3VL_FIELD(qwen3vl_model_config, eos_token_ids),
    QWEN3VL_FIELD(qwen3vl_model_config, fp8),
    QWEN3VL_FIELD(qwen3vl_model_config, fp8_block_rows),
    QWEN3VL_FIELD(qwen3vl_model_config, fp8_block_cols),
    QWEN3VL_FIELD(qwen3vl_model_config, reserved2),

    QWEN3VL_SIZE(qwen3vl_norm_linear_params),
    QWEN3VL_FIELD(qwen3vl_norm_linear_params, struct_size),
    QWEN3VL_FIELD(qwen3vl_norm_linear_params, eps),
    QWEN3VL_FIELD(qwen3vl_norm_linear_params, x),
    QWEN3VL_FIELD(qwen3vl_norm_linear_params, norm_weight),
    QWEN3VL_FIELD(qwen3vl_norm_linear_params, out0),
    QWEN3VL_FIELD(qwen3vl_norm_linear_params, weight0),
    QWEN3VL_FIELD(qwen3vl_norm_linear_params, out1),
    QWEN3VL_FIELD(qwen3vl_norm_linear_params, weight1),
    QWEN3VL_FIELD(qwen3vl_norm_linear_params, out2),
    QWEN3VL_FIELD(qwen3vl_norm_linear_params, weight2),

    QWEN3VL_SIZE(qwen3vl_layer_norm_linear_params),
    QWEN3VL_FIELD(qwen3vl_layer_norm_linear_params, struct_size),
    QWEN3VL_FIELD(qwen3vl_layer_norm_linear_params, eps),
    QWEN3VL_FIELD(qwen3vl_layer_norm_linear_params, out),
    QWEN3VL_FIELD(qwen3vl_layer_norm_linear_params, x),
    QWEN3VL_FIELD(qwen3vl_layer_norm_linear_params, norm_weight),
    QWEN3VL_FIELD(qwen3vl_layer_norm_linear_params, norm_bias),
    QWEN3VL_FIELD(qwen3vl_layer_norm_linear_params, weight),
    QWEN3VL_FIELD(qwen3vl_layer_norm_linear_params, bias),

    QWEN3VL_SIZE(qwen3vl_mlp_gelu_params),
    QWEN3VL_FIELD(qwen3vl_mlp_gelu_params, struct_size),
    QWEN3VL_FIELD(qwen3vl_mlp_gelu_params, eps),
    QWEN3VL_FIELD(qwen3vl_mlp_gelu_params, out),
    QWEN3VL_FIELD(qwen3vl_mlp_gelu_params, x),
    QWEN3VL_FIELD(qwen3vl_mlp_gelu_params, norm_weight),
    QWEN3VL_FIELD(qwen3vl_mlp_gelu_params, norm_bias),
    QWEN3VL_FIELD(qwen3vl_mlp_gelu_params, fc1_weight),
    QWEN3VL_FIELD(qwen3vl_mlp_gelu_params, fc1_bias),
    QWEN3VL_FIELD(qwen3vl_mlp_gelu_params, fc2_weight),
    QWEN3VL_FIELD(qwen3vl_mlp_gelu_params, fc2_bias),
    QWEN3VL_FIELD(qwen3vl_mlp_gelu_params, residual),
    QWEN3VL_FIELD(qwen3vl_mlp_gelu_params, tanh_approximation),
    QWEN3VL_FIELD(qwen3vl_mlp_gelu_params, reserved),

    QWEN3VL_SIZE(qwen3vl_qk_norm_rope_attention_params),
    QWEN3VL_FIELD(qwen3vl_qk_norm_rope_attention_params, struct_size),
    QWEN3VL_FIELD(qwen3vl_qk_norm_rope_attention_params, eps),
    QWEN3VL_FIELD(qwen3vl_qk_norm_rope_attention_params, out),
    QWEN3VL_FIELD(qwen3vl_qk_norm_rope_attention_params, q),
    QWEN3VL_FIELD(qwen3vl_qk_norm_rope_attention_params, k),
    QWEN3VL_FIELD(qwen3vl_qk_norm_rope_attention_params, v),
    QWEN3VL_FIELD(qwen3vl_qk_norm_rope_attention_params, q_norm),
    QWEN3VL_FIELD(qwen3vl_qk_norm_rope_attention_params, k_norm),
    QWEN3VL_FIELD(qwen3vl_qk_norm_rope_attention_params, positions),
    QWEN3VL_FIELD(qwen3vl_qk_norm_rope_attention_params, k_cache),
    QWEN3VL_FIELD(qwen3vl_qk_norm_rope_attention_params, v_cache),
    QWEN3VL_FIELD(qwen3vl_qk_norm_rope_attention_params, n_past_tensor),
    QWEN3VL_FIELD(qwen3vl_qk_norm_rope_attention_params, n_past),
    QWEN3VL_FIELD(qwen3vl_qk_norm_rope_attention_params, n_past_bound),
    QWEN3VL_FIELD(qwen3vl_qk_norm_rope_attention_params, mrope_section),
    QWEN3VL_FIELD(qwen3vl_qk_norm_rope_attention_params, theta),
    QWEN3VL_FIELD(qwen3vl_qk_norm_rope_attention_params, reserved),

    QWEN3VL_SIZE(qwen3vl_attention_params),
    QWEN3VL_FIELD(qwen3vl_attention_params, struct_size),
    QWEN3VL_FIELD(qwen3vl_attention_params, mask),
    QWEN3VL_FIELD(qwen3vl_attention_params, out),
    QWEN3VL_FIELD(qwen3vl_attention_params, q),
    QWEN3VL_FIELD(qwen3vl_attention_params, k_cache),
    QWEN3VL_FIELD(qwen3vl_attention_params, v_cache),
    QWEN3VL_FIELD(qwen3vl_attention_params, segments),
    QWEN3VL_FIELD(qwen3vl_attention_params, n_past_tensor),
    QWEN3VL_FIELD(qwen3vl_attention_params, n_past),
    QWEN3VL_FIELD(qwen3vl_attention_params, n_past_bound),

    QWEN3VL_SIZE(qwen3vl_attention_mask),
    QWEN3VL_ENUM(qwen3vl_attention_mask, QWEN3VL_ATTENTION_CAUSAL),
    QWEN3VL_ENUM(qwen3vl_attention_mask, QWEN3VL_ATTENTION_SEGMENTS),

    QWEN3VL_SIZE(qwen3vl_status),
    QWEN3VL_ENUM(qwen3vl_status, QWEN3VL_STATUS_OK),
    QWEN3VL_ENUM(qwen3vl_status, QWEN3VL_STATUS_INVALID_ARGUMENT),
    QWEN3VL_ENUM(qwen3vl_status, QWEN3VL_STATUS_IO_ERROR),
    QWEN3VL_ENUM(qwen3vl_status, QWEN3VL_STATUS_BAD_FORMAT),
    QWEN3VL_ENUM(qwen3vl_status, QWEN3VL_STATUS_UNSUPPORTED),
    QWEN3VL_ENUM(qwen3vl_status, QWEN3VL_STATUS_OUT_OF_MEMORY),
    QWEN3VL_ENUM(qwen3vl_status, QWEN3VL_STATUS_DEVICE_ERROR),
    QWEN3VL_ENUM(qwen3vl_status, QWEN3VL_STATUS_CANCELLED),
    QWEN3VL_ENUM(qwen3vl_status, QWEN3VL_STATUS_LIMIT_EXCEEDED),
    QWEN3VL_ENUM(qwen3vl_status, QWEN3VL_STATUS_INTERNAL_ERROR),
    QWEN3VL_ENUM(qwen3vl_status, QWEN3VL_STATUS_NUMERICAL_ERROR),

    QWEN3VL_SIZE(qwen3vl_dtype),
    QWEN3VL_ENUM(qwen3vl_dtype, QWEN3VL_DTYPE_F32),
    QWEN3VL_ENUM(qwen3vl_dtype, QWEN3VL_DTYPE_F16),
    QWEN3VL_ENUM(qwen3vl_dtype, QWEN3VL_DTYPE_BF16),
    QWEN3VL_ENUM(qwen3vl_dtype, QWEN3VL_DTYPE_I32),
    QWEN3VL_ENUM(qwen3vl_dtype, QWEN3VL_DTYPE_Q8),
    QWEN3VL_ENUM(qwen3vl_dtype, QWEN3VL_DTYPE_Q4),

    QWEN3VL_SIZE(qwen3vl_backend_type),
    QWEN3VL_ENUM(qwen3vl_backend_type, QWEN3VL_BACKEND_CPU),
    QWEN3VL_ENUM(qwen3vl_backend_type, QWEN3VL_BACKEND_CUDA),

    QWEN3VL_SIZE(qwen3vl_backend_flag),
    QWEN3VL_ENUM(qwen3vl_backend_flag, QWEN3VL_BACKEND_FLAG_CPU),
    QWEN3VL_ENUM(qwen3vl_backend_flag, QWEN3VL_BACKEND_FLAG_CUDA),

    QWEN3VL_SIZE(qwen3vl_cpu_feature),
    QWEN3VL_ENUM(qwen3vl_cpu_feature, QWEN3VL_CPU_SSE42),
    QWEN3VL_ENUM(qwen3vl_cpu_feature, QWEN3VL_CPU_AVX),
    QWEN3VL_ENUM(qwen3vl_cpu_feature, QWEN3VL_CPU_AVX2),
    QWEN3VL_ENUM(qwen3vl_cpu_feature, QWEN3VL_CPU_FMA),
    QWEN3VL_ENUM(qwen3vl_cpu_feature, QWEN3VL_CPU_F16C),
    QWEN3VL_ENUM(qwen3vl_cpu_feature, QWEN3VL_CPU_AVX512F),
    QWEN3VL_ENUM(qwen3vl_cpu_feature, QWEN3VL_CPU_AVX512BW),
    QWEN3VL_ENUM(qwen3vl_cpu_feature, QWEN3VL_CPU_AVX512VL),
    QWEN3VL_ENUM(qwen3vl_cpu_feature, QWEN3VL_CPU_AVX512BF16),

    QWEN3VL_SIZE(qwen3vl_file_kind),
    QWEN3VL_ENUM(qwen3vl_file_kind, QWEN3VL_FILE_KIND_NONE),
    QWEN3VL_ENUM(qwen3vl_file_kind, QWEN3VL_FILE_KIND_REGULAR),
    QWEN3VL_ENUM(qwen3vl_file_kind, QWEN3VL_FILE_KIND_DIRECTORY),
    QWEN3VL_ENUM(qwen3vl_file_kind, QWEN3VL_FILE_KIND_OTHER),
};

}  // namespace

extern "C" qwen3vl_status qwen3vl_abi_layout(const char* type_name, const char* member_name, int64_t* value) {
    return qwen3vl::guarded([&] {
        qwen3vl::require(type_name != nullptr, "type_name is NULL");
        qwen3vl::require(value != nullptr, "value is NULL");
        const char* member = member_name ? member_name : "";
        for (const Entry& e : kEntries) {
            if (std::strcmp(e.type, type_name) == 0 && std::strcmp(e.member, member) == 0) {
                *value = e.value;
                return;
            }
        }
        qwen3vl::fail(QWEN3VL_STATUS_INVALID_ARGUMENT,
                      std::string("no ABI entry for ") + type_name + (*member ? std::string(".") + member : ""));
    });
}
