// Fine-grained FP8 checkpoints (transformers' format, Qwen's -FP8 releases): the tiny-tied fixture rewritten here
// with every nn.Linear weight as F8_E4M3 and F32 (or BF16) block scales, as transformers writes it (w = fp8 *
// weight_scale_inv per block of 128 x 128, ceil-sized scale grids), then opened and loaded: the weights must come out
// weight-exact (fp8 * scale rounded once to f32, as transformers' dequantize=True computes them in fp32), as bf16 of
// that, and as Q8 of that; and every malformed variant is refused with a message naming the problem. The e4m3 codes
// are chosen and decoded here from the format's definition (OCP FP8 E4M3), independently of the engine.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "backend.h"
#include "checkpoint.h"
#include "checkpoint_weights.h"
#include "dtype.h"
#include "error.h"
#include "json.h"
#include "quant.h"
#include "safetensors_test_util.h"

using namespace qwen3vl;
using namespace qwen3vl::testing;

namespace {

// E4M3 value of a code: sign, exponent e (bias 7), mantissa m; e = 0 subnormal (m * 2^-9); 0x7f / 0xff NaN.
double e4m3_value(uint8_t c) {
    const int e = (c >> 3) & 15, m = c & 7;
    const double mag = e == 0 ? m / 512.0 : (8 + m) * std::pow(2.0, e - 10);
    return (c & 0x80) ? -mag : mag;
}

// The code nearest to x (ties to the even code), saturating at +-448 as transformers clamps before casting.
uint8_t e4m3_nearest(double x) {
    const double a = std::min(std::fabs(x), 448.0);
    uint8_t best = 0;
    for (uint8_t c = 1; c <= 0x7e; ++c) {
        const double dc = std::fabs(e4m3_value(c) - a), db = std::fabs(e4m3_value(best) - a);
        if (dc < db || (dc == db && (c & 1) == 0)) best = c;
    }
    return uint8_t(best | (x < 0 ? 0x80 : 0));
}

struct Fp8Options {
    int64_t block_rows = 128, block_cols = 128;
    bool bf16_scales = false;
    bool convert_lm_and_vision = true;  // false: only the text decoder's projections (modules_to_not_convert style)
};

struct Blob {
    TensorSpec spec;
    std::string bytes;
};

std::string fixture_model() { return std::string(QWEN3VL_SOURCE_DIR) + "/tests/fixtures/tiny-tied/model"; }

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::string file_of(const std::vector<Blob>& blobs) {
    std::string header = "{";
    std::string data;
    for (const Blob& b : blobs) {
        if (header.size() > 1) header += ",";
        header += "\"" + b.spec.name + "\":{\"dtype\":\"" + b.spec.dtype + "\",\"shape\":" + shape_json(b.spec.shape) +
                  ",\"data_offsets\":[" + std::to_string(data.size()) + "," +
                  std::to_string(data.size() + b.bytes.size()) + "]}";
        data += b.bytes;
    }
    header += "}";
    while ((8 + header.size()) % 8) header += ' ';
    return assemble(header, data);
}

// The fixture's tensors with its linear weights as FP8; `dequantized` receives each converted weight's exact values.
std::vector<Blob> fp8_tensors(const Fp8Options& o, std::map<std::string, std::vector<float>>* dequantized) {
    const Checkpoint src = Checkpoint::open(fixture_model());
    std::map<std::string, bool> linear;
    for (const ExpectedTensor& e : expected_tensors(src.config())) linear[e.name] = e.linear;
    std::vector<Blob> out;
    for (const SafetensorsFile& f : src.files())
        for (const TensorView& v : f.tensors()) {
            const bool text = v.name.find("language_model.layers.") != std::string::npos;
            if (!linear[v.name] || !(o.convert_lm_and_vision || text)) {
                out.push_back({{v.name, dtype_name(v.dtype), v.shape}, std::string(reinterpret_cast<const char*>(v.data), v.bytes)});
                continue;
            }
            const int64_t N = v.shape[0], K = v.shape[1], BR = o.block_rows, BC = o.block_cols;
            const int64_t SN = (N + BR - 1) / BR, SK = (K + BC - 1) / BC;
            std::vector<float> w(size_t(N * K));
            for (size_t i = 0; i < w.size(); ++i) {
                uint16_t h;
                std::memcpy(&h, v.data + 2 * i, 2);
                w[i] = bf16_to_f32(h);
            }
            std::vector<float> scale(size_t(SN * SK));
            for (int64_t bi = 0; bi < SN; ++bi)
                for (int64_t bj = 0; bj < SK; ++bj) {
                    float amax = 0;
                    for (int64_t r = bi * BR; r < std::min(N, bi * BR + BR); ++r)
                        for (int64_t k = bj * BC; k < std::min(K, bj * BC + BC); ++k) amax = std::max(amax, std::fabs(w[size_t(r * K + k)]));
                    float s = amax > 0 ? amax / 448.0f : 1.0f;
                    if (o.bf16_scales) s = bf16_to_f32(f32_to_bf16(s));
                    scale[size_t(bi * SK + bj)] = s;
                }
            std::string q(size_t(N * K), '\0');
            std::vector<float>& deq = (*dequantized)[v.name];
            deq.resize(size_t(N * K));
            for (int64_t r = 0; r < N; ++r)
                for (int64_t k = 0; k < K; ++k) {
                    const float s = scale[size_t((r / BR) * SK + k / BC)];
                    const uint8_t c = e4m3_nearest(double(w[size_t(r * K + k)]) / s);
                    q[size_t(r * K + k)] = char(c);
                    deq[size_t(r * K + k)] = float(e4m3_value(c)) * s;  // one f32 rounding of the exact product
                }
            std::string sb;
            for (float s : scale) {
                if (o.bf16_scales) {
                    const uint16_t h = f32_to_bf16(s);
                    sb.append(reinterpret_cast<const char*>(&h), 2);
                } else {
                    sb.append(reinterpret_cast<const char*>(&s), 4);
                }
            }
            out.push_back({{v.name, "F8_E4M3", v.shape}, q});
            out.push_back({{scale_inv_name(v.name), o.bf16_scales ? "BF16" : "F32", {SN, SK}}, sb});
        }
    return out;
}

std::string fp8_config(const std::string& quantization) {
    std::string config = read_file(fixture_model() + "/config.json");
    const size_t brace = config.find('{');
    return config.substr(0, brace + 1) + "\"quantization_config\": " + quantization + ", " + config.substr(brace + 1);
}

const char* kQuantization =
    "{\"quant_method\": \"fp8\", \"activation_scheme\": \"dynamic\", \"weight_block_size\": [128, 128], "
    "\"modules_to_not_convert\": null, \"dequantize\": false, \"scale_fmt\": \"float\"}";

void write_checkpoint(const TempDir& dir, const std::vector<Blob>& blobs, const std::string& config) {
    write_file(dir.file("config.json"), config);
    write_file(dir.file("generation_config.json"), read_file(fixture_model() + "/generation_config.json"));
    write_file(dir.file("model.safetensors"), file_of(blobs));
}

std::string open_error(const TempDir& dir, qwen3vl_status* status) {
    try {
        Checkpoint::open(dir.path().string());
    } catch (const Error& e) {
        *status = e.status();
        return e.what();
    }
    *status = QWEN3VL_STATUS_OK;
    return "";
}

std::vector<float> read_f32(const Tensor& t) {
    std::vector<float> out(size_t(t.elements()));
    read_tensor(t, QWEN3VL_DTYPE_F32, out.data());
    return out;
}

}  // namespace

