// One order-preserving integer key per score, used by every comparison of the selection
// (histograms, thresholds, filters), so ties, NaN and signed zeros behave the same everywhere:
//   larger score -> larger key; -0 == +0; NaN -> 0, below every number (-inf maps above 0);
//   kForcedKey (sink/local tokens) above every number.
#pragma once
#include "common/types.cuh"

namespace tka {

constexpr u32 kForcedKey = 0xffffffffu;

__device__ __forceinline__ u32 order_key(float score) {
  if (score != score) return 0u;
  if (score == 0.0f) score = 0.0f;  // folds -0 into +0
  const u32 u = __float_as_uint(score);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// The score of a key: exact for every number except zero (the key does not keep -0's sign); NaN
// (key 0) comes back as a NaN without its payload. Callers that must return the input's own bits
// read it again for those two keys.
__device__ __forceinline__ float key_value(u32 key) {
  return __uint_as_float((key & 0x80000000u) ? (key & 0x7fffffffu) : ~key);
}
__device__ __forceinline__ bool key_value_exact(u32 key) { return key != 0u && key != 0x80000000u; }

}  // namespace tka
