#include "json.h"

#include <charconv>
#include <cmath>
#include <set>
#include <system_error>

#include "error.h"

namespace qwen3vl {
namespace json {

const char* type_name(Type type) {
    switch (type) {
        case Type::Null: return "null";
        case Type::Bool: return "a boolean";
        case Type::Int: return "an integer";
        case Type::Double: return "a number";
        case Type::String: return "a string";
        case Type::Array: return "an array";
        case Type::Object: return "an object";
    }
    return "?";
}

Value Value::make_bool(bool b) {
    Value v;
    v.type_ = Type::Bool;
    v.bool_ = b;
    return v;
}

Value Value::make_int(int64_t i) {
    Value v;
    v.type_ = Type::Int;
    v.int_ = i;
    return v;
}

Value Value::make_double(double d) {
    Value v;
    v.type_ = Type::Double;
    v.double_ = d;
    return v;
}

Value Value::make_string(std::string s) {
    Value v;
    v.type_ = Type::String;
    v.string_ = std::move(s);
    return v;
}

Value Value::make_array(Array a) {
    Value v;
    v.type_ = Type::Array;
    v.array_ = std::move(a);
    return v;
}

Value Value::make_object(Object o) {
    Value v;
    v.type_ = Type::Object;
    v.object_ = std::move(o);
    return v;
}

namespace {

[[noreturn]] void type_mismatch(Type expected, Type got) {
    fail(QWEN3VL_STATUS_BAD_FORMAT, std::string("JSON value: expected ") + type_name(expected) + ", got " + type_name(got));
}

}  // namespace

bool Value::as_bool() const {
    if (type_ != Type::Bool) type_mismatch(Type::Bool, type_);
    return bool_;
}

int64_t Value::as_int() const {
    if (type_ != Type::Int) type_mismatch(Type::Int, type_);
    return int_;
}

double Value::as_double() const {
    if (type_ == Type::Int) return static_cast<double>(int_);
    if (type_ != Type::Double) type_mismatch(Type::Double, type_);
    return double_;
}

const std::string& Value::as_string() const {
    if (type_ != Type::String) type_mismatch(Type::String, type_);
    return string_;
}

const Value::Array& Value::as_array() const {
    if (type_ != Type::Array) type_mismatch(Type::Array, type_);
    return array_;
}

const Value::Object& Value::as_object() const {
    if (type_ != Type::Object) type_mismatch(Type::Object, type_);
    return object_;
}

const Value* Value::find(const std::string& key) const {
    for (const Member& m : as_object())
        if (m.key == key) return &m.value;
    return nullptr;
}

namespace {

// Length of the valid UTF-8 sequence starting at p (RFC 3629 table 3-7), 0 when it is not valid.
size_t utf8_sequence_length(const unsigned char* p, size_t left) {
    const unsigned c = p[0];
    if (c < 0x80) return 1;
    auto cont = [&](size_t i, unsigned lo, unsigned hi) { return i < left && p[i] >= lo && p[i] <= hi; };
    if (c >= 0xC2 && c <= 0xDF) return cont(1, 0x80, 0xBF) ? 2 : 0;
    if (c == 0xE0) return cont(1, 0xA0, 0xBF) && cont(2, 0x80, 0xBF) ? 3 : 0;
    if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) return cont(1, 0x80, 0xBF) && cont(2, 0x80, 0xBF) ? 3 : 0;
    if (c == 0xED) return cont(1, 0x80, 0x9F) && cont(2, 0x80, 0xBF) ? 3 : 0;  // excludes surrogates
    if (c == 0xF0) return cont(1, 0x90, 0xBF) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) ? 4 : 0;
    if (c >= 0xF1 && c <= 0xF3) return cont(1, 0x80, 0xBF) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) ? 4 : 0;
    if (c == 0xF4) return cont(1, 0x80, 0x8F) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) ? 4 : 0;
    return 0;
}

void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

class Parser {
public:
    Parser(const char* data, size_t size, const std::string& source, const ParseOptions& options)
        : p_(reinterpret_cast<const unsigned char*>(data)), size_(size), source_(source), options_(options) {}

    Value parse_document() {
        skip_whitespace();
        if (pos_ == size_) error("empty document");
        Value v = parse_value(0);
        skip_whitespace();
        if (pos_ != size_) error("unexpected data after the value");
        return v;
    }

private:
    [[noreturn]] void error(const std::string& what) const { error_at(pos_, what); }

