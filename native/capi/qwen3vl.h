/*
 * qwen3vl.h - the C API of the Qwen3VL.Native engine. This header is the only exported surface of the native
 * library; the C# binding (bindings/csharp) is generated from it at build time, so keep to the grammar described
 * at the end of this comment.
 *
 * Usage:
 *
 *     qwen3vl_build_info info = qwen3vl_build_info_init();
 *     if (qwen3vl_build_info_get(&info) != QWEN3VL_STATUS_OK) { fprintf(stderr, "%s\n", qwen3vl_last_error()); }
 *
 *     qwen3vl_backend_params bp = qwen3vl_backend_default_params();   // CPU, all cores
 *     qwen3vl_backend* backend = NULL;
 *     if (qwen3vl_backend_create(&bp, &backend) != QWEN3VL_STATUS_OK) { fprintf(stderr, "%s\n", qwen3vl_last_error()); }
 *
 *     int64_t shape[2] = {4, 8};
 *     qwen3vl_tensor* t = NULL;
 *     qwen3vl_tensor_create(backend, QWEN3VL_DTYPE_F32, 2, shape, &t);
 *     qwen3vl_tensor_write(t, QWEN3VL_DTYPE_F32, host_data, 32);       // converts when dtypes differ
 *     qwen3vl_tensor_free(t);
 *     qwen3vl_backend_free(backend);
 *
 * Errors: every function returns a qwen3vl_status, except the *_free functions (void), the *_init /
 * *_default_params constructors (a value) and the two string getters. On a non-OK status, qwen3vl_last_error()
 * returns a message for the calling thread. C++ exceptions never leave the library and nothing a caller can cause
 * (bad arguments, bad files, out of memory) ends the process.
 *
 * Lifetimes: an object returned through an out-pointer is owned by the caller and released with its *_free
 * function. A child (a tensor) must be freed before its parent (the backend it lives on). Strings returned by the
 * library are valid as stated at each function.
 *
 * Threading: functions on different objects may run concurrently from any threads. A single backend may be used
 * from several threads at once (its allocator is locked); a single tensor must not be written by one thread while
 * another thread reads or writes it. The last-error message is per thread.
 *
 * Grammar kept for the binding generator: #define QWEN3VL_<NAME> <integer>; typedef enum with explicit values;
 * QWEN3VL_OPTIONAL before a handle parameter or handle field that may be NULL;
 * typedef struct X X; (opaque handle) or a typedef struct whose fields are "<type> <name>;" or "<type> <name>[N];"
 * (a handle field "[const] X* name;" makes the struct's C# form hold SafeHandles, passed by the generated stub);
 * QWEN3VL_API <type> <name>(<params>);  Doc comments (slash-star-star) before a declaration become XML docs.
 */
#ifndef QWEN3VL_H
#define QWEN3VL_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#  if defined(QWEN3VL_BUILD)
#    define QWEN3VL_API __declspec(dllexport)
#  else
#    define QWEN3VL_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__) || defined(__clang__)
#  define QWEN3VL_API __attribute__((visibility("default")))
#else
#  define QWEN3VL_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/** Marks a parameter that may be NULL (expands to nothing; the binding generator makes it optional). */
#define QWEN3VL_OPTIONAL

/** Version of this library (semantic versioning). */
#define QWEN3VL_VERSION_MAJOR 0
#define QWEN3VL_VERSION_MINOR 1
#define QWEN3VL_VERSION_PATCH 0
/** Largest number of dimensions a tensor may have. */
#define QWEN3VL_MAX_DIMS 4
/** Capacity of the fixed integer lists in qwen3vl_model_config. */
#define QWEN3VL_MAX_LIST 16
/** Length of the fixed text fields in the info structs, terminator included. */
#define QWEN3VL_NAME_LENGTH 128
/** Largest k of qwen3vl_op_top_k. */
#define QWEN3VL_TOP_K_MAX 1024

/** Result of every call. */
typedef enum qwen3vl_status {
    /** Success. */
    QWEN3VL_STATUS_OK = 0,
    /** An argument is NULL, out of range or inconsistent with another. */
    QWEN3VL_STATUS_INVALID_ARGUMENT = 1,
    /** A file could not be opened, read or mapped. */
    QWEN3VL_STATUS_IO_ERROR = 2,
    /** A file or buffer does not follow its format (corrupt or hostile input). */
    QWEN3VL_STATUS_BAD_FORMAT = 3,
    /** Valid, but not supported by this build or this model (for example CUDA in a CPU-only build). */
    QWEN3VL_STATUS_UNSUPPORTED = 4,
    /** Host or device memory is exhausted; the message gives the sizes. Objects stay usable. */
    QWEN3VL_STATUS_OUT_OF_MEMORY = 5,
    /** The GPU reported an error. */
    QWEN3VL_STATUS_DEVICE_ERROR = 6,
    /** The operation was cancelled by the caller. */
    QWEN3VL_STATUS_CANCELLED = 7,
    /** A limit was exceeded (context length, image size, token budget). */
    QWEN3VL_STATUS_LIMIT_EXCEEDED = 8,
    /** A bug in the library; the message says where. */
    QWEN3VL_STATUS_INTERNAL_ERROR = 9,
    /** The model's numbers went wrong (NaN or infinite logits, nothing left to sample): a broken checkpoint, or options
     * that push the logits out of range. The message says what and where. */
    QWEN3VL_STATUS_NUMERICAL_ERROR = 10
} qwen3vl_status;

