// Thread-block clusters (sm_90+): the CTAs of a cluster run at once on one GPC and read each
// other's shared memory (distributed shared memory). The cluster's size is a launch attribute, so
// one compiled kernel serves every size. Below sm_90 these compile to nothing: the host launches
// clustered kernels only on devices that have clusters.
#pragma once
#include "common/types.cuh"

namespace tka {

__device__ __forceinline__ int cluster_rank() {
#if __CUDA_ARCH__ >= 900
  u32 r;
  asm("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
  return static_cast<int>(r);
#else
  return 0;
#endif
}

__device__ __forceinline__ int cluster_size() {
#if __CUDA_ARCH__ >= 900
  u32 r;
  asm("mov.u32 %0, %%cluster_nctarank;" : "=r"(r));
  return static_cast<int>(r);
#else
  return 1;
#endif
}

// Every thread of every CTA of the cluster arrives before any goes on; shared-memory writes before
// it are visible to the cluster after it (release / acquire).
__device__ __forceinline__ void cluster_sync() {
#if __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
#else
  __syncthreads();
#endif
}

// The address of the same shared-memory object in CTA `rank` of the cluster (a generic pointer:
// ordinary loads read it). Not volatile: a pure mapping, so loads through it can be batched.
template <class T>
__device__ __forceinline__ T* cluster_map(T* p, int rank) {
#if __CUDA_ARCH__ >= 900
  unsigned long long out;
  asm("mapa.u64 %0, %1, %2;" : "=l"(out) : "l"(reinterpret_cast<unsigned long long>(p)), "r"(rank));
  return reinterpret_cast<T*>(out);
#else
  return p;
#endif
}

// The largest cluster the selection kernels use (the portable limit).
constexpr int kMaxCluster = 8;

}  // namespace tka
