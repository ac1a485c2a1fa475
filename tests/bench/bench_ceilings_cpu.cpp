// See bench_ceilings_cpu.h.
#include "bench_ceilings_cpu.h"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <vector>

#include "cpu_features.h"
#include "thread_pool.h"

namespace qwen3vl_bench {

using namespace qwen3vl;

ThreadPool& pool_of(int threads) {
    static std::vector<std::unique_ptr<ThreadPool>> pools(256);
    auto& p = pools[size_t(threads)];
    if (!p) p = std::make_unique<ThreadPool>(threads);
    return *p;
}

namespace {

// Ceiling 1: read bandwidth. Each thread streams its share of a 1 GiB buffer (32x a 32 MiB L3) once per iteration.
constexpr size_t kReadFloats = size_t(1) << 28;

void read_pass(const float* p, int threads, std::vector<float>& sink) {
    const size_t share = kReadFloats / size_t(threads);
    pool_of(threads).parallel_for(size_t(threads), [&](size_t t, int) {
        sink[t] = read_stream_avx2(p + t * share, share);
    });
    benchmark::DoNotOptimize(sink.data());
}

void BM_ReadBandwidth(benchmark::State& state) {
    if (cpu_kernels() != CpuKernels::Avx2) return state.SkipWithError("needs AVX2");
    const int threads = int(state.range(0));
    const std::vector<float> buf(kReadFloats, 0.0f);  // written once: the pages are faulted in before timing
    std::vector<float> sink(static_cast<size_t>(threads), 0.0f);
    for (auto _ : state) read_pass(buf.data(), threads, sink);
    state.counters["GB/s"] =
        benchmark::Counter(double(kReadFloats) * 4 * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// Ceiling 2: FMA throughput, every thread running independent FMA chains.
void BM_FmaPeak(benchmark::State& state) {
    if (cpu_kernels() != CpuKernels::Avx2) return state.SkipWithError("needs AVX2");
    const int threads = int(state.range(0));
    const int64_t iterations = 20'000'000;
    std::vector<float> sink(static_cast<size_t>(threads), 0.0f);
    for (auto _ : state) {
        pool_of(threads).parallel_for(size_t(threads), [&](size_t t, int) {
            sink[t] = fma_peak_avx2(iterations);
        });
        benchmark::DoNotOptimize(sink.data());
    }
    const double flops = double(iterations) * 12 * 8 * 2 * threads;
    state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

double read_ceiling_gbs(int threads) {
    static std::map<int, double> measured;
    auto it = measured.find(threads);
    if (it != measured.end()) return it->second;
    if (cpu_kernels() != CpuKernels::Avx2) return measured[threads] = 0.0;
    const std::vector<float> buf(kReadFloats, 0.0f);
    std::vector<float> sink(static_cast<size_t>(threads), 0.0f);
    read_pass(buf.data(), threads, sink);
    double best = 0.0;
    for (int pass = 0; pass < 3; ++pass) {
        const auto t0 = std::chrono::steady_clock::now();
        read_pass(buf.data(), threads, sink);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        best = std::max(best, double(kReadFloats) * 4 * 1e-9 / s);
    }
    return measured[threads] = best;
}

void register_cpu_ceilings(const std::vector<int>& thread_counts) {
    for (int t : thread_counts) {
        benchmark::RegisterBenchmark("ceiling/read_bandwidth", BM_ReadBandwidth)->Arg(t)->UseRealTime()->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark("ceiling/fma_peak", BM_FmaPeak)->Arg(t)->UseRealTime()->Unit(benchmark::kMillisecond);
    }
}

}  // namespace qwen3vl_bench
