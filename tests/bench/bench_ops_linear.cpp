// CPU linear benchmarks: the Qwen3-VL-2B projections at decode (GEMV, M = 1), prefill (M = 512) and vision
// (M = 1024) sizes, through cpu::linear / cpu::linear_swiglu on a pool of all logical processors, and the two
// ceilings they are judged against: streaming read bandwidth and FMA peak, per thread count.
//
// Counters: GFLOP/s = 2 M N K (x2 for swiglu) per call; GB/s = weight + x + out bytes per call; wGB/s = the weight
// bytes alone (bf16: 2 N K; q8: N K + N K / 32 * 2, the int8 plane and the f16 scales; q4: N K / 2 + N K / 256 * 16,
// the nibble plane and the super-block headers) and %read = wGB/s against the read ceiling measured at the same
// thread count (read_ceiling_gbs). Decode weights are rotated over copies totalling >= 256 MiB, so every call reads
// its weights from DRAM as in a real forward pass, not from the last-level cache. The .../q8 and .../q4 rows run the
// same shapes on Q8 / Q4 weights (random planes).
//
//   cmake --preset bench && cmake --build --preset bench -j2 --target qwen3vl_bench_linear
//   build/bench/tests/bench/qwen3vl_bench_linear   (QWEN3VL_BENCH_THREADS=n: pool size, default all)
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "cpu_features.h"
#include "dtype.h"
#include "gemm.h"
#include "platform.h"
#include "thread_pool.h"

#include "bench_ceilings_cpu.h"

namespace {

using namespace qwen3vl;

bool has_avx2() { return cpu_kernels() == CpuKernels::Avx2; }

// All logical processors, or QWEN3VL_BENCH_THREADS.
int hardware_threads() {
    if (const char* env = std::getenv("QWEN3VL_BENCH_THREADS")) return std::max(1, std::atoi(env));
    return std::max(1, logical_processor_count());
}

using qwen3vl_bench::pool_of;

struct Aligned {
    explicit Aligned(size_t bytes) : p(static_cast<uint8_t*>(aligned_alloc_bytes(bytes, 64))), n(bytes) {
        if (!p) throw std::bad_alloc();
    }
    ~Aligned() { aligned_free_bytes(p); }
    Aligned(const Aligned&) = delete;
    Aligned& operator=(const Aligned&) = delete;
    uint8_t* p;
    size_t n;
};

// Values in [-0.5, 0.5) from a xorshift generator: fast enough for the 600 MiB lm_head.
void fill_random(void* dst, qwen3vl_dtype dtype, size_t count, uint64_t seed) {
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < count; ++i) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        const float f = float(s >> 40) * (1.0f / 16777216.0f) - 0.5f;
        if (dtype == QWEN3VL_DTYPE_F32) {
            static_cast<float*>(dst)[i] = f;
        } else {
            static_cast<uint16_t*>(dst)[i] = dtype == QWEN3VL_DTYPE_BF16 ? f32_to_bf16(f) : f32_to_f16(f);
        }
    }
}

// A random Q8 weight [N, K]: int8 in [-127, 127], then the f16 scales (about 0.5 / 127, as a layer in [-0.5, 0.5]).
void fill_random_q8(uint8_t* dst, int64_t N, int64_t K, uint64_t seed) {
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    auto next = [&s] {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        return s;
    };
    const size_t values = size_t(N * K);
    for (size_t i = 0; i < values; ++i) dst[i] = uint8_t(int8_t(int(next() % 255) - 127));
    auto* scales = reinterpret_cast<uint16_t*>(dst + values);
    for (size_t b = 0; b < values / 32; ++b)
        scales[b] = f32_to_f16((0.25f + float(next() >> 40) * (0.25f / 16777216.0f)) / 127.0f);
}

// A random Q4 weight [N, K]: random nibbles, then headers with d and dmin about 0.5 / 15 / 63 and random 6-bit
// scales and mins (as a layer in [-0.5, 0.5]).
void fill_random_q4(uint8_t* dst, int64_t N, int64_t K, uint64_t seed) {
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    auto next = [&s] {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        return s;
    };
    const size_t nib = size_t(N * K / 2);
    for (size_t i = 0; i < nib; ++i) dst[i] = uint8_t(next());
    uint8_t* h = dst + nib;
    for (size_t b = 0; b < size_t(N * K / 256); ++b, h += 16) {
        const uint16_t d = f32_to_f16((0.5f + float(next() >> 40) * (0.5f / 16777216.0f)) / 15.0f / 63.0f);
        std::memcpy(h, &d, 2);
        std::memcpy(h + 2, &d, 2);
        for (int j = 4; j < 16; ++j) h[j] = uint8_t(next());
    }
}

