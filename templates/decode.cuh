// Exact top-k decode (contract: include/topkattn/topkattn.h), in three passes over memory:
//   decode_score   reads every visible key once, scores all query rows of its KV head from that
//                  one read, writes fp32 scores to the workspace;
//   decode_select  picks each row's k keys by radix select over the scores (radix_select.cuh);
//                  when rows are fewer than SMs, decode_select_coop splits them over one
//                  cooperative grid (radix_select_coop.cuh), decode_select_cluster over a cluster
//                  of CTAs per row on sm_90 (radix_select_cluster.cuh), or the split selection's
//                  three kernels over chunks (radix_select_split.cuh);
//   decode_attend  softmax over the selected scores and the weighted sum of their V rows, split
//                  over CTAs when rows are few; decode_merge combines the splits by their LSE.
//
// The generated stub defines `Spec` before including this file:
//   Elem (bf16 | fp16), kHeadDim, kGroup, kQLen, kPerGroup, kPaged, kPageSize,
//   kScoreThreads, kScoreRowTile, kSelectThreads, kSelectCapacity, kAttendThreads, kAttendChunk,
//   kCoopAttends.
#pragma once
#include "common/block_scan.cuh"
#include "common/cluster_bucket_ranks.cuh"
#include "common/grid_dependency.cuh"
#include "common/kv_cache.cuh"
#include "common/memory.cuh"
#include "common/mma.cuh"
#include "common/order_key.cuh"
#include "common/radix_select.cuh"
#include "common/radix_select_cluster.cuh"
#include "common/radix_select_coop.cuh"
#include "common/radix_select_sampled.cuh"
#include "common/radix_select_split.cuh"
#include "common/types.cuh"
#include "decode_params.cuh"

