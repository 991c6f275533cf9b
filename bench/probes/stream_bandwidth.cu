// Probe: how fast one CTA streams a contiguous slice through shared memory (common/row_stream.cuh,
// the selection's candidates pass), with 16-byte copies by every thread (RowStream, the default)
// or one bulk copy a step by one thread (RowStream<..., true>, TKA_STREAM_BULK), at 3 and 7 steps
// ahead, for 32 to 132 CTAs. The consumer is light (a compare and an add an element), so the
// stream alone sets the pace. Slices rotate over 1 GiB, so nothing is read from L2 twice. First,
// both variants count the same elements of slices with a partial last step, streamed twice.
//
//   nvcc -O3 -arch=sm_90a -std=c++17 -Itemplates -o stream_bandwidth bench/probes/stream_bandwidth.cu
//   ./stream_bandwidth               # GB/s a CTA and in all; exits 1 when the variants disagree
#include <cuda_runtime.h>

#include <cstdio>
#include <vector>

#include "common/row_stream.cuh"
#include "cuda_check.h"

constexpr int kThreads = 512;
constexpr int kSlice = 65536;  // floats a CTA: a cluster CTA's share of a 128K row at 32 rows

// Each CTA streams `len` floats of its slice, `passes` times over (a second stream after the
// first's finish(), as the selection's retry does); counts the elements >= t.
template <bool kBulk, int kStages>
__global__ void __launch_bounds__(kThreads) stream_slices(const float* in, int len, int passes, float t, int* counts) {
  extern __shared__ uint4 ring[];
  int count = 0;
  for (int p = 0; p < passes; ++p) {
    tka::RowStream<kThreads, kStages, float, kBulk> stream{ring, in + static_cast<long long>(blockIdx.x) * kSlice,
                                                           len};
    stream.start();
    for (int s = 0; s < stream.steps(); ++s) {
      float v[8];
      stream.next(s, v);
#pragma unroll
      for (int e = 0; e < 8; ++e) count += v[e] >= t;
    }
    stream.finish();
  }
  atomicAdd(&counts[blockIdx.x], count);
}

// Every CTA's count for a slice of `len` (a partial last step when not a multiple of a step),
// streamed twice, without timing: the same from both variants.
template <bool kBulk, int kStages>
std::vector<int> counts_of(const float* data, int len, int ctas, int* counts) {
  using Stream = tka::RowStream<kThreads, kStages, float, kBulk>;
  auto kernel = stream_slices<kBulk, kStages>;
  CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Stream::kRingBytes));
  CHECK(cudaMemset(counts, 0, ctas * sizeof(int)));
  kernel<<<ctas, kThreads, Stream::kRingBytes>>>(data, len, 2, 0.5f, counts);
  CHECK(cudaDeviceSynchronize());
  std::vector<int> host(ctas);
  CHECK(cudaMemcpy(host.data(), counts, ctas * sizeof(int), cudaMemcpyDeviceToHost));
  return host;
}

template <bool kBulk, int kStages>
long long run(const float* data, long long floats, int ctas, int* counts, const char* name) {
  using Stream = tka::RowStream<kThreads, kStages, float, kBulk>;
  auto kernel = stream_slices<kBulk, kStages>;
  CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Stream::kRingBytes));
  const long long per_launch = static_cast<long long>(ctas) * kSlice;
  const int slots = static_cast<int>(floats / per_launch);
  constexpr int kReps = 40;
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  // Warm-up on the last slot, which the timed launches reach last (if at all): none reads from L2.
  kernel<<<ctas, kThreads, Stream::kRingBytes>>>(data + (slots - 1) * per_launch, kSlice, 1, 0.5f, counts);
  CHECK(cudaMemset(counts, 0, ctas * sizeof(int)));
  CHECK(cudaEventRecord(a));
  for (int r = 0; r < kReps; ++r)
    kernel<<<ctas, kThreads, Stream::kRingBytes>>>(data + (r % slots) * per_launch, kSlice, 1, 0.5f, counts);
  CHECK(cudaEventRecord(b));
  CHECK(cudaEventSynchronize(b));
  CHECK(cudaGetLastError());
  float ms = 0;
  CHECK(cudaEventElapsedTime(&ms, a, b));
  const double us = ms * 1e3 / kReps, bytes = kSlice * 4.0;
  std::printf("%5d %-10s %2d ahead | %7.2f us | %6.1f GB/s a CTA | %7.1f GB/s in all\n", ctas, name, kStages - 1, us,
              bytes / us * 1e-3, bytes * ctas / us * 1e-3);
  std::vector<int> host(ctas);
  CHECK(cudaMemcpy(host.data(), counts, ctas * sizeof(int), cudaMemcpyDeviceToHost));
  long long total = 0;
  for (int c : host) total += c;
  return total;
}

int main() {
  const long long floats = (1LL << 30) / 4;
  float* data;
  int* counts;
  CHECK(cudaMalloc(&data, floats * 4));
  CHECK(cudaMalloc(&counts, 132 * sizeof(int)));
  std::vector<float> host(floats);
  unsigned x = 1;
  for (float& f : host) x = x * 1664525u + 1013904223u, f = static_cast<float>(x >> 8) / 16777216.0f;
  CHECK(cudaMemcpy(data, host.data(), floats * 4, cudaMemcpyHostToDevice));
  int bad = 0;
  // A slice with a partial last step, streamed twice: the bulk stream's tail and its barriers'
  // second start.
  for (int len : {kSlice, kSlice - 100, 1000}) {
    const std::vector<int> base = counts_of<false, 4>(data, len, 64, counts);
    const bool same = base == counts_of<true, 4>(data, len, 64, counts) && base == counts_of<true, 8>(data, len, 64, counts);
    std::printf("slices of %d, streamed twice: bulk and per-thread counts %s\n", len, same ? "agree" : "DIFFER");
    bad += !same;
  }
  for (int ctas : {32, 64, 132}) {
    const long long base3 = run<false, 4>(data, floats, ctas, counts, "per-thread");
    const long long base7 = run<false, 8>(data, floats, ctas, counts, "per-thread");
    const long long bulk3 = run<true, 4>(data, floats, ctas, counts, "bulk");
    const long long bulk7 = run<true, 8>(data, floats, ctas, counts, "bulk");
    if (base3 != bulk3 || base7 != bulk7 || base3 != base7) {
      std::printf("counts differ: %lld %lld %lld %lld\n", base3, base7, bulk3, bulk7);
      ++bad;
    }
  }
  return bad != 0;
}
