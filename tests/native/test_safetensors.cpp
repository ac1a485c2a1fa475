#include <gtest/gtest.h>

#include <string>

#include "error.h"
#include "safetensors.h"
#include "safetensors_test_util.h"

using qwen3vl::Error;
using qwen3vl::SafetensorsDType;
using qwen3vl::SafetensorsFile;
using namespace qwen3vl::testing;

namespace {

struct Outcome {
    qwen3vl_status status;
    std::string message;
};

// Writes the bytes to a file and opens it, so the mapping path is exercised too.
Outcome open_bytes(const std::string& bytes) {
    TempDir dir;
    const std::string path = dir.file("t.safetensors");
    write_file(path, bytes);
    try {
        SafetensorsFile::open(path);
        return {QWEN3VL_STATUS_OK, ""};
    } catch (const Error& e) {
        return {e.status(), e.what()};
    }
}

std::string entry(const std::string& name, const std::string& dtype, const std::string& shape, uint64_t begin,
                  uint64_t end) {
    return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" +
           std::to_string(begin) + "," + std::to_string(end) + "]}";
}

#define EXPECT_STATUS(bytes, expected, needle)                                              \
    do {                                                                                    \
        Outcome o_ = open_bytes(bytes);                                                     \
        EXPECT_EQ(o_.status, expected) << o_.message;                                       \
        EXPECT_NE(o_.message.find(needle), std::string::npos) << "message: " << o_.message; \
    } while (0)

}  // namespace

TEST(Safetensors, OpensValidFileAndViewsPointIntoTheMapping) {
    TempDir dir;
    const std::string path = dir.file("ok.safetensors");
    write_file(path, build_safetensors({{"a", "F32", {2, 3}}, {"b", "BF16", {4}}, {"c", "F16", {1, 1, 2}}},
                                       R"({"format":"pt"})"));
    SafetensorsFile f = SafetensorsFile::open(path);
    ASSERT_EQ(f.tensors().size(), 3u);
    EXPECT_EQ(f.metadata().at("format"), "pt");
    const qwen3vl::TensorView* a = f.find("a");
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a->dtype, SafetensorsDType::F32);
    EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(a->bytes, 24u);
    EXPECT_EQ(a->element_count(), 6u);
    EXPECT_EQ(a->file, path);
    const qwen3vl::TensorView* b = f.find("b");
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b->data, a->data + 24);  // back to back in the data section
    EXPECT_EQ(b->data[0], static_cast<uint8_t>(24 * 31 + 7));
    EXPECT_EQ(f.find("missing"), nullptr);

    // The views survive a move of the file object, and still point into the same mapping.
    const uint8_t* before = a->data;
    SafetensorsFile moved = std::move(f);
    EXPECT_EQ(moved.find("a")->data, before);
}

TEST(Safetensors, ParseFromMemoryPointsIntoTheBuffer) {
    const std::string bytes = build_safetensors({{"w", "F32", {3}}});
    const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
    SafetensorsFile f = SafetensorsFile::parse(data, bytes.size(), "buffer");
    const qwen3vl::TensorView& w = f.tensors().at(0);
    EXPECT_GE(w.data, data + 8);
    EXPECT_EQ(w.data + w.bytes, data + bytes.size());
    EXPECT_EQ(w.file, "buffer");
}

TEST(Safetensors, ValidEdgeCases) {
    EXPECT_EQ(open_bytes(assemble("{}", "")).status, QWEN3VL_STATUS_OK);                      // zero tensors
    EXPECT_EQ(open_bytes(assemble("{}      ", "")).status, QWEN3VL_STATUS_OK);                // space padding
    EXPECT_EQ(open_bytes(assemble(R"({"__metadata__":{}})", "")).status, QWEN3VL_STATUS_OK);  // only metadata
    EXPECT_EQ(open_bytes(build_safetensors({{"s", "F32", {}}})).status, QWEN3VL_STATUS_OK);   // 0-dim scalar
    EXPECT_EQ(open_bytes(build_safetensors({{"z", "F32", {0, 5}}, {"a", "F32", {1}}})).status, QWEN3VL_STATUS_OK);
    // An empty tensor with huge other dimensions is still empty, not an overflow.
    EXPECT_EQ(open_bytes(assemble("{" + entry("z", "F32", "[0,1099511627776,1099511627776]", 0, 0) + "}", "")).status,
              QWEN3VL_STATUS_OK);

    TempDir dir;
    write_file(dir.file("s.safetensors"), build_safetensors({{"s", "F32", {}}, {"z", "BF16", {0}}}));
    SafetensorsFile f = SafetensorsFile::open(dir.file("s.safetensors"));
    EXPECT_EQ(f.find("s")->element_count(), 1u);
    EXPECT_EQ(f.find("s")->bytes, 4u);
    EXPECT_EQ(f.find("z")->bytes, 0u);
    EXPECT_EQ(f.find("z")->element_count(), 0u);
}

