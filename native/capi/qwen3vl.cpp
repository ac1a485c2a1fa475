// Implementation of the exported C API (qwen3vl.h). Argument checks live here; the work lives in core/, cpu/
// and kernels/.
#include "qwen3vl.h"

#include <cstring>
#include <memory>
#include <string>

#include "backend.h"
#include "boundary.h"
#include "cpu_features.h"
#include "cuda_info.h"
#include "dtype.h"
#include "op_args.h"
#include "platform.h"
#include "tensor.h"


namespace qwen3vl {

static thread_local std::string t_last_error;

void set_last_error(const std::string& message) noexcept {
    try {
        t_last_error = message;
    } catch (...) {
        t_last_error.clear();
    }
}

void clear_last_error() noexcept { t_last_error.clear(); }

static void copy_text(char* dst, size_t capacity, const std::string& text) {
    std::memset(dst, 0, capacity);
    std::memcpy(dst, text.data(), text.size() < capacity - 1 ? text.size() : capacity - 1);
}

static std::string compiler_description() {
#if defined(__clang__)
    return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
    return std::string("gcc ") + __VERSION__;
#elif defined(_MSC_VER)
    return "msvc " + std::to_string(_MSC_FULL_VER);
#else
    return "unknown";
#endif
}

static void check_tensor_copy(const qwen3vl_tensor* tensor, qwen3vl_dtype host_dtype, const void* host, size_t bytes,
                              bool write) {
    require(tensor != nullptr, "tensor is NULL");
    require(host != nullptr || bytes == 0, "host buffer is NULL");
    require(dtype_valid(raw_enum(host_dtype)), "unknown host dtype " + std::to_string(raw_enum(host_dtype)));
    const qwen3vl_dtype td = tensor->t.dtype;
    require_pair(write ? host_dtype : td, write ? td : host_dtype, td);
    const uint64_t expected = host_bytes(tensor->t, host_dtype);
    require(bytes == expected, "buffer is " + std::to_string(bytes) + " bytes, the tensor needs " +
                                   std::to_string(expected) + " bytes as " + dtype_name(host_dtype));
}

}  // namespace qwen3vl

using namespace qwen3vl;