TEST(Fp8Checkpoint, E4m3CodesAreTheFormatsValues) {
    EXPECT_EQ(e4m3_value(0x38), 1.0);
    EXPECT_EQ(e4m3_value(0x7e), 448.0);
    EXPECT_EQ(e4m3_value(0x01), std::ldexp(1.0, -9));
    EXPECT_EQ(e4m3_value(0x08), std::ldexp(1.0, -6));
    for (int c = 0; c < 256; ++c) {
        if ((c & 0x7f) == 0x7f) {
            EXPECT_TRUE(std::isnan(e4m3_to_f32(uint8_t(c))));
            continue;
        }
        EXPECT_EQ(double(e4m3_to_f32(uint8_t(c))), e4m3_value(uint8_t(c))) << c;
    }
}

TEST(Fp8Checkpoint, LoadsWeightExactAsF32Bf16AndQ8) {
    // Qwen's 128 x 128 blocks (one block per tiny matrix in most cases), then 16 x 32 blocks: many blocks per matrix,
    // rows and columns scaled differently, ragged last blocks, so a transposed or misindexed scale grid fails.
    for (const int variant : {0, 1, 2}) {
        Fp8Options o;
        o.bf16_scales = variant == 1;
        if (variant == 2) o.block_rows = 16, o.block_cols = 32;
        SCOPED_TRACE("variant " + std::to_string(variant));
        std::map<std::string, std::vector<float>> deq;
        TempDir dir;
        const std::string quantization = variant == 2 ? "{\"quant_method\": \"fp8\", \"weight_block_size\": [16, 32]}"
                                                      : kQuantization;
        write_checkpoint(dir, fp8_tensors(o, &deq), fp8_config(quantization));
        auto ck = std::make_shared<Checkpoint>(Checkpoint::open(dir.path().string()));
        EXPECT_TRUE(ck->config().quantization.fp8);
        EXPECT_EQ(ck->config().quantization.block_rows, o.block_rows);
        EXPECT_EQ(ck->config().quantization.block_cols, o.block_cols);
        auto be = create_cpu_backend(2);
        ASSERT_GT(deq.size(), 20u);  // text, lm (tied: none), vision and merger linears
        for (const auto& [name, want] : deq) {
            const TensorView& v = ck->tensor(name);
            EXPECT_EQ(stored_dtype(v), QWEN3VL_DTYPE_BF16) << name;
            EXPECT_EQ(read_f32(load_weight(ck, *be, v, QWEN3VL_DTYPE_F32)), want) << name;
            const std::vector<float> b16 = read_f32(load_weight(ck, *be, v, QWEN3VL_DTYPE_BF16));
            for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(b16[i], bf16_to_f32(f32_to_bf16(want[i]))) << name << " " << i;
            if (v.shape[1] % kQ8Block != 0) continue;
            std::vector<int8_t> q(want.size());
            std::vector<uint16_t> d(want.size() / kQ8Block);
            quantize_q8(want.data(), int64_t(want.size()), q.data(), d.data());
            std::vector<float> back(want.size());
            dequantize_q8(q.data(), d.data(), int64_t(want.size()), back.data());
            EXPECT_EQ(read_f32(load_weight(ck, *be, v, QWEN3VL_DTYPE_Q8)), back) << name;
        }
    }
}

