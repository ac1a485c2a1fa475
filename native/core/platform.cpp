#include "platform.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "error.h"

#if defined(_WIN32)
#  ifndef NOMINMAX
#    define NOMINMAX
#  endif
#  include <windows.h>
#  include <intrin.h>
#  include <malloc.h>
#else
#  include <fcntl.h>
#  include <sys/mman.h>
#  include <sys/stat.h>
#  include <unistd.h>
#  if defined(__x86_64__) || defined(__i386__)
#    include <cpuid.h>
#  endif
#  if defined(__linux__)
#    include <sched.h>
#  endif
#endif

namespace qwen3vl {

MappedFile::~MappedFile() { release(); }

MappedFile::MappedFile(MappedFile&& other) noexcept { *this = std::move(other); }

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
    if (this != &other) {
        release();
        data_ = other.data_;
        size_ = other.size_;
        path_ = std::move(other.path_);
        mapping_ = other.mapping_;
        other.data_ = nullptr;
        other.size_ = 0;
        other.mapping_ = nullptr;
    }
    return *this;
}

#if defined(_WIN32)

// Paths cross the C API as UTF-8; Windows wants UTF-16 for anything beyond ASCII.
static std::wstring widen(const std::string& utf8) {
    if (utf8.empty()) return std::wstring();
    const int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, utf8.data(), static_cast<int>(utf8.size()), nullptr, 0);
    if (n <= 0) fail(QWEN3VL_STATUS_INVALID_ARGUMENT, "path is not valid UTF-8: '" + utf8 + "'");
    std::wstring w(static_cast<size_t>(n), L'\0');
    MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, utf8.data(), static_cast<int>(utf8.size()), &w[0], n);
    return w;
}

MappedFile MappedFile::open(const std::string& path) {
    MappedFile f;
    f.path_ = path;
    HANDLE file = CreateFileW(widen(path).c_str(), GENERIC_READ, FILE_SHARE_READ, nullptr, OPEN_EXISTING,
                              FILE_ATTRIBUTE_NORMAL, nullptr);
    if (file == INVALID_HANDLE_VALUE) fail(QWEN3VL_STATUS_IO_ERROR, "cannot open '" + path + "'");
    LARGE_INTEGER size;
    if (!GetFileSizeEx(file, &size)) {
        CloseHandle(file);
        fail(QWEN3VL_STATUS_IO_ERROR, "cannot get the size of '" + path + "'");
    }
    f.size_ = static_cast<uint64_t>(size.QuadPart);
    if (f.size_ == 0) {
        CloseHandle(file);
        return f;
    }
    if (f.size_ > static_cast<uint64_t>(SIZE_MAX)) {
        CloseHandle(file);
        fail(QWEN3VL_STATUS_IO_ERROR, "'" + path + "' is too large to map on this platform");
    }
    HANDLE mapping = CreateFileMappingW(file, nullptr, PAGE_READONLY, 0, 0, nullptr);
    CloseHandle(file);
    if (!mapping) fail(QWEN3VL_STATUS_IO_ERROR, "cannot map '" + path + "'");
    void* view = MapViewOfFile(mapping, FILE_MAP_READ, 0, 0, 0);
    if (!view) {
        CloseHandle(mapping);
        fail(QWEN3VL_STATUS_IO_ERROR, "cannot map a view of '" + path + "'");
    }
    f.mapping_ = mapping;
    f.data_ = static_cast<const uint8_t*>(view);
    return f;
}

void MappedFile::release() noexcept {
    if (data_) UnmapViewOfFile(const_cast<uint8_t*>(data_));
    if (mapping_) CloseHandle(static_cast<HANDLE>(mapping_));
    data_ = nullptr;
    mapping_ = nullptr;
    size_ = 0;
}

FileKind file_kind(const std::string& path) {
    const std::wstring w = widen(path);
    DWORD a = GetFileAttributesW(w.c_str());
    if (a == INVALID_FILE_ATTRIBUTES) return FileKind::None;
    if (a & FILE_ATTRIBUTE_DIRECTORY) return FileKind::Directory;
    if (a & FILE_ATTRIBUTE_DEVICE) return FileKind::Other;
    // Reserved names (CON, NUL, COM1) and pipes have attributes too: ask the handle. Opening with no access right does
    // not read, and a pipe without a server fails at once rather than waiting.
    HANDLE h = CreateFileW(w.c_str(), 0, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, nullptr, OPEN_EXISTING,
                           FILE_ATTRIBUTE_NORMAL, nullptr);
    if (h == INVALID_HANDLE_VALUE) return FileKind::Regular;  // not openable now: the read that follows says why
    const DWORD type = GetFileType(h);
    CloseHandle(h);
    return type == FILE_TYPE_DISK ? FileKind::Regular : FileKind::Other;
}


