// Sparse attention over caller-given indices (design section 2.2): for each query head, softmax
// over the scores of the listed keys and the weighted sum of their value rows, as DeepSeek's
// sparse attention runs after its indexer. The list belongs to a query head, or to a KV head and
// all the query heads of its group (MQA / MLA: one list for all heads, each key row read once).
//
//   sparse_attend  grid (rows = B * q_len * Hsel, splits, head tiles): each CTA takes up to
//                  split_len listed keys of its row and up to kHeadTile query heads, 32 keys at
//                  a time: scores (one warp per key, lanes across the head dim), online softmax
//                  per head, then the value rows (threads across d_v) into fp32 accumulators
//   sparse_merge   one CTA per (b, j, h) when splits > 1: combines the partial results by their
//                  max and sum (flash-decoding)
//
// An index counts when 0 <= i < visible length (query token j of sequence b sees keys
// i < seq_lens[b] - q_len + j + 1); others (-1 padding included) are skipped. A head with no
// valid index gets 0 and lse -inf. A sequence length outside the cache makes the sequence's output
// NaN; a listed key in a page outside the pool makes its head's output NaN (it is not read).
//
// Expects Spec with: Elem, kHeadDim, kHeadDimV, kSharedKV, kGroup, kQLen, kPerGroup, kPaged,
// kPageSize, kThreads, kHeadTile.
#pragma once
#include "common/block_scan.cuh"
#include "sparse_params.cuh"

