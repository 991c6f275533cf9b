// Top-k selection over rows of values (contract: include/topkattn/topkattn.h): the k largest of each row, values and
// indices, ties to the lower index, NaN below every number. The selection itself is the one the
// decode kernels use (common/radix_select*.cuh); these kernels only say where keys come from and
// where results go.
//
//   select_rows         one CTA per row (all but a few rows); long rows are read once (a
//                       sampled threshold, radix_select_sampled.cuh; streamed through shared
//                       memory when the launch gives the ring), others twice
//   select_rows_cluster a cluster of CTAs per long row (sm_90+), when rows are fewer than SMs
//   select_rows_coop    few long rows over one cooperative grid, each CTA a chunk of a row in
//                       shared memory (radix_select_coop.cuh): one launch, the row read once
//   select_split_*      hist, classify: CTAs per chunk of a row; finish: one CTA per row
//   select_sort         sorted output of the split path: each row by descending value, ties by
//                       index (select_rows sorts its rows itself, in shared memory)
//
// Expects a Spec with: Elem (float, bf16 or fp16), kThreads, kCapacity, kStages (RowStream).
#pragma once
#include "common/cluster_bucket_ranks.cuh"
#include "common/grid_dependency.cuh"
#include "common/radix_select_cluster.cuh"
#include "common/radix_select_coop.cuh"
#include "common/radix_select_sampled.cuh"
#include "common/radix_select_split.cuh"
#include "select_params.cuh"