// Bytes of a weight [N, K] of this dtype, scales included.
size_t weight_bytes(qwen3vl_dtype dtype, int64_t N, int64_t K) {
    if (dtype == QWEN3VL_DTYPE_Q8) return size_t(N * K) + size_t(N * K / 32) * 2;
    if (dtype == QWEN3VL_DTYPE_Q4) return size_t(N * K / 2) + size_t(N * K / 256) * 16;
    return size_t(N * K) * dtype_size(dtype);
}

Weight weight_view(const uint8_t* p, qwen3vl_dtype dtype, int64_t N, int64_t K) {
    Weight w{p, dtype};
    if (dtype == QWEN3VL_DTYPE_Q8 || dtype == QWEN3VL_DTYPE_Q4) {
        const bool q8 = dtype == QWEN3VL_DTYPE_Q8;
        w.rows = N;
        w.cols = K;
        w.scales = p + (q8 ? size_t(N * K) : size_t(N * K / 2));
        w.scale_dtype = QWEN3VL_DTYPE_F16;
        w.block_rows = 1;
        w.block_cols = q8 ? 32 : 256;
    }
    return w;
}

struct Spec {
    std::string name;
    int64_t M, N, K;
    bool swiglu;
    qwen3vl_dtype dtype;
    cpu::Q8Gemv q8 = cpu::q8_gemv_default();  // q8 decode: the int8 GEMV's instruction set
};

