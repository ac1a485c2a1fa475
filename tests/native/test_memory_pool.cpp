// The caching pool over a counting fake upstream: reuse, rounding, out-of-memory with retry after releasing the
// cache, counters.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "error.h"
#include "memory_pool.h"

namespace {

using namespace qwen3vl;

struct FakeUpstream {
    size_t limit = SIZE_MAX;
    size_t used = 0;
    int allocs = 0, frees = 0;
    std::map<void*, size_t> live;
};

MemoryPool make_pool(FakeUpstream& up) {
    return MemoryPool(
        "fake",
        [&up](size_t n) -> void* {
            if (up.used + n > up.limit) return nullptr;
            void* p = std::malloc(n);
            up.used += n;
            up.allocs++;
            up.live.emplace(p, n);
            return p;
        },
        [&up](void* p) {
            up.frees++;
            up.used -= up.live.at(p);
            up.live.erase(p);
            std::free(p);
        });
}

TEST(MemoryPool, RoundSizeSteps) {
    EXPECT_EQ(MemoryPool::round_size(0), 256u);
    EXPECT_EQ(MemoryPool::round_size(1), 256u);
    EXPECT_EQ(MemoryPool::round_size(257), 512u);
    EXPECT_EQ(MemoryPool::round_size(1u << 20), 1u << 20);
    EXPECT_EQ(MemoryPool::round_size((1u << 20) + 1), (1u << 20) + (1u << 18));  // 2 MiB / 8 steps
    for (size_t n : {size_t(3000), size_t(5u << 20), size_t(123456789)}) {
        EXPECT_GE(MemoryPool::round_size(n), n);
        EXPECT_LE(MemoryPool::round_size(n), n + n / 4 + 256);  // waste bounded by the step
    }
}

TEST(MemoryPool, ReusesFreedBlocksOfTheSameClass) {
    FakeUpstream up;
    {
        MemoryPool pool = make_pool(up);
        void* a = pool.allocate(1000);
        pool.deallocate(a);
        void* b = pool.allocate(900);  // same 1024-byte class
        EXPECT_EQ(a, b);
        EXPECT_EQ(up.allocs, 1);
        const auto s = pool.stats();
        EXPECT_EQ(s.system_allocations, 1u);
        EXPECT_EQ(s.pool_allocations, 2u);
        EXPECT_EQ(s.bytes_in_use, 1024u);
        pool.deallocate(b);
    }
    EXPECT_TRUE(up.live.empty());
}

TEST(MemoryPool, ExactBlocksHoldTheirSizeNotAClass) {
    // A weight of 33 MB would take a 40 MB class (the 8B's lm_head in q8, 661 MB, a 768 MB one); exact, it takes its
    // size in 256-byte steps, is counted so, and is reused only by a request of that size.
    FakeUpstream up;
    {
        MemoryPool pool = make_pool(up);
        const size_t big = (size_t(33) << 20) + 100;
        EXPECT_EQ(MemoryPool::round_size(big), size_t(40) << 20);
        void* a = pool.allocate(big, /*exact=*/true);
        EXPECT_EQ(pool.stats().bytes_in_use, MemoryPool::round_exact(big));
        EXPECT_EQ(MemoryPool::round_exact(big), (size_t(33) << 20) + 256);
        EXPECT_EQ(MemoryPool::round_exact(0), 256u);
        pool.deallocate(a);
        void* b = pool.allocate(big, true);
        EXPECT_EQ(a, b);
        EXPECT_EQ(up.allocs, 1);
        void* c = pool.allocate(big, false);  // a class-sized request does not take the exact block
        EXPECT_NE(c, b);
        EXPECT_EQ(pool.stats().bytes_in_use, MemoryPool::round_exact(big) + (size_t(40) << 20));
        pool.deallocate(b);
        pool.deallocate(c);
    }
    EXPECT_TRUE(up.live.empty());
}

TEST(MemoryPool, OutOfMemoryReleasesCacheAndRetriesThenReportsSizes) {
    FakeUpstream up;
    up.limit = 4096;
    MemoryPool pool = make_pool(up);
    void* a = pool.allocate(2048);
    pool.deallocate(a);  // cached, still counted upstream
    void* b = pool.allocate(3000);  // needs the cache released first
    EXPECT_NE(b, nullptr);
    EXPECT_EQ(pool.stats().system_frees, 1u);
    try {
        pool.allocate(100000);
        FAIL() << "expected OUT_OF_MEMORY";
    } catch (const Error& e) {
        EXPECT_EQ(e.status(), QWEN3VL_STATUS_OUT_OF_MEMORY);
        EXPECT_NE(std::string(e.what()).find("requested 100000 bytes"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("fake"), std::string::npos) << e.what();
    }
    pool.deallocate(b);  // still usable after the failure
    void* c = pool.allocate(10);
    pool.deallocate(c);
}

TEST(MemoryPool, UnknownPointersAreIgnored) {
    FakeUpstream up;
    MemoryPool pool = make_pool(up);
    int x = 0;
    pool.deallocate(&x);
    pool.deallocate(nullptr);
    EXPECT_EQ(pool.stats().bytes_in_use, 0u);
}

}  // namespace