namespace tka {

// Four consecutive elements as floats from an address aligned to four of them.
__device__ __forceinline__ void load4_aligned(const float* p, float (&f)[4]) {
  const float4 v = *reinterpret_cast<const float4*>(p);
  f[0] = v.x, f[1] = v.y, f[2] = v.z, f[3] = v.w;
}
template <class Half>
__device__ __forceinline__ void load4_aligned(const Half* p, float (&f)[4]) {
  const uint2 v = *reinterpret_cast<const uint2*>(p);
  f[0] = to_float(Half{static_cast<unsigned short>(v.x & 0xffffu)});
  f[1] = to_float(Half{static_cast<unsigned short>(v.x >> 16)});
  f[2] = to_float(Half{static_cast<unsigned short>(v.y & 0xffffu)});
  f[3] = to_float(Half{static_cast<unsigned short>(v.y >> 16)});
}

// Order keys of one input row. The input belongs to the caller: nothing at or past n is read,
// and rows that are not aligned to four elements are read one element at a time.
template <class E>
struct InputKeys {
  typedef E Elem;
  const Elem* row;
  int n;
  bool aligned;
  __device__ __forceinline__ u32 key(int i) const { return order_key(to_float(row[i])); }
  __device__ __forceinline__ void load4(int i, u32 (&k)[4]) const {
    if (aligned && i + 3 < n) {
      float f[4];
      load4_aligned(row + i, f);
#pragma unroll
      for (int e = 0; e < 4; ++e) k[e] = order_key(f[e]);
    } else {
#pragma unroll
      for (int e = 0; e < 4; ++e) k[e] = i + e < n ? key(i + e) : 0u;
    }
  }
};

// Values are rebuilt from their keys (no second read of the row) except zeros and NaN, whose
// exact bits only the row has.
template <class Elem>
struct SelectOut {
  const Elem* row;
  Elem* values;  // nullptr: indices only (a fused caller that reads just the selection)
  int* indices;
  __device__ __forceinline__ void write(int slot, int i, u32 key) const {
    indices[slot] = i;
    if (values) values[slot] = key_value_exact(key) ? from_float<Elem>(key_value(key)) : row[i];
  }
};

// Entries of a row to be sorted: the order key above the inverted index, so that one descending
// order of the words is (value desc, index asc).
struct SortWordsOut {
  u64* words;
  __device__ __forceinline__ void write(int slot, int i, u32 key) const {
    words[slot] = (static_cast<u64>(key) << 32) | (0xffffffffu - static_cast<u32>(i));
  }
};

// Orders one pair of the network: the larger first when descending, else the smaller.
__device__ __forceinline__ void bitonic_exchange(u64& a, u64& b, bool descending) {
  const u64 x = a, y = b;
  if (descending ? x < y : x > y) a = y, b = x;
}

// One stage of the bitonic network in shared memory: pairs (lo, lo + stride) of sub-sequences of
// `block` words, descending where lo & block is 0.
template <int kThreads>
__device__ __forceinline__ void bitonic_stage_smem(u64* words, int size, int block, int stride) {
  for (int t = threadIdx.x; t < size / 2; t += kThreads) {
    const int lo = 2 * t - (t & (stride - 1));
    bitonic_exchange(words[lo], words[lo + stride], (lo & block) == 0);
  }
}

// The larger or the smaller of a word and its partner's: the stage keeps the larger in the lower
// slot of a descending pair and in the upper slot of an ascending one.
__device__ __forceinline__ u64 bitonic_keep(u64 mine, u64 other, bool keep_larger) {
  return (mine > other) == keep_larger ? mine : other;
}

// Words per segment that one warp sorts in registers: 4 per lane.
constexpr int kSortSegment = 128;

// The stages of levels block_lo..block_hi whose strides are below kSortSegment, on every segment
// of 128 words, each held by one warp in registers (lane l: words 4l..4l+3 of the segment):
// strides 1 and 2 within a lane, 4..64 across lanes by shuffles. Warps touch only their own
// segments: no block barrier between these stages. top_descending: level block_hi sorts every
// segment descending (runs for merge_runs_desc) instead of alternating by position.
template <int kThreads>
__device__ __forceinline__ void bitonic_segments(u64* words, int size, int block_lo, int block_hi,
                                                 bool top_descending = false) {
  constexpr int kWarps = kThreads / 32;
  const int lane = static_cast<int>(threadIdx.x) & 31;
  for (int seg = static_cast<int>(threadIdx.x) >> 5; seg < size / kSortSegment; seg += kWarps) {
    const int i0 = seg * kSortSegment + 4 * lane;  // the index of w[0]
    ulonglong2* at = reinterpret_cast<ulonglong2*>(words + i0);
    const ulonglong2 p0 = at[0], p1 = at[1];
    u64 w[4] = {p0.x, p0.y, p1.x, p1.y};
    for (int block = block_lo; block <= block_hi; block <<= 1) {
      // The same for the 4 words when block >= 4.
      const bool descending = (top_descending && block == block_hi) || (i0 & block) == 0;
      for (int stride = min(block >> 1, kSortSegment / 2); stride >= 4; stride >>= 1) {
        const bool keep_larger = ((i0 & stride) == 0) == descending;
#pragma unroll
        for (int r = 0; r < 4; ++r)
          w[r] = bitonic_keep(w[r], __shfl_xor_sync(kFullMask, w[r], stride >> 2), keep_larger);
      }
      // Strides 2 and 1 pair words of this lane; at block 2 the direction alternates per pair.
      if (block >= 4) {
        bitonic_exchange(w[0], w[2], descending), bitonic_exchange(w[1], w[3], descending);
        bitonic_exchange(w[0], w[1], descending), bitonic_exchange(w[2], w[3], descending);
      } else {
        bitonic_exchange(w[0], w[1], true), bitonic_exchange(w[2], w[3], false);
      }
    }
    at[0] = make_ulonglong2(w[0], w[1]);
    at[1] = make_ulonglong2(w[2], w[3]);
  }
}

// Sorts of up to kMergeGroups * 4 words a thread merge their runs (merge_runs_desc), the outputs
// held in registers across a barrier; longer sorts keep the bitonic stages in shared memory.
constexpr int kMergeGroups = 2;

// Where diagonal d of the merge path of descending runs a (la words) and b (lb words) crosses: how
// many of the merged run's first d words come from a. Ties go to b first.
__device__ __forceinline__ int merge_path_split(const u64* a, int la, const u64* b, int lb, int d) {
  int lo = max(0, d - lb), hi = min(d, la);
  while (lo < hi) {
    const int mid = (lo + hi) >> 1;
    if (a[mid] > b[d - 1 - mid])
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

// Merges each pair of descending runs of `width` words, [2jw, 2jw + w) and [2jw + w, 2jw + 2w),
// into one descending run, in place; the last pair may be short (size need not be a power of two:
// its second run is what is left past the first, or nothing). Thread t owns outputs 4t .. 4t + 3,
// and 4(t + kThreads) .. 4(t + kThreads) + 3 when the sort is longer than 4 words a thread: a
// binary search along each group's diagonal of the merge path says how many of the outputs before
// it come from the first run, then the thread merges the group's four into registers, and writes
// them after a block barrier. Ties (only the zero words that pad a sort) go second run first, in
// the search and in the merge alike. size % 4 == 0, size <= kMergeGroups * 4 * kThreads; every
// thread calls it.
template <int kThreads>
__device__ __forceinline__ void merge_runs_desc(u64* words, int size, int width) {
  u64 out[kMergeGroups][4];
#pragma unroll
  for (int g = 0; g < kMergeGroups; ++g) {
    const int o = 4 * (static_cast<int>(threadIdx.x) + g * kThreads);
    if (o < size) {
      const int base = o & ~(2 * width - 1), d = o - base;
      const int la = min(width, size - base), lb = clamp_count(size - base - width, width);
      const u64* a = words + base;
      const u64* b = a + width;
      int ia = merge_path_split(a, la, b, lb, d), ib = d - ia;
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const bool take_a = ib >= lb || (ia < la && a[ia] > b[ib]);
        out[g][r] = take_a ? a[ia++] : b[ib++];
      }
    }
  }
  __syncthreads();  // every thread has read its inputs
#pragma unroll
  for (int g = 0; g < kMergeGroups; ++g) {
    const int o = 4 * (static_cast<int>(threadIdx.x) + g * kThreads);
    if (o < size) {
      ulonglong2* at = reinterpret_cast<ulonglong2*>(words + o);
      at[0] = make_ulonglong2(out[g][0], out[g][1]);
      at[1] = make_ulonglong2(out[g][2], out[g][3]);
    }
  }
}

// Sorts words[0, size) descending: size a multiple of 128 up to kMergeGroups * 4 words a thread,
// else a power of two (sort_words_size). Up to kMergeGroups * 4 words a thread: segments of 128 by
// the bitonic network in registers, then ceil(log2(size / 128)) merge passes of two block barriers
// each (4 for 2048 words; a selection of 32 rows measured 1.2-1.5 µs faster than with the bitonic
// stages below, bench/NOTES.md). Longer sorts: a bitonic network, strides below 128 in registers
// (bitonic_segments, one pass per level), wider ones in shared memory with a block barrier per
// stage; shorter ones: the network in shared memory alone.
template <int kThreads>
__device__ __forceinline__ void sort_words_desc(u64* words, int size) {
  __syncthreads();
  if (size >= kSortSegment && size % kSortSegment == 0 && size <= kMergeGroups * 4 * kThreads) {
    bitonic_segments<kThreads>(words, size, 2, kSortSegment, /*top_descending=*/true);
    for (int width = kSortSegment; width < size; width <<= 1) {
      __syncthreads();
      merge_runs_desc<kThreads>(words, size, width);
    }
    __syncthreads();
    return;
  }
  if (size < kSortSegment) {
    for (int block = 2; block <= size; block <<= 1) {
      for (int stride = block >> 1; stride > 0; stride >>= 1) {
        bitonic_stage_smem<kThreads>(words, size, block, stride);
        __syncthreads();
      }
    }
    return;
  }
  bitonic_segments<kThreads>(words, size, 2, kSortSegment);
  for (int block = 2 * kSortSegment; block <= size; block <<= 1) {
    for (int stride = block >> 1; stride >= kSortSegment; stride >>= 1) {
      __syncthreads();
      bitonic_stage_smem<kThreads>(words, size, block, stride);
    }
    __syncthreads();
    bitonic_segments<kThreads>(words, size, block, block);
  }
  __syncthreads();
}

// The words that sort_words_desc sorts for `count` entries (the caller zeroes those past count): a
// multiple of 128 where the merges take it, else the power of two. A cluster CTA's ~1030 entries
// of a row's 2048 then sort as 1152 words instead of 2048, and the cluster waits on its slowest
// CTA: 32 rows of 128K measured 48.4 -> 46.7 µs sorted (bench/NOTES.md, TKA_SORT_SEGMENTS).
template <int kThreads>
__device__ __forceinline__ int sort_words_size(int count) {
  int pow2 = 1;
  while (pow2 < count) pow2 <<= 1;
  const int segments = (count + kSortSegment - 1) / kSortSegment * kSortSegment;
  return pow2 > kSortSegment && segments <= kMergeGroups * 4 * kThreads ? segments : pow2;
}

// words[0, count) to the row's output slots in order.
template <int kThreads, class Out>
__device__ __forceinline__ void write_sorted(const u64* words, int count, const Out& out) {
  for (int i = threadIdx.x; i < count; i += kThreads)
    out.write(i, static_cast<int>(0xffffffffu - static_cast<u32>(words[i])), static_cast<u32>(words[i] >> 32));
}

template <class S>
struct SelectRowView {
  int n;     // usable columns
  int size;  // min(k, n)
  InputKeys<typename S::Elem> keys;
  SelectOut<typename S::Elem> out;
};

template <class S>
__device__ __forceinline__ SelectRowView<S> select_row_view(const SelectParams& p, int row) {
  typedef typename S::Elem Elem;
  int n = p.n;
  if (p.lengths) n = min(max(p.lengths[row], 0), p.n);
  const Elem* in = static_cast<const Elem*>(p.input) + row * p.input_stride;
  const bool aligned = reinterpret_cast<unsigned long long>(in) % (4 * sizeof(Elem)) == 0;
  return {n,
          min(p.k, n),
          {in, n, aligned},
          {in, p.values ? static_cast<Elem*>(p.values) + row * p.values_stride : nullptr,
           p.indices + row * p.indices_stride}};
}

// Slots past the row's length: index -1, value -inf.
template <class S>
__device__ __forceinline__ void pad_row(const SelectParams& p, const SelectRowView<S>& v) {
  for (int i = v.size + threadIdx.x; i < p.k; i += S::kThreads) {
    v.out.indices[i] = -1;
    if (v.out.values) v.out.values[i] = from_float<typename S::Elem>(neg_inf());
  }
}

// One row by one CTA. Dynamic shared memory, when the launch gives it (%dynamic_smem_size says):
// the ring that streams long rows (RowStream), and with p.sort_rows the sort buffer of
// p.sort_size words (the same bytes: the ring is idle by the time entries are emitted).
template <class S>
__device__ __forceinline__ void select_one_row(const SelectParams& p, const SelectRowView<S>& v,
                                               RadixSelectSmem<S::kCapacity>& sm, uint4* dynamic_smem) {
  typedef RowStream<S::kThreads, S::kStages, typename S::Elem> Stream;
  uint4* ring = dynamic_smem_bytes() >= static_cast<u32>(Stream::kRingBytes) ? dynamic_smem : nullptr;
  const auto select = [&](auto& out) {
    if constexpr (S::kCapacity >= kSampleCapacity)
      radix_select_row_sampled<S::kThreads, S::kStages>(sm, v.keys, v.n, v.size, out, ring);
    else
      radix_select_row<S::kThreads>(sm, v.keys, v.n, v.size, out);
  };
  if (p.sort_rows) {
    u64* words = reinterpret_cast<u64*>(dynamic_smem);
    SortWordsOut sorted{words};
    select(sorted);
    __syncthreads();  // every entry is in, and the ring is no longer read
    // At most p.sort_size, the power of two at or above k: the buffer holds it.
    const int size = sort_words_size<S::kThreads>(v.size);
    for (int i = v.size + threadIdx.x; i < size; i += S::kThreads) words[i] = 0;
    sort_words_desc<S::kThreads>(words, size);
    phase_mark(8);
    write_sorted<S::kThreads>(words, v.size, v.out);
  } else {
    select(v.out);
  }
  pad_row<S>(p, v);
}

// The same, compiled apart: in select_rows_cluster it is the rare path, and inlined it would share
// the 64 registers of the cluster's pass.
template <class S>
__device__ __noinline__ void select_one_row_apart(const SelectParams& p, const SelectRowView<S>& v,
                                                  RadixSelectSmem<S::kCapacity>& sm, uint4* dynamic_smem) {
  select_one_row<S>(p, v, sm, dynamic_smem);
}

// At most 64 registers per thread (1024 / kThreads CTAs per SM): two CTAs of 512 threads share an
// SM, so that one streams its row while the other selects and sorts.
template <class S>
__global__ void __launch_bounds__(S::kThreads, 1024 / S::kThreads) select_rows(const SelectParams p) {
  begin_grid();
  __shared__ RadixSelectSmem<S::kCapacity> sm;
  extern __shared__ uint4 dynamic_smem[];
  phase_start();
  select_one_row<S>(p, select_row_view<S>(p, blockIdx.x), sm, dynamic_smem);
  phase_mark(9);
  phase_report();
}

// Each of this CTA's sorted words[0, count) to the row's output slot of its rank over the
// cluster: its place in its own list plus the words above it in the other CTAs' sorted lists
// (len[c] words of CTA c, len[me] = 0; each CTA's `words` at the same shared-memory offset), copied
// first into the candidate buffer. Slots at or past `limit` are not written (-1: every word is
// ranked below it, as the selected entries are).
template <int kThreads, int kCapacity, class Out>
__device__ __forceinline__ void write_cluster_ranks(RadixSelectSmem<kCapacity>& sm, const u64* words, int count,
                                                    const int (&len)[kMaxCluster], int limit, const Out& out) {
  u64* others = reinterpret_cast<u64*>(sm.cand_key);
  gather_cluster<kThreads>(words, len, others);
  for (int i = threadIdx.x; i < count; i += kThreads) {
    const u64 w = words[i];
    int slot = i, at = 0;
#pragma unroll
    for (int c = 0; c < kMaxCluster; ++c) slot += count_greater(others + at, len[c], w), at += len[c];
    if (limit < 0 || slot < limit)
      out.write(slot, static_cast<int>(0xffffffffu - static_cast<u32>(w)), static_cast<u32>(w >> 32));
  }
}

// The sorted output of a cluster by ranks, once its candidates hold the row's top s (runs: every
// CTA's candidate count): each CTA sorts its own candidates as words (key, then the lower index
// first: words are distinct, ties need no cut-off), copies the other CTAs' sorted lists into its
// candidate buffer, and writes each of its words whose place in the row's order (its place in its
// own list plus the other lists' words above it) is below s, there. No exact threshold, tie
// cut-off, emit or second sort: the threshold's radix levels, the emit and the sort of the
// selected entries measured ~15 µs of a 32 x 128K row's ~43 (bench/NOTES.md). Needs the other
// lists within the candidate buffer (capacity words of 64 bits) and the largest list's sort within
// `words_capacity`; returns -1 (nothing done) otherwise, else 0. Decides alike in every CTA.
template <int kThreads, int kCapacity, class Out>
__device__ __forceinline__ int write_ranked(RadixSelectSmem<kCapacity>& sm, const int (&runs)[kMaxCluster],
                                            int total_run, int s, u64* words, int words_capacity, const Out& out) {
  const int me = cluster_rank();
  int fewest = runs[me], most = 0;
#pragma unroll
  for (int c = 0; c < kMaxCluster; ++c)
    fewest = c < cluster_size() ? min(fewest, runs[c]) : fewest, most = max(most, runs[c]);
  if (total_run - fewest > kCapacity || sort_words_size<kThreads>(most) > words_capacity) return -1;
  const int run = runs[me], size = sort_words_size<kThreads>(run);
  const SortWordsOut as_words{words};
  for (int c = threadIdx.x; c < size; c += kThreads) {
    if (c < run)
      as_words.write(c, sm.cand_idx[c], sm.cand_key[c]);
    else
      words[c] = 0;
  }
  sort_words_desc<kThreads>(words, size);
  cluster_sync();  // every CTA's list is sorted, and nobody reads candidates any more
  phase_mark(8);
  int len[kMaxCluster];
#pragma unroll
  for (int c = 0; c < kMaxCluster; ++c) len[c] = c == me ? 0 : runs[c];
  write_cluster_ranks<kThreads>(sm, words, run, len, s, out);
  return 0;
}

// The sorted output of select_rows_cluster once the candidates hold the row's top s
// (radix_select_row_cluster's `ranked`): by bucket ranks (BucketRanks), else where a bucket holds
// too many, by the CTAs' sorted lists (write_ranked), else -1 (the caller sorts its selected
// entries).
template <int kThreads, int kCapacity, class Out>
struct SortedRanks : BucketRanks<kThreads, kCapacity, Out> {
  bool ranked = false;  // the row is written
  __device__ __forceinline__ int operator()(const int (&runs)[kMaxCluster], int total_run, u32 t) {
    int done = BucketRanks<kThreads, kCapacity, Out>::operator()(runs, total_run, t);
    if (done < 0)
      done = write_ranked<kThreads>(this->sm, runs, total_run, this->s, reinterpret_cast<u64*>(this->region),
                                    this->bytes / 8, this->out);
    ranked = done >= 0;
    return done;
  }
};

// Rows fewer than SMs, on sm_90+: a cluster of CTAs per row (launch attribute; radix_select_cluster.cuh),
// CTA c reading the c-th slice. Sorted output: a counting sort of the candidates over the
// cluster (write_bucket_ranked); where a bucket holds too many, each CTA sorts its own
// candidates (write_ranked) or, where those do not fit, its selected entries, copies the other
// CTAs' sorted lists (distributed shared memory) into its candidate buffer, and finds each of its
// entries' slot as its place in its own list plus the entries of the other lists that precede it
// (binary searches): no merge in one CTA. Unsorted output: the exact threshold over the gathered
// candidates (global slots), after the same bucket ranks where they take the row (slots in order
// are slots too). Rows that the one-read rule leaves out, and
// rows whose estimates both missed, go to the cluster's first CTA alone. The launch gives the
// ring's bytes (the scratch of the exact threshold).
//
// One CTA per SM: the launch pads a cluster CTA's shared memory to half the SM (select_plan.cpp),
// so the bound gives it the registers of one CTA (a bound of two, 64 registers at 512 threads,
// spilled 196 bytes; the ranked sort needs more).
template <class S>
__global__ void __launch_bounds__(S::kThreads, 1) select_rows_cluster(const SelectParams p) {
  begin_grid();
#if __CUDA_ARCH__ >= 900
  typedef RowStream<S::kThreads, S::kStages, typename S::Elem> Stream;
  __shared__ __align__(16) RadixSelectSmem<S::kCapacity> sm;
  __shared__ ClusterCounts cc;
  extern __shared__ uint4 dynamic_smem[];
  phase_start();
  const int ctas = cluster_size(), me = cluster_rank();
  const SelectRowView<S> v = select_row_view<S>(p, static_cast<int>(blockIdx.x) / ctas);
  int got = -1;
  if constexpr (S::kCapacity >= kSampleCapacity) {
    if (v.size < v.n && sampled_select_pays(v.n, v.size, S::kCapacity)) {
      const int scratch_bytes = static_cast<int>(dynamic_smem_bytes());
      uint4* ring = scratch_bytes >= Stream::kRingBytes ? dynamic_smem : nullptr;
      u32* scratch = reinterpret_cast<u32*>(dynamic_smem);
      // Candidate counts are packed two to an int (16 bits each) while they are summed.
      const int scratch_words = min(scratch_bytes / 4, 0x7fff);
      bool last_barrier = true;
      if (p.sort_rows) {
        u64* words = reinterpret_cast<u64*>(dynamic_smem);
        SortWordsOut local{words};
        SortedRanks<S::kThreads, S::kCapacity, SelectOut<typename S::Elem>> by_rank{
            {sm, v.size, dynamic_smem, scratch_bytes, v.out}};
        got = radix_select_row_cluster<S::kThreads, S::kStages>(sm, cc, v.keys, v.n, v.size, local, false, ring,
                                                                scratch, scratch_words, by_rank);
        // After the bucket ranks' last barrier no CTA reads another's memory: no barrier to leave.
        last_barrier = !by_rank.bucketed;
        if (got >= 0 && !by_rank.ranked) {
          const int size = sort_words_size<S::kThreads>(got);
          __syncthreads();  // every entry is in
          for (int i = got + threadIdx.x; i < size; i += S::kThreads) words[i] = 0;
          sort_words_desc<S::kThreads>(words, size);
          if (threadIdx.x == 0) cc.selected = got;
          cluster_sync();  // every CTA's list is sorted, and nobody reads candidates any more
          phase_mark(8);
          // The other lists, CTA after CTA, into the candidate buffer (s <= capacity / 2 words).
          int len[kMaxCluster];
          cluster_counts(
              cc, ctas, [](const ClusterCounts& x) { return x.selected; }, len);
#pragma unroll
          for (int c = 0; c < kMaxCluster; ++c) len[c] = c == me ? 0 : len[c];
          write_cluster_ranks<S::kThreads>(sm, words, got, len, -1, v.out);
        }
      } else {
        // Slots in order are slots too, and the bucket ranks are the shortest path to them.
        BucketRanks<S::kThreads, S::kCapacity, SelectOut<typename S::Elem>> ranked{sm, v.size, dynamic_smem,
                                                                                   scratch_bytes, v.out};
        got = radix_select_row_cluster<S::kThreads, S::kStages>(sm, cc, v.keys, v.n, v.size, v.out, true, ring, scratch,
                                                                scratch_words, ranked);
        last_barrier = !ranked.bucketed;
      }
      if (got >= 0 && last_barrier) cluster_sync();  // no CTA leaves while another may read its shared memory
    }
  }
  if (got < 0 && me == 0) select_one_row_apart<S>(p, v, sm, dynamic_smem);
  phase_mark(9);
  phase_report();
#endif
}

// Cooperative selection: grid (p.coop.chunks, rows), every CTA resident at once (a cooperative
// launch); dynamic shared memory holds the chunk's p.coop.chunk keys. Chunk 0 pads its row.
template <class S>
__global__ void __launch_bounds__(S::kThreads, 1024 / S::kThreads) select_rows_coop(const SelectParams p) {
  begin_grid();
  __shared__ CoopSelectSmem sm;
  extern __shared__ __align__(16) u32 chunk_keys[];
  const int row = blockIdx.y;
  phase_start();
  const SelectRowView<S> v = select_row_view<S>(p, row);
  coop_select_chunk<S::kThreads>(sm, chunk_keys, p.coop, row, v.keys, v.n, v.size, v.out);
  if (blockIdx.x == 0) pad_row<S>(p, v);
  phase_mark(8);
  phase_report();
}

// Split selection: grid (chunks, rows) for hist and classify; (rows) for finish.

// Whether the row needs the split passes at all: rows that keep every column go to finish.
template <class S>
__device__ __forceinline__ bool select_chunk(const SelectParams& p, const SelectRowView<S>& v, int* begin, int* end) {
  split_chunk_range(p.split, v.n, begin, end);
  return v.size > 0 && v.size < v.n;
}

template <class S>
__global__ void __launch_bounds__(S::kThreads) select_split_hist(const SelectParams p) {
  begin_grid();
  __shared__ SplitSelectSmem sm;
  const SelectRowView<S> v = select_row_view<S>(p, blockIdx.y);
  int begin, end;
  if (!select_chunk<S>(p, v, &begin, &end) || begin >= end) return;
  split_histogram<S::kThreads>(sm, v.keys, begin, end, split_select_row(p.split, blockIdx.y));
}

template <class S>
__global__ void __launch_bounds__(S::kThreads) select_split_classify(const SelectParams p) {
  begin_grid();
  __shared__ SplitSelectSmem sm;
  const SelectRowView<S> v = select_row_view<S>(p, blockIdx.y);
  int begin, end;
  if (!select_chunk<S>(p, v, &begin, &end)) return;
  // A chunk past the row's end still reports its (empty) counts: finish sums them.
  split_classify<S::kThreads, S::kCapacity>(sm, v.keys, begin, max(begin, end), v.size, blockIdx.x,
                                            split_select_row(p.split, blockIdx.y));
}

template <class S>
__global__ void __launch_bounds__(S::kThreads) select_split_finish(const SelectParams p) {
  begin_grid();
  __shared__ RadixSelectSmem<S::kCapacity> sm;
  const SelectRowView<S> v = select_row_view<S>(p, blockIdx.x);
  split_finish<S::kThreads>(sm, v.keys, v.n, v.size, split_select_row(p.split, blockIdx.x), v.out);
  pad_row<S>(p, v);
}

// Sorts each row's selected entries (written by the split path) by (value desc, index asc).
template <class S>
__global__ void __launch_bounds__(S::kThreads) select_sort(const SelectParams p) {
  begin_grid();
  extern __shared__ u64 words[];
  const SelectRowView<S> v = select_row_view<S>(p, blockIdx.x);
  const SortWordsOut sorted{words};
  const int size = sort_words_size<S::kThreads>(v.size);
  for (int i = threadIdx.x; i < size; i += S::kThreads) {
    if (i < v.size) {
      const int idx = v.out.indices[i];
      sorted.write(i, idx, v.keys.key(idx));
    } else {
      words[i] = 0;  // below every real entry
    }
  }
  sort_words_desc<S::kThreads>(words, size);
  write_sorted<S::kThreads>(words, v.size, v.out);
}

}  // namespace tka