/** Element types of tensors. */
typedef enum qwen3vl_dtype {
    QWEN3VL_DTYPE_F32 = 0,
    QWEN3VL_DTYPE_F16 = 1,
    QWEN3VL_DTYPE_BF16 = 2,
    QWEN3VL_DTYPE_I32 = 3,
    /** Block-quantized 8 bits: a weight matrix [N, K] (K a multiple of 32), or a KV cache [capacity, Hkv, D] (D a
     * multiple of 32; qwen3vl_op_qk_norm_rope_attention quantizes the rows it writes, qwen3vl_op_attention reads
     * them). Each row of the last dimension is cut into blocks of 32; a block is 32 int8 values q in [-127, 127] and
     * one f16 scale d, standing for d * q. Memory: all int8 values row-major, then all f16 scales row-major (one per
     * 32 values: elements * 17 / 16 bytes). Written from f32, f16 or bf16 data (quantized: d = max|w| / 127 rounded
     * to f16, q = round(w / d)) or as these raw bytes (src_dtype Q8); read back as f32, f16 or bf16 (d * q) or as the
     * raw bytes. No views. */
    QWEN3VL_DTYPE_Q8 = 4,
    /** Block-quantized 4-bit weights with a minimum (a weight matrix only: 2-D [N, K], K a multiple of 256), 4.5 bits
     * per weight. Each row is cut into super-blocks of 256 and those into 8 groups of 32; group g of a super-block
     * stands for w = (d * sc[g]) * q - (dmin * mn[g]), q in [0, 15], with 6-bit sc and mn and f16 d and dmin per
     * super-block. Memory: the N * K / 2 bytes of q row-major (per group 16 bytes: byte j holds element j in its low
     * and element j + 16 in its high nibble), then N * K / 256 headers of 16 bytes row-major (little-endian f16 d, f16
     * dmin; bytes 4 + g: sc[g] | (mn[g] & 3) << 6; bytes 12 + g / 2: mn[g] >> 2 in the low (g even) or high nibble),
     * N * K * 9 / 16 bytes in all. Written from f32, f16 or bf16 data (quantized: per group a least-squares scale and
     * min over a few grids, then the super-block's d and dmin; core/quant.h) or as these raw bytes (src_dtype Q4);
     * read back as f32, f16 or bf16 or as the raw bytes. No views. */
    QWEN3VL_DTYPE_Q4 = 5
} qwen3vl_dtype;

/** Kinds of compute backend. */
typedef enum qwen3vl_backend_type {
    QWEN3VL_BACKEND_CPU = 0,
    QWEN3VL_BACKEND_CUDA = 1
} qwen3vl_backend_type;

/** Bits of qwen3vl_build_info.backends. */
typedef enum qwen3vl_backend_flag {
    QWEN3VL_BACKEND_FLAG_CPU = 1,
    QWEN3VL_BACKEND_FLAG_CUDA = 2
} qwen3vl_backend_flag;

/** Bits of qwen3vl_build_info.cpu_features (what the running CPU and OS support). */
typedef enum qwen3vl_cpu_feature {
    QWEN3VL_CPU_SSE42 = 1,
    QWEN3VL_CPU_AVX = 2,
    QWEN3VL_CPU_AVX2 = 4,
    QWEN3VL_CPU_FMA = 8,
    QWEN3VL_CPU_F16C = 16,
    QWEN3VL_CPU_AVX512F = 32,
    QWEN3VL_CPU_AVX512BW = 64,
    QWEN3VL_CPU_AVX512VL = 128,
    QWEN3VL_CPU_AVX512BF16 = 256
} qwen3vl_cpu_feature;

/** What a path names, as qwen3vl_path_kind reports it (symbolic links followed). */
typedef enum qwen3vl_file_kind {
    /** Nothing there (or it cannot be examined). */
    QWEN3VL_FILE_KIND_NONE = 0,
    /** A regular file. */
    QWEN3VL_FILE_KIND_REGULAR = 1,
    /** A directory. */
    QWEN3VL_FILE_KIND_DIRECTORY = 2,
    /** Anything else: a FIFO, a character or block device, a socket, a console or pipe on Windows. */
    QWEN3VL_FILE_KIND_OTHER = 3
} qwen3vl_file_kind;

/** How the library was built and what it found on this machine. Initialise with qwen3vl_build_info_init(). */
typedef struct qwen3vl_build_info {
    /** sizeof(qwen3vl_build_info) as the caller knows it; checked by the library. */
    uint32_t struct_size;
    int32_t version_major;
    int32_t version_minor;
    int32_t version_patch;
    /** Bits of qwen3vl_backend_flag compiled into this library. */
    uint32_t backends;
    /** Bits of qwen3vl_cpu_feature detected on the running CPU (OS support for the registers included). */
    uint32_t cpu_features;
    /** Logical processors available to this process. */
    int32_t logical_cpus;
    /** CUDA runtime version the library was built against (1000*major + 10*minor), 0 without CUDA. */
    int32_t cuda_runtime_version;
    /** CUDA driver version installed on the machine (same encoding), 0 when none or without CUDA. */
    int32_t cuda_driver_version;
    /** Number of usable CUDA devices, 0 when none or without CUDA. */
    int32_t cuda_device_count;
    /** Version text, e.g. "0.1.0". */
    char version[QWEN3VL_NAME_LENGTH];
    /** Compiler that built the library. */
    char compiler[QWEN3VL_NAME_LENGTH];
    /** CPU kernel set chosen at run time: "avx512", "avx2" or "scalar". */
    char cpu_kernels[QWEN3VL_NAME_LENGTH];
    /** CUDA architectures compiled in, e.g. "61,70,75,80,86,89,90", empty without CUDA. */
    char cuda_architectures[QWEN3VL_NAME_LENGTH];
} qwen3vl_build_info;

/** One CUDA device. */
typedef struct qwen3vl_cuda_device {
    uint32_t struct_size;
    int32_t index;
    int32_t compute_major;
    int32_t compute_minor;
    int32_t multiprocessors;
    int32_t reserved;
    uint64_t total_memory;
    uint64_t free_memory;
    char name[QWEN3VL_NAME_LENGTH];
} qwen3vl_cuda_device;

