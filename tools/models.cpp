// `topkattn models [--json]`: the built-in model presets.
#include <fmt/format.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "autotune/presets.h"
#include "tools/commands.h"
#include "tools/options.h"

namespace tka::tools {

int run_models() {
  if (opt_json) {
    nlohmann::json list = nlohmann::json::array();
    for (const ModelPreset& p : model_presets())
      list.push_back({{"name", p.name},
                      {"num_q_heads", p.num_q_heads},
                      {"num_kv_heads", p.num_kv_heads},
                      {"head_dim", p.head_dim},
                      {"head_dim_v", p.head_dim_v},
                      {"top_k", p.top_k},
                      {"indexer_heads", p.indexer_heads},
                      {"indexer_dim", p.indexer_dim},
                      {"attention", p.attention},
                      {"decode_descs", preset_decode_descs(p, 1, 1).size()}});
    std::printf("%s\n", list.dump(1).c_str());
    return 0;
  }
  std::printf("%-14s %6s %6s %5s %5s %6s %8s  %s\n", "model", "heads", "kv", "d", "d_v", "k", "indexer", "attention");
  for (const ModelPreset& p : model_presets()) {
    const std::string indexer = p.indexer_heads ? fmt::format("{}x{}", p.indexer_heads, p.indexer_dim) : "-";
    std::printf("%-14s %6d %6d %5d %5d %6d %8s  %s%s\n", p.name, p.num_q_heads, p.num_kv_heads, p.head_dim,
                p.head_dim_v, p.top_k, indexer.c_str(), p.attention,
                preset_has_decode(p) ? "" : " (fused indexer decode: tune with --op indexer and --op sparse)");
  }
  return 0;
}

}  // namespace tka::tools
