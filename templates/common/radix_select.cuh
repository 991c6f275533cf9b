// Exact top-s selection of one row by radix select over order keys (see order_key.cuh).
// One CTA per row. Result: s distinct indices, ties to the lower index, deterministic output
// order (keys above the threshold bin in index order, then the refined ones in index order).
//
// 1. Histogram of the top 11 key bits over the row; the bin holding the s-th largest key.
// 2. One more pass: keys above that bin are selected; keys inside it are candidates, kept in
//    shared memory when they fit.
// 3. Refine the candidates on the next 11 and last 10 bits to the exact threshold key T and
//    the number of keys equal to T still needed; emit them in index order.
// When the candidates do not fit (low-contrast rows, many equal scores), the same refinement
// reads the row again instead: always exact, never a dropped candidate.
//
// `Keys` provides: u32 key(int i), and void load4(int i, u32 (&k)[4]) for i % 4 == 0 (it may
// read up to i + 3 < the row's padded length). `Out` provides: void write(int slot, int index, u32 key)
// (the key lets an Out that sorts its entries skip a second read of the row).
#pragma once
#include "common/block_scan.cuh"
#include "common/order_key.cuh"

namespace tka {

// Row elements per thread per step (consecutive keys, one 16-byte load each group of four).
// 16 measured slower than 4 on the H100 (bench/NOTES.md).
constexpr int kItems = 4;

template <class Keys>
__device__ __forceinline__ void load_items(const Keys& keys, int base, int n, u32 (&k)[kItems]) {
#pragma unroll
  for (int g = 0; g < kItems / 4; ++g) {
    u32 part[4] = {0, 0, 0, 0};
    if (base + 4 * g < n) keys.load4(base + 4 * g, part);
#pragma unroll
    for (int e = 0; e < 4; ++e) k[4 * g + e] = part[e];
  }
}

// Steps of kItems * kThreads keys over [begin, end) (begin % 4 == 0): body(base, k) with this
// thread's keys base .. base + kItems - 1 in k (zero past end). Loading the next step's keys before
// this step's body measured no faster (bench/NOTES.md): the steps are not bound by load latency.
template <int kThreads, class Keys, class Body>
__device__ __forceinline__ void for_each_step(const Keys& keys, int begin, int end, Body&& body) {
  constexpr int kStep = kItems * kThreads;
  for (int start = begin; start < end; start += kStep) {
    const int base = start + kItems * threadIdx.x;
    u32 k[kItems];
    load_items(keys, base, end, k);
    body(base, k);
  }
}

template <int kCapacity>
struct RadixSelectSmem {
  u32 hist[2048];  // first: as aligned as the struct (write_bucket_ranked reads it as 16-byte vectors)
  u32 cand_key[kCapacity];
  int cand_idx[kCapacity];
  BlockScratch scratch;
  int warp_count[32];   // the sampled path's per-warp candidate lists
  u32 sample_bins[32];  // the sampled threshold's low 5 bits (radix_select_sampled.cuh)
  u32 sample_top;       // the sample's largest 16-bit key (sample_threshold<.., kTop = true>)
  int bin;
  int above;
};

// The bin b of hist[0, kBins) with count(bins > b) < need <= count(bins >= b), need >= 1.
template <int kThreads, int kBins, int kCapacity>
__device__ __forceinline__ void find_bin(RadixSelectSmem<kCapacity>& sm, int need, int* bin, int* above) {
  constexpr int kPer = (kBins + kThreads - 1) / kThreads;
  const int top = kBins - static_cast<int>(threadIdx.x) * kPer;  // my bins: [top - kPer, top)
  int local = 0;
#pragma unroll
  for (int i = 1; i <= kPer; ++i)
    if (top - i >= 0) local += sm.hist[top - i];
  int total;
  int before = block_exclusive_sum<kThreads>(local, sm.scratch, &total);
  if (before < need && before + local >= need) {
    for (int i = 1; i <= kPer; ++i) {
      const int b = top - i;
      if (before + static_cast<int>(sm.hist[b]) >= need) {
        sm.bin = b;
        sm.above = before;
        break;
      }
      before += sm.hist[b];
    }
  }
  __syncthreads();
  *bin = sm.bin;
  *above = sm.above;
  __syncthreads();
}

template <int kThreads, int kCapacity>
__device__ __forceinline__ void clear_hist(RadixSelectSmem<kCapacity>& sm) {
  for (int i = threadIdx.x; i < 2048; i += kThreads) sm.hist[i] = 0;
  __syncthreads();
}

// Digit of `key` at a level, and whether the key matches the prefix fixed by earlier levels.
struct RadixLevel {
  int shift;   // 21, 10, 0
  u32 mask;    // 0x7ff, 0x7ff, 0x3ff
  int pshift;  // bits above the digit: 32 means no prefix
  u32 prefix;
  __device__ __forceinline__ bool match(u32 k) const { return pshift >= 32 || (k >> pshift) == prefix; }
  __device__ __forceinline__ u32 digit(u32 k) const { return (k >> shift) & mask; }
};

__device__ __forceinline__ RadixLevel radix_level(int level, u32 prefix) {
  if (level == 0) return {21, 0x7ffu, 32, 0u};
  if (level == 1) return {10, 0x7ffu, 21, prefix};
  return {0, 0x3ffu, 10, prefix};
}

// Adds one to hist[bin] for every active lane. (Warp-aggregating lanes of equal bins with
// match.any measured no faster here; see bench/NOTES.md.)
__device__ __forceinline__ void warp_hist_add(u32* hist, u32 bin, bool active) {
  if (active) atomicAdd(&hist[bin], 1u);
}

// Histogram of one level over keys [begin, end) of a row, begin % 4 == 0 (global path; a chunk of
// the row in the split path).
template <int kThreads, int kCapacity, class Keys>
__device__ __forceinline__ void row_histogram(RadixSelectSmem<kCapacity>& sm, const Keys& keys, int n, RadixLevel lv,
                                              int begin = 0) {
  clear_hist<kThreads>(sm);
  // Every lane runs every iteration: the warp-wide histogram add needs all of them.
  for_each_step<kThreads>(keys, begin, n, [&](int base, const u32(&k)[kItems]) {
#pragma unroll
    for (int e = 0; e < kItems; ++e) {
      const bool active = base + e < n && lv.match(k[e]);
      warp_hist_add(sm.hist, lv.digit(k[e]), active);
    }
  });
  __syncthreads();
}

// Emits, in source order over items [0, count): keys > T to slots gt_base + rank, and the first
// need_eq keys == T to slots eq_base + rank. Items are read kItems per thread; items whose index
// the source gives as -1 are skipped.
template <int kThreads, int kCapacity, class Load4, class Out>
__device__ __forceinline__ void emit_above_threshold(RadixSelectSmem<kCapacity>& sm, const Load4& load4, int count,
                                                     u32 T, int need_eq, int gt_base, int eq_base, Out& out) {
  int run_gt = 0, run_eq = 0;
  for (int start = 0; start < count; start += kItems * kThreads) {
    const int base = start + kItems * threadIdx.x;
    u32 k[kItems];
    int idx[kItems];
#pragma unroll
    for (int g = 0; g < kItems / 4; ++g) {
      u32 kp[4] = {0, 0, 0, 0};
      int ip[4] = {0, 0, 0, 0};
      if (base + 4 * g < count) load4(base + 4 * g, kp, ip);
#pragma unroll
      for (int e = 0; e < 4; ++e) k[4 * g + e] = kp[e], idx[4 * g + e] = ip[e];
    }
    int ngt = 0, neq = 0;
#pragma unroll
    for (int e = 0; e < kItems; ++e) {
      if (base + e < count && idx[e] >= 0) {
        ngt += k[e] > T;
        neq += k[e] == T;
      }
    }
    int total;
    const int excl = block_exclusive_sum<kThreads>(ngt | (neq << 16), sm.scratch, &total);
    int gt_rank = run_gt + (excl & 0xffff), eq_rank = run_eq + (excl >> 16);
#pragma unroll
    for (int e = 0; e < kItems; ++e) {
      if (base + e >= count || idx[e] < 0) continue;
      if (k[e] > T)
        out.write(gt_base + gt_rank++, idx[e], k[e]);
      else if (k[e] == T) {
        if (eq_rank < need_eq) out.write(eq_base + eq_rank, idx[e], k[e]);
        ++eq_rank;
      }
    }
    run_gt += total & 0xffff;
    run_eq += total >> 16;
  }
}

// One pass over keys [begin, end) of a row (begin % 4 == 0) against level-0 bin `bin`: keys above
// it go to sure(rank, index, key), keys in it to cand(rank, key, index), each ranked in index order
// from 0. Returns the counts {sure, cand}. Called by every thread of the block.
template <int kThreads, int kCapacity, class Keys, class Sure, class Cand>
__device__ __forceinline__ int2 classify_range(RadixSelectSmem<kCapacity>& sm, const Keys& keys, int begin, int end,
                                               u32 bin, Sure&& sure, Cand&& cand) {
  int run_sure = 0, run_cand = 0;
  for_each_step<kThreads>(keys, begin, end, [&](int base, const u32(&k)[kItems]) {
    int nsure = 0, ncand = 0;
#pragma unroll
    for (int e = 0; e < kItems; ++e) {
      if (base + e < end) {
        nsure += (k[e] >> 21) > bin;
        ncand += (k[e] >> 21) == bin;
      }
    }
    int total;
    const int excl = block_exclusive_sum<kThreads>(nsure | (ncand << 16), sm.scratch, &total);
    int sure_slot = run_sure + (excl & 0xffff), cand_slot = run_cand + (excl >> 16);
#pragma unroll
    for (int e = 0; e < kItems; ++e) {
      if (base + e >= end) continue;
      if ((k[e] >> 21) > bin)
        sure(sure_slot++, base + e, k[e]);
      else if ((k[e] >> 21) == bin)
        cand(cand_slot++, k[e], base + e);
    }
    run_sure += total & 0xffff;
    run_cand += total >> 16;
  });
  return make_int2(run_sure, run_cand);
}

// After level `level`'s histogram (1: 2048 bins, 2: 1024): its threshold bin, with `need` and
// `prefix` narrowed to it.
template <int kThreads, int kCapacity>
__device__ __forceinline__ void narrow_to_bin(RadixSelectSmem<kCapacity>& sm, int level, int* need, u32* prefix) {
  int bin, above;
  if (level == 1)
    find_bin<kThreads, 2048>(sm, *need, &bin, &above);
  else
    find_bin<kThreads, 1024>(sm, *need, &bin, &above);
  *need -= above;
  *prefix = (*prefix << (level == 1 ? 11 : 10)) | static_cast<u32>(bin);
}

// Levels 1 and 2 over `in_bin` candidates in shared memory (all in level-0 bin `prefix`), then
// emits them in index order: those above the exact threshold to slots run_sure + rank, the
// threshold-valued ones still needed to the last slots before s. need = s - run_sure.
template <int kThreads, int kCapacity, class Out>
__device__ __forceinline__ void refine_candidates(RadixSelectSmem<kCapacity>& sm, int in_bin, u32 prefix, int need,
                                                  int run_sure, int s, Out& out) {
  for (int level = 1; level <= 2; ++level) {
    const RadixLevel lv = radix_level(level, prefix);
    clear_hist<kThreads>(sm);
    for (int c = threadIdx.x; c < in_bin; c += kThreads)
      if (lv.match(sm.cand_key[c])) atomicAdd(&sm.hist[lv.digit(sm.cand_key[c])], 1u);
    __syncthreads();
    narrow_to_bin<kThreads>(sm, level, &need, &prefix);
  }
  const auto load_cand = [&](int c, u32(&k)[4], int(&idx)[4]) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      if (c + e < in_bin) {
        k[e] = sm.cand_key[c + e];
        idx[e] = sm.cand_idx[c + e];
      }
    }
  };
  // Candidates above T follow the keys above the first bin; the T-valued ones fill the end.
  emit_above_threshold<kThreads>(sm, load_cand, in_bin, prefix, need, run_sure, s - need, out);
}

