// Block quantization of weights (issue 14), the host reference every backend's kernels and the loader share.
//
// Q8: a weight row is cut into blocks of kQ8Block = 32 consecutive elements; a block stores 32 int8 values q in
// [-127, 127] and one f16 scale d, and stands for w = d * q (8.5 bits per weight). d is max|w| / 127 rounded to f16
// and q = round(w / d) with that rounded d, clamped to +-127, so the scale's own rounding is absorbed by q: per
// element |w - d q| <= d / 2 + 127 |max|w| / 127 - d| (the second term is at most 2^-11 max|w|, f16's relative
// rounding, and 0 whenever the clamp is not reached). For weights spread like a trained layer's (near Gaussian),
// the relative RMS error is about (max|w| / 127) / sqrt(12) / rms(w) ~ 5e-3 for blocks of 32.
// Why blocks of 32 along a row with separate planes (all int8 values, then all scales): a block is one AVX2 register
// of int8 and 32 lanes of a CUDA warp; the planes keep both loads aligned and coalesced, and map one to one onto the
// two tensors (weight, scale) of a quantized safetensors file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace qwen3vl {

constexpr int64_t kQ8Block = 32;

// Quantizes n weights (n a multiple of kQ8Block) into q[n] and d[n / kQ8Block] (f16 bits). A non-finite weight or a
// block whose scale overflows f16 (max|w| > 65504 * 127) is INVALID_ARGUMENT naming the element / block.
void quantize_q8(const float* w, int64_t n, int8_t* q, uint16_t* d);

// The same for row `row` of a matrix of `cols` columns: messages name the weight [row, column] and the block
// [row, block].
void quantize_q8_row(const float* w, int64_t cols, int64_t row, int8_t* q, uint16_t* d);

// The messages every backend's quantizer raises, so that they name a bad weight alike.
std::string q8_overflow_message(const std::string& block);

// KV cache rows in Q8 (n a multiple of kQ8Block): each block quantized as quantize_q8 does, except that a block holding
// a NaN or infinity, or whose scale overflows f16, is no error here (the model's numbers are checked at the logits):
// it is stored as zeros with a NaN scale, so that attention over it gives NaN as a 16-bit cache would. The CUDA
// kernels that write cache rows compute the same bits (IEEE division, round to nearest even).
constexpr uint16_t kQ8NanScale = 0x7e00;
void quantize_kv_q8(const float* x, int64_t n, int8_t* q, uint16_t* d);

// The weights the blocks stand for: out[i] = f16(d[i / kQ8Block]) * q[i], exactly in f32.
void dequantize_q8(const int8_t* q, const uint16_t* d, int64_t n, float* out);

// Q4 (the format is documented at QWEN3VL_DTYPE_Q4): super-blocks of kQ4Super = 256 weights along a row, each
// 8 groups of kQ4Group = 32 with a 6-bit scale and a 6-bit min scaled by the super-block's f16 d and dmin: 4.5 bits
// per weight, as llama.cpp's Q4_K. Why a min and two levels of scales rather than one f16 scale per 32 (Q4_0, also 4.5
// bits): trained weights are heavy-tailed and not centred per group; measured on 2^20 weights each with groups
// shifted off zero (Q4Format.ErrorIsBelowQ4_0sAtTheSameBits prints it), relative RMS error Gaussian 0.0716 (Q4_0's
// max-magnitude scale: 0.0858), Student-t(4) 0.0873 (0.1153). The per-group fit is least squares over 5 candidate grids (core/quant_q4_impl.h), the same bits on
// every backend. 4.5 bits and not Q4_1's 5: the 8B decoder in 4.5 bits is 3.9 GB, what an 8 GB card can hold with the
// vision tower, the q8 lm_head and a 4k-token KV cache.
constexpr int64_t kQ4Super = 256;
constexpr int64_t kQ4Group = 32;
constexpr int64_t kQ4HeaderBytes = 16;

// Quantizes row `row` of a matrix of cols weights (a multiple of kQ4Super) into nib[cols / 2] and headers[cols / 256 *
// 16]. A non-finite weight or a super-block whose d or dmin overflows f16 is INVALID_ARGUMENT naming it.
void quantize_q4_row(const float* w, int64_t cols, int64_t row, uint8_t* nib, uint8_t* headers);
void quantize_q4(const float* w, int64_t n, uint8_t* nib, uint8_t* headers);
std::string q4_overflow_message(const std::string& superblock);

// Group g (0..7) of a super-block header: its 6-bit scale and min.
inline void q4_group_scale_min(const uint8_t* header, int g, int* sc, int* mn) {
    *sc = header[4 + g] & 63;
    *mn = (header[4 + g] >> 6) | (((header[12 + g / 2] >> (4 * (g & 1))) & 15) << 2);
}

// The weights the super-blocks stand for, computed in f32 as (d * sc) * q - (dmin * mn) (two products and a
// difference, each rounded: the value every kernel is tested against).
void dequantize_q4(const uint8_t* nib, const uint8_t* headers, int64_t n, float* out);

// ---- FP8 E4M3 (OCP "e4m3fn", as safetensors' F8_E4M3 and transformers' fine-grained FP8 checkpoints store it): sign,
// 4 exponent bits (bias 7), 3 mantissa bits; no infinities, S.1111.111 is NaN, the largest value 448.

// The value of one byte, exactly (NaN for the NaN codes).
float e4m3_to_f32(uint8_t v);

// Rows [r0, r0 + rows) of a block-scaled FP8 weight [N, K] as f32 (exactly the product fp8 * scale rounded to f32, as
// transformers dequantizes in fp32): out[(r - r0) * K + k] = e4m3(w[r * K + k]) * scale[r / block_rows][k / block_cols],
// the scales [ceil(N / block_rows), scale_cols] f32 or bf16 at any alignment. A NaN byte is INVALID_ARGUMENT naming the
// weight [r, k].
void dequantize_fp8_rows(const uint8_t* w, int64_t K, int64_t r0, int64_t rows, const uint8_t* scales, bool scales_bf16,
                         int64_t scale_cols, int64_t block_rows, int64_t block_cols, float* out);

}  // namespace qwen3vl
