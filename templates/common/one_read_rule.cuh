// Which rows are selected with one read (radix_select_sampled.cuh) rather than two. Plain C++ so
// that the host, which gives the shared-memory ring only to launches whose rows stream, applies
// the very rule that the kernels do.
#pragma once

#if defined(__CUDACC_RTC__) || defined(__CUDACC__)
#define TKA_HOST_DEVICE __host__ __device__
#else
#define TKA_HOST_DEVICE
#endif

namespace tka {

// The one-read path reads 1 + 4096 / n of the row (8192 / n from 64K: its sample) and keeps
// ~1.4 s candidates in a buffer of `capacity`: it pays for rows of n >= 16K and s <= n / 16, and
// fits for s up to half the capacity. Its sample lives in the candidate buffer: smaller buffers
// never take it (their kernels do not compile it).
constexpr int kSampleCapacity = 4096;  // candidate words the sample takes
TKA_HOST_DEVICE constexpr bool sampled_select_pays(int n, int s, int capacity) {
  return capacity >= kSampleCapacity && n >= 16384 && n >= 16 * s && 2 * s <= capacity;
}

}  // namespace tka