TEST(Fp8Checkpoint, DenseLinearsBesideFp8OnesAreFine) {
    Fp8Options o;
    o.convert_lm_and_vision = false;
    std::map<std::string, std::vector<float>> deq;
    TempDir dir;
    write_checkpoint(dir, fp8_tensors(o, &deq), fp8_config(kQuantization));
    const Checkpoint ck = Checkpoint::open(dir.path().string());
    EXPECT_EQ(ck.tensor("model.visual.blocks.0.attn.qkv.weight").dtype, SafetensorsDType::BF16);
    EXPECT_EQ(ck.tensor("model.language_model.layers.0.mlp.up_proj.weight").dtype, SafetensorsDType::F8_E4M3);
}

TEST(Fp8Checkpoint, MalformedCheckpointsAreRefusedByName) {
    std::map<std::string, std::vector<float>> deq;
    const std::vector<Blob> good = fp8_tensors(Fp8Options{}, &deq);
    const std::string q = "model.language_model.layers.1.self_attn.q_proj.weight";
    auto without = [&](const std::string& name) {
        std::vector<Blob> b;
        for (const Blob& x : good)
            if (x.spec.name != name) b.push_back(x);
        return b;
    };
    auto expect = [&](const std::vector<Blob>& blobs, const std::string& config, qwen3vl_status want,
                      const std::string& text) {
        TempDir dir;
        write_checkpoint(dir, blobs, config);
        qwen3vl_status status;
        const std::string message = open_error(dir, &status);
        EXPECT_EQ(status, want) << message;
        EXPECT_NE(message.find(text), std::string::npos) << message;
    };
    const std::string config = fp8_config(kQuantization);
    expect(without(scale_inv_name(q)), config, QWEN3VL_STATUS_BAD_FORMAT,
           "missing tensor '" + scale_inv_name(q) + "' [1, 1] (the block scales of the F8_E4M3 weight");
    std::vector<Blob> b = good;
    for (Blob& x : b)
        if (x.spec.name == scale_inv_name(q)) {
            x.spec.shape = {1};
        }
    expect(b, config, QWEN3VL_STATUS_BAD_FORMAT, "'" + scale_inv_name(q) + "' has shape [1], expected [1, 1]");
    b = good;
    for (Blob& x : b)
        if (x.spec.name == scale_inv_name(q)) {
            const float nan = std::nanf("");
            std::memcpy(&x.bytes[0], &nan, 4);
        }
    expect(b, config, QWEN3VL_STATUS_BAD_FORMAT, "'" + scale_inv_name(q) + "' holds a non-finite or negative scale");
    expect(good, read_file(fixture_model() + "/config.json"), QWEN3VL_STATUS_BAD_FORMAT,
           "is F8_E4M3 but config.json has no fp8 quantization_config");
    expect(good, fp8_config("{\"quant_method\": \"awq\"}"), QWEN3VL_STATUS_UNSUPPORTED,
           "quantization_config.quant_method: 'awq' is not supported");
    expect(good, fp8_config("{\"quant_method\": \"fp8\", \"activation_scheme\": \"static\"}"),
           QWEN3VL_STATUS_UNSUPPORTED, "quantization_config.activation_scheme: 'static'");
    // A scale for a weight that is not FP8 is a tensor the model does not have.
    b = good;
    b.push_back({{"model.language_model.norm.weight_scale_inv", "F32", {1, 1}}, std::string(4, '\0')});
    expect(b, config, QWEN3VL_STATUS_BAD_FORMAT, "unexpected tensor 'model.language_model.norm.weight_scale_inv'");

    // A NaN code in a weight passes the open (the weights are not read then) and is named when the weight loads.
    b = good;
    for (Blob& x : b)
        if (x.spec.name == q) x.bytes[size_t(3 * x.spec.shape[1] + 5)] = char(0x7f);
    TempDir dir;
    write_checkpoint(dir, b, config);
    auto ck = std::make_shared<Checkpoint>(Checkpoint::open(dir.path().string()));
    auto be = create_cpu_backend(1);
    try {
        load_weight(ck, *be, ck->tensor(q), QWEN3VL_DTYPE_Q8);
        ADD_FAILURE() << "a NaN weight loaded";
    } catch (const Error& e) {
        EXPECT_EQ(e.status(), QWEN3VL_STATUS_INVALID_ARGUMENT);
        EXPECT_NE(std::string(e.what()).find("fp8: weight [3, 5] is NaN"), std::string::npos) << e.what();
    }
}

