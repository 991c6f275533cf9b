// Exact top-s selection of one long row with one read of the row instead of two (a second pass
// over HBM costs as much as the first). A threshold estimated from a sample of the row keeps about
// 1.4 s keys as candidates in shared memory in a single pass; the exact selection then runs among
// them. When the estimate misses (fewer than s keys reach it, or more than fit), a second sample
// and pass with a corrected rank, and if that misses too the two-pass radix_select_row: the
// result is always exact and follows the same tie rule (ties to the lower index); only the order
// of the output slots differs (keys above the threshold, then the threshold-valued ones).
//
// `Keys` as for radix_select_row.
#pragma once
#include "common/one_read_rule.cuh"
#include "common/phase_clock.cuh"
#include "common/radix_select.cuh"
#include "common/row_stream.cuh"

namespace tka {

// The sample: contiguous blocks of 128 (whole sectors) spread over the row, 64 of them (8192 keys,
// 6% of a 128K row) from 64K up, else 32. It is kept as the top 16 bits of each key, in the
// candidate buffer. A larger sample makes the threshold's count of keys less noisy (1/sqrt(rank)):
// with 4096 samples about one row in a hundred missed (too few keys reached the threshold, or one
// warp's list overflowed) and paid a second pass.
constexpr int kSampleBlock = 128;
constexpr int kMaxSampleBlocks = 64;
static_assert(kSampleCapacity == kMaxSampleBlocks * kSampleBlock / 2, "16-bit keys, two to a candidate word");
__device__ __forceinline__ int sample_count(int n) { return (n >= 65536 ? 64 : 32) * kSampleBlock; }

// The r-th largest of key_of(c), c in [0, count) (1 <= r <= count), by three radix levels in
// shared memory; *need_eq: how many keys equal to it are among the r largest, *eq_count: how many
// there are. Keys of 0 count as present (key_of may map entries it filters out to 0 when r is
// within the others).
template <int kThreads, int kCapacity, class KeyOf>
__device__ __forceinline__ u32 kth_largest(RadixSelectSmem<kCapacity>& sm, int count, int r, KeyOf key_of, int* need_eq,
                                           int* eq_count) {
  u32 prefix = 0;
  int need = r, bin, above;
  for (int level = 0; level < 3; ++level) {
    const RadixLevel lv = radix_level(level, prefix);
    clear_hist<kThreads>(sm);
    for (int c = threadIdx.x; c < count; c += kThreads) {
      const u32 k = key_of(c);
      if (lv.match(k)) atomicAdd(&sm.hist[lv.digit(k)], 1u);
    }
    __syncthreads();
    if (level < 2)
      find_bin<kThreads, 2048>(sm, need, &bin, &above);
    else
      find_bin<kThreads, 1024>(sm, need, &bin, &above);
    need -= above;
    prefix = level == 0 ? static_cast<u32>(bin) : (prefix << (level == 1 ? 11 : 10)) | static_cast<u32>(bin);
  }
  *need_eq = need;
  *eq_count = static_cast<int>(sm.hist[bin]);
  __syncthreads();  // the histogram is read before anyone clears it again
  return prefix;
}

template <int kThreads, int kCapacity>
__device__ __forceinline__ u32 kth_largest_key(RadixSelectSmem<kCapacity>& sm, int count, int r, int* need_eq,
                                               int* eq_count) {
  return kth_largest<kThreads>(
      sm, count, r, [&](int c) { return sm.cand_key[c]; }, need_eq, eq_count);
}

// The candidates of the one pass live in one list per warp (kCapacity / warps each): appending
// needs no block barrier per step, only warp votes. The lists are not in index order (nothing
// after the pass needs them to be: ties are cut by index explicitly).
template <int kThreads, int kCapacity>
struct WarpLists {
  static constexpr int kWarps = kThreads / 32;
  static constexpr int kPerWarp = kCapacity / kWarps;
  static_assert(kPerWarp % 32 == 0, "whole rounds of the warp when the lists are packed");
};

// Appends this thread's items e in [0, kPer) for which passes(e) holds (key key(e), element
// index_of(e)) to its warp's list. One ballot per item gives every rank (item e of lane l goes
// after the warp's items before e and the lanes below l's item e): no scan and no branch per item
// on the path where a thread has nothing to append (most threads of most steps). Returns the
// warp's running count, which may pass kPerWarp (then only the first kPerWarp are kept: the caller
// retries).
// (One warp scan of the lanes' counts instead, with the writes of item e skipped in warps where
// no lane passes it, measured 1.3 µs slower at 32 rows of 128K: its shuffles wait on each other,
// and the pass is latency-bound, bench/NOTES.md, TKA_APPEND_SCAN.)
template <int kThreads, int kCapacity, int kPer, class Passes, class KeyOf, class IndexOf>
__device__ __forceinline__ int warp_append(RadixSelectSmem<kCapacity>& sm, Passes passes, KeyOf key, IndexOf index_of,
                                           int count) {
  constexpr int kPerWarp = WarpLists<kThreads, kCapacity>::kPerWarp;
  const unsigned lanes_below = (1u << (threadIdx.x & 31)) - 1u;
  unsigned mine = 0;
  int slot[kPer];
#pragma unroll
  for (int e = 0; e < kPer; ++e) {
    const bool p = passes(e);
    const unsigned votes = __ballot_sync(kFullMask, p);
    mine |= static_cast<unsigned>(p) << e;
    slot[e] = count + __popc(votes & lanes_below);
    count += __popc(votes);
  }
  if (mine) {
    const int base = (static_cast<int>(threadIdx.x) >> 5) * kPerWarp;
#pragma unroll
    for (int e = 0; e < kPer; ++e) {
      if ((mine >> e & 1u) && slot[e] < kPerWarp)
        sm.cand_key[base + slot[e]] = key(e), sm.cand_idx[base + slot[e]] = index_of(e);
    }
  }
  return count;
}

// warp_append for items that pass rarely, given as this thread's bit mask (item e: bit e): each
// thread's place in the warp's list from four ballots of its count's bits (one ballot an item
// before, and every item's write tested by the whole warp: the streamed pass was bound by issuing
// those, bench/NOTES.md), then a loop over the thread's own set bits only. key(e) and index_of(e)
// take e as a variable.
template <int kThreads, int kCapacity, int kPer, class KeyOf, class IndexOf>
__device__ __forceinline__ int warp_append_bits(RadixSelectSmem<kCapacity>& sm, unsigned mine, KeyOf key,
                                                IndexOf index_of, int count) {
  static_assert(kPer < 16, "a thread's count in four bits");
  constexpr int kPerWarp = WarpLists<kThreads, kCapacity>::kPerWarp;
  const unsigned lanes_below = (1u << (threadIdx.x & 31)) - 1u;
  const int mine_count = __popc(mine);
  int below = 0, total = 0;
#pragma unroll
  for (int bit = 0; bit < 4; ++bit) {
    const unsigned votes = __ballot_sync(kFullMask, (mine_count >> bit) & 1);
    below += __popc(votes & lanes_below) << bit;
    total += __popc(votes) << bit;
  }
  int slot = count + below;
  u32* cand_key = sm.cand_key + (static_cast<int>(threadIdx.x) >> 5) * kPerWarp;
  int* cand_idx = sm.cand_idx + (static_cast<int>(threadIdx.x) >> 5) * kPerWarp;
  while (mine) {
    const int e = __ffs(mine) - 1;
    mine &= mine - 1;
    if (slot < kPerWarp) cand_key[slot] = key(e), cand_idx[slot] = index_of(e);
    ++slot;
  }
  return count + total;
}

// The candidates pass over registers, keys [begin, end) of the row (begin % 4 == 0): one 16-byte
// load in flight per thread and step. Returns this warp's count.
template <int kThreads, int kCapacity, class Keys>
__device__ __forceinline__ int load_candidates(RadixSelectSmem<kCapacity>& sm, const Keys& keys, int begin, int end,
                                               u32 t) {
  int count = 0;
  for_each_step<kThreads>(keys, begin, end, [&](int base, const u32(&k)[kItems]) {
    count = warp_append<kThreads, kCapacity, kItems>(
        sm, [&](int e) { return base + e < end && k[e] >= t; }, [&](int e) { return k[e]; },
        [&](int e) { return base + e; }, count);
  });
  return count;
}

// Four candidates [c, c + 4) of [0, run) for emit_above_threshold, with the index of a
// threshold-valued key past the tie cut-off (`last_eq`: the highest index among the selected
// ones) given as -1, so that it is skipped.
template <int kCapacity>
struct CutCandidates {
  const RadixSelectSmem<kCapacity>& sm;
  int run;
  u32 kth;
  int last_eq;
  __device__ __forceinline__ void operator()(int c, u32 (&k)[4], int (&idx)[4]) const {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      if (c + e < run) {
        k[e] = sm.cand_key[c + e];
        idx[e] = sm.cand_idx[c + e];
        if (k[e] == kth && idx[e] > last_eq) idx[e] = -1;
      }
    }
  }
};

