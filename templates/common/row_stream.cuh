// A row of 32-bit or 16-bit values streamed through shared memory by cp.async, kStages steps in
// flight, so that a pass over a long row is not one load latency per step (a CTA with one 16-byte
// load in flight per thread reads ~8 GB/s; the selection of one row per CTA needs several times
// that). Each thread copies and later reads only its own slots: no barrier guards the ring (the
// bulk-copy variant at the end, TKA_STREAM_BULK, has barriers instead).
// Values come back as floats (16-bit ones converted), so a pass can compare each against a
// threshold with one instruction.
//
// Step s covers elements [s * kStep, (s + 1) * kStep) in kChunks chunks of 16 bytes per thread;
// chunk c of thread t holds elements index(s, c, e) = s * kStep + (c * kThreads + t) * kChunkElems
// + e, so that a warp's copies of one chunk are 512 contiguous bytes. Elements at or past n are
// not read (zero-filled in shared memory).
#pragma once
#include "common/memory.cuh"
#include "common/order_key.cuh"
#include "common/tma.cuh"

namespace tka {

// TKA_STREAM_BULK (sm_90+): each step is one bulk copy by one thread instead of 16-byte copies by
// every thread (RowStream<..., true> below; bench/NOTES.md).
#if defined(TKA_STREAM_BULK) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
constexpr bool kStreamBulk = true;
#else
constexpr bool kStreamBulk = false;
#endif

template <int kThreads, int kStages, class Elem, bool kBulk = kStreamBulk>
struct RowStream {
  static constexpr int kPer = 8;                            // elements per thread per step
  static constexpr int kChunks = kPer * sizeof(Elem) / 16;  // 16-byte copies per thread per step
  static constexpr int kChunkElems = 16 / sizeof(Elem);
  static constexpr int kStep = kPer * kThreads;
  static constexpr int kRingBytes = kStages * kChunks * kThreads * 16;
  static_assert(kStages >= 2, "one step in use, at least one in flight");

  uint4* ring;  // [kStages][kChunks][kThreads]: a warp's reads of one chunk are contiguous
  const Elem* row;
  int n;

  __device__ __forceinline__ int steps() const { return (n + kStep - 1) / kStep; }
  __device__ __forceinline__ int index(int s, int c, int e) const {
    return s * kStep + (c * kThreads + static_cast<int>(threadIdx.x)) * kChunkElems + e;
  }

  // Copies this thread's part of step s (if s exists) into its slot; always one commit group.
  // Only the last step can be partial: the others copy whole chunks without working out sizes.
  __device__ __forceinline__ void issue(int s) {
    if (s < steps()) {
      uint4* slot = ring + (s % kStages) * kChunks * kThreads + threadIdx.x;
      if ((s + 1) * kStep <= n) {
#pragma unroll
        for (int c = 0; c < kChunks; ++c) cp_async16(slot + c * kThreads, row + index(s, c, 0), true);
      } else {
#pragma unroll
        for (int c = 0; c < kChunks; ++c) {
          const int e = index(s, c, 0);
          const int bytes = max(0, min(kChunkElems, n - e)) * static_cast<int>(sizeof(Elem));
          cp_async16_partial(slot + c * kThreads, bytes > 0 ? row + e : row, bytes);
        }
      }
    }
    cp_async_commit();
  }

  // Starts the first kStages - 1 steps.
  __device__ __forceinline__ void start() {
#pragma unroll
    for (int s = 0; s < kStages - 1; ++s) issue(s);
  }

  // Keeps kStages - 1 steps in flight past s, waits for step s and returns its values as floats:
  // v[c * kChunkElems + e] is element index(s, c, e) (0 past n).
  __device__ __forceinline__ void next(int s, float (&v)[kPer]) {
    issue(s + kStages - 1);
    cp_async_wait<kStages - 1>();
    const uint4* slot = ring + (s % kStages) * kChunks * kThreads + threadIdx.x;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) to_floats(slot[c * kThreads], v, c);
  }

  // Whether step s runs past n (its elements there must not be used).
  __device__ __forceinline__ bool partial(int s) const { return (s + 1) * kStep > n; }

  // After the last step: nothing left in flight, so the ring may be reused.
  __device__ __forceinline__ void finish() { cp_async_wait<0>(); }

  // One 16-byte slot's elements as floats into v[kChunkElems * c ..] (the bulk stream's too).
  __device__ __forceinline__ static void to_floats(uint4 x, float (&v)[kPer], int c) {
    if constexpr (sizeof(Elem) == 4) {
      v[4 * c] = __uint_as_float(x.x), v[4 * c + 1] = __uint_as_float(x.y);
      v[4 * c + 2] = __uint_as_float(x.z), v[4 * c + 3] = __uint_as_float(x.w);
    } else {
      float f[8];
      unpack8(x, static_cast<Elem*>(nullptr), f);
#pragma unroll
      for (int e = 0; e < 8; ++e) v[8 * c + e] = f[e];
    }
  }
};

