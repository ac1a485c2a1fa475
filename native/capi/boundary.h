// The C API boundary: runs a body, turns every exception into a qwen3vl_status and the thread-local last-error
// message. Each exported function is one call to guarded().
#pragma once

#include <cstring>
#include <exception>
#include <new>
#include <string>

#include "error.h"
#include "qwen3vl.h"

namespace qwen3vl {

void set_last_error(const std::string& message) noexcept;
void clear_last_error() noexcept;

template <class Body>
qwen3vl_status guarded(Body&& body) noexcept {
    try {
        body();
        return QWEN3VL_STATUS_OK;
    } catch (const Error& e) {
        set_last_error(e.what());
        return e.status();
    } catch (const std::bad_alloc&) {
        set_last_error("out of host memory");
        return QWEN3VL_STATUS_OUT_OF_MEMORY;
    } catch (const std::exception& e) {
        set_last_error(std::string("internal error: ") + e.what());
        return QWEN3VL_STATUS_INTERNAL_ERROR;
    } catch (...) {
        set_last_error("internal error: unknown exception");
        return QWEN3VL_STATUS_INTERNAL_ERROR;
    }
}

// The integer inside a caller-supplied enum without loading it as the enum type: callers (C#, other languages)
// can pass any int, and an out-of-range value loaded as the enum is undefined behaviour.
template <class E>
int raw_enum(const E& e) {
    int v = 0;
    static_assert(sizeof(E) == sizeof(int), "C enums are int-sized");
    std::memcpy(&v, &e, sizeof v);
    return v;
}

// Checks the struct_size field callers set with the *_init functions.
template <class T>
void require_struct(const T* p, const char* type_name) {
    require(p != nullptr, std::string(type_name) + " pointer is NULL");
    require(p->struct_size == sizeof(T), std::string(type_name) + ".struct_size is " + std::to_string(p->struct_size) +
                                             ", expected " + std::to_string(sizeof(T)) +
                                             " (initialise it with its _init or _default_params function)");
}

}  // namespace qwen3vl
