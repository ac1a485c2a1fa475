// libFuzzer target for the safetensors reader, the JSON parser and the Qwen3-VL config parser.
// Every qwen3vl::Error is an expected outcome; anything else (a crash, an ASan/UBSan report, another exception,
// a leak) is a bug.
//
// Build (clang only): cmake -B build/fuzz -DCMAKE_CXX_COMPILER=clang++-14 -DQWEN3VL_FUZZ=ON (the
// tests/CMakeLists.txt adds tests/fuzz), or standalone:
//   clang++-14 -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
//     -Inative/capi -Inative/core tests/fuzz/fuzz_safetensors.cpp native/core/{json,safetensors,checkpoint,platform}.cpp \
//     -o build/fuzz/fuzz_safetensors
// CI runs it for a minute on the seed corpus (new inputs go to a scratch folder, the seeds stay as committed):
//   mkdir -p build/fuzz/corpus && build/fuzz/fuzz_safetensors -max_total_time=60 build/fuzz/corpus tests/fuzz/corpus
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "checkpoint.h"
#include "error.h"
#include "json.h"
#include "safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    // 1. The whole input as a safetensors file.
    try {
        qwen3vl::SafetensorsFile f = qwen3vl::SafetensorsFile::parse(data, size, "fuzz");
        // Touch the first and last byte of every view so ASan checks that each lies inside the input.
        volatile uint8_t sink = 0;
        for (const qwen3vl::TensorView& t : f.tensors()) {
            if (t.bytes == 0) continue;
            sink = static_cast<uint8_t>(sink + t.data[0] + t.data[t.bytes - 1]);
            if (t.data < data || t.data + t.bytes > data + size) std::abort();
        }
        (void)sink;
    } catch (const qwen3vl::Error&) {
    }

    // 2. The whole input as a JSON document, and, when it is one, as a Qwen3-VL config.json.
    try {
        qwen3vl::json::Value v = qwen3vl::json::parse(reinterpret_cast<const char*>(data), size, "fuzz");
        const qwen3vl::json::Value* generation = v.is_object() ? v.find("generation") : nullptr;
        qwen3vl::ModelConfig config = qwen3vl::parse_model_config(v, generation, "fuzz");
        (void)qwen3vl::expected_tensors(config).size();
    } catch (const qwen3vl::Error&) {
    }
    return 0;
}