// The value whose order key is the smallest number key >= t: keys >= t are exactly the numbers
// >= it (NaN, key 0, is left out even when t is 0; the caller then sees too few and retries).
__device__ __forceinline__ float threshold_value(u32 t) {
  return t <= order_key(-__int_as_float(0x7f800000)) ? -__int_as_float(0x7f800000) : key_value(t);
}

// The candidates pass through shared memory, the stream started by the caller: values compared
// as floats (one instruction each), order keys made only for the candidates. The stream's element
// i is the row's element first + i.
template <int kThreads, int kCapacity, class Stream>
__device__ __forceinline__ int stream_candidates(RadixSelectSmem<kCapacity>& sm, Stream& stream, u32 t, int first = 0) {
  constexpr int kChunkElems = Stream::kChunkElems;
  const float tv = threshold_value(t);
  int count = 0;
  const int steps = stream.steps();
  for (int step = 0; step < steps; ++step) {
    float v[Stream::kPer];
    stream.next(step, v);
    const auto index_of = [&](int e) { return first + stream.index(step, e / kChunkElems, e % kChunkElems); };
    unsigned mine = 0;
#pragma unroll
    for (int e = 0; e < Stream::kPer; ++e) mine |= static_cast<unsigned>(v[e] >= tv) << e;
    if (stream.partial(step)) {
#pragma unroll
      for (int e = 0; e < Stream::kPer; ++e)
        if (index_of(e) - first >= stream.n) mine &= ~(1u << e);
    }
    count = warp_append_bits<kThreads, kCapacity, Stream::kPer>(
        sm, mine, [&](int e) { return order_key(stream.value(step, e)); }, index_of, count);
  }
  stream.finish();
  return count;
}

