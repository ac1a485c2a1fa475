// The ceilings the CUDA op benchmarks are judged against, measured on the running device with the CUDA runtime and
// cuBLASLt directly (none of the engine's code): device-to-device copy bandwidth and a large bf16 GEMM's rate.
#pragma once

namespace qwen3vl::bench {

struct CudaCeilings {
    double copy_gbs = 0.0;      // cudaMemcpy device to device of 1 GiB, (read + write bytes) / time, best of 10
    double gemm_tflops = 0.0;   // cuBLASLt bf16 x bf16 -> bf16, fp32 accumulate, 8192^3, best of 10
    bool ok = false;            // false: a call failed (the message is on stderr) and the figures are 0
};

CudaCeilings measure_cuda_ceilings(int device);

}  // namespace qwen3vl::bench
