// Errors inside the engine: code throws qwen3vl::Error (or std::bad_alloc); the C API boundary (capi/boundary.h)
// turns it into a qwen3vl_status and the thread-local last-error message. Nothing else may cross the boundary.
#pragma once

#include <stdexcept>
#include <string>

#include "qwen3vl.h"

namespace qwen3vl {

class Error : public std::runtime_error {
public:
    Error(qwen3vl_status status, const std::string& message) : std::runtime_error(message), status_(status) {}
    qwen3vl_status status() const noexcept { return status_; }

private:
    qwen3vl_status status_;
};

[[noreturn]] inline void fail(qwen3vl_status status, const std::string& message) { throw Error(status, message); }

// Checks a caller-supplied condition; throws INVALID_ARGUMENT naming what was wrong. The message is built before
// the call: on hot paths write `if (!condition) fail(...)` instead.
inline void require(bool condition, const std::string& message) {
    if (!condition) fail(QWEN3VL_STATUS_INVALID_ARGUMENT, message);
}

}  // namespace qwen3vl
