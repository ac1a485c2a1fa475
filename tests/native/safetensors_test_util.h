// Test helpers: write safetensors files (valid or deliberately broken) and temporary folders.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace qwen3vl {
namespace testing {

struct TensorSpec {
    std::string name;
    std::string dtype;  // "BF16", "F32", ...
    std::vector<int64_t> shape;
};

inline uint64_t dtype_bytes(const std::string& dtype) {
    if (dtype == "F64" || dtype == "I64" || dtype == "U64" || dtype == "C64") return 8;
    if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
    if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
    return 1;
}

inline std::string shape_json(const std::vector<int64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
    return s + "]";
}

// 8-byte little-endian length + header + data.
inline std::string assemble(const std::string& header, const std::string& data, uint64_t header_length) {
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((header_length >> (8 * i)) & 0xFF);
    return out + header + data;
}

inline std::string assemble(const std::string& header, const std::string& data) {
    return assemble(header, data, header.size());
}

// A valid file: tensors laid out back to back in the given order, data filled with a byte pattern.
inline std::string build_safetensors(const std::vector<TensorSpec>& tensors, const std::string& metadata_json = "") {
    std::string header = "{";
    if (!metadata_json.empty()) header += "\"__metadata__\":" + metadata_json;
    uint64_t offset = 0;
    for (const TensorSpec& t : tensors) {
        uint64_t n = dtype_bytes(t.dtype);
        for (int64_t d : t.shape) n *= static_cast<uint64_t>(d);
        if (header.size() > 1) header += ",";
        header += "\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":" + shape_json(t.shape) +
                  ",\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + n) + "]}";
        offset += n;
    }
    header += "}";
    while ((8 + header.size()) % 8) header += ' ';  // the alignment padding safetensors writes
    std::string data(offset, '\0');
    for (uint64_t i = 0; i < offset; ++i) data[i] = static_cast<char>(i * 31 + 7);
    return assemble(header, data);
}

inline void write_file(const std::filesystem::path& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A fresh folder under the system temp directory, removed on destruction.
class TempDir {
public:
    TempDir() {
        std::random_device rd;
        path_ = std::filesystem::temp_directory_path() / ("qwen3vl_test_" + std::to_string(rd()) + std::to_string(rd()));
        std::filesystem::create_directories(path_);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::filesystem::path& path() const { return path_; }
    std::string file(const std::string& name) const { return (path_ / name).string(); }

private:
    std::filesystem::path path_;
};

}  // namespace testing
}  // namespace qwen3vl
