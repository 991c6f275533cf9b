// Sparse attention over caller-given indices (contract: include/topkattn/topkattn.h): for each query head, softmax
// over the scores of the listed keys and the weighted sum of their value rows, as DeepSeek's
// sparse attention runs after its indexer. The list belongs to a query head, or to a KV head and
// all the query heads of its group (MQA / MLA: one list for all heads, each key row read once).
//
//   sparse_attend  grid (rows = B * q_len * Hsel, splits, head tiles): each CTA takes up to
//                  split_len listed keys of its row and a tile of its query heads, 32 keys a
//                  tile. The listed rows are gathered into shared memory with cp.async, the next
//                  tile while this one is computed; scores and P V run on tensor cores (mma
//                  m16n8k16, fp32 accumulators), the online softmax in between on CUDA cores.
//                  Up to 16 heads a tile: 4 warps on the same 16 mma rows, each 8 of the keys'
//                  scores and a quarter of d_v. Tiles of 32 or 64 heads (MLA's 128 heads on one
//                  list): a pair of warps per 16 heads, each half of the keys' scores and half
//                  of d_v, so that a gathered row is read once for 64 heads instead of 16.
//   sparse_merge   one CTA per (b, j, h) when splits > 1: combines the partial results by their
//                  max and sum (flash-decoding)
//
// An index counts when 0 <= i < visible length (query token j of sequence b sees keys
// i < seq_lens[b] - q_len + j + 1); others (-1 padding included) are skipped and their rows
// zero-filled, never read. A head with no valid index gets 0 and lse -inf. A sequence length
// outside the cache makes the sequence's output NaN; a listed key in a page outside the pool
// makes its head's output NaN (it is not read).
//
// Expects Spec with: Elem, kHeadDim, kHeadDimV, kSharedKV, kGroup, kQLen, kPerGroup, kPaged,
// kPageSize, kHeadTile (<= 16, 32 or 64), kThreads (128, or 256 for a tile of 64).
#pragma once
#include "common/block_scan.cuh"
#include "common/grid_dependency.cuh"
#include "common/kv_cache.cuh"
#include "common/memory.cuh"
#include "common/mma.cuh"
#include "sparse_params.cuh"

