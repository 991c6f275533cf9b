// What the `topkattn run` GPU paths share: error checks (each failure prints one line and makes
// the command exit with 1), DLTensor wrapping, plan creation and timing with their report lines.
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

// Creates the plan and prints its spec, how long creation took and how many kernels it compiled.
// 0, or 1 after printing why.
int create_plan_reporting(tka_runtime* rt, const tka_op_desc& desc, tka_plan** plan);

// Times `reps` runs on the legacy stream after a few untimed ones and prints the time per step
// against the bytes floor (`bytes` over the measured copy bandwidth). 0, or 1 after printing why.
int time_against_floor(const DriverApi* api, const tka_plan* plan, const tka_tensors& tensors, void* workspace,
                       int reps, double bytes, int batch, int seq_len, int k);

}  // namespace tka::tools
