#include "autotune/select_space.h"

namespace tka {

std::vector<SelectConfig> select_space(const SelectOp& op) {
  const SelectConfig base = default_select_config(op);
  std::vector<SelectConfig> space{base};
  for (int threads : {256, 512, 1024})
    for (int stages : {3, 4, 6})
      for (int split : {1, 0}) {
        SelectConfig c = base;
        c.threads = threads;
        c.stages = stages;
        c.split = split;
        if (c != base) space.push_back(c);
      }
  for (int coop : {0, 1})                  // rows fewer than SMs: a cluster per row on sm_90+, the
    for (int cluster : {0, 2, 3, 4, 8}) {  // split path, or one cooperative grid first
      SelectConfig c = base;
      c.coop = coop;
      c.cluster = cluster;
      if (c != base && (coop == 0 || cluster == base.cluster)) space.push_back(c);
    }
  return space;
}

}  // namespace tka
