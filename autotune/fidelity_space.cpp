#include "autotune/fidelity_space.h"

#include <algorithm>

namespace tka {

FidelityConfig default_fidelity_config(const FidelityOp&) { return FidelityConfig{}; }

std::vector<FidelityConfig> fidelity_space(const FidelityOp& op) {
  std::vector<FidelityConfig> out{default_fidelity_config(op)};
  for (int threads : {512, 256, 1024})
    for (int keys : {256, 128, 512, 1024}) {
      const FidelityConfig c{threads, keys};
      if (std::find(out.begin(), out.end(), c) == out.end()) out.push_back(c);
    }
  return out;
}

bool fidelity_config_sane(const FidelityConfig& c) {
  const bool threads = c.select_threads == 256 || c.select_threads == 512 || c.select_threads == 1024;
  return threads && c.keys_per_cta >= 1 && c.keys_per_cta <= 65536;  // the score kernel takes any chunk
}

}  // namespace tka
