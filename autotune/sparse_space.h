// The launch configurations sparse attention over given indices may be tuned over: query heads per
// CTA when a list serves a group of heads (compiled: more heads per CTA read each gathered row
// once for more of them, fewer spread the work over more CTAs) and how finely the lists are split
// over CTAs (launch-time: more splits fill the GPU at small batch, at the cost of a merge).
#pragma once
#include <vector>

#include "codegen/sparse_spec.h"
#include "runtime/device.h"

namespace tka {

// The heuristic: up to 16 heads a list, all of them in one CTA and the lists split to ~4 CTAs per
// SM; more heads, tiles of 32 or 64 (64 above 32 heads) split to ~2 CTAs per SM, or 1 where no
// more fit (MLA).
// On an architecture whose CTAs cannot hold a wide tile (99 KB on sm_86/89: MLA's tile of 64
// heads takes 161 KB, of 32 heads 118 KB) the tile steps down to one that fits.
SparseConfig default_sparse_config(const SparseOp& op, const SmemBudget& smem = smem_budget_for_sm(90));

// The heuristic default first, then every other combination that gives a distinct kernel and
// launch, each once: for more than 16 heads a list, tiles of 64 and 32 by 1, 2 and 4 CTAs per SM;
// then head tiles of 16, 8, 4, 2 and 1 (up to the heads a list serves) by 4, 2 and 8 CTAs per SM.
std::vector<SparseConfig> sparse_space(const SparseOp& op, const SmemBudget& smem = smem_budget_for_sm(90));

// Whether a config (from a tuning database, say) is one the kernel template accepts.
bool sparse_config_sane(const SparseConfig& c);

}  // namespace tka
