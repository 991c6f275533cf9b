// Lightning Indexer (contract: include/topkattn/topkattn.h): the validated request and the kernels' spec.
#pragma once
#include <string>

#include "codegen/select_spec.h"
#include "codegen/sparse_spec.h"
#include "common/status.h"
#include "topkattn/topkattn.h"

namespace tka {

inline constexpr int kMaxIndexHeads = 64;

struct IndexerOp {
  tka_indexer_desc desc{};
  bool fused = false;  // TKA_OP_INDEXER_DECODE
  SparseOp attention;  // fused only: validated, with the indexer's fields filled in
};

Status validate_indexer(const tka_indexer_desc& desc, bool fused, IndexerOp* op);

// Launch configuration of the indexer scores kernel (autotune/indexer_space.h tunes it).
struct IndexerConfig {
  int stages = 4;       // key tiles in the CTA's pipeline, stages - 1 of them in flight (compiled)
  int ctas_per_sm = 1;  // the grid's CTAs per SM, in whole waves of resident CTAs: sets tokens per CTA (launch)
  bool operator==(const IndexerConfig& o) const { return stages == o.stages && ctas_per_sm == o.ctas_per_sm; }
  bool operator!=(const IndexerConfig& o) const { return !(*this == o); }
  std::string text() const;
};

struct IndexerKernelSpec {
  int heads = 64, dim = 128, q_len = 1;
  int stages = 2;  // IndexerConfig::stages
  bool fp8 = false, paged = false;
  int page_size = 0;
  SelectConfig select;  // the selection kernels in the same module
  std::string text() const;
  std::string short_name() const;
};

IndexerKernelSpec indexer_kernel_spec(const IndexerOp& op);

}  // namespace tka
