// A fixed pool of worker threads created once per backend; ops split their work with parallel_for. The calling
// thread takes part, so a pool of N threads has N-1 workers. No threads are created per call.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace qwen3vl {

class ThreadPool {
public:
    explicit ThreadPool(int threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return static_cast<int>(workers_.size()) + 1; }

    // Runs fn(task, thread) for task in [0, tasks) over the pool and returns when all are done. thread is in
    // [0, size()) and identifies the executing thread (for per-thread scratch). An exception thrown by fn is
    // rethrown here after every task has finished. Calls from several threads are serialised; a call from inside
    // fn runs inline on the calling thread.
    void parallel_for(size_t tasks, const std::function<void(size_t task, int thread)>& fn);

private:
    void worker_loop(int index);
    void run_tasks(int thread);

    std::vector<std::thread> workers_;
    std::mutex call_mutex_;  // one parallel_for at a time
    std::mutex mutex_;
    std::condition_variable wake_;
    std::condition_variable done_;
    const std::function<void(size_t, int)>* fn_ = nullptr;
    size_t tasks_ = 0;
    size_t next_ = 0;
    size_t finished_ = 0;
    unsigned generation_ = 0;
    int active_workers_ = 0;
    bool stop_ = false;
    std::exception_ptr error_;
};

}  // namespace qwen3vl
