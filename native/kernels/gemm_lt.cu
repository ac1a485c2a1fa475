// cuBLASLt products of the linear ops (gemm_lt.cuh).
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "common.cuh"
#include "gemm_lt.cuh"

namespace qwen3vl {
namespace cuda {
namespace {

// Alignment in bytes that a matrix guarantees to the kernels: of its pointer and of its row starts, at most 256.
uint32_t alignment(const void* p, int64_t ld_bytes) {
    const uintptr_t v = reinterpret_cast<uintptr_t>(p) | static_cast<uintptr_t>(ld_bytes) | uintptr_t(256);
    return static_cast<uint32_t>(v & (~v + 1));
}


size_t type_size(cudaDataType_t t) { return t == CUDA_R_32F ? 4 : 2; }

cublasLtEpilogue_t lt_epilogue(const LtProduct& p) {
    if (p.bias) return p.gelu ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
    return p.gelu ? CUBLASLT_EPILOGUE_GELU : CUBLASLT_EPILOGUE_DEFAULT;
}

// What selects a cuBLASLt algorithm: device, shape, types, alignments (the bias pointer's too: the heuristic reads
// its address for that), the epilogue and whether C is accumulated.
struct LtKey {
    int64_t n, M, K, ldd;
    int device;
    int ab, dt;
    int epilogue;
    uint32_t align_a, align_b, align_c, align_d, align_bias;
    int accumulate;
};

LtKey lt_key(const CudaBackend& be, const LtProduct& p) {
    LtKey key{};
    key.device = be.device();
    key.n = p.n;
    key.M = p.M;
    key.K = p.K;
    key.ldd = p.ldd;
    key.ab = int(p.ab);
    key.dt = int(p.dt);
    key.epilogue = int(lt_epilogue(p));
    const int64_t esize = int64_t(type_size(p.ab)), dsize = int64_t(type_size(p.dt));
    key.align_a = alignment(p.w, p.K * esize);
    key.align_b = alignment(p.x, p.K * esize);
    key.align_c = alignment(p.c ? p.c : p.d, p.ldd * dsize);  // without c, d is passed as C (beta = 0)
    key.align_d = alignment(p.d, p.ldd * dsize);
    key.align_bias = p.bias ? alignment(p.bias, 0) : 256u;
    key.accumulate = p.c != nullptr ? 1 : 0;
    return key;
}

// An operation descriptor initialised in place (cublasLtMatmulDescInit: nothing allocated, nothing to free), so each
// call sets its own bias pointer on its own copy while the plans stay shared and immutable: TN, fp32 compute and
// scale, the product's epilogue.
class LtDesc {
public:
    explicit LtDesc(const LtProduct& p) {
        QWEN3VL_CUBLAS_CHECK(cublasLtMatmulDescInit(get(), CUBLAS_COMPUTE_32F, CUDA_R_32F));
        const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
        QWEN3VL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(get(), CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
        QWEN3VL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(get(), CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
        const cublasLtEpilogue_t epilogue = lt_epilogue(p);
        if (epilogue != CUBLASLT_EPILOGUE_DEFAULT)
            QWEN3VL_CUBLAS_CHECK(
                cublasLtMatmulDescSetAttribute(get(), CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue));
        if (p.bias)
            QWEN3VL_CUBLAS_CHECK(
                cublasLtMatmulDescSetAttribute(get(), CUBLASLT_MATMUL_DESC_BIAS_POINTER, &p.bias, sizeof p.bias));
    }
    cublasLtMatmulDesc_t get() { return &storage_; }

private:
    cublasLtMatmulDescOpaque_t storage_{};
};

// The layouts of one GEMM shape and the heuristic's algorithm for it (found false: cuBLASLt has none).
struct LtPlan {
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
    cublasLtMatmulAlgo_t algo{};
    bool found = false;
    LtPlan() = default;
    LtPlan(const LtPlan&) = delete;
    LtPlan& operator=(const LtPlan&) = delete;
    ~LtPlan() {
        if (d) cublasLtMatrixLayoutDestroy(d);
        if (b) cublasLtMatrixLayoutDestroy(b);
        if (a) cublasLtMatrixLayoutDestroy(a);
    }
};

struct LtPreference {
    cublasLtMatmulPreference_t pref = nullptr;
    ~LtPreference() {
        if (pref) cublasLtMatmulPreferenceDestroy(pref);
    }
};

std::shared_ptr<const LtPlan> make_lt_plan(CudaBackend& be, const LtKey& k, const LtProduct& p) {
    auto plan = std::make_shared<LtPlan>();
    const cudaDataType_t ab = static_cast<cudaDataType_t>(k.ab), dt = static_cast<cudaDataType_t>(k.dt);
    QWEN3VL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->a, ab, uint64_t(k.K), uint64_t(k.n), k.K));
    QWEN3VL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->b, ab, uint64_t(k.K), uint64_t(k.M), k.K));
    QWEN3VL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->d, dt, uint64_t(k.n), uint64_t(k.M), k.ldd));
    LtPreference pref;
    QWEN3VL_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref.pref));
    const uint64_t ws_bytes = CudaBackend::kGemmWorkspaceBytes;
    QWEN3VL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                              &ws_bytes, sizeof ws_bytes));
    QWEN3VL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                              &k.align_a, sizeof k.align_a));
    QWEN3VL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                              &k.align_b, sizeof k.align_b));
    QWEN3VL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                              &k.align_c, sizeof k.align_c));
    QWEN3VL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                              &k.align_d, sizeof k.align_d));
    LtDesc desc(p);  // the first caller's bias address stands for every address of its alignment (in the key)
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(be.cublaslt(), desc.get(), plan->a, plan->b, plan->d,
                                                             plan->d, pref.pref, 1, &result, &found);
    if (hs != CUBLAS_STATUS_NOT_SUPPORTED) QWEN3VL_CUBLAS_CHECK(hs);
    plan->found = hs == CUBLAS_STATUS_SUCCESS && found > 0;
    plan->algo = result.algo;
    return plan;
}

