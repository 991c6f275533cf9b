// Probe: how fast the decode score pass's reads can go, by the order in which its CTAs take the
// key tiles. decode_score gives each CTA one contiguous run of a head's keys (B = 1, N = 32K: 396
// CTAs of 128 threads, 704 keys = 176 KB each, 3 resident an SM) and reads 67 MB at ~2.1 TB/s
// (128K: ~2.4). Here the same CTA shape (tiles of 64 rows x 256 B by 16-byte cp.async, 3 stages,
// 57 KB of shared memory, a light consumer) reads the same bytes two ways:
//   sliced       CTA c reads tiles [c * t, (c + 1) * t): what decode_score does;
//   interleaved  CTA c reads tiles c, c + C, c + 2C, ...: at any moment the CTAs read neighbouring
//                tiles, as a grid-stride copy does;
// and, for the ceiling, a grid-stride read of 16-byte loads (4 in flight a thread, 1024 threads).
// Bytes rotate over 1 GiB, so nothing is read from L2. Times: CUDA events around each launch
// (launch included), median of 20.
//
//   nvcc -O3 -arch=sm_90a -std=c++17 -o read_pattern bench/probes/read_pattern.cu
//   ./read_pattern
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "cuda_check.h"

constexpr int kThreads = 128;
constexpr int kRows = 64, kRowBytes = 256, kPitch = kRowBytes + 16;  // a decode_score key tile
constexpr int kTileBytes = kRows * kRowBytes;
constexpr int kStages = 3;
constexpr int kSmem = (kStages + 1) * kRows * kPitch;  // the ring, plus the query tile's bytes rounded up

__device__ __forceinline__ unsigned smem_addr(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void load_tile(unsigned char* dst, const unsigned char* src) {
  constexpr int kVecs = kRowBytes / 16, kPer = kRows * kVecs / kThreads;
  const int r0 = threadIdx.x / kVecs, c = threadIdx.x % kVecs;
#pragma unroll
  for (int u = 0; u < kPer; ++u) {
    const int r = r0 + u * (kThreads / kVecs);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_addr(dst + r * kPitch + c * 16)),
                 "l"(src + r * kRowBytes + c * 16)
                 : "memory");
  }
}

// Tiles of this CTA: tile_of(i) for i in [0, count).
__global__ void __launch_bounds__(kThreads) read_tiles(const unsigned char* base, long long tiles, int per_cta,
                                                        bool interleaved, unsigned* sink) {
  extern __shared__ __align__(16) unsigned char ring[];
  const long long ctas = gridDim.x;
  const auto tile_of = [&](int i) -> long long {
    return interleaved ? blockIdx.x + i * ctas : static_cast<long long>(blockIdx.x) * per_cta + i;
  };
  const long long left = interleaved ? (tiles - blockIdx.x + ctas - 1) / ctas : tiles - blockIdx.x * per_cta;
  const int count = static_cast<int>(max(0LL, min(left, static_cast<long long>(per_cta))));
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < count) load_tile(ring + s * kRows * kPitch, base + tile_of(s) * kTileBytes);
    asm volatile("cp.async.commit_group;\n" ::: "memory");
  }
  unsigned acc = 0;
  for (int it = 0; it < count; ++it) {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(kStages - 2) : "memory");
    __syncthreads();
    const int ahead = it + kStages - 1;
    if (ahead < count) load_tile(ring + (ahead % kStages) * kRows * kPitch, base + tile_of(ahead) * kTileBytes);
    asm volatile("cp.async.commit_group;\n" ::: "memory");
    const uint4 v = *reinterpret_cast<const uint4*>(ring + (it % kStages) * kRows * kPitch +
                                                     (threadIdx.x % kRows) * kPitch + (threadIdx.x / kRows) * 16);
    acc += v.x ^ v.y ^ v.z ^ v.w;
  }
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
  if (acc == 0x12345678u) *sink = acc;
}

__global__ void __launch_bounds__(1024) read_grid_stride(const uint4* base, long long vecs, unsigned* sink) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  unsigned acc = 0;
  for (long long i = blockIdx.x * 1024LL + threadIdx.x; i < vecs; i += 4 * stride) {
    uint4 v[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) v[u] = i + u * stride < vecs ? __ldcs(base + i + u * stride) : make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int u = 0; u < 4; ++u) acc += v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  if (acc == 0x12345678u) *sink = acc;
}

template <class Launch>
double median_us(Launch launch, int slots) {
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  std::vector<float> t;
  for (int r = 0; r < 24; ++r) {
    CHECK(cudaEventRecord(a));
    launch(r % slots);
    CHECK(cudaEventRecord(b));
    CHECK(cudaEventSynchronize(b));
    CHECK(cudaGetLastError());
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, a, b));
    if (r >= 4) t.push_back(ms * 1e3f);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

int main() {
  const long long total = 1LL << 30;
  unsigned char* data;
  unsigned* sink;
  CHECK(cudaMalloc(&data, total));
  CHECK(cudaMalloc(&sink, 4));
  CHECK(cudaMemset(data, 1, total));
  CHECK(cudaFuncSetAttribute(read_tiles, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
  int per_sm = 0, sms = 0;
  CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, read_tiles, kThreads, kSmem));
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  std::printf("%d SMs, %d CTAs of %d threads an SM (%d B of shared memory)\n\n", sms, per_sm, kThreads, kSmem);
  std::printf("| bytes | reader | CTAs | us | GB/s |\n| --- | --- | --- | --- | --- |\n");
  for (long long bytes : {64LL << 20, 256LL << 20}) {
    const int slots = static_cast<int>(total / bytes);
    const long long tiles = bytes / kTileBytes;
    for (int waves : {1, 4}) {
      const int ctas = waves * per_sm * sms;
      const int per_cta = static_cast<int>((tiles + ctas - 1) / ctas);
      for (bool interleaved : {false, true}) {
        const double us = median_us(
            [&](int slot) {
              read_tiles<<<ctas, kThreads, kSmem>>>(data + slot * bytes, tiles, per_cta, interleaved, sink);
            },
            slots);
        std::printf("| %lld MB | %s, %d wave%s | %d | %.1f | %.0f |\n", bytes >> 20,
                    interleaved ? "interleaved tiles" : "sliced tiles", waves, waves > 1 ? "s" : "", ctas, us,
                    bytes / us * 1e-3);
      }
    }
    const int ctas = 2 * sms;
    const double us = median_us(
        [&](int slot) {
          read_grid_stride<<<ctas, 1024>>>(reinterpret_cast<const uint4*>(data + slot * bytes), bytes / 16, sink);
        },
        slots);
    std::printf("| %lld MB | grid-stride 16-byte loads | %d | %.1f | %.0f |\n", bytes >> 20, ctas, us, bytes / us * 1e-3);
  }
  return 0;
}