// The same stream with each step copied by the bulk-copy engine (sm_90+): the step's elements are
// contiguous in the row and, in the ring's layout above, in its slot too, so thread 0 copies a
// whole step with one instruction, and its bytes complete on the slot's `full` barrier. The
// per-thread copies above read ~22 GB/s a CTA with 3 or 5 steps ahead alike (bench/NOTES.md):
// whether the copy engine, whose requests are not the threads', reads more is what this measures.
// A slot is copied again only once every warp has read it (its `empty` barrier, one arrival a
// warp). The last step, when partial, is read from global memory by each thread directly. start()
// and finish() are called by every thread of the CTA, and between them the ring belongs to the
// stream.
template <int kThreads, int kStages, class Elem>
struct RowStream<kThreads, kStages, Elem, true> {
  static constexpr int kPer = 8;
  static constexpr int kChunks = kPer * sizeof(Elem) / 16;
  static constexpr int kChunkElems = 16 / sizeof(Elem);
  static constexpr int kStep = kPer * kThreads;
  static constexpr int kRingBytes = kStages * kChunks * kThreads * 16;
  static constexpr int kWarps = kThreads / 32;
  static_assert(kStages >= 2, "one step in use, at least one in flight");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
  static_assert(sizeof(Elem) == 0, "bulk copies need sm_90: the helpers compile to nothing below it");
#endif

  uint4* ring;
  const Elem* row;
  int n;

  __device__ __forceinline__ int steps() const { return (n + kStep - 1) / kStep; }
  __device__ __forceinline__ int index(int s, int c, int e) const {
    return s * kStep + (c * kThreads + static_cast<int>(threadIdx.x)) * kChunkElems + e;
  }
  __device__ __forceinline__ bool partial(int s) const { return (s + 1) * kStep > n; }

  // Barriers: full[0, kStages), then empty[0, kStages); one set for every stream of the kernel.
  __device__ __forceinline__ static u64* barriers() {
    __shared__ u64 bars[2 * kStages];
    return bars;
  }

  // Thread 0: step s (if it exists and is whole) into its slot.
  __device__ __forceinline__ void issue(int s) const {
    if (s < steps() && !partial(s)) {
      u64* full = barriers() + s % kStages;
      constexpr u32 kBytes = kStep * sizeof(Elem);
      mbarrier_arrive_expect_tx(full, kBytes);
      bulk_copy_to_shared(ring + (s % kStages) * kChunks * kThreads, row + static_cast<long long>(s) * kStep, kBytes,
                          full);
    }
  }

  __device__ __forceinline__ void start() {
    fence_proxy_async_shared();  // whatever the threads did with the ring before, before the copies
    if (threadIdx.x == 0) {
      for (int i = 0; i < kStages; ++i)
        mbarrier_init(barriers() + i, 1), mbarrier_init(barriers() + kStages + i, kWarps);
      fence_mbarrier_init();
    }
    __syncthreads();
    if (threadIdx.x == 0)
      for (int s = 0; s < kStages - 1; ++s) issue(s);
  }

  __device__ __forceinline__ void next(int s, float (&v)[kPer]) {
    const int ahead = s + kStages - 1;
    if (threadIdx.x == 0 && ahead < steps() && !partial(ahead)) {
      // Step `ahead` reuses step s - 1's slot: once every warp has read it.
      if (s > 0) mbarrier_wait_parity(barriers() + kStages + (s - 1) % kStages, ((s - 1) / kStages) & 1);
      issue(ahead);
    }
    if (partial(s)) {
#pragma unroll
      for (int c = 0; c < kChunks; ++c)
#pragma unroll
        for (int e = 0; e < kChunkElems; ++e) {
          const int i = index(s, c, e);
          v[c * kChunkElems + e] = i < n ? to_float(row[i]) : 0.0f;
        }
      return;
    }
    mbarrier_wait_parity(barriers() + s % kStages, (s / kStages) & 1);
    const uint4* slot = ring + (s % kStages) * kChunks * kThreads + threadIdx.x;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) to_floats(slot[c * kThreads], v, c);
    __syncwarp();
    if ((threadIdx.x & 31) == 0) mbarrier_arrive(barriers() + kStages + s % kStages);
  }

  // Every step was waited for: no copy is in flight. The barriers are released for the next
  // stream's start(), and the ring for anything.
  __device__ __forceinline__ void finish() {
    __syncthreads();
    if (threadIdx.x == 0)
      for (int i = 0; i < 2 * kStages; ++i) mbarrier_inval(barriers() + i);
  }

 private:
  __device__ __forceinline__ static void to_floats(uint4 x, float (&v)[kPer], int c) {
    RowStream<kThreads, kStages, Elem, false>::to_floats(x, v, c);
  }
};

}  // namespace tka
