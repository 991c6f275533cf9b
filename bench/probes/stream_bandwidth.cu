// Probe: how fast one CTA streams a contiguous slice through shared memory (common/row_stream.cuh,
// the selection's candidates pass), 3 and 7 steps ahead, for 32 to 132 CTAs. The consumer is light
// (a compare and an add an element), so the stream alone sets the pace; the selection's own pass
// reads ~21 GB/s a CTA at 64 CTAs, so what lies between is its per-key work. Slices rotate over
// 1 GiB, so nothing is read from L2 twice. First, the counts of slices with a partial last step,
// streamed twice, are checked against the host's.
//
//   nvcc -O3 -arch=sm_90a -std=c++17 -Itemplates -o stream_bandwidth bench/probes/stream_bandwidth.cu
//   ./stream_bandwidth               # GB/s a CTA and in all; exits 1 when a count is wrong
//
// Measured (H100, bench/results/stream-probe-h100-2026-12-06.md, with a variant since removed that
// copied each step by one bulk copy: 28-31 GB/s a CTA at 32-64 CTAs, no faster than these).
#include <cuda_runtime.h>

#include <cstdio>
#include <vector>

#include "common/row_stream.cuh"
#include "cuda_check.h"

constexpr int kThreads = 512;
constexpr int kSlice = 65536;  // floats a CTA: a cluster CTA's share of a 128K row at 32 rows
constexpr float kThreshold = 0.5f;

// Each CTA streams `len` floats of its slice, `passes` times over (a second stream after the
// first's finish(), as the selection's retry does); counts the elements >= kThreshold.
template <int kStages>
__global__ void __launch_bounds__(kThreads) stream_slices(const float* in, int len, int passes, int* counts) {
  extern __shared__ uint4 ring[];
  int count = 0;
  for (int p = 0; p < passes; ++p) {
    tka::RowStream<kThreads, kStages, float> stream{ring, in + static_cast<long long>(blockIdx.x) * kSlice, len};
    stream.start();
    for (int s = 0; s < stream.steps(); ++s) {
      float v[8];
      stream.next(s, v);
#pragma unroll
      for (int e = 0; e < 8; ++e) count += v[e] >= kThreshold;
    }
    stream.finish();
  }
  atomicAdd(&counts[blockIdx.x], count);
}

template <int kStages>
void prepare(decltype(stream_slices<kStages>) kernel) {
  CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             tka::RowStream<kThreads, kStages, float>::kRingBytes));
}

// Whether every CTA's count of a slice of `len`, streamed twice, is twice the host's.
template <int kStages>
bool counts_right(const float* data, const std::vector<float>& host, int len, int ctas, int* counts) {
  prepare<kStages>(stream_slices<kStages>);
  CHECK(cudaMemset(counts, 0, ctas * sizeof(int)));
  stream_slices<kStages><<<ctas, kThreads, tka::RowStream<kThreads, kStages, float>::kRingBytes>>>(data, len, 2, counts);
  CHECK(cudaDeviceSynchronize());
  std::vector<int> got(ctas);
  CHECK(cudaMemcpy(got.data(), counts, ctas * sizeof(int), cudaMemcpyDeviceToHost));
  for (int c = 0; c < ctas; ++c) {
    int want = 0;
    for (int i = 0; i < len; ++i) want += host[static_cast<size_t>(c) * kSlice + i] >= kThreshold;
    if (got[c] != 2 * want) return false;
  }
  return true;
}

template <int kStages>
void run(const float* data, long long floats, int ctas, int* counts) {
  constexpr int kRingBytes = tka::RowStream<kThreads, kStages, float>::kRingBytes;
  prepare<kStages>(stream_slices<kStages>);
  const long long per_launch = static_cast<long long>(ctas) * kSlice;
  const int slots = static_cast<int>(floats / per_launch);
  constexpr int kReps = 40;
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  // Warm-up on the last slot, which the timed launches reach last (if at all): none reads from L2.
  stream_slices<kStages><<<ctas, kThreads, kRingBytes>>>(data + (slots - 1) * per_launch, kSlice, 1, counts);
  CHECK(cudaEventRecord(a));
  for (int r = 0; r < kReps; ++r)
    stream_slices<kStages><<<ctas, kThreads, kRingBytes>>>(data + (r % slots) * per_launch, kSlice, 1, counts);
  CHECK(cudaEventRecord(b));
  CHECK(cudaEventSynchronize(b));
  CHECK(cudaGetLastError());
  float ms = 0;
  CHECK(cudaEventElapsedTime(&ms, a, b));
  const double us = ms * 1e3 / kReps, bytes = kSlice * 4.0;
  std::printf("%5d %2d ahead | %7.2f us | %6.1f GB/s a CTA | %7.1f GB/s in all\n", ctas, kStages - 1, us,
              bytes / us * 1e-3, bytes * ctas / us * 1e-3);
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
  for (int len : {kSlice, kSlice - 100, 1000}) {
    const bool right = counts_right<4>(data, host, len, 64, counts) && counts_right<8>(data, host, len, 64, counts);
    std::printf("slices of %d, streamed twice: counts %s\n", len, right ? "right" : "WRONG");
    bad += !right;
  }
  for (int ctas : {32, 64, 132}) {
    run<4>(data, floats, ctas, counts);
    run<8>(data, floats, ctas, counts);
  }
  return bad != 0;
}
