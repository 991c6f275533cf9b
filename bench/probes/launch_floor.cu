// Probe: what a graph replay of one kernel shaped like the selection's cluster launch costs when
// the kernel does (almost) nothing, timed as bench/select.py times ours (CUDA events around each
// replay, median of 30). Beside each: the kernel's own span (globaltimer, first CTA start to last
// CTA end), so that "event time - span" is the launch and completion the kernel cannot shorten.
// Rows of 32 x 128K take 30.9 us under graph replay, of which the phase clocks see 25.0.
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
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  const Shape shapes[] = {
      {"1 CTA x 32", 1, 32, 0, 0, 0},
      {"96 CTAs x 512", 96, 512, 0, 0, 0},
      {"96 x 512, clusters of 3, 120 KB smem", 96, 512, 3, 120 << 10, 0},
      {"8 x 512, a cluster of 8, 120 KB smem", 8, 512, 8, 120 << 10, 0},
      {"96 x 512, clusters of 3, 120 KB, 2 loads", 96, 512, 3, 120 << 10, 2},
      {"96 x 512, clusters of 3, 120 KB, 4 loads", 96, 512, 3, 120 << 10, 4},
  };
  std::printf("| launch | graph replay us | kernel span us | replay - span us |\n| --- | --- | --- | --- |\n");
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
    std::vector<float> replay;
    std::vector<double> spans;
    for (int i = 0; i < 40; ++i) {
      const unsigned long long init[3] = {~0ull, 0ull, static_cast<unsigned long long>(i)};
      CHECK(cudaMemcpyAsync(span, init, 24, cudaMemcpyHostToDevice, st));
      CHECK(cudaEventRecord(a, st));
      CHECK(cudaGraphLaunch(ge, st));
      CHECK(cudaEventRecord(b, st));
      unsigned long long got[2];
      CHECK(cudaMemcpyAsync(got, span, 16, cudaMemcpyDeviceToHost, st));
      CHECK(cudaStreamSynchronize(st));
      float ms = 0;
      CHECK(cudaEventElapsedTime(&ms, a, b));
      if (i >= 10) replay.push_back(1000 * ms), spans.push_back((got[1] - got[0]) / 1000.0);
    }
    std::sort(replay.begin(), replay.end());
    std::sort(spans.begin(), spans.end());
    const double r = replay[replay.size() / 2], sp = spans[spans.size() / 2];
    std::printf("| %s | %.1f | %.1f | %.1f |\n", s.name, r, sp, r - sp);
    CHECK(cudaGraphExecDestroy(ge));
    CHECK(cudaGraphDestroy(g));
  }
  return 0;
}
