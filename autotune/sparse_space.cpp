#include "autotune/sparse_space.h"

#include <algorithm>

#include "templates/sparse_params.cuh"

namespace tka {
namespace {

// The config as the kernels compile it: the head tile fitted to the heads a list serves.
SparseConfig effective(const SparseOp& op, SparseConfig c) {
  c.head_tile = sparse_kernel_spec(op, c).head_tile;
  return c;
}

int list_heads(const SparseOp& op) { return op.desc.select == TKA_SELECT_PER_GROUP ? op.group : 1; }

// CTAs an SM holds of a kernel with this much shared memory, at most 4 (227 KB an SM on sm_90).
int ctas_that_fit(const SparseOp& op, int head_tile) {
  const tka_sparse_desc& d = op.desc;
  const int bytes = sparse_smem_layout(d.head_dim, d.head_dim_v, d.shared_kv != 0, head_tile).bytes;
  return std::max(1, std::min(4, (227 << 10) / bytes));
}

}  // namespace

SparseConfig default_sparse_config(const SparseOp& op) {
  const int heads = list_heads(op);
  SparseConfig c;
  c.head_tile = heads > 32 ? kSparseWideTile : heads > kSparseHeadRows ? 32 : kSparseHeadRows;
  c = effective(op, c);
  // A wide tile's CTA is large (MLA: 160 KB, one an SM): as many as fit, so that the lists are
  // split only as far as the GPU needs to be filled (each split costs a merge of d_v floats).
  if (c.head_tile > kSparseHeadRows) c.ctas_per_sm = std::min(2, ctas_that_fit(op, c.head_tile));
  return c;
}

std::vector<SparseConfig> sparse_space(const SparseOp& op) {
  std::vector<SparseConfig> out{default_sparse_config(op)};
  auto add = [&](SparseConfig c) {
    c = effective(op, c);
    if (std::find(out.begin(), out.end(), c) == out.end()) out.push_back(c);
  };
  if (list_heads(op) > kSparseHeadRows)
    for (int tile : {kSparseWideTile, 32})
      for (int ctas : {1, 2, 4}) add(SparseConfig{tile, ctas});
  for (int tile : {16, 8, 4, 2, 1})
    for (int ctas : {4, 2, 8}) add(SparseConfig{tile, ctas});
  return out;
}

bool sparse_config_sane(const SparseConfig& c) {
  const bool tile =
      (c.head_tile >= 1 && c.head_tile <= kSparseHeadRows) || c.head_tile == 32 || c.head_tile == kSparseWideTile;
  return tile && c.ctas_per_sm >= 1 && c.ctas_per_sm <= 64;
}

}  // namespace tka