namespace tka {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Keys a sequence may use, and whether its length is outside what the plan or cache holds
// (such a sequence produces NaN instead of reading out of bounds).
template <class S>
__device__ __forceinline__ int usable_len(const DecodeParams& p, int b, bool* bad) {
  const int len = p.seq_lens[b];
  int limit = p.max_seq_len;
  if (S::kPaged)
    limit = min(limit, p.max_pages * S::kPageSize);
  else
    limit = min(limit, p.capacity);
  *bad = len < 0 || len > limit;
  return *bad ? 0 : len;
}

template <class S>
__device__ __forceinline__ int visible_len(int seq_len, int token) {
  return max(0, seq_len - S::kQLen + token + 1);
}

// ---------------------------------------------------------------------------------------------
// Score pass. Grid: (key chunks, Hkv * row tiles, B), the first two swapped for paged caches.
// The scores of a key tile against the CTA's query rows are one matrix product on tensor cores
// (mma m16n8k16, fp32 accumulation): queries as A (16 rows per m-tile, 16-bit as given; the scale
// is applied to the fp32 result), keys as B straight from the tile as stored. Each warp takes 16
// keys of a tile; kScoreStages key tiles are in flight by cp.async. On CUDA cores the same
// product costs ~25 instructions per key and head dimension chunk, which kept this pass below the
// copy bandwidth.
template <class S>
struct ScoreShape {
  static constexpr int kRows = S::kGroup * S::kQLen;  // query rows per KV head
  static constexpr int kRowTile = S::kScoreRowTile;   // query rows per CTA, whole m-tiles
  static constexpr int kMTiles = kRowTile / 16;
  static constexpr int kRowTiles = (kRows + kRowTile - 1) / kRowTile;
  static constexpr int kWarps = S::kScoreThreads / 32;
  static constexpr int kTile = kWarps * 16;            // keys per tile
  static constexpr int kPitch = S::kHeadDim * 2 + 16;  // +16 B: conflict-free ldmatrix rows
  static constexpr int kStages = S::kHeadDim == 256 ? 2 : 3;
  static constexpr int kSmemBytes = kRowTile * kPitch + kStages * kTile * kPitch;
  static_assert(kRowTile % 16 == 0 && kRowTile >= 16, "query rows in whole m-tiles");
  static_assert(S::kScoreThreads % 32 == 0, "whole warps");
  // TKA_SCORE_KEEP / TKA_SCORE_SLOTS (sm_90, an experiment towards batch-1 decode in one grid,
  // bench/NOTES.md): the first kKeep scores of the CTA's first kKeepRows rows kept in shared
  // memory (+8 floats a row: the rows' stores fall on distinct banks), and with SLOTS their
  // 2048-bin histograms (16-bit counts) written plainly to the row's slot of this chunk.
  static constexpr int kKeepRows = kRows < 4 ? kRows : 4, kKeep = 768, kKeepPitch = kKeep + 8;
  static constexpr int kSlotChunks = 128, kSlotWords = 1024;
};

#if __CUDA_ARCH__ >= 900 && (defined(TKA_SCORE_KEEP) || defined(TKA_SCORE_SLOTS))
#define TKA_KEEPS_SCORES 1
#endif

// A thread copies kPer 16-byte pieces of a key tile, each of another key row (its column of the
// tile). Paged caches: all of the rows' pages are looked up before the first copy is issued (a
// copy is ordered after every earlier load: a lookup per copy waited out one load latency per
// piece). Looking them up a tile ahead, in flight during the compute, measured slower (NOTES).
template <class S>
__device__ __forceinline__ void load_key_tile(const DecodeParams& p, unsigned char* dst, int b, int kvh, int first,
                                              int end) {
  constexpr int kVecs = S::kHeadDim / 8;
  constexpr int kPer = ScoreShape<S>::kTile * kVecs / S::kScoreThreads;
  static_assert(S::kScoreThreads % kVecs == 0, "a thread keeps its column of pieces");
  const int r0 = threadIdx.x / kVecs, c = threadIdx.x % kVecs;
  constexpr int kRowStep = S::kScoreThreads / kVecs;  // rows between a thread's pieces
  int page[S::kPaged ? kPer : 1];
  if constexpr (S::kPaged) {
#pragma unroll
    for (int u = 0; u < kPer; ++u) {
      const int i = first + r0 + u * kRowStep;
      page[u] = i < end ? page_of<S>(p, b, i) : 0;
    }
  }
#pragma unroll
  for (int u = 0; u < kPer; ++u) {
    const int r = r0 + u * kRowStep, i = first + r;
    const typename S::Elem* src = nullptr;
    if (i < end) {
      if constexpr (S::kPaged) {
        src = page_row<S>(p, p.k, p.k_stride, page[u], kvh, i);
        if (!src && c == 0) atomicOr(&p.flags[b], 1u);  // outside the pool: the sequence is NaN
      } else {
        src = kv_row<S>(p, p.k, p.k_stride, b, kvh, i);
      }
    }
    cp_async16(dst + r * ScoreShape<S>::kPitch + c * 16, src ? src + c * 8 : p.k, src != nullptr);
  }
}

// The split selection's level-0 histograms ([rows, 2048], p.select_split.hist when the selection is
// split), zeroed over the whole score grid for the histogram kernel after it to add into: one
// stream operation (a memset) fewer per step, and no break between two kernels that may overlap
// their launches (begin_grid).
template <class S>
__device__ __forceinline__ void zero_select_histograms(const DecodeParams& p) {
  const int hsel = S::kPerGroup ? p.num_kv_heads : p.num_kv_heads * S::kGroup;
  const long long vecs = static_cast<long long>(p.batch) * S::kQLen * hsel * (2048 / 4);
  const long long cta = blockIdx.x + gridDim.x * (blockIdx.y + static_cast<long long>(gridDim.y) * blockIdx.z);
  const long long stride = static_cast<long long>(gridDim.x) * gridDim.y * gridDim.z * S::kScoreThreads;
  for (long long i = cta * S::kScoreThreads + threadIdx.x; i < vecs; i += stride)
    reinterpret_cast<uint4*>(p.select_split.hist)[i] = make_uint4(0, 0, 0, 0);
}

template <class S>
__global__ void __launch_bounds__(S::kScoreThreads) decode_score(const DecodeParams p) {
  begin_grid();
  if (p.select_split.hist) zero_select_histograms<S>(p);
  using Shape = ScoreShape<S>;
  using E = typename S::Elem;
  constexpr int T = Shape::kTile, kStages = Shape::kStages, kPitch = Shape::kPitch;
  extern __shared__ __align__(16) unsigned char smem[];
  unsigned char* q_s = smem;                             // [kRowTile][kPitch]
  unsigned char* k_s = smem + Shape::kRowTile * kPitch;  // [kStages][T][kPitch]
#ifdef TKA_KEEPS_SCORES
  __shared__ __align__(16) float kept[Shape::kKeepRows][Shape::kKeepPitch];
#endif

  // Paged caches: KV heads (and row tiles) vary fastest over the grid, so that the CTAs reading one
  // token range's pages run together and read each token's [Hkv, d] slot at about the same time
  // (contiguous caches: each head's keys are one run, key chunks vary fastest).
  const int head_tile = S::kPaged ? blockIdx.x : blockIdx.y, chunk = S::kPaged ? blockIdx.y : blockIdx.x;
  const int b = blockIdx.z;
  const int kvh = head_tile / Shape::kRowTiles;
  const int row0 = (head_tile % Shape::kRowTiles) * Shape::kRowTile;
  bool bad;
  const int n = usable_len<S>(p, b, &bad);
  // Tiles chunk, chunk + chunks, ...: at any moment the CTAs of a head read neighbouring tiles, as a
  // copy kernel reads (2-4% faster than one contiguous run a CTA: bench/probes/read_pattern.cu).
  const int tile_step = T * static_cast<int>(S::kPaged ? gridDim.y : gridDim.x);
  const int begin = chunk * T;
  if (begin >= n) return;
  const int tiles = (n - begin + tile_step - 1) / tile_step;
  // Tile it: keys [begin + it * tile_step, that + T), cut at n.
  const auto tile_end = [&](int it) { return min(n, begin + it * tile_step + T); };
  const int hq = p.num_kv_heads * S::kGroup;

  // The query rows by cp.async (zeros past the last row), in the first tile's group: in flight
  // with the key tiles and waited for with tile 0 (a copy through registers waited out one load a
  // 16-bit element).
  constexpr int kVecs = S::kHeadDim / 8;
  for (int x = threadIdx.x; x < Shape::kRowTile * kVecs; x += S::kScoreThreads) {
    const int row = row0 + x / kVecs, j = row / S::kGroup, h = kvh * S::kGroup + row % S::kGroup;
    const bool valid = row < Shape::kRows;
    const E* src = static_cast<const E*>(p.q) + b * p.q_stride[0] + j * p.q_stride[1] + h * p.q_stride[2];
    cp_async16(q_s + (x / kVecs) * kPitch + 16 * (x % kVecs), valid ? src + 8 * (x % kVecs) : p.q, valid);
  }
  // Tiles 0 .. kStages-2 in flight, then the query rows (zero past the last row) meanwhile.
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < tiles) load_key_tile<S>(p, k_s + s * T * kPitch, b, kvh, begin + s * tile_step, tile_end(s));
    cp_async_commit();
  }

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t4 = lane & 3;
  // ldmatrix row addresses (see ldmatrix_x4): A rows of the query tile, B rows of the warp's keys.
  const unsigned char* a_row = q_s + (lane & 15) * kPitch + (lane >> 4) * 16;
  const int b_off = (warp * 16 + (lane & 7) + 8 * (lane >> 4)) * kPitch + ((lane >> 3) & 1) * 16;

  for (int it = 0; it < tiles; ++it) {
    cp_async_wait<kStages - 2>();
    // Tile `it` landed for every thread; tile it-1's buffer is free.
    __syncthreads();
    const int ahead = it + kStages - 1;
    if (ahead < tiles)
      load_key_tile<S>(p, k_s + (ahead % kStages) * T * kPitch, b, kvh, begin + ahead * tile_step, tile_end(ahead));
    cp_async_commit();

    float acc[Shape::kMTiles][2][4];
#pragma unroll
    for (int m = 0; m < Shape::kMTiles; ++m)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[m][0][e] = acc[m][1][e] = 0.f;
    const unsigned char* b_row = k_s + (it % kStages) * T * kPitch + b_off;
#pragma unroll
    for (int kk = 0; kk < S::kHeadDim / 16; ++kk) {
      u32 kb[4];
      ldmatrix_x4(kb, b_row + kk * 32);
      const u32 b0[2] = {kb[0], kb[1]}, b1[2] = {kb[2], kb[3]};
#pragma unroll
      for (int m = 0; m < Shape::kMTiles; ++m) {
        u32 a[4];
        ldmatrix_x4(a, a_row + m * 16 * kPitch + kk * 32);
        mma_16816(E{}, acc[m][0], a, b0);
        mma_16816(E{}, acc[m][1], a, b1);
      }
    }

    // c[0], c[1]: query row g, keys 2t, 2t+1 of the n-tile; c[2], c[3]: row g + 8.
    const int key0 = begin + it * tile_step + warp * 16 + 2 * t4, stop = tile_end(it);
#pragma unroll
    for (int m = 0; m < Shape::kMTiles; ++m) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int row = row0 + m * 16 + g + 8 * half;
        if (row >= Shape::kRows) continue;
        const int j = row / S::kGroup, h = kvh * S::kGroup + row % S::kGroup;
        float* srow = p.scores + ((static_cast<long long>(b) * S::kQLen + j) * hq + h) * p.score_stride;
#pragma unroll
        for (int nt = 0; nt < 2; ++nt) {
          const int i = key0 + nt * 8;
          const float s0 = acc[m][nt][2 * half] * p.scale, s1 = acc[m][nt][2 * half + 1] * p.scale;
          if (i + 1 < stop)
            *reinterpret_cast<float2*>(srow + i) = make_float2(s0, s1);
          else if (i < stop)
            srow[i] = s0;
#ifdef TKA_KEEPS_SCORES
          const int local = it * T + warp * 16 + 2 * t4 + nt * 8, r = row - row0;
          if (r < Shape::kKeepRows && local + 1 < Shape::kKeep)
            *reinterpret_cast<float2*>(&kept[r][local]) = make_float2(s0, s1);
#endif
        }
      }
    }
  }
  cp_async_wait<0>();  // no copy may still target shared memory when the CTA exits
