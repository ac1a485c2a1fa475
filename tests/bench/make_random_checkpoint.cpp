// Writes a random-weight checkpoint with the shapes of a Qwen3-VL config.json (default: Qwen3-VL-2B), as bf16
// safetensors shards + index, config.json and generation_config.json: what `qwen3vl bench` measures on machines
// where the real weights cannot be downloaded. The tensor list comes from the engine's own checkpoint validator
// (expected_tensors), so what is written is exactly what the loader requires.
//
//   qwen3vl_make_random_checkpoint OUT_DIR [CONFIG_JSON] [--shard-gb N] [--seed N]
//
// Values: linear weights uniform with std 1/sqrt(fan_in); norm weights 1 +- 0.1; biases +- 0.02; embeddings std 1.
// Speed matters more than the distribution here: nothing checks the numbers these weights produce.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "checkpoint.h"
#include "dtype.h"
#include "error.h"
#include "json.h"
#include "platform.h"

using namespace qwen3vl;

namespace {

struct Rng {
    uint64_t s;
    uint64_t next() {
        uint64_t z = (s += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    float uniform() { return static_cast<float>(next() >> 40) * (1.0f / 16777216.0f) * 2.f - 1.f; }  // [-1, 1)
};

bool ends_with(const std::string& s, const char* suffix) {
    const size_t n = std::strlen(suffix);
    return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

// Uniform on [-a, a] has std a / sqrt(3).
void fill(std::vector<uint16_t>& out, const ExpectedTensor& t, Rng& rng) {
    const bool is_norm = t.name.find("norm") != std::string::npos && t.shape.size() == 1;
    const bool is_bias = ends_with(t.name, ".bias");
    float center = 0.f, half_width;
    if (is_norm && !is_bias) {
        center = 1.f;
        half_width = 0.1f * std::sqrt(3.f);
    } else if (is_bias) {
        half_width = 0.02f * std::sqrt(3.f);
    } else if (t.name.find("embed_tokens") != std::string::npos || t.name.find("pos_embed") != std::string::npos) {
        half_width = std::sqrt(3.f);
    } else {
        int64_t fan_in = 1;
        for (size_t i = 1; i < t.shape.size(); ++i) fan_in *= t.shape[i];
        half_width = std::sqrt(3.f / static_cast<float>(fan_in));
    }
    for (auto& v : out) v = f32_to_bf16(center + half_width * rng.uniform());
}

std::string json_shape(const std::vector<int64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
    return s + "]";
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s OUT_DIR [CONFIG_JSON] [--shard-gb N] [--seed N]\n", argv[0]);
        return 2;
    }
    std::string out_dir = argv[1];
    std::string config_path = QWEN3VL_BENCH_DIR "/qwen3-vl-2b-config.json";
    double shard_gb = 2.0;
    uint64_t seed = 1234;
    for (int i = 2; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--shard-gb" && i + 1 < argc) shard_gb = std::atof(argv[++i]);
        else if (a == "--seed" && i + 1 < argc) seed = std::strtoull(argv[++i], nullptr, 10);
        else config_path = a;
    }
    try {
        if (!is_directory(out_dir)) fail(QWEN3VL_STATUS_IO_ERROR, "output folder '" + out_dir + "' does not exist");
        const std::string config_text = read_text_file(config_path);
        const json::Value config_json = json::parse(config_text, config_path);
        const ModelConfig config = parse_model_config(config_json, nullptr, config_path);
        std::vector<ExpectedTensor> tensors;
        for (auto& t : expected_tensors(config))
            if (!t.optional) tensors.push_back(t);

        // Group tensors into shards of at most shard_gb.
        const uint64_t shard_limit = static_cast<uint64_t>(shard_gb * 1e9);
        std::vector<std::vector<size_t>> shards(1);
        uint64_t in_shard = 0, total = 0;
        for (size_t i = 0; i < tensors.size(); ++i) {
            uint64_t n = 2;
            for (int64_t d : tensors[i].shape) n *= static_cast<uint64_t>(d);
            if (in_shard > 0 && in_shard + n > shard_limit) {
                shards.emplace_back();
                in_shard = 0;
            }
            shards.back().push_back(i);
            in_shard += n;
            total += n;
        }

        Rng rng{seed};
        std::string index = "{\n  \"metadata\": {\"total_size\": " + std::to_string(total) + "},\n  \"weight_map\": {\n";
        std::vector<uint16_t> buffer;
        for (size_t s = 0; s < shards.size(); ++s) {
            char name[64];
            std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
            std::string header = "{\"__metadata__\":{\"format\":\"pt\"}";
            uint64_t offset = 0;
            for (size_t i : shards[s]) {
                uint64_t n = 2;
                for (int64_t d : tensors[i].shape) n *= static_cast<uint64_t>(d);
                header += ",\"" + tensors[i].name + "\":{\"dtype\":\"BF16\",\"shape\":" + json_shape(tensors[i].shape) +
                          ",\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + n) + "]}";
                offset += n;
                index += std::string(index.back() == '\n' ? "" : ",\n") + "    \"" + tensors[i].name + "\": \"" + name + "\"";
            }
            header += "}";
            while (header.size() % 8) header += ' ';
            const std::string path = path_join(out_dir, name);
            FILE* f = std::fopen(path.c_str(), "wb");
            if (!f) fail(QWEN3VL_STATUS_IO_ERROR, "cannot create '" + path + "'");
            uint64_t header_len = header.size();
            unsigned char len_le[8];
            for (int b = 0; b < 8; ++b) len_le[b] = static_cast<unsigned char>(header_len >> (8 * b));
            bool ok = std::fwrite(len_le, 1, 8, f) == 8 && std::fwrite(header.data(), 1, header.size(), f) == header.size();
            for (size_t i : shards[s]) {
                uint64_t count = 1;
                for (int64_t d : tensors[i].shape) count *= static_cast<uint64_t>(d);
                buffer.resize(static_cast<size_t>(count));
                fill(buffer, tensors[i], rng);
                ok = ok && std::fwrite(buffer.data(), 2, buffer.size(), f) == buffer.size();
            }
            ok = (std::fclose(f) == 0) && ok;
            if (!ok) fail(QWEN3VL_STATUS_IO_ERROR, "cannot write '" + path + "'");
            std::printf("wrote %s (%zu tensors)\n", path.c_str(), shards[s].size());
        }
        index += "\n  }\n}\n";
        auto write_text = [&](const std::string& file, const std::string& text) {
            const std::string path = path_join(out_dir, file);
            FILE* f = std::fopen(path.c_str(), "wb");
            if (!f || std::fwrite(text.data(), 1, text.size(), f) != text.size() || std::fclose(f) != 0)
                fail(QWEN3VL_STATUS_IO_ERROR, "cannot write '" + path + "'");
        };
        write_text("model.safetensors.index.json", index);
        write_text("config.json", config_text);
        write_text("generation_config.json",
                   "{\n  \"bos_token_id\": 151643,\n  \"do_sample\": true,\n  \"eos_token_id\": [151645, 151643],\n"
                   "  \"pad_token_id\": 151643,\n  \"temperature\": 0.7,\n  \"top_k\": 20,\n  \"top_p\": 0.8\n}\n");
        std::printf("%zu tensors, %.2f GB of bf16 weights in %zu shards\n", tensors.size(), total / 1e9, shards.size());
        return 0;
    } catch (const Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
