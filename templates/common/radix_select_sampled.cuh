// Exact top-s selection of one long row with one read of the row instead of two (design section
// 3: "avoid multi-pass radix over HBM"). A threshold estimated from a sample of the row keeps about
// 1.4 s keys as candidates in shared memory in a single pass; the exact selection then runs among
// them. When the estimate misses (fewer than s keys reach it, or more than fit), the two-pass
// radix_select_row runs instead: the result is always exact and follows the same tie rule (ties
// to the lower index); only the order of the output slots differs (keys above the threshold in
// index order, then the threshold-valued ones).
//
// `Keys` as for radix_select_row.
#pragma once
#include "common/radix_select.cuh"
#include "common/row_stream.cuh"

namespace tka {

constexpr int kSampleBlocks = 32;   // contiguous blocks: whole sectors, ~3% of a 128K row
constexpr int kSampleBlock = 128;
constexpr int kSamples = kSampleBlocks * kSampleBlock;

// Rows long enough for the sample to pay: the one-pass path reads 1 + 4096/n of the row.
__device__ __forceinline__ bool sampled_select_pays(int n, int s) { return n >= 16384 && n >= 16 * s; }

// The element type of a streamed row (float when not streamed: the stream is then unused).
template <class Keys, bool kStreams>
struct StreamElem {
  typedef float type;
};
template <class Keys>
struct StreamElem<Keys, true> {
  typedef typename Keys::Elem type;
};

// The r-th largest of cand_key[0, count) (1 <= r <= count) by three radix levels in shared memory;
// *need_eq: how many keys equal to it are among the r largest.
template <int kThreads, int kCapacity>
__device__ __forceinline__ u32 kth_largest_key(RadixSelectSmem<kCapacity>& sm, int count, int r, int* need_eq) {
  u32 prefix = 0;
  int need = r, bin, above;
  for (int level = 0; level <= 2; ++level) {
    const RadixLevel lv = radix_level(level, prefix);
    clear_hist<kThreads>(sm);
    for (int c = threadIdx.x; c < count; c += kThreads)
      if (lv.match(sm.cand_key[c])) atomicAdd(&sm.hist[lv.digit(sm.cand_key[c])], 1u);
    __syncthreads();
    if (level < 2) find_bin<kThreads, 2048>(sm, need, &bin, &above);
    else find_bin<kThreads, 1024>(sm, need, &bin, &above);
    need -= above;
    prefix = level == 0 ? static_cast<u32>(bin) : (prefix << (level == 1 ? 11 : 10)) | static_cast<u32>(bin);
  }
  *need_eq = need;
  return prefix;
}

// Adds the keys >= t among this thread's k[0, kPer) (elements base + e < n) to the candidates, in
// index order across the block; returns the running count (which may exceed kCapacity: then only
// the first kCapacity are kept).
template <int kThreads, int kCapacity, int kPer>
__device__ __forceinline__ int append_candidates(RadixSelectSmem<kCapacity>& sm, const u32 (&k)[kPer], int base,
                                                 int n, u32 t, int run) {
  int mine = 0;
#pragma unroll
  for (int e = 0; e < kPer; ++e) mine += base + e < n && k[e] >= t;
  int total;
  int slot = run + block_exclusive_sum<kThreads>(mine, sm.scratch, &total);
#pragma unroll
  for (int e = 0; e < kPer; ++e) {
    if (base + e < n && k[e] >= t) {
      if (slot < kCapacity) sm.cand_key[slot] = k[e], sm.cand_idx[slot] = base + e;
      ++slot;
    }
  }
  return run + total;
}

// The candidates pass over registers: one 16-byte load in flight per thread and step.
template <int kThreads, int kCapacity, class Keys>
__device__ __forceinline__ int load_candidates(RadixSelectSmem<kCapacity>& sm, const Keys& keys, int n, u32 t) {
  int run = 0;
  for (int start = 0; start < n; start += kItems * kThreads) {
    const int base = start + kItems * threadIdx.x;
    u32 k[kItems];
    load_items(keys, base, n, k);
    run = append_candidates<kThreads>(sm, k, base, n, t, run);
  }
  return run;
}

// The candidates pass through shared memory, the stream started by the caller.
template <int kThreads, int kCapacity, class Stream>
__device__ __forceinline__ int stream_candidates(RadixSelectSmem<kCapacity>& sm, Stream& stream, u32 t) {
  int run = 0;
  const int steps = stream.steps();
  for (int step = 0; step < steps; ++step) {
    u32 k[Stream::kPer];
    stream.next(step, k);
    run = append_candidates<kThreads>(sm, k, step * Stream::kStep + static_cast<int>(threadIdx.x) * Stream::kPer,
                                      stream.n, t, run);
  }
  stream.finish();
  return run;
}

// With kStages > 0 and a `ring` of RowStream::kRingBytes, a row whose start is 16-byte aligned
// streams through shared memory (`Keys` is then InputKeys, which has `row`), its first steps in
// flight while the threshold is estimated; otherwise (ring == nullptr) it is read by registers.
template <int kThreads, int kStages = 0, int kCapacity, class Keys, class Out>
__device__ void radix_select_row_sampled(RadixSelectSmem<kCapacity>& sm, const Keys& keys, int n, int s, Out& out,
                                         uint4* ring = nullptr) {
  static_assert(kCapacity >= kSamples, "the sample lives in the candidate buffer");
  if (s <= 0 || s >= n || !sampled_select_pays(n, s)) {
    radix_select_row<kThreads>(sm, keys, n, s, out);
    return;
  }
  typedef RowStream<kThreads, (kStages > 0 ? kStages : 2), typename StreamElem<Keys, (kStages > 0)>::type> Stream;
  Stream stream{ring, nullptr, n};
  bool streamed = false;
  if constexpr (kStages > 0) {
    streamed = ring && reinterpret_cast<unsigned long long>(keys.row) % 16 == 0;
    stream.row = keys.row;
    if (streamed) stream.start();
  }
  // 1. The sample: block b starts at b * (n - 128) / 31, rounded down to a multiple of 4.
  for (int x = 4 * threadIdx.x; x < kSamples; x += 4 * kThreads) {
    const int b = x / kSampleBlock, e = x % kSampleBlock;
    const int start = static_cast<int>((static_cast<long long>(b) * (n - kSampleBlock) / (kSampleBlocks - 1)) & ~3LL);
    u32 k4[4];
    keys.load4(start + e, k4);
#pragma unroll
    for (int i = 0; i < 4; ++i) sm.cand_key[x + i] = k4[i];
  }
  __syncthreads();
  // 2. Threshold: the sample's key at s's expected rank plus three standard deviations, so that
  // fewer than s keys reach it only rarely (binomial tail), and far fewer than 2.4 s exceed it.
  const float expect = static_cast<float>(s) * kSamples / n;
  const int r = min(kSamples, static_cast<int>(expect + 3.f * sqrtf(expect)) + 1);
  int unused;
  const u32 t = kth_largest_key<kThreads>(sm, kSamples, r, &unused);
  // 3. One pass: keys >= t become candidates, in index order (as many as fit).
  const int run = streamed ? stream_candidates<kThreads>(sm, stream, t) : load_candidates<kThreads>(sm, keys, n, t);
  __syncthreads();
  if (run < s || run > kCapacity) {  // the estimate missed: the exact two-pass select
    radix_select_row<kThreads>(sm, keys, n, s, out);
    return;
  }
  // 4. Exact among the candidates: every key of the top s is one of them.
  int need_eq;
  const u32 kth = kth_largest_key<kThreads>(sm, run, s, &need_eq);
  const auto load_cand = [&](int c, u32 (&k)[4], int (&idx)[4]) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      if (c + e < run) {
        k[e] = sm.cand_key[c + e];
        idx[e] = sm.cand_idx[c + e];
      }
    }
  };
  emit_above_threshold<kThreads>(sm, load_cand, run, kth, need_eq, 0, s - need_eq, out);
}

}  // namespace tka