#if defined(TKA_KEEPS_SCORES) && defined(TKA_SCORE_SLOTS)
  if (p.score_slots && chunk < Shape::kSlotChunks) {
    static_assert(Shape::kKeepRows * Shape::kSlotWords * 4 <= kStages * T * kPitch, "histograms in the key tiles");
    __syncthreads();  // every kept score is in, and no warp reads a key tile any more
    u32* hist = reinterpret_cast<u32*>(k_s);
    for (int w = threadIdx.x; w < Shape::kKeepRows * Shape::kSlotWords; w += S::kScoreThreads) hist[w] = 0;
    __syncthreads();
    const int keep = min(tiles * T, Shape::kKeep);
    for (int x = threadIdx.x; x < Shape::kKeepRows * keep; x += S::kScoreThreads) {
      const int r = x / keep, local = x % keep;
      if (row0 + r >= Shape::kRows || begin + (local / T) * tile_step + local % T >= n) continue;
      const u32 bin = order_key(kept[r][local]) >> 21;
      atomicAdd(&hist[r * Shape::kSlotWords + (bin >> 1)], 1u << (16 * (bin & 1)));
    }
    __syncthreads();
    constexpr int kVecsPerSlot = Shape::kSlotWords / 4;
    for (int x = threadIdx.x; x < Shape::kKeepRows * kVecsPerSlot; x += S::kScoreThreads) {
      const int r = x / kVecsPerSlot, row = row0 + r;
      if (row >= Shape::kRows) continue;
      const int j = row / S::kGroup, h = kvh * S::kGroup + row % S::kGroup;
      const long long slot = ((static_cast<long long>(b) * S::kQLen + j) * hq + h) * Shape::kSlotChunks + chunk;
      reinterpret_cast<uint4*>(p.score_slots + slot * Shape::kSlotWords)[x % kVecsPerSlot] =
          reinterpret_cast<const uint4*>(hist)[x];
    }
  }
