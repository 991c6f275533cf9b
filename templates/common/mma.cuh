// Tensor-core matrix multiply-accumulate (mma.sync, sm_80+) and the FP8 E4M3 decoding that feeds
// it on GPUs without FP8 mma. Fragment layouts of m16n8k16 (PTX ISA, "Matrix fragments for
// mma.m16n8k16"), with g = lane / 4 and t = lane % 4:
//   A (16x16, row-major)  a[0]: row g,   cols 2t, 2t+1     a[1]: row g+8, cols 2t, 2t+1
//                         a[2]: row g,   cols 2t+8, 2t+9   a[3]: row g+8, cols 2t+8, 2t+9
//   B (16x8, col-major)   b[0]: rows 2t, 2t+1 of col g     b[1]: rows 2t+8, 2t+9 of col g
//   C (16x8, fp32)        c[0], c[1]: row g, cols 2t, 2t+1;  c[2], c[3]: row g+8, same cols
// Each 32-bit register holds two bf16, the lower index in the low half.
#pragma once
#include "common/types.cuh"

namespace tka {

__device__ __forceinline__ void mma_bf16_16816(float (&c)[4], const u32 (&a)[4], const u32 (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// The same product over fp16 inputs (fp32 accumulate).
__device__ __forceinline__ void mma_fp16_16816(float (&c)[4], const u32 (&a)[4], const u32 (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
__device__ __forceinline__ void mma_16816(bf16, float (&c)[4], const u32 (&a)[4], const u32 (&b)[2]) {
  mma_bf16_16816(c, a, b);
}
__device__ __forceinline__ void mma_16816(fp16, float (&c)[4], const u32 (&a)[4], const u32 (&b)[2]) {
  mma_fp16_16816(c, a, b);
}

// B fragments of two adjacent n-tiles from a row-major [k][n] tile in shared memory (values of a
// [keys x d_v] tile, where the mma wants them column-major): ldmatrix.trans of four 8x8 blocks.
// Lane i points at row (i % 8) + 8 * ((i / 8) % 2) of the 16 k-rows, column n0 + 8 * (i / 16);
// b[0], b[1] are the fragment of columns n0..n0+7, b[2], b[3] of n0+8..n0+15.
__device__ __forceinline__ void ldmatrix_x4_trans(u32 (&b)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(b[0]), "=r"(b[1]), "=r"(b[2]), "=r"(b[3])
               : "r"(static_cast<u32>(__cvta_generic_to_shared(row))));
}

// Four 8x8 blocks of 16-bit values from row-major tiles in shared memory, each lane pointing at one
// 8-element row: lanes 0-7 give the rows of block 0 (r[0]), 8-15 block 1, 16-23 block 2,
// 24-31 block 3. As an A fragment (rows m0.., k-columns k0..): lane i points at row i % 16,
// column k0 + 8 * (i / 16). As B fragments of two n-tiles from an [n][k] tile (keys as stored):
// lane i points at n-row (i % 8) + 8 * (i / 16), column k0 + 8 * ((i / 8) % 2); r[0], r[1] are
// the fragment of n-rows 0-7, r[2], r[3] of n-rows 8-15.
__device__ __forceinline__ void ldmatrix_x4(u32 (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(static_cast<u32>(__cvta_generic_to_shared(row))));
}

// bf16 bits of an FP8 E4M3 (fn: no infinities; S.1111.111 is NaN) byte. Every E4M3 value is
// exact in bf16.
__device__ __forceinline__ unsigned short e4m3_to_bf16_bits(u32 byte) {
  const u32 sign = (byte & 0x80u) << 8, exp = (byte >> 3) & 0xfu, man = byte & 0x7u;
  if (exp == 0xfu && man == 0x7u) return static_cast<unsigned short>(sign | 0x7fc0u);
  if (exp == 0u) {  // subnormal: man * 2^-9, exact in float
    const float f = static_cast<float>(man) * (1.0f / 512.0f);
    return static_cast<unsigned short>(sign | (__float_as_uint(f) >> 16));
  }
  return static_cast<unsigned short>(sign | ((exp + 120u) << 7) | (man << 4));
}

}  // namespace tka