namespace tka {

// Warp (rw, cw) of a CTA, warp = rw + kRowWarps * cw: mma rows 16 rw .. 16 rw + 15 (query heads of
// the tile), keys cw * kWarpKeys .. of each tile's scores, output columns cw * kWarpCols .. .
template <class S>
struct SparseShape {
  static constexpr int kHeads = S::kPerGroup ? S::kGroup : 1;  // query heads sharing a list
  static constexpr int kTileHeads = kHeads < S::kHeadTile ? kHeads : S::kHeadTile;
  static constexpr int kRows = sparse_head_rows(S::kHeadTile);  // mma rows (heads past the tile: zeros)
  static constexpr int kRowWarps = kRows / kSparseHeadRows;
  static constexpr int kColWarps = kRowWarps == 1 ? 4 : 2;
  static constexpr int kWarpKeys = kSparseChunk / kColWarps;  // keys whose scores one warp computes
  static constexpr int kSTiles = kWarpKeys / 8;               // their n-tiles
  static constexpr int kQRow = S::kHeadDim + 8;               // 16-bit elements per shared row (see the layout)
  static constexpr int kVRow = S::kSharedKV ? kQRow : S::kHeadDimV + 8;
  static constexpr int kPRow = kSparseChunk + 8;
  static constexpr int kKVecs = S::kHeadDim / 8;  // 16-byte pieces of a row
  static constexpr int kVVecs = S::kHeadDimV / 8;
  static constexpr int kWarpCols = S::kHeadDimV / kColWarps;  // output columns of one warp
  static constexpr int kNTiles = kWarpCols / 8;
  static constexpr int kRowThreads = S::kThreads / kRows;  // softmax: threads per head row
  static constexpr int kRowKeys = kSparseChunk / kRowThreads;
  static_assert(S::kHeadTile <= kSparseHeadRows || S::kHeadTile == 32 || S::kHeadTile == kSparseWideTile,
                "head tiles of up to 16, 32 or 64");
  static_assert(S::kThreads == 32 * kRowWarps * kColWarps, "a warp per 16 rows and part of the columns");
  static_assert(kRowThreads * kRowKeys == kSparseChunk && kRowKeys % 4 == 0, "the softmax's split of a tile");
  static_assert(S::kHeadDim % 16 == 0 && kNTiles % 2 == 0, "head dims in whole mma tiles");
};

__device__ __forceinline__ u32 lds32(const unsigned short* p) { return *reinterpret_cast<const u32*>(p); }

template <class E>
__device__ __forceinline__ u32 pack2(float lo, float hi) {
  return u32(from_float<E>(lo).bits) | (u32(from_float<E>(hi).bits) << 16);
}

template <class S>
__global__ void __launch_bounds__(S::kThreads) sparse_attend(const SparseParams p) {
  begin_grid();
  typedef SparseShape<S> Sh;
  typedef typename S::Elem E;
  constexpr SparseSmemLayout L = sparse_smem_layout(S::kHeadDim, S::kHeadDimV, S::kSharedKV != 0, S::kHeadTile);
  constexpr int C = kSparseChunk;
  extern __shared__ __align__(16) unsigned char smem[];
  unsigned short* q_s = reinterpret_cast<unsigned short*>(smem + L.q);                       // [kRows][kQRow]
  unsigned short* k_s = reinterpret_cast<unsigned short*>(smem + L.k);                       // [2][C][kQRow]
  unsigned short* v_s = S::kSharedKV ? k_s : reinterpret_cast<unsigned short*>(smem + L.v);  // [2][C][kVRow]
  float* s_s = reinterpret_cast<float*>(smem + L.s);                                         // [kRows][C] scores
  unsigned short* p_s = reinterpret_cast<unsigned short*>(smem + L.p);                       // [kRows][kPRow] weights
  __shared__ const unsigned char* k_rows[2][C];
  __shared__ const unsigned char* v_rows[2][C];
  __shared__ int state[2][C];  // 1 valid, 0 skipped, -1 outside the pool
  __shared__ float m_s[Sh::kRows], l_s[Sh::kRows], alpha_s[Sh::kRows];

  const int hsel_count = S::kPerGroup ? p.num_kv_heads : p.num_kv_heads * S::kGroup;
  const int row = blockIdx.x, hsel = row % hsel_count, bj = row / hsel_count;
  const int j = bj % S::kQLen, b = bj / S::kQLen;
  const int kvh = S::kPerGroup ? hsel : hsel / S::kGroup;
  const int h0 = (S::kPerGroup ? hsel * S::kGroup : hsel) + blockIdx.z * Sh::kTileHeads;
  const int heads = min(Sh::kTileHeads, Sh::kHeads - static_cast<int>(blockIdx.z) * Sh::kTileHeads);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
  const int rw = warp % Sh::kRowWarps, cw = warp / Sh::kRowWarps, r0 = kSparseHeadRows * rw;

  const int seq = p.seq_lens[b];
  const int limit = S::kPaged ? p.max_pages * S::kPageSize : p.capacity;
  const bool bad_len = seq < 0 || seq > limit;
  const int n = bad_len ? 0 : max(0, seq - S::kQLen + j + 1);

  // The query tile as given (16-bit), zero rows past the tile's heads; the scale goes on the scores
  // (copied below, with the first list entries in flight).
  const E* qb = static_cast<const E*>(p.q) + b * p.q_stride[0] + j * p.q_stride[1];
  if (tid < Sh::kRows) m_s[tid] = neg_inf(), l_s[tid] = 0.f;

  const int* list = p.indices + b * p.indices_stride[0] + j * p.indices_stride[1] + hsel * p.indices_stride[2];
  const int lo = blockIdx.y * p.split_len, hi = min(lo + p.split_len, p.width);
  bool poisoned_here = false;

  // Thread tid < C's list entry of the tile at `base` (-1 past the split). Entries are fetched a
  // tile before they are resolved: the list load is then in flight during a tile's mma instead of
  // stalling the next tile's copies.
  auto fetch = [&](int base) { return tid < C && base + tid < hi ? list[base + tid] : -1; };
  // Where the listed keys of a tile live (threads < C, entry i), then their rows into buffer
  // `buf`: rows not to be read are zeros, so that their (zero) weights never meet garbage.
  auto resolve = [&](int i, int buf) {
    if (tid < C) {
      const E* r = nullptr;
      const E* vr = nullptr;
      int st = 0;
      if (i >= 0 && i < n) {
        r = kv_row<S>(p, p.k, p.k_stride, b, kvh, i);
        st = r ? 1 : -1;
        if (r && !S::kSharedKV) vr = kv_row<S>(p, p.v, p.v_stride, b, kvh, i);
      }
      poisoned_here |= st < 0;
      k_rows[buf][tid] = reinterpret_cast<const unsigned char*>(r);
      v_rows[buf][tid] = reinterpret_cast<const unsigned char*>(vr);
      state[buf][tid] = st;
    }
  };
  auto gather = [&](int buf) {
    unsigned short* kd = k_s + buf * C * Sh::kQRow;
    for (int x = tid; x < C * Sh::kKVecs; x += S::kThreads) {
      const int r = x / Sh::kKVecs, c = x % Sh::kKVecs;
      const bool ok = state[buf][r] == 1;
      cp_async16(kd + r * Sh::kQRow + 8 * c, ok ? k_rows[buf][r] + 16 * c : p.k, ok);
    }
    if (!S::kSharedKV) {
      unsigned short* vd = v_s + buf * C * Sh::kVRow;
      for (int x = tid; x < C * Sh::kVVecs; x += S::kThreads) {
        const int r = x / Sh::kVVecs, c = x % Sh::kVVecs;
        const bool ok = state[buf][r] == 1;
        cp_async16(vd + r * Sh::kVRow + 8 * c, ok ? v_rows[buf][r] + 16 * c : p.v, ok);
      }
    }
    cp_async_commit();
  };

  float o[Sh::kNTiles][4];
#pragma unroll
  for (int nt = 0; nt < Sh::kNTiles; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) o[nt][e] = 0.f;

  // The first two tiles' list entries asked for with the query tile's copies: one round trip for
  // both before the first rows are resolved.
  const int entry = fetch(lo);
  int fetched = fetch(lo + C);  // the entry of the tile after the current one
  // The query tile by cp.async, its own group, waited for with the first tile's (the loop's first
  // wait leaves only the newest group pending).
  for (int x = tid; x < Sh::kRows * Sh::kKVecs; x += S::kThreads) {
    const int hh = x / Sh::kKVecs, c = x % Sh::kKVecs;
    cp_async16(q_s + hh * Sh::kQRow + 8 * c, hh < heads ? qb + (h0 + hh) * p.q_stride[2] + 8 * c : qb, hh < heads);
  }
  cp_async_commit();
  if (lo < hi)
    resolve(entry, 0);
  else
    cp_async_wait<0>();  // no tile: nothing else would wait for the query's copies
  __syncthreads();       // the first tile's rows, the query tile, m and l
  if (lo < hi) gather(0);
  for (int base = lo, it = 0; base < hi; base += C, ++it) {
    const int buf = it & 1;
    const bool next = base + C < hi;
    if (next) {
      resolve(fetched, buf ^ 1);
      fetched = fetch(base + 2 * C);
    }
    __syncthreads();  // the next tile's rows are known; everyone is done with the previous tile
    if (next)
      gather(buf ^ 1);
    else
      cp_async_commit();  // an empty group: the wait below always leaves one pending
    cp_async_wait<1>();
    __syncthreads();  // this tile has landed, for every thread's copies

    // Scores: this warp's keys against its 16 head rows. The query fragment of a k-step serves
    // all of the warp's key tiles.
    {
      const int kb = cw * Sh::kWarpKeys;  // the warp's first key in the tile
      const unsigned short* kt = k_s + buf * C * Sh::kQRow;
      float acc[Sh::kSTiles][4];
#pragma unroll
      for (int n = 0; n < Sh::kSTiles; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
#pragma unroll
      for (int ks = 0; ks < S::kHeadDim / 16; ++ks) {
        const int c = 16 * ks;
        u32 a[4];
        ldmatrix_x4(a, q_s + (r0 + (lane & 15)) * Sh::kQRow + c + 8 * (lane >> 4));
        if constexpr (Sh::kSTiles == 1) {
          const unsigned short* kr = kt + (kb + g) * Sh::kQRow + c + 2 * t;
          const u32 bb[2] = {lds32(kr), lds32(kr + 8)};
          mma_16816(E{}, acc[0], a, bb);
        } else {
#pragma unroll
          for (int n = 0; n < Sh::kSTiles; n += 2) {
            u32 bb[4];
            ldmatrix_x4(bb, kt + (kb + 8 * n + (lane & 7) + 8 * (lane >> 4)) * Sh::kQRow + c + 8 * ((lane >> 3) & 1));
            const u32 b0[2] = {bb[0], bb[1]}, b1[2] = {bb[2], bb[3]};
            mma_16816(E{}, acc[n], a, b0);
            mma_16816(E{}, acc[n + 1], a, b1);
          }
        }
      }
#pragma unroll
      for (int n = 0; n < Sh::kSTiles; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int hr = r0 + g + 8 * (e >> 1), key = kb + 8 * n + 2 * t + (e & 1);
          const int st = state[buf][key];
          s_s[hr * C + key] = st == 1 ? acc[n][e] * p.scale : (st == 0 ? neg_inf() : quiet_nan());
        }
    }
    __syncthreads();
    // Online softmax: kRowThreads threads per head row, kRowKeys keys each. NaN scores stay NaN
    // (the max skips them), skipped keys weigh 0.
    {
      const int hr = tid / Sh::kRowThreads, part = tid % Sh::kRowThreads;
      float s[Sh::kRowKeys];
#pragma unroll
      for (int e = 0; e < Sh::kRowKeys; ++e) s[e] = s_s[hr * C + Sh::kRowKeys * part + e];
      float mc = s[0];
#pragma unroll
      for (int e = 1; e < Sh::kRowKeys; ++e) mc = fmaxf(mc, s[e]);
#pragma unroll
      for (int o2 = 1; o2 < Sh::kRowThreads; o2 <<= 1) mc = fmaxf(mc, __shfl_xor_sync(kFullMask, mc, o2));
      const float m_old = m_s[hr], m_new = fmaxf(m_old, mc);
      const float alpha = m_new == neg_inf() ? 1.f : __expf(m_old - m_new);
      float w[Sh::kRowKeys], sum = 0.f;
#pragma unroll
      for (int e = 0; e < Sh::kRowKeys; ++e) {
        w[e] = s[e] != s[e] ? s[e] : (m_new == neg_inf() ? 0.f : __expf(s[e] - m_new));
        sum += w[e];
      }
#pragma unroll
      for (int o2 = 1; o2 < Sh::kRowThreads; o2 <<= 1) sum += __shfl_xor_sync(kFullMask, sum, o2);
#pragma unroll
      for (int e = 0; e < Sh::kRowKeys; e += 4)
        *reinterpret_cast<uint2*>(p_s + hr * Sh::kPRow + Sh::kRowKeys * part + e) =
            make_uint2(pack2<E>(w[e], w[e + 1]), pack2<E>(w[e + 2], w[e + 3]));
      __syncwarp();
      if (part == 0) {
        m_s[hr] = m_new;
        l_s[hr] = l_s[hr] * alpha + sum;
        alpha_s[hr] = alpha;
      }
    }
    __syncthreads();
    // o = o * alpha + P V over this warp's output columns.
    {
      const float a_lo = alpha_s[r0 + g], a_hi = alpha_s[r0 + g + 8];
#pragma unroll
      for (int nt = 0; nt < Sh::kNTiles; ++nt) o[nt][0] *= a_lo, o[nt][1] *= a_lo, o[nt][2] *= a_hi, o[nt][3] *= a_hi;
      const unsigned short* vt = v_s + buf * C * Sh::kVRow;
      const int vkey = (lane & 7) + 8 * ((lane >> 3) & 1), vcol = cw * Sh::kWarpCols + 8 * (lane >> 4);
#pragma unroll
      for (int ks = 0; ks < C / 16; ++ks) {
        u32 a[4];
        ldmatrix_x4(a, p_s + (r0 + (lane & 15)) * Sh::kPRow + 16 * ks + 8 * (lane >> 4));
#pragma unroll
        for (int nt = 0; nt < Sh::kNTiles; nt += 2) {
          u32 bb[4];
          ldmatrix_x4_trans(bb, vt + (16 * ks + vkey) * Sh::kVRow + vcol + 8 * nt);
          const u32 b0[2] = {bb[0], bb[1]}, b1[2] = {bb[2], bb[3]};
          mma_16816(E{}, o[nt], a, b0);
          mma_16816(E{}, o[nt + 1], a, b1);
        }
      }
    }
  }
  const bool poisoned = __syncthreads_or(poisoned_here) || bad_len;  // also: m and l are final

  // Results: final when one split, else partial (o unnormalised, max, sum).
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int hh = r0 + g + 8 * half;
    if (hh >= heads) continue;
    const int h = h0 + hh;
    const float m = poisoned ? quiet_nan() : m_s[hh], l = poisoned ? quiet_nan() : l_s[hh];
    if (p.splits == 1) {
      const float inv = l > 0.f ? 1.f / l : (l == 0.f ? 0.f : quiet_nan());
      E* orow = static_cast<E*>(p.out) + b * p.out_stride[0] + j * p.out_stride[1] + h * p.out_stride[2];
#pragma unroll
      for (int nt = 0; nt < Sh::kNTiles; ++nt) {
        const int col = cw * Sh::kWarpCols + 8 * nt + 2 * t;
        const float x0 = poisoned ? quiet_nan() : o[nt][2 * half] * inv;
        const float x1 = poisoned ? quiet_nan() : o[nt][2 * half + 1] * inv;
        *reinterpret_cast<u32*>(orow + col) = pack2<E>(x0, x1);
      }
      if (p.lse && cw == 0 && t == 0)
        p.lse[b * p.lse_stride[0] + j * p.lse_stride[1] + h * p.lse_stride[2]] =
            l > 0.f ? m + logf(l) : (l == 0.f ? neg_inf() : quiet_nan());
    } else {
      const long long out_row = (static_cast<long long>(b) * S::kQLen + j) * (p.num_kv_heads * S::kGroup) + h;
      float* part = p.partial + (out_row * p.splits + blockIdx.y) * (S::kHeadDimV + 2);
#pragma unroll
      for (int nt = 0; nt < Sh::kNTiles; ++nt) {
        const int col = cw * Sh::kWarpCols + 8 * nt + 2 * t;
        part[col] = poisoned ? quiet_nan() : o[nt][2 * half];
        part[col + 1] = poisoned ? quiet_nan() : o[nt][2 * half + 1];
      }
      if (cw == 0 && t == 0) part[S::kHeadDimV] = m, part[S::kHeadDimV + 1] = l;
    }
  }
}

// Grid: B * q_len * Hq rows. Thread s reads split s's max and sum (at most kSparseMaxSplits,
// one per thread) and the block reduces them; each thread then sums its output columns over the
// splits with their weights from shared memory, 8 splits' loads in flight at once (a loop of one
// load at a time took 18 µs for 32 splits at batch 1).
template <class S>
__global__ void __launch_bounds__(S::kThreads) sparse_merge(const SparseParams p) {
  begin_grid();
  static_assert(kSparseMaxSplits <= S::kThreads, "one split per thread");
  typedef typename S::Elem E;
  constexpr int kStride = S::kHeadDimV + 2;  // a split's d_v partial sums, its max, its sum
  __shared__ float weight[kSparseMaxSplits], split_max[kSparseMaxSplits];
  __shared__ BlockScratch scratch;
  const int hq = p.num_kv_heads * S::kGroup;
  const long long row = blockIdx.x;
  const int h = row % hq, j = (row / hq) % S::kQLen, b = row / (static_cast<long long>(hq) * S::kQLen);
  const float* part = p.partial + row * p.splits * kStride;
  const int tid = threadIdx.x;
  float ms = neg_inf(), ls = 0.f;
  if (tid < p.splits) ms = part[tid * kStride + S::kHeadDimV], ls = part[tid * kStride + S::kHeadDimV + 1];
  // A split whose valid keys all scored NaN has max -inf and sum NaN: the head's output is NaN.
  const bool nan = __syncthreads_or(ms != ms || ls != ls);
  const float m = block_max<S::kThreads>(ms, scratch);
  // Splits without a valid key (max -inf) are skipped, their sums not read; any other split
  // counts even when its weight underflows to 0 (0 x NaN is NaN, as in a single split).
  const float w = ms != neg_inf() ? __expf(ms - m) : 0.f;
  if (tid < kSparseMaxSplits) weight[tid] = w, split_max[tid] = ms;
  float l = block_sum<S::kThreads>(ms != neg_inf() ? ls * w : 0.f, scratch);  // its barriers publish both
  if (nan) l = quiet_nan();
  E* o = static_cast<E*>(p.out) + b * p.out_stride[0] + j * p.out_stride[1] + h * p.out_stride[2];
  for (int d = tid; d < S::kHeadDimV; d += S::kThreads) {
    float acc = 0.f;
#pragma unroll 8
    for (int sp = 0; sp < p.splits; ++sp) {
      if (split_max[sp] != neg_inf()) acc += part[sp * kStride + d] * weight[sp];
    }
    o[d] = from_float<E>(l > 0.f ? acc / l : (l == 0.f ? 0.f : quiet_nan()));
  }
  if (p.lse && tid == 0)
    p.lse[b * p.lse_stride[0] + j * p.lse_stride[1] + h * p.lse_stride[2]] =
        l > 0.f ? m + logf(l) : (l == 0.f ? neg_inf() : quiet_nan());
}

}  // namespace tka