/** Parameters of qwen3vl_backend_create. Start from qwen3vl_backend_default_params(). */
typedef struct qwen3vl_backend_params {
    uint32_t struct_size;
    /** qwen3vl_backend_type. */
    qwen3vl_backend_type type;
    /** CUDA device index (ignored for the CPU). */
    int32_t device;
    /** CPU worker threads; 0 means one per logical processor. */
    int32_t threads;
    /** CUDA: 1 computes every matrix product in fp32 (the CPU's numerics); 0 (default) feeds bf16/f16 weights to the
     * tensor cores with activations rounded to the weight dtype and fp32 accumulation, where the GPU has them. */
    int32_t cuda_fp32_math;
    /** CUDA: 0 (default) chooses kernels for the device's compute capability; a lower one written as major * 10 +
     * minor (e.g. 61 for a GTX 1080) makes the backend choose exactly the kernels it would choose on such a GPU (no
     * tensor cores, no flash attention, no programmatic dependent launch below their architectures; the int8 dp4a
     * GEMVs everywhere), to test those paths on a newer GPU. Above the device's, or below 50: INVALID_ARGUMENT. When 0,
     * the environment variable QWEN3VL_CUDA_KERNEL_ARCH may set it (for test suites and tools). */
    int32_t cuda_kernel_arch;
} qwen3vl_backend_params;

/** Allocation counters of a backend's memory pool. */
typedef struct qwen3vl_memory_stats {
    uint32_t struct_size;
    int32_t reserved;
    /** Bytes handed out to live tensors. */
    uint64_t bytes_in_use;
    /** Largest bytes_in_use seen. */
    uint64_t peak_bytes_in_use;
    /** Bytes the pool holds from the system (in use or cached for reuse). */
    uint64_t bytes_reserved;
    /** Calls to the system allocator (malloc / cudaMalloc) made by the pool. */
    uint64_t system_allocations;
    /** Calls to the system deallocator made by the pool. */
    uint64_t system_frees;
    /** Tensor allocations served by the pool (cached or fresh). */
    uint64_t pool_allocations;
} qwen3vl_memory_stats;

/** Shape and type of a tensor. */
typedef struct qwen3vl_tensor_desc {
    uint32_t struct_size;
    qwen3vl_dtype dtype;
    int32_t ndim;
    int32_t reserved;
    int64_t shape[QWEN3VL_MAX_DIMS];
    /** Size of the tensor's data in bytes. */
    uint64_t bytes;
} qwen3vl_tensor_desc;

/** Model hyper-parameters read from a checkpoint's config.json (and generation_config.json for eos ids). */
typedef struct qwen3vl_model_config {
    uint32_t struct_size;
    /** 1 when the output projection shares the token embedding (no lm_head.weight). */
    int32_t tie_word_embeddings;
    int64_t text_hidden_size;
    int64_t text_num_layers;
    int64_t text_num_heads;
    int64_t text_num_kv_heads;
    int64_t text_head_dim;
    int64_t text_intermediate_size;
    int64_t vocab_size;
    int64_t max_position_embeddings;
    double rms_norm_eps;
    double rope_theta;
    int64_t mrope_section[3];
    int64_t vision_depth;
    int64_t vision_hidden_size;
    int64_t vision_num_heads;
    int64_t vision_intermediate_size;
    int64_t vision_patch_size;
    int64_t vision_temporal_patch_size;
    int64_t vision_spatial_merge_size;
    int64_t vision_out_hidden_size;
    int64_t vision_in_channels;
    int64_t vision_num_position_embeddings;
    double vision_rope_theta;
    /** 1 for gelu_pytorch_tanh, 0 for exact (erf) GELU in the vision blocks. */
    int32_t vision_gelu_tanh;
    int32_t deepstack_count;
    int64_t deepstack_visual_indexes[QWEN3VL_MAX_LIST];
    int64_t image_token_id;
    int64_t video_token_id;
    int64_t vision_start_token_id;
    int64_t vision_end_token_id;
    int32_t eos_token_count;
    int32_t reserved;
    int64_t eos_token_ids[QWEN3VL_MAX_LIST];
    /** 1 when config.json has a fine-grained FP8 quantization_config (nn.Linear weights may be F8_E4M3 with block
     * scales; qwen3vl_checkpoint_tensor gives them dequantized to bf16, qwen3vl_checkpoint_tensor_as in any float dtype
     * or Q8), else 0. */
    int32_t fp8;
    /** The FP8 scale blocks: rows and columns of weights per scale (0 when fp8 is 0). */
    int32_t fp8_block_rows;
    int32_t fp8_block_cols;
    int32_t reserved2;
} qwen3vl_model_config;

/** Attention options of qwen3vl_op_attention. */
typedef enum qwen3vl_attention_mask {
    /** Query i (at cache position n_past + i) sees keys 0 .. n_past + i (text decoding and prefill). */
    QWEN3VL_ATTENTION_CAUSAL = 0,
    /** Queries see every key of their own segment (vision: one image or one video frame per segment). */
    QWEN3VL_ATTENTION_SEGMENTS = 1
} qwen3vl_attention_mask;

/** A compute backend: the CPU or one CUDA device, with its memory pool and worker threads. */
typedef struct qwen3vl_backend qwen3vl_backend;
/** A tensor living on a backend. Child of that backend (and of the checkpoint or tensor it views, if any). */
typedef struct qwen3vl_tensor qwen3vl_tensor;
/** An opened Hugging Face checkpoint folder: configuration and memory-mapped weights. */
typedef struct qwen3vl_checkpoint qwen3vl_checkpoint;
/** A recorded sequence of ops on one backend, replayed as a unit (a CUDA graph). Child of that backend. */
typedef struct qwen3vl_graph qwen3vl_graph;

/** Message describing the last non-OK status returned on the calling thread; "" if none. Valid until the next call on this thread. */
QWEN3VL_API const char* qwen3vl_last_error(void);
/** Constant name of a status, e.g. "QWEN3VL_STATUS_BAD_FORMAT". Valid forever. */
QWEN3VL_API const char* qwen3vl_status_name(qwen3vl_status status);
/** Test support for the bindings: sizeof(type_name) when member_name is NULL or "", offsetof(type_name, member_name)
 * for a struct member, or the value of an enum member (e.g. "qwen3vl_status", "QWEN3VL_STATUS_BAD_FORMAT"), written to
 * *value. Types and members are named as in C. INVALID_ARGUMENT for an unknown type or member. */
