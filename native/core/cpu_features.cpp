#include "cpu_features.h"

#include <cstdlib>
#include <cstring>

#include "platform.h"
#include "qwen3vl.h"

namespace qwen3vl {

uint32_t detect_cpu_features() {
    if (!is_x86()) return 0;
    const CpuidRegs leaf0 = cpuid(0, 0);
    const CpuidRegs leaf1 = cpuid(1, 0);
    const CpuidRegs leaf7 = leaf0.eax >= 7 ? cpuid(7, 0) : CpuidRegs{};
    const CpuidRegs leaf7_1 = leaf0.eax >= 7 ? cpuid(7, 1) : CpuidRegs{};
    const uint64_t xcr0 = xgetbv0();
    const bool os_avx = (xcr0 & 0x6) == 0x6;              // XMM and YMM state saved
    const bool os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;  // opmask, ZMM_Hi256, Hi16_ZMM

    uint32_t f = 0;
    if (leaf1.ecx & (1u << 20)) f |= QWEN3VL_CPU_SSE42;
    if (os_avx && (leaf1.ecx & (1u << 28))) f |= QWEN3VL_CPU_AVX;
    if (os_avx && (leaf7.ebx & (1u << 5))) f |= QWEN3VL_CPU_AVX2;
    if (os_avx && (leaf1.ecx & (1u << 12))) f |= QWEN3VL_CPU_FMA;
    if (os_avx && (leaf1.ecx & (1u << 29))) f |= QWEN3VL_CPU_F16C;
    if (os_avx512 && (leaf7.ebx & (1u << 16))) f |= QWEN3VL_CPU_AVX512F;
    if (os_avx512 && (leaf7.ebx & (1u << 30))) f |= QWEN3VL_CPU_AVX512BW;
    if (os_avx512 && (leaf7.ebx & (1u << 31))) f |= QWEN3VL_CPU_AVX512VL;
    if (os_avx512 && (leaf7_1.eax & (1u << 5))) f |= QWEN3VL_CPU_AVX512BF16;
    return f;
}

bool cpu_has_avx512_vnni() {
    const uint32_t need = QWEN3VL_CPU_AVX512F | QWEN3VL_CPU_AVX512BW | QWEN3VL_CPU_AVX512VL;
    if ((detect_cpu_features() & need) != need) return false;  // includes the OS's ZMM state
    return (cpuid(7, 0).ecx & (1u << 11)) != 0;                 // CPUID.(7, 0):ECX.AVX512_VNNI
}

static CpuKernels choose() {
    const uint32_t f = detect_cpu_features();
    const uint32_t avx2_set = QWEN3VL_CPU_AVX2 | QWEN3VL_CPU_FMA | QWEN3VL_CPU_F16C;
    CpuKernels best = (f & avx2_set) == avx2_set ? CpuKernels::Avx2 : CpuKernels::Scalar;
    const char* requested = std::getenv("QWEN3VL_CPU_KERNELS");
    if (requested && std::strcmp(requested, "scalar") == 0) best = CpuKernels::Scalar;
    return best;
}

CpuKernels cpu_kernels() {
    static const CpuKernels chosen = choose();
    return chosen;
}

const char* cpu_kernels_name(CpuKernels k) {
    switch (k) {
        case CpuKernels::Avx2: return "avx2";
        case CpuKernels::Scalar: return "scalar";
    }
    return "scalar";
}

}  // namespace qwen3vl
