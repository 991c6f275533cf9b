// Warp and block reductions and scans over ints and floats. Block functions must be called by
// every thread of the block; they end with a barrier so their scratch can be reused at once.
#pragma once
#include "common/types.cuh"

namespace tka {

constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ int warp_inclusive_sum(int v) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int n = __shfl_up_sync(kFullMask, v, o);
    if (lane >= o) v += n;
  }
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

// Scratch for the block functions: one slot per warp plus a total.
struct BlockScratch {
  int ints[33];
  float floats[33];
};

// Exclusive prefix sum over threads in threadIdx order; *total gets the block's sum.
template <int kThreads>
__device__ __forceinline__ int block_exclusive_sum(int v, BlockScratch& s, int* total) {
  constexpr int kWarps = kThreads / 32;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int inclusive = warp_inclusive_sum(v);
  if (lane == 31) s.ints[warp] = inclusive;
  __syncthreads();
  if (warp == 0) {
    const int x = lane < kWarps ? s.ints[lane] : 0;
    const int xs = warp_inclusive_sum(x);
    if (lane < kWarps) s.ints[lane] = xs - x;
    if (lane == 31) s.ints[32] = xs;
  }
  __syncthreads();
  const int result = s.ints[warp] + inclusive - v;
  *total = s.ints[32];
  __syncthreads();
  return result;
}

// The reduction of v over the block by `warp_reduce` (a warp-wide reduction), `identity` for the
// missing lanes of the last step.
template <int kThreads, class WarpReduce>
__device__ __forceinline__ float block_reduce(float v, BlockScratch& s, WarpReduce warp_reduce, float identity) {
  constexpr int kWarps = kThreads / 32;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_reduce(v);
  if (lane == 0) s.floats[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float x = lane < kWarps ? s.floats[lane] : identity;
    x = warp_reduce(x);
    if (lane == 0) s.floats[32] = x;
  }
  __syncthreads();
  const float r = s.floats[32];
  __syncthreads();
  return r;
}

template <int kThreads>
__device__ __forceinline__ float block_max(float v, BlockScratch& s) {
  return block_reduce<kThreads>(
      v, s, [](float x) { return warp_max(x); }, neg_inf());
}

template <int kThreads>
__device__ __forceinline__ float block_sum(float v, BlockScratch& s) {
  return block_reduce<kThreads>(
      v, s, [](float x) { return warp_sum(x); }, 0.f);
}

}  // namespace tka