// Plans are cached process-wide (an algorithm found on a device holds for every handle on it): prefill repeats
// each shape once per layer. Bounded: the cache is emptied when it grows past kMaxPlans (prompt lengths vary);
// plans still in use live on through their shared_ptr.
std::shared_ptr<const LtPlan> lt_plan(CudaBackend& be, const LtProduct& p) {
    using Cache = std::unordered_map<LtKey, std::shared_ptr<const LtPlan>, BytesHash<LtKey>, BytesEqual<LtKey>>;
    constexpr size_t kMaxPlans = 512;
    static std::mutex mutex;
    static auto* cache = new Cache();  // never destroyed
    const LtKey key = lt_key(be, p);
    {
        std::lock_guard<std::mutex> lock(mutex);
        const auto it = cache->find(key);
        if (it != cache->end()) return it->second;
    }
    std::shared_ptr<const LtPlan> plan = make_lt_plan(be, key, p);  // outside the lock: the heuristic is slow
    std::lock_guard<std::mutex> lock(mutex);
    if (cache->size() >= kMaxPlans) cache->clear();
    return cache->emplace(key, std::move(plan)).first->second;  // another thread's plan if it was first
}

}  // namespace

// Runs one product (LtProduct). False when cuBLASLt has no algorithm for this combination (nothing was queued; the
// caller falls back).
bool lt_matmul(CudaBackend& be, const LtProduct& p) {
    const std::shared_ptr<const LtPlan> plan = lt_plan(be, p);
    if (!plan->found) return false;
    LtDesc desc(p);
    const float alpha = 1.0f, beta = p.c ? 1.0f : 0.0f;
    const cublasStatus_t ms =
        cublasLtMatmul(be.cublaslt(), desc.get(), &alpha, p.w, plan->a, p.x, plan->b, &beta, p.c ? p.c : p.d, plan->d,
                       p.d, plan->d, &plan->algo, be.gemm_workspace(), CudaBackend::kGemmWorkspaceBytes, be.stream());
    if (ms == CUBLAS_STATUS_NOT_SUPPORTED) return false;
    QWEN3VL_CUBLAS_CHECK(ms);
    return true;
}

bool tensor_cores(const CudaBackend& be, qwen3vl_dtype wt) {
    return !be.fp32_math() && ((wt == QWEN3VL_DTYPE_BF16 && be.compute_capability() >= 80) ||
                               (wt == QWEN3VL_DTYPE_F16 && be.compute_capability() >= 70));
}

}  // namespace cuda
}  // namespace qwen3vl
