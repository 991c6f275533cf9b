// One CUDA device as the runtime sees it: its primary context and what the kernels need to know.
#pragma once
#include <string>

#include "runtime/driver.h"

namespace tka {

struct DeviceInfo {
  int ordinal = 0;
  int sm = 0;  // compute capability, e.g. 90
  int sm_count = 132;
  std::string name;
  int max_smem_optin = 0;  // shared memory per block after opt-in
  int smem_per_sm = 0;     // shared memory of one SM (what its resident CTAs share)
  int l2_bytes = 50 << 20;
  bool overlap_launches = false;  // programmatic dependent launch: sm_90+ unless TOPKATTN_PDL=0
  CUcontext context = nullptr;    // the primary context (retained)
};

Status open_device(int ordinal, DeviceInfo* info);

// Shared memory of an architecture (CUDA C++ programming guide, compute capabilities): per CTA
// after opt-in, and per SM. A compile-only runtime's DeviceInfo takes its values, and so do
// choices made without a runtime (prewarm, emit), so that they agree with what a device of that
// architecture allows; unknown ones get the smallest (99 KB a CTA). A device's own: smem_budget().
struct SmemBudget {
  int per_cta;
  int per_sm;
};
SmemBudget smem_budget_for_sm(int sm);
inline SmemBudget smem_budget(const DeviceInfo& device) { return {device.max_smem_optin, device.smem_per_sm}; }

// Makes the device's context current for a scope, if it is not already.
class ScopedContext {
 public:
  ScopedContext(const DriverApi* api, CUcontext ctx);
  ~ScopedContext();
  ScopedContext(const ScopedContext&) = delete;
  ScopedContext& operator=(const ScopedContext&) = delete;
  const Status& status() const { return status_; }

 private:
  const DriverApi* api_;
  bool pushed_ = false;
  Status status_;
};

// Raises kernel `fn`'s dynamic shared-memory limit to `bytes` (needed above 48 KiB), after
// checking that the device allows that much per CTA; `what` names the kernel in the error. A
// module's functions are shared by every plan that uses it: `bytes` must depend on the module
// alone (or be its largest need), never on one plan. `prefer_shared` asks the driver for the
// largest shared-memory carveout (the L1 gets the rest), for kernels that stream through shared
// memory and do not re-read through L1: by default the driver may pick a carveout that fits
// fewer CTAs per SM than registers and shared memory would allow.
Status allow_dynamic_smem(const DeviceInfo& device, CUfunction fn, int bytes, const char* what,
                          bool prefer_shared = false);

// The static shared memory of compiled kernel `fn` (its __shared__ arrays), in bytes.
Status static_smem_bytes(const DeviceInfo& device, CUfunction fn, int* bytes);

// Whether compiled kernel `fn` launches with `threads` per CTA and `dynamic_smem` bytes beside its
// static shared memory on this device: registers can cap the threads below what a config asks.
// Reads the attributes back (which loads the kernel): for the tuner, whose configs are untried.
// UNSUPPORTED naming `what` otherwise.
Status check_kernel_fits(const DeviceInfo& device, CUfunction fn, int threads, int dynamic_smem, const char* what);

// How many CTAs of `fn` (`threads` each, `dynamic_smem` bytes of dynamic shared memory) fit on an
// SM at once; an error naming `what` when none does.
Status resident_ctas_per_sm(const DeviceInfo& device, CUfunction fn, int threads, int dynamic_smem, const char* what,
                            int* per_sm);

}  // namespace tka
