#include "autotune/indexer_space.h"

#include <algorithm>

#include "autotune/tuning_db.h"
#include "templates/indexer_params.cuh"

namespace tka {
namespace {

// Below this many score rows (batch bucket x q_len) the wgmma path defaults to 3 stages, else 2.
constexpr long long kIndexerFewRows = 8;

}  // namespace

IndexerConfig default_indexer_config(const IndexerOp& op, int sm) {
  // The wgmma kernel with many rows is bound by how many CTAs an SM holds, not by tiles in
  // flight: 2 stages fit 6 (4 stages: 3), 1.15x faster at B = 16, N = 128K on the H200. With few
  // rows each CTA streams a long chunk and 3 stages win (1.19x over 2 at B = 1, N = 128K). The
  // batch's tuning bucket decides, so that the tuner's default is the plan's.
  const tka_indexer_desc& d = op.desc;
  if (indexer_uses_wgmma(sm, d.num_index_heads, d.index_head_dim, d.key_dtype == TKA_DTYPE_FP8_E4M3))
    return IndexerConfig{static_cast<long long>(pow2_bucket(d.max_batch)) * d.q_len < kIndexerFewRows ? 3 : 2, 1};
  return IndexerConfig{};
}

std::vector<IndexerConfig> indexer_default_configs(const IndexerOp& op, int sm) {
  std::vector<IndexerConfig> out;
  for (long long batch : {1LL, kIndexerFewRows}) {  // the heuristic's two regimes
    IndexerOp at = op;
    at.desc.max_batch = static_cast<int>(batch);
    const IndexerConfig c = default_indexer_config(at, sm);
    if (std::find(out.begin(), out.end(), c) == out.end()) out.push_back(c);
  }
  return out;
}

std::vector<IndexerConfig> indexer_space(const IndexerOp& op, int sm) {
  std::vector<IndexerConfig> out{default_indexer_config(op, sm)};
  for (int stages : {2, 3, 4, 6}) {
    for (int ctas : {1, 8, 16}) {
      const IndexerConfig c{stages, ctas};
      if (std::find(out.begin(), out.end(), c) == out.end()) out.push_back(c);
    }
  }
  return out;
}

bool indexer_config_sane(const IndexerConfig& c) {
  return c.stages >= 2 && c.stages <= 6 && c.ctas_per_sm >= 1 && c.ctas_per_sm <= 256;
}

int indexer_tokens_per_cta(const IndexerConfig& c, long long score_len, long long rows, int sm_count,
                           int resident_per_sm) {
  // Whole waves: a grid of 1.5 waves takes as long as 2 (the second half-empty).
  const long long resident = resident_per_sm > 0 ? resident_per_sm : c.ctas_per_sm;
  const long long waves = (c.ctas_per_sm + resident - 1) / resident;
  const long long slots = waves * resident * std::max(sm_count, 1);
  const long long chunks = std::max<long long>(1, slots / std::max<long long>(rows, 1));  // per row
  const long long want = (score_len + chunks - 1) / chunks;
  const long long tiles = std::max<long long>(1, (want + kIndexerTile - 1) / kIndexerTile);
  return static_cast<int>(
      std::min<long long>(tiles * kIndexerTile, (score_len + kIndexerTile - 1) / kIndexerTile * kIndexerTile));
}

}  // namespace tka