QWEN3VL_API qwen3vl_status qwen3vl_abi_layout(const char* type_name, const char* member_name, int64_t* value);

/** A qwen3vl_build_info with struct_size set and everything else zero. */
QWEN3VL_API qwen3vl_build_info qwen3vl_build_info_init(void);
/** Fills *info (whose struct_size must be set). */
QWEN3VL_API qwen3vl_status qwen3vl_build_info_get(qwen3vl_build_info* info);
/** What path (UTF-8) names, written to *kind, found without opening it for reading: a caller about to read a file it was
 * given refuses a FIFO (opening one blocks until a writer comes) or a device (it reports length 0 and never ends). */
QWEN3VL_API qwen3vl_status qwen3vl_path_kind(const char* path, qwen3vl_file_kind* kind);
/** Number of usable CUDA devices (0 without CUDA or without a device; not an error). */
QWEN3VL_API qwen3vl_status qwen3vl_cuda_device_count(int32_t* count);
/** A qwen3vl_cuda_device with struct_size set. */
QWEN3VL_API qwen3vl_cuda_device qwen3vl_cuda_device_init(void);
/** Fills *device (whose struct_size must be set) for device index; INVALID_ARGUMENT when out of range, UNSUPPORTED without CUDA. */
QWEN3VL_API qwen3vl_status qwen3vl_cuda_device_get(int32_t index, qwen3vl_cuda_device* device);

/** Defaults: CPU backend, one thread per logical processor. */
QWEN3VL_API qwen3vl_backend_params qwen3vl_backend_default_params(void);
/** Creates a backend. On success *backend owns it; release with qwen3vl_backend_free after its tensors. */
QWEN3VL_API qwen3vl_status qwen3vl_backend_create(const qwen3vl_backend_params* params, qwen3vl_backend** backend);
/** Releases a backend (NULL is allowed). Its tensors must have been freed. */
QWEN3VL_API void qwen3vl_backend_free(qwen3vl_backend* backend);
/** Fills *name (a buffer of capacity bytes) with the backend's name, e.g. "cpu (avx2, 8 threads)" or "cuda:0 (NVIDIA H100)". */
QWEN3VL_API qwen3vl_status qwen3vl_backend_name(const qwen3vl_backend* backend, char* name, size_t capacity);
/** A qwen3vl_memory_stats with struct_size set. */
QWEN3VL_API qwen3vl_memory_stats qwen3vl_memory_stats_init(void);
/** Reads the pool counters of a backend into *stats (whose struct_size must be set). */
QWEN3VL_API qwen3vl_status qwen3vl_backend_memory_stats(const qwen3vl_backend* backend, qwen3vl_memory_stats* stats);
/** Returns the pool's cached, unused blocks to the system. */
QWEN3VL_API qwen3vl_status qwen3vl_backend_trim(qwen3vl_backend* backend);
/** Starts a new high-water mark: peak_bytes_in_use becomes bytes_in_use (to measure the peak of one phase of work). */
QWEN3VL_API qwen3vl_status qwen3vl_backend_reset_peak(qwen3vl_backend* backend);

/** Starts recording the ops that the calling thread issues on a GPU backend: until qwen3vl_backend_capture_end they
 * are recorded (shapes, arguments and memory addresses fixed), not run; other threads' ops run as usual. Tensors the
 * thread creates meanwhile keep their memory reserved for the graph until it is freed, even when freed earlier.
 * Tensor reads and writes on the capturing thread fail with INVALID_ARGUMENT: write a graph's inputs before each
 * launch and read its outputs after. Argument checks run while recording, against the shapes seen then.
 * UNSUPPORTED on the CPU backend (its ops always run eagerly). One capture per thread at a time. */
QWEN3VL_API qwen3vl_status qwen3vl_backend_capture_begin(qwen3vl_backend* backend);
/** Ends the capture this thread started on backend and returns the recorded ops in *graph, ready to launch. */
QWEN3VL_API qwen3vl_status qwen3vl_backend_capture_end(qwen3vl_backend* backend, qwen3vl_graph** graph);
/** Ends the capture this thread started on backend and drops what was recorded (after an error, say). */
QWEN3VL_API qwen3vl_status qwen3vl_backend_capture_discard(qwen3vl_backend* backend);
/** Runs the recorded ops again, after the work queued earlier on the backend, on the current contents of the tensors
 * they use (which must all still exist). Like every GPU op it may return before the work finishes. */
QWEN3VL_API qwen3vl_status qwen3vl_graph_launch(qwen3vl_graph* graph);
/** Releases a graph (NULL is allowed), waiting for a launch still running; free it before its backend. */
QWEN3VL_API void qwen3vl_graph_free(qwen3vl_graph* graph);

/** Allocates an uninitialised tensor of ndim (1..QWEN3VL_MAX_DIMS) dimensions on backend. */
QWEN3VL_API qwen3vl_status qwen3vl_tensor_create(qwen3vl_backend* backend, qwen3vl_dtype dtype, int32_t ndim, const int64_t* shape, qwen3vl_tensor** tensor);
/** Releases a tensor (NULL is allowed). */
QWEN3VL_API void qwen3vl_tensor_free(qwen3vl_tensor* tensor);
/** A qwen3vl_tensor_desc with struct_size set. */
QWEN3VL_API qwen3vl_tensor_desc qwen3vl_tensor_desc_init(void);
/** Reads the shape and type of a tensor into *desc (whose struct_size must be set). */
QWEN3VL_API qwen3vl_status qwen3vl_tensor_describe(const qwen3vl_tensor* tensor, qwen3vl_tensor_desc* desc);
/** Copies host data of element type src_dtype into the tensor, converting to the tensor's dtype. bytes must equal element count times the size of src_dtype (for src_dtype Q8, the tensor's bytes: a Q8 tensor's raw planes). Into a Q8 tensor a non-finite weight is INVALID_ARGUMENT naming its row and column. */
QWEN3VL_API qwen3vl_status qwen3vl_tensor_write(qwen3vl_tensor* tensor, qwen3vl_dtype src_dtype, const void* src, size_t bytes);
/** Copies the tensor to host memory as dst_dtype, converting from the tensor's dtype. bytes must equal element count times the size of dst_dtype (for dst_dtype Q8, the tensor's bytes). */
QWEN3VL_API qwen3vl_status qwen3vl_tensor_read(const qwen3vl_tensor* tensor, qwen3vl_dtype dst_dtype, void* dst, size_t bytes);