TEST(Safetensors, OtherDtypesParseButAreNotWeights) {
    TempDir dir;
    write_file(dir.file("i.safetensors"), build_safetensors({{"i", "I64", {2}}, {"q", "F8_E4M3", {3}}, {"b", "BOOL", {1}}}));
    SafetensorsFile f = SafetensorsFile::open(dir.file("i.safetensors"));
    EXPECT_EQ(f.find("i")->dtype, SafetensorsDType::I64);
    EXPECT_EQ(f.find("i")->bytes, 16u);
    try {
        qwen3vl::require_weight_dtype(*f.find("i"));
        FAIL() << "no throw";
    } catch (const Error& e) {
        EXPECT_EQ(e.status(), QWEN3VL_STATUS_UNSUPPORTED);
        EXPECT_NE(std::string(e.what()).find("'i'"), std::string::npos);
    }
    EXPECT_THROW(qwen3vl::require_weight_dtype(*f.find("q")), Error);
    write_file(dir.file("w.safetensors"), build_safetensors({{"w", "BF16", {2}}}));
    EXPECT_NO_THROW(qwen3vl::require_weight_dtype(SafetensorsFile::open(dir.file("w.safetensors")).tensors().at(0)));
}

TEST(Safetensors, EmptyAndTinyFiles) {
    EXPECT_STATUS(std::string(), QWEN3VL_STATUS_BAD_FORMAT, "too small");
    EXPECT_STATUS(std::string(7, '\0'), QWEN3VL_STATUS_BAD_FORMAT, "too small");
}

TEST(Safetensors, MissingFileIsIoError) {
    TempDir dir;
    try {
        SafetensorsFile::open(dir.file("nope.safetensors"));
        FAIL() << "no throw";
    } catch (const Error& e) {
        EXPECT_EQ(e.status(), QWEN3VL_STATUS_IO_ERROR);
        EXPECT_NE(std::string(e.what()).find("nope.safetensors"), std::string::npos);
    }
}

TEST(Safetensors, BadHeaderLength) {
    EXPECT_STATUS(assemble("{}", "", 100000001ull), QWEN3VL_STATUS_BAD_FORMAT, "exceeds the limit");
    EXPECT_STATUS(assemble("{}", "", ~0ull), QWEN3VL_STATUS_BAD_FORMAT, "exceeds the limit");
    EXPECT_STATUS(assemble("{}", "", 3), QWEN3VL_STATUS_BAD_FORMAT, "exceeds the file size");
    EXPECT_STATUS(assemble("", "", 0), QWEN3VL_STATUS_BAD_FORMAT, "'{'");
}

TEST(Safetensors, HeaderNotJson) {
    EXPECT_STATUS(assemble("{\"a\":", ""), QWEN3VL_STATUS_BAD_FORMAT, "invalid JSON");
    EXPECT_STATUS(assemble("[1,2]", ""), QWEN3VL_STATUS_BAD_FORMAT, "'{'");
    EXPECT_STATUS(assemble("{} x", ""), QWEN3VL_STATUS_BAD_FORMAT, "invalid JSON");
    EXPECT_STATUS(assemble(std::string("{}\0\0", 4), ""), QWEN3VL_STATUS_BAD_FORMAT, "invalid JSON");
}

