#include "autotune/sparse_space.h"

#include <algorithm>

namespace tka {
namespace {
// The config as the kernels compile it: the head tile capped at the heads a list serves.
SparseConfig effective(const SparseOp& op, SparseConfig c) {
  c.head_tile = sparse_kernel_spec(op, c).head_tile;
  return c;
}
}  // namespace

SparseConfig default_sparse_config(const SparseOp& op) { return effective(op, SparseConfig{}); }

std::vector<SparseConfig> sparse_space(const SparseOp& op) {
  std::vector<SparseConfig> out{default_sparse_config(op)};
  for (int tile : {16, 8, 4, 2, 1}) {
    for (int ctas : {4, 2, 8}) {
      const SparseConfig c = effective(op, SparseConfig{tile, ctas});
      if (std::find(out.begin(), out.end(), c) == out.end()) out.push_back(c);
    }
  }
  return out;
}

bool sparse_config_sane(const SparseConfig& c) {
  return c.head_tile >= 1 && c.head_tile <= 16 && c.ctas_per_sm >= 1 && c.ctas_per_sm <= 64;
}

}  // namespace tka