/** A view of count contiguous elements of tensor starting at element offset, with a new shape (ndim dims whose
 * product is count). Shares the memory; keeps the viewed tensor alive until the view is freed. */
QWEN3VL_API qwen3vl_status qwen3vl_tensor_view(qwen3vl_tensor* tensor, int64_t offset, int32_t ndim, const int64_t* shape, qwen3vl_tensor** view);

/** Opens a checkpoint folder (config.json, model.safetensors or sharded model-*.safetensors with index,
 * generation_config.json). Validates every tensor against the configuration before returning: IO_ERROR, BAD_FORMAT
 * or UNSUPPORTED with a message listing all problems. */
QWEN3VL_API qwen3vl_status qwen3vl_checkpoint_open(const char* directory, qwen3vl_checkpoint** checkpoint);
/** Releases a checkpoint (NULL is allowed). Tensors taken from it stay valid: they keep the mapping alive. */
QWEN3VL_API void qwen3vl_checkpoint_free(qwen3vl_checkpoint* checkpoint);
/** A qwen3vl_model_config with struct_size set. */
QWEN3VL_API qwen3vl_model_config qwen3vl_model_config_init(void);
/** Reads the configuration of an opened checkpoint into *config (whose struct_size must be set). */
QWEN3VL_API qwen3vl_status qwen3vl_checkpoint_config(const qwen3vl_checkpoint* checkpoint, qwen3vl_model_config* config);
/** The weight called name as a tensor on backend, in its stored dtype (bf16, f16 or f32). On the CPU it is a view
 * of the memory-mapped file (no copy); on a GPU it is uploaded once. INVALID_ARGUMENT when absent. */
QWEN3VL_API qwen3vl_status qwen3vl_checkpoint_tensor(qwen3vl_checkpoint* checkpoint, qwen3vl_backend* backend, const char* name, qwen3vl_tensor** tensor);
/** The weight called name as a tensor of dtype on backend: its stored dtype (as qwen3vl_checkpoint_tensor), another of
 * f32, f16 and bf16 (converted), QWEN3VL_DTYPE_Q8 for a 2-D weight whose rows are whole blocks of 32 or
 * QWEN3VL_DTYPE_Q4 for one whose rows are whole super-blocks of 256 (quantized on the backend, multi-threaded on the
 * CPU, on the device for CUDA). A weight that cannot take dtype (I32, a vector as Q8, a row length that is not a
 * multiple of the block) is INVALID_ARGUMENT naming it; an FP8 weight as Q4 or a weight stored in q4 as Q8 (two
 * roundings compounded) is UNSUPPORTED naming it; nothing is allocated then. */
QWEN3VL_API qwen3vl_status qwen3vl_checkpoint_tensor_as(qwen3vl_checkpoint* checkpoint, qwen3vl_backend* backend, const char* name, qwen3vl_dtype dtype, qwen3vl_tensor** tensor);

/*
 * Ops. Activations are f32 and contiguous; weights may be f32, f16 or bf16. Every tensor of one call lives on the
 * same backend, which runs the op (CPU: on its worker threads; the call returns when the result is written).
 * Shapes are checked: INVALID_ARGUMENT names the tensor and the expected shape. Rows are the leading dimensions
 * flattened: a [T, H, D] tensor has T*H rows of D for a per-row op.
 * On a GPU ops are queued and return before they finish (a read waits for them). On sm_90 the linear ops start
 * streaming their weights while the op before them finishes (programmatic dependent launch): a weight must not be
 * the output of the op issued just before it (weights written with qwen3vl_tensor_write are always fine).
 */

/** out[M, N] = x[M, K] * weight[N, K]^T (+ bias[N] when bias is not NULL). x may have more dimensions: its leading
 * ones are the M rows and out has the same leading ones ([..., K] -> [..., N]). weight and bias: f32, f16 or bf16.
 * out must not overlap x, weight or bias. */
QWEN3VL_API qwen3vl_status qwen3vl_op_linear(qwen3vl_tensor* out, const qwen3vl_tensor* x, const qwen3vl_tensor* weight, QWEN3VL_OPTIONAL const qwen3vl_tensor* bias);

/** Parameters of qwen3vl_op_norm_linear: up to three projections of one (optionally RMS-normalised) input. Start from
 * qwen3vl_norm_linear_default_params(). */
typedef struct qwen3vl_norm_linear_params {
    uint32_t struct_size;
    /** RMSNorm epsilon, used with norm_weight (finite, > 0). Default 1e-6. */
    float eps;
    /** The input [..., K] (f32). */
    const qwen3vl_tensor* x;
    /** RMSNorm weight [K] (f32, f16 or bf16); NULL: no norm. */
    QWEN3VL_OPTIONAL const qwen3vl_tensor* norm_weight;
    /** First projection: out0 [..., N0] (f32) = y * weight0^T, weight0 [N0, K] (f32, f16 or bf16). */
    qwen3vl_tensor* out0;
    const qwen3vl_tensor* weight0;
    /** Second projection (out1 and weight1 both set or both NULL). */
    QWEN3VL_OPTIONAL qwen3vl_tensor* out1;
    QWEN3VL_OPTIONAL const qwen3vl_tensor* weight1;
    /** Third projection (both set or both NULL; only with the second). */
    QWEN3VL_OPTIONAL qwen3vl_tensor* out2;
    QWEN3VL_OPTIONAL const qwen3vl_tensor* weight2;
} qwen3vl_norm_linear_params;

