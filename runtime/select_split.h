// How a selection splits each row over CTAs (radix_select_split.cuh) when rows are too few to
// fill the GPU with one CTA per row. Shared by decode's select pass and the selection op.
#pragma once
#include <algorithm>
#include <array>
#include <cstddef>

#include "codegen/select_spec.h"
#include "runtime/device.h"
#include "runtime/driver.h"
#include "runtime/plan.h"
#include "templates/split_select_params.cuh"

namespace tka {

struct SelectSplit {
  int chunks = 0;  // CTAs per row; 0: one CTA per row
  int chunk = 0;   // keys per CTA, a multiple of 4 * threads
};

inline constexpr int kMaxSelectChunks = 64;
inline constexpr int kMinSplitChunks = 4;  // decode's (select_split's default)

// min_chunks: the fewest CTAs per row worth three launches instead of one. The selection op asks
// for more than decode: its rows stream through shared memory (RowStream), so one CTA per row
// already reads a long row quickly (H200: 32 rows of 128K in 59 µs one per row, 72 µs split).
SelectSplit select_split(bool enabled, int threads, int rows, int row_len, int sm_count,
                         int min_chunks = kMinSplitChunks);

// Slots each chunk of a split row stages (radix_select_split.cuh): room for its keys above the
// threshold bin (fewer than the row's k, and no more than the chunk) and for its candidates (at
// most `capacity`, when they are kept).
struct SplitStage {
  int sure = 0;   // slots for the keys above the threshold bin
  int slots = 0;  // sure + candidates
};
SplitStage split_stage(const SelectSplit& split, int k, int capacity);

// Staging slots (a key and an index each) that select_split(threads, min_chunks) may need over at
// most max_rows rows of at most row_len keys: the largest rows x chunks x split_stage().slots.
long long split_stage_bound(int max_rows, int row_len, int threads, int min_chunks, int k, int capacity, int sm_count);

// The split selection's buffers in a plan's workspace (byte offsets), as decode and the selection
// op lay them out: per row a level-0 histogram and the chunks' counts, and the staging slots.
struct SplitWorkspace {
  size_t hist = 0, counts = 0, stage_key = 0, stage_idx = 0;
  int rows = 0;               // rows the buffers hold (0: no split path)
  long long stage_slots = 0;  // split_stage_bound
  bool holds(int rows, const SelectSplit& split, const SplitStage& stage) const {
    return rows <= this->rows && static_cast<long long>(rows) * split.chunks * stage.slots <= stage_slots;
  }
};
// The kernels' parameters for `rows` rows split as `split` (chunks > 0), over the plan's workspace
// at `base`: an internal error when the workspace was laid out for fewer rows or staging slots.
Status split_select_params(const SplitWorkspace& ws, char* base, int rows, const SelectSplit& split, int k,
                           int capacity, SplitSelectParams* out);

SplitWorkspace take_split_workspace(WorkspaceLayout& at, int rows, int row_len, int k, int threads, int capacity,
                                    int min_chunks, int sm_count);

// How many clusters of each size 0..kMaxSelectCluster the device holds at once (0 where none, or
// not asked).
typedef std::array<int, kMaxSelectCluster + 1> ClusterResidency;

// CTAs per row of the clustered selection (select_rows_cluster) over rows of n columns: max_cluster
// itself (any size from 2 to 8; the kernel takes any), else the largest size below it
// whose clusters, one per row, all run at once (resident[size]) and keep rows * CTAs within two
// per SM; 0 for none (rows too many, no cluster fits, or rows too short to pay). A cluster costs
// each row its exchanges and merging and saves the part of the pass the other CTAs read: it pays
// once those are >= 16K columns (H100, graph replay: 32 x 32K 23.0 us in clusters of 3 against
// 30.0 split, 1 x 32K 20.1 in clusters of 8 against 28.2; bench/NOTES.md).
int select_cluster_size(int max_cluster, int rows, int n, int sm_count, const ClusterResidency& resident);
// RowStream<threads, stages, Elem>::kRingBytes (row_stream.cuh), on the host.
inline int row_stream_ring_bytes(int stages, int threads, int elem_bytes) { return stages * threads * 8 * elem_bytes; }
// Dynamic shared memory of a cluster selection kernel with `static_bytes` of its own: `need` (its
// ring), or more, so that one CTA fills an SM's shared memory past half (a cluster waits on its
// slowest CTA, so two CTAs sharing an SM make the whole cluster late); never past the opt-in limit.
inline int cluster_smem_bytes(const DeviceInfo& device, int static_bytes, int need) {
  return std::min(device.max_smem_optin - static_bytes, std::max(need, device.smem_per_sm / 2 - static_bytes));
}
// How many clusters of each size from max_cluster down (the sizes select_cluster_size tries) of
// `fn` at `threads` a CTA and `smem` bytes of dynamic shared memory the device runs at once. A
// device or driver that cannot say holds none (the caller takes another path).
Status cluster_residency(const DeviceInfo& device, CUfunction fn, int threads, int smem, int max_cluster,
                         ClusterResidency* out);
// The size select_cluster_size tries after `size`: every size, not the powers of two alone (on an
// H100 32 clusters of 4 do not fit at once, but 32 of 3 do, and 32 x 128K took 43.3 us in clusters
// of 3 against 47.0 in clusters of 2). 1: none left.
int smaller_cluster_size(int size);

}  // namespace tka
