// The tuning database: the fastest launch configuration measured on a device
// for an operation shape, as a JSON file that `topkattn tune` writes and plans read.
//
//   {"format": 2, "entries": [{"device": {"name", "sm", "sm_count"}, "op": "decode",
//     "dtype", "head_dim", "top_k", "group", "q_len", "select", "page_size",
//     "seq_bucket", "batch_bucket", "config": {...}, "time_us", "default_time_us", "version"}]}
//
// "op": "select" entries (top-k selection) key on dtype and top_k, with the row length as
// seq_bucket and the row count as batch_bucket; their config is {"threads", "capacity", "stages",
// "split", "cluster"}.
// "op": "indexer" entries (the indexer scores kernel) key on the key dtype ("bf16" or "fp8e4m3"),
// head_dim (d_I), group (index heads), q_len and page_size, buckets of sequence length and batch;
// their config is {"stages", "ctas_per_sm"}.
// "op": "sparse" entries (sparse attention over given indices) key on dtype, head_dim, the index
// width as top_k, the group, q_len, select and page_size; batch buckets only (the time does not
// depend on the cache's length: seq_bucket is 1); their config is {"head_tile", "ctas_per_sm"}.
// "op": "fidelity" entries (fidelity diagnostics) key on dtype (fp32 too), head_dim, top_k and the
// group, buckets of sequence length and batch; their config is {"select_threads", "keys_per_cta"}.
// Sequence length and batch are bucketed to powers of two (rounded up). A lookup takes the exact
// bucket, else the nearest tuned bucket of the same device and shape, else nothing (the caller
// uses the heuristic). Entries of another device or library version never match.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "codegen/decode_spec.h"
#include "codegen/fidelity_spec.h"
#include "codegen/indexer_spec.h"
#include "codegen/select_spec.h"
#include "codegen/sparse_spec.h"
#include "common/status.h"

namespace tka {

struct TuningDevice {
  std::string name;  // as cuDeviceGetName reports it
  int sm = 0;        // 90 for sm_90
  int sm_count = 0;
  bool operator==(const TuningDevice& o) const { return name == o.name && sm == o.sm && sm_count == o.sm_count; }
};

// What an entry is specialized on, bar the buckets.
struct TuningShape {
  std::string op = "decode";
  tka_dtype dtype = TKA_DTYPE_BF16;
  int head_dim = 0, top_k = 0, group = 0, q_len = 1, page_size = 0;
  bool per_group = false;
  bool operator==(const TuningShape& o) const;
};

struct TuningEntry {
  TuningDevice device;
  TuningShape shape;
  int seq_bucket = 0, batch_bucket = 0;
  DecodeConfig config;             // op "decode"
  SelectConfig select_config;      // op "select"
  IndexerConfig indexer_config;    // op "indexer" (the scores kernel)
  SparseConfig sparse_config;      // op "sparse"
  FidelityConfig fidelity_config;  // op "fidelity"
  double time_us = 0, default_time_us = 0;
  std::string version;  // library version that measured it
};

// Smallest power of two >= x (1 for x <= 1).
int pow2_bucket(long long x);

// The shape of a validated decode op. top_k by ratio is keyed as max_k.
TuningShape tuning_shape_for(const DecodeOp& op);
// The shape of a validated selection: dtype and k.
TuningShape tuning_shape_for(const SelectOp& op);
// The shape of a validated indexer (its scores kernel): key dtype, heads, d_I, q_len, page size.
TuningShape tuning_shape_for(const IndexerOp& op);
// The shape of a validated sparse attention: dtype, head_dim (576 for the MLA layout), index width
// as top_k, group, q_len, selection and page size.
TuningShape tuning_shape_for(const SparseOp& op);

// The shape of validated fidelity diagnostics: dtype, head_dim, top_k, group.
TuningShape tuning_shape_for(const FidelityOp& op);

class TuningDb {
 public:
  // A missing file is an empty database. A corrupt file, entries of another library version,
  // and malformed entries are skipped, each with one line in *warnings; never an error.
  static TuningDb load(const std::string& path, std::vector<std::string>* warnings);

  // Writes atomically (temporary file + rename). Entries read from the file that this process
  // did not replace are kept, so two tuners of different shapes can share a file.
  Status save(const std::string& path) const;

  // Replaces the entry with the same device, shape and buckets, else appends.
  void upsert(const TuningEntry& entry);

  // Exact bucket, else the nearest bucket (log2 distance in length plus batch); nullopt if the
  // device and shape were never tuned. *exact says which.
  std::optional<TuningEntry> lookup(const TuningDevice& device, const TuningShape& shape, long long seq_len,
                                    long long batch, bool* exact = nullptr) const;

  // Every entry for an arch, whatever the device (prewarm compiles them without a GPU).
  std::vector<TuningEntry> entries_for_sm(int sm) const;

  const std::vector<TuningEntry>& entries() const { return entries_; }

 private:
  std::vector<TuningEntry> entries_;
};

}  // namespace tka
