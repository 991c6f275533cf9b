// What every operation's plan offers the C API: run, workspace size, the spec text. Plans are
// immutable after creation, so any number of threads may run one at once.
#pragma once
#include <string>

#include "common/log.h"
#include "common/status.h"
#include "runtime/driver.h"
#include "topkattn/topkattn.h"

namespace tka {

class Plan {
 public:
  virtual ~Plan() = default;
  virtual Status run(const tka_tensors& tensors, void* workspace, CUstream stream) const = 0;
  virtual size_t workspace_bytes() const = 0;
  virtual int max_k() const = 0;  // width of the indices output
  virtual const std::string& spec_text() const = 0;
};

// Builds a plan's kernels with `chosen` (a tuning database's config, or the default). A tuned config
// that does not build or launch here never fails the plan: it falls back to `fallback`, warning.
template <class Config, class Build>
Status build_or_fall_back(const char* op, const Config& chosen, const Config& fallback, Build&& build) {
  const Status built = build(chosen);
  if (built.is_ok() || chosen == fallback) return built;
  log(TKA_LOG_WARN, "{}: tuned config {} unusable ({}); using the default", op, chosen.text(), built.message());
  return build(fallback);
}

// Workspace buffers are carved at 256-byte boundaries (every vector load stays aligned).
inline constexpr size_t kWorkspaceAlign = 256;

class WorkspaceLayout {
 public:
  explicit WorkspaceLayout(size_t start = 0) : at_(start) {}
  // The offset of a new buffer of `bytes`.
  size_t take(size_t bytes) {
    const size_t offset = at_;
    at_ = (at_ + bytes + kWorkspaceAlign - 1) / kWorkspaceAlign * kWorkspaceAlign;
    return offset;
  }
  size_t bytes() const { return at_; }

 private:
  size_t at_;
};

// The caller's workspace: present when the plan needs one, and aligned.
Status check_workspace(const void* workspace, size_t needed);

// Tensors that an operation does not read must be NULL: a filled field that the plan would
// ignore is almost always a mistake in the caller's wiring.
Status require_unused(const tka_tensors& t, std::initializer_list<const char*> used, const char* op);

}  // namespace tka
