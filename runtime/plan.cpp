#include "runtime/plan.h"

#include <algorithm>
#include <cstring>

namespace tka {

Status check_workspace(const void* workspace, size_t needed) {
  if (needed > 0 && !workspace)
    return make_error(TKA_ERROR_WORKSPACE, "workspace is NULL; the plan needs {} bytes", needed);
  if (reinterpret_cast<uintptr_t>(workspace) % kWorkspaceAlign != 0)
    return make_error(TKA_ERROR_WORKSPACE, "workspace is not {}-byte aligned", kWorkspaceAlign);
  return Status::ok();
}

Status require_unused(const tka_tensors& t, std::initializer_list<const char*> used, const char* op) {
  const std::pair<const char*, const DLTensor*> fields[] = {{"q", t.q},
                                                            {"k_cache", t.k_cache},
                                                            {"v_cache", t.v_cache},
                                                            {"seq_lens", t.seq_lens},
                                                            {"block_table", t.block_table},
                                                            {"out", t.out},
                                                            {"lse", t.lse},
                                                            {"indices", t.indices},
                                                            {"input", t.input},
                                                            {"lengths", t.lengths},
                                                            {"values", t.values},
                                                            {"recall", t.recall},
                                                            {"retained_mass", t.retained_mass},
                                                            {"entropy", t.entropy},
                                                            {"index_q", t.index_q},
                                                            {"index_weights", t.index_weights},
                                                            {"index_k", t.index_k},
                                                            {"index_scale", t.index_scale},
                                                            {"scores", t.scores}};
  for (const auto& [name, tensor] : fields) {
    if (!tensor) continue;
    const bool is_used =
        std::any_of(used.begin(), used.end(), [&](const char* u) { return std::strcmp(u, name) == 0; });
    if (!is_used) return make_error(TKA_ERROR_INVALID_ARGUMENT, "tensors.{}: not read by {}; must be NULL", name, op);
  }
  return Status::ok();
}

}  // namespace tka
