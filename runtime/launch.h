// One kernel launch of a plan. Every launch goes through here, so that the launch attributes are
// the same everywhere: on sm_90+ each kernel may start while the previous one on the stream is
// finishing (programmatic dependent launch; the kernels wait in begin_grid(), see
// templates/common/grid_dependency.cuh), cluster kernels get their cluster shape, and kernels
// whose CTAs wait for each other a cooperative launch (every CTA resident at once).
#pragma once
#include "runtime/device.h"
#include "runtime/driver.h"

namespace tka {

struct KernelLaunch {
  CUfunction fn = nullptr;
  unsigned grid_x = 1, grid_y = 1, grid_z = 1;
  unsigned threads = 0;
  unsigned smem = 0;     // dynamic shared memory, bytes
  unsigned cluster = 0;  // CTAs per cluster along x (sm_90+); 0: no cluster
  // The CTAs meet at grid barriers (templates/common/grid_barrier.cuh). It may still overlap the
  // kernel before it (the driver takes both attributes, bench/probes/grid_barrier_cost.cu): its
  // first CTAs wait in begin_grid(), then at the first barrier until the rest are placed.
  bool cooperative = false;
};

inline constexpr int kMaxLaunchAttributes = 3;

// Whether kernels on a device of compute capability `sm` may overlap their launches (programmatic
// dependent launch needs sm_90); `allowed`: the TOPKATTN_PDL setting.
inline bool overlap_launches_for(int sm, bool allowed) { return sm >= 90 && allowed; }

// The launch configuration of `k` on `stream`; attrs must hold kMaxLaunchAttributes entries and
// outlive the launch.
CUlaunchConfig launch_config(const DeviceInfo& device, const KernelLaunch& k, CUstream stream,
                             CUlaunchAttribute* attrs);

Status launch_kernel(const DriverApi* api, const DeviceInfo& device, const KernelLaunch& k, CUstream stream,
                     void** args);

}  // namespace tka
