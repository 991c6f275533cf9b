// Tensor-memory-accelerator copies (sm_90): one thread issues a whole tile's copy, described by a
// tensor map (CUtensorMap, encoded by the host) that the kernel takes as a __grid_constant__
// parameter; an mbarrier in shared memory counts the bytes that have landed, and the threads that
// read the tile wait on its phase. Nothing here below sm_90 (the callers keep cp.async there).
#pragma once
#include "common/memory.cuh"
#include "common/types.cuh"

namespace tka {

__device__ __forceinline__ void mbarrier_init(u64* bar, u32 arrivals) {
#if __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(arrivals) : "memory");
#endif
}

// The initialised barriers become visible to the async proxy (then a CTA barrier).
__device__ __forceinline__ void fence_mbarrier_init() {
#if __CUDA_ARCH__ >= 900
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#endif
}

// One arrival that also expects `bytes` more to land in the barrier's current phase.
__device__ __forceinline__ void mbarrier_arrive_expect_tx(u64* bar, u32 bytes) {
#if __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(bytes) : "memory");
#endif
}

// Waits until the barrier's phase of parity `parity` has completed (its n-th use: parity n % 2).
__device__ __forceinline__ void mbarrier_wait_parity(u64* bar, u32 parity) {
#if __CUDA_ARCH__ >= 900
  asm volatile(
      "{\n"
      ".reg .pred tka_ready;\n"
      "tka_wait:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 tka_ready, [%0], %1;\n"
      "@!tka_ready bra tka_wait;\n"
      "}\n" ::"r"(smem_addr(bar)),
      "r"(parity)
      : "memory");
#endif
}

// The box of a 3-D tensor map at coordinates (c0, c1, c2), innermost first, into `dst` (shared,
// aligned as the map's swizzle needs); its bytes complete on `bar`. Coordinates past the tensor
// come back as zeros.
__device__ __forceinline__ void tma_load_3d(void* dst, const void* map, int c0, int c1, int c2, u64* bar) {
#if __CUDA_ARCH__ >= 900
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], "
      "[%5];\n" ::"r"(smem_addr(dst)),
      "l"(reinterpret_cast<u64>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(smem_addr(bar))
      : "memory");
#endif
}

}  // namespace tka
