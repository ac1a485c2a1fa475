#include "memory_pool.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <unordered_map>

#include "error.h"

namespace qwen3vl {

namespace {
// The recording of the calling thread (begin_recording), if any: which pool and the blocks allocated so far.
struct Recording {
    const MemoryPool* pool = nullptr;
    std::vector<void*> blocks;
};
thread_local Recording* t_recording = nullptr;
}  // namespace

struct MemoryPool::State {
    std::string device_name;
    std::function<void*(size_t)> upstream_alloc;
    std::function<void(void*)> upstream_free;
    mutable std::mutex mutex;
    std::multimap<size_t, void*> free_blocks;  // cached blocks by rounded size
    std::unordered_map<void*, size_t> live;     // block -> rounded size
    std::unordered_map<void*, bool> held;       // block held for a graph -> released by its owner
    qwen3vl_memory_stats stats{};

    void release_cache_locked() noexcept {
        for (auto& kv : free_blocks) {
            upstream_free(kv.second);
            stats.system_frees++;
            stats.bytes_reserved -= kv.first;
        }
        free_blocks.clear();
    }
};

MemoryPool::MemoryPool(std::string device_name, std::function<void*(size_t)> upstream_alloc,
                       std::function<void(void*)> upstream_free)
    : s_(new State) {
    s_->device_name = std::move(device_name);
    s_->upstream_alloc = std::move(upstream_alloc);
    s_->upstream_free = std::move(upstream_free);
    s_->stats.struct_size = sizeof(qwen3vl_memory_stats);
}

MemoryPool::~MemoryPool() {
    std::lock_guard<std::mutex> lock(s_->mutex);
    s_->release_cache_locked();
    for (auto& kv : s_->live) s_->upstream_free(kv.first);  // leaked by a caller; the memory still goes back
    s_->live.clear();
}

size_t MemoryPool::round_size(size_t bytes) {
    if (bytes == 0) bytes = 1;
    constexpr size_t small_step = 256;
    constexpr size_t small_limit = size_t(1) << 20;
    if (bytes <= small_limit) return (bytes + small_step - 1) / small_step * small_step;
    size_t pow2 = small_limit;
    while (pow2 < bytes && pow2 <= (SIZE_MAX >> 1)) pow2 <<= 1;
    const size_t step = pow2 / 8;
    if (bytes > SIZE_MAX - step) return bytes;
    return (bytes + step - 1) / step * step;
}

void* MemoryPool::allocate(size_t bytes, bool exact) {
    const size_t size = exact && bytes < SIZE_MAX - 255 ? round_exact(bytes) : round_size(bytes);
    std::lock_guard<std::mutex> lock(s_->mutex);
    void* p = nullptr;
    auto it = s_->free_blocks.find(size);
    if (it != s_->free_blocks.end()) {
        p = it->second;
        s_->free_blocks.erase(it);
    } else {
        p = s_->upstream_alloc(size);
        if (!p && !s_->free_blocks.empty()) {
            s_->release_cache_locked();
            p = s_->upstream_alloc(size);
        }
        if (!p) {
            fail(QWEN3VL_STATUS_OUT_OF_MEMORY,
                 "out of memory on " + s_->device_name + ": requested " + std::to_string(bytes) + " bytes (" +
                     std::to_string(size) + " rounded) with " + std::to_string(s_->stats.bytes_in_use) +
                     " bytes in use and " + std::to_string(s_->stats.bytes_reserved) + " reserved by the pool");
        }
        s_->stats.system_allocations++;
        s_->stats.bytes_reserved += size;
    }
    s_->live.emplace(p, size);
    if (t_recording && t_recording->pool == this) {
        s_->held.emplace(p, false);
        try {
            t_recording->blocks.push_back(p);
        } catch (...) {
            s_->held.erase(p);
            s_->live.erase(p);
            s_->free_blocks.emplace(size, p);
            throw;
        }
    }
    s_->stats.pool_allocations++;
    s_->stats.bytes_in_use += size;
    s_->stats.peak_bytes_in_use = std::max(s_->stats.peak_bytes_in_use, s_->stats.bytes_in_use);
    return p;
}

void MemoryPool::deallocate(void* p) noexcept {
    if (!p) return;
    std::lock_guard<std::mutex> lock(s_->mutex);
    auto it = s_->live.find(p);
    if (it == s_->live.end()) return;  // not ours: ignoring is safer than corrupting the lists
    auto h = s_->held.find(p);
    if (h != s_->held.end()) {  // a graph still writes it: keep it until release_held
        h->second = true;
        return;
    }
    const size_t size = it->second;
    s_->live.erase(it);
    s_->stats.bytes_in_use -= size;
    s_->free_blocks.emplace(size, p);
}

void MemoryPool::begin_recording() {
    require(t_recording == nullptr, "this thread is already recording (capturing a graph)");
    t_recording = new Recording{this, {}};
}

std::vector<void*> MemoryPool::end_recording() {
    require(t_recording != nullptr && t_recording->pool == this, "this thread is not recording on this pool");
    std::vector<void*> blocks = std::move(t_recording->blocks);
    delete t_recording;
    t_recording = nullptr;
    return blocks;
}

void MemoryPool::release_held(const std::vector<void*>& blocks) noexcept {
    std::lock_guard<std::mutex> lock(s_->mutex);
    for (void* p : blocks) {
        auto h = s_->held.find(p);
        if (h == s_->held.end()) continue;
        const bool released = h->second;
        s_->held.erase(h);
        if (!released) continue;  // its tensor is still alive and frees it later as usual
        auto it = s_->live.find(p);
        if (it == s_->live.end()) continue;
        const size_t size = it->second;
        s_->live.erase(it);
        s_->stats.bytes_in_use -= size;
        s_->free_blocks.emplace(size, p);
    }
}

void MemoryPool::trim() noexcept {
    std::lock_guard<std::mutex> lock(s_->mutex);
    s_->release_cache_locked();
}

void MemoryPool::reset_peak() noexcept {
    std::lock_guard<std::mutex> lock(s_->mutex);
    s_->stats.peak_bytes_in_use = s_->stats.bytes_in_use;
}

qwen3vl_memory_stats MemoryPool::stats() const {
    std::lock_guard<std::mutex> lock(s_->mutex);
    return s_->stats;
}

}  // namespace qwen3vl