// ---- The engine's own q8 checkpoints (qwen3vl quantize): I8 values + F16 <name>_scale per linear / the embedding.
namespace {

std::vector<Blob> q8_tensors(std::map<std::string, std::pair<std::vector<int8_t>, std::vector<uint16_t>>>* planes) {
    const Checkpoint src = Checkpoint::open(fixture_model());
    std::map<std::string, bool> quantizable;
    for (const ExpectedTensor& e : expected_tensors(src.config())) quantizable[e.name] = e.linear || e.table;
    std::vector<Blob> out;
    for (const SafetensorsFile& f : src.files())
        for (const TensorView& v : f.tensors()) {
            if (!quantizable[v.name] || v.shape[1] % kQ8Block != 0 || v.name.find("language_model") == std::string::npos) {
                out.push_back({{v.name, dtype_name(v.dtype), v.shape}, std::string(reinterpret_cast<const char*>(v.data), v.bytes)});
                continue;
            }
            const size_t n = size_t(v.shape[0] * v.shape[1]);
            std::vector<float> w(n);
            for (size_t i = 0; i < n; ++i) {
                uint16_t h;
                std::memcpy(&h, v.data + 2 * i, 2);
                w[i] = bf16_to_f32(h);
            }
            auto& [q, d] = (*planes)[v.name];
            q.resize(n);
            d.resize(n / kQ8Block);
            quantize_q8(w.data(), int64_t(n), q.data(), d.data());
            out.push_back({{v.name, "I8", v.shape}, std::string(reinterpret_cast<const char*>(q.data()), n)});
            out.push_back({{q8_scale_name(v.name), "F16", {v.shape[0], v.shape[1] / kQ8Block}},
                           std::string(reinterpret_cast<const char*>(d.data()), d.size() * 2)});
        }
    return out;
}

const char* kQ8Quantization = "{\"quant_method\": \"qwen3vl\", \"weights\": \"q8\", \"block_size\": 32}";

}  // namespace