    [[noreturn]] void error_at(size_t offset, const std::string& what) const {
        fail(QWEN3VL_STATUS_BAD_FORMAT, source_ + ": invalid JSON at byte " + std::to_string(offset) + ": " + what);
    }

    bool at_end() const { return pos_ >= size_; }

    void skip_whitespace() {
        while (pos_ < size_ && (p_[pos_] == ' ' || p_[pos_] == '\t' || p_[pos_] == '\n' || p_[pos_] == '\r')) ++pos_;
    }

    void expect_literal(const char* word) {
        size_t start = pos_;
        for (const char* c = word; *c; ++c, ++pos_)
            if (pos_ >= size_ || p_[pos_] != static_cast<unsigned char>(*c)) error_at(start, "invalid literal");
    }

    Value parse_value(int depth) {
        if (at_end()) error("unexpected end of input, expected a value");
        switch (p_[pos_]) {
            case '{': return parse_object(depth + 1);
            case '[': return parse_array(depth + 1);
            case '"': return Value::make_string(parse_string());
            case 't': expect_literal("true"); return Value::make_bool(true);
            case 'f': expect_literal("false"); return Value::make_bool(false);
            case 'n': expect_literal("null"); return Value();
            default:
                if (p_[pos_] == '-' || (p_[pos_] >= '0' && p_[pos_] <= '9')) return parse_number();
                error("unexpected character, expected a value");
        }
    }

    void check_depth(int depth) const {
        if (depth > options_.max_depth)
            error("nesting deeper than " + std::to_string(options_.max_depth) + " levels");
    }

    Value parse_object(int depth) {
        check_depth(depth);
        ++pos_;  // '{'
        Value::Object members;
        std::set<std::string> seen;
        skip_whitespace();
        if (!at_end() && p_[pos_] == '}') {
            ++pos_;
            return Value::make_object(std::move(members));
        }
        for (;;) {
            skip_whitespace();
            if (at_end() || p_[pos_] != '"') error("expected a string key");
            size_t key_offset = pos_;
            std::string key = parse_string();
            if (options_.reject_duplicate_keys && !seen.insert(key).second)
                error_at(key_offset, "duplicate key '" + key + "'");
            skip_whitespace();
            if (at_end() || p_[pos_] != ':') error("expected ':'");
            ++pos_;
            skip_whitespace();
            Value v = parse_value(depth);
            members.push_back(Member{std::move(key), std::move(v)});
            skip_whitespace();
            if (at_end()) error("unexpected end of input in an object");
            if (p_[pos_] == ',') {
                ++pos_;
                continue;
            }
            if (p_[pos_] == '}') {
                ++pos_;
                return Value::make_object(std::move(members));
            }
            error("expected ',' or '}'");
        }
    }

    Value parse_array(int depth) {
        check_depth(depth);
        ++pos_;  // '['
        Value::Array items;
        skip_whitespace();
        if (!at_end() && p_[pos_] == ']') {
            ++pos_;
            return Value::make_array(std::move(items));
        }
        for (;;) {
            skip_whitespace();
            items.push_back(parse_value(depth));
            skip_whitespace();
            if (at_end()) error("unexpected end of input in an array");
            if (p_[pos_] == ',') {
                ++pos_;
                continue;
            }
            if (p_[pos_] == ']') {
                ++pos_;
                return Value::make_array(std::move(items));
            }
            error("expected ',' or ']'");
        }
    }

    unsigned parse_hex4() {
        if (size_ - pos_ < 4) error("truncated \\u escape");
        unsigned v = 0;
        for (int i = 0; i < 4; ++i) {
            unsigned c = p_[pos_ + i];
            unsigned d;
            if (c >= '0' && c <= '9') d = c - '0';
            else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
            else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
            else error_at(pos_ + i, "invalid hex digit in \\u escape");
            v = v * 16 + d;
        }
        pos_ += 4;
        return v;
    }

