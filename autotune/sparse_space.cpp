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

// Shared memory a CTA of sparse_attend takes: the dynamic layout, at most 2 KB of static arrays
// (row pointers, states, the running max and sum), and the 1 KB the driver reserves per CTA.
int cta_smem(const SparseOp& op, int head_tile) {
  const tka_sparse_desc& d = op.desc;
  return sparse_smem_layout(d.head_dim, d.head_dim_v, d.shared_kv != 0, head_tile).bytes + (2 << 10);
}

}  // namespace

SparseConfig default_sparse_config(const SparseOp& op, const SmemBudget& budget) {
  const int heads = op.list_heads();
  SparseConfig c;
  c.head_tile = heads > 32 ? kSparseWideTile : heads > kSparseHeadRows ? 32 : kSparseHeadRows;
  while (c.head_tile > kSparseHeadRows && cta_smem(op, c.head_tile) > budget.per_cta)
    c.head_tile = c.head_tile == kSparseWideTile ? 32 : kSparseHeadRows;
  c = effective(op, c);
  // A wide tile's CTA is large (MLA: 161 KB, one an SM): as many as fit, at most 2, so that the
  // lists are split only as far as the GPU needs to be filled (each split costs a merge of d_v
  // floats, and one more CTA than fits makes a second wave).
  if (c.head_tile > kSparseHeadRows)
    c.ctas_per_sm = std::max(1, std::min(2, budget.per_sm / (cta_smem(op, c.head_tile) + (1 << 10))));
  return c;
}

std::vector<SparseConfig> sparse_space(const SparseOp& op, const SmemBudget& smem) {
  std::vector<SparseConfig> out{default_sparse_config(op, smem)};
  auto add = [&](SparseConfig c) {
    c = effective(op, c);
    if (std::find(out.begin(), out.end(), c) == out.end()) out.push_back(c);
  };
  if (op.list_heads() > kSparseHeadRows)
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