// The candidates over the warps' lists, once every warp's count is in sm.warp_count (this warp's
// given as `count`, the same in each lane; one block barrier). Returns the total, or -1 when a
// list overflowed; *reached: the keys that reached the threshold, kept or not.
template <int kThreads, int kCapacity>
__device__ __forceinline__ int warp_lists_total(RadixSelectSmem<kCapacity>& sm, int count, int* reached) {
  typedef WarpLists<kThreads, kCapacity> L;
  if ((threadIdx.x & 31) == 0) sm.warp_count[threadIdx.x >> 5] = count;
  __syncthreads();
  int total = 0;
  bool overflow = false;
#pragma unroll
  for (int w = 0; w < L::kWarps; ++w) total += sm.warp_count[w], overflow |= sm.warp_count[w] > L::kPerWarp;
  *reached = total;
  return overflow ? -1 : total;
}

// Packs the warps' lists into cand_key/cand_idx[0, total) (warp after warp), after
// warp_lists_total found no overflow: the candidates' order, deterministic for a given kThreads.
template <int kThreads, int kCapacity>
__device__ __forceinline__ void pack_lists(RadixSelectSmem<kCapacity>& sm) {
  typedef WarpLists<kThreads, kCapacity> L;
  constexpr int kRounds = L::kPerWarp / 32;
  const int warp = static_cast<int>(threadIdx.x) >> 5, lane = static_cast<int>(threadIdx.x) & 31;
  const int count = sm.warp_count[warp];
  int offset = 0;
#pragma unroll
  for (int w = 0; w < L::kWarps; ++w) offset += w < warp ? sm.warp_count[w] : 0;
  u32 key[kRounds];
  int idx[kRounds];
#pragma unroll
  for (int j = 0; j < kRounds; ++j) {
    const int i = lane + 32 * j;
    if (i < count) key[j] = sm.cand_key[warp * L::kPerWarp + i], idx[j] = sm.cand_idx[warp * L::kPerWarp + i];
  }
  __syncthreads();
#pragma unroll
  for (int j = 0; j < kRounds; ++j) {
    const int i = lane + 32 * j;
    if (i < count) sm.cand_key[offset + i] = key[j], sm.cand_idx[offset + i] = idx[j];
  }
  __syncthreads();
}

// warp_lists_total, then pack_lists where no list overflowed.
template <int kThreads, int kCapacity>
__device__ __forceinline__ int pack_warp_lists(RadixSelectSmem<kCapacity>& sm, int count, int* reached) {
  const int total = warp_lists_total<kThreads>(sm, count, reached);
  if (total >= 0) pack_lists<kThreads>(sm);
  return total;
}

