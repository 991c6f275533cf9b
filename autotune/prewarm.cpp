#include "autotune/prewarm.h"

#include <llvm/Support/ThreadPool.h>
#include <llvm/Support/Threading.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <set>

#include "autotune/decode_heuristic.h"
#include "autotune/indexer_space.h"
#include "autotune/sparse_space.h"
#include "cache/disk_cache.h"
#include "runtime/kernel_binary.h"

namespace tka {

std::vector<PrewarmJob> prewarm_jobs(const ModelPreset& preset, const std::vector<int>& archs, const TuningDb* db,
                                     int max_batch, int max_seq_len) {
  // Distinct kernels: several descriptors can share one spec (e.g. head/group when G = 1), and
  // database entries of several buckets often share a config.
  std::set<std::pair<int, std::string>> seen;
  std::vector<PrewarmJob> jobs;
  for (const tka_decode_desc& d : preset_decode_descs(preset, max_batch, max_seq_len)) {
    DecodeOp op;
    if (!validate_decode(d, &op).is_ok()) continue;
    for (int sm : archs) {
      std::vector<DecodeConfig> configs{default_decode_config(op)};
      if (db)
        for (const TuningEntry& e : db->entries_for_sm(sm))
          if (e.shape == tuning_shape_for(op)) configs.push_back(e.config);
      for (const DecodeConfig& c : configs) {
        codegen::RenderedSource s = codegen::render_decode(kernel_spec_for(op, c));
        if (seen.insert({sm, s.spec_text}).second) jobs.push_back({sm, std::move(s)});
      }
    }
  }
  // Selections and fidelity diagnostics the database tuned (they belong to no preset: whatever it
  // holds for these archs).
  if (db)
    for (int sm : archs)
      for (const TuningEntry& e : db->entries_for_sm(sm)) {
        codegen::RenderedSource s;
        if (e.shape.op == "select") {
          SelectKernelSpec spec;
          spec.dtype = e.shape.dtype;
          spec.config = e.select_config;
          s = codegen::render_select(spec);
        } else if (e.shape.op == "fidelity") {
          FidelityOp op;
          op.desc.dtype = e.shape.dtype;
          op.desc.head_dim = e.shape.head_dim;
          s = codegen::render_fidelity(fidelity_kernel_spec(op, e.fidelity_config));
        } else {
          continue;
        }
        if (seen.insert({sm, s.spec_text}).second) jobs.push_back({sm, std::move(s)});
      }
  // DeepSeek Sparse Attention: the fused indexer decode's two modules (the indexer with its
  // selection, the sparse attention), rendered exactly as IndexerPlan renders them.
  for (const tka_indexer_desc& d : preset_indexer_descs(preset, max_batch, max_seq_len)) {
    IndexerOp op;
    if (!validate_indexer(d, /*fused=*/true, &op).is_ok()) continue;
    for (int sm : archs) {
      // The heuristic's stages at any batch and every tuned entry's for this shape (any bucket).
      // Likewise the sparse attention's head tile.
      std::vector<int> stages;
      for (const IndexerConfig& c : indexer_default_configs(op, sm)) stages.push_back(c.stages);
      std::vector<SparseConfig> sparse{default_sparse_config(op.attention, smem_budget_for_sm(sm))};
      if (db)
        for (const TuningEntry& e : db->entries_for_sm(sm)) {
          if (e.shape == tuning_shape_for(op)) stages.push_back(e.indexer_config.stages);
          if (e.shape == tuning_shape_for(op.attention)) sparse.push_back(e.sparse_config);
        }
      std::vector<codegen::RenderedSource> sources;
      for (const SparseConfig& c : sparse)
        sources.push_back(codegen::render_sparse(sparse_kernel_spec(op.attention, c)));
      for (int st : stages) {
        IndexerKernelSpec spec = indexer_kernel_spec(op);
        spec.select = default_select_config(SelectOp{});
        spec.stages = st;
        sources.push_back(codegen::render_indexer(spec));
      }
      for (codegen::RenderedSource& s : sources)
        if (seen.insert({sm, s.spec_text}).second) jobs.push_back({sm, std::move(s)});
    }
  }
  return jobs;
}

PrewarmSummary compile_jobs(const std::vector<PrewarmJob>& work, const std::string& cache_dir, int jobs,
                            const char* progress_label) {
  const auto t0 = std::chrono::steady_clock::now();
  const bool progress = progress_label != nullptr;
  cache::DiskCache cache(cache::resolve_root(cache_dir));
  PrewarmSummary sum;
  std::mutex mu;
  std::atomic<int> done{0};
  const int total = static_cast<int>(work.size());
  if (progress && !cache.warning().empty()) std::fprintf(stderr, "prewarm: %s\n", cache.warning().c_str());
  {
    llvm::ThreadPool pool(jobs > 0 ? llvm::hardware_concurrency(jobs) : llvm::hardware_concurrency());
    for (const PrewarmJob& job : work) {
      const PrewarmJob* jp = &job;  // `work` outlives the pool
      pool.async([&, jp] {
        const int sm = jp->sm;
        const codegen::RenderedSource& source = jp->source;
        KernelBinary binary;
        const Status s = get_kernel_binary(source, sm, cache, &binary);
        std::lock_guard<std::mutex> lock(mu);
        if (!s.is_ok() || binary.cubin.empty()) {
          ++sum.failed;
          sum.errors.push_back(fmt::format("{} [{}] sm_{}: {}", source.name, source.spec_text, sm,
                                           s.is_ok() ? "NVRTC returned an empty CUBIN" : s.message()));
        } else if (binary.compiled) {
          ++sum.compiled;
        } else {
          ++sum.cached;
        }
        const int n = ++done;
        if (progress) {
          const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          std::fprintf(stderr, "\rprewarm %s: %d/%d kernels (%d compiled, %d cached, %d failed) %.1f s", progress_label,
                       n, total, sum.compiled, sum.cached, sum.failed, secs);
          if (n == total) std::fputc('\n', stderr);
        }
      });
    }
    pool.wait();
  }
  sum.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return sum;
}

PrewarmSummary prewarm(const ModelPreset& preset, const std::vector<int>& archs, const std::string& cache_dir, int jobs,
                       int max_batch, int max_seq_len, bool progress, const TuningDb* db) {
  const auto t0 = std::chrono::steady_clock::now();  // the listing's rendering counts too
  PrewarmSummary sum = compile_jobs(prewarm_jobs(preset, archs, db, max_batch, max_seq_len), cache_dir, jobs,
                                    progress ? preset.name : nullptr);
  sum.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return sum;
}

}  // namespace tka
