// FP8 E4M3 (the "fn" variant: no infinities, S.1111.111 is NaN) to float, from the format's
// definition; and the nearest E4M3 byte of a float, for making test inputs.
#ifndef TOPKATTN_TESTS_REFERENCE_FP8_REFERENCE_H_
#define TOPKATTN_TESTS_REFERENCE_FP8_REFERENCE_H_

#include <cmath>
#include <cstdint>
#include <limits>

namespace topkattn_ref {

inline float e4m3_to_float(uint8_t byte) {
  const int sign = byte >> 7, exp = (byte >> 3) & 0xf, man = byte & 0x7;
  if (exp == 15 && man == 7) return std::numeric_limits<float>::quiet_NaN();
  const float mag = exp == 0 ? std::ldexp(static_cast<float>(man), -9) : std::ldexp(1.f + man / 8.f, exp - 7);
  return sign ? -mag : mag;
}

// Round to nearest by search: 256 candidates, ties to the even code. Clamps to +-448.
inline uint8_t float_to_e4m3(float f) {
  uint8_t best = 0;
  float best_err = std::numeric_limits<float>::infinity();
  for (int b = 0; b < 256; ++b) {
    const float v = e4m3_to_float(static_cast<uint8_t>(b));
    if (std::isnan(v)) continue;
    const float err = std::fabs(v - f);
    if (err < best_err || (err == best_err && (b & 1) == 0 && (best & 1) == 1))
      best = static_cast<uint8_t>(b), best_err = err;
  }
  return best;
}

}  // namespace topkattn_ref

#endif  // TOPKATTN_TESTS_REFERENCE_FP8_REFERENCE_H_