#endif
}

// ---------------------------------------------------------------------------------------------
// Select pass. Grid: B * q_len * Hsel rows (Hsel = Hq per head, Hkv per group), one CTA each.
struct SelectRow {
  int b, j, hsel, n;  // n: visible keys
  int size;           // how many to select
  int fsink, flocal;  // forced ranges [0, fsink) and [n - flocal, n)
};

template <class S>
__device__ __forceinline__ SelectRow select_row(const DecodeParams& p, int row) {
  const int hsel_count = S::kPerGroup ? p.num_kv_heads : p.num_kv_heads * S::kGroup;
  SelectRow r;
  r.hsel = row % hsel_count;
  const int bj = row / hsel_count;
  r.j = bj % S::kQLen;
  r.b = bj / S::kQLen;
  bool bad;
  r.n = visible_len<S>(usable_len<S>(p, r.b, &bad), r.j);
  r.fsink = min(p.n_sink, r.n);
  r.flocal = min(p.n_local, r.n);
  const int forced = min(r.n, r.fsink + r.flocal);
  int k = p.top_k;
  if (k <= 0) k = max(1, static_cast<int>(ceil(p.top_k_ratio * r.n)));
  r.size = min(min(r.n, max(k, forced)), p.max_k);  // max_k bounds it already; a row never outgrows its slots
  return r;
}

// Selection keys of one row: a head's scores, or the max over the group's heads.
template <class S>
struct ScoreKeys {
  typedef float Elem;
  const float* row;  // first score row of the head (group)
  long long stride;
  int n, fsink, flocal;
  __device__ __forceinline__ u32 forced_or(int i, u32 k) const {
    return (i < fsink || i >= n - flocal) ? kForcedKey : k;
  }
  __device__ __forceinline__ u32 key(int i) const {
    constexpr int kHeads = S::kPerGroup ? S::kGroup : 1;
    u32 k = order_key(row[i]);
#pragma unroll
    for (int g = 1; g < kHeads; ++g) k = max(k, order_key(row[g * stride + i]));
    return forced_or(i, k);
  }
  __device__ __forceinline__ void load4(int i, u32 (&k)[4]) const {
    constexpr int kHeads = S::kPerGroup ? S::kGroup : 1;
    float4 v = *reinterpret_cast<const float4*>(row + i);
    k[0] = order_key(v.x), k[1] = order_key(v.y), k[2] = order_key(v.z), k[3] = order_key(v.w);
#pragma unroll
    for (int g = 1; g < kHeads; ++g) {
      v = *reinterpret_cast<const float4*>(row + g * stride + i);
      k[0] = max(k[0], order_key(v.x)), k[1] = max(k[1], order_key(v.y));
      k[2] = max(k[2], order_key(v.z)), k[3] = max(k[3], order_key(v.w));
    }
#pragma unroll
    for (int e = 0; e < 4; ++e) k[e] = forced_or(i + e, k[e]);
  }
};

struct SelectedOut {
  int* selected;  // workspace row
  int* user;      // optional user indices row
  __device__ __forceinline__ void write(int slot, int index, u32) const {
    selected[slot] = index;
    if (user) user[slot] = index;
  }
};

// One selection row: its keys (scores) and where its indices go.
template <class S>
struct SelectView {
  SelectRow r;
  ScoreKeys<S> keys;
  SelectedOut out;
};

template <class S>
__device__ __forceinline__ SelectView<S> select_view(const DecodeParams& p, int row) {
  const SelectRow r = select_row<S>(p, row);
  const int hq = p.num_kv_heads * S::kGroup;
  const int h0 = S::kPerGroup ? r.hsel * S::kGroup : r.hsel;
  const long long srow = (static_cast<long long>(r.b) * S::kQLen + r.j) * hq + h0;
  int* user = nullptr;
  if (p.indices)
    user = p.indices + r.b * p.indices_stride[0] + r.j * p.indices_stride[1] + r.hsel * p.indices_stride[2];
  return {r,
          {p.scores + srow * p.score_stride, p.score_stride, r.n, r.fsink, r.flocal},
          {p.selected + static_cast<long long>(row) * p.max_k, user}};
}

// The row's -1 padding of the user's indices and its selected count.
template <class S>
__device__ __forceinline__ void finish_row(const DecodeParams& p, const SelectView<S>& v, int row) {
  if (v.out.user)
    for (int i = v.r.size + threadIdx.x; i < p.max_k; i += S::kSelectThreads) v.out.user[i] = -1;
  if (threadIdx.x == 0) p.selected_count[row] = v.r.size;
}

