// The GEMV of the linear ops for decode-sized M (<= kGemvMaxRows, linear.cuh): weights streamed once for all rows
// of x, with the fused RMSNorm prologue and bias / residual / swiglu epilogues (kernels in gemv.cu). Internal to
// native/kernels (linear.cu calls it); capture-safe: one launch on be.stream(), no host synchronisation.
#pragma once

#include <cstdint>

#include "cuda_backend.h"
#include "linear.cuh"
#include "op_params.h"

namespace qwen3vl {
namespace cuda {

// One GEMV launch: up to three projections of x (one virtual matrix), optionally normalised, with swiglu (one
// projection and `up`) or bias / residual (one projection). All weights of one dtype; M <= kGemvMaxRows.
struct GemvJob {
    const float* x = nullptr;
    int64_t M = 0, K = 0;
    Weight norm;
    float eps = 0.0f;
    Projection proj[3];
    int count = 1;
    Weight up;
    Weight bias;
    const float* residual = nullptr;
};

// A GEMV over the M rows of x (normalised by norm when norm.data is set); the caller adds the projections.
inline GemvJob gemv_job(const float* x, int64_t M, int64_t K, Weight norm, float eps) {
    GemvJob job;
    job.x = x;
    job.M = M;
    job.K = K;
    job.norm = norm;
    job.eps = eps;
    return job;
}

// Launches the job (all its weights of proj[0]'s dtype).
void gemv(CudaBackend& be, const GemvJob& job);

}  // namespace cuda
}  // namespace qwen3vl