namespace tka {

constexpr int kSparseChunk = 32;

template <class S>
struct SparseShape {
  static constexpr int kHeads = S::kPerGroup ? S::kGroup : 1;  // query heads sharing a list
  static constexpr int kTileHeads = kHeads < S::kHeadTile ? kHeads : S::kHeadTile;
  static constexpr int kWarps = S::kThreads / 32;
  static constexpr int kKPerLane = (S::kHeadDim + 31) / 32;
  static constexpr int kVPerThread = (S::kHeadDimV + S::kThreads - 1) / S::kThreads;
};

// Row pointer of key `i` of KV head `kvh` of sequence `b`, or nullptr outside the page pool.
template <class S>
__device__ __forceinline__ const typename S::Elem* sparse_row(const SparseParams& p, const void* base,
                                                              const long long (&st)[3], int b, int kvh,
                                                              int i) {
  typedef typename S::Elem E;
  constexpr int kPage = S::kPaged ? S::kPageSize : 1;  // no division by zero in the unused branch
  const E* x = static_cast<const E*>(base);
  if (!S::kPaged) return x + b * st[0] + kvh * st[1] + static_cast<long long>(i) * st[2];
  const int page = p.block_table[b * p.block_table_stride + i / kPage];
  if (page < 0 || page >= p.num_pages) return nullptr;
  return x + page * st[0] + (i % kPage) * st[1] + kvh * st[2];
}

template <class S>
__global__ void __launch_bounds__(S::kThreads) sparse_attend(const SparseParams p) {
  typedef SparseShape<S> Sh;
  typedef typename S::Elem E;
  __shared__ float q_s[Sh::kTileHeads][S::kHeadDim];
  __shared__ float s_s[Sh::kTileHeads][kSparseChunk];  // scores, then weights
  __shared__ const E* k_rows[kSparseChunk];
  __shared__ const E* v_rows[kSparseChunk];
  __shared__ int state[kSparseChunk];  // 1 valid, 0 skipped, -1 outside the pool
  __shared__ float m_s[Sh::kTileHeads], l_s[Sh::kTileHeads], alpha_s[Sh::kTileHeads];

  const int hsel_count = S::kPerGroup ? p.num_kv_heads : p.num_kv_heads * S::kGroup;
  const int row = blockIdx.x, hsel = row % hsel_count, bj = row / hsel_count;
  const int j = bj % S::kQLen, b = bj / S::kQLen;
  const int kvh = S::kPerGroup ? hsel : hsel / S::kGroup;
  const int h0 = (S::kPerGroup ? hsel * S::kGroup : hsel) + blockIdx.z * Sh::kTileHeads;
  const int heads = min(Sh::kTileHeads, Sh::kHeads - static_cast<int>(blockIdx.z) * Sh::kTileHeads);

  const int seq = p.seq_lens[b];
  const int limit = S::kPaged ? p.max_pages * S::kPageSize : p.capacity;
  const bool bad_len = seq < 0 || seq > limit;
  const int n = bad_len ? 0 : max(0, seq - S::kQLen + j + 1);

  for (int x = threadIdx.x; x < Sh::kTileHeads * S::kHeadDim; x += S::kThreads) {
    const int hh = x / S::kHeadDim, c = x % S::kHeadDim;
    float v = 0.f;
    if (hh < heads) v = to_float(static_cast<const E*>(p.q)[b * p.q_stride[0] + j * p.q_stride[1] + (h0 + hh) * p.q_stride[2] + c]);
    q_s[hh][c] = v * p.scale;
  }
  if (threadIdx.x < Sh::kTileHeads) m_s[threadIdx.x] = neg_inf(), l_s[threadIdx.x] = 0.f;
  float acc[Sh::kTileHeads][Sh::kVPerThread];
#pragma unroll
  for (int hh = 0; hh < Sh::kTileHeads; ++hh)
#pragma unroll
    for (int e = 0; e < Sh::kVPerThread; ++e) acc[hh][e] = 0.f;

  const int* list = p.indices + b * p.indices_stride[0] + j * p.indices_stride[1] + hsel * p.indices_stride[2];
  const int lo = blockIdx.y * p.split_len, hi = min(lo + p.split_len, p.width);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  bool poisoned = bad_len;
  for (int base = lo; base < hi; base += kSparseChunk) {
    __syncthreads();  // the previous chunk's rows and weights are consumed
    if (threadIdx.x < kSparseChunk) {
      const int c = base + threadIdx.x;
      const int i = c < hi ? list[c] : -1;
      const E* r = nullptr;
      const E* vr = nullptr;
      int st = 0;
      if (i >= 0 && i < n) {
        r = sparse_row<S>(p, p.k, p.k_stride, b, kvh, i);
        st = r ? 1 : -1;
        if (r) vr = S::kSharedKV ? r : sparse_row<S>(p, p.v, p.v_stride, b, kvh, i);
      }
      k_rows[threadIdx.x] = r;
      v_rows[threadIdx.x] = vr;
      state[threadIdx.x] = st;
    }
    __syncthreads();
    // Scores: one warp per key, lanes across the head dim, every head of the tile.
    for (int c = warp; c < kSparseChunk; c += Sh::kWarps) {
      const int st = state[c];
      if (st != 1) {
        if (lane < Sh::kTileHeads) s_s[lane][c] = st == 0 ? neg_inf() : quiet_nan();
        continue;
      }
      float kv[Sh::kKPerLane];
#pragma unroll
      for (int e = 0; e < Sh::kKPerLane; ++e) {
        const int d = lane + 32 * e;
        kv[e] = d < S::kHeadDim ? to_float(k_rows[c][d]) : 0.f;
      }
#pragma unroll
      for (int hh = 0; hh < Sh::kTileHeads; ++hh) {
        float dot = 0.f;
#pragma unroll
        for (int e = 0; e < Sh::kKPerLane; ++e) {
          const int d = lane + 32 * e;
          if (d < S::kHeadDim) dot += q_s[hh][d] * kv[e];
        }
        dot = warp_sum(dot);
        if (lane == 0) s_s[hh][c] = dot;
      }
    }
    __syncthreads();
    // Online softmax, one thread per head: new max, rescale factor, weights.
    if (threadIdx.x < Sh::kTileHeads) {
      const int hh = threadIdx.x;
      float mc = neg_inf();
      for (int c = 0; c < kSparseChunk; ++c) mc = fmaxf(mc, s_s[hh][c]);
      const float m_old = m_s[hh], m_new = fmaxf(m_old, mc);
      const float alpha = m_new == neg_inf() ? 1.f : __expf(m_old - m_new);
      float sum = 0.f;
      for (int c = 0; c < kSparseChunk; ++c) {
        const float s = s_s[hh][c];
        const float w = s != s ? s : (m_new == neg_inf() ? 0.f : __expf(s - m_new));
        s_s[hh][c] = w;
        sum += w;
      }
      m_s[hh] = m_new;
      l_s[hh] = l_s[hh] * alpha + sum;
      alpha_s[hh] = alpha;
    }
    __syncthreads();
#pragma unroll
    for (int hh = 0; hh < Sh::kTileHeads; ++hh)
#pragma unroll
      for (int e = 0; e < Sh::kVPerThread; ++e) acc[hh][e] *= alpha_s[hh];
    for (int c = 0; c < kSparseChunk; ++c) {
      const int st = state[c];
      if (st == 0) continue;
      if (st < 0) {
        poisoned = true;
        continue;
      }
      const E* vr = v_rows[c];
#pragma unroll
      for (int e = 0; e < Sh::kVPerThread; ++e) {
        const int d = threadIdx.x + S::kThreads * e;
        if (d < S::kHeadDimV) {
          const float v = to_float(vr[d]);
#pragma unroll
          for (int hh = 0; hh < Sh::kTileHeads; ++hh) acc[hh][e] += s_s[hh][c] * v;
        }
      }
    }
  }
  __syncthreads();

  // Results: final when one split, else partial (o unnormalised, max, sum).
#pragma unroll
  for (int hh = 0; hh < Sh::kTileHeads; ++hh) {  // constant bounds keep acc in registers
    if (hh >= heads) break;
    const int h = h0 + hh;
    const float m = poisoned ? quiet_nan() : m_s[hh], l = poisoned ? quiet_nan() : l_s[hh];
    if (p.splits == 1) {
      const float inv = l > 0.f ? 1.f / l : (l == 0.f ? 0.f : quiet_nan());
      E* o = static_cast<E*>(p.out) + b * p.out_stride[0] + j * p.out_stride[1] + h * p.out_stride[2];
#pragma unroll
      for (int e = 0; e < Sh::kVPerThread; ++e) {
        const int d = threadIdx.x + S::kThreads * e;
        if (d < S::kHeadDimV) o[d] = from_float<E>(poisoned ? quiet_nan() : acc[hh][e] * inv);
      }
      if (p.lse && threadIdx.x == 0)
        p.lse[b * p.lse_stride[0] + j * p.lse_stride[1] + h * p.lse_stride[2]] = l > 0.f ? m + logf(l) : (l == 0.f ? neg_inf() : quiet_nan());
    } else {
      const long long out_row = (static_cast<long long>(b) * S::kQLen + j) * (p.num_kv_heads * S::kGroup) + h;
      float* part = p.partial + (out_row * p.splits + blockIdx.y) * (S::kHeadDimV + 2);
#pragma unroll
      for (int e = 0; e < Sh::kVPerThread; ++e) {
        const int d = threadIdx.x + S::kThreads * e;
        if (d < S::kHeadDimV) part[d] = poisoned ? quiet_nan() : acc[hh][e];
      }
      if (threadIdx.x == 0) part[S::kHeadDimV] = m, part[S::kHeadDimV + 1] = l;
    }
  }
}

// Grid: B * q_len * Hq rows; threads over d_v.
template <class S>
__global__ void __launch_bounds__(S::kThreads) sparse_merge(const SparseParams p) {
  typedef typename S::Elem E;
  const int hq = p.num_kv_heads * S::kGroup;
  const long long row = blockIdx.x;
  const int h = row % hq, j = (row / hq) % S::kQLen, b = row / (static_cast<long long>(hq) * S::kQLen);
  const float* part = p.partial + row * p.splits * (S::kHeadDimV + 2);
  float m = neg_inf();
  bool nan = false;
  for (int s = 0; s < p.splits; ++s) {
    const float ms = part[s * (S::kHeadDimV + 2) + S::kHeadDimV];
    const float ls = part[s * (S::kHeadDimV + 2) + S::kHeadDimV + 1];
    nan |= ms != ms || ls != ls;  // a split whose valid keys all scored NaN has max -inf, sum NaN
    m = fmaxf(m, ms);
  }
  float l = 0.f;
  for (int s = 0; s < p.splits; ++s) {
    const float* ps = part + s * (S::kHeadDimV + 2);
    if (ps[S::kHeadDimV] != neg_inf()) l += ps[S::kHeadDimV + 1] * __expf(ps[S::kHeadDimV] - m);
  }
  if (nan) l = quiet_nan();
  E* o = static_cast<E*>(p.out) + b * p.out_stride[0] + j * p.out_stride[1] + h * p.out_stride[2];
  for (int d = threadIdx.x; d < S::kHeadDimV; d += S::kThreads) {
    float acc = 0.f;
    for (int s = 0; s < p.splits; ++s) {
      const float* ps = part + s * (S::kHeadDimV + 2);
      if (ps[S::kHeadDimV] != neg_inf()) acc += ps[d] * __expf(ps[S::kHeadDimV] - m);
    }
    o[d] = from_float<E>(l > 0.f ? acc / l : (l == 0.f ? 0.f : quiet_nan()));
  }
  if (p.lse && threadIdx.x == 0)
    p.lse[b * p.lse_stride[0] + j * p.lse_stride[1] + h * p.lse_stride[2]] =
        l > 0.f ? m + logf(l) : (l == 0.f ? neg_inf() : quiet_nan());
}

}  // namespace tka
