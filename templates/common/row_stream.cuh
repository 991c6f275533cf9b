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

template <int kThreads, int kStages, class Elem>
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
          // A test, not a clamp of n - e and a test of that (clamp_count in types.cuh says why).
          const int e = index(s, c, 0);
          if (e + kChunkElems <= n)
            cp_async16(slot + c * kThreads, row + e, true);
          else
            copy_partial(slot + c * kThreads, row + e, n - e);
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

  // Element e of this thread's step s (e need not be a constant), read again from its slot: valid
  // from next(s) until next(s + 1) reissues the slot.
  __device__ __forceinline__ float value(int s, int e) const {
    const uint4* slot = ring + (s % kStages) * kChunks * kThreads + threadIdx.x + (e / kChunkElems) * kThreads;
    return to_float(reinterpret_cast<const Elem*>(slot)[e % kChunkElems]);
  }

  // Whether step s runs past n (its elements there must not be used).
  __device__ __forceinline__ bool partial(int s) const { return (s + 1) * kStep > n; }

  // After the last step: nothing left in flight, so the ring may be reused.
  __device__ __forceinline__ void finish() { cp_async_wait<0>(); }

 private:
  // A chunk at or past the row's end: its `valid` elements (none when valid <= 0), zeros after
  // them, as 4-byte copies that read only the row (an odd last 16-bit element by a plain load and
  // store). (One cp.async of `valid` elements' bytes was reported by memcheck as a 16-byte read
  // past a bf16 row that ends its allocation: bench/NOTES.md.)
  __device__ __forceinline__ void copy_partial(uint4* dst, const Elem* src, int valid) const {
    constexpr int kPerWord = 4 / sizeof(Elem);
    u32* to = reinterpret_cast<u32*>(dst);
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const int in = valid - w * kPerWord;  // elements of the row in this word
      if (kPerWord == 2 && in == 1)
        to[w] = *reinterpret_cast<const unsigned short*>(src + w * kPerWord);
      else
        cp_async4(to + w, in >= kPerWord ? src + w * kPerWord : row, in >= kPerWord);
    }
  }

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

}  // namespace tka
