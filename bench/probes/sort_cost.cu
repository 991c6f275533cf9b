// Probe: where a CTA's sort of its selected entries goes (select.cuh's sort_words_desc: 2048 u64
// words at 512 threads, the sorted selection of k = 2048), step by step, and what sizes that are
// multiples of 128 but not powers of two cost (1152: a cluster CTA's share of a row's 2048 entries
// rounded up to a segment, TKA_SORT_SEGMENTS). Each CTA sorts its own random words in shared memory;
// thread 0 stamps the SM clock after each step, as the phase clocks do, and the program prints
// the median over CTAs of each step (µs at the nominal SM clock), and checks every CTA's output
// against std::sort.
//
//   nvcc -O3 -arch=sm_90a -std=c++17 -Itemplates -o sort_cost bench/probes/sort_cost.cu
//   ./sort_cost                       # sizes 2048, 1152, 1024 and 640 at 512 threads, 32 and 132 CTAs
//
// Measured (H100, bench/results/sort-probe-h100-2026-12-06.md, with two variants since removed:
// four words a thread sorted in registers, then merges from width 4, 10.7 µs for 2048 words;
// merge passes with each thread's outputs strided over the block, 2.4-2.9 µs a pass against 1.2-1.3).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <random>
#include <vector>

#include "cuda_check.h"
#include "select.cuh"

using tka::u64;

constexpr int kThreads = 512;
constexpr int kSteps = 8;  // clock stamps a CTA records

// Stamps: 0 start, 1 loaded, 2 register pass (segments of 128 sorted), 3.. each merge pass; the
// last slot is sort_words_desc as the kernels call it, on a fresh copy.
__global__ void __launch_bounds__(kThreads)
    sort_steps(const u64* in, u64* out, u64* out_whole, int size, long long* ticks) {
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
  for (int i = threadIdx.x; i < size; i += kThreads) words[i] = src[i];
  __syncthreads();
  const long long w0 = clock64();
  tka::sort_words_desc<kThreads>(words, size);
  const long long whole = clock64() - w0;
  for (int i = threadIdx.x; i < size; i += kThreads) out_whole[static_cast<long long>(blockIdx.x) * size + i] = words[i];
  if (threadIdx.x == 0) {
    for (int s = 0; s < kSteps - 1; ++s) ticks[blockIdx.x * kSteps + s] = s < step ? t[s] : t[step - 1];
    ticks[blockIdx.x * kSteps + kSteps - 1] = whole;
  }
}

struct Buffers {
  std::vector<u64> host;
  u64 *in = nullptr, *out = nullptr, *out_whole = nullptr;
  long long* ticks = nullptr;
  int ctas, size;
};

// CTAs whose words in `sorted` (device) are not b.host's, each CTA's sorted descending.
int unsorted_ctas(const Buffers& b, const u64* sorted) {
  std::vector<u64> got(b.host.size());
  CHECK(cudaMemcpy(got.data(), sorted, got.size() * 8, cudaMemcpyDeviceToHost));
  int bad = 0;
  for (int c = 0; c < b.ctas; ++c) {
    const auto first = b.host.begin() + static_cast<long long>(c) * b.size;
    std::vector<u64> want(first, first + b.size);
    std::sort(want.begin(), want.end(), std::greater<u64>());
    bad += !std::equal(want.begin(), want.end(), got.begin() + static_cast<long long>(c) * b.size);
  }
  return bad;
}

// Runs the kernel three times and prints its steps' medians (µs) and whether every CTA sorted (the
// steps and sort_words_desc alike); returns the CTAs that did not.
int report(const Buffers& b, double us_per_tick) {
  for (int rep = 0; rep < 3; ++rep)
    sort_steps<<<b.ctas, kThreads, b.size * 8>>>(b.in, b.out, b.out_whole, b.size, b.ticks);
  CHECK(cudaDeviceSynchronize());
  std::vector<long long> t(static_cast<size_t>(b.ctas) * kSteps);
  CHECK(cudaMemcpy(t.data(), b.ticks, t.size() * 8, cudaMemcpyDeviceToHost));
  const int bad = unsorted_ctas(b, b.out) + unsorted_ctas(b, b.out_whole);
  auto median = [&](int s) {  // step s's length; the last slot holds a length already
    std::vector<double> v;
    for (int c = 0; c < b.ctas; ++c) {
      const long long* r = &t[static_cast<size_t>(c) * kSteps];
      v.push_back((s == kSteps - 1 ? r[s] : r[s] - r[s - 1]) * us_per_tick);
    }
    std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
    return v[v.size() / 2];
  };
  double sort = 0;
  std::printf("%6d %5d | %5.2f %9.2f |", b.size, b.ctas, median(1), median(2));
  for (int s = 2; s < kSteps - 1; ++s) sort += median(s);
  for (int s = 3; s < kSteps - 1; ++s) std::printf(" %5.2f", median(s));
  std::printf(" | %5.2f", sort);
  std::printf(" | %5.2f", median(kSteps - 1));
  std::printf(" %s\n", bad ? "MISMATCH" : "sorted");
  return bad;
}

int main() {
  int clock_khz = 0;
  CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0));
  const double us_per_tick = 1e3 / clock_khz;
  std::printf("SM clock %.0f MHz (nominal); medians over CTAs, us\n", clock_khz / 1e3);
  std::printf("%6s %5s | %5s %9s | %-23s | %5s | %s\n", "size", "CTAs", "load", "registers", "merge passes", "steps",
              "sort_words_desc");
  std::mt19937_64 rng(7);
  int bad = 0;
  for (int size : {2048, 1152, 1024, 640}) {
    for (int ctas : {32, 132}) {
      Buffers b;
      b.ctas = ctas, b.size = size;
      b.host.resize(static_cast<size_t>(ctas) * size);
      for (u64& w : b.host) w = rng() % 4 == 0 ? 0 : rng();  // repeats of zero, as the padding has
      CHECK(cudaMalloc(&b.in, b.host.size() * 8));
      CHECK(cudaMalloc(&b.out, b.host.size() * 8));
      CHECK(cudaMalloc(&b.out_whole, b.host.size() * 8));
      CHECK(cudaMalloc(&b.ticks, ctas * kSteps * 8));
      CHECK(cudaMemcpy(b.in, b.host.data(), b.host.size() * 8, cudaMemcpyHostToDevice));
      bad += report(b, us_per_tick);
      CHECK(cudaFree(b.in));
      CHECK(cudaFree(b.out));
      CHECK(cudaFree(b.out_whole));
      CHECK(cudaFree(b.ticks));
    }
  }
  if (bad) std::printf("%d CTAs did not sort\n", bad);
  return bad != 0;
}
