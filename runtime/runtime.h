// The runtime behind tka_runtime: one device (or a target arch for compile-only use), one disk
// cache, and the step from a rendered source to a loaded module.
#pragma once
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "autotune/tuning_db.h"
#include "cache/disk_cache.h"
#include "codegen/render.h"
#include "runtime/device.h"
#include "runtime/module_table.h"

namespace tka {

class Runtime {
 public:
  static Status create(const tka_runtime_options& options, std::unique_ptr<Runtime>* out);

  bool compile_only() const { return compile_only_; }
  int target_sm() const { return compile_only_ ? compile_only_sm_ : device_.sm; }
  const DeviceInfo& device() const { return device_; }
  cache::DiskCache& disk_cache() { return *cache_; }

  // Compile-only runtimes stop after the binary is in the cache (*module stays null).
  Status module_for(const codegen::RenderedSource& source, std::shared_ptr<const LoadedModule>* module);

  // The launch configuration of a decode op: the tuning database's entry for this device (exact
  // or nearest bucket), else with options.tune a fresh tuning, else the heuristic default.
  Status decode_config_for(const DecodeOp& op, DecodeConfig* config);
  // The same for a selection (rows as the batch, the row length as the sequence): the database's
  // entry, else the heuristic default. Selections are tuned offline only (`topkattn tune --op select`).
  Status select_config_for(const SelectOp& op, SelectConfig* config);
  // The indexer scores kernel's configuration: the tuning database's entry (exact or nearest
  // bucket), else the heuristic default. Tuned offline only (`topkattn tune --op indexer`).
  Status indexer_config_for(const IndexerOp& op, long long seq_len, IndexerConfig* config);
  // Sparse attention's configuration: the tuning database's entry for the shape (exact or nearest
  // batch bucket), else the heuristic default.
  Status sparse_config_for(const SparseOp& op, SparseConfig* config);
  // Fidelity diagnostics' configuration: the tuning database's entry (exact or nearest bucket of
  // max_seq_len and max_batch), else the heuristic default. Tuned offline only.
  Status fidelity_config_for(const FidelityOp& op, FidelityConfig* config);

  const std::string& tuning_db_path() const { return tuning_db_path_; }
  TuningDevice tuning_device() const { return {device_.name, device_.sm, device_.sm_count}; }

 private:
  using OnMiss = std::function<Status(std::optional<TuningEntry>* fresh)>;
  // The tuning database's entry for `shape` (exact or nearest bucket; none on a compile-only
  // runtime, or when nothing matches: the caller's heuristic default), counted as a tuned or a
  // default plan and logged with describe(entry). on_miss, when set, runs under the database's lock
  // when no exact entry exists and may supply a fresh one (online tuning).
  Status tuned_entry(const char* op, const TuningShape& shape, long long seq_len, long long batch,
                     const std::function<std::string(const TuningEntry&)>& describe, std::optional<TuningEntry>* entry,
                     const OnMiss& on_miss = {});

  bool compile_only_ = false;
  int compile_only_sm_ = 0;
  DeviceInfo device_;
  std::unique_ptr<cache::DiskCache> cache_;
  std::string tuning_db_path_;
  bool tune_online_ = false;
  std::mutex tuning_mu_;  // guards tuning_db_ and serializes online tuning
  TuningDb tuning_db_;
};

}  // namespace tka

// The C handle is the runtime itself.
struct tka_runtime : tka::Runtime {};
