// CPU linear benchmarks: the Qwen3-VL-2B projections at decode (GEMV, M = 1), prefill (M = 512) and vision
// (M = 1024) sizes, through cpu::linear / cpu::linear_swiglu on a pool of all logical processors, and the two
// ceilings they are judged against: streaming read bandwidth and FMA peak, per thread count.
//
// Counters: GFLOP/s = 2 M N K (x2 for swiglu) per call; GB/s = weight + x + out bytes per call. Decode weights are
// rotated over copies totalling >= 256 MiB, so every call reads its weights from DRAM as in a real forward pass,
// not from the last-level cache.
//
//   cmake --preset bench && cmake --build --preset bench -j2 --target qwen3vl_bench_linear
//   build/bench/tests/bench/qwen3vl_bench_linear   (QWEN3VL_BENCH_THREADS=n: pool size, default all)
#include <benchmark/benchmark.h>

#include <algorithm>
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

struct Spec {
    std::string name;
    int64_t M, N, K;
    bool swiglu;
    qwen3vl_dtype dtype;
};

void BM_Linear(benchmark::State& state, Spec spec) {
    const int threads = hardware_threads();
    ThreadPool& pool = pool_of(threads);
    const int64_t M = spec.M, N = spec.N, K = spec.K;
    const int mats = spec.swiglu ? 2 : 1;
    const size_t wbytes = size_t(N * K) * dtype_size(spec.dtype);
    const size_t per_call = wbytes * size_t(mats);
    const size_t copies = M <= cpu::kGemvMaxRows ? std::max<size_t>(1, ((size_t(256) << 20) + per_call - 1) / per_call) : 1;
    std::vector<std::unique_ptr<Aligned>> weights;
    for (size_t c = 0; c < copies * size_t(mats); ++c) {
        weights.push_back(std::make_unique<Aligned>(wbytes));
        fill_random(weights.back()->p, spec.dtype, size_t(N * K), c + 1);
    }
    Aligned x(size_t(M * K) * 4), out(size_t(M * N) * 4);
    fill_random(x.p, QWEN3VL_DTYPE_F32, size_t(M * K), 99);
    size_t c = 0;
    for (auto _ : state) {
        const Weight w{weights[c * size_t(mats)]->p, spec.dtype};
        float* o = reinterpret_cast<float*>(out.p);
        const float* xf = reinterpret_cast<const float*>(x.p);
        if (spec.swiglu)
            cpu::linear_swiglu(pool, o, xf, M, K, N, w, {weights[c * 2 + 1]->p, spec.dtype});
        else
            cpu::linear(pool, o, xf, M, K, N, w, Weight{});
        benchmark::ClobberMemory();
        c = (c + 1) % copies;
    }
    const double flops = 2.0 * double(M) * double(N) * double(K) * mats;
    const double bytes = double(per_call) + 4.0 * double(M * K + M * N);
    state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
    state.counters["GB/s"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
    state.counters["threads"] = threads;
    state.SetLabel(std::string(cpu_kernels_name(cpu_kernels())) + ", " + dtype_name(spec.dtype));
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
    std::vector<Spec> specs;
    for (const Proj& p : text) specs.push_back({std::string("decode/") + p.name, 1, p.N, p.K, p.swiglu, bf16});
    for (int64_t M : {2, 4, 8}) specs.push_back({"decode/q_proj/M" + std::to_string(M), M, 2048, 2048, false, bf16});
    specs.push_back({"decode/q_proj/f16", 1, 2048, 2048, false, QWEN3VL_DTYPE_F16});
    specs.push_back({"decode/q_proj/f32", 1, 2048, 2048, false, QWEN3VL_DTYPE_F32});
    for (const Proj& p : text) specs.push_back({std::string("prefill/") + p.name, 512, p.N, p.K, p.swiglu, bf16});
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