TEST(Q8Checkpoint, LoadsAsAViewOfTheMappingOrDequantized) {
    std::map<std::string, std::pair<std::vector<int8_t>, std::vector<uint16_t>>> planes;
    TempDir dir;
    write_checkpoint(dir, q8_tensors(&planes), fp8_config(kQ8Quantization));
    auto ck = std::make_shared<Checkpoint>(Checkpoint::open(dir.path().string()));
    EXPECT_TRUE(ck->config().quantization.q8);
    auto be = create_cpu_backend(2);
    ASSERT_EQ(planes.size(), 19u);
    for (const auto& [name, p] : planes) {
        const TensorView& v = ck->tensor(name);
        EXPECT_EQ(stored_dtype(v), QWEN3VL_DTYPE_Q8);
        const Tensor t = load_weight(ck, *be, v, QWEN3VL_DTYPE_Q8);
        EXPECT_EQ(t.data, v.data) << name;  // no copy on the CPU
        EXPECT_EQ(std::memcmp(t.scales, p.second.data(), p.second.size() * 2), 0) << name;
        std::vector<float> want(p.first.size());
        dequantize_q8(p.first.data(), p.second.data(), int64_t(want.size()), want.data());
        EXPECT_EQ(read_f32(t), want) << name;
        EXPECT_EQ(read_f32(load_weight(ck, *be, v, QWEN3VL_DTYPE_F32)), want) << name;
    }
}

TEST(Q8Checkpoint, MalformedCheckpointsAreRefusedByName) {
    std::map<std::string, std::pair<std::vector<int8_t>, std::vector<uint16_t>>> planes;
    const std::vector<Blob> good = q8_tensors(&planes);
    const std::string w = "model.language_model.layers.0.mlp.gate_proj.weight";
    auto expect = [&](const std::vector<Blob>& blobs, const std::string& config, qwen3vl_status want,
                      const std::string& text) {
        TempDir dir;
        write_checkpoint(dir, blobs, config);
        qwen3vl_status status;
        const std::string message = open_error(dir, &status);
        EXPECT_EQ(status, want) << message;
        EXPECT_NE(message.find(text), std::string::npos) << message;
    };
    const std::string config = fp8_config(kQ8Quantization);
    std::vector<Blob> b;
    for (const Blob& x : good)
        if (x.spec.name != q8_scale_name(w)) b.push_back(x);
    expect(b, config, QWEN3VL_STATUS_BAD_FORMAT, "missing tensor '" + q8_scale_name(w) + "' [88, 1] (the f16 scales");
    b = good;
    for (Blob& x : b)
        if (x.spec.name == q8_scale_name(w)) x.spec.dtype = "BF16";
    expect(b, config, QWEN3VL_STATUS_BAD_FORMAT, "'" + q8_scale_name(w) + "' is BF16 [88, 1], expected F16 [88, 1]");
    b = good;
    for (Blob& x : b)
        if (x.spec.name == q8_scale_name(w)) x.bytes[2 * 7 + 1] = char(0x7c);  // scale [7, 0] = inf
    expect(b, config, QWEN3VL_STATUS_BAD_FORMAT, "'" + q8_scale_name(w) + "' holds a non-finite scale at [7, 0]");
    expect(good, read_file(fixture_model() + "/config.json"), QWEN3VL_STATUS_BAD_FORMAT,
           "is I8 but config.json has no qwen3vl q8 quantization_config");
    expect(good, fp8_config("{\"quant_method\": \"qwen3vl\", \"weights\": \"q2\"}"), QWEN3VL_STATUS_UNSUPPORTED,
           "quantization_config.weights: 'q2' is not a weight format of this engine (q8, q4)");
    expect(good, fp8_config("{\"quant_method\": \"qwen3vl\", \"weights\": \"q4\", \"block_size\": 32}"),
           QWEN3VL_STATUS_UNSUPPORTED, "quantization_config.block_size: 32 (q4 super-blocks are 256)");
}

