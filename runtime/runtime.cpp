#include "runtime/runtime.h"

#include "autotune/decode_heuristic.h"
#include "autotune/decode_tuner.h"
#include "autotune/fidelity_space.h"
#include "autotune/indexer_space.h"
#include "autotune/sparse_space.h"
#include "codegen/nvrtc.h"
#include "common/log.h"
#include "common/settings.h"
#include "runtime/counters.h"
#include "runtime/kernel_binary.h"

namespace tka {

Status Runtime::create(const tka_runtime_options& options, std::unique_ptr<Runtime>* out) {
  if (options.log_level < TKA_LOG_OFF || options.log_level > TKA_LOG_DEBUG)
    return make_error(TKA_ERROR_INVALID_ARGUMENT, "options.log_level: {} is not a log level (0..4)",
                      int(options.log_level));
  if (options.compile_only_sm != 0 && !codegen::is_target_arch(options.compile_only_sm))
    return make_error(TKA_ERROR_UNSUPPORTED, "options.compile_only_sm: sm_{} is not a target architecture ({})",
                      options.compile_only_sm, codegen::kTargetArchs);
  if (options.tune != 0 && options.tune != 1)
    return make_error(TKA_ERROR_INVALID_ARGUMENT, "options.tune: {} is not 0 or 1", options.tune);
  if (options.tune == 1 && options.compile_only_sm != 0)
    return make_error(TKA_ERROR_INVALID_ARGUMENT, "options.tune: tuning needs a GPU; this runtime is compile-only");
  auto rt = std::unique_ptr<Runtime>(new tka_runtime());
  rt->compile_only_ = options.compile_only_sm != 0;
  rt->compile_only_sm_ = options.compile_only_sm;
  if (!rt->compile_only_) {
    TKA_RETURN_IF_ERROR(open_device(options.device_ordinal, &rt->device_));
  } else {  // plans check their shared memory against the target architecture's
    const SmemBudget smem = smem_budget_for_sm(options.compile_only_sm);
    rt->device_.max_smem_optin = smem.per_cta, rt->device_.smem_per_sm = smem.per_sm;
  }
  log_level_ref() = options.log_level;  // process-wide: set only by a runtime that is created
  rt->cache_ = std::make_unique<cache::DiskCache>(cache::resolve_root(options.cache_dir ? options.cache_dir : ""));
  rt->tuning_db_path_ = options.tuning_db ? options.tuning_db : settings().tuning_db;
  // TOPKATTN_TUNE=1 turns tuning on for GPU runtimes; compile-only ones ignore it.
  rt->tune_online_ = options.tune == 1 || (settings().tune && !rt->compile_only_);
  // Every cache key holds NVRTC's version, so loading NVRTC (~10 ms, once per process) belongs to
  // runtime creation rather than to the first plan, even when every kernel is in the cache. A
  // missing NVRTC is reported by the plan that needs it.
  std::string nvrtc;
  (void)codegen::nvrtc_version(&nvrtc);
  std::vector<std::string> warnings;
  rt->tuning_db_ = TuningDb::load(rt->tuning_db_path_, &warnings);
  for (const std::string& w : warnings) log(TKA_LOG_WARN, "{}", w);
  *out = std::move(rt);
  return Status::ok();
}

Status Runtime::module_for(const codegen::RenderedSource& source, std::shared_ptr<const LoadedModule>* module) {
  const int sm = target_sm();
  const auto build = [&](KernelBinary* binary) { return get_kernel_binary(source, sm, *cache_, binary); };
  if (compile_only_) {
    KernelBinary binary;
    return build(&binary);
  }
  cache::CacheKey key;
  TKA_RETURN_IF_ERROR(cache_key_for(source, sm, &key));
  return get_loaded_module(device_, cache::to_hex(key.hash), build, module);
}

Status Runtime::tuned_entry(const char* op, const TuningShape& shape, long long seq_len, long long batch,
                            const std::function<std::string(const TuningEntry&)>& describe,
                            std::optional<TuningEntry>* entry, const OnMiss& on_miss) {
  entry->reset();
  if (compile_only_) {  // no device to match entries against: prewarm --db compiles those
    counters().default_plans++;
    return Status::ok();
  }
  std::lock_guard<std::mutex> lock(tuning_mu_);
  bool exact = false;
  *entry = tuning_db_.lookup(tuning_device(), shape, seq_len, batch, &exact);
  if ((!*entry || !exact) && on_miss) {
    std::optional<TuningEntry> fresh;
    TKA_RETURN_IF_ERROR(on_miss(&fresh));
    if (fresh) *entry = std::move(fresh), exact = true;
  }
  if (!*entry) {
    counters().default_plans++;
    return Status::ok();
  }
  log(TKA_LOG_INFO, "{}: tuned config {} ({} bucket N={} B={})", op, describe(**entry), exact ? "exact" : "nearest",
      (*entry)->seq_bucket, (*entry)->batch_bucket);
  counters().tuned_plans++;
  return Status::ok();
}

Status Runtime::select_config_for(const SelectOp& op, SelectConfig* config) {
  std::optional<TuningEntry> entry;
  TKA_RETURN_IF_ERROR(tuned_entry(
      "select", tuning_shape_for(op), op.desc.max_n, op.desc.max_rows,
      [](const TuningEntry& e) { return e.select_config.text(); }, &entry));
  *config = entry ? entry->select_config : default_select_config(op);
  return Status::ok();
}

Status Runtime::indexer_config_for(const IndexerOp& op, long long seq_len, IndexerConfig* config) {
  std::optional<TuningEntry> entry;
  TKA_RETURN_IF_ERROR(tuned_entry(
      "indexer", tuning_shape_for(op), seq_len, op.desc.max_batch,
      [](const TuningEntry& e) { return e.indexer_config.text(); }, &entry));
  *config = entry ? entry->indexer_config : default_indexer_config(op, target_sm());
  return Status::ok();
}

Status Runtime::sparse_config_for(const SparseOp& op, SparseConfig* config) {
  std::optional<TuningEntry> entry;
  TKA_RETURN_IF_ERROR(tuned_entry(
      "sparse", tuning_shape_for(op), 1, op.desc.max_batch, [](const TuningEntry& e) { return e.sparse_config.text(); },
      &entry));
  *config = entry ? entry->sparse_config : default_sparse_config(op, smem_budget(device_));
  return Status::ok();
}

Status Runtime::fidelity_config_for(const FidelityOp& op, FidelityConfig* config) {
  std::optional<TuningEntry> entry;
  TKA_RETURN_IF_ERROR(tuned_entry(
      "fidelity", tuning_shape_for(op), op.desc.max_seq_len, op.desc.max_batch,
      [](const TuningEntry& e) { return e.fidelity_config.text(); }, &entry));
  *config = entry ? entry->fidelity_config : default_fidelity_config(op);
  return Status::ok();
}

Status Runtime::decode_config_for(const DecodeOp& op, DecodeConfig* config) {
  OnMiss tune;
  if (tune_online_) {
    tune = [&](std::optional<TuningEntry>* fresh) {
      TuneResult result;
      TKA_RETURN_IF_ERROR(tune_decode(*this, op.desc, TuneOptions{}, &result));
      counters().online_tunings++;
      tuning_db_.upsert(result.entry);
      if (!tuning_db_path_.empty()) {
        const Status saved = tuning_db_.save(tuning_db_path_);
        if (!saved.is_ok()) log(TKA_LOG_WARN, "{}", saved.message());
      }
      *fresh = result.entry;
      return Status::ok();
    };
  }
  std::optional<TuningEntry> entry;
  TKA_RETURN_IF_ERROR(tuned_entry(
      "decode", tuning_shape_for(op), op.desc.max_seq_len, op.desc.max_batch,
      [](const TuningEntry& e) { return e.config.text(); }, &entry, tune));
  *config = entry ? entry->config : default_decode_config(op);
  return Status::ok();
}

}  // namespace tka
