// The one place that talks to the operating system and the compiler's intrinsics for CPU identification:
// file mapping, CPU identification, processor count, aligned memory. Everything else in the engine is plain C++17.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace qwen3vl {

// A read-only memory mapping of a whole file. Move-only; unmaps on destruction.
class MappedFile {
public:
    MappedFile() = default;
    // Throws qwen3vl::Error(IO_ERROR) naming the file and the OS reason.
    static MappedFile open(const std::string& path);
    ~MappedFile();
    MappedFile(MappedFile&& other) noexcept;
    MappedFile& operator=(MappedFile&& other) noexcept;
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const uint8_t* data() const { return data_; }
    uint64_t size() const { return size_; }
    const std::string& path() const { return path_; }

private:
    void release() noexcept;
    const uint8_t* data_ = nullptr;
    uint64_t size_ = 0;
    std::string path_;
    void* mapping_ = nullptr;  // Windows file-mapping handle; unused elsewhere.
};

// What a path names (symbolic links followed), found without opening it for reading (which blocks on a FIFO).
enum class FileKind { None, Regular, Directory, Other };
FileKind file_kind(const std::string& path);

bool is_directory(const std::string& path);
// Reads a whole (small) regular file; throws IO_ERROR (also for a FIFO or device, without opening it).
std::string read_text_file(const std::string& path);
// Joins two path components with the platform separator.
std::string path_join(const std::string& a, const std::string& b);

// Raw CPUID / XGETBV access; all zero on non-x86 targets.
struct CpuidRegs {
    uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
};
CpuidRegs cpuid(uint32_t leaf, uint32_t subleaf);
uint64_t xgetbv0();  // XCR0, 0 when OSXSAVE is not set
bool is_x86();

int logical_processor_count();

// Aligned host allocation (alignment a power of two >= sizeof(void*)); returns nullptr on failure.
void* aligned_alloc_bytes(size_t bytes, size_t alignment);
void aligned_free_bytes(void* p);

}  // namespace qwen3vl
