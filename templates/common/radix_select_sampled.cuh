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

namespace tka {

constexpr int kSampleBlocks = 32;   // contiguous blocks: whole sectors, ~3% of a 128K row
constexpr int kSampleBlock = 128;
constexpr int kSamples = kSampleBlocks * kSampleBlock;

// Rows long enough for the sample to pay: the one-pass path reads 1 + 4096/n of the row.
__device__ __forceinline__ bool sampled_select_pays(int n, int s) { return n >= 16384 && n >= 16 * s; }

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

template <int kThreads, int kCapacity, class Keys, class Out>
__device__ void radix_select_row_sampled(RadixSelectSmem<kCapacity>& sm, const Keys& keys, int n, int s, Out& out) {
  static_assert(kCapacity >= kSamples, "the sample lives in the candidate buffer");
  if (s <= 0 || s >= n || !sampled_select_pays(n, s)) {
    radix_select_row<kThreads>(sm, keys, n, s, out);
    return;
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
  int run = 0;
  for (int start = 0; start < n; start += kItems * kThreads) {
    const int base = start + kItems * threadIdx.x;
    u32 k[kItems];
    load_items(keys, base, n, k);
    int mine = 0;
#pragma unroll
    for (int e = 0; e < kItems; ++e) mine += base + e < n && k[e] >= t;
    int total;
    int slot = run + block_exclusive_sum<kThreads>(mine, sm.scratch, &total);
#pragma unroll
    for (int e = 0; e < kItems; ++e) {
      if (base + e < n && k[e] >= t) {
        if (slot < kCapacity) sm.cand_key[slot] = k[e], sm.cand_idx[slot] = base + e;
        ++slot;
      }
    }
    run += total;
  }
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
