// The launch configurations the Lightning Indexer scores kernel may be tuned over: key tiles in
// flight per CTA (compiled: more hide more latency but cost shared memory, so fewer CTAs fit per
// SM) and how finely the tokens are cut into CTAs (launch-time).
#pragma once
#include <vector>

#include "codegen/indexer_spec.h"

namespace tka {

// The heuristic for a device of compute capability `sm` (90 for sm_90): one wave of the CTAs that
// fit; 4 stages (3 tiles in flight); on the wgmma path (indexer_uses_wgmma), where more CTAs an
// SM matter more than more tiles in flight, 2 (3 below 8 rows of scores, max_batch rounded up to
// its power-of-two tuning bucket).
IndexerConfig default_indexer_config(const IndexerOp& op, int sm);

// Every config the heuristic picks for this shape at some batch size (prewarm compiles them all:
// a plan's batch is not known ahead).
std::vector<IndexerConfig> indexer_default_configs(const IndexerOp& op, int sm);

// The heuristic default first, then every other combination, each once.
std::vector<IndexerConfig> indexer_space(const IndexerOp& op, int sm);

// Whether a config (from a tuning database, say) is one the kernel template accepts.
bool indexer_config_sane(const IndexerConfig& c);

// Tokens per CTA of the scores grid for `rows` score rows of `score_len` tokens: whole 64-token
// tiles, every row in the same number of chunks, and the grid at most `ctas_per_sm` CTAs per SM
// rounded up to whole waves of `resident_per_sm` (CTAs of the kernel that fit on an SM at once;
// 0: unknown, then `ctas_per_sm` is taken as the wave).
int indexer_tokens_per_cta(const IndexerConfig& c, long long score_len, long long rows, int sm_count,
                           int resident_per_sm);

}  // namespace tka
