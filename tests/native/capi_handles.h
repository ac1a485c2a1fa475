// Owning wrappers of the C API's handles for tests that use the exported functions.
#pragma once

#include <memory>

#include "qwen3vl.h"

struct BackendDeleter {
    void operator()(qwen3vl_backend* b) const { qwen3vl_backend_free(b); }
};
struct TensorDeleter {
    void operator()(qwen3vl_tensor* t) const { qwen3vl_tensor_free(t); }
};
using BackendPtr = std::unique_ptr<qwen3vl_backend, BackendDeleter>;
using TensorPtr = std::unique_ptr<qwen3vl_tensor, TensorDeleter>;
