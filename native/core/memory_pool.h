// A caching memory pool shared by every backend. Blocks come from an upstream allocator (aligned malloc on the
// CPU, cudaMalloc on a GPU) and return to per-size free lists when released, so a steady-state loop that frees
// and allocates the same sizes makes no system calls. Counters are exposed through the C API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "qwen3vl.h"

namespace qwen3vl {

class MemoryPool {
public:
    // upstream_alloc returns nullptr when out of memory; upstream_free releases what it returned.
    MemoryPool(std::string device_name, std::function<void*(size_t)> upstream_alloc,
               std::function<void(void*)> upstream_free);
    ~MemoryPool();
    MemoryPool(const MemoryPool&) = delete;
    MemoryPool& operator=(const MemoryPool&) = delete;

    // Throws Error(OUT_OF_MEMORY) with the sizes when neither the cache nor the upstream can serve the request;
    // on that path the cache is released to the upstream and the allocation retried once.
    // exact: a block sized to the request in 256-byte steps, for memory that lives as long as a model (weights):
    // the size classes below keep freed activation blocks reusable across nearby sizes, at up to 1/8 of the size in
    // slack, which one-off blocks of hundreds of MB (an 8B model's lm_head: 661 MB in a 768 MB class) do not need.
    void* allocate(size_t bytes, bool exact = false);
    void deallocate(void* p) noexcept;
    void trim() noexcept;
    // peak_bytes_in_use = bytes_in_use: a new high-water mark from here.
    void reset_peak() noexcept;
    qwen3vl_memory_stats stats() const;

    // Graph capture: while the calling thread records, the blocks it allocates are held for the recorded work.
    // Releasing a held block (its tensor freed during or after the recording) keeps it reserved, so nothing else is
    // handed memory that a replayed graph writes; release_held() returns the blocks once the graph is gone (each
    // goes back to the free lists if its owner released it, else stays with its live owner). One recording per
    // thread at a time.
    void begin_recording();
    std::vector<void*> end_recording();
    void release_held(const std::vector<void*>& blocks) noexcept;

    // The size a request is rounded to: 256-byte steps up to 1 MiB, then 1/8 of the power of two above.
    static size_t round_size(size_t bytes);
    // The size an exact request is rounded to: 256-byte steps.
    static size_t round_exact(size_t bytes) { return ((bytes == 0 ? 1 : bytes) + 255) & ~size_t(255); }

private:
    // The containers stay out of this header so CUDA translation units include no <map> (nvcc 11 with a clang
    // host compiler cannot parse libstdc++ 12's <map>).
    struct State;
    std::unique_ptr<State> s_;
};

}  // namespace qwen3vl