/** A qwen3vl_norm_linear_params with struct_size set, eps 1e-6 and every tensor NULL. */
QWEN3VL_API qwen3vl_norm_linear_params qwen3vl_norm_linear_default_params(void);
/** Up to three projections of one input in one pass: out_i = y * weight_i^T for the given (out_i, weight_i) pairs,
 * y = rms_norm(x) * norm_weight (RMSNorm over the last dimension K with eps, as qwen3vl_op_rms_norm) when norm_weight
 * is set, else y = x. x [..., K] as in qwen3vl_op_linear; out_i [..., N_i]. Outputs must not overlap x, each other
 * or the weights. Results equal qwen3vl_op_rms_norm followed by qwen3vl_op_linear per weight (bitwise on the CPU);
 * on a GPU with at most 8 rows one kernel does it all. */
QWEN3VL_API qwen3vl_status qwen3vl_op_norm_linear(const qwen3vl_norm_linear_params* params);
/** out = silu(y * gate^T) * (y * up^T) with y = rms_norm(x) * norm_weight (or x when norm_weight is NULL): the norm
 * and the gated MLP's first half in one pass over x. gate, up [N, K] (f32, f16 or bf16); x [..., K] and out [..., N]
 * take leading dimensions as in qwen3vl_op_linear; norm_weight [K]; out must not overlap any input. */
QWEN3VL_API qwen3vl_status qwen3vl_op_norm_linear_swiglu(qwen3vl_tensor* out, const qwen3vl_tensor* x, QWEN3VL_OPTIONAL const qwen3vl_tensor* norm_weight, float eps, const qwen3vl_tensor* gate, const qwen3vl_tensor* up);
/** out = residual + (x * weight^T (+ bias)): a projection and the residual add after it. residual has out's shape;
 * out may be residual (in-place residual update) or separate memory; out must not overlap x, weight or bias. */
QWEN3VL_API qwen3vl_status qwen3vl_op_linear_residual(qwen3vl_tensor* out, const qwen3vl_tensor* x, const qwen3vl_tensor* weight, QWEN3VL_OPTIONAL const qwen3vl_tensor* bias, const qwen3vl_tensor* residual);

/** Parameters of qwen3vl_op_layer_norm_linear. Start from qwen3vl_layer_norm_linear_default_params(). */
typedef struct qwen3vl_layer_norm_linear_params {
    uint32_t struct_size;
    /** LayerNorm epsilon (finite, > 0). Default 1e-6. */
    float eps;
    /** The result [..., N] (f32); must not overlap any input. */
    qwen3vl_tensor* out;
    /** The input [..., K] (f32), K >= 1. */
    const qwen3vl_tensor* x;
    /** LayerNorm weight and bias [K] (f32, f16 or bf16). */
    const qwen3vl_tensor* norm_weight;
    const qwen3vl_tensor* norm_bias;
    /** The projection: weight [N, K], bias [N] (f32, f16 or bf16; bias may be NULL). */
    const qwen3vl_tensor* weight;
    QWEN3VL_OPTIONAL const qwen3vl_tensor* bias;
} qwen3vl_layer_norm_linear_params;

/** A qwen3vl_layer_norm_linear_params with struct_size set, eps 1e-6 and every tensor NULL. */
QWEN3VL_API qwen3vl_layer_norm_linear_params qwen3vl_layer_norm_linear_default_params(void);
/** out = y * weight^T (+ bias) with y = layer_norm(x) (norm_weight, norm_bias over the last dimension K, eps, as
 * qwen3vl_op_layer_norm): the norm and the projection after it (as qwen3vl_op_layer_norm then qwen3vl_op_linear,
 * bitwise on the CPU; the vision blocks' norm1 + qkv). On a GPU with more than 8 rows the norm writes the matrix
 * product's 16-bit input directly. */
QWEN3VL_API qwen3vl_status qwen3vl_op_layer_norm_linear(const qwen3vl_layer_norm_linear_params* params);

/** Parameters of qwen3vl_op_mlp_gelu. Start from qwen3vl_mlp_gelu_default_params(). */
typedef struct qwen3vl_mlp_gelu_params {
    uint32_t struct_size;
    /** LayerNorm epsilon, used with the norm (finite, > 0). Default 1e-6. */
    float eps;
    /** The result [..., N] (f32). May be residual and may be x (x is consumed before out is written); must not overlap
     * the weights. */
    qwen3vl_tensor* out;
    /** The input [..., K] (f32). */
    const qwen3vl_tensor* x;
    /** LayerNorm weight and bias [K] (f32, f16 or bf16): both set (K >= 1) or both NULL (no norm). */
    QWEN3VL_OPTIONAL const qwen3vl_tensor* norm_weight;
    QWEN3VL_OPTIONAL const qwen3vl_tensor* norm_bias;
    /** First projection: fc1_weight [I, K], fc1_bias [I] (f32, f16 or bf16; bias may be NULL). */
    const qwen3vl_tensor* fc1_weight;
    QWEN3VL_OPTIONAL const qwen3vl_tensor* fc1_bias;
    /** Second projection: fc2_weight [N, I], fc2_bias [N] (bias may be NULL). */
    const qwen3vl_tensor* fc2_weight;
    QWEN3VL_OPTIONAL const qwen3vl_tensor* fc2_bias;
    /** Added to the result when set: [..., N] (f32). */
    QWEN3VL_OPTIONAL const qwen3vl_tensor* residual;
    /** 1 (default): gelu_pytorch_tanh; 0: the exact erf form. */
    int32_t tanh_approximation;
    int32_t reserved;
} qwen3vl_mlp_gelu_params;

