// Error checks and DLTensor wrapping shared by the `topkattn run` GPU paths: each failure prints
// one line and makes the command exit with 1.
#pragma once
#include <cstdio>
#include <vector>

#include "common/status.h"
#include "runtime/driver.h"
#include "topkattn/topkattn.h"

#define CHECK_STATUS(expr)                                              \
  do {                                                                  \
    const ::tka::Status s_ = (expr);                                    \
    if (!s_.is_ok()) {                                                  \
      std::fprintf(stderr, "topkattn run: %s\n", s_.message().c_str()); \
      return 1;                                                         \
    }                                                                   \
  } while (0)

#define CHECK_TKA(expr)                                                                        \
  do {                                                                                         \
    const tka_status s_ = (expr);                                                              \
    if (s_ != TKA_SUCCESS) {                                                                   \
      std::fprintf(stderr, "topkattn run: %s: %s\n", tka_status_string(s_), tka_last_error()); \
      return 1;                                                                                \
    }                                                                                          \
  } while (0)

namespace tka::tools {

// A device tensor with compact strides; `shape` must outlive the DLTensor.
inline DLTensor device_tensor(CUdeviceptr p, DLDataType dt, std::vector<int64_t>& shape) {
  DLTensor t{};
  t.data = reinterpret_cast<void*>(p);
  t.device = {kDLCUDA, 0};
  t.ndim = static_cast<int>(shape.size());
  t.dtype = dt;
  t.shape = shape.data();
  return t;
}

}  // namespace tka::tools
