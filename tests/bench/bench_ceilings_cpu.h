// The CPU ceilings the CPU op benchmarks are compared with, registered as their own benchmark rows in each benchmark
// binary (ceiling/read_bandwidth, ceiling/fma_peak per thread count): the linear family's rates against both, the
// norm and attention families' GB/s against the read bandwidth. The loops are plain AVX2 (bench_ceilings_avx2.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace qwen3vl {
class ThreadPool;
}

namespace qwen3vl_bench {

// One pool per thread count, shared by every benchmark (and ceiling) of a binary: a second pool of the same size
// would leave its idle workers beside the one being measured.
qwen3vl::ThreadPool& pool_of(int threads);

float read_stream_avx2(const float* p, size_t n);
float fma_peak_avx2(int64_t iterations);

// Registers ceiling/read_bandwidth and ceiling/fma_peak for each thread count.
void register_cpu_ceilings(const std::vector<int>& thread_counts);

// The read bandwidth of ceiling/read_bandwidth on this many threads, in GB/s: measured on the first call (best of 3
// passes over the 1 GiB buffer, after one to fault it in) and remembered, for rows that print their share of it.
double read_ceiling_gbs(int threads);

}  // namespace qwen3vl_bench
