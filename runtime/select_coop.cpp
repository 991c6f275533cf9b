#include "runtime/select_coop.h"

#include <algorithm>

namespace tka {

Status coop_residency(const DeviceInfo& device, CUfunction fn, int threads, const char* what, CoopResidency* out) {
  constexpr int kReservedPerCta = 1024;  // the shared memory the system keeps for each CTA (sm_80+)
  int static_bytes = 0;
  TKA_RETURN_IF_ERROR(static_smem_bytes(device, fn, &static_bytes));
  CoopResidency r;
  const int most = std::min(device.max_smem_optin - static_bytes, device.smem_per_sm - kReservedPerCta - static_bytes);
  if (most > 0) {
    TKA_RETURN_IF_ERROR(allow_dynamic_smem(device, fn, most, what, /*prefer_shared=*/true));
    for (int per_sm = 1; per_sm <= 2; ++per_sm) {
      const int bytes = std::min(most, device.smem_per_sm / per_sm - kReservedPerCta - static_bytes) / 16 * 16;
      int fit = 0;
      if (bytes > 0 && resident_ctas_per_sm(device, fn, threads, bytes, what, &fit).is_ok() && fit >= per_sm)
        r.smem_for[per_sm] = bytes;
    }
  }
  *out = r;
  return Status::ok();
}

CoopSelectShape coop_select_shape(int rows, int row_len, int threads, int sm_count, const CoopResidency& resident,
                                  int min_smem) {
  CoopSelectShape s;
  if (rows <= 0 || rows > sm_count || row_len < kCoopMinLen) return s;
  for (int per_sm = 2; per_sm >= 1; --per_sm) {
    const int room = resident.smem_for[per_sm];
    if (room <= 0) continue;
    const long long chunks = std::min<long long>(static_cast<long long>(per_sm) * sm_count / rows, threads);
    if (chunks < 1) continue;
    const long long chunk = (row_len + chunks - 1) / chunks;
    const long long rounded = (chunk + 3) / 4 * 4;
    const long long smem = std::max<long long>(rounded * 4, min_smem);
    if (smem > room) continue;
    s.chunk = static_cast<int>(rounded);
    s.chunks = static_cast<int>((row_len + rounded - 1) / rounded);
    s.smem = static_cast<int>(smem);
    return s;
  }
  return s;
}

CoopWorkspace take_coop_workspace(WorkspaceLayout& at, int rows, int max_chunks) {
  CoopWorkspace ws;
  ws.rows = rows;
  ws.chunks = max_chunks;
  ws.hist = at.take(static_cast<size_t>(rows) * 3 * 2048 * 4);
  ws.counts = at.take(static_cast<size_t>(rows) * max_chunks * 2 * 4);
  return ws;
}

Status coop_select_params(const CoopWorkspace& ws, char* base, int rows, const CoopSelectShape& shape,
                          CoopSelectParams* out) {
  if (shape.chunks <= 0 || rows > ws.rows || shape.chunks > ws.chunks)
    return make_error(TKA_ERROR_INTERNAL, "cooperative selection exceeds the workspace");
  *out = {reinterpret_cast<unsigned*>(base + ws.hist), reinterpret_cast<int*>(base + ws.counts), shape.chunk,
          shape.chunks};
  return Status::ok();
}

}  // namespace tka
