#include "tools/prewarm.h"

#include <llvm/ADT/StringExtras.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>

#include "autotune/prewarm.h"
#include "codegen/nvrtc.h"
#include "common/settings.h"
#include "tools/commands.h"
#include "tools/options.h"

namespace tka::tools {

bool parse_arch_list(const std::string& text, std::vector<int>* archs, std::string* error) {
  llvm::SmallVector<llvm::StringRef, 4> parts;
  llvm::StringRef(text).split(parts, ',', -1, false);
  for (llvm::StringRef p : parts) {
    const int sm = codegen::parse_arch(p.trim().str());
    if (!codegen::is_target_arch(sm))
      return *error = "--arch: '" + p.str() + "' is not a target arch (sm_ and one of " + codegen::kTargetArchs +
                      "; form: sm_80,sm_90)",
             false;
    archs->push_back(sm);
  }
  if (archs->empty()) return *error = "--arch: no arch given", false;
  return true;
}

std::optional<TuningDb> load_db_option(const char* command) {
  const std::string db_path = !opt_db.empty() ? opt_db.getValue() : settings().tuning_db;
  if (db_path.empty()) return std::nullopt;
  std::vector<std::string> warnings;
  TuningDb db = TuningDb::load(db_path, &warnings);
  for (const std::string& w : warnings) std::fprintf(stderr, "topkattn %s: warning: %s\n", command, w.c_str());
  return db;
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
  const std::optional<TuningDb> db = load_db_option("prewarm");
  const PrewarmSummary s =
      prewarm(*preset, archs, opt_cache_dir, opt_jobs, opt_batch, opt_seq_len, !opt_json, db ? &*db : nullptr);
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
