// How the cooperative selection (radix_select_coop.cuh) lays few long rows over one grid: every CTA
// holds one chunk of a row in shared memory, and all of them must be resident at once (a
// cooperative launch fails otherwise). Shared by the selection op and, later, decode.
#pragma once
#include <cstddef>

#include "runtime/device.h"
#include "runtime/plan.h"
#include "templates/split_select_params.cuh"

namespace tka {

// Dynamic shared memory (bytes) at which 1 and 2 CTAs of the kernel fit on an SM ([1], [2]; 0:
// that many never fit), as the device reported it for the compiled kernel.
struct CoopResidency {
  int smem_for[3] = {0, 0, 0};
};

// The device's numbers for cooperative kernel `fn` (`threads` per CTA; `what` names it in errors),
// after raising its dynamic shared-memory limit to the most one CTA per SM can have.
Status coop_residency(const DeviceInfo& device, CUfunction fn, int threads, const char* what, CoopResidency* out);

struct CoopSelectShape {
  int chunks = 0;  // CTAs per row; 0: the rows do not fit one cooperative grid
  int chunk = 0;   // keys per CTA, a multiple of 4
  int smem = 0;    // dynamic shared memory per CTA: the chunk's keys
};

// Rows fewer than SMs and at least min_len long: as many CTAs per row as fit at once (two per SM
// where a chunk fits that way, else one), at most `threads` (a CTA scans the chunks' counts one a
// thread), each chunk's keys within the dynamic shared memory that residency allows. min_smem: the
// least dynamic shared memory a CTA needs besides the keys (work after the selection reuses it).
inline constexpr int kCoopMinLen = 8192;
CoopSelectShape coop_select_shape(int rows, int row_len, int threads, int sm_count, const CoopResidency& resident,
                                  int min_smem = 0);

struct CoopWorkspace {
  size_t hist = 0, counts = 0;
  int rows = 0;    // rows the buffers hold (0: no cooperative path)
  int chunks = 0;  // chunks per row they hold
};
CoopWorkspace take_coop_workspace(WorkspaceLayout& at, int rows, int max_chunks);

// The kernel's parameters for `rows` rows laid out as `shape`, over the plan's workspace at `base`:
// an internal error when the workspace holds fewer rows or chunks.
Status coop_select_params(const CoopWorkspace& ws, char* base, int rows, const CoopSelectShape& shape,
                          CoopSelectParams* out);

}  // namespace tka
