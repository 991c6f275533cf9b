// Top-k selection over rows (contract: include/topkattn/topkattn.h): the validated request (SelectOp), the launch
// choices (SelectConfig) and what the generated kernels are specialized on (SelectKernelSpec).
#pragma once
#include <string>

#include "common/status.h"
#include "topkattn/topkattn.h"

namespace tka {

inline constexpr int kMaxSelectK = 8192;
inline constexpr int kMaxSelectColumns = (1 << 30) - 1;

struct SelectOp {
  tka_select_desc desc{};
  int sort_size = 0;  // power of two >= top_k (sorted output)
};

// Messages name the descriptor field ("select.top_k: ...").
Status validate_select(const tka_select_desc& desc, SelectOp* op);

// The largest cluster the selection launches (the portable limit; templates/common/cluster.cuh's
// kMaxCluster).
constexpr int kMaxSelectCluster = 8;

struct SelectConfig {
  int threads = 512;
  int capacity = 4096;  // candidates kept in shared memory
  int stages = 4;       // steps of a long row in flight through shared memory (RowStream)
  int split = 1;        // launch-time: split rows over CTAs when rows are fewer than SMs
  int cluster = 8;      // launch-time, sm_90+: at most this many CTAs per long row in a cluster, 2 to 8
                        // (0: none); select_cluster_size picks it or the largest size below that fits
  int coop = 0;         // launch-time: few long rows over one cooperative grid where they fit (0: never)
  bool operator==(const SelectConfig& o) const {
    return threads == o.threads && capacity == o.capacity && stages == o.stages && split == o.split &&
           cluster == o.cluster && coop == o.coop;
  }
  bool operator!=(const SelectConfig& o) const { return !(*this == o); }
  std::string text() const;  // "t=512 c=4096 st=4 sp=1 cl=8 co=1"
};

struct SelectKernelSpec {
  tka_dtype dtype = TKA_DTYPE_FP32;
  SelectConfig config;
  std::string text() const;        // "op=select;dtype=fp32;t=512;c=4096;st=4"
  std::string short_name() const;  // "select_fp32"
};

SelectConfig default_select_config(const SelectOp& op);

}  // namespace tka
