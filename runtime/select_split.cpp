#include "runtime/select_split.h"

#include <algorithm>

#include "runtime/launch.h"

namespace tka {
namespace {
long long ceil_div(long long a, long long b) { return (a + b - 1) / b; }

// CTAs per row before the chunks are rounded to whole steps of the block (4 keys a thread): about
// two CTAs per SM over all rows, and no more than the block's threads (the finish scans the
// chunks' counts one a thread).
long long chunks_wanted(int threads, int rows, int row_len, int sm_count) {
  return std::min<long long>(
      {ceil_div(2LL * sm_count, rows), ceil_div(row_len, 4LL * threads), kMaxSelectChunks, threads});
}

}  // namespace

SelectSplit select_split(bool enabled, int threads, int rows, int row_len, int sm_count, int min_chunks) {
  SelectSplit s;
  if (!enabled || rows <= 0 || rows > sm_count) return s;
  const long long step = 4LL * threads;
  const long long chunks = chunks_wanted(threads, rows, row_len, sm_count);
  if (chunks < min_chunks) return s;  // three launches instead of one only pay off over long rows
  s.chunk = static_cast<int>(ceil_div(ceil_div(row_len, chunks), step) * step);
  s.chunks = static_cast<int>(ceil_div(row_len, s.chunk));
  return s;
}

SplitStage split_stage(const SelectSplit& split, int k, int capacity) {
  SplitStage st;
  st.sure = std::min(split.chunk, k);
  st.slots = st.sure + std::min(split.chunk, capacity);
  return st;
}

long long split_stage_bound(int max_rows, int row_len, int threads, int min_chunks, int k, int capacity, int sm_count) {
  long long most = 0;
  for (int r = 1; r <= std::min(max_rows, sm_count); ++r) {
    const SelectSplit s = select_split(true, threads, r, row_len, sm_count, min_chunks);
    if (s.chunks == 0) continue;
    // Shorter rows split into no more chunks (chunks_wanted) of no more keys than row_len's.
    const long long chunks = chunks_wanted(threads, r, row_len, sm_count);
    most = std::max(most, r * chunks * split_stage(s, k, capacity).slots);
  }
  return most;
}

Status split_select_params(const SplitWorkspace& ws, char* base, int rows, const SelectSplit& split, int k,
                           int capacity, SplitSelectParams* out) {
  const SplitStage stage = split_stage(split, k, capacity);
  if (!ws.holds(rows, split, stage)) return make_error(TKA_ERROR_INTERNAL, "split selection exceeds the workspace");
  *out = {reinterpret_cast<unsigned*>(base + ws.hist),
          reinterpret_cast<int*>(base + ws.counts),
          reinterpret_cast<unsigned*>(base + ws.stage_key),
          reinterpret_cast<int*>(base + ws.stage_idx),
          stage.slots,
          stage.sure,
          split.chunk,
          split.chunks};
  return Status::ok();
}

SplitWorkspace take_split_workspace(WorkspaceLayout& at, int rows, int row_len, int k, int threads, int capacity,
                                    int min_chunks, int sm_count) {
  SplitWorkspace ws;
  ws.rows = rows;
  ws.stage_slots = split_stage_bound(rows, row_len, threads, min_chunks, k, capacity, sm_count);
  ws.hist = at.take(static_cast<size_t>(rows) * 2048 * 4);
  ws.counts = at.take(static_cast<size_t>(rows) * 2 * kMaxSelectChunks * 4);
  ws.stage_key = at.take(static_cast<size_t>(ws.stage_slots) * 4);
  ws.stage_idx = at.take(static_cast<size_t>(ws.stage_slots) * 4);
  return ws;
}

int smaller_cluster_size(int size) { return size - 1; }

Status cluster_residency(const DeviceInfo& device, CUfunction fn, int threads, int smem, int max_cluster,
                         ClusterResidency* out) {
  const DriverApi* api = nullptr;
  TKA_RETURN_IF_ERROR(driver(&api));
  ScopedContext ctx(api, device.context);
  TKA_RETURN_IF_ERROR(ctx.status());
  DeviceInfo query_device = device;  // the query needs the cluster shape alone
  query_device.overlap_launches = false;
  out->fill(0);
  for (int size = std::min(max_cluster, kMaxSelectCluster); size >= 2; size = smaller_cluster_size(size)) {
    KernelLaunch k;
    k.fn = fn;
    k.grid_x = k.cluster = static_cast<unsigned>(size);
    k.threads = static_cast<unsigned>(threads);
    k.smem = static_cast<unsigned>(smem);
    CUlaunchAttribute attrs[kMaxLaunchAttributes];
    const CUlaunchConfig launch = launch_config(query_device, k, nullptr, attrs);
    if (!TKA_CU(api, cuOccupancyMaxActiveClusters, &(*out)[size], fn, &launch).is_ok()) (*out)[size] = 0;
  }
  return Status::ok();
}

int select_cluster_size(int max_cluster, int rows, int n, int sm_count, const ClusterResidency& resident) {
  constexpr long long kMinColumnsSaved = 16 << 10;
  if (rows <= 0) return 0;
  for (int c = std::min(max_cluster, kMaxSelectCluster); c >= 2; c = smaller_cluster_size(c)) {
    if (static_cast<long long>(rows) * c <= 2LL * sm_count && rows <= resident[c])
      return static_cast<long long>(n) * (c - 1) / c >= kMinColumnsSaved ? c : 0;
  }
  return 0;
}

}  // namespace tka