// ---- The engine's own q4 checkpoints: U8 nibbles [N, K / 2] + U8 <name>_header [N, K / 256, 16] for the decoder
// layers' linears, I8 + F16 scales (q8) for the embedding table. tests/fixtures/random-256's shapes (rows of whole
// super-blocks), random weights written here from the engine's expected tensors.
namespace {

std::string random256_config(const std::string& quantization) {
    std::string config = read_file(std::string(QWEN3VL_SOURCE_DIR) + "/tests/fixtures/random-256/config.json");
    const size_t brace = config.find('{');
    if (quantization.empty()) return config;
    return config.substr(0, brace + 1) + "\"quantization_config\": " + quantization + ", " + config.substr(brace + 1);
}

const char* kQ4Quantization = "{\"quant_method\": \"qwen3vl\", \"weights\": \"q4\", \"block_size\": 256}";

struct Q4Planes {
    std::vector<uint8_t> nib, headers;
};

// Random-256's tensors: decoder-layer linears as q4 planes (into *planes), the embedding as q8, the rest random bf16.
std::vector<Blob> q4_tensors(std::map<std::string, Q4Planes>* planes) {
    const json::Value cfg = json::parse(random256_config(""), "random-256/config.json");
    const json::Value gen = json::parse(read_file(fixture_model() + "/generation_config.json"), "generation_config.json");
    const ModelConfig config = parse_model_config(cfg, &gen, "random-256/config.json");
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.0f, 0.05f);
    std::vector<Blob> out;
    for (const ExpectedTensor& e : expected_tensors(config)) {
        if (e.optional) continue;
        size_t n = 1;
        for (int64_t d : e.shape) n *= size_t(d);
        std::vector<float> w(n);
        for (float& x : w) x = normal(rng);
        const bool layer = e.linear && e.name.find("language_model.layers.") != std::string::npos;
        if (layer && e.shape[1] % kQ4Super == 0) {
            Q4Planes& p = (*planes)[e.name];
            p.nib.resize(n / 2);
            p.headers.resize(n / kQ4Super * kQ4HeaderBytes);
            quantize_q4(w.data(), int64_t(n), p.nib.data(), p.headers.data());
            out.push_back({{e.name, "U8", {e.shape[0], e.shape[1] / 2}}, std::string(p.nib.begin(), p.nib.end())});
            out.push_back({{q4_header_name(e.name), "U8", {e.shape[0], e.shape[1] / kQ4Super, 16}},
                           std::string(p.headers.begin(), p.headers.end())});
        } else if (e.table) {
            std::vector<int8_t> q(n);
            std::vector<uint16_t> d(n / kQ8Block);
            quantize_q8(w.data(), int64_t(n), q.data(), d.data());
            out.push_back({{e.name, "I8", e.shape}, std::string(reinterpret_cast<const char*>(q.data()), n)});
            out.push_back({{q8_scale_name(e.name), "F16", {e.shape[0], e.shape[1] / kQ8Block}},
                           std::string(reinterpret_cast<const char*>(d.data()), d.size() * 2)});
        } else {
            std::string bytes(n * 2, '\0');
            for (size_t i = 0; i < n; ++i) {
                const uint16_t h = f32_to_bf16(e.name.find("norm") != std::string::npos ? 1.0f + w[i] : w[i]);
                std::memcpy(&bytes[2 * i], &h, 2);
            }
            out.push_back({{e.name, "BF16", e.shape}, bytes});
        }
    }
    return out;
}

void write_q4_checkpoint(const TempDir& dir, const std::vector<Blob>& blobs, const std::string& config) {
    write_file(dir.file("config.json"), config);
    write_file(dir.file("generation_config.json"), read_file(fixture_model() + "/generation_config.json"));
    write_file(dir.file("model.safetensors"), file_of(blobs));
}

}  // namespace