// One row by one CTA. Long rows: one read of the scores (a sampled threshold), else the two-pass
// select.
template <class S>
__device__ __forceinline__ void select_row_alone(RadixSelectSmem<S::kSelectCapacity>& sm, SelectView<S>& v) {
  if constexpr (S::kSelectCapacity >= kSampleCapacity)
    radix_select_row_sampled<S::kSelectThreads>(sm, v.keys, v.r.n, v.r.size, v.out);
  else
    radix_select_row<S::kSelectThreads>(sm, v.keys, v.r.n, v.r.size, v.out);
}

// Bounded to two CTAs an SM, as select_rows is: the sampled threshold takes it from 62 to 96
// registers without the bound (one CTA of 512 threads an SM: B=8 N=32K 5% slower, bench/NOTES.md).
// A bound of one CTA is not the same as none: ptxas then takes 84.
template <class S>
__global__ void __launch_bounds__(S::kSelectThreads, 1024 / S::kSelectThreads) decode_select(const DecodeParams p) {
  begin_grid();
  __shared__ RadixSelectSmem<S::kSelectCapacity> sm;
  phase_start();  // the selection's phase marks (TKA_PHASE_CLOCKS) need it, though nothing reports here
  SelectView<S> v = select_view<S>(p, blockIdx.x);
  select_row_alone<S>(sm, v);
  finish_row<S>(p, v, blockIdx.x);
}

// Few long rows on sm_90+ (DecodeConfig::select_split 3): a cluster of CTAs per row (launch
// attribute), CTA c selecting from the c-th slice of the row's scores, as the selection op's
// select_rows_cluster does for unsorted rows (global slots by the exact threshold:
// radix_select_cluster.cuh; the bucket ranks first, cluster_bucket_ranks.cuh). A head's scores
// as they are stream through the dynamic shared memory (the ring); forced keys (n_sink, n_local)
// and the max over a group's heads take the per-thread loads instead. Rows that the one-read
// rule leaves out (short ones, k >= N), and rows whose estimates both missed, go to the
// cluster's first CTA alone, which also writes the row's padding and count. One CTA an SM (the
// launch pads the shared memory to half the SM), so it may use that CTA's registers.
template <class S>
__global__ void __launch_bounds__(S::kSelectThreads, 1) decode_select_cluster(const DecodeParams p) {
  begin_grid();
#if __CUDA_ARCH__ >= 900
  typedef RowStream<S::kSelectThreads, kDecodeSelectStages, float> Stream;
  __shared__ __align__(16) RadixSelectSmem<S::kSelectCapacity> sm;
  __shared__ ClusterCounts cc;
  extern __shared__ uint4 dynamic_smem[];
  phase_start();
  const int ctas = cluster_size(), me = cluster_rank(), row = static_cast<int>(blockIdx.x) / ctas;
  SelectView<S> v = select_view<S>(p, row);
  int got = -1;
  if constexpr (S::kSelectCapacity >= kSampleCapacity) {
    if (v.r.size > 0 && v.r.size < v.r.n && sampled_select_pays(v.r.n, v.r.size, S::kSelectCapacity)) {
      const int scratch_bytes = static_cast<int>(dynamic_smem_bytes());
      constexpr bool kOneHead = !S::kPerGroup || S::kGroup == 1;
      const bool as_stored = kOneHead && v.keys.fsink == 0 && v.keys.flocal == 0;
      uint4* ring = as_stored && scratch_bytes >= Stream::kRingBytes ? dynamic_smem : nullptr;
      // Candidate counts are packed two to an int (16 bits each) while they are summed.
      // The row's indices in descending order of their scores: any order serves the attend, and the
      // bucket ranks are the shortest path from the candidates to the slots.
      BucketRanks<S::kSelectThreads, S::kSelectCapacity, SelectedOut> ranked{sm, v.r.size, dynamic_smem, scratch_bytes,
                                                                             v.out};
      got = radix_select_row_cluster<S::kSelectThreads, kDecodeSelectStages>(
          sm, cc, v.keys, v.r.n, v.r.size, v.out, true, ring, reinterpret_cast<u32*>(dynamic_smem),
          min(scratch_bytes / 4, 0x7fff), ranked);
      // No CTA leaves while another may read its shared memory (none does after the bucket ranks).
      if (got >= 0 && !ranked.bucketed) cluster_sync();
    }
  }
  if (me == 0) {
    if (got < 0) select_row_alone<S>(sm, v);
    finish_row<S>(p, v, row);
  }
#endif
}

// Split selection, grid (select_split.chunks, rows) for phases 1-2 and (rows) for phase 3.
// Whether this chunk has work: rows that keep every key (or none) go straight to phase 3.
template <class S>
__device__ __forceinline__ bool split_chunk(const DecodeParams& p, const SelectView<S>& v, int* begin, int* end) {
  split_chunk_range(p.select_split, v.r.n, begin, end);
  return v.r.size > 0 && v.r.size < v.r.n;
}

template <class S>
__global__ void __launch_bounds__(S::kSelectThreads) decode_select_hist(const DecodeParams p) {
  begin_grid();
  __shared__ SplitSelectSmem sm;
  const SelectView<S> v = select_view<S>(p, blockIdx.y);
  int begin, end;
  if (!split_chunk<S>(p, v, &begin, &end) || begin >= end) return;
  split_histogram<S::kSelectThreads>(sm, v.keys, begin, end, split_select_row(p.select_split, blockIdx.y));
}

