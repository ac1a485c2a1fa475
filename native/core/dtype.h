// Element types and exact scalar conversions between them (round-to-nearest-even, NaN and infinities kept).
// These are the reference the vectorised CPU and CUDA conversions are tested against.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "qwen3vl.h"

namespace qwen3vl {

inline bool dtype_valid(int d) { return d >= QWEN3VL_DTYPE_F32 && d <= QWEN3VL_DTYPE_Q4; }

// A block-quantized weight format (core/quant.h): stored as planes, never converted element by element.
inline bool dtype_is_block(qwen3vl_dtype d) { return d == QWEN3VL_DTYPE_Q8 || d == QWEN3VL_DTYPE_Q4; }

inline size_t dtype_size(qwen3vl_dtype d) {
    switch (d) {
        case QWEN3VL_DTYPE_F32: return 4;
        case QWEN3VL_DTYPE_F16: return 2;
        case QWEN3VL_DTYPE_BF16: return 2;
        case QWEN3VL_DTYPE_I32: return 4;
        case QWEN3VL_DTYPE_Q8: return 1;  // the int8 plane's element; the scales follow (tensor_bytes)
        case QWEN3VL_DTYPE_Q4: return 0;  // half a byte per weight plus headers: only tensor_bytes sizes it
    }
    return 0;
}

inline const char* dtype_name(qwen3vl_dtype d) {
    switch (d) {
        case QWEN3VL_DTYPE_F32: return "f32";
        case QWEN3VL_DTYPE_F16: return "f16";
        case QWEN3VL_DTYPE_BF16: return "bf16";
        case QWEN3VL_DTYPE_I32: return "i32";
        case QWEN3VL_DTYPE_Q8: return "q8";
        case QWEN3VL_DTYPE_Q4: return "q4";
    }
    return "?";
}

// An element type that converts to and from f32 element by element.
inline bool dtype_is_float(qwen3vl_dtype d) { return d != QWEN3VL_DTYPE_I32 && !dtype_is_block(d); }

inline uint32_t f32_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

inline float f32_from_bits(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

inline float bf16_to_f32(uint16_t h) { return f32_from_bits(static_cast<uint32_t>(h) << 16); }

inline uint16_t f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return static_cast<uint16_t>(u >> 16);
}

inline float f16_to_f32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000u | (mant << 13));
    if (exp != 0) return f32_from_bits(sign | ((exp + 112u) << 23) | (mant << 13));
    if (mant == 0) return f32_from_bits(sign);
    int e = -1;  // subnormal: normalise
    do {
        ++e;
        mant <<= 1;
    } while ((mant & 0x400u) == 0);
    return f32_from_bits(sign | (static_cast<uint32_t>(112 - e) << 23) | ((mant & 0x3ffu) << 13));
}

inline uint16_t f32_to_f16(float f) {
    const uint32_t u = f32_bits(f);
    const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
    const uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((abs >> 13) & 0x3ffu));
    if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520 -> inf
    if (abs < 0x38800000u) {                                                  // below the smallest normal
        if (abs < 0x33000000u) return sign;                                   // rounds to zero
        const uint32_t exp = abs >> 23;
        const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
        const uint32_t shift = 126u - exp;  // 14..24
        uint32_t r = mant >> shift;
        const uint32_t rem = mant & ((1u << shift) - 1u);
        const uint32_t half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (r & 1u))) ++r;
        return static_cast<uint16_t>(sign | r);
    }
    uint32_t r = abs - 0x38000000u;  // rebias 127 -> 15
    r += 0xfffu + ((r >> 13) & 1u);
    return static_cast<uint16_t>(sign | (r >> 13));
}

// One element of dtype D at a possibly unaligned address (weights can point into a memory-mapped file), as f32.
template <qwen3vl_dtype D>
inline float load_f32(const uint8_t* p) {
    if (D == QWEN3VL_DTYPE_F32) {
        float v;
        std::memcpy(&v, p, 4);
        return v;
    }
    uint16_t h;
    std::memcpy(&h, p, 2);
    return D == QWEN3VL_DTYPE_BF16 ? bf16_to_f32(h) : f16_to_f32(h);
}

}  // namespace qwen3vl