extern "C" {

const char* qwen3vl_last_error(void) { return t_last_error.c_str(); }

const char* qwen3vl_status_name(qwen3vl_status status) {
    switch (raw_enum(status)) {
        case QWEN3VL_STATUS_OK: return "QWEN3VL_STATUS_OK";
        case QWEN3VL_STATUS_INVALID_ARGUMENT: return "QWEN3VL_STATUS_INVALID_ARGUMENT";
        case QWEN3VL_STATUS_IO_ERROR: return "QWEN3VL_STATUS_IO_ERROR";
        case QWEN3VL_STATUS_BAD_FORMAT: return "QWEN3VL_STATUS_BAD_FORMAT";
        case QWEN3VL_STATUS_UNSUPPORTED: return "QWEN3VL_STATUS_UNSUPPORTED";
        case QWEN3VL_STATUS_OUT_OF_MEMORY: return "QWEN3VL_STATUS_OUT_OF_MEMORY";
        case QWEN3VL_STATUS_DEVICE_ERROR: return "QWEN3VL_STATUS_DEVICE_ERROR";
        case QWEN3VL_STATUS_CANCELLED: return "QWEN3VL_STATUS_CANCELLED";
        case QWEN3VL_STATUS_LIMIT_EXCEEDED: return "QWEN3VL_STATUS_LIMIT_EXCEEDED";
        case QWEN3VL_STATUS_INTERNAL_ERROR: return "QWEN3VL_STATUS_INTERNAL_ERROR";
        case QWEN3VL_STATUS_NUMERICAL_ERROR: return "QWEN3VL_STATUS_NUMERICAL_ERROR";
    }
    return "QWEN3VL_STATUS_UNKNOWN";
}

qwen3vl_status qwen3vl_path_kind(const char* path, qwen3vl_file_kind* kind) {
    return guarded([&] {
        require(path != nullptr, "path is NULL");
        require(kind != nullptr, "kind is NULL");
        switch (file_kind(path)) {
            case FileKind::None: *kind = QWEN3VL_FILE_KIND_NONE; break;
            case FileKind::Regular: *kind = QWEN3VL_FILE_KIND_REGULAR; break;
            case FileKind::Directory: *kind = QWEN3VL_FILE_KIND_DIRECTORY; break;
            case FileKind::Other: *kind = QWEN3VL_FILE_KIND_OTHER; break;
        }
    });
}

qwen3vl_build_info qwen3vl_build_info_init(void) {
    qwen3vl_build_info info;
    std::memset(&info, 0, sizeof(info));
    info.struct_size = sizeof(info);
    return info;
}

qwen3vl_status qwen3vl_build_info_get(qwen3vl_build_info* info) {
    return guarded([&] {
        require_struct(info, "qwen3vl_build_info");
        *info = qwen3vl_build_info_init();
        info->version_major = QWEN3VL_VERSION_MAJOR;
        info->version_minor = QWEN3VL_VERSION_MINOR;
        info->version_patch = QWEN3VL_VERSION_PATCH;
        info->backends = static_cast<uint32_t>(QWEN3VL_BACKEND_FLAG_CPU) | (cuda_compiled() ? static_cast<uint32_t>(QWEN3VL_BACKEND_FLAG_CUDA) : 0u);
        info->cpu_features = detect_cpu_features();
        info->logical_cpus = logical_processor_count();
        info->cuda_runtime_version = cuda_runtime_version();
        info->cuda_driver_version = cuda_driver_version();
        info->cuda_device_count = cuda_device_count();
        copy_text(info->version, sizeof(info->version),
                  std::to_string(QWEN3VL_VERSION_MAJOR) + "." + std::to_string(QWEN3VL_VERSION_MINOR) + "." +
                      std::to_string(QWEN3VL_VERSION_PATCH));
        copy_text(info->compiler, sizeof(info->compiler), compiler_description());
        copy_text(info->cpu_kernels, sizeof(info->cpu_kernels), cpu_kernels_name(cpu_kernels()));
        copy_text(info->cuda_architectures, sizeof(info->cuda_architectures), cuda_architectures());
    });
}

qwen3vl_status qwen3vl_cuda_device_count(int32_t* count) {
    return guarded([&] {
        require(count != nullptr, "count is NULL");
        *count = cuda_device_count();
    });
}

qwen3vl_cuda_device qwen3vl_cuda_device_init(void) {
    qwen3vl_cuda_device d;
    std::memset(&d, 0, sizeof(d));
    d.struct_size = sizeof(d);
    return d;
}

qwen3vl_status qwen3vl_cuda_device_get(int32_t index, qwen3vl_cuda_device* device) {
    return guarded([&] {
        require_struct(device, "qwen3vl_cuda_device");
        cuda_device_query(index, device);
    });
}

qwen3vl_backend_params qwen3vl_backend_default_params(void) {
    qwen3vl_backend_params p;
    std::memset(&p, 0, sizeof(p));
    p.struct_size = sizeof(p);
    p.type = QWEN3VL_BACKEND_CPU;
    p.device = 0;
    p.threads = 0;
    return p;
}

qwen3vl_status qwen3vl_backend_create(const qwen3vl_backend_params* params, qwen3vl_backend** backend) {
    return guarded([&] {
        require(backend != nullptr, "backend out-pointer is NULL");
        *backend = nullptr;
        require_struct(params, "qwen3vl_backend_params");
        require(params->threads >= 0, "threads must be >= 0");
        auto b = std::make_unique<qwen3vl_backend>();
        const int type = raw_enum(params->type);
        if (type == QWEN3VL_BACKEND_CPU) b->impl = create_cpu_backend(params->threads);
        else if (type == QWEN3VL_BACKEND_CUDA)
            b->impl = create_cuda_backend(params->device, params->cuda_fp32_math != 0, params->cuda_kernel_arch);
        else fail(QWEN3VL_STATUS_INVALID_ARGUMENT, "unknown backend type " + std::to_string(type));
        *backend = b.release();
    });
}

void qwen3vl_backend_free(qwen3vl_backend* backend) { delete backend; }

qwen3vl_status qwen3vl_backend_name(const qwen3vl_backend* backend, char* name, size_t capacity) {
    return guarded([&] {
        require(backend != nullptr, "backend is NULL");
        require(name != nullptr && capacity > 0, "name buffer is NULL or empty");
        const std::string n = backend->impl->name();
        if (n.size() + 1 > capacity)
            fail(QWEN3VL_STATUS_LIMIT_EXCEEDED, "name needs " + std::to_string(n.size() + 1) + " bytes");
        std::memcpy(name, n.c_str(), n.size() + 1);
    });
}

qwen3vl_memory_stats qwen3vl_memory_stats_init(void) {
    qwen3vl_memory_stats s;
    std::memset(&s, 0, sizeof(s));
    s.struct_size = sizeof(s);
    return s;
}

qwen3vl_status qwen3vl_backend_memory_stats(const qwen3vl_backend* backend, qwen3vl_memory_stats* stats) {
    return guarded([&] {
        require(backend != nullptr, "backend is NULL");
        require_struct(stats, "qwen3vl_memory_stats");
        *stats = backend->impl->pool().stats();
    });
}

qwen3vl_status qwen3vl_backend_trim(qwen3vl_backend* backend) {
    return guarded([&] {
        require(backend != nullptr, "backend is NULL");
        backend->impl->pool().trim();
    });
}

qwen3vl_status qwen3vl_backend_reset_peak(qwen3vl_backend* backend) {
    return guarded([&] {
        require(backend != nullptr, "backend is NULL");
        backend->impl->pool().reset_peak();
    });
}

qwen3vl_status qwen3vl_backend_capture_begin(qwen3vl_backend* backend) {
    return guarded([&] {
        require(backend != nullptr, "backend is NULL");
        backend->impl->capture_begin();
    });
}

qwen3vl_status qwen3vl_backend_capture_end(qwen3vl_backend* backend, qwen3vl_graph** graph) {
    return guarded([&] {
        require(backend != nullptr, "backend is NULL");
        if (graph == nullptr) {
            backend->impl->capture_end(false);  // still end the capture, then report the bad argument
            fail(QWEN3VL_STATUS_INVALID_ARGUMENT, "graph out-pointer is NULL (the capture was discarded)");
        }
        *graph = nullptr;
        auto g = std::make_unique<qwen3vl_graph>();
        g->backend = backend;
        g->impl = backend->impl->capture_end(true);
        *graph = g.release();
    });
}

qwen3vl_status qwen3vl_backend_capture_discard(qwen3vl_backend* backend) {
    return guarded([&] {
        require(backend != nullptr, "backend is NULL");
        backend->impl->capture_end(false);
    });
}

qwen3vl_status qwen3vl_graph_launch(qwen3vl_graph* graph) {
    return guarded([&] {
        require(graph != nullptr && graph->impl != nullptr, "graph is NULL");
        graph->impl->launch();
    });
}

void qwen3vl_graph_free(qwen3vl_graph* graph) { delete graph; }

qwen3vl_status qwen3vl_tensor_create(qwen3vl_backend* backend, qwen3vl_dtype dtype, int32_t ndim,
                                     const int64_t* shape, qwen3vl_tensor** tensor) {
    return guarded([&] {
        require(tensor != nullptr, "tensor out-pointer is NULL");
        *tensor = nullptr;
        require(backend != nullptr, "backend is NULL");
        require(dtype_valid(raw_enum(dtype)), "unknown dtype " + std::to_string(raw_enum(dtype)));
        auto t = std::make_unique<qwen3vl_tensor>();
        t->t = make_tensor(*backend->impl, dtype, ndim, shape);
        *tensor = t.release();
    });
}

void qwen3vl_tensor_free(qwen3vl_tensor* tensor) { delete tensor; }

qwen3vl_status qwen3vl_tensor_view(qwen3vl_tensor* tensor, int64_t offset, int32_t ndim, const int64_t* shape,
                                   qwen3vl_tensor** view) {
    return guarded([&] {
        require(view != nullptr, "view out-pointer is NULL");
        *view = nullptr;
        require(tensor != nullptr, "tensor is NULL");
        const Tensor& parent = tensor->t;
        require(!dtype_is_block(parent.dtype),
                std::string("a ") + dtype_name(parent.dtype) + " tensor has no views (its rows are blocks with scales)");
        const size_t esize = dtype_size(parent.dtype);
        const uint64_t count = checked_element_count(ndim, shape, esize);
        require(offset >= 0 && static_cast<uint64_t>(offset) <= parent.elements() &&
                    count <= parent.elements() - static_cast<uint64_t>(offset),
                "view of " + std::to_string(count) + " elements at offset " + std::to_string(offset) +
                    " exceeds the tensor's " + std::to_string(parent.elements()) + " elements");
        auto v = std::make_unique<qwen3vl_tensor>();
        v->t = parent;
        v->t.ndim = ndim;
        v->t.shape = {};
        for (int i = 0; i < ndim; ++i) v->t.shape[static_cast<size_t>(i)] = shape[i];
        v->t.data = static_cast<uint8_t*>(parent.data) + static_cast<uint64_t>(offset) * esize;
        v->t.bytes = count * esize;
        *view = v.release();
    });
}

qwen3vl_tensor_desc qwen3vl_tensor_desc_init(void) {
    qwen3vl_tensor_desc d;
    std::memset(&d, 0, sizeof(d));
    d.struct_size = sizeof(d);
    return d;
}

qwen3vl_status qwen3vl_tensor_describe(const qwen3vl_tensor* tensor, qwen3vl_tensor_desc* desc) {
    return guarded([&] {
        require(tensor != nullptr, "tensor is NULL");
        require_struct(desc, "qwen3vl_tensor_desc");
        *desc = qwen3vl_tensor_desc_init();
        desc->dtype = tensor->t.dtype;
        desc->ndim = tensor->t.ndim;
        for (int i = 0; i < tensor->t.ndim; ++i) desc->shape[i] = tensor->t.shape[static_cast<size_t>(i)];
        desc->bytes = tensor->t.bytes;
    });
}

qwen3vl_status qwen3vl_tensor_write(qwen3vl_tensor* tensor, qwen3vl_dtype src_dtype, const void* src, size_t bytes) {
    return guarded([&] {
        check_tensor_copy(tensor, src_dtype, src, bytes, true);
        write_tensor(tensor->t, src_dtype, src);
    });
}

qwen3vl_status qwen3vl_tensor_read(const qwen3vl_tensor* tensor, qwen3vl_dtype dst_dtype, void* dst, size_t bytes) {
    return guarded([&] {
        check_tensor_copy(tensor, dst_dtype, dst, bytes, false);
        read_tensor(tensor->t, dst_dtype, dst);
    });
}

}  // extern "C"
