#include "autotune/indexer_space.h"

#include <algorithm>

#include "templates/indexer_params.cuh"

namespace tka {

IndexerConfig default_indexer_config(const IndexerOp&) { return IndexerConfig{}; }

std::vector<IndexerConfig> indexer_space(const IndexerOp& op) {
  std::vector<IndexerConfig> out{default_indexer_config(op)};
  for (int stages : {2, 3, 4}) {
    for (int ctas : {8, 16, 32}) {
      const IndexerConfig c{stages, ctas};
      if (std::find(out.begin(), out.end(), c) == out.end()) out.push_back(c);
    }
  }
  return out;
}

bool indexer_config_sane(const IndexerConfig& c) {
  return c.stages >= 2 && c.stages <= 6 && c.ctas_per_sm >= 1 && c.ctas_per_sm <= 256;
}

int indexer_tokens_per_cta(const IndexerConfig& c, long long score_len, long long rows, int sm_count) {
  const long long slots = static_cast<long long>(c.ctas_per_sm) * std::max(sm_count, 1);
  const long long want = (score_len * rows + slots - 1) / slots;
  const long long tiles = std::max<long long>(1, (want + kIndexerTile - 1) / kIndexerTile);
  return static_cast<int>(
      std::min<long long>(tiles * kIndexerTile, (score_len + kIndexerTile - 1) / kIndexerTile * kIndexerTile));
}

}  // namespace tka
