// libFuzzer driver for managed fuzz targets (tests/fuzz/dotnet/Qwen3VL.Fuzz): libFuzzer runs here, the target runs in
// a .NET child process built with SharpFuzz's libFuzzer mode (Fuzzer.LibFuzzer.Run), whose IL-instrumented
// assemblies record edge coverage into shared memory. This file is our own implementation of the parent side of the
// protocol that mode speaks (documented in SharpFuzz's docs/libFuzzer.md and its Fuzzer.LibFuzzer.cs):
//   - one System V shared memory segment: a 64 KiB coverage map, then the input (at most 1 MiB);
//   - environment: __LIBFUZZER_SHM_ID (shmget id), __LIBFUZZER_CONTROL_PIPE_ID and __LIBFUZZER_STATUS_PIPE_ID (the
//     child's file descriptors of two pipes);
//   - the child writes one int32 when ready; then, per input, the parent writes its int32 length on the control pipe
//     and the child answers an int32 status on the status pipe (0: fine; otherwise an exception escaped the target).
// The child's coverage map is copied into libFuzzer's extra counters after every input, so libFuzzer's corpus
// evolution follows the managed code's edges. An escaped exception and a child that dies (a native crash in a
// decoder, a fail-fast, out of memory) are both reported as crashes, so libFuzzer saves the input.
//
// Usage (libFuzzer ignores flags that begin with "--"; they are ours):
//   libfuzzer_dotnet --target=dotnet --arg=path/Qwen3VL.Fuzz.dll --arg=image [libFuzzer flags] corpus_dir...
//
// A Linux test tool (System V shm, fork/exec, prctl), built with clang's -fsanitize=fuzzer; not part of the library,
// so it sits outside native/core/platform.cpp.
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr size_t kMapSize = size_t{1} << 16;
constexpr size_t kMaxInput = size_t{1} << 20;

int g_shm_id = -1;
uint8_t* g_shared = nullptr;
int g_control_fd = -1;  // parent writes lengths
int g_status_fd = -1;   // parent reads statuses
pid_t g_child = -1;

[[noreturn]] void Fail(const char* what)
{
    std::fprintf(stderr, "libfuzzer_dotnet: %s: %s\n", what, std::strerror(errno));
    std::exit(1);
}

void Cleanup()
{
    if (g_child > 0)
    {
        kill(g_child, SIGKILL);
        waitpid(g_child, nullptr, 0);
        g_child = -1;
    }
    if (g_shm_id >= 0)
    {
        shmctl(g_shm_id, IPC_RMID, nullptr);
        g_shm_id = -1;
    }
}

// Reads or writes exactly 4 bytes; returns false at end of file (the child is gone).
bool ReadInt32(int fd, int32_t* value)
{
    auto* p = reinterpret_cast<char*>(value);
    size_t done = 0;
    while (done < sizeof(*value))
    {
        ssize_t n = read(fd, p + done, sizeof(*value) - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) Fail("read from the .NET target");
        if (n == 0) return false;
        done += static_cast<size_t>(n);
    }
    return true;
}

bool WriteInt32(int fd, int32_t value)
{
    const auto* p = reinterpret_cast<const char*>(&value);
    size_t done = 0;
    while (done < sizeof(value))
    {
        ssize_t n = write(fd, p + done, sizeof(value) - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EPIPE) return false;
        if (n < 0) Fail("write to the .NET target");
        done += static_cast<size_t>(n);
    }
    return true;
}

// Why the child ended, for the crash report.
void DescribeChildExit()
{
    int status = 0;
    if (g_child > 0 && waitpid(g_child, &status, 0) == g_child)
    {
        g_child = -1;
        if (WIFSIGNALED(status))
            std::fprintf(stderr, "libfuzzer_dotnet: the .NET target died of signal %d\n", WTERMSIG(status));
        else if (WIFEXITED(status))
            std::fprintf(stderr, "libfuzzer_dotnet: the .NET target exited with code %d\n", WEXITSTATUS(status));
    }
}

}  // namespace