template <class S>
__global__ void __launch_bounds__(S::kSelectThreads) decode_select_classify(const DecodeParams p) {
  begin_grid();
  __shared__ RadixSelectSmem<4> sm;
  const SelectView<S> v = select_view<S>(p, blockIdx.y);
  int begin, end;
  if (!split_chunk<S>(p, v, &begin, &end)) return;
  split_classify<S::kSelectThreads, S::kSelectCapacity>(sm, v.keys, begin, max(begin, end), v.r.size, blockIdx.x,
                                                        split_select_row(p.select_split, blockIdx.y));
}

template <class S>
__global__ void __launch_bounds__(S::kSelectThreads) decode_select_finish(const DecodeParams p) {
  begin_grid();
  __shared__ RadixSelectSmem<S::kSelectCapacity> sm;
  SelectView<S> v = select_view<S>(p, blockIdx.x);
  split_finish<S::kSelectThreads>(sm, v.keys, v.r.n, v.r.size, split_select_row(p.select_split, blockIdx.x), v.out);
  finish_row<S>(p, v, blockIdx.x);
}

// ---------------------------------------------------------------------------------------------
// Attend pass. Grid: (selection rows, splits). Each CTA takes up to kAttendChunk selected keys
// of its row and all heads that share the selection (1, or the group), reads each V row once.
// decode_select_coop runs the same split attention (attend_split) in its own grid, after the
// selection: kThreads is the CTA's size either way, kUnrollRows the V rows in flight per lane group.
template <class S, int kThreads, int kUnrollRows>
struct AttendShape {
  static constexpr int kHeads = S::kPerGroup ? S::kGroup : 1;
  static constexpr int kLanesPerRow = S::kHeadDim / 8;  // 16-byte vectors per V row
  static constexpr int kRowsPerWarp = 32 / kLanesPerRow;
  static constexpr int kWarps = kThreads / 32;
  static constexpr int kStep = kWarps * kRowsPerWarp;  // V rows a CTA loads at once
  // V rows in flight per lane group: gathers are latency bound.
  static constexpr int kUnroll = kUnrollRows;
};

// Each selected key's index; paged caches: its page (looked up once, with the index) and in slot
// its place in the page (page sizes are at most 256; bytes keep the group kernel's static shared
// memory under 48 KB). The layout decode_attend_smem (autotune/decode_space.cpp) sizes.
template <class S>
struct AttendSmem {
  static constexpr int kHeads = S::kPerGroup ? S::kGroup : 1;
  int idx[S::kAttendChunk];
  unsigned char slot[S::kPaged ? S::kAttendChunk : 1];
  float w[kHeads][S::kAttendChunk];
  float red[kHeads][S::kHeadDim];
  float m[kHeads], l[kHeads];
  BlockScratch scratch;
  static_assert(!S::kPaged || S::kPageSize <= 256, "a key's place in its page is one byte");
};

// Columns [col, col + 8) of the V rows t0 + u * kStep (u < kUnroll) of the split's selected keys
// (cnt of them; zeros past it, and for a page outside the pool).
template <class S, class Shape>
__device__ __forceinline__ void load_v_rows(const DecodeParams& p, int b, int kvh, const int* idx_s,
                                            const unsigned char* slot_s, int cnt, int t0, int col,
                                            uint4 (&rows)[Shape::kUnroll]) {
  using E = typename S::Elem;
#pragma unroll
  for (int u = 0; u < Shape::kUnroll; ++u) {
    const int t = t0 + u * Shape::kStep;
    rows[u] = make_uint4(0, 0, 0, 0);
    if (t < cnt) {
      // The page was looked up with the index: no block-table load between V loads.
      const E* row = S::kPaged ? page_row<S>(p, p.v, p.v_stride, idx_s[t], kvh, slot_s[t])
                               : kv_row<S>(p, p.v, p.v_stride, b, kvh, idx_s[t]);
      if (row) rows[u] = load_nc16(row + col);
    }
  }
}

template <class S>
__device__ __forceinline__ void write_output(const DecodeParams& p, int b, int j, int h, int c, float value, float lse,
                                             bool write_lse) {
  using E = typename S::Elem;
  E* o = static_cast<E*>(p.out);
  o[b * p.out_stride[0] + j * p.out_stride[1] + h * p.out_stride[2] + c] = from_float<E>(value);
  if (write_lse && p.lse) p.lse[b * p.lse_stride[0] + j * p.lse_stride[1] + h * p.lse_stride[2]] = lse;
}

template <class S>
__device__ __forceinline__ bool sequence_failed(const DecodeParams& p, int b) {
  bool bad;
  usable_len<S>(p, b, &bad);
  return bad || (S::kPaged && p.flags[b] != 0);
}

