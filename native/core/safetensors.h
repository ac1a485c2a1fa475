// Reader for the safetensors format (https://github.com/huggingface/safetensors), hardened against corrupt and
// hostile files. Layout: 8-byte little-endian header length N, N bytes of UTF-8 JSON header, then the data section.
// The header is checked against every promise the format makes before any tensor is handed out:
//   - N <= 100 MB and 8 + N <= file size, checked before anything is allocated;
//   - the header is a UTF-8 JSON object starting with '{' (trailing spaces allowed), no duplicate names;
//   - "__metadata__" (optional) maps strings to strings;
//   - each tensor has exactly "dtype", "shape" (non-negative integers) and "data_offsets" [begin, end], begin <= end;
//   - element count x dtype size is computed with overflow checks and equals end - begin;
//   - sorted by offset, the tensors tile the data section exactly: no overlap, no gap, no trailing bytes.
// Every failure throws qwen3vl::Error: IO_ERROR when the file cannot be opened or mapped, BAD_FORMAT otherwise, with a
// message naming the file and, where relevant, the tensor.
//
// Tensor data stays in the mapping (no copies). The format does not align the data section: a tensor's data pointer
// may be unaligned for its element type, so read it with memcpy or an unaligned-safe load.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "platform.h"

namespace qwen3vl {

// Every dtype the safetensors format defines. Only BF16, F16 and F32 are supported as model weights; the others parse
// (so a file holding them is not "corrupt") but are refused with UNSUPPORTED by require_weight_dtype().
enum class SafetensorsDType {
    BOOL, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, I16, U16, F16, BF16, I32, U32, F32, C64, F64, I64, U64, F4, F6_E2M3, F6_E3M2
};

const char* dtype_name(SafetensorsDType dtype);
// Size of one element in bits (4 for F4, 6 for the F6 types, a multiple of 8 otherwise).
unsigned dtype_bits(SafetensorsDType dtype);
bool is_weight_dtype(SafetensorsDType dtype);  // BF16, F16, F32
// Parses a dtype string as written in a header; returns false for an unknown string.
bool parse_dtype(const std::string& text, SafetensorsDType* out);

struct TensorView {
    std::string name;
    SafetensorsDType dtype = SafetensorsDType::F32;
    std::vector<int64_t> shape;  // empty for a 0-dim scalar
    const uint8_t* data = nullptr;  // into the mapping (or the caller's buffer); possibly unaligned
    uint64_t bytes = 0;
    std::string file;  // the file (or buffer name) it came from, for messages

    uint64_t element_count() const;  // product of shape; 1 for a scalar
    std::string shape_string() const;  // "[2, 3]"
};

// Throws UNSUPPORTED naming the tensor and file when the tensor's dtype is not a supported weight dtype.
void require_weight_dtype(const TensorView& tensor);

class SafetensorsFile {
public:
    static constexpr uint64_t kMaxHeaderBytes = 100ull * 1000 * 1000;

    // Maps and validates a file. The views stay valid for the life of this object (moves included).
    static SafetensorsFile open(const std::string& path);
    // Validates a buffer already in memory; `name` is used in messages. The caller keeps the buffer alive for as long
    // as the views are used. This is the entry point of the fuzzer.
    static SafetensorsFile parse(const uint8_t* data, size_t size, const std::string& name);

    SafetensorsFile(SafetensorsFile&&) noexcept = default;
    SafetensorsFile& operator=(SafetensorsFile&&) noexcept = default;
    SafetensorsFile(const SafetensorsFile&) = delete;
    SafetensorsFile& operator=(const SafetensorsFile&) = delete;

    const std::string& name() const { return name_; }
    // Tensors sorted by data offset (the order of the data section).
    const std::vector<TensorView>& tensors() const { return tensors_; }
    const TensorView* find(const std::string& tensor_name) const;  // nullptr when absent
    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    uint64_t header_bytes() const { return header_bytes_; }  // N
    uint64_t data_section_offset() const { return 8 + header_bytes_; }

private:
    SafetensorsFile() = default;
    void parse_buffer(const uint8_t* data, uint64_t size);

    std::string name_;
    std::unique_ptr<MappedFile> mapping_;  // null for parse()
    std::vector<TensorView> tensors_;
    std::unordered_map<std::string, size_t> index_;
    std::map<std::string, std::string> metadata_;
    uint64_t header_bytes_ = 0;
};

}  // namespace qwen3vl
