// C API entry point of the L2 prefetch hint (qwen3vl.h, "Ops").
#include <cstdint>
#include <string>

#include "boundary.h"
#include "dtype.h"
#include "op_args.h"
#include "prefetch.cuh"
#include "qwen3vl.h"

using namespace qwen3vl;

extern "C" {

qwen3vl_status qwen3vl_op_prefetch(const qwen3vl_tensor* t0, int64_t count0, const qwen3vl_tensor* t1, int64_t count1,
                                   const qwen3vl_tensor* t2, int64_t count2) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_prefetch");
        const qwen3vl_tensor* handles[3] = {t0, t1, t2};
        const int64_t counts[3] = {count0, count1, count2};
        const char* names[3] = {"t0", "t1", "t2"};
        cuda::PrefetchRanges r{};
        for (int i = 0; i < 3; ++i) {
            if (i > 0 && handles[i] == nullptr) {
                require(counts[i] == 0, std::string("qwen3vl_op_prefetch: count") + std::to_string(i) +
                                            " must be 0 when " + names[i] + " is NULL");
                continue;
            }
            const Tensor& t = args.tensor(handles[i], names[i]);
            const int64_t n = static_cast<int64_t>(t.elements());
            require(counts[i] >= 0 && counts[i] <= n, std::string("qwen3vl_op_prefetch: count") + std::to_string(i) +
                                                          " = " + std::to_string(counts[i]) + " is outside 0 .. " +
                                                          std::to_string(n) + " (the elements of " + names[i] + ")");
            r.ptr[i] = t.data;
            r.bytes[i] = size_t(counts[i] == 0 ? n : counts[i]) * dtype_size(t.dtype);
        }
        if constexpr (kCudaCompiled)
            if (args.is_cuda()) return cuda::prefetch_l2(args.cuda(), r);
        // The CPU backend has nothing to prefetch into: the op only checks its arguments there.
    });
}

}  // extern "C"