// The rank in the sample whose key becomes the first threshold: s's expected rank plus `margin`
// standard deviations (3.5 by default), so that fewer than s keys reach it only rarely (binomial
// tail), and far fewer than 2 s exceed it.
__device__ __forceinline__ int first_sample_rank(int n, int s, float margin = 3.5f) {
  const int m = sample_count(n);
  const float expect = static_cast<float>(s) * m / n;
  return min(m, static_cast<int>(expect + margin * sqrtf(expect)) + 1);
}

// After a threshold from rank r let `reached` keys through (fewer than s, or more than a warp's
// list holds): the rank expected to let through the middle of [s, kCapacity].
template <int kCapacity>
__device__ __forceinline__ int retry_sample_rank(int n, int r, int reached, int s) {
  const float want = 0.5f * static_cast<float>(s + kCapacity);
  const float scaled = static_cast<float>(r) * want / static_cast<float>(max(reached, 1));
  return max(1, min(sample_count(n), __float2int_rn(scaled)));
}

// Steps 1 and 2 of the one-read selection: a threshold from the r-th largest key of the sample.
// The lower edge of the sample's r-th largest 16-bit key, with three barriers of its own besides
// find_bin's: the loads are in flight while the histograms are cleared, the top 11 bits are counted
// as the keys arrive, and the low 5 bits (32 bins, sm.sample_bins) are found by every warp alone.
// kTop: sm.sample_top receives the sample's largest 16-bit key.
template <int kThreads, bool kTop = false, int kCapacity, class Keys>
__device__ __forceinline__ u32 sample_threshold(RadixSelectSmem<kCapacity>& sm, const Keys& keys, int n, int r) {
  static_assert(kCapacity >= kSampleCapacity, "the sample lives in the candidate buffer");
  // 1. The sample: block b of m/128 starts at b * (n - 128) / (m/128 - 1), rounded down to a
  // multiple of 4; each key's top 16 bits. Two loads of four keys a thread in flight at a time
  // (four spilled in select_rows, which has 64 registers; in the cluster kernel, which has the
  // registers, four measured no faster: bench/NOTES.md, TKA_CLUSTER_SAMPLE_IN_FLIGHT).
  constexpr int kLoads = kMaxSampleBlocks * kSampleBlock / (4 * kThreads), kBatch = kLoads < 2 ? kLoads : 2;
  const int m = sample_count(n), blocks = m / kSampleBlock;
  // b * (n - 128) / (blocks - 1) in 32 bits: b * q + b * r / (blocks - 1), with q and r the
  // quotient and remainder of (n - 128) / (blocks - 1) (the same start, no 64-bit division a load).
  const int q = (n - kSampleBlock) / (blocks - 1), r_ = (n - kSampleBlock) % (blocks - 1);
  unsigned short* sample = reinterpret_cast<unsigned short*>(sm.cand_key);
  u32 top = 0;
#pragma unroll
  for (int first = 0; first < kLoads; first += kBatch) {
    u32 k4[kBatch][4];
#pragma unroll
    for (int j = 0; j < kBatch; ++j) {
      const int x = 4 * (static_cast<int>(threadIdx.x) + (first + j) * kThreads);
      const int b = x / kSampleBlock, e = x % kSampleBlock;
      const int start = (b * q + b * r_ / (blocks - 1)) & ~3;
      if (x < m) keys.load4(start + e, k4[j]);
    }
    if (first == 0) {  // while the first loads are in flight
      for (int i = threadIdx.x; i < 2048; i += kThreads) sm.hist[i] = 0;
      if (threadIdx.x < 32) sm.sample_bins[threadIdx.x] = 0;
      if (kTop && threadIdx.x == 0) sm.sample_top = 0;
      __syncthreads();
    }
#pragma unroll
    for (int j = 0; j < kBatch; ++j) {
      const int x = 4 * (static_cast<int>(threadIdx.x) + (first + j) * kThreads);
      if (x < m) {
        // The top halves of the four keys, two to a word.
        *reinterpret_cast<uint2*>(sample + x) =
            make_uint2(__byte_perm(k4[j][0], k4[j][1], 0x7632), __byte_perm(k4[j][2], k4[j][3], 0x7632));
#pragma unroll
        for (int i = 0; i < 4; ++i) atomicAdd(&sm.hist[k4[j][i] >> 21], 1u), top = kTop ? max(top, k4[j][i] >> 16) : 0;
      }
    }
  }
  if (kTop) {
    top = __reduce_max_sync(kFullMask, top);
    if ((threadIdx.x & 31) == 0) atomicMax(&sm.sample_top, top);
  }
  __syncthreads();
  phase_mark(1);
  // 2. The top 11 bits of the r-th largest, then its low 5 among the sample keys in that bin.
  int bin, above;
  find_bin<kThreads, 2048>(sm, r, &bin, &above);
  for (int x = 8 * threadIdx.x; x < m; x += 8 * kThreads) {
    const uint4 w = *reinterpret_cast<const uint4*>(sample + x);
    const u32 words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const u32 h = (words[i / 2] >> (16 * (i % 2))) & 0xffffu;
      if (static_cast<int>(h >> 5) == bin) atomicAdd(&sm.sample_bins[h & 31], 1u);
    }
  }
  __syncthreads();
  // Lane l holds bin 31 - l: the first lane whose running count from the top reaches the rest of r.
  const int lane = static_cast<int>(threadIdx.x) & 31;
  const int through = warp_inclusive_sum(static_cast<int>(sm.sample_bins[31 - lane]));
  const int low = 31 - (__ffs(__ballot_sync(kFullMask, through >= r - above)) - 1);
  phase_mark(2);
  return static_cast<u32>((bin << 5) | low) << 16;
}

