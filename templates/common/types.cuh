// Scalar types and conversions with no CUDA headers, so NVRTC needs nothing from the toolkit.
// 16-bit values travel as raw bits; conversions use the PTX instructions directly.
#pragma once

namespace tka {

typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;

struct bf16 {
  unsigned short bits;
};
struct fp16 {
  unsigned short bits;
};

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(bf16 x) { return __uint_as_float(u32(x.bits) << 16); }
__device__ __forceinline__ float to_float(fp16 x) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x.bits));
  return f;
}

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ bf16 from_float<bf16>(float x) {
  bf16 r;
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r.bits) : "f"(x));
  return r;
}
template <>
__device__ __forceinline__ fp16 from_float<fp16>(float x) {
  fp16 r;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r.bits) : "f"(x));
  return r;
}

// Eight 16-bit values (one 16-byte vector) to floats. bf16 is the high half of a float, so a
// shift or a mask converts a pair; fp16 needs the cvt.
__device__ __forceinline__ void unpack8(uint4 v, bf16*, float (&f)[8]) {
  const u32 w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}
__device__ __forceinline__ void unpack8(uint4 v, fp16*, float (&f)[8]) {
  const u32 w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = to_float(fp16{static_cast<unsigned short>(w[i] & 0xffffu)});
    f[2 * i + 1] = to_float(fp16{static_cast<unsigned short>(w[i] >> 16)});
  }
}

__device__ __forceinline__ float quiet_nan() { return __uint_as_float(0x7fc00000u); }
__device__ __forceinline__ float neg_inf() { return __uint_as_float(0xff800000u); }

// 2^x with the hardware approximation (2 ulp): softmax weights end in bf16/fp16 outputs.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// max(0, min(x, hi)), for counts and lengths. ptxas of CUDA 12.0-13.3 fuses such a clamp into a
// VIMNMX.RELU and answers a later test of the result (== hi) from that instruction's predicate,
// which is wrong on sm_90: a chunk starting at a row's end was taken as whole and copied, 16
// bytes past the row (bench/NOTES.md). An identity LOP3 the compiler does not look through makes
// the test compare the value instead. sm_80 has no such fusion, so it keeps the plain clamp.
__device__ __forceinline__ int clamp_count(int x, int hi) {
#if __CUDA_ARCH__ >= 900
  int r;
  asm volatile("lop3.b32 %0, %1, 0, 0, 0xF0;" : "=r"(r) : "r"(max(0, min(x, hi))));
  return r;
#else
  return max(0, min(x, hi));
#endif
}

}  // namespace tka
