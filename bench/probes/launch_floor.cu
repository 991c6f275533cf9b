// Probe: what a graph replay of one kernel shaped like the selection's cluster launch costs when
// the kernel does (almost) nothing: CUDA events around each replay, median of 30, two ways: paced
// by the host (each replay launched once the one before has finished: the GPU waits for the
// launch) and queued (every replay enqueued behind a GPU spin before the first runs, as
// bench/common.py's time_calls does since 2026-12-07). Beside each: the kernel's own span
// (globaltimer, first CTA start to last CTA end), so that "event time - span" is the launch and
// completion the kernel cannot shorten. Rows of 32 x 128K take ~28.5 us under graph replay.
//
//   nvcc -O3 -arch=sm_90a -std=c++17 -o launch_floor bench/probes/launch_floor.cu
//   ./launch_floor
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "cuda_check.h"

__device__ __forceinline__ unsigned long long now_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__device__ __forceinline__ void cluster_barrier() {
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}

// span[0]: the earliest CTA start, span[1]: the latest CTA end, span[2]: the replay's number.
// `loads`: dependent global loads by thread 0 before the end (round trips such as the selection's
// prologue makes: its row view, its sample), each from a line no replay read before (HBM, not L2).
__global__ void near_empty(unsigned long long* span, const int* data, int loads, bool clustered, int* sink) {
  const unsigned long long t0 = now_ns();
  if (clustered) cluster_barrier();
  const long long first = (static_cast<long long>(span[2]) * gridDim.x + blockIdx.x) * 8;
  long long at = 0;
  if (threadIdx.x == 0)
    for (int i = 0; i < loads; ++i) at = __ldcg(data + (first + i + at) * 1024);  // data is 0: 4 KB apart
  __syncthreads();
  if (clustered) cluster_barrier();
  if (threadIdx.x == 0) {
    if (at == -1) *sink = 1;  // keeps the loads
    atomicMin(&span[0], t0);
    atomicMax(&span[1], now_ns());
  }
}

__global__ void spin(unsigned long long ns) {
  const unsigned long long t0 = now_ns();
  while (now_ns() - t0 < ns) {
  }
}

struct Shape {
  const char* name;
  int ctas, threads, cluster, smem, loads;
};

int main() {
  unsigned long long* span;
  int *data, *sink;
  CHECK(cudaMalloc(&span, 24));
  CHECK(cudaMalloc(&sink, 4));
  const size_t words = size_t{1} << 26;  // 256 MB: 40 replays x 96 CTAs x 8 lines of 4 KB fit
  CHECK(cudaMalloc(&data, words * 4));
  CHECK(cudaMemset(data, 0, words * 4));  // every load reads 0: the next address is the CTA's own
  CHECK(cudaFuncSetAttribute(near_empty, cudaFuncAttributeMaxDynamicSharedMemorySize, 120 << 10));
  cudaStream_t st;
  CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  constexpr int kReplays = 40, kWarmup = 10;
  cudaEvent_t a[kReplays], b[kReplays];
  for (int i = 0; i < kReplays; ++i) {
    CHECK(cudaEventCreate(&a[i]));
    CHECK(cudaEventCreate(&b[i]));
  }
  unsigned long long *init, *got;  // pinned: the copies stay asynchronous
  CHECK(cudaMallocHost(&init, 24));
  CHECK(cudaMallocHost(&got, 16));
  const Shape shapes[] = {
      {"1 CTA x 32", 1, 32, 0, 0, 0},
      {"96 CTAs x 512", 96, 512, 0, 0, 0},
      {"96 x 512, clusters of 3, 120 KB smem", 96, 512, 3, 120 << 10, 0},
      {"8 x 512, a cluster of 8, 120 KB smem", 8, 512, 8, 120 << 10, 0},
      {"96 x 512, clusters of 3, no dynamic smem", 96, 512, 3, 0, 0},
      {"96 x 512, 120 KB smem, no clusters", 96, 512, 0, 120 << 10, 0},
      {"96 x 512, clusters of 3, 120 KB, 2 loads", 96, 512, 3, 120 << 10, 2},
      {"96 x 512, clusters of 3, 120 KB, 4 loads", 96, 512, 3, 120 << 10, 4},
  };
  std::printf(
      "| launch | graph replay us, paced | graph replay us, queued | kernel span us | paced - span us | "
      "queued - span us |\n| --- | --- | --- | --- | --- | --- |\n");
  for (const Shape& s : shapes) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(s.ctas);
    cfg.blockDim = dim3(s.threads);
    cfg.dynamicSmemBytes = s.smem;
    cfg.stream = st;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = s.cluster > 0 ? s.cluster : 1;
    attr[0].val.clusterDim.y = attr[0].val.clusterDim.z = 1;
    cfg.attrs = attr;
    cfg.numAttrs = s.cluster > 0 ? 1 : 0;
    const bool clustered = s.cluster > 0;
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
    CHECK(cudaLaunchKernelEx(&cfg, near_empty, span, static_cast<const int*>(data), s.loads, clustered, sink));
    CHECK(cudaStreamEndCapture(st, &g));
    CHECK(cudaGraphInstantiate(&ge, g, 0));
    // Paced: the host waits for each replay (and its span) before it launches the next.
    std::vector<float> paced, queued;
    std::vector<double> spans;
    for (int i = 0; i < kReplays; ++i) {
      init[0] = ~0ull, init[1] = 0ull, init[2] = static_cast<unsigned long long>(i);
      CHECK(cudaMemcpyAsync(span, init, 24, cudaMemcpyHostToDevice, st));
      CHECK(cudaEventRecord(a[0], st));
      CHECK(cudaGraphLaunch(ge, st));
      CHECK(cudaEventRecord(b[0], st));
      CHECK(cudaMemcpyAsync(got, span, 16, cudaMemcpyDeviceToHost, st));
      CHECK(cudaStreamSynchronize(st));
      float ms = 0;
      CHECK(cudaEventElapsedTime(&ms, a[0], b[0]));
      if (i >= kWarmup) paced.push_back(1000 * ms), spans.push_back((got[1] - got[0]) / 1000.0);
    }
    // Queued: every replay in the stream before the first one starts (a 20 ms spin ahead of them).
    // The span slots are not reset here: the loads rows read the lines of the last paced replay
    // (L2 hits), so only the rows without loads compare the two ways like for like.
    spin<<<1, 1, 0, st>>>(20000000ull);
    CHECK(cudaGetLastError());
    for (int i = 0; i < kReplays; ++i) {
      CHECK(cudaEventRecord(a[i], st));
      CHECK(cudaGraphLaunch(ge, st));
      CHECK(cudaEventRecord(b[i], st));
    }
    const bool ahead = cudaEventQuery(a[0]) == cudaErrorNotReady;
    CHECK(cudaStreamSynchronize(st));
    for (int i = kWarmup; i < kReplays; ++i) {
      float ms = 0;
      CHECK(cudaEventElapsedTime(&ms, a[i], b[i]));
      queued.push_back(1000 * ms);
    }
    const auto median = [](auto v) {
      std::sort(v.begin(), v.end());
      return static_cast<double>(v[v.size() / 2]);
    };
    const double p = median(paced), q = median(queued), sp = median(spans);
    std::printf("| %s | %.1f | %.1f%s | %.1f | %.1f | %.1f |\n", s.name, p, q, ahead ? "" : " (host behind)", sp,
                p - sp, q - sp);
    CHECK(cudaGraphExecDestroy(ge));
    CHECK(cudaGraphDestroy(g));
  }
  return 0;
}
