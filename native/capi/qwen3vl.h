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
 * typedef struct X X; (opaque handle) or typedef struct X { <type> <name>; | char <name>[N]; } X;
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

/** Version of this library (semantic versioning). */
#define QWEN3VL_VERSION_MAJOR 0
#define QWEN3VL_VERSION_MINOR 1
#define QWEN3VL_VERSION_PATCH 0
/** Largest number of dimensions a tensor may have. */
#define QWEN3VL_MAX_DIMS 4
/** Length of the fixed text fields in the info structs, terminator included. */
#define QWEN3VL_NAME_LENGTH 128

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
    QWEN3VL_STATUS_INTERNAL_ERROR = 9
} qwen3vl_status;

/** Element types of tensors. */
typedef enum qwen3vl_dtype {
    QWEN3VL_DTYPE_F32 = 0,
    QWEN3VL_DTYPE_F16 = 1,
    QWEN3VL_DTYPE_BF16 = 2,
    QWEN3VL_DTYPE_I32 = 3
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

/** A compute backend: the CPU or one CUDA device, with its memory pool and worker threads. */
typedef struct qwen3vl_backend qwen3vl_backend;
/** A tensor living on a backend. Child of that backend. */
typedef struct qwen3vl_tensor qwen3vl_tensor;

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

/** Allocates an uninitialised tensor of ndim (1..QWEN3VL_MAX_DIMS) dimensions on backend. */
QWEN3VL_API qwen3vl_status qwen3vl_tensor_create(qwen3vl_backend* backend, qwen3vl_dtype dtype, int32_t ndim, const int64_t* shape, qwen3vl_tensor** tensor);
/** Releases a tensor (NULL is allowed). */
QWEN3VL_API void qwen3vl_tensor_free(qwen3vl_tensor* tensor);
/** A qwen3vl_tensor_desc with struct_size set. */
QWEN3VL_API qwen3vl_tensor_desc qwen3vl_tensor_desc_init(void);
/** Reads the shape and type of a tensor into *desc (whose struct_size must be set). */
QWEN3VL_API qwen3vl_status qwen3vl_tensor_describe(const qwen3vl_tensor* tensor, qwen3vl_tensor_desc* desc);
/** Copies host data of element type src_dtype into the tensor, converting to the tensor's dtype. bytes must equal element count times the size of src_dtype. */
QWEN3VL_API qwen3vl_status qwen3vl_tensor_write(qwen3vl_tensor* tensor, qwen3vl_dtype src_dtype, const void* src, size_t bytes);
/** Copies the tensor to host memory as dst_dtype, converting from the tensor's dtype. bytes must equal element count times the size of dst_dtype. */
QWEN3VL_API qwen3vl_status qwen3vl_tensor_read(const qwen3vl_tensor* tensor, qwen3vl_dtype dst_dtype, void* dst, size_t bytes);

#ifdef __cplusplus
}
#endif

#endif /* QWEN3VL_H */
