#include "safetensors.h"

#include <algorithm>
#include <limits>

#include "error.h"
#include "json.h"

namespace qwen3vl {

namespace {

struct DTypeInfo {
    SafetensorsDType dtype;
    const char* name;
    unsigned bits;
};

const DTypeInfo kDTypes[] = {
    {SafetensorsDType::BOOL, "BOOL", 8},       {SafetensorsDType::U8, "U8", 8},
    {SafetensorsDType::I8, "I8", 8},           {SafetensorsDType::F8_E5M2, "F8_E5M2", 8},
    {SafetensorsDType::F8_E4M3, "F8_E4M3", 8}, {SafetensorsDType::F8_E8M0, "F8_E8M0", 8},
    {SafetensorsDType::I16, "I16", 16},        {SafetensorsDType::U16, "U16", 16},
    {SafetensorsDType::F16, "F16", 16},        {SafetensorsDType::BF16, "BF16", 16},
    {SafetensorsDType::I32, "I32", 32},        {SafetensorsDType::U32, "U32", 32},
    {SafetensorsDType::F32, "F32", 32},        {SafetensorsDType::C64, "C64", 64},
    {SafetensorsDType::F64, "F64", 64},        {SafetensorsDType::I64, "I64", 64},
    {SafetensorsDType::U64, "U64", 64},        {SafetensorsDType::F4, "F4", 4},
    {SafetensorsDType::F6_E2M3, "F6_E2M3", 6}, {SafetensorsDType::F6_E3M2, "F6_E3M2", 6},
};

const DTypeInfo& info(SafetensorsDType dtype) {
    for (const DTypeInfo& d : kDTypes)
        if (d.dtype == dtype) return d;
    fail(QWEN3VL_STATUS_INTERNAL_ERROR, "safetensors: unknown dtype enumerator");
}

uint64_t read_le64(const uint8_t* p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

// Reads a JSON integer that must be >= 0; `what` names it in the message.
uint64_t non_negative(const json::Value& v, const std::string& where, const char* what) {
    if (!v.is_int()) fail(QWEN3VL_STATUS_BAD_FORMAT, where + ": " + what + " must be an integer, got " +
                                                         json::type_name(v.type()));
    if (v.as_int() < 0) fail(QWEN3VL_STATUS_BAD_FORMAT, where + ": " + what + " is negative (" +
                                                           std::to_string(v.as_int()) + ")");
    return static_cast<uint64_t>(v.as_int());
}

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) {
    if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return true;
    *out = a * b;
    return false;
}

}  // namespace

const char* dtype_name(SafetensorsDType dtype) { return info(dtype).name; }

unsigned dtype_bits(SafetensorsDType dtype) { return info(dtype).bits; }

bool is_weight_dtype(SafetensorsDType dtype) {
    return dtype == SafetensorsDType::BF16 || dtype == SafetensorsDType::F16 || dtype == SafetensorsDType::F32;
}

bool parse_dtype(const std::string& text, SafetensorsDType* out) {
    for (const DTypeInfo& d : kDTypes) {
        if (text == d.name) {
            *out = d.dtype;
            return true;
        }
    }
    return false;
}

uint64_t TensorView::element_count() const {
    uint64_t n = 1;
    for (int64_t d : shape) n *= static_cast<uint64_t>(d);  // validated against overflow when parsed
    return n;
}

std::string TensorView::shape_string() const {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) {
        if (i) s += ", ";
        s += std::to_string(shape[i]);
    }
    return s + "]";
}

void require_weight_dtype(const TensorView& tensor) {
    if (!is_weight_dtype(tensor.dtype))
        fail(QWEN3VL_STATUS_UNSUPPORTED, tensor.file + ": tensor '" + tensor.name + "' has dtype " +
                                             dtype_name(tensor.dtype) + "; weights must be BF16, F16 or F32");
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
    SafetensorsFile f;
    f.name_ = path;
    f.mapping_.reset(new MappedFile(MappedFile::open(path)));
    f.parse_buffer(f.mapping_->data(), f.mapping_->size());
    return f;
}

SafetensorsFile SafetensorsFile::parse(const uint8_t* data, size_t size, const std::string& name) {
    if (data == nullptr && size != 0) fail(QWEN3VL_STATUS_INVALID_ARGUMENT, name + ": buffer is NULL");
    SafetensorsFile f;
    f.name_ = name;
    f.parse_buffer(data, size);
    return f;
}

