// What the C API's opaque handles hold.
#pragma once

#include <memory>

#include "backend.h"
#include "checkpoint.h"
#include "tensor.h"

struct qwen3vl_backend {
    std::unique_ptr<qwen3vl::Backend> impl;
};

struct qwen3vl_tensor {
    qwen3vl::Tensor t;
};

struct qwen3vl_graph {
    qwen3vl_backend* backend;  // for the parent check in qwen3vl_graph_free's contract (child of its backend)
    std::unique_ptr<qwen3vl::Graph> impl;
};

struct qwen3vl_checkpoint {
    std::shared_ptr<qwen3vl::Checkpoint> impl;  // shared with the weight tensors that view its mapping
};
