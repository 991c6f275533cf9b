// The launch configurations a top-k selection may be tuned over: threads per CTA and steps of a
// long row in flight (compiled), and whether few rows are split over CTAs (launch-time). The candidate capacity stays
// at 4096: the one-read path of long rows keeps its 4096-key sample there.
#pragma once
#include <vector>

#include "codegen/select_spec.h"

namespace tka {

// The heuristic default first.
std::vector<SelectConfig> select_space(const SelectOp& op);

}  // namespace tka