void BM_Linear(benchmark::State& state, Spec spec) {
    const int threads = hardware_threads();
    ThreadPool& pool = pool_of(threads);
    const int64_t M = spec.M, N = spec.N, K = spec.K;
    const int mats = spec.swiglu ? 2 : 1;
    const size_t wbytes = weight_bytes(spec.dtype, N, K);
    const size_t per_call = wbytes * size_t(mats);
    const size_t copies = M <= cpu::kGemvMaxRows ? std::max<size_t>(1, ((size_t(256) << 20) + per_call - 1) / per_call) : 1;
    std::vector<std::unique_ptr<Aligned>> weights;
    for (size_t c = 0; c < copies * size_t(mats); ++c) {
        weights.push_back(std::make_unique<Aligned>(wbytes));
        if (spec.dtype == QWEN3VL_DTYPE_Q8)
            fill_random_q8(weights.back()->p, N, K, c + 1);
        else if (spec.dtype == QWEN3VL_DTYPE_Q4)
            fill_random_q4(weights.back()->p, N, K, c + 1);
        else
            fill_random(weights.back()->p, spec.dtype, size_t(N * K), c + 1);
    }
    Aligned x(size_t(M * K) * 4), out(size_t(M * N) * 4);
    fill_random(x.p, QWEN3VL_DTYPE_F32, size_t(M * K), 99);
    const double ceiling = qwen3vl_bench::read_ceiling_gbs(threads);
    size_t c = 0;
    const auto start = std::chrono::steady_clock::now();
    for (auto _ : state) {
        const Weight w = weight_view(weights[c * size_t(mats)]->p, spec.dtype, N, K);
        float* o = reinterpret_cast<float*>(out.p);
        const float* xf = reinterpret_cast<const float*>(x.p);
        if (spec.swiglu)
            cpu::linear_swiglu(pool, o, xf, M, K, N, w, weight_view(weights[c * 2 + 1]->p, spec.dtype, N, K),
                               cpu_kernels(), spec.q8);
        else
            cpu::linear(pool, o, xf, M, K, N, w, Weight{}, cpu_kernels(), spec.q8);
        benchmark::ClobberMemory();
        c = (c + 1) % copies;
    }
    const double flops = 2.0 * double(M) * double(N) * double(K) * mats;
    const double bytes = double(per_call) + 4.0 * double(M * K + M * N);
    state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
    state.counters["GB/s"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
    state.counters["wGB/s"] = benchmark::Counter(double(per_call) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
    // A plain number (a rate counter would print "/s"), from the loop's own wall time.
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (ceiling > 0 && seconds > 0)
        state.counters["%read"] = 100.0 * double(per_call) * double(state.iterations()) * 1e-9 / seconds / ceiling;
    state.counters["threads"] = threads;
    std::string label = std::string(cpu_kernels_name(cpu_kernels())) + ", " + dtype_name(spec.dtype);
    if ((spec.dtype == QWEN3VL_DTYPE_Q8 || spec.dtype == QWEN3VL_DTYPE_Q4) && M <= cpu::kGemvMaxRows)
        label += std::string(" ") + cpu::q8_gemv_name(spec.q8);
    state.SetLabel(label);
}

// What a parallel_for costs with nothing to do: the floor under every small op.
void BM_ThreadPoolDispatch(benchmark::State& state) {
    const int threads = int(state.range(0));
    ThreadPool& pool = pool_of(threads);
    for (auto _ : state) pool.parallel_for(size_t(threads), [](size_t, int) {});
}

void register_all() {
    const int hw = hardware_threads();
    std::vector<int> thread_counts{1};
    if (hw > 1) thread_counts.push_back(hw);
    qwen3vl_bench::register_cpu_ceilings(thread_counts);
    for (int t : thread_counts) {
        benchmark::RegisterBenchmark("threadpool/dispatch", BM_ThreadPoolDispatch)->Arg(t)->UseRealTime();
    }
    const qwen3vl_dtype bf16 = QWEN3VL_DTYPE_BF16;
    struct Proj {
        const char* name;
        int64_t N, K;
        bool swiglu;
    };
    const Proj text[] = {{"q_proj", 2048, 2048, false},     {"k_proj", 1024, 2048, false},
                         {"v_proj", 1024, 2048, false},     {"o_proj", 2048, 2048, false},
                         {"gate_up_swiglu", 6144, 2048, true}, {"down_proj", 2048, 6144, false},
                         {"lm_head", 151936, 2048, false}};
    const qwen3vl_dtype q8 = QWEN3VL_DTYPE_Q8, q4 = QWEN3VL_DTYPE_Q4;
    std::vector<Spec> specs;
    for (const Proj& p : text) {
        specs.push_back({std::string("decode/") + p.name, 1, p.N, p.K, p.swiglu, bf16});
        specs.push_back({std::string("decode/") + p.name + "/q8", 1, p.N, p.K, p.swiglu, q8});
        specs.push_back({std::string("decode/") + p.name + "/q4", 1, p.N, p.K, p.swiglu, q4});
    }
    for (int64_t M : {2, 4, 8}) {
        specs.push_back({"decode/q_proj/M" + std::to_string(M), M, 2048, 2048, false, bf16});
        specs.push_back({"decode/q_proj/q8/M" + std::to_string(M), M, 2048, 2048, false, q8});
        specs.push_back({"decode/q_proj/q4/M" + std::to_string(M), M, 2048, 2048, false, q4});
    }
    // The AVX2 int8 GEMV where the default is the AVX-512 VNNI one.
    if (cpu::q8_gemv_default() != cpu::Q8Gemv::Avx2) {
        for (int64_t M : {1, 2, 4, 8})
            specs.push_back(
                {"decode/q_proj/q8-avx2/M" + std::to_string(M), M, 2048, 2048, false, q8, cpu::Q8Gemv::Avx2});
        specs.push_back({"decode/down_proj/q8-avx2", 1, 2048, 6144, false, q8, cpu::Q8Gemv::Avx2});
        specs.push_back({"decode/gate_up_swiglu/q8-avx2", 1, 6144, 2048, true, q8, cpu::Q8Gemv::Avx2});
        for (int64_t M : {1, 2, 4, 8})
            specs.push_back(
                {"decode/q_proj/q4-avx2/M" + std::to_string(M), M, 2048, 2048, false, q4, cpu::Q8Gemv::Avx2});
        specs.push_back({"decode/k_proj/q4-avx2", 1, 1024, 2048, false, q4, cpu::Q8Gemv::Avx2});
        specs.push_back({"decode/down_proj/q4-avx2", 1, 2048, 6144, false, q4, cpu::Q8Gemv::Avx2});
        specs.push_back({"decode/gate_up_swiglu/q4-avx2", 1, 6144, 2048, true, q4, cpu::Q8Gemv::Avx2});
    }
    specs.push_back({"decode/q_proj/f16", 1, 2048, 2048, false, QWEN3VL_DTYPE_F16});
    specs.push_back({"decode/q_proj/f32", 1, 2048, 2048, false, QWEN3VL_DTYPE_F32});
    for (const Proj& p : text) {
        specs.push_back({std::string("prefill/") + p.name, 512, p.N, p.K, p.swiglu, bf16});
        specs.push_back({std::string("prefill/") + p.name + "/q8", 512, p.N, p.K, p.swiglu, q8});
        specs.push_back({std::string("prefill/") + p.name + "/q4", 512, p.N, p.K, p.swiglu, q4});
    }
    specs.push_back({"vision/qkv", 1024, 3072, 1024, false, bf16});
    specs.push_back({"vision/fc1", 1024, 4096, 1024, false, bf16});
    for (const Spec& s : specs) {
        const std::string name = "linear/" + s.name + "[" + std::to_string(s.N) + "x" + std::to_string(s.K) + "]" +
                                 (s.swiglu ? "x2" : "") + "/M=" + std::to_string(s.M);
        auto* b = benchmark::RegisterBenchmark(name.c_str(), BM_Linear, s)->UseRealTime();
        b->Unit(s.M <= cpu::kGemvMaxRows ? benchmark::kMicrosecond : benchmark::kMillisecond);
    }
}

}  // namespace

int main(int argc, char** argv) {
    register_all();
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
