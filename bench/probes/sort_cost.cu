// Probe: where a CTA's sort of its selected entries goes (select.cuh's sort_words_desc: 2048 u64
// words at 512 threads, the sorted selection of k = 2048), beside two variants: merges only (four
// words a thread sorted in registers, then merge passes from width 4), and merge passes whose
// outputs are strided over the block (lanes on consecutive diagonals, no shared bank). Each CTA
// sorts its own random words in shared memory; thread 0 stamps the SM clock after each step, as
// the phase clocks do, and the program prints the median over CTAs of each step, then checks
// every CTA's output against std::sort.
//
//   nvcc -O3 -arch=sm_90a -std=c++17 -Itemplates -o sort_cost bench/probes/sort_cost.cu
//   ./sort_cost                       # sizes 2048 and 1024 at 512 threads, 32 and 132 CTAs
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <vector>

struct ProbeSpec {};  // select.cuh's kernels need a Spec only when instantiated
#include "select.cuh"

using tka::u64;

#define CHECK(x)                                                                                \
  do {                                                                                          \
    cudaError_t e_ = (x);                                                                       \
    if (e_ != cudaSuccess) {                                                                    \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                             \
    }                                                                                           \
  } while (0)

constexpr int kThreads = 512;
constexpr int kSteps = 8;  // clock stamps a CTA records

// Stamps: 0 start, 1 after the copy into shared memory, 2 after the register pass (segments of
// 128 sorted), 3.. after each merge pass, last: after the whole sort_words_desc on a fresh copy.
__global__ void __launch_bounds__(kThreads) sort_steps(const u64* in, u64* out, int size, long long* ticks) {
  extern __shared__ u64 words[];
  long long t[kSteps] = {};
  const u64* src = in + static_cast<long long>(blockIdx.x) * size;
  __syncthreads();
  t[0] = clock64();
  for (int i = threadIdx.x; i < size; i += kThreads) words[i] = src[i];
  __syncthreads();
  t[1] = clock64();
  tka::bitonic_segments<kThreads>(words, size, 2, tka::kSortSegment, /*top_descending=*/true);
  __syncthreads();
  t[2] = clock64();
  int step = 3;
  for (int width = tka::kSortSegment; width < size; width <<= 1) {
    __syncthreads();
    tka::merge_runs_desc<kThreads>(words, size, width);
    __syncthreads();
    if (step < kSteps - 1) t[step++] = clock64();
  }
  for (int i = threadIdx.x; i < size; i += kThreads) out[static_cast<long long>(blockIdx.x) * size + i] = words[i];
  // The whole sort again, as the kernels call it, on the unsorted words.
  for (int i = threadIdx.x; i < size; i += kThreads) words[i] = src[i];
  __syncthreads();
  const long long w0 = clock64();
  tka::sort_words_desc<kThreads>(words, size);
  const long long w1 = clock64();
  if (threadIdx.x == 0) {
    for (int s = 0; s < kSteps - 1; ++s) ticks[blockIdx.x * kSteps + s] = s < step ? t[s] : t[step - 1];
    ticks[blockIdx.x * kSteps + kSteps - 1] = w1 - w0;
  }
}

// Variant: no shuffles. Each thread sorts its four words in registers, then merge passes of
// widths 4..64 inside each warp's 128 words (a warp barrier each, as merge_runs_desc with
// __syncwarp), then the block's merge passes. size == 4 * kThreads or less (one group a thread).
__device__ __forceinline__ void merge_in_warp(u64* words, int size, int width) {
  const int o = 4 * static_cast<int>(threadIdx.x);
  u64 out[4];
  if (o < size) {
    const int base = o & ~(2 * width - 1), d = o - base;
    const u64* a = words + base;
    const u64* b = a + width;
    int lo = max(0, d - width), hi = min(d, width);
    while (lo < hi) {
      const int mid = (lo + hi) >> 1;
      if (a[mid] > b[d - 1 - mid])
        lo = mid + 1;
      else
        hi = mid;
    }
    int ia = lo, ib = d - lo;
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const bool take_a = ib >= width || (ia < width && a[ia] > b[ib]);
      out[r] = take_a ? a[ia++] : b[ib++];
    }
  }
  __syncwarp();
  if (o < size) {
    ulonglong2* at = reinterpret_cast<ulonglong2*>(words + o);
    at[0] = make_ulonglong2(out[0], out[1]);
    at[1] = make_ulonglong2(out[2], out[3]);
  }
  __syncwarp();
}

