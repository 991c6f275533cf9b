// 16-bit floats (bf16, fp16) held as raw bits on the host, to float. Exact: every bf16 and fp16
// value is a float. Used where the host reads what the kernels read (tuner checks, the CPU
// fidelity path, `analyze`).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace tka {

inline float half_bits_to_float(uint16_t h, bool bf16) {
  uint32_t u;
  if (bf16) {
    u = static_cast<uint32_t>(h) << 16;
  } else {
    const uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0x1f) {
      u = sign | 0x7f800000u | (mant << 13);
    } else if (exp == 0) {  // zero or subnormal: mant * 2^-24
      const float f = std::ldexp(static_cast<float>(mant), -24);
      return sign ? -f : f;
    } else {
      u = sign | ((exp + 112) << 23) | (mant << 13);
    }
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace tka
