// Warpgroup matrix multiply-accumulate (wgmma, sm_90a): the four warps of a warpgroup multiply
// tiles that sit in shared memory, asynchronously, at the tensor cores' full Hopper rate (mma.sync
// reaches about half of it, and an FP8 mma.sync is emulated through fp16 on sm_90). Compiled only
// where the arch-specific features are (NVRTC's sm_90a); elsewhere kHaveWgmma is false and callers
// take another path.
//
// Operands here are K-major tiles of 128-byte rows (FP8: 128 values of d per row) in the 128-byte
// swizzle: rows in atoms of 8 (1024 bytes, the tile 1024-byte aligned), the 16-byte piece c of
// row r stored at piece c ^ (r % 8). A k-step of 32 FP8 values starts 32 bytes further into the
// rows: the descriptor's address advances by 32 bytes (the hardware applies the swizzle to the
// address it forms).
//
// The accumulator fragment of m64nN (fp32) per warp w of the warpgroup: rows 16 w + g and
// 16 w + g + 8, columns 8 j + 2 t, 2 t + 1 for j < N / 8 (g = lane / 4, t = lane % 4), in d[4 j]
// .. d[4 j + 3] as an mma.sync m16n8 C fragment.
#pragma once
#include "common/memory.cuh"
#include "common/types.cuh"

namespace tka {

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
constexpr bool kHaveWgmma = true;
#else
constexpr bool kHaveWgmma = false;
#endif

// Descriptor of a K-major, 128-byte-swizzled tile starting at `tile` (shared memory, 1024-byte
// aligned): start address, stride 1024 bytes between 8-row atoms, swizzle mode 1 (128 bytes).
__device__ __forceinline__ u64 wgmma_desc_sw128(const void* tile) {
  const u64 addr = smem_addr(tile);
  return ((addr & 0x3ffffu) >> 4) | (u64(1) << 16) | (u64(1024 >> 4) << 32) | (u64(1) << 62);
}
// The same descriptor `bytes` further along the rows (a multiple of 16 below 128).
__device__ __forceinline__ u64 wgmma_desc_advance(u64 desc, int bytes) { return desc + static_cast<u64>(bytes >> 4); }

// Shared-memory writes of the generic proxy (stores, cp.async) become visible to wgmma, which
// reads through the async proxy; then a barrier. Nothing below sm_90 (no async proxy there).
__device__ __forceinline__ void fence_async_shared() {
#if __CUDA_ARCH__ >= 900
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int kPending>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}
// Keeps the compiler from moving reads or writes of the accumulators across this point (they
// belong to the tensor cores between a wgmma and its wait).
__device__ __forceinline__ void wgmma_fence_operands(float (&d)[32]) {
  asm volatile(""
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                 "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                 "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                 "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]),
                 "+f"(d[31])::"memory");
}

// d (+)= A B^T for A a 64 x 32 and B a 64 x 32 FP8 E4M3 tile (both K-major), fp32 accumulators;
// `accumulate` 0 ignores d's old values.
__device__ __forceinline__ void wgmma_m64n64k32_e4m3(float (&d)[32], u64 a, u64 b, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k32.f32.e4m3.e4m3 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, "
      "%24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]),
        "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]),
        "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),
        "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "l"(a), "l"(b), "r"(accumulate));
}
#endif

}  // namespace tka
