#include "runtime/select_split.h"

#include <algorithm>

namespace tka {
namespace {
long long ceil_div(long long a, long long b) { return (a + b - 1) / b; }
}  // namespace

SelectSplit select_split(bool enabled, int threads, int rows, int row_len, int sm_count, int min_chunks) {
  SelectSplit s;
  if (!enabled || rows <= 0 || rows > sm_count) return s;
  // About two CTAs per SM over all rows, each taking whole steps of the block (4 keys a thread).
  const long long step = 4LL * threads;
  long long chunks = ceil_div(2LL * sm_count, rows);
  chunks = std::min<long long>({chunks, ceil_div(row_len, step), kMaxSelectChunks});
  if (chunks < min_chunks) return s;  // four launches instead of one only pay off over long rows
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

long long split_stage_bound(int max_rows, int k, int capacity, int sm_count) {
  long long most = 0;
  for (int r = 1; r <= std::min(max_rows, sm_count); ++r)
    most = std::max(most, r * std::min<long long>(ceil_div(2LL * sm_count, r), kMaxSelectChunks));
  return most * (static_cast<long long>(k) + capacity);
}

int select_cluster_size(int max_cluster, int rows, int n, int sm_count, const int (&resident)[4]) {
  constexpr long long kMinColumnsSaved = 48 << 10;
  if (rows <= 0) return 0;
  for (int c = 8, log = 3; c >= 2; c /= 2, --log) {
    if (c <= max_cluster && static_cast<long long>(rows) * c <= 2LL * sm_count && rows <= resident[log])
      return static_cast<long long>(n) * (c - 1) / c >= kMinColumnsSaved ? c : 0;
  }
  return 0;
}

}  // namespace tka