/** A qwen3vl_mlp_gelu_params with struct_size set, eps 1e-6, tanh_approximation 1 and every tensor NULL. */
QWEN3VL_API qwen3vl_mlp_gelu_params qwen3vl_mlp_gelu_default_params(void);
/** The GELU MLP of the vision blocks and patch mergers in one call: out = residual + (gelu(y * fc1_weight^T +
 * fc1_bias) * fc2_weight^T + fc2_bias), y = layer_norm(x) (norm_weight, norm_bias, eps) or x without a norm; without
 * residual out is the MLP alone. Equals qwen3vl_op_layer_norm, the first projection with GELU, the second projection
 * (qwen3vl_op_linear) and the residual add in that order (bitwise on the CPU). On a GPU with more than 8 rows and both
 * weights of one 16-bit dtype, the intermediate [..., I] is kept in that dtype (the rounding the second product
 * applies to its input anyway), written by the first product's epilogue (with the tanh GELU in it). */
QWEN3VL_API qwen3vl_status qwen3vl_op_mlp_gelu(const qwen3vl_mlp_gelu_params* params);

/** RMSNorm over the last dimension: out = x / sqrt(mean(x^2) + eps) * weight. out may be x. */
QWEN3VL_API qwen3vl_status qwen3vl_op_rms_norm(qwen3vl_tensor* out, const qwen3vl_tensor* x, const qwen3vl_tensor* weight, float eps);
/** LayerNorm over the last dimension with weight and bias. out may be x. */
QWEN3VL_API qwen3vl_status qwen3vl_op_layer_norm(qwen3vl_tensor* out, const qwen3vl_tensor* x, const qwen3vl_tensor* weight, const qwen3vl_tensor* bias, float eps);
/** out[i] = argmax over the last dimension of row i of x (out: i32 [rows], rows = product of x's leading dimensions;
 * first index on ties; a NaN counts as the largest, as in torch.argmax). */
QWEN3VL_API qwen3vl_status qwen3vl_op_argmax(qwen3vl_tensor* out, const qwen3vl_tensor* x);
/** The k largest elements of each row of x (f32 [..., V]) in descending order: values (f32) and their indices in the
 * row (i32), both of x's shape with the last dimension k. Ties go to the lower index; a NaN counts as larger than
 * everything (as in qwen3vl_op_argmax; NaNs among themselves by index); -0 equals +0. The values are the elements'
 * own bits. 1 <= k <= min(V, QWEN3VL_TOP_K_MAX). values, indices and x must not share memory. Selection only, so
 * every backend gives the same result. On a GPU it needs no host synchronisation (it may be captured into a graph);
 * a row of a decoding step's logits is spread over many blocks. */
QWEN3VL_API qwen3vl_status qwen3vl_op_top_k(qwen3vl_tensor* values, qwen3vl_tensor* indices, const qwen3vl_tensor* x, int64_t k);
/** out[T, H] = table[ids[t], :] (ids: i32 [T]; table in any weight dtype). An id out of range: INVALID_ARGUMENT from
 * this call on the CPU; on a GPU the ids are checked on the device (so the op can be captured in a graph): the row is
 * zeroed and the next qwen3vl_tensor_read on that backend fails with INVALID_ARGUMENT. */
QWEN3VL_API qwen3vl_status qwen3vl_op_embedding(qwen3vl_tensor* out, const qwen3vl_tensor* table, const qwen3vl_tensor* ids);
/** For r < N: x[rows[r], :] = src[r, :] (accumulate 0) or x[rows[r], :] += src[r, :] (accumulate 1). x: [R, W],
 * rows: i32 [N] of distinct values < R, src: [N, W], not sharing memory with x. */
QWEN3VL_API qwen3vl_status qwen3vl_op_scatter_rows(qwen3vl_tensor* x, const qwen3vl_tensor* rows, const qwen3vl_tensor* src, int32_t accumulate);
/** Vision 2D rotary, in place, on the q and k parts of a fused qkv [T, 3, H, D]: positions (i32 [T, 2]: row, col),
 * f_i = theta^(-2i/(D/2)) for i < D/4 (transformers' VisionRotaryEmbedding(D/2)); angle j = row * f_j for j < D/4 and
 * col * f_(j-D/4) for D/4 <= j < D/2 (rot_pos_emb's flattened [row freqs, col freqs]); rotate-half over pairs
 * (j, j + D/2). D a multiple of 4. */
QWEN3VL_API qwen3vl_status qwen3vl_op_rope_vision(qwen3vl_tensor* qkv, const qwen3vl_tensor* positions, float theta);
/** Parameters of qwen3vl_op_qk_norm_rope_attention (and of the cache-writing half alone, for tests). Start from
 * qwen3vl_qk_norm_rope_attention_default_params(). Shapes: q [T, Hq, D], k and v [T, Hkv, D] (f32), Hq a multiple
 * of Hkv, D even; caches [capacity, Hkv, D]. */