TEST(Q4Checkpoint, LoadsAsAViewOfTheMappingOrDequantized) {
    std::map<std::string, Q4Planes> planes;
    TempDir dir;
    write_q4_checkpoint(dir, q4_tensors(&planes), random256_config(kQ4Quantization));
    auto ck = std::make_shared<Checkpoint>(Checkpoint::open(dir.path().string()));
    EXPECT_TRUE(ck->config().quantization.q4);
    EXPECT_TRUE(ck->config().quantization.q8);
    auto be = create_cpu_backend(2);
    ASSERT_EQ(planes.size(), 14u);  // 7 linears x 2 layers
    for (const auto& [name, p] : planes) {
        const TensorView& v = ck->tensor(name);
        EXPECT_EQ(stored_dtype(v), QWEN3VL_DTYPE_Q4);
        const Tensor t = load_weight(ck, *be, v, QWEN3VL_DTYPE_Q4);
        EXPECT_EQ(t.data, v.data) << name;  // no copy on the CPU
        EXPECT_EQ(t.shape[1], v.shape[1] * 2) << name;
        EXPECT_EQ(std::memcmp(t.scales, p.headers.data(), p.headers.size()), 0) << name;
        std::vector<float> want(p.nib.size() * 2);
        dequantize_q4(p.nib.data(), p.headers.data(), int64_t(want.size()), want.data());
        EXPECT_EQ(read_f32(t), want) << name;
        EXPECT_EQ(read_f32(load_weight(ck, *be, v, QWEN3VL_DTYPE_F32)), want) << name;
        try {
            load_weight(ck, *be, v, QWEN3VL_DTYPE_Q8);
            ADD_FAILURE() << "a q4 weight loaded as q8";
        } catch (const Error& e) {
            EXPECT_EQ(e.status(), QWEN3VL_STATUS_UNSUPPORTED);
            EXPECT_NE(std::string(e.what()).find(name + " is stored in q4 and cannot be loaded as q8"), std::string::npos)
                << e.what();
        }
    }
    const TensorView& table = ck->tensor("model.language_model.embed_tokens.weight");
    EXPECT_EQ(stored_dtype(table), QWEN3VL_DTYPE_Q8);
    try {
        load_weight(ck, *be, table, QWEN3VL_DTYPE_Q4);
        ADD_FAILURE() << "a q8 weight loaded as q4";
    } catch (const Error& e) {
        EXPECT_EQ(e.status(), QWEN3VL_STATUS_UNSUPPORTED);
        EXPECT_NE(std::string(e.what()).find("(q8) cannot be loaded as q4 (re-quantizing"), std::string::npos) << e.what();
    }
}

TEST(Q4Checkpoint, Bf16WeightsQuantizeOnLoadToTheSamePlanes) {
    // The same random weights, stored as bf16, quantized by load_weight: equal to the planes written from the f32 values
    // rounded to bf16 (what the loader reads), so a written q4 folder and quantize-on-load agree bit for bit.
    std::map<std::string, Q4Planes> planes;
    std::vector<Blob> blobs = q4_tensors(&planes);
    std::vector<Blob> dense;
    std::map<std::string, std::vector<float>> values;
    for (const Blob& b : blobs) {
        if (b.spec.dtype != "U8" || b.spec.name.find("_header") != std::string::npos) {
            if (b.spec.dtype == "U8") continue;
            if (b.spec.dtype == "I8") continue;
            if (b.spec.dtype == "F16") continue;
            dense.push_back(b);
            continue;
        }
        const Q4Planes& p = planes[b.spec.name];
        std::vector<float> w(p.nib.size() * 2);
        dequantize_q4(p.nib.data(), p.headers.data(), int64_t(w.size()), w.data());
        std::string bytes(w.size() * 2, '\0');
        for (size_t i = 0; i < w.size(); ++i) {
            w[i] = bf16_to_f32(f32_to_bf16(w[i]));
            const uint16_t h = f32_to_bf16(w[i]);
            std::memcpy(&bytes[2 * i], &h, 2);
        }
        values[b.spec.name] = w;
        dense.push_back({{b.spec.name, "BF16", {b.spec.shape[0], b.spec.shape[1] * 2}}, bytes});
    }
    std::string table(size_t(151936) * 256 * 2, '\0');
    dense.push_back({{"model.language_model.embed_tokens.weight", "BF16", {151936, 256}}, table});
    TempDir dir;
    write_q4_checkpoint(dir, dense, random256_config(""));
    auto ck = std::make_shared<Checkpoint>(Checkpoint::open(dir.path().string()));
    auto be = create_cpu_backend(2);
    for (const auto& [name, w] : values) {
        const Tensor t = load_weight(ck, *be, ck->tensor(name), QWEN3VL_DTYPE_Q4);
        std::vector<uint8_t> nib(w.size() / 2), h(w.size() / kQ4Super * kQ4HeaderBytes);
        quantize_q4(w.data(), int64_t(w.size()), nib.data(), h.data());
        EXPECT_EQ(std::memcmp(t.data, nib.data(), nib.size()), 0) << name;
        EXPECT_EQ(std::memcmp(t.scales, h.data(), h.size()), 0) << name;
    }
}