TEST(Safetensors, HeaderNotUtf8) {
    EXPECT_STATUS(assemble("{\"\xC0\xAF\":1}", ""), QWEN3VL_STATUS_BAD_FORMAT, "UTF-8");
    EXPECT_STATUS(assemble("{\"\xED\xA0\x80\":1}", ""), QWEN3VL_STATUS_BAD_FORMAT, "UTF-8");
}

TEST(Safetensors, TruncatedData) {
    std::string bytes = build_safetensors({{"a", "F32", {4}}});
    bytes.resize(bytes.size() - 1);
    EXPECT_STATUS(bytes, QWEN3VL_STATUS_BAD_FORMAT, "outside the data section");
}

TEST(Safetensors, OffsetsOutsideData) {
    EXPECT_STATUS(assemble("{" + entry("a", "F32", "[1]", 4, 8) + "}", std::string(4, 'x')),
                  QWEN3VL_STATUS_BAD_FORMAT, "'a'");
    EXPECT_STATUS(assemble("{" + entry("a", "U8", "[1]", 18446744073709551615ull, 18446744073709551615ull) + "}", ""),
                  QWEN3VL_STATUS_BAD_FORMAT, "'a'");
    // Beyond int64: the JSON number is a double, not an integer.
    EXPECT_STATUS(assemble(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,18446744073709551616]}})", "x"),
                  QWEN3VL_STATUS_BAD_FORMAT, "must be an integer");
}

TEST(Safetensors, OverlappingTensors) {
    EXPECT_STATUS(assemble("{" + entry("a", "F32", "[2]", 0, 8) + "," + entry("b", "F32", "[2]", 4, 12) + "}",
                           std::string(12, 'x')),
                  QWEN3VL_STATUS_BAD_FORMAT, "overlaps");
    // Two tensors on the same bytes (aliasing).
    EXPECT_STATUS(assemble("{" + entry("a", "F32", "[1]", 0, 4) + "," + entry("b", "F32", "[1]", 0, 4) + "}",
                           std::string(4, 'x')),
                  QWEN3VL_STATUS_BAD_FORMAT, "overlaps");
}

TEST(Safetensors, GapBetweenTensors) {
    EXPECT_STATUS(assemble("{" + entry("a", "F32", "[1]", 0, 4) + "," + entry("b", "F32", "[1]", 8, 12) + "}",
                           std::string(12, 'x')),
                  QWEN3VL_STATUS_BAD_FORMAT, "gap of 4 bytes before tensor 'b'");
    EXPECT_STATUS(assemble("{" + entry("a", "F32", "[1]", 4, 8) + "}", std::string(8, 'x')),
                  QWEN3VL_STATUS_BAD_FORMAT, "gap");
}

TEST(Safetensors, TrailingUnusedBytes) {
    EXPECT_STATUS(build_safetensors({{"a", "F32", {1}}}) + "junk", QWEN3VL_STATUS_BAD_FORMAT, "4 trailing bytes");
    EXPECT_STATUS(assemble("{}", "x"), QWEN3VL_STATUS_BAD_FORMAT, "trailing");
}

TEST(Safetensors, BeginAfterEnd) {
    EXPECT_STATUS(assemble("{" + entry("a", "F32", "[1]", 4, 0) + "}", std::string(4, 'x')),
                  QWEN3VL_STATUS_BAD_FORMAT, "is after end");
}

TEST(Safetensors, ShapeOverflow) {
    EXPECT_STATUS(assemble("{" + entry("a", "F32", "[1099511627776,1099511627776]", 0, 0) + "}", ""),
                  QWEN3VL_STATUS_BAD_FORMAT, "overflows");
    // The product fits but times the element size does not.
    EXPECT_STATUS(assemble("{" + entry("a", "F32", "[4611686018427387904,2]", 0, 0) + "}", ""),
                  QWEN3VL_STATUS_BAD_FORMAT, "overflows");
}

TEST(Safetensors, BytesMismatch) {
    EXPECT_STATUS(assemble("{" + entry("a", "F32", "[2]", 0, 4) + "}", std::string(4, 'x')),
                  QWEN3VL_STATUS_BAD_FORMAT, "needs 8");
    EXPECT_STATUS(assemble("{" + entry("a", "BF16", "[3]", 0, 8) + "}", std::string(8, 'x')),
                  QWEN3VL_STATUS_BAD_FORMAT, "needs 6");
}