typedef struct qwen3vl_qk_norm_rope_attention_params {
    uint32_t struct_size;
    /** RMSNorm epsilon of q_norm and k_norm (finite, > 0). Default 1e-6. */
    float eps;
    /** The attention [T, Hq, D] (f32); must not share memory with any other tensor. */
    qwen3vl_tensor* out;
    /** Scratch: normalised and rotated in place; their contents afterwards are unspecified. */
    qwen3vl_tensor* q;
    qwen3vl_tensor* k;
    const qwen3vl_tensor* v;
    /** RMSNorm weights [D] over head_dim (f32, f16 or bf16). */
    const qwen3vl_tensor* q_norm;
    const qwen3vl_tensor* k_norm;
    /** i32 [3, T]: the t, h and w position streams. */
    const qwen3vl_tensor* positions;
    /** The layer's KV cache [capacity, Hkv, D] (f32, f16, bf16 or Q8 with D a multiple of 32; both the same); the
     * new rows are written at n_past (rounded to the cache's dtype; into Q8 each block of 32 of a head row quantized
     * as QWEN3VL_DTYPE_Q8 says, a block holding a NaN or infinity, or overflowing the f16 scale, stored with a NaN
     * scale so that the attention and the logits show it). */
    qwen3vl_tensor* k_cache;
    qwen3vl_tensor* v_cache;
    /** i32 [1], optional: n_past read from this tensor when the op runs (a captured graph replayed at each decoding
     * step). A value outside 0 .. n_past_bound writes no cache row and fails the call (CPU) or the next read (GPU). */
    QWEN3VL_OPTIONAL const qwen3vl_tensor* n_past_tensor;
    /** Rows already in the cache (0 .. capacity - T). Must be 0 when n_past_tensor is set. */
    int64_t n_past;
    /** With n_past_tensor: the largest value it may hold (0: capacity - T; a tighter bound makes a smaller launch).
     * Must be 0 without n_past_tensor. */
    int64_t n_past_bound;
    /** M-RoPE sections (transformers' rope_scaling.mrope_section), each >= 0. Default {24, 20, 20}. */
    int64_t mrope_section[3];
    /** RoPE base (finite, > 0). Default 5000000 (Qwen3-VL's rope_theta). */
    float theta;
    int32_t reserved;
} qwen3vl_qk_norm_rope_attention_params;

/** A qwen3vl_qk_norm_rope_attention_params with struct_size set, eps 1e-6, theta 5e6, mrope_section {24, 20, 20},
 * n_past 0 and every tensor NULL. */
QWEN3VL_API qwen3vl_qk_norm_rope_attention_params qwen3vl_qk_norm_rope_attention_default_params(void);
/** The text attention of a decoder layer after its projections, in one call: RMSNorm over head_dim of q and k (q_norm,
 * k_norm), interleaved M-RoPE with positions, theta and mrope_section, k and v written to rows n_past .. n_past+T-1
 * of the caches, then CAUSAL attention (as qwen3vl_op_attention) of q over the cache including the new rows into out.
 * M-RoPE as transformers' apply_interleaved_mrope: inv_freq[i] = 1 / theta^(2i/D) in f32, i < D/2; angle i = pos *
 * inv_freq[i] with pos the t stream, except slots 1, 4, 7, ... below 3*mrope_section[1] (h stream) and 2, 5, 8, ...
 * below 3*mrope_section[2] (w stream); rotate-half over pairs (i, i + D/2). On a GPU with at most 8 query rows per
 * KV head (decoding) one kernel does it all; its result equals the unfused path's bit for bit. */
QWEN3VL_API qwen3vl_status qwen3vl_op_qk_norm_rope_attention(const qwen3vl_qk_norm_rope_attention_params* params);

/** Parameters of qwen3vl_op_attention. Start from qwen3vl_attention_default_params(). */
typedef struct qwen3vl_attention_params {
    uint32_t struct_size;
    /** CAUSAL (default) or SEGMENTS. */
    qwen3vl_attention_mask mask;
    /** The result [T, Hq, D] (f32), not sharing memory with q or the caches. */
    qwen3vl_tensor* out;
    /** CAUSAL: q [T, Hq, D] (f32). SEGMENTS: a fused qkv [T, 3, H, D] (f32). */
    const qwen3vl_tensor* q;
    /** CAUSAL: the caches [capacity, Hkv, D] (f32, f16, bf16 or Q8 with D a multiple of 32; both the same; Hq a
     * multiple of Hkv). SEGMENTS: NULL. */
    QWEN3VL_OPTIONAL const qwen3vl_tensor* k_cache;
    QWEN3VL_OPTIONAL const qwen3vl_tensor* v_cache;
    /** SEGMENTS: i32 [S+1], non-decreasing cumulative lengths from 0 to T. CAUSAL: NULL. */
    QWEN3VL_OPTIONAL const qwen3vl_tensor* segments;
    /** CAUSAL only, optional, i32 [1]: n_past read from this tensor when the op runs, clamped to 0 .. n_past_bound on a
     * GPU and checked on the CPU. */
    QWEN3VL_OPTIONAL const qwen3vl_tensor* n_past_tensor;
    /** CAUSAL: keys before the first query (0 .. capacity - T); must be 0 when n_past_tensor is set, and with SEGMENTS. */
    int64_t n_past;
    /** With n_past_tensor: the largest value it may hold (0: capacity - T). Must be 0 without it. */
    int64_t n_past_bound;
} qwen3vl_attention_params;

/** A qwen3vl_attention_params with struct_size set, mask CAUSAL, n_past 0 and every tensor NULL. */
QWEN3VL_API qwen3vl_attention_params qwen3vl_attention_default_params(void);
/** Attention with online softmax, scale 1/sqrt(D). CAUSAL: q against the first n_past + T rows of the caches, query
 * i seeing keys 0 .. n_past + i. SEGMENTS: each query of the fused qkv sees the keys of its own segment. */
QWEN3VL_API qwen3vl_status qwen3vl_op_attention(const qwen3vl_attention_params* params);
/** Vision position embedding of one frame: the learned table [G*G, C] (G = sqrt of its rows) bilinearly interpolated
 * to a grid_h x grid_w patch grid (align-corners sample points linspace(0, G-1, n) in f32 as torch computes them; taps
 * floor and min(floor+1, G-1); the four f32 weights and the sum in transformers' fast_pos_embed_interpolate order),
 * written in merge-window order to out [grid_h * grid_w, C]: row ((bh*(grid_w/merge) + bw)*merge + ih)*merge + iw
 * is grid position (bh*merge + ih, bw*merge + iw). grid_h and grid_w are multiples of merge. The caller repeats it
 * for each of a video's t frames. */
QWEN3VL_API qwen3vl_status qwen3vl_op_position_embedding(qwen3vl_tensor* out, const qwen3vl_tensor* table, int64_t grid_h, int64_t grid_w, int64_t merge);

#ifdef __cplusplus
}
#endif

#endif /* QWEN3VL_H */