TEST(Q4Checkpoint, MalformedCheckpointsAreRefusedByName) {
    std::map<std::string, Q4Planes> planes;
    const std::vector<Blob> good = q4_tensors(&planes);
    const std::string w = "model.language_model.layers.1.mlp.down_proj.weight";  // [256, 768]
    const std::string h = q4_header_name(w);
    auto expect = [&](const std::vector<Blob>& blobs, const std::string& config, qwen3vl_status want,
                      const std::string& text) {
        TempDir dir;
        write_q4_checkpoint(dir, blobs, config);
        qwen3vl_status status;
        const std::string message = open_error(dir, &status);
        EXPECT_EQ(status, want) << message;
        EXPECT_NE(message.find(text), std::string::npos) << message;
    };
    const std::string config = random256_config(kQ4Quantization);
    {
        TempDir dir;
        write_q4_checkpoint(dir, good, config);
        qwen3vl_status status;
        EXPECT_EQ(open_error(dir, &status), "");
    }
    std::vector<Blob> b;
    for (const Blob& x : good)
        if (x.spec.name != h) b.push_back(x);
    expect(b, config, QWEN3VL_STATUS_BAD_FORMAT, "missing tensor '" + h + "' [256, 3, 16] (the super-block headers");
    b = good;
    for (Blob& x : b)
        if (x.spec.name == h) x.spec.shape = {256, 48}, x.bytes.resize(256 * 48);
    expect(b, config, QWEN3VL_STATUS_BAD_FORMAT, "'" + h + "' is U8 [256, 48], expected U8 [256, 3, 16]");
    b = good;
    for (Blob& x : b)
        if (x.spec.name == w) x.spec.shape = {256, 768}, x.bytes.resize(256 * 768);
    expect(b, config, QWEN3VL_STATUS_BAD_FORMAT, "'" + w + "' (q4 values) has shape [256, 768], expected [256, 384]");
    b = good;
    for (Blob& x : b)
        if (x.spec.name == h) x.bytes[16 * 5 + 1] = char(0x7e);  // super-block [1, 2]: d = NaN
    expect(b, config, QWEN3VL_STATUS_BAD_FORMAT, "'" + h + "' holds a non-finite or negative d in super-block [1, 2]");
    b = good;
    for (Blob& x : b)
        if (x.spec.name == h) x.bytes[16 * 4 + 3] = char(0xbc);  // super-block [1, 1]: dmin = -1
    expect(b, config, QWEN3VL_STATUS_BAD_FORMAT, "'" + h + "' holds a non-finite or negative dmin in super-block [1, 1]");
    expect(good, random256_config("{\"quant_method\": \"qwen3vl\", \"weights\": \"q8\"}"),
           QWEN3VL_STATUS_BAD_FORMAT, "is U8 but config.json has no qwen3vl q4 quantization_config");
}

TEST(Fp8Checkpoint, Q4OfAnFp8WeightIsRefused) {
    std::map<std::string, std::vector<float>> deq;
    TempDir dir;
    write_checkpoint(dir, fp8_tensors(Fp8Options{}, &deq), fp8_config(kQuantization));
    auto ck = std::make_shared<Checkpoint>(Checkpoint::open(dir.path().string()));
    auto be = create_cpu_backend(1);
    const std::string name = "model.language_model.layers.0.mlp.up_proj.weight";
    try {
        load_weight(ck, *be, ck->tensor(name), QWEN3VL_DTYPE_Q4);
        ADD_FAILURE() << "an FP8 weight loaded as q4";
    } catch (const Error& e) {
        EXPECT_EQ(e.status(), QWEN3VL_STATUS_UNSUPPORTED);
        EXPECT_NE(std::string(e.what()).find(name + " is FP8 (an -FP8 checkpoint): re-quantizing it to q4"),
                  std::string::npos)
            << e.what();
    }
}
