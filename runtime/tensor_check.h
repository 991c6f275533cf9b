// Checks one DLTensor against what a plan expects; the message names the field.
#pragma once
#include <dlpack/dlpack.h>

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "topkattn/topkattn.h"

namespace tka {

struct TensorRule {
  const char* field;  // "q", "k_cache", ...
  uint8_t code;       // kDLBfloat, kDLFloat, kDLInt
  uint8_t bits;
  std::vector<int64_t> shape;  // -1: any extent >= 1, -2: any extent >= 0 (the caller checks more)
  bool required = true;
  int device_id = 0;
  int align = 0;              // bytes for the pointer and outer strides; 0: the default below
  int device_type = kDLCUDA;  // kDLCPU for host tensors (device_id then ignored)
  bool output = false;        // written by the plan: no two elements may share an address
};

// `rule` for a tensor the plan writes (see TensorRule::output).
inline TensorRule written(TensorRule rule) {
  rule.output = true;
  return rule;
}

// The DLPack code and bits of a floating-point tka_dtype (FP8 as DLPack 0.6's uint8 bytes).
struct DlType {
  uint8_t code, bits;
};
DlType dl_type_of(tka_dtype dtype);

struct TensorView {
  void* data = nullptr;  // nullptr for an absent optional tensor
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;  // in elements
};

// Order of checks: null, device, dtype, shape (each extent at most 2^31 - 1, as the kernels index
// with int), strides (none negative; the innermost 1; the bytes that the elements span, and their
// count, fit in 64 bits; an output's elements do not overlap), data (NULL only when there are no
// elements), alignment (by default 16 bytes for the data pointer and every outer stride of 16-bit
// tensors, element size otherwise).
Status check_tensor(const DLTensor* t, const TensorRule& rule, TensorView* view);

// The block table [batch, *] int32: required by a paged plan, and NULL for a contiguous one (a
// table given to a contiguous plan means the caller meant another plan).
Status check_block_table(const DLTensor* t, bool paged, int64_t batch, int device_id, TensorView* view);

// The query and the key cache of an attention call (decode, sparse attention): q [B, q_len, Hq, d]
// 16-bit with B <= max_batch; keys paged [pages, page_size, Hkv, d] or contiguous [>= B, Hkv, cap,
// d]. *batch: B.
struct QueryKeysRule {
  uint8_t code;  // kDLBfloat or kDLFloat (16 bits)
  int q_len, num_q_heads, num_kv_heads, head_dim, max_batch;
  int page_size;  // 0: contiguous
  int device_id;
};
Status check_query_and_keys(const tka_tensors& t, const QueryKeysRule& rule, TensorView* q, TensorView* k,
                            int64_t* batch);

}  // namespace tka
