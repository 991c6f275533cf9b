#include "autotune/select_space.h"

namespace tka {

std::vector<SelectConfig> select_space(const SelectOp& op) {
  const SelectConfig base = default_select_config(op);
  std::vector<SelectConfig> space{base};
  for (int threads : {256, 512, 1024})
    for (int split : {1, 0}) {
      SelectConfig c = base;
      c.threads = threads;
      c.split = split;
      if (c != base) space.push_back(c);
    }
  return space;
}

}  // namespace tka
