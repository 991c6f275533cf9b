// Per-phase clocks of one CTA, for finding where a kernel's time goes (bench/select_phases.py).
// Compiled in only with TOPKATTN_KERNEL_DEFINES=TKA_PHASE_CLOCKS (which also changes the cache
// key); otherwise every call below is empty and costs nothing.
//
// Thread 0 stamps clock64() at each mark (after the barrier that ends the phase, where there is
// one); phase_report prints one line per sampled CTA: the SM clock ticks of each phase and the
// globaltimer nanoseconds of the whole, so the reader can turn ticks into time.
#pragma once
#include "common/types.cuh"

namespace tka {

constexpr int kPhaseSlots = 12;

#ifdef TKA_PHASE_CLOCKS
struct PhaseClocks {
  long long t[kPhaseSlots];
  unsigned long long ns0;
  int count;
};
__device__ __forceinline__ PhaseClocks& phase_clocks() {
  __shared__ PhaseClocks c;
  return c;
}
__device__ __forceinline__ unsigned long long global_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
__device__ __forceinline__ void phase_start() {
  if (threadIdx.x == 0) {
    PhaseClocks& c = phase_clocks();
    c.count = 1;
    c.ns0 = global_ns();
    c.t[0] = clock64();
  }
}
// Phase `id` (1..kPhaseSlots-2) ends now; phases skipped print as 0, and a mark below one
// already made is ignored (its time stays in the later phase). Every kernel that reaches a mark
// calls phase_start first (also those that report nothing, such as decode's selection).
__device__ __forceinline__ void phase_mark(int id) {
  if (threadIdx.x == 0 && id < kPhaseSlots - 1) {
    PhaseClocks& c = phase_clocks();
    if (id < c.count) return;
    for (int i = c.count; i < id; ++i) c.t[i] = c.t[c.count - 1];  // skipped phases: zero length
    c.t[id] = clock64();
    c.count = id + 1;
  }
}
// One line per CTA (every 16th of grids over 512): "tka-phase cta=B sm=S start=T0 ns=N
// ticks=T1,T2,..." (T0: globaltimer at the start; Ti: ticks of phase i).
__device__ __forceinline__ void phase_report() {
  const unsigned cta = blockIdx.x + blockIdx.y * gridDim.x;
  if (threadIdx.x != 0 || (gridDim.x * gridDim.y > 512 && cta % 16 != 0)) return;
  PhaseClocks& c = phase_clocks();
  const unsigned long long ns = global_ns() - c.ns0;
  unsigned sm;
  asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
  // The last slot: from the last mark to now (what follows a skipped-back mark lands there).
  const long long end = clock64();
  long long d[kPhaseSlots - 1];
  for (int i = 1; i < kPhaseSlots - 1; ++i) d[i - 1] = i < c.count ? c.t[i] - c.t[i - 1] : 0;
  d[kPhaseSlots - 2] = end - c.t[c.count - 1];  // count <= kPhaseSlots - 1: marks stop below it
  printf("tka-phase cta=%u sm=%u start=%llu ns=%llu ticks=%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld\n",
         cta, sm, c.ns0, ns, d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10]);
}
#else
__device__ __forceinline__ void phase_start() {}
__device__ __forceinline__ void phase_mark(int) {}
__device__ __forceinline__ void phase_report() {}
#endif

}  // namespace tka