    std::string parse_string() {
        ++pos_;  // opening quote
        std::string out;
        for (;;) {
            if (at_end()) error("unterminated string");
            const unsigned c = p_[pos_];
            if (c == '"') {
                ++pos_;
                return out;
            }
            if (c < 0x20) error("control character in a string");
            if (c == '\\') {
                size_t escape_offset = pos_;
                ++pos_;
                if (at_end()) error("unterminated escape");
                const unsigned e = p_[pos_++];
                switch (e) {
                    case '"': out += '"'; break;
                    case '\\': out += '\\'; break;
                    case '/': out += '/'; break;
                    case 'b': out += '\b'; break;
                    case 'f': out += '\f'; break;
                    case 'n': out += '\n'; break;
                    case 'r': out += '\r'; break;
                    case 't': out += '\t'; break;
                    case 'u': {
                        uint32_t cp = parse_hex4();
                        if (cp >= 0xDC00 && cp <= 0xDFFF) error_at(escape_offset, "lone low surrogate in \\u escape");
                        if (cp >= 0xD800 && cp <= 0xDBFF) {
                            if (size_ - pos_ < 2 || p_[pos_] != '\\' || p_[pos_ + 1] != 'u')
                                error_at(escape_offset, "high surrogate not followed by a low surrogate");
                            pos_ += 2;
                            uint32_t low = parse_hex4();
                            if (low < 0xDC00 || low > 0xDFFF)
                                error_at(escape_offset, "high surrogate not followed by a low surrogate");
                            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                        }
                        append_utf8(out, cp);
                        break;
                    }
                    default: error_at(escape_offset, "invalid escape");
                }
                continue;
            }
            if (c < 0x80) {
                out += static_cast<char>(c);
                ++pos_;
                continue;
            }
            size_t n = utf8_sequence_length(p_ + pos_, size_ - pos_);
            if (n == 0) error("invalid UTF-8");
            out.append(reinterpret_cast<const char*>(p_ + pos_), n);
            pos_ += n;
        }
    }

    Value parse_number() {
        const size_t start = pos_;
        auto digit = [&]() { return !at_end() && p_[pos_] >= '0' && p_[pos_] <= '9'; };
        bool integral = true;
        if (p_[pos_] == '-') ++pos_;
        if (!digit()) error_at(start, "invalid number");
        if (p_[pos_] == '0') {
            ++pos_;
            if (digit()) error_at(start, "leading zero in a number");
        } else {
            while (digit()) ++pos_;
        }
        if (!at_end() && p_[pos_] == '.') {
            integral = false;
            ++pos_;
            if (!digit()) error_at(start, "invalid number: no digit after '.'");
            while (digit()) ++pos_;
        }
        if (!at_end() && (p_[pos_] == 'e' || p_[pos_] == 'E')) {
            integral = false;
            ++pos_;
            if (!at_end() && (p_[pos_] == '+' || p_[pos_] == '-')) ++pos_;
            if (!digit()) error_at(start, "invalid number: no digit in the exponent");
            while (digit()) ++pos_;
        }
        const char* first = reinterpret_cast<const char*>(p_ + start);
        const char* last = reinterpret_cast<const char*>(p_ + pos_);
        if (integral) {
            int64_t i = 0;
            auto r = std::from_chars(first, last, i);
            if (r.ec == std::errc() && r.ptr == last) return Value::make_int(i);
            // Integral but beyond int64: fall through to double.
        }
        double d = 0.0;
        auto r = std::from_chars(first, last, d);
        if (r.ec == std::errc::result_out_of_range || (r.ec == std::errc() && !std::isfinite(d)))
            error_at(start, "number out of range");
        if (r.ec != std::errc() || r.ptr != last) error_at(start, "invalid number");
        return Value::make_double(d);
    }

    const unsigned char* p_;
    size_t size_;
    size_t pos_ = 0;
    const std::string& source_;
    const ParseOptions& options_;
};

}  // namespace

Value parse(const char* data, size_t size, const std::string& source, const ParseOptions& options) {
    if (data == nullptr && size != 0) fail(QWEN3VL_STATUS_INVALID_ARGUMENT, source + ": JSON buffer is NULL");
    static const char empty = '\0';
    return Parser(data ? data : &empty, size, source, options).parse_document();
}

Value parse(const std::string& text, const std::string& source, const ParseOptions& options) {
    return parse(text.data(), text.size(), source, options);
}

size_t find_invalid_utf8(const char* data, size_t size) {
    const unsigned char* p = reinterpret_cast<const unsigned char*>(data);
    size_t i = 0;
    while (i < size) {
        size_t n = utf8_sequence_length(p + i, size - i);
        if (n == 0) return i;
        i += n;
    }
    return size;
}

}  // namespace json
}  // namespace qwen3vl
