#include "thread_pool.h"

#include <exception>

namespace qwen3vl {

namespace {
thread_local const ThreadPool* t_inside = nullptr;  // the pool whose task this thread is running
}

ThreadPool::ThreadPool(int threads) {
    if (threads < 1) threads = 1;
    workers_.reserve(static_cast<size_t>(threads - 1));
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
}

void ThreadPool::run_tasks(int thread) {
    const ThreadPool* outer = t_inside;
    t_inside = this;
    for (;;) {
        size_t task;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (next_ >= tasks_) break;
            task = next_++;
        }
        try {
            (*fn_)(task, thread);
        } catch (...) {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!error_) error_ = std::current_exception();
        }
        std::lock_guard<std::mutex> lock(mutex_);
        if (++finished_ == tasks_) done_.notify_all();
    }
    t_inside = outer;
}

void ThreadPool::worker_loop(int index) {
    unsigned seen = 0;
    for (;;) {
        {
            std::unique_lock<std::mutex> lock(mutex_);
            wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
            if (stop_) return;
            seen = generation_;
            ++active_workers_;
        }
        run_tasks(index);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (--active_workers_ == 0) done_.notify_all();
        }
    }
}

void ThreadPool::parallel_for(size_t tasks, const std::function<void(size_t, int)>& fn) {
    if (tasks == 0) return;
    if (t_inside == this || workers_.empty() || tasks == 1) {
        for (size_t t = 0; t < tasks; ++t) fn(t, 0);
        return;
    }
    std::lock_guard<std::mutex> call(call_mutex_);
    {
        std::lock_guard<std::mutex> lock(mutex_);
        fn_ = &fn;
        tasks_ = tasks;
        next_ = 0;
        finished_ = 0;
        error_ = nullptr;
        ++generation_;
    }
    wake_.notify_all();
    run_tasks(0);
    std::exception_ptr error;
    {
        std::unique_lock<std::mutex> lock(mutex_);
        // Wait for every task and for every worker to leave run_tasks, so fn_ is not used after we return.
        done_.wait(lock, [&] { return finished_ == tasks_ && active_workers_ == 0; });
        fn_ = nullptr;
        tasks_ = 0;
        error = error_;
    }
    if (error) std::rethrow_exception(error);
}

}  // namespace qwen3vl
