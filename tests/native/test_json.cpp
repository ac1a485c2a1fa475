#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "error.h"
#include "json.h"

using qwen3vl::Error;
namespace json = qwen3vl::json;

namespace {

json::Value parse(const std::string& text) { return json::parse(text, "test"); }

qwen3vl_status parse_status(const std::string& text, json::ParseOptions options = json::ParseOptions()) {
    try {
        json::parse(text, "test", options);
        return QWEN3VL_STATUS_OK;
    } catch (const Error& e) {
        return e.status();
    }
}

std::string parse_message(const std::string& text) {
    try {
        parse(text);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST(Json, ParsesScalars) {
    EXPECT_TRUE(parse("null").is_null());
    EXPECT_TRUE(parse("true").as_bool());
    EXPECT_FALSE(parse(" false ").as_bool());
    EXPECT_EQ(parse("\"hi\"").as_string(), "hi");
}

TEST(Json, KeepsIntegersExact) {
    EXPECT_EQ(parse("9223372036854775807").as_int(), std::numeric_limits<int64_t>::max());
    EXPECT_EQ(parse("-9223372036854775808").as_int(), std::numeric_limits<int64_t>::min());
    EXPECT_EQ(parse("151655").as_int(), 151655);
    EXPECT_EQ(parse("-0").as_int(), 0);
    // Beyond int64: a double.
    json::Value big = parse("9223372036854775808");
    EXPECT_EQ(big.type(), json::Type::Double);
    EXPECT_DOUBLE_EQ(big.as_double(), 9223372036854775808.0);
}

TEST(Json, ParsesDoubles) {
    EXPECT_EQ(parse("1.0").type(), json::Type::Double);
    EXPECT_DOUBLE_EQ(parse("1e-06").as_double(), 1e-6);
    EXPECT_DOUBLE_EQ(parse("5000000.0").as_double(), 5e6);
    EXPECT_DOUBLE_EQ(parse("-2.5E+3").as_double(), -2500.0);
    EXPECT_DOUBLE_EQ(parse("0.5").as_double(), 0.5);
    EXPECT_DOUBLE_EQ(parse("7").as_double(), 7.0);  // an Int reads as a double too
    EXPECT_THROW(parse("1.5").as_int(), Error);
}

TEST(Json, RejectsBadNumbers) {
    for (const char* text : {"01", "-", "1.", ".5", "1e", "1e+", "+1", "0x10", "1.0e", "--1", "NaN", "Infinity",
                             "-Infinity", "1e400", "-1e400", "1_000"}) {
        EXPECT_EQ(parse_status(text), QWEN3VL_STATUS_BAD_FORMAT) << text;
    }
}

TEST(Json, ParsesNestedStructuresInOrder) {
    json::Value v = parse(R"({"b": [1, 2.5, "x", null, true, {}], "a": {"c": []}})");
    ASSERT_TRUE(v.is_object());
    ASSERT_EQ(v.as_object().size(), 2u);
    EXPECT_EQ(v.as_object()[0].key, "b");  // insertion order, not sorted
    EXPECT_EQ(v.as_object()[1].key, "a");
    const json::Value::Array& b = v.find("b")->as_array();
    ASSERT_EQ(b.size(), 6u);
    EXPECT_EQ(b[0].as_int(), 1);
    EXPECT_DOUBLE_EQ(b[1].as_double(), 2.5);
    EXPECT_EQ(b[2].as_string(), "x");
    EXPECT_TRUE(b[3].is_null());
    EXPECT_TRUE(b[4].as_bool());
    EXPECT_TRUE(b[5].as_object().empty());
    EXPECT_TRUE(v.find("a")->find("c")->as_array().empty());
    EXPECT_EQ(v.find("zzz"), nullptr);
}

TEST(Json, RejectsMalformedDocuments) {
    for (const char* text : {"", " ", "{", "}", "[", "[1,]", "[,1]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "{'a':1}",
                             "[1 2]", "tru", "nul", "truex", "\"abc", "{\"a\":}", "// c\n1", "[1]/*x*/", "1 2",
                             "{} {}", "[] x", "\xEF\xBB\xBF{}" /* BOM */, "\"a\tb\"" /* raw control char */,
                             "\"\\x\"", "\"\\u12\"", "\"\\u12G4\""}) {
        EXPECT_EQ(parse_status(text), QWEN3VL_STATUS_BAD_FORMAT) << text;
    }
}

TEST(Json, ReportsByteOffset) {
    std::string m = parse_message("[1, 2, x]");
    EXPECT_NE(m.find("byte 7"), std::string::npos) << m;
    EXPECT_NE(m.find("test"), std::string::npos) << m;
}

TEST(Json, DecodesEscapes) {
    EXPECT_EQ(parse(R"("a\"b\\c\/d\b\f\n\r\t")").as_string(), "a\"b\\c/d\b\f\n\r\t");
    EXPECT_EQ(parse(R"("\u0041\u00e9\u20AC")").as_string(), "A\xC3\xA9\xE2\x82\xAC");
    EXPECT_EQ(parse(R"("\ud83d\ude00")").as_string(), "\xF0\x9F\x98\x80");  // U+1F600 from a surrogate pair
    EXPECT_EQ(parse(R"("\udbff\udfff")").as_string(), "\xF4\x8F\xBF\xBF");  // U+10FFFF
    EXPECT_EQ(parse(R"("\u0000")").as_string(), std::string(1, '\0'));
}

TEST(Json, RejectsBadSurrogateEscapes) {
    for (const char* text : {R"("\ud83d")", R"("\ud83dx")", R"("\ude00")", R"("\ud83d\u0041")", R"("\ud83d\ud83d")",
                             R"("\ud83d\")"}) {
        EXPECT_EQ(parse_status(text), QWEN3VL_STATUS_BAD_FORMAT) << text;
    }
}

TEST(Json, AcceptsValidUtf8) {
    EXPECT_EQ(parse("\"\xC3\xA9\"").as_string(), "\xC3\xA9");              // U+00E9
    EXPECT_EQ(parse("\"\xE2\x82\xAC\"").as_string(), "\xE2\x82\xAC");      // U+20AC
    EXPECT_EQ(parse("\"\xED\x9F\xBF\"").as_string(), "\xED\x9F\xBF");      // U+D7FF, just below the surrogates
    EXPECT_EQ(parse("\"\xEE\x80\x80\"").as_string(), "\xEE\x80\x80");      // U+E000, just above
    EXPECT_EQ(parse("\"\xF0\x90\x80\x80\"").as_string(), "\xF0\x90\x80\x80");  // U+10000
    EXPECT_EQ(parse("\"\xF4\x8F\xBF\xBF\"").as_string(), "\xF4\x8F\xBF\xBF");  // U+10FFFF
    EXPECT_EQ(parse("{\"\xE4\xB8\xAD\":1}").as_object()[0].key, "\xE4\xB8\xAD");
}

TEST(Json, RejectsInvalidUtf8) {
    const char* cases[] = {
        "\"\x80\"",                  // lone continuation byte
        "\"\xC0\xAF\"",              // overlong '/'
        "\"\xC1\xBF\"",              // overlong
        "\"\xE0\x80\xAF\"",          // overlong 3-byte
        "\"\xF0\x80\x80\xAF\"",      // overlong 4-byte
        "\"\xED\xA0\x80\"",          // U+D800 surrogate
        "\"\xED\xBF\xBF\"",          // U+DFFF surrogate
        "\"\xF4\x90\x80\x80\"",      // U+110000
        "\"\xF5\x80\x80\x80\"",      // beyond U+10FFFF
        "\"\xFF\"",                  // never valid
        "\"\xC3\"",                  // truncated sequence before the quote
        "\"\xE2\x82\"",              // truncated
        "\"\xC3\x28\"",              // bad continuation
        "\xC3\xA9",                  // non-ASCII outside a string
    };
    for (const char* text : cases) EXPECT_EQ(parse_status(text), QWEN3VL_STATUS_BAD_FORMAT) << text;
    EXPECT_EQ(parse_status(std::string("\"\xC3", 2)), QWEN3VL_STATUS_BAD_FORMAT);  // truncated at end of input
}

TEST(Json, FindInvalidUtf8) {
    const std::string ok = "a\xC3\xA9z";
    EXPECT_EQ(json::find_invalid_utf8(ok.data(), ok.size()), ok.size());
    const std::string bad = "ab\xED\xA0\x80";
    EXPECT_EQ(json::find_invalid_utf8(bad.data(), bad.size()), 2u);
}

TEST(Json, DuplicateKeys) {
    EXPECT_EQ(parse_status(R"({"a":1,"a":2})"), QWEN3VL_STATUS_BAD_FORMAT);
    EXPECT_NE(parse_message(R"({"a":1,"b":{"x":1,"x":2}})").find("duplicate key 'x'"), std::string::npos);
    json::ParseOptions lenient;
    lenient.reject_duplicate_keys = false;
    json::Value v = json::parse(R"({"a":1,"a":2})", "test", lenient);
    ASSERT_EQ(v.as_object().size(), 2u);
    EXPECT_EQ(v.find("a")->as_int(), 1);  // first match
}

TEST(Json, DepthLimit) {
    auto nested = [](int depth) { return std::string(depth, '[') + std::string(depth, ']'); };
    EXPECT_EQ(parse_status(nested(128)), QWEN3VL_STATUS_OK);
    EXPECT_EQ(parse_status(nested(129)), QWEN3VL_STATUS_BAD_FORMAT);
    EXPECT_EQ(parse_status(std::string(100000, '[')), QWEN3VL_STATUS_BAD_FORMAT);  // no stack overflow
    std::string objects;
    for (int i = 0; i < 200; ++i) objects += "{\"a\":";
    EXPECT_EQ(parse_status(objects + "1" + std::string(200, '}')), QWEN3VL_STATUS_BAD_FORMAT);
    json::ParseOptions shallow;
    shallow.max_depth = 2;
    EXPECT_EQ(parse_status("[[1]]", shallow), QWEN3VL_STATUS_OK);
    EXPECT_EQ(parse_status("[[[1]]]", shallow), QWEN3VL_STATUS_BAD_FORMAT);
}

TEST(Json, TypeMismatchIsBadFormat) {
    json::Value v = parse("[1]");
    try {
        v.as_object();
        FAIL() << "no throw";
    } catch (const Error& e) {
        EXPECT_EQ(e.status(), QWEN3VL_STATUS_BAD_FORMAT);
    }
    EXPECT_THROW(v.find("a"), Error);
    EXPECT_THROW(parse("\"1\"").as_int(), Error);
}

TEST(Json, EmbeddedNulInInputIsRejected) {
    EXPECT_EQ(parse_status(std::string("[1]\0", 4)), QWEN3VL_STATUS_BAD_FORMAT);
    EXPECT_EQ(parse_status(std::string("\"a\0b\"", 5)), QWEN3VL_STATUS_BAD_FORMAT);
}
