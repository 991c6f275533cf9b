// A barrier over the whole grid of a cooperative launch (CU_LAUNCH_ATTRIBUTE_COOPERATIVE): every
// CTA is resident at once, so CTAs may wait for each other. The barrier word is the one the driver
// keeps for each cooperative launch (its address in %envreg1:%envreg2, the same word
// cooperative_groups::this_grid().sync() uses), so the kernel needs no zeroed memory of its own:
// a plan's workspace may hold anything when a step starts.
//
// The word counts arrivals in its low 31 bits; CTA (0,0,0) adds 2^31 - (CTAs - 1) and every other
// CTA 1, so once all have arrived the count is back where it was and bit 31 has flipped. A CTA
// waits for the flip from the value it saw when it arrived. Arrive and wait are separate so that a
// CTA can do work that needs no other CTA in between.
#pragma once
#include "common/types.cuh"

namespace tka {

__device__ __forceinline__ u32* grid_barrier_word() {
  u32 hi, lo;  // the address's high half in %envreg1, its low half in %envreg2
  asm("mov.u32 %0, %%envreg1;" : "=r"(hi));
  asm("mov.u32 %0, %%envreg2;" : "=r"(lo));
  // The driver's grid workspace: {u32 size; u32 barrier;}.
  return reinterpret_cast<u32*>((static_cast<unsigned long long>(hi) << 32) | lo) + 1;
}

// Every thread of the CTA calls it; returns the ticket grid_barrier_wait needs (thread 0's).
__device__ __forceinline__ u32 grid_barrier_arrive() {
  __syncthreads();  // the CTA's writes before the barrier happen before thread 0's release
  u32 old = 0;
  if (threadIdx.x == 0) {
    const u32 ctas = gridDim.x * gridDim.y * gridDim.z;
    const bool first = blockIdx.x + blockIdx.y + blockIdx.z == 0;
    const u32 add = first ? 0x80000000u - (ctas - 1) : 1u;
    asm volatile("atom.add.release.gpu.u32 %0, [%1], %2;" : "=r"(old) : "l"(grid_barrier_word()), "r"(add) : "memory");
  }
  return old;
}

__device__ __forceinline__ void grid_barrier_wait(u32 ticket) {
  if (threadIdx.x == 0) {
    const u32* word = grid_barrier_word();
    u32 now;
    do {
      asm volatile("ld.acquire.gpu.u32 %0, [%1];" : "=r"(now) : "l"(word) : "memory");
    } while (((now ^ ticket) & 0x80000000u) == 0);
  }
  __syncthreads();  // the other threads see what thread 0 acquired
}

__device__ __forceinline__ void grid_barrier() { grid_barrier_wait(grid_barrier_arrive()); }

}  // namespace tka
