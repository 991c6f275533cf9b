// FP8 E4M3 (the "fn" variant: no infinities, S.1111.111 is NaN) to float, from the format's
// definition; and the nearest E4M3 byte of a float, for making test inputs.
#ifndef TOPKATTN_TESTS_REFERENCE_FP8_REFERENCE_H_
#define TOPKATTN_TESTS_REFERENCE_FP8_REFERENCE_H_

#include <algorithm>
#include <array>
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

// Round to nearest, ties to the even code; values beyond +-448 and infinities saturate to +-448
// (as the device conversion with saturation does); NaN and -0 give +0. The positive codes
// 0..126 grow with their value, so the nearest is one of the two around a binary search (a search
// over all 256 codes took minutes for the tens of millions of keys of a long indexer case).
inline uint8_t float_to_e4m3(float f) {
  static const std::array<float, 127> magnitudes = [] {
    std::array<float, 127> m{};
    for (int b = 0; b < 127; ++b) m[b] = e4m3_to_float(static_cast<uint8_t>(b));
    return m;
  }();
  if (std::isnan(f)) return 0;
  const float a = std::fabs(f);
  const int above = static_cast<int>(std::lower_bound(magnitudes.begin(), magnitudes.end(), a) - magnitudes.begin());
  int code = 126;
  if (above == 0) {
    code = 0;
  } else if (above < 127) {
    const float up = magnitudes[above] - a, down = a - magnitudes[above - 1];
    code = up < down ? above : down < up ? above - 1 : (above % 2 == 0 ? above : above - 1);
  }
  return static_cast<uint8_t>(code != 0 && f < 0 ? code | 0x80 : code);
}

}  // namespace topkattn_ref

#endif  // TOPKATTN_TESTS_REFERENCE_FP8_REFERENCE_H_
