// Sparse attention over given indices (contract: include/topkattn/topkattn.h): the validated request and the spec
// the kernels are specialized on.
#pragma once
#include <string>

#include "common/status.h"
#include "topkattn/topkattn.h"

namespace tka {

inline constexpr int kMaxSparseGroup = 128;

struct SparseOp {
  tka_sparse_desc desc{};  // head_dim_v and scale filled in
  int group = 0;
  int sel_heads() const { return desc.select == TKA_SELECT_PER_GROUP ? desc.num_kv_heads : desc.num_q_heads; }
  int list_heads() const { return desc.select == TKA_SELECT_PER_GROUP ? group : 1; }  // query heads a list serves
};

Status validate_sparse(const tka_sparse_desc& desc, SparseOp* op);

// The launch choices of sparse attention (autotune/sparse_space.h).
struct SparseConfig {
  int head_tile = 16;   // query heads per CTA when a list serves many (compiled; up to 16, 32 or 64)
  int ctas_per_sm = 4;  // launch-time: lists are split until the grid has about this many per SM
  bool operator==(const SparseConfig& o) const { return head_tile == o.head_tile && ctas_per_sm == o.ctas_per_sm; }
  bool operator!=(const SparseConfig& o) const { return !(*this == o); }
  std::string text() const;  // "ht=16 cps=4"
};

struct SparseKernelSpec {
  tka_dtype dtype = TKA_DTYPE_BF16;
  int head_dim = 128, head_dim_v = 128;
  bool shared_kv = false;
  int group = 1, q_len = 1;
  bool per_group = false, paged = false;
  int page_size = 0;
  int threads = 128;   // threads per CTA: across d_v for the values, a warp per key for the scores
  int head_tile = 16;  // query heads per CTA when a list serves many
  std::string text() const;
  std::string short_name() const;
};

// The head tile a kernel compiles for `heads` query heads on one list when `wanted` is asked: up
// to 16 any count (capped at the heads), above that a tile of 32 or 64 (64 only for more than 32
// heads; a tile wider than the heads pads them with zero rows).
int sparse_head_tile(int heads, int wanted);

// The kernels' spec under a config (its head tile fitted to the heads a list serves).
SparseKernelSpec sparse_kernel_spec(const SparseOp& op, const SparseConfig& config);

}  // namespace tka