// Split `split` of selection row `row`: its selected keys [split * split_len, ...), softmax and
// the weighted sum of their V rows for every head of the selection; the output itself when the
// row is one split, else the split's partial result (sum, max, sum of weights) for decode_merge.
template <class S, int kThreads, int kUnrollRows = 16>
__device__ __forceinline__ void attend_split(const DecodeParams& p, AttendSmem<S>& sm, int row, int split) {
  using Shape = AttendShape<S, kThreads, kUnrollRows>;
  using E = typename S::Elem;
  constexpr int H = Shape::kHeads;

  const SelectRow r = select_row<S>(p, row);
  const int hq = p.num_kv_heads * S::kGroup;
  const int kvh = S::kPerGroup ? r.hsel : r.hsel / S::kGroup;
  const int h0 = S::kPerGroup ? r.hsel * S::kGroup : r.hsel;
  const long long srow = (static_cast<long long>(r.b) * S::kQLen + r.j) * hq + h0;
  const int count = p.selected_count[row];
  const int lo = split * p.split_len;
  const int cnt = clamp_count(count - lo, p.split_len);

  // Selected indices and their scores (re-read from the workspace, in log2 units).
  const int* sel = p.selected + static_cast<long long>(row) * p.max_k + lo;
  // This thread's first index asked for with the count, not after it (a slot of the row past its
  // count is unwritten or stale: read, never used).
  const int t_first = threadIdx.x;
  const int first = t_first < p.split_len && lo + t_first < p.max_k ? sel[t_first] : 0;
  for (int t = threadIdx.x; t < cnt; t += kThreads) {
    const int i = t == t_first ? first : sel[t];
    if constexpr (S::kPaged) {
      sm.idx[t] = page_of<S>(p, r.b, i);
      sm.slot[t] = static_cast<unsigned char>(i % S::kPageSize);
    } else {
      sm.idx[t] = i;
    }
#pragma unroll
    for (int h = 0; h < H; ++h) sm.w[h][t] = p.scores[(srow + h) * p.score_stride + i] * kLog2e;
  }
  __syncthreads();

  for (int h = 0; h < H; ++h) {
    float m = neg_inf();
    for (int t = threadIdx.x; t < cnt; t += kThreads) m = fmaxf(m, sm.w[h][t]);
    m = block_max<kThreads>(m, sm.scratch);
    // A split whose scores are all -inf weighs them exp2(-inf - 0) = 0 (l = 0, which the merge
    // skips), not exp2(-inf - -inf) = NaN.
    const float mref = m == neg_inf() ? 0.f : m;
    float l = 0.f;
    for (int t = threadIdx.x; t < cnt; t += kThreads) {
      const float w = fast_exp2(sm.w[h][t] - mref);
      sm.w[h][t] = w;
      l += w;
    }
    // Sum l over the block (deterministic order: warp tree, then warps in order).
    l = warp_sum(l);
    if ((threadIdx.x & 31) == 0) sm.scratch.floats[threadIdx.x >> 5] = l;
    __syncthreads();
    if (threadIdx.x == 0) {
      float total = 0.f;
      for (int w = 0; w < Shape::kWarps; ++w) total += sm.scratch.floats[w];
      sm.m[h] = m;
      sm.l[h] = total;
    }
    __syncthreads();
  }

  // Weighted sum of V rows: kLanesPerRow lanes cover one row with 16-byte loads.
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int sub = lane / Shape::kLanesPerRow, col = (lane % Shape::kLanesPerRow) * 8;
  float acc[H][8];
#pragma unroll
  for (int h = 0; h < H; ++h)
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[h][e] = 0.f;
  constexpr int kStep = Shape::kStep, kUnroll = Shape::kUnroll;
  for (int t0 = warp * Shape::kRowsPerWarp + sub; t0 < cnt; t0 += kStep * kUnroll) {
    uint4 v[kUnroll];
    load_v_rows<S, Shape>(p, r.b, kvh, sm.idx, sm.slot, cnt, t0, col, v);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int t = t0 + u * kStep;
      if (t >= cnt) break;
      float vf[8];
      unpack8(v[u], static_cast<E*>(nullptr), vf);
#pragma unroll
      for (int h = 0; h < H; ++h) {
        const float w = sm.w[h][t];
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[h][e] += w * vf[e];
      }
    }
  }
  // Lanes that share a column, then warps in order: a fixed summation order, deterministic.
#pragma unroll
  for (int o = Shape::kLanesPerRow; o < 32; o <<= 1)
#pragma unroll
    for (int h = 0; h < H; ++h)
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[h][e] += __shfl_xor_sync(kFullMask, acc[h][e], o);
  for (int w = 0; w < Shape::kWarps; ++w) {
    if (warp == w && sub == 0) {
#pragma unroll
      for (int h = 0; h < H; ++h)
#pragma unroll
        for (int e = 0; e < 8; ++e) sm.red[h][col + e] = (w == 0 ? 0.f : sm.red[h][col + e]) + acc[h][e];
    }
    __syncthreads();
  }

  const bool failed = sequence_failed<S>(p, r.b);
  for (int x = threadIdx.x; x < H * S::kHeadDim; x += kThreads) {
    const int h = x / S::kHeadDim, c = x % S::kHeadDim;
    if (p.splits == 1) {
      const float l = sm.l[h];
      // l != 0 rather than l > 0: a selected NaN score must reach the output.
      float value = l != 0.f ? sm.red[h][c] / l : 0.f;
      float lse = l != 0.f ? (sm.m[h] + __log2f(l)) * kLn2 : neg_inf();
      if (failed) value = lse = quiet_nan();
      write_output<S>(p, r.b, r.j, h0 + h, c, value, lse, c == 0);
    } else {
      const long long orow = (static_cast<long long>(r.b) * S::kQLen + r.j) * hq + h0 + h;
      float* part = p.partial + (orow * p.splits + split) * (S::kHeadDim + 2);
      part[c] = sm.red[h][c];
      if (c == 0) {
        part[S::kHeadDim] = cnt > 0 ? sm.m[h] : neg_inf();
        part[S::kHeadDim + 1] = sm.l[h];
      }
    }
  }
}

