// See bench_ceilings_cuda.h. Plain CUDA runtime and cuBLASLt calls, timed with CUDA events.
#include "bench_ceilings_cuda.h"

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>

namespace qwen3vl::bench {
namespace {

bool ok(cudaError_t e, const char* what) {
    if (e == cudaSuccess) return true;
    std::fprintf(stderr, "ceilings: %s: %s\n", what, cudaGetErrorString(e));
    return false;
}
bool ok(cublasStatus_t s, const char* what) {
    if (s == CUBLAS_STATUS_SUCCESS) return true;
    std::fprintf(stderr, "ceilings: %s: cuBLAS status %d\n", what, int(s));
    return false;
}

// Best time in ms of `reps` runs of fn (each run between two events on the default stream).
template <class F>
float best_ms(int reps, F&& fn) {
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    float best = 1e30f;
    for (int i = 0; i < reps; ++i) {
        cudaEventRecord(a);
        fn();
        cudaEventRecord(b);
        cudaEventSynchronize(b);
        float ms = 0.0f;
        cudaEventElapsedTime(&ms, a, b);
        best = std::min(best, ms);
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return best;
}

double copy_gbs() {
    const size_t bytes = size_t(1) << 30;
    void *src = nullptr, *dst = nullptr;
    if (!ok(cudaMalloc(&src, bytes), "cudaMalloc") || !ok(cudaMalloc(&dst, bytes), "cudaMalloc")) {
        cudaFree(src);
        return 0.0;
    }
    cudaMemset(src, 1, bytes);
    cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice);  // warm-up
    const float ms = best_ms(10, [&] { cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice); });
    const bool fine = ok(cudaGetLastError(), "cudaMemcpyAsync");
    cudaFree(src);
    cudaFree(dst);
    return fine ? 2.0 * double(bytes) / (ms * 1e-3) / 1e9 : 0.0;
}

double gemm_tflops() {
    const int n = 8192;
    const size_t bytes = size_t(n) * n * 2;
    void *a = nullptr, *b = nullptr, *c = nullptr, *work = nullptr;
    const size_t work_bytes = size_t(64) << 20;
    cublasLtHandle_t lt = nullptr;
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t layout = nullptr;
    cublasLtMatmulPreference_t pref = nullptr;
    double result = 0.0;
    do {
        if (!ok(cudaMalloc(&a, bytes), "cudaMalloc") || !ok(cudaMalloc(&b, bytes), "cudaMalloc") ||
            !ok(cudaMalloc(&c, bytes), "cudaMalloc") || !ok(cudaMalloc(&work, work_bytes), "cudaMalloc"))
            break;
        cudaMemset(a, 0, bytes);  // zeros: the rate of a dense GEMM does not depend on the values
        cudaMemset(b, 0, bytes);
        if (!ok(cublasLtCreate(&lt), "cublasLtCreate")) break;
        if (!ok(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "MatmulDescCreate")) break;
        if (!ok(cublasLtMatrixLayoutCreate(&layout, CUDA_R_16BF, n, n, n), "MatrixLayoutCreate")) break;
        if (!ok(cublasLtMatmulPreferenceCreate(&pref), "PreferenceCreate")) break;
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &work_bytes,
                                             sizeof work_bytes);
        cublasLtMatmulHeuristicResult_t heuristic{};
        int found = 0;
        if (!ok(cublasLtMatmulAlgoGetHeuristic(lt, op, layout, layout, layout, layout, pref, 1, &heuristic, &found),
                "AlgoGetHeuristic") ||
            found == 0)
            break;
        const float alpha = 1.0f, beta = 0.0f;
        cublasStatus_t status = CUBLAS_STATUS_SUCCESS;
        auto run = [&] {
            status = cublasLtMatmul(lt, op, &alpha, a, layout, b, layout, &beta, c, layout, c, layout,
                                    &heuristic.algo, work, work_bytes, nullptr);
        };
        run();  // warm-up
        const float ms = best_ms(10, run);
        if (!ok(status, "cublasLtMatmul") || !ok(cudaGetLastError(), "cublasLtMatmul")) break;
        result = 2.0 * double(n) * n * n / (ms * 1e-3) / 1e12;
    } while (false);
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (layout) cublasLtMatrixLayoutDestroy(layout);
    if (op) cublasLtMatmulDescDestroy(op);
    if (lt) cublasLtDestroy(lt);
    cudaFree(a);
    cudaFree(b);
    cudaFree(c);
    cudaFree(work);
    return result;
}

}  // namespace

CudaCeilings measure_cuda_ceilings(int device) {
    CudaCeilings c;
    if (!ok(cudaSetDevice(device), "cudaSetDevice")) return c;
    c.copy_gbs = copy_gbs();
    c.gemm_tflops = gemm_tflops();
    c.ok = c.copy_gbs > 0.0 && c.gemm_tflops > 0.0;
    return c;
}

}  // namespace qwen3vl::bench