// Stamps: 0 start, 1 loaded, 2 four words a thread sorted, 3 warp merges (widths 4..64) done,
// 4.. block merge passes.
__global__ void __launch_bounds__(kThreads) sort_by_merges_only(const u64* in, u64* out, int size, long long* ticks) {
  extern __shared__ u64 words[];
  long long t[kSteps] = {};
  const u64* src = in + static_cast<long long>(blockIdx.x) * size;
  __syncthreads();
  t[0] = clock64();
  for (int i = threadIdx.x; i < size; i += kThreads) words[i] = src[i];
  __syncthreads();
  t[1] = clock64();
  const int o = 4 * static_cast<int>(threadIdx.x);
  if (o < size) {
    ulonglong2* at = reinterpret_cast<ulonglong2*>(words + o);
    const ulonglong2 p0 = at[0], p1 = at[1];
    u64 w[4] = {p0.x, p0.y, p1.x, p1.y};
    tka::bitonic_exchange(w[0], w[1], true), tka::bitonic_exchange(w[2], w[3], true);
    tka::bitonic_exchange(w[0], w[2], true), tka::bitonic_exchange(w[1], w[3], true);
    tka::bitonic_exchange(w[1], w[2], true);
    at[0] = make_ulonglong2(w[0], w[1]);
    at[1] = make_ulonglong2(w[2], w[3]);
  }
  __syncwarp();
  t[2] = clock64();
  for (int width = 4; width < tka::kSortSegment; width <<= 1) merge_in_warp(words, size, width);
  __syncthreads();
  t[3] = clock64();
  int step = 4;
  for (int width = tka::kSortSegment; width < size; width <<= 1) {
    __syncthreads();
    tka::merge_runs_desc<kThreads>(words, size, width);
    __syncthreads();
    if (step < kSteps) t[step++] = clock64();
  }
  for (int i = threadIdx.x; i < size; i += kThreads) out[static_cast<long long>(blockIdx.x) * size + i] = words[i];
  if (threadIdx.x == 0)
    for (int s = 0; s < kSteps; ++s) ticks[blockIdx.x * kSteps + s] = s < step ? t[s] : t[step - 1];
}

// Variant: the block's merge passes with each thread's outputs strided over the block (outputs
// t, t + kThreads, ...), each found by its own search along its diagonal. A warp's lanes then hold
// consecutive diagonals, so their searches read the same or neighbouring words (broadcasts and
// consecutive banks) where merge_runs_desc's lanes, four outputs apart, meet in the same banks.
template <int kThreads>
__device__ __forceinline__ void merge_runs_strided(u64* words, int size, int width) {
  constexpr int kMax = 8;  // outputs a thread: size <= 8 * kThreads
  u64 out[kMax];
#pragma unroll
  for (int r = 0; r < kMax; ++r) {
    const int o = static_cast<int>(threadIdx.x) + r * kThreads;
    if (o < size) {
      const int base = o & ~(2 * width - 1), d = o - base;
      const u64* a = words + base;
      const u64* b = a + width;
      int lo = max(0, d - width), hi = min(d, width);
      while (lo < hi) {
        const int mid = (lo + hi) >> 1;
        if (a[mid] > b[d - 1 - mid])
          lo = mid + 1;
        else
          hi = mid;
      }
      const int j = d - lo;
      out[r] = j >= width || (lo < width && a[lo] > b[j]) ? a[lo] : b[j];
    }
  }
  __syncthreads();
#pragma unroll
  for (int r = 0; r < kMax; ++r) {
    const int o = static_cast<int>(threadIdx.x) + r * kThreads;
    if (o < size) words[o] = out[r];
  }
}

// Stamps: 0 start, 1 loaded, 2 register pass, 3.. the strided merge passes.
__global__ void __launch_bounds__(kThreads) sort_strided_merges(const u64* in, u64* out, int size, long long* ticks) {
  extern __shared__ u64 words[];
  long long t[kSteps] = {};
  const u64* src = in + static_cast<long long>(blockIdx.x) * size;
  __syncthreads();
  t[0] = clock64();
  for (int i = threadIdx.x; i < size; i += kThreads) words[i] = src[i];
  __syncthreads();
  t[1] = clock64();
  tka::bitonic_segments<kThreads>(words, size, 2, tka::kSortSegment, /*top_descending=*/true);
  __syncthreads();
  t[2] = clock64();
  int step = 3;
  for (int width = tka::kSortSegment; width < size; width <<= 1) {
    __syncthreads();
    merge_runs_strided<kThreads>(words, size, width);
    __syncthreads();
    if (step < kSteps) t[step++] = clock64();
  }
  for (int i = threadIdx.x; i < size; i += kThreads) out[static_cast<long long>(blockIdx.x) * size + i] = words[i];
  if (threadIdx.x == 0)
    for (int s = 0; s < kSteps; ++s) ticks[blockIdx.x * kSteps + s] = s < step ? t[s] : t[step - 1];
}

