// A small strict JSON parser (RFC 8259) into a DOM, for safetensors headers and the Hugging Face config files.
//
// Strict: UTF-8 is validated (no overlongs, no surrogates, nothing above U+10FFFF), no byte-order mark, no comments,
// no trailing commas, no leading zeros, no control characters inside strings, nothing but whitespace after the value.
// Numbers without fraction or exponent that fit in int64 are kept exactly (Type::Int); every other number becomes a
// double (Type::Double), and a number outside the double range is rejected. Objects keep insertion order.
// Every failure throws qwen3vl::Error(QWEN3VL_STATUS_BAD_FORMAT) naming the source and the byte offset.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace qwen3vl {
namespace json {

enum class Type { Null, Bool, Int, Double, String, Array, Object };

const char* type_name(Type type);

struct Member;

class Value {
public:
    // std::vector of an incomplete element type is allowed since C++17.
    using Array = std::vector<Value>;
    using Object = std::vector<Member>;  // insertion order

    Value() = default;  // null
    static Value make_bool(bool b);
    static Value make_int(int64_t i);
    static Value make_double(double d);
    static Value make_string(std::string s);
    static Value make_array(Array a);
    static Value make_object(Object o);

    Type type() const { return type_; }
    bool is_null() const { return type_ == Type::Null; }
    bool is_bool() const { return type_ == Type::Bool; }
    bool is_int() const { return type_ == Type::Int; }
    bool is_number() const { return type_ == Type::Int || type_ == Type::Double; }
    bool is_string() const { return type_ == Type::String; }
    bool is_array() const { return type_ == Type::Array; }
    bool is_object() const { return type_ == Type::Object; }

    // Typed accessors; a type mismatch throws BAD_FORMAT ("expected X, got Y").
    bool as_bool() const;
    int64_t as_int() const;
    double as_double() const;  // Int converts
    const std::string& as_string() const;
    const Array& as_array() const;
    const Object& as_object() const;

    // Object member by key (first match), nullptr when absent; throws BAD_FORMAT when this is not an object.
    const Value* find(const std::string& key) const;

private:
    Type type_ = Type::Null;
    bool bool_ = false;
    int64_t int_ = 0;
    double double_ = 0.0;
    std::string string_;
    Array array_;
    Object object_;
};

struct Member {
    std::string key;
    Value value;
};

struct ParseOptions {
    bool reject_duplicate_keys = true;
    int max_depth = 128;  // nesting of arrays and objects
};

// `source` names the document in error messages (a file name, "safetensors header of X").
Value parse(const char* data, size_t size, const std::string& source, const ParseOptions& options = ParseOptions());
Value parse(const std::string& text, const std::string& source, const ParseOptions& options = ParseOptions());

// Validates UTF-8 (RFC 3629); returns the offset of the first bad byte, or `size` when the whole buffer is valid.
size_t find_invalid_utf8(const char* data, size_t size);

}  // namespace json
}  // namespace qwen3vl