template <class S>
__global__ void __launch_bounds__(S::kAttendThreads) decode_attend(const DecodeParams p) {
  begin_grid();
  __shared__ AttendSmem<S> sm;
  attend_split<S, S::kAttendThreads>(p, sm, blockIdx.x, blockIdx.y);
}

// Cooperative selection, grid (select_coop.chunks, rows), every CTA resident at once: each CTA
// holds a chunk of its row's keys in dynamic shared memory (radix_select_coop.cuh), and one launch
// does what the split selection's three do. Chunk 0 writes the row's padding and count. Then
// (S::kCoopAttends: per-head selection, as the host's DecodeKernelSpec::coop_attends decides),
// after one more grid barrier, the same CTAs attend: CTA c takes the row's splits c, c + chunks,
// ... (decode_attend's work, its shared memory in the chunk's bytes), and decode_merge follows.
template <class S>
__global__ void __launch_bounds__(S::kSelectThreads, 1024 / S::kSelectThreads)
    decode_select_coop(const DecodeParams p) {
  begin_grid();
  __shared__ CoopSelectSmem sm;
  extern __shared__ __align__(16) u32 chunk_keys[];
  phase_start();  // as in decode_select
  const int row = blockIdx.y;
  SelectView<S> v = select_view<S>(p, row);
  coop_select_chunk<S::kSelectThreads>(sm, chunk_keys, p.select_coop, row, v.keys, v.r.n, v.r.size, v.out);
  if (blockIdx.x == 0) finish_row<S>(p, v, row);
  if constexpr (S::kCoopAttends) {
    grid_barrier();  // every chunk's indices and the row's count are written
    AttendSmem<S>& attend = *reinterpret_cast<AttendSmem<S>*>(chunk_keys);
    for (int split = blockIdx.x; split < p.splits; split += gridDim.x) {
      // 8 V rows in flight per lane group, not 16: the selection's 64 registers a thread would spill.
      attend_split<S, S::kSelectThreads, 8>(p, attend, row, split);
      __syncthreads();  // the split's results are out of shared memory before the next one's keys
    }
  }
}

// Merge pass (splits > 1). Grid: B * q_len * Hq output rows; threads over the head dim.
template <class S>
__global__ void __launch_bounds__(S::kHeadDim) decode_merge(const DecodeParams p) {
  begin_grid();
  const int hq = p.num_kv_heads * S::kGroup;
  const int orow = blockIdx.x;
  const int h = orow % hq, j = (orow / hq) % S::kQLen, b = orow / hq / S::kQLen;
  const float* part = p.partial + static_cast<long long>(orow) * p.splits * (S::kHeadDim + 2);
  const int c = threadIdx.x;
  float m = neg_inf();
  // The first kHeld splits' max, sum and column c loaded at once, before any is used: one round
  // trip (a loop that tests each split's sum before reading its max and column waited out two a
  // split: 16 at batch 1). Later splits, if any, one at a time; the same order of the sums.
  constexpr int kHeld = 8;
  float held_m[kHeld], held_l[kHeld], held_v[kHeld];
#pragma unroll
  for (int u = 0; u < kHeld; ++u) {
    const float* ps = part + u * (S::kHeadDim + 2);
    const bool in = u < p.splits;
    held_m[u] = in ? ps[S::kHeadDim] : neg_inf();
    held_l[u] = in ? ps[S::kHeadDim + 1] : 0.f;
    held_v[u] = in ? ps[c] : 0.f;
  }
#pragma unroll
  for (int u = 0; u < kHeld; ++u) m = fmaxf(m, held_m[u]);
  for (int s = kHeld; s < p.splits; ++s) m = fmaxf(m, part[s * (S::kHeadDim + 2) + S::kHeadDim]);
  const float mref = m == neg_inf() ? 0.f : m;  // all splits empty or all-NaN
  float l = 0.f, acc = 0.f;
  const auto add = [&](float ms, float ls, float vs) {
    if (ls == 0.f) return;  // an empty split (or none)
    const float w = fast_exp2(ms - mref);
    l += w * ls;
    acc += w * vs;
  };
#pragma unroll
  for (int u = 0; u < kHeld; ++u) add(held_m[u], held_l[u], held_v[u]);
  for (int s = kHeld; s < p.splits; ++s) {
    const float* ps = part + s * (S::kHeadDim + 2);
    add(ps[S::kHeadDim], ps[S::kHeadDim + 1], ps[c]);
  }
  float value = l != 0.f ? acc / l : 0.f;
  float lse = l != 0.f ? (m + __log2f(l)) * kLn2 : neg_inf();
  if (sequence_failed<S>(p, b)) value = lse = quiet_nan();
  write_output<S>(p, b, j, h, c, value, lse, c == 0);
}

}  // namespace tka
