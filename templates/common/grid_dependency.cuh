// Programmatic dependent launch (sm_90+). The runtime launches each kernel of a plan with the
// attribute that lets it start while the kernel before it on the stream is still finishing: its
// CTAs are placed and reach this wait during the other's last wave, instead of after a launch gap
// (a few microseconds, most of a batch-1 decode step's kernels run not much longer). So every
// kernel calls begin_grid() before its first global memory access, read or write: the wait
// returns once the previous grid has completed and its writes are visible. Without the
// attribute (sm_80, or TOPKATTN_PDL=0) both instructions do nothing.
#pragma once

namespace tka {

__device__ __forceinline__ void begin_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
  // The next kernel may be placed now: it launches once every CTA of this grid has started (or
  // ended), so its CTAs only take what this grid's last wave leaves free, and wait as above.
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

}  // namespace tka
