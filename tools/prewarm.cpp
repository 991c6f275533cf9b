#include "tools/prewarm.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <set>

#include <llvm/ADT/StringExtras.h>
#include <llvm/Support/ThreadPool.h>
#include <llvm/Support/Threading.h>
#include <nlohmann/json.hpp>

#include "autotune/decode_heuristic.h"
#include "cache/disk_cache.h"
#include "codegen/nvrtc.h"
#include "runtime/kernel_binary.h"
#include "tools/commands.h"
#include "tools/options.h"

namespace tka::tools {

bool parse_arch_list(const std::string& text, std::vector<int>* archs, std::string* error) {
  llvm::SmallVector<llvm::StringRef, 4> parts;
  llvm::StringRef(text).split(parts, ',', -1, false);
  for (llvm::StringRef p : parts) {
    const int sm = codegen::parse_arch(p.trim().str());
    if (sm < 80) return *error = "--arch: '" + p.str() + "' is not sm_80 or newer (form: sm_80,sm_90)", false;
    archs->push_back(sm);
  }
  if (archs->empty()) return *error = "--arch: no arch given", false;
  return true;
}

PrewarmSummary prewarm(const ModelPreset& preset, const std::vector<int>& archs, const std::string& cache_dir,
                       int jobs, int max_batch, int max_seq_len, bool progress) {
  const auto t0 = std::chrono::steady_clock::now();
  // Distinct kernels: several descriptors can share one spec (e.g. head/group when G = 1).
  std::set<std::string> seen;
  std::vector<codegen::RenderedSource> sources;
  for (const tka_decode_desc& d : preset_decode_descs(preset, max_batch, max_seq_len)) {
    DecodeOp op;
    if (!validate_decode(d, &op).is_ok()) continue;
    codegen::RenderedSource s = codegen::render_decode(kernel_spec_for(op, default_decode_config(op)));
    if (seen.insert(s.spec_text).second) sources.push_back(std::move(s));
  }
  cache::DiskCache cache(cache::resolve_root(cache_dir));
  PrewarmSummary sum;
  std::mutex mu;
  std::atomic<int> done{0};
  const int total = static_cast<int>(sources.size() * archs.size());
  {
    llvm::ThreadPool pool(jobs > 0 ? llvm::hardware_concurrency(jobs) : llvm::hardware_concurrency());
    for (int sm : archs) {
      for (const codegen::RenderedSource& source : sources) {
        pool.async([&, sm] {
          KernelBinary binary;
          const Status s = get_kernel_binary(source, sm, cache, &binary);
          std::lock_guard<std::mutex> lock(mu);
          if (!s.is_ok()) {
            ++sum.failed;
            sum.errors.push_back(fmt::format("{} sm_{}: {}", source.name, sm, s.message()));
          } else if (binary.compiled) {
            ++sum.compiled;
          } else {
            ++sum.cached;
          }
          const int n = ++done;
          if (progress) {
            const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            std::fprintf(stderr, "\rprewarm %s: %d/%d kernels (%d compiled, %d cached, %d failed) %.1f s", preset.name,
                         n, total, sum.compiled, sum.cached, sum.failed, secs);
            if (n == total) std::fputc('\n', stderr);
          }
        });
      }
    }
    pool.wait();
  }
  sum.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return sum;
}

int run_prewarm() {
  const ModelPreset* preset = find_preset(opt_model);
  if (!preset) {
    std::fprintf(stderr, "topkattn prewarm: unknown --model %s\n", opt_model.c_str());
    return 2;
  }
  std::vector<int> archs;
  std::string error;
  if (!parse_arch_list(opt_arch, &archs, &error)) {
    std::fprintf(stderr, "topkattn prewarm: %s\n", error.c_str());
    return 2;
  }
  const PrewarmSummary s = prewarm(*preset, archs, opt_cache_dir, opt_jobs, opt_batch, opt_seq_len, !opt_json);
  for (const std::string& e : s.errors) std::fprintf(stderr, "%s\n", e.c_str());
  if (opt_json) {
    nlohmann::json j = {{"compiled", s.compiled}, {"cached", s.cached}, {"failed", s.failed}, {"seconds", s.seconds}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("prewarm %s for %s: %d compiled, %d already cached, %d failed, %.2f s\n", preset->name,
                opt_arch.c_str(), s.compiled, s.cached, s.failed, s.seconds);
  }
  return s.failed ? 1 : 0;
}

}  // namespace tka::tools
