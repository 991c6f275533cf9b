// A row of 32-bit or 16-bit values streamed through shared memory by cp.async, kStages steps in
// flight, so that a pass over a long row is not one load latency per step (a CTA with one 16-byte
// load in flight per thread reads ~8 GB/s; the selection of one row per CTA needs several times
// that). Each thread copies and later reads only its own slots: no barrier guards the ring. (One
// bulk copy a step by one thread streamed no faster: bench/NOTES.md, TKA_STREAM_BULK.)
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

namespace tka {

// The ring's layout, the row, and how a slot's bytes become floats.
template <int kThreads, int kStages, class Elem>
struct RowStreamLayout {
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
  // Whether step s runs past n (its elements there must not be used).
  __device__ __forceinline__ bool partial(int s) const { return (s + 1) * kStep > n; }
  // This thread's slot of step s (its chunk c at [c * kThreads]).
  __device__ __forceinline__ uint4* slot(int s) const {
    return ring + (s % kStages) * kChunks * kThreads + threadIdx.x;
  }

  // Step s's values in this thread's slot as floats: v[c * kChunkElems + e] is element
  // index(s, c, e) (0 past n, where the copy zero-filled).
  __device__ __forceinline__ void slot_floats(int s, float (&v)[kPer]) const {
    const uint4* at = slot(s);
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const uint4 x = at[c * kThreads];
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
  }
};

template <int kThreads, int kStages, class Elem>
struct RowStream : RowStreamLayout<kThreads, kStages, Elem> {
  typedef RowStreamLayout<kThreads, kStages, Elem> L;
  using L::kChunkElems;
  using L::kChunks;
  using L::kPer;
  using L::kStep;

  // Copies this thread's part of step s (if s exists) into its slot; always one commit group.
  // Only the last step can be partial: the others copy whole chunks without working out sizes.
  __device__ __forceinline__ void issue(int s) {
    if (s < this->steps()) {
      uint4* slot = this->slot(s);
      if ((s + 1) * kStep <= this->n) {
#pragma unroll
        for (int c = 0; c < kChunks; ++c) cp_async16(slot + c * kThreads, this->row + this->index(s, c, 0), true);
      } else {
#pragma unroll
        for (int c = 0; c < kChunks; ++c) {
          const int e = this->index(s, c, 0);
          const int bytes = max(0, min(kChunkElems, this->n - e)) * static_cast<int>(sizeof(Elem));
          cp_async16_partial(slot + c * kThreads, bytes > 0 ? this->row + e : this->row, bytes);
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

  // Keeps kStages - 1 steps in flight past s, waits for step s and returns its values as floats
  // (slot_floats).
  __device__ __forceinline__ void next(int s, float (&v)[kPer]) {
    issue(s + kStages - 1);
    cp_async_wait<kStages - 1>();
    this->slot_floats(s, v);
  }

  // After the last step: nothing left in flight, so the ring may be reused.
  __device__ __forceinline__ void finish() { cp_async_wait<0>(); }
};

}  // namespace tka