// With kStages > 0 and a `ring` of RowStream::kRingBytes, a row whose start is 16-byte aligned
// streams through shared memory (`Keys` is then InputKeys, which has `row`), its first steps in
// flight while the threshold is estimated; otherwise (ring == nullptr) it is read by registers.
template <int kThreads, int kStages = 0, int kCapacity, class Keys, class Out>
__device__ void radix_select_row_sampled(RadixSelectSmem<kCapacity>& sm, const Keys& keys, int n, int s, Out& out,
                                         uint4* ring = nullptr) {
  if (s <= 0 || s >= n || !sampled_select_pays(n, s, kCapacity)) {
    radix_select_row<kThreads>(sm, keys, n, s, out);
    return;
  }
  // 3. One pass: keys >= t become candidates, in per-warp lists. When the estimate misses (rare:
  // see the sample above), one more sample and pass with a rank corrected by what the first pass
  // counted; only when that misses too, the two-pass select.
  int run = -1, reached = 0, r = first_sample_rank(n, s);
#pragma unroll 1
  for (int attempt = 0; attempt < 2 && run < s; ++attempt) {
    if (attempt > 0) r = retry_sample_rank<kCapacity>(n, r, reached, s);
    int count;
    if constexpr (kStages > 0) {  // callers that never stream (decode) do not compile the stream
      RowStream<kThreads, kStages, typename Keys::Elem> stream{ring, keys.row, n};
      const bool streamed = ring && reinterpret_cast<unsigned long long>(keys.row) % 16 == 0;
      if (streamed) stream.start();  // its first steps in flight while the threshold is estimated
      const u32 t = sample_threshold<kThreads>(sm, keys, n, r);
      count = streamed ? stream_candidates<kThreads>(sm, stream, t) : load_candidates<kThreads>(sm, keys, 0, n, t);
    } else {
      count = load_candidates<kThreads>(sm, keys, 0, n, sample_threshold<kThreads>(sm, keys, n, r));
    }
    phase_mark(3);
    run = pack_warp_lists<kThreads>(sm, count, &reached);
    phase_mark(attempt == 0 ? 4 : 10);
  }
  if (run < s) {  // both estimates missed: the exact two-pass select
    radix_select_row<kThreads>(sm, keys, n, s, out);
    return;
  }
  // 4. Exact among the candidates: every key of the top s is one of them. The candidates are not
  // in index order, so when more keys equal the s-th largest than are needed, the lowest indices
  // among them are found by one more selection (over inverted indices).
  int need_eq, eq_count;
  const u32 kth = kth_largest_key<kThreads>(sm, run, s, &need_eq, &eq_count);
  phase_mark(5);
  int last_eq = 0x7fffffff;  // the highest index of a selected threshold-valued key
  if (need_eq < eq_count) {
    int unused_need, unused_count;
    last_eq = static_cast<int>(~kth_largest<kThreads>(
        sm, run, need_eq, [&](int c) { return sm.cand_key[c] == kth ? ~static_cast<u32>(sm.cand_idx[c]) : 0u; },
        &unused_need, &unused_count));
    phase_mark(6);
  }
  const CutCandidates<kCapacity> load_cand{sm, run, kth, last_eq};
  emit_above_threshold<kThreads>(sm, load_cand, run, kth, need_eq, 0, s - need_eq, out);
  phase_mark(7);
}

}  // namespace tka
