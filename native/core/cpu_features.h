// CPU feature detection and the choice of CPU kernel set. Kernels compiled for AVX2/FMA/F16C live in separate
// translation units built with those flags; they are called only when select_cpu_kernels() allows it, so the
// library loads and runs on any x86-64.
#pragma once

#include <cstdint>

namespace qwen3vl {

enum class CpuKernels { Scalar, Avx2 };

// Bits of qwen3vl_cpu_feature supported by the CPU and enabled by the OS (XCR0).
uint32_t detect_cpu_features();
// The kernel set in use: the best the CPU supports, lowered by the environment variable QWEN3VL_CPU_KERNELS
// ("scalar" or "avx2") for testing. Decided once per process.
CpuKernels cpu_kernels();
const char* cpu_kernels_name(CpuKernels k);

// AVX-512 F + BW + VL + VNNI with the OS saving the ZMM state: the CPU can run the AVX-512 VNNI int8 GEMV of Q8
// weights (cpu/gemv_avx512.cpp, cpu/gemm.h Q8Gemv). Not a qwen3vl_cpu_feature bit: the C API does not report it.
bool cpu_has_avx512_vnni();

}  // namespace qwen3vl
