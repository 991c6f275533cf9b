// Programmatic dependent launch (sm_90+). The runtime launches each kernel of a plan with the
// attribute that lets it start while the kernel before it on the stream is still finishing, so
// every kernel calls begin_grid() before its first global memory access, read or write: the
// wait returns once the previous grid has completed and its writes are visible. Without the
// attribute (sm_80, or TOPKATTN_PDL=0) the wait does nothing.
#pragma once

namespace tka {

__device__ __forceinline__ void begin_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#ifdef TKA_PDL_EARLY
  // The next kernel may be placed as soon as every CTA of this one has started.
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
#endif
}

}  // namespace tka