// libFuzzer collects these counters as extra coverage (the section name is its convention).
__attribute__((used, section("__libfuzzer_extra_counters"))) uint8_t g_extra_counters[kMapSize];

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv)
{
    std::string target;
    std::vector<std::string> args;
    for (int i = 1; i < *argc; ++i)
    {
        const char* a = (*argv)[i];
        if (std::strncmp(a, "--target=", 9) == 0) target = a + 9;
        else if (std::strncmp(a, "--arg=", 6) == 0) args.emplace_back(a + 6);
    }
    if (target.empty())
    {
        std::fprintf(stderr, "libfuzzer_dotnet: give the .NET target: --target=dotnet --arg=Qwen3VL.Fuzz.dll --arg=<name>\n");
        std::exit(1);
    }

    int control[2], status[2];
    if (pipe(control) != 0 || pipe(status) != 0) Fail("pipe");
    g_shm_id = shmget(IPC_PRIVATE, kMapSize + kMaxInput, IPC_CREAT | IPC_EXCL | 0600);
    if (g_shm_id < 0) Fail("shmget");
    std::atexit(Cleanup);
    void* shared = shmat(g_shm_id, nullptr, 0);
    if (shared == reinterpret_cast<void*>(-1)) Fail("shmat");
    g_shared = static_cast<uint8_t*>(shared);
    std::signal(SIGPIPE, SIG_IGN);

    g_child = fork();
    if (g_child < 0) Fail("fork");
    if (g_child == 0)
    {
        // The child: its ends of the pipes stay open across exec (pipe() does not set close-on-exec); it dies with us.
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(control[1]);
        close(status[0]);
        setenv("__LIBFUZZER_SHM_ID", std::to_string(g_shm_id).c_str(), 1);
        setenv("__LIBFUZZER_CONTROL_PIPE_ID", std::to_string(control[0]).c_str(), 1);
        setenv("__LIBFUZZER_STATUS_PIPE_ID", std::to_string(status[1]).c_str(), 1);
        std::vector<char*> child_argv;
        child_argv.push_back(const_cast<char*>(target.c_str()));
        for (std::string& a : args) child_argv.push_back(a.data());
        child_argv.push_back(nullptr);
        execvp(target.c_str(), child_argv.data());
        std::fprintf(stderr, "libfuzzer_dotnet: cannot start %s: %s\n", target.c_str(), std::strerror(errno));
        _exit(127);
    }
    close(control[0]);
    close(status[1]);
    g_control_fd = control[1];
    g_status_fd = status[0];

    int32_t ready = 0;
    if (!ReadInt32(g_status_fd, &ready))
    {
        DescribeChildExit();
        std::fprintf(stderr, "libfuzzer_dotnet: the .NET target ended before it was ready (is it built with SharpFuzz's "
                             "Fuzzer.LibFuzzer.Run?)\n");
        std::exit(1);
    }
    // Both processes are attached: the segment goes away when the last one detaches, whatever ends them.
    shmctl(g_shm_id, IPC_RMID, nullptr);
    g_shm_id = -1;
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    if (size > kMaxInput)
    {
        // libFuzzer's -max_len bounds generated inputs; only a corpus file could be this long.
        std::fprintf(stderr, "libfuzzer_dotnet: an input of %zu bytes is over the 1 MiB the protocol carries; skipped\n", size);
        return -1;
    }
    std::memset(g_shared, 0, kMapSize);
    if (size > 0) std::memcpy(g_shared + kMapSize, data, size);
    int32_t verdict = 0;
    bool alive = WriteInt32(g_control_fd, static_cast<int32_t>(size)) && ReadInt32(g_status_fd, &verdict);
    std::memcpy(g_extra_counters, g_shared, kMapSize);
    if (!alive)
    {
        DescribeChildExit();
        std::fprintf(stderr, "libfuzzer_dotnet: the .NET target died on this input (a native crash, fail-fast or out of memory)\n");
        std::abort();
    }
    if (verdict != 0)
    {
        std::fprintf(stderr, "libfuzzer_dotnet: an exception escaped the .NET target on this input (its trace is above)\n");
        std::abort();
    }
    return 0;
}