#else

MappedFile MappedFile::open(const std::string& path) {
    MappedFile f;
    f.path_ = path;
    // O_NONBLOCK: opening a FIFO returns at once (and is refused below) instead of waiting for a writer; it changes
    // nothing for a regular file's reads or mapping.
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) fail(QWEN3VL_STATUS_IO_ERROR, "cannot open '" + path + "': " + std::strerror(errno));
    struct stat st {};
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        fail(QWEN3VL_STATUS_IO_ERROR, "'" + path + "' is not a regular file");
    }
    f.size_ = static_cast<uint64_t>(st.st_size);
    if (f.size_ == 0) {
        ::close(fd);
        return f;
    }
    if (f.size_ > static_cast<uint64_t>(SIZE_MAX)) {
        ::close(fd);
        fail(QWEN3VL_STATUS_IO_ERROR, "'" + path + "' is too large to map on this platform");
    }
    void* p = mmap(nullptr, static_cast<size_t>(f.size_), PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    ::close(fd);
    if (p == MAP_FAILED) fail(QWEN3VL_STATUS_IO_ERROR, "cannot map '" + path + "': " + std::strerror(err));
    f.data_ = static_cast<const uint8_t*>(p);
    return f;
}

void MappedFile::release() noexcept {
    if (data_) munmap(const_cast<uint8_t*>(data_), static_cast<size_t>(size_));
    data_ = nullptr;
    size_ = 0;
}

FileKind file_kind(const std::string& path) {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) return FileKind::None;
    if (S_ISREG(st.st_mode)) return FileKind::Regular;
    if (S_ISDIR(st.st_mode)) return FileKind::Directory;
    return FileKind::Other;
}


#endif

bool is_directory(const std::string& path) { return file_kind(path) == FileKind::Directory; }

std::string read_text_file(const std::string& path) {
    if (file_kind(path) == FileKind::Other) fail(QWEN3VL_STATUS_IO_ERROR, "'" + path + "' is not a regular file");
    std::ifstream in(std::filesystem::u8path(path), std::ios::binary);  // UTF-8 on every platform
    if (!in) fail(QWEN3VL_STATUS_IO_ERROR, "cannot open '" + path + "'");
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) fail(QWEN3VL_STATUS_IO_ERROR, "cannot read '" + path + "'");
    return ss.str();
}

std::string path_join(const std::string& a, const std::string& b) {
    if (a.empty()) return b;
    char last = a.back();
    if (last == '/' || last == '\\') return a + b;
#if defined(_WIN32)
    return a + "\\" + b;
#else
    return a + "/" + b;
#endif
}

bool is_x86() {
#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64) || defined(_M_IX86)
    return true;
#else
    return false;
#endif
}

CpuidRegs cpuid(uint32_t leaf, uint32_t subleaf) {
    CpuidRegs r;
#if defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
    int regs[4];
    __cpuidex(regs, static_cast<int>(leaf), static_cast<int>(subleaf));
    r.eax = static_cast<uint32_t>(regs[0]);
    r.ebx = static_cast<uint32_t>(regs[1]);
    r.ecx = static_cast<uint32_t>(regs[2]);
    r.edx = static_cast<uint32_t>(regs[3]);
#elif defined(__x86_64__) || defined(__i386__)
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (__get_cpuid_count(leaf, subleaf, &a, &b, &c, &d)) {
        r.eax = a;
        r.ebx = b;
        r.ecx = c;
        r.edx = d;
    }
#else
    (void)leaf;
    (void)subleaf;
#endif
    return r;
}

uint64_t xgetbv0() {
    if (!(cpuid(1, 0).ecx & (1u << 27))) return 0;  // OSXSAVE
#if defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
    return _xgetbv(0);
#elif defined(__x86_64__) || defined(__i386__)
    uint32_t lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (static_cast<uint64_t>(hi) << 32) | lo;
#else
    return 0;
#endif
}

int logical_processor_count() {
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
#endif
    unsigned n = std::thread::hardware_concurrency();
    return n > 0 ? static_cast<int>(n) : 1;
}

void* aligned_alloc_bytes(size_t bytes, size_t alignment) {
    if (bytes == 0) bytes = alignment;
#if defined(_WIN32)
    return _aligned_malloc(bytes, alignment);
#else
    void* p = nullptr;
    if (posix_memalign(&p, alignment, bytes) != 0) return nullptr;
    return p;
#endif
}

void aligned_free_bytes(void* p) {
#if defined(_WIN32)
    _aligned_free(p);
#else
    std::free(p);
#endif
}

}  // namespace qwen3vl