int main() {
  int clock_khz = 0;
  CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0));
  const double us_per_tick = 1e3 / clock_khz;
  std::printf("SM clock %.0f MHz (nominal); medians over CTAs, us\n", clock_khz / 1e3);
  std::printf("%6s %5s | %8s %9s %s | %10s\n", "size", "CTAs", "load", "registers", "merge passes", "whole sort");
  std::mt19937_64 rng(7);
  for (int size : {2048, 1024}) {
    for (int ctas : {32, 132}) {
      std::vector<u64> host(static_cast<size_t>(ctas) * size);
      for (u64& w : host) w = rng() % 4 == 0 ? 0 : rng();  // repeats of zero, as the padding has
      u64 *in, *out;
      long long* ticks;
      CHECK(cudaMalloc(&in, host.size() * 8));
      CHECK(cudaMalloc(&out, host.size() * 8));
      CHECK(cudaMalloc(&ticks, ctas * kSteps * 8));
      CHECK(cudaMemcpy(in, host.data(), host.size() * 8, cudaMemcpyHostToDevice));
      for (int rep = 0; rep < 3; ++rep) sort_steps<<<ctas, kThreads, size * 8>>>(in, out, size, ticks);
      CHECK(cudaDeviceSynchronize());
      std::vector<long long> t(static_cast<size_t>(ctas) * kSteps);
      std::vector<u64> got(host.size());
      CHECK(cudaMemcpy(t.data(), ticks, t.size() * 8, cudaMemcpyDeviceToHost));
      CHECK(cudaMemcpy(got.data(), out, got.size() * 8, cudaMemcpyDeviceToHost));
      int bad = 0;
      for (int c = 0; c < ctas; ++c) {
        std::vector<u64> want(host.begin() + static_cast<long long>(c) * size,
                              host.begin() + static_cast<long long>(c + 1) * size);
        std::sort(want.begin(), want.end(), std::greater<u64>());
        bad += !std::equal(want.begin(), want.end(), got.begin() + static_cast<long long>(c) * size);
      }
      auto median = [&](int s) {  // step s's length, or the whole sort's for the last slot
        std::vector<double> v;
        for (int c = 0; c < ctas; ++c) {
          const long long* r = &t[static_cast<size_t>(c) * kSteps];
          v.push_back((s == kSteps - 1 ? r[s] : r[s] - r[s - 1]) * us_per_tick);
        }
        std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
        return v[v.size() / 2];
      };
      std::printf("%6d %5d | %8.2f %9.2f ", size, ctas, median(1), median(2));
      for (int s = 3; s < kSteps - 1; ++s) std::printf("%5.2f ", median(s));
      std::printf("| %10.2f %s\n", median(kSteps - 1), bad ? "MISMATCH" : "sorted");
      // The variant without shuffles: its steps are all lengths (no whole-sort slot).
      for (int rep = 0; rep < 3; ++rep) sort_by_merges_only<<<ctas, kThreads, size * 8>>>(in, out, size, ticks);
      CHECK(cudaDeviceSynchronize());
      CHECK(cudaMemcpy(t.data(), ticks, t.size() * 8, cudaMemcpyDeviceToHost));
      CHECK(cudaMemcpy(got.data(), out, got.size() * 8, cudaMemcpyDeviceToHost));
      bad = 0;
      for (int c = 0; c < ctas; ++c) {
        std::vector<u64> want(host.begin() + static_cast<long long>(c) * size,
                              host.begin() + static_cast<long long>(c + 1) * size);
        std::sort(want.begin(), want.end(), std::greater<u64>());
        bad += !std::equal(want.begin(), want.end(), got.begin() + static_cast<long long>(c) * size);
      }
      auto length = [&](int s) {
        std::vector<double> v;
        for (int c = 0; c < ctas; ++c) {
          const long long* r = &t[static_cast<size_t>(c) * kSteps];
          v.push_back((r[s] - r[s - 1]) * us_per_tick);
        }
        std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
        return v[v.size() / 2];
      };
      double total = 0;
      std::printf("  merges only: load %.2f, four a thread %.2f, warp merges %.2f, block merges", length(1), length(2),
                  length(3));
      for (int s = 4; s < kSteps; ++s) std::printf(" %.2f", length(s));
      for (int s = 2; s < kSteps; ++s) total += length(s);
      std::printf("; sort %.2f %s\n", total, bad ? "MISMATCH" : "sorted");
      // Strided merge passes after the register pass.
      for (int rep = 0; rep < 3; ++rep) sort_strided_merges<<<ctas, kThreads, size * 8>>>(in, out, size, ticks);
      CHECK(cudaDeviceSynchronize());
      CHECK(cudaMemcpy(t.data(), ticks, t.size() * 8, cudaMemcpyDeviceToHost));
      CHECK(cudaMemcpy(got.data(), out, got.size() * 8, cudaMemcpyDeviceToHost));
      bad = 0;
      for (int c = 0; c < ctas; ++c) {
        std::vector<u64> want(host.begin() + static_cast<long long>(c) * size,
                              host.begin() + static_cast<long long>(c + 1) * size);
        std::sort(want.begin(), want.end(), std::greater<u64>());
        bad += !std::equal(want.begin(), want.end(), got.begin() + static_cast<long long>(c) * size);
      }
      total = 0;
      std::printf("  strided merges: registers %.2f, merge passes", length(2));
      for (int s = 3; s < kSteps; ++s) std::printf(" %.2f", length(s));
      for (int s = 2; s < kSteps; ++s) total += length(s);
      std::printf("; sort %.2f %s\n", total, bad ? "MISMATCH" : "sorted");
      CHECK(cudaFree(in));
      CHECK(cudaFree(out));
      CHECK(cudaFree(ticks));
    }
  }
  return 0;
}
