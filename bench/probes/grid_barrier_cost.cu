// Probe: what one grid barrier (common/grid_barrier.cuh) costs over a cooperative grid, and
// whether a cooperative launch may also carry programmatic stream serialization (overlap with
// the kernel before it).
//
//   nvcc -O3 -arch=sm_90a -std=c++17 -Itemplates -o grid_barrier_cost bench/probes/grid_barrier_cost.cu
#include <cuda_runtime.h>

#include <cstdio>

#include "common/grid_barrier.cuh"

__global__ void barriers(int n, int* out) {
  for (int i = 0; i < n; ++i) tka::grid_barrier();
  if (threadIdx.x == 0 && blockIdx.x == 0) out[0] = n;
}

__global__ void busy(int* out) {
  if (threadIdx.x == 0) out[blockIdx.x] = blockIdx.x;
}

int main() {
  int* out;
  cudaMalloc(&out, 4096 * 4);
  cudaStream_t st;
  cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking);
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  for (int ctas : {132, 264}) {
    for (int n : {0, 1, 5, 10, 20}) {
      cudaLaunchConfig_t c{};
      c.gridDim = dim3(ctas), c.blockDim = dim3(512), c.stream = st;
      cudaLaunchAttribute at[2];
      at[0].id = cudaLaunchAttributeCooperative, at[0].val.cooperative = 1;
      c.attrs = at, c.numAttrs = 1;
      for (int i = 0; i < 5; ++i) cudaLaunchKernelEx(&c, barriers, n, out);
      cudaEventRecord(a, st);
      for (int i = 0; i < 100; ++i) cudaLaunchKernelEx(&c, barriers, n, out);
      cudaEventRecord(b, st);
      cudaEventSynchronize(b);
      float ms;
      cudaEventElapsedTime(&ms, a, b);
      std::printf("%d CTAs x 512 threads, %2d barriers: %6.2f us a launch (%s)\n", ctas, n, ms * 10,
                  cudaGetErrorString(cudaGetLastError()));
    }
  }
  // Cooperative and programmatic serialization together, after another kernel.
  cudaLaunchConfig_t c{};
  c.gridDim = dim3(264), c.blockDim = dim3(512), c.stream = st;
  cudaLaunchAttribute at[2];
  at[0].id = cudaLaunchAttributeCooperative, at[0].val.cooperative = 1;
  at[1].id = cudaLaunchAttributeProgrammaticStreamSerialization, at[1].val.programmaticStreamSerializationAllowed = 1;
  c.attrs = at, c.numAttrs = 2;
  busy<<<1024, 128, 0, st>>>(out);
  const cudaError_t e = cudaLaunchKernelEx(&c, barriers, 5, out);
  const cudaError_t s = cudaStreamSynchronize(st);
  std::printf("cooperative + programmatic serialization: launch %s, run %s\n", cudaGetErrorString(e),
              cudaGetErrorString(s));
  return 0;
}