TEST(Safetensors, WrongDtype) {
    EXPECT_STATUS(assemble("{" + entry("a", "FLOAT32", "[1]", 0, 4) + "}", std::string(4, 'x')),
                  QWEN3VL_STATUS_BAD_FORMAT, "unknown dtype 'FLOAT32'");
    EXPECT_STATUS(assemble("{" + entry("a", "bf16", "[1]", 0, 2) + "}", std::string(2, 'x')),
                  QWEN3VL_STATUS_BAD_FORMAT, "unknown dtype");
    EXPECT_STATUS(assemble(R"({"a":{"dtype":7,"shape":[1],"data_offsets":[0,1]}})", "x"), QWEN3VL_STATUS_BAD_FORMAT,
                  "dtype is not a string");
}

TEST(Safetensors, DuplicateNames) {
    EXPECT_STATUS(assemble("{" + entry("a", "F32", "[1]", 0, 4) + "," + entry("a", "F32", "[1]", 4, 8) + "}",
                           std::string(8, 'x')),
                  QWEN3VL_STATUS_BAD_FORMAT, "duplicate key 'a'");
}

TEST(Safetensors, MissingAndExtraKeys) {
    EXPECT_STATUS(assemble(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", "xxxx"), QWEN3VL_STATUS_BAD_FORMAT,
                  "missing key 'dtype'");
    EXPECT_STATUS(assemble(R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", "xxxx"), QWEN3VL_STATUS_BAD_FORMAT,
                  "missing key 'shape'");
    EXPECT_STATUS(assemble(R"({"a":{"dtype":"F32","shape":[1]}})", "xxxx"), QWEN3VL_STATUS_BAD_FORMAT,
                  "missing key 'data_offsets'");
    EXPECT_STATUS(assemble(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", "xxxx"),
                  QWEN3VL_STATUS_BAD_FORMAT, "unexpected key 'x'");
    EXPECT_STATUS(assemble(R"({"a":[1]})", ""), QWEN3VL_STATUS_BAD_FORMAT, "'a'");
    EXPECT_STATUS(assemble(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", "xxxx"),
                  QWEN3VL_STATUS_BAD_FORMAT, "two integers");
    EXPECT_STATUS(assemble(R"({"a":{"dtype":"F32","shape":1,"data_offsets":[0,4]}})", "xxxx"),
                  QWEN3VL_STATUS_BAD_FORMAT, "not an array");
}

TEST(Safetensors, NegativeOrNonIntegerDims) {
    EXPECT_STATUS(assemble("{" + entry("a", "F32", "[-1]", 0, 4) + "}", std::string(4, 'x')),
                  QWEN3VL_STATUS_BAD_FORMAT, "negative");
    EXPECT_STATUS(assemble("{" + entry("a", "F32", "[1.0]", 0, 4) + "}", std::string(4, 'x')),
                  QWEN3VL_STATUS_BAD_FORMAT, "integer");
    EXPECT_STATUS(assemble(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", std::string(4, 'x')),
                  QWEN3VL_STATUS_BAD_FORMAT, "negative");
}

TEST(Safetensors, BadMetadata) {
    EXPECT_STATUS(assemble(R"({"__metadata__":{"a":1}})", ""), QWEN3VL_STATUS_BAD_FORMAT, "__metadata__");
    EXPECT_STATUS(assemble(R"({"__metadata__":[]})", ""), QWEN3VL_STATUS_BAD_FORMAT, "__metadata__");
}

TEST(Safetensors, SubByteDtypes) {
    EXPECT_EQ(open_bytes(assemble("{" + entry("a", "F4", "[4]", 0, 2) + "}", "xx")).status, QWEN3VL_STATUS_OK);
    EXPECT_STATUS(assemble("{" + entry("a", "F4", "[3]", 0, 2) + "}", "xx"), QWEN3VL_STATUS_BAD_FORMAT,
                  "whole bytes");
}