const TensorView* SafetensorsFile::find(const std::string& tensor_name) const {
    auto it = index_.find(tensor_name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
}

void SafetensorsFile::parse_buffer(const uint8_t* data, uint64_t size) {
    const std::string& file = name_;
    auto bad = [&](const std::string& what) { fail(QWEN3VL_STATUS_BAD_FORMAT, file + ": " + what); };

    if (size < 8) bad("file too small for a safetensors header (" + std::to_string(size) + " bytes)");
    const uint64_t n = read_le64(data);
    if (n > kMaxHeaderBytes)
        bad("header length " + std::to_string(n) + " exceeds the limit of " + std::to_string(kMaxHeaderBytes) + " bytes");
    if (n > size - 8)
        bad("header length " + std::to_string(n) + " exceeds the file size (" + std::to_string(size) + " bytes)");
    header_bytes_ = n;

    const char* header = reinterpret_cast<const char*>(data + 8);
    const size_t header_size = static_cast<size_t>(n);
    if (header_size == 0 || header[0] != '{') bad("header does not start with '{'");
    size_t bad_utf8 = json::find_invalid_utf8(header, header_size);
    if (bad_utf8 != header_size) bad("header is not valid UTF-8 (byte " + std::to_string(bad_utf8) + " of the header)");

    json::ParseOptions options;
    options.reject_duplicate_keys = true;  // a duplicate tensor name is reported as "duplicate key 'name'"
    const json::Value root = json::parse(header, header_size, file + " (safetensors header)", options);
    if (!root.is_object()) bad("header is not a JSON object");

    const uint8_t* data_section = data + 8 + n;
    const uint64_t data_size = size - 8 - n;

    tensors_.reserve(root.as_object().size());
    for (const json::Member& member : root.as_object()) {
        if (member.key == "__metadata__") {
            if (!member.value.is_object()) bad("__metadata__ is not an object");
            for (const json::Member& m : member.value.as_object()) {
                if (!m.value.is_string()) bad("__metadata__ value of '" + m.key + "' is not a string");
                metadata_[m.key] = m.value.as_string();
            }
            continue;
        }
        const std::string where = file + ": tensor '" + member.key + "'";
        auto bad_tensor = [&](const std::string& what) { fail(QWEN3VL_STATUS_BAD_FORMAT, where + ": " + what); };
        if (!member.value.is_object()) bad_tensor("entry is not an object");

        const json::Value* dtype = nullptr;
        const json::Value* shape = nullptr;
        const json::Value* offsets = nullptr;
        for (const json::Member& field : member.value.as_object()) {
            if (field.key == "dtype") dtype = &field.value;
            else if (field.key == "shape") shape = &field.value;
            else if (field.key == "data_offsets") offsets = &field.value;
            else bad_tensor("unexpected key '" + field.key + "'");
        }
        if (!dtype) bad_tensor("missing key 'dtype'");
        if (!shape) bad_tensor("missing key 'shape'");
        if (!offsets) bad_tensor("missing key 'data_offsets'");

        TensorView view;
        view.name = member.key;
        view.file = file;
        if (!dtype->is_string()) bad_tensor("dtype is not a string");
        if (!parse_dtype(dtype->as_string(), &view.dtype)) bad_tensor("unknown dtype '" + dtype->as_string() + "'");

        if (!shape->is_array()) bad_tensor("shape is not an array");
        uint64_t elements = 1;
        bool overflow = false;
        for (const json::Value& dim : shape->as_array()) {
            uint64_t d = non_negative(dim, where, "shape dimension");
            view.shape.push_back(static_cast<int64_t>(d));
            overflow = overflow || mul_overflows(elements, d, &elements);
        }
        if (std::find(view.shape.begin(), view.shape.end(), 0) != view.shape.end()) {
            elements = 0;  // an empty tensor is valid whatever its other dimensions
            overflow = false;
        }
        uint64_t bits = 0;
        if (overflow || mul_overflows(elements, dtype_bits(view.dtype), &bits))
            bad_tensor("element count of shape " + view.shape_string() + " overflows");
        if (bits % 8 != 0) bad_tensor("shape " + view.shape_string() + " does not fill whole bytes");
        const uint64_t bytes = bits / 8;

        if (!offsets->is_array() || offsets->as_array().size() != 2)
            bad_tensor("data_offsets is not an array of two integers");
        const uint64_t begin = non_negative(offsets->as_array()[0], where, "data_offsets begin");
        const uint64_t end = non_negative(offsets->as_array()[1], where, "data_offsets end");
        if (begin > end)
            bad_tensor("data_offsets begin " + std::to_string(begin) + " is after end " + std::to_string(end));
        if (end > data_size)
            bad_tensor("data_offsets end " + std::to_string(end) + " is outside the data section (" +
                       std::to_string(data_size) + " bytes)");
        if (end - begin != bytes)
            bad_tensor("data_offsets span " + std::to_string(end - begin) + " bytes but " + dtype_name(view.dtype) +
                       " " + view.shape_string() + " needs " + std::to_string(bytes));
        view.data = data_section + begin;
        view.bytes = bytes;
        tensors_.push_back(std::move(view));
    }

    // The format requires the tensors to tile the data section: sorted by offset, each starts where the previous ends.
    auto begin_of = [&](const TensorView& t) { return static_cast<uint64_t>(t.data - data_section); };
    std::stable_sort(tensors_.begin(), tensors_.end(), [&](const TensorView& a, const TensorView& b) {
        return begin_of(a) != begin_of(b) ? begin_of(a) < begin_of(b) : a.bytes < b.bytes;
    });
    uint64_t expected = 0;
    const TensorView* previous = nullptr;
    for (const TensorView& t : tensors_) {
        const uint64_t begin = begin_of(t);
        if (begin < expected)
            bad("tensor '" + t.name + "' (bytes " + std::to_string(begin) + ".." + std::to_string(begin + t.bytes) +
                ") overlaps tensor '" + previous->name + "'");
        if (begin > expected)
            bad("gap of " + std::to_string(begin - expected) + " bytes before tensor '" + t.name + "' at offset " +
                std::to_string(begin));
        expected = begin + t.bytes;
        previous = &t;
    }
    if (expected != data_size)
        bad(std::to_string(data_size - expected) + " trailing bytes after the last tensor (data section " +
            std::to_string(data_size) + " bytes, tensors end at " + std::to_string(expected) + ")");

    index_.reserve(tensors_.size());
    for (size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
}

}  // namespace qwen3vl