template <int kThreads, int kCapacity, class Keys, class Out>
__device__ void radix_select_row(RadixSelectSmem<kCapacity>& sm, const Keys& keys, int n, int s, Out& out) {
  if (s >= n) {
    for (int i = threadIdx.x; i < n; i += kThreads) out.write(i, i, keys.key(i));
    return;
  }
  if (s <= 0) return;

  // Level 0 over the row.
  int bin, above;
  row_histogram<kThreads>(sm, keys, n, radix_level(0, 0));
  find_bin<kThreads, 2048>(sm, s, &bin, &above);
  const int in_bin = sm.hist[bin];
  int need = s - above;
  u32 prefix = static_cast<u32>(bin);
  __syncthreads();

  if (in_bin <= kCapacity) {
    // Collect: keys above the bin go straight out; keys in it become candidates.
    const int2 totals = classify_range<kThreads>(
        sm, keys, 0, n, prefix, [&](int rank, int i, u32 key) { out.write(rank, i, key); },
        [&](int rank, u32 key, int i) {
          sm.cand_key[rank] = key;
          sm.cand_idx[rank] = i;
        });
    const int run_sure = totals.x;
    __syncthreads();
    refine_candidates<kThreads>(sm, in_bin, prefix, need, run_sure, s, out);
    return;
  }

  // Too many candidates for shared memory: refine by reading the row again.
  for (int level = 1; level <= 2; ++level) {
    row_histogram<kThreads>(sm, keys, n, radix_level(level, prefix));
    narrow_to_bin<kThreads>(sm, level, &need, &prefix);
  }
  const auto load_row = [&](int i, u32(&k)[4], int(&idx)[4]) {
    keys.load4(i, k);
#pragma unroll
    for (int e = 0; e < 4; ++e) idx[e] = i + e;
  };
  emit_above_threshold<kThreads>(sm, load_row, n, prefix, need, 0, s - need, out);
}

}  // namespace tka
