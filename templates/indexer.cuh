// Lightning Indexer scores (DeepSeek Sparse Attention; contract: include/topkattn/topkattn.h): for query token j of
// sequence b and cached token s, I = sum over heads h of w_h * ReLU(scale_s * (q_h . k_s)), with
// indexer keys k in bf16 or FP8 E4M3 and a per-token scale. H_I x d_I multiply-adds per token
// (64 x 128) are too many for CUDA cores at the memory rate, so the dot products run on tensor
// cores (m16n8k16): tokens are the mma rows (A, from the key tile in shared memory), heads the
// columns (B: the query, held in registers for the whole kernel). A C fragment then holds two
// heads of two tokens per thread, so the weighted ReLU sums over heads in registers and over
// four lanes, not eight.
//
// Grid (token chunks, B * q_len); 128 threads; a tile of 64 tokens: with more than 32 heads the
// warps are 2 (token halves) x 2 (head halves), else 4 token quarters. The key tiles are gathered
// into shared memory with cp.async exactly as stored (FP8 bytes or bf16), the next kStages - 1
// tiles in flight while one is multiplied. A thread reads 16 bytes of a key row at once and
// uses them for several k-steps: the product is a sum over d, so the order of d inside a k-step
// is free as long as the query fragments follow it (thread t of a k-step takes dims
// t * V + 4 s + {0, 1} and {2, 3} of its 16-byte piece, V = values per 16 bytes, s the step).
// FP8 pairs are widened as the fragments are built:
//   sm_89+  cvt.rn.f16x2.e4m3x2 (exact) and fp16 mma; the queries are fp16, multiplied by a power
//           of two that puts the row's largest |q| near 2^14 (exact for every bf16 value within
//           2^-24 of it) and divided out of the fp32 scores;
//   sm_80   a 256-entry table to bf16 bits (exact) and bf16 mma on the queries as given.
// Tokens past the visible length score -inf (without any arithmetic); a token in a page outside
// the pool scores NaN (not read); a row whose sequence is longer than the cache or the score row
// is NaN throughout. NaN products stay NaN through the ReLU; with finite key scales, an infinite
// query element gives the infinities and NaNs of the exact products on every path (the wgmma path
// takes such heads apart; a zero scale keeps ReLU(0 x) = NaN for infinite x).
//
// Expects Spec with: kHeads (<= 64), kDim (128), kFp8, kPaged, kPageSize, kQLen, kStages (key
// tiles in flight, >= 2: a tuned knob, see autotune/indexer_space.h).
#pragma once
#include "common/block_scan.cuh"
#include "common/grid_dependency.cuh"
#include "common/memory.cuh"
#include "common/mma.cuh"
#include "common/tma.cuh"
#include "common/wgmma.cuh"
#include "indexer_params.cuh"

namespace tka {

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
constexpr bool kIndexerCvtFp8 = true;
#else
constexpr bool kIndexerCvtFp8 = false;
#endif

template <class S>
struct IndexerShape {
  static constexpr IndexerWarpLayout kLayout = indexer_warp_layout(S::kHeads);
  static constexpr int kHeadWarps = kLayout.head_warps;  // warps sharing a token range
  static constexpr int kNT = kLayout.ntiles_per_warp;    // head n-tiles (8 heads) per warp
  static constexpr int kHeadsPad = kLayout.heads_pad;
  static constexpr int kTokenWarps = 4 / kHeadWarps;
  static constexpr int kMT = kIndexerTile / kTokenWarps / 16;  // token m-tiles (16) per warp
  static constexpr int kQRow = S::kDim + 8;                    // 16-bit elements per query row
  static constexpr int kElem = S::kFp8 ? 1 : 2;                // bytes per key value
  static constexpr int kKBytes = S::kDim * kElem;              // bytes per cached key row
  static constexpr int kPer16 = 16 / kElem;                    // key values per 16 bytes
  static constexpr int kPieces = kKBytes / 16;                 // 16-byte pieces per key row
  static constexpr int kChunks = S::kDim / (4 * kPer16);       // 4 threads read a chunk of d
  static constexpr int kSteps = kPer16 / 4;                    // k-steps (16 of d) per chunk
  static constexpr bool kHalfQ = S::kFp8 && kIndexerCvtFp8;    // fp16 queries and mma
  static constexpr IndexerSmemLayout kSmem = indexer_smem_layout(S::kHeads, S::kDim, S::kFp8, S::kStages);
  static_assert(kIndexerThreads == 128 && kMT >= 1, "four warps over a 64-token tile");
  static_assert(S::kDim % (4 * kPer16) == 0, "whole chunks of d");
};

// Where the 16-byte piece `c` of key row `r` sits in a tile: odd rows have the halves of each
// 128 bytes swapped, so that the 8 lanes of a quarter warp (rows g and g + 1, 4 pieces each)
// read 8 different bank groups.
__device__ __forceinline__ int indexer_piece(int r, int c) { return c ^ ((r & 1) << 2); }

// max(x, 0) that lets NaN through (fmaxf would turn it into 0): a NaN key or weight must not
// pass for a zero score.
__device__ __forceinline__ float relu_keep_nan(float x) {
  float y;
  asm("max.NaN.f32 %0, %1, 0f00000000;" : "=f"(y) : "f"(x));
  return y;
}
// min(x, 0), NaN kept: the ReLU of scale * x for a negative scale is scale * min(x, 0).
__device__ __forceinline__ float neg_part_keep_nan(float x) {
  float y;
  asm("min.NaN.f32 %0, %1, 0f00000000;" : "=f"(y) : "f"(x));
  return y;
}

// Key row of token s, and where its scale lives (*scale: nullptr outside the pool).
template <class S>
__device__ __forceinline__ const unsigned char* indexer_key(const IndexerParams& p, int b, int s, const float** scale,
                                                            bool* outside) {
  const unsigned char* base = static_cast<const unsigned char*>(p.k);
  constexpr int kElem = S::kFp8 ? 1 : 2;
  constexpr int kPage = S::kPaged ? S::kPageSize : 1;  // no division by zero in the unused branch
  *outside = false;
  long long row, srow;
  if (S::kPaged) {
    const int page = p.block_table[b * p.block_table_stride + s / kPage];
    if (page < 0 || page >= p.num_pages) {
      *outside = true;
      *scale = nullptr;
      return nullptr;
    }
    row = page * p.k_stride[0] + (s % kPage) * p.k_stride[1];
    srow = page * p.k_scale_stride[0] + (s % kPage) * p.k_scale_stride[1];
  } else {
    row = b * p.k_stride[0] + static_cast<long long>(s) * p.k_stride[1];
    srow = b * p.k_scale_stride[0] + static_cast<long long>(s) * p.k_scale_stride[1];
  }
  *scale = p.k_scale ? p.k_scale + srow : nullptr;
  return base + row * kElem;
}

// Two FP8 E4M3 values (the lower index in the low byte) as an mma register: fp16 pair on sm_89+,
// bf16 pair through the table otherwise.
__device__ __forceinline__ u32 widen_e4m3x2(unsigned short pair, const unsigned short* lut) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  (void)lut;
  u32 r;
  asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(r) : "h"(pair));
  return r;
#else
  return u32(lut[pair & 0xffu]) | (u32(lut[pair >> 8]) << 16);
#endif
}

// The A fragment (16-bit pairs) of k-step s from the 16-byte pieces of rows g (lo) and g + 8
// (hi) that this thread read.
template <class S>
__device__ __forceinline__ void indexer_a_frag(u32 (&a)[4], const uint4& lo, const uint4& hi, int s,
                                               const unsigned short* lut) {
  const u32 l[4] = {lo.x, lo.y, lo.z, lo.w}, h[4] = {hi.x, hi.y, hi.z, hi.w};
  if (S::kFp8) {  // 4 bytes per step: dims 4s, 4s+1 | 4s+2, 4s+3
    a[0] = widen_e4m3x2(static_cast<unsigned short>(l[s] & 0xffffu), lut);
    a[1] = widen_e4m3x2(static_cast<unsigned short>(h[s] & 0xffffu), lut);
    a[2] = widen_e4m3x2(static_cast<unsigned short>(l[s] >> 16), lut);
    a[3] = widen_e4m3x2(static_cast<unsigned short>(h[s] >> 16), lut);
  } else {  // 8 bytes per step
    a[0] = l[2 * s], a[1] = h[2 * s], a[2] = l[2 * s + 1], a[3] = h[2 * s + 1];
  }
}

// This CTA's part of one score row (blockIdx.y = b * q_len + j): tokens [begin, end), whole
// tiles over the visible ones up to tiles_end.
struct IndexerChunk {
  int b, j, n, begin, end, tiles_end;
  float* out;
};

// Fills *c and writes the chunk's tokens past its tiles (-inf, NaN for a bad row); false when no
// tile is left. A sequence longer than the cache or than the score row cannot be scored: its row
// is NaN.
template <class S>
__device__ __forceinline__ bool indexer_chunk(const IndexerParams& p, IndexerChunk* c) {
  const int row = blockIdx.y;
  c->b = row / S::kQLen, c->j = row % S::kQLen;
  const int seq = p.seq_lens[c->b];
  const int limit = min(S::kPaged ? p.max_pages * S::kPageSize : p.capacity, p.score_len);
  const bool bad = seq < 0 || seq > limit;
  c->n = bad ? 0 : max(0, seq - S::kQLen + c->j + 1);
  if (p.row_len && blockIdx.x == 0 && threadIdx.x == 0) p.row_len[row] = c->n;
  c->begin = blockIdx.x * p.tokens_per_cta;
  c->end = min(c->begin + p.tokens_per_cta, p.score_len);
  if (c->begin >= c->end) return false;
  c->out = p.scores + c->b * p.score_stride[0] + c->j * p.score_stride[1];
  constexpr int T = kIndexerTile;
  c->tiles_end = c->begin + (max(0, min(c->end, c->n) - c->begin) + T - 1) / T * T;
  for (int s = max(c->begin, c->tiles_end) + threadIdx.x; s < c->end; s += kIndexerThreads)
    c->out[s] = bad ? quiet_nan() : neg_inf();
  return c->tiles_end > c->begin;
}

// The largest finite |q(x)| over x < count as float bits (bf16 bits shifted up: ordered like the
// values), in every thread; `word` is a shared scratch word. Infinite and NaN elements are left
// out: they scale to themselves, and the power of two stays right for the finite ones.
template <class Q>
__device__ __forceinline__ u32 indexer_amax_bits(int count, Q q, u32* word) {
  if (threadIdx.x == 0) *word = 0;
  __syncthreads();
  u32 mine = 0;
  for (int x = threadIdx.x; x < count; x += kIndexerThreads) {
    const u32 bits = u32(q(x) & 0x7fffu) << 16;
    if (bits < 0x7f800000u) mine = max(mine, bits);
  }
  atomicMax(word, mine);
  __syncthreads();
  return *word;
}

// The power of two 2^u that puts a largest |q| (float bits) in [2^top, 2^(top + 1)): u = 0 for
// zero, infinite or NaN queries, clamped to powers that are normal floats.
__device__ __forceinline__ int indexer_q_shift(u32 amax_bits, int top) {
  const int e = static_cast<int>(amax_bits >> 23) - 127;  // floor(log2 max|q|)
  return (amax_bits >= 0x7f800000u || amax_bits == 0) ? 0 : min(max(top - e, -100), 100);
}
__device__ __forceinline__ float pow2f(int e) { return __uint_as_float(static_cast<u32>(127 + e) << 23); }

// The key tiles' ring: tile i's rows in buffer i % kStages, its tokens' row pointers and scales
// in entry i % kMeta. One more entry than buffers, so that resolving tile i + kStages - 1 (before
// the barrier of iteration i) writes the entry of tile i - 2, which every thread is done with, not
// that of tile i - 1, which a slow warp may still be reading. 12 bytes a token: on sm_90 the wgmma
// kernel fits 6 CTAs an SM at 2 stages.
template <int kStages>
struct IndexerRing {
  static constexpr int kMeta = kStages + 1;
  // A read token's scale (1 without a scale tensor); a token not read: 0 past the visible length,
  // NaN outside the pool (indexer_store writes -inf or NaN for it).
  float scale[kMeta][kIndexerTile];
  const unsigned char* rows[kMeta][kIndexerTile];  // nullptr: not read
};

// Runs a chunk's tiles through the ring, kStages - 1 in flight: where each tile's tokens live
// (threads < T: no load but the block table's), then their rows by cp.async into `tiles`
// (kRowBytes a row, rows not read are zeros; each thread copies one 16-byte piece of rows
// copy_row, copy_row + step, ... to `dst` bytes into a tile: the caller's swizzle, the same for
// all of them) and their scales (see IndexerRing). Calls prologue() once the first tiles are
// asked for (work that needs no tile: its latency overlaps theirs) and compute(t0, meta, buf) once
// tile buf has landed, in every thread. kForWgmma: the copies are fenced for reads through the
// async proxy. With `bars` (kStages mbarriers in shared memory; the
// wgmma path with p.use_k_map), thread 0 copies each tile whole through the tensor map p.k_map
// instead (rows not read then hold whatever the cache holds, or zeros past it: their scores are
// not stored), and the scales still come by cp.async.
template <class S, int kRowBytes, bool kForWgmma, class Prologue, class Compute>
__device__ __forceinline__ void indexer_run_tiles(const IndexerParams& p, const IndexerChunk& c,
                                                  IndexerRing<S::kStages>& ring, unsigned char* tiles, int copy_piece,
                                                  int copy_row, int dst, Prologue prologue, Compute compute,
                                                  u64* bars = nullptr) {
  constexpr int T = kIndexerTile, kStages = S::kStages, kMeta = IndexerRing<kStages>::kMeta;
  constexpr int kStep = kIndexerThreads / (kRowBytes / 16);  // rows one pass of the CTA copies
  static_assert(kIndexerThreads % (kRowBytes / 16) == 0 && T % kStep == 0, "whole passes");
  const int tid = threadIdx.x;
  // Each token's row and, by cp.async in the group of its tile's rows, its scale.
  const auto resolve = [&](int t0, int meta) {
    if (tid < T) {
      const int s = t0 + tid;
      const float* scale = nullptr;
      const unsigned char* r = nullptr;
      bool outside = false;
      if (s < c.n && s < c.end) r = indexer_key<S>(p, c.b, s, &scale, &outside);  // nullptr outside
      ring.rows[meta][tid] = r;
      if (r && scale)
        cp_async4(&ring.scale[meta][tid], scale, true);
      else
        ring.scale[meta][tid] = r ? 1.f : (outside ? quiet_nan() : 0.f);
    }
  };
  const auto gather = [&](int meta, int buf, int t0) {
    if (bars) {
      if (tid == 0) {
        mbarrier_arrive_expect_tx(&bars[buf], T * kRowBytes);
        tma_load_3d(tiles + buf * T * kRowBytes, p.k_map, 0, t0, c.b, &bars[buf]);
      }
      return;
    }
    unsigned char* to = tiles + buf * T * kRowBytes + dst;
#pragma unroll
    for (int i = 0; i < T / kStep; ++i) {
      const unsigned char* row = ring.rows[meta][copy_row + i * kStep];
      cp_async16(to + i * kStep * kRowBytes, row ? row + 16 * copy_piece : p.k, row != nullptr);
    }
  };

  const int tiles_here = (c.tiles_end - c.begin) / T;
  for (int i = 0; i < kStages - 1; ++i)
    if (i < tiles_here) resolve(c.begin + i * T, i % kMeta);
  if (bars && tid == 0) {
    for (int s = 0; s < kStages; ++s) mbarrier_init(&bars[s], 1);
    fence_mbarrier_init();
  }
  __syncthreads();  // the first tiles' rows are known (and whatever the caller wrote before)
  for (int i = 0; i < kStages - 1; ++i) {
    if (i < tiles_here) gather(i % kMeta, i % kStages, c.begin + i * T);
    cp_async_commit();  // one group per tile, empty past the last: the wait below counts groups
  }
  prologue();  // in every thread, while the first tiles are on their way
  for (int it = 0; it < tiles_here; ++it) {
    const int ahead = it + kStages - 1;
    if (ahead < tiles_here) resolve(c.begin + ahead * T, ahead % kMeta);
    __syncthreads();  // tile `ahead`'s rows are known; everyone is done with tile it - 1's data
    if (ahead < tiles_here) gather(ahead % kMeta, ahead % kStages, c.begin + ahead * T);
    cp_async_commit();
    cp_async_wait<kStages - 1>();
    if (kForWgmma) fence_async_shared();
    if (bars) mbarrier_wait_parity(&bars[it % kStages], (it / kStages) & 1);  // the n-th use: parity n % 2
    __syncthreads();  // tile `it` has landed, for every thread's copies
    compute(c.begin + it * T, it % kMeta, it % kStages);
  }
}

// Token r of the tile at t0: its score (`sum`, when it was read), -inf past the visible length,
// NaN outside the pool.
template <int kStages>
__device__ __forceinline__ void indexer_store(const IndexerChunk& c, const IndexerRing<kStages>& ring, int meta, int t0,
                                              int r, float sum) {
  if (t0 + r >= c.end) return;
  c.out[t0 + r] = ring.rows[meta][r] ? sum : (ring.scale[meta][r] == 0.f ? neg_inf() : quiet_nan());
}

// sum_h w_h ReLU(sc x_h) over this thread's heads (x(nt, c) with weight w[nt][c]) and the 4
// lanes that share its token, divided by sc: ReLU(sc x) is sc max(x, 0), or sc min(x, 0) when
// sc < 0; NaN kept. For sc = 0 the caller's final multiply by sc gives 0, except where sc x is
// NaN (x infinite or NaN): relu(0 x) is taken so that those stay NaN, as in exact arithmetic.
template <int kNT, class X>
__device__ __forceinline__ float indexer_head_sum(const float (&w)[kNT][2], float sc, X x) {
  float sum = 0.f;
  if (sc < 0.f) {
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt)
      sum += w[nt][0] * neg_part_keep_nan(x(nt, 0)) + w[nt][1] * neg_part_keep_nan(x(nt, 1));
  } else if (sc == 0.f) {
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt)
      sum += w[nt][0] * relu_keep_nan(x(nt, 0) * 0.f) + w[nt][1] * relu_keep_nan(x(nt, 1) * 0.f);
  } else {
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt) sum += w[nt][0] * relu_keep_nan(x(nt, 0)) + w[nt][1] * relu_keep_nan(x(nt, 1));
  }
  sum += __shfl_xor_sync(kFullMask, sum, 1);
  return sum + __shfl_xor_sync(kFullMask, sum, 2);
}

// The weights of heads head0 + 8 nt + 2 t + {0, 1} (zero past num_heads).
template <int kNT>
__device__ __forceinline__ void indexer_weights(const IndexerParams& p, const IndexerChunk& c, int head0, int t,
                                                float (&w)[kNT][2]) {
  const float* row = p.w + c.b * p.w_stride[0] + c.j * p.w_stride[1];
#pragma unroll
  for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int h = head0 + nt * 8 + 2 * t + e;
      w[nt][e] = h < p.num_heads ? row[h * p.w_stride[2]] : 0.f;
    }
}

// The mma.sync path (every arch; FP8 or bf16 keys; any head count).
template <class S>
__device__ __forceinline__ void indexer_scores_mma(const IndexerParams& p) {
  typedef IndexerShape<S> Sh;
  extern __shared__ __align__(16) unsigned char smem[];
  unsigned short* q_s = reinterpret_cast<unsigned short*>(smem + Sh::kSmem.q);  // [kHeadsPad][kQRow]
  __shared__ IndexerRing<S::kStages> ring;
  __shared__ float part_s[Sh::kHeadWarps > 1 ? Sh::kHeadWarps : 1][kIndexerTile];  // per head half
  __shared__ unsigned short lut[(S::kFp8 && !kIndexerCvtFp8) ? 256 : 1];
  __shared__ u32 amax_bits;
  IndexerChunk c;
  if (!indexer_chunk<S>(p, &c)) return;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
  const int head_warp = warp % Sh::kHeadWarps, token_warp = warp / Sh::kHeadWarps;
  const int head0 = head_warp * Sh::kNT * 8;   // this warp's first head
  const int tok0 = token_warp * Sh::kMT * 16;  // this warp's first token of a tile
  if (S::kFp8 && !kIndexerCvtFp8)
    for (int x = tid; x < 256; x += kIndexerThreads) lut[x] = e4m3_to_bf16_bits(x);
  const unsigned short* q = static_cast<const unsigned short*>(p.q) + c.b * p.q_stride[0] + c.j * p.q_stride[1];
  float wf[Sh::kNT][2];
  indexer_weights(p, c, head0, t, wf);  // in flight with the query
  // By cp.async, every copy in flight at once: one round trip (zeros past num_heads).
  for (int x = tid; x < Sh::kHeadsPad * S::kDim / 8; x += kIndexerThreads) {
    const int h = x / (S::kDim / 8), d = 8 * (x % (S::kDim / 8));
    cp_async16(q_s + h * Sh::kQRow + d, h < p.num_heads ? q + h * p.q_stride[2] + d : q, h < p.num_heads);
  }
  cp_async_commit();
  cp_async_wait<0>();   // this thread's copies; the barrier below (indexer_amax_bits or q_s final) the rest
  float unscale = 1.f;  // multiplies the scores: undoes the queries' power of two
  if (Sh::kHalfQ) {
    // fp16 queries: the row's largest |q| near 2^14, exact for every bf16 value within 2^-24 of it.
    const u32 amax = indexer_amax_bits(
        Sh::kHeadsPad * S::kDim, [&](int x) { return q_s[(x / S::kDim) * Sh::kQRow + x % S::kDim]; }, &amax_bits);
    const int u = indexer_q_shift(amax, 14);
    const float up = pow2f(u);
    unscale = pow2f(-u);
    for (int x = tid; x < Sh::kHeadsPad * S::kDim; x += kIndexerThreads) {
      unsigned short& v = q_s[(x / S::kDim) * Sh::kQRow + x % S::kDim];
      v = from_float<fp16>(to_float(bf16{v}) * up).bits;
    }
  }
  __syncthreads();  // q_s is final
  // This thread's query fragments for the whole kernel: head head0 + 8 nt + g, the dims of its
  // pieces (see the top).
  u32 qf[Sh::kNT][Sh::kChunks][Sh::kPer16 / 2];
#pragma unroll
  for (int nt = 0; nt < Sh::kNT; ++nt) {
    const unsigned short* qr = q_s + (head0 + nt * 8 + g) * Sh::kQRow + t * Sh::kPer16;
#pragma unroll
    for (int ch = 0; ch < Sh::kChunks; ++ch)
#pragma unroll
      for (int i = 0; i < Sh::kPer16 / 2; ++i)
        qf[nt][ch][i] = *reinterpret_cast<const u32*>(qr + ch * 4 * Sh::kPer16 + 2 * i);
  }
  unsigned char* tiles = smem + Sh::kSmem.tiles;                           // [kStages][T][kKBytes], pieces swizzled
  const int copy_piece = tid % Sh::kPieces, copy_row = tid / Sh::kPieces;  // rows of one parity
  const int dst = copy_row * Sh::kKBytes + 16 * indexer_piece(copy_row, copy_piece);
  indexer_run_tiles<S, Sh::kKBytes, false>(
      p, c, ring, tiles, copy_piece, copy_row, dst, [] {},
      [&](int t0, int meta, int buf) {
        const unsigned char* tile = tiles + buf * kIndexerTile * Sh::kKBytes;
        float acc[Sh::kMT][Sh::kNT][4];
#pragma unroll
        for (int m = 0; m < Sh::kMT; ++m)
#pragma unroll
          for (int nt = 0; nt < Sh::kNT; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[m][nt][e] = 0.f;
#pragma unroll
        for (int ch = 0; ch < Sh::kChunks; ++ch) {
          uint4 lo[Sh::kMT], hi[Sh::kMT];
          const int piece = indexer_piece(g, ch * 4 + t);  // rows g and g + 8 have g's parity
#pragma unroll
          for (int m = 0; m < Sh::kMT; ++m) {
            const unsigned char* r0 = tile + (tok0 + m * 16 + g) * Sh::kKBytes + 16 * piece;
            lo[m] = *reinterpret_cast<const uint4*>(r0);
            hi[m] = *reinterpret_cast<const uint4*>(r0 + 8 * Sh::kKBytes);
          }
#pragma unroll
          for (int s = 0; s < Sh::kSteps; ++s) {
#pragma unroll
            for (int m = 0; m < Sh::kMT; ++m) {
              u32 a[4];
              indexer_a_frag<S>(a, lo[m], hi[m], s, lut);
#pragma unroll
              for (int nt = 0; nt < Sh::kNT; ++nt) {
                const u32 bq[2] = {qf[nt][ch][2 * s], qf[nt][ch][2 * s + 1]};
                if (Sh::kHalfQ)
                  mma_fp16_16816(acc[m][nt], a, bq);
                else
                  mma_bf16_16816(acc[m][nt], a, bq);
              }
            }
          }
        }
#pragma unroll
        for (int m = 0; m < Sh::kMT; ++m) {
#pragma unroll
          for (int half = 0; half < 2; ++half) {
            const int r = tok0 + m * 16 + g + 8 * half;
            const float sc = ring.scale[meta][r];
            const float sum =
                indexer_head_sum(wf, sc, [&](int nt, int e) { return acc[m][nt][2 * half + e]; }) * (sc * unscale);
            if (Sh::kHeadWarps > 1) {
              if (t == 0) part_s[head_warp][r] = sum;
            } else if (t == 0) {
              indexer_store(c, ring, meta, t0, r, sum);
            }
          }
        }
        if (Sh::kHeadWarps > 1) {
          __syncthreads();  // both head halves of every token are in part_s
          if (tid < kIndexerTile) {
            float sum = 0.f;
#pragma unroll
            for (int hw = 0; hw < Sh::kHeadWarps; ++hw) sum += part_s[hw][tid];
            indexer_store(c, ring, meta, t0, tid, sum);
          }
        }
      });
}

// The wgmma path's accumulator entries of heads whose query holds an infinity (bit h of
// inf_mask; zeroed in the query tiles), as fp32 dot products of the scaled query (q 2^u, `up`)
// with the FP8 keys of the tile (rows of 128 bytes in the 128-byte swizzle): the same IEEE
// infinities and NaNs as the exact products. Rare (a broken query), so one product at a time.
__device__ __forceinline__ void indexer_inf_head_dots(float (&acc)[32], unsigned long long inf_mask,
                                                      const unsigned short* q, long long q_head_stride, float up,
                                                      const unsigned char* tile, int warp, int g, int t) {
  // One entry at a time, not unrolled: the common path's registers stay as they were.
#pragma unroll 1
  for (int i = 0; i < 32; ++i) {  // acc[i]: head 8 (i / 4) + 2 t + i % 2, token row half (i / 2) % 2
    const int h = 8 * (i >> 2) + 2 * t + (i & 1);
    if (!((inf_mask >> h) & 1)) continue;
    const int r = warp * 16 + g + 8 * ((i >> 1) & 1);
    const unsigned short* qh = q + h * q_head_stride;
    float dot = 0.f;
#pragma unroll 1
    for (int d = 0; d < 128; d += 2) {
      const int at = r * 128 + 16 * ((d / 16) ^ (r & 7)) + d % 16;
      const u32 k2 = widen_e4m3x2(*reinterpret_cast<const unsigned short*>(tile + at), nullptr);
      dot = fmaf(to_float(bf16{qh[d]}) * up, to_float(fp16{static_cast<unsigned short>(k2 & 0xffffu)}), dot);
      dot = fmaf(to_float(bf16{qh[d + 1]}) * up, to_float(fp16{static_cast<unsigned short>(k2 >> 16)}), dot);
    }
#pragma unroll
    for (int j = 0; j < 32; ++j)
      if (j == i) acc[j] = dot;
  }
}

// Two scaled query values a0, a1 as FP8 E4M3 pairs (a0 in the low byte): *hi their rounding, *lo
// the rounding of what is left, so that hi + lo is within lo's step of the values (sm_89+).
__device__ __forceinline__ void e4m3_hi_lo(float a0, float a1, unsigned short* hi, unsigned short* lo) {
  unsigned short hp, lp;
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(hp) : "f"(a1), "f"(a0));
  const u32 hf = widen_e4m3x2(hp, nullptr);
  const float h0 = to_float(fp16{static_cast<unsigned short>(hf & 0xffffu)});
  const float h1 = to_float(fp16{static_cast<unsigned short>(hf >> 16)});
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(lp) : "f"(a1 - h1), "f"(a0 - h0));
  *hi = hp, *lo = lp;
}

// Word k (values 2k, 2k + 1) of a 16-value query piece held as two 16-byte loads.
__device__ __forceinline__ u32 piece_word(const uint4 (&v)[2], int k) {
  const uint4& q = v[k / 4];
  return k % 4 == 0 ? q.x : k % 4 == 1 ? q.y : k % 4 == 2 ? q.z : q.w;
}

// The wgmma path (sm_90a, FP8 keys, 33-64 heads): the CTA is one warpgroup and a 64-token tile
// one m64n64 product per k-step, keys straight from the tile as stored. The query goes in as FP8
// too, in two tiles: after a power of two 2^u puts the row's largest |q| in [128, 256), hi =
// e4m3(q 2^u) and lo = e4m3(q 2^u - hi), so that q 2^u = hi + lo within 2^-10 (lo's subnormal
// step) - within 2^-17 of the largest |q| - and both products accumulate into one fp32 tile.
// Warp w holds tokens 16 w + g, 16 w + g + 8 of the tile and, for each, heads 8 j + 2 t, 2 t + 1.
template <class S>
__device__ __forceinline__ void indexer_scores_wgmma(const IndexerParams& p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int kRow = 128;  // FP8 rows of d = 128
  constexpr IndexerSmemLayout L = indexer_smem_layout(64, 128, true, S::kStages, true);
  extern __shared__ __align__(16) unsigned char smem_raw[];
  unsigned char* smem = smem_raw + (1024 - smem_addr(smem_raw) % 1024) % 1024;  // swizzle atoms
  unsigned char* q_hi = smem + L.q;
  unsigned char* q_lo = smem + L.q_lo;
  __shared__ IndexerRing<S::kStages> ring;
  __shared__ u32 warp_amax[kIndexerThreads / 32];
  __shared__ unsigned long long warp_inf[kIndexerThreads / 32];  // bit h: head h's query holds an infinity
#ifdef TKA_INDEXER_TMA
  __shared__ u64 tile_bars[S::kStages];
  u64* bars = p.use_k_map ? tile_bars : nullptr;
#else
  u64* bars = nullptr;
#endif
  IndexerChunk c;
  if (!indexer_chunk<S>(p, &c)) return;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
  const unsigned short* q = static_cast<const unsigned short*>(p.q) + c.b * p.q_stride[0] + c.j * p.q_stride[1];
  // The query's tiles, the weights and the scale, made while the first key tiles are on their way
  // (prepare_query runs inside indexer_run_tiles).
  float up = 1.f, unscale = 1.f, wf[8][2];
  unsigned long long inf_mask = 0;
  const auto prepare_query = [&] {
    // The query in registers, every load in flight at once with the weights' (one round trip; a
    // loop of loads and uses waited out ~20 and set most of the kernel's fixed cost): piece
    // x = tid + 128 i is head x / 8, values 16 (x % 8) .. + 15, as two 16-byte loads (16-bit
    // tensors are 16-byte aligned, strides too); zeros past num_heads.
    constexpr int kPieces = 64 * 8 / kIndexerThreads;
    uint4 qv[kPieces][2];
#pragma unroll
    for (int i = 0; i < kPieces; ++i) {
      const int x = tid + kIndexerThreads * i, h = x / 8;
      const unsigned short* src = q + h * p.q_stride[2] + 16 * (x % 8);
      qv[i][0] = h < p.num_heads ? load_nc16(src) : make_uint4(0, 0, 0, 0);
      qv[i][1] = h < p.num_heads ? load_nc16(src + 8) : make_uint4(0, 0, 0, 0);
    }
    indexer_weights(p, c, 0, t, wf);
    // The largest finite |q| (bf16 bits: ordered like the values) and the heads that hold an
    // infinity, over the CTA: per warp, then the four warps' behind one barrier.
    u32 amax = 0, inf_lo = 0, inf_hi = 0;
#pragma unroll
    for (int i = 0; i < kPieces; ++i) {
      const int h = (tid + kIndexerThreads * i) / 8;
      bool inf = false;
#pragma unroll
      for (int k = 0; k < 16; ++k) {
        const u32 bits = (piece_word(qv[i], k / 2) >> (16 * (k % 2))) & 0x7fffu;
        inf |= bits == 0x7f80u;
        if (bits < 0x7f80u) amax = max(amax, bits);
      }
      if (inf) (h < 32 ? inf_lo : inf_hi) |= 1u << (h % 32);
    }
    amax = __reduce_max_sync(kFullMask, amax);
    inf_lo = __reduce_or_sync(kFullMask, inf_lo);
    inf_hi = __reduce_or_sync(kFullMask, inf_hi);
    if (lane == 0) warp_amax[warp] = amax, warp_inf[warp] = (static_cast<unsigned long long>(inf_hi) << 32) | inf_lo;
    __syncthreads();
    amax = 0;
#pragma unroll
    for (int w = 0; w < kIndexerThreads / 32; ++w) amax = max(amax, warp_amax[w]), inf_mask |= warp_inf[w];
    const int u = indexer_q_shift(amax << 16, 7);
    up = pow2f(u), unscale = pow2f(-u);
    // hi and lo, one 16-value piece (swizzled) per step. FP8 has no infinity (the conversion
    // saturates to +-448): a head whose query holds one is zeros in both tiles and its dot products
    // are taken in fp32 instead (indexer_inf_head_dots), so that its scores are the infinities or
    // NaNs of the exact arithmetic. NaN needs nothing: it converts to the FP8 NaN and propagates
    // through the products.
#pragma unroll
    for (int i = 0; i < kPieces; ++i) {
      const int x = tid + kIndexerThreads * i, h = x / 8, piece = x % 8;
      u32 hw[4] = {0, 0, 0, 0}, lw[4] = {0, 0, 0, 0};
      if (!((inf_mask >> h) & 1)) {
#pragma unroll
        for (int k = 0; k < 8; ++k) {  // values 2k (low half, low byte), 2k + 1
          const u32 w = piece_word(qv[i], k);
          unsigned short hp, lp;
          e4m3_hi_lo(to_float(bf16{static_cast<unsigned short>(w & 0xffffu)}) * up,
                     to_float(bf16{static_cast<unsigned short>(w >> 16)}) * up, &hp, &lp);
          hw[k / 2] |= u32(hp) << (16 * (k % 2));
          lw[k / 2] |= u32(lp) << (16 * (k % 2));
        }
      }
      const int at = h * kRow + 16 * (piece ^ (h & 7));
      *reinterpret_cast<uint4*>(q_hi + at) = make_uint4(hw[0], hw[1], hw[2], hw[3]);
      *reinterpret_cast<uint4*>(q_lo + at) = make_uint4(lw[0], lw[1], lw[2], lw[3]);
    }
    fence_async_shared();  // the query tiles, for wgmma (the loop's barrier orders them)
  };

  unsigned char* tiles = smem + L.tiles;               // [kStages][T][128], in the 128-byte swizzle
  const int copy_piece = tid % 8, copy_row = tid / 8;  // rows copy_row + 16 i: the same row % 8
  const int dst = copy_row * kRow + 16 * (copy_piece ^ (copy_row & 7));
  const u64 desc_hi = wgmma_desc_sw128(q_hi), desc_lo = wgmma_desc_sw128(q_lo);
  indexer_run_tiles<S, kRow, true>(
      p, c, ring, tiles, copy_piece, copy_row, dst, prepare_query,
      [&](int t0, int meta, int buf) {
        float acc[32];
        const u64 desc_k = wgmma_desc_sw128(tiles + buf * kIndexerTile * kRow);
        wgmma_fence_operands(acc);
        wgmma_fence();
#pragma unroll
        for (int ks = 0; ks < 4; ++ks)
          wgmma_m64n64k32_e4m3(acc, wgmma_desc_advance(desc_k, 32 * ks), wgmma_desc_advance(desc_hi, 32 * ks), ks > 0);
#pragma unroll
        for (int ks = 0; ks < 4; ++ks)
          wgmma_m64n64k32_e4m3(acc, wgmma_desc_advance(desc_k, 32 * ks), wgmma_desc_advance(desc_lo, 32 * ks), 1);
        wgmma_commit();
        wgmma_wait<0>();
        wgmma_fence_operands(acc);
        if (inf_mask)
          indexer_inf_head_dots(acc, inf_mask, q, p.q_stride[2], up, tiles + buf * kIndexerTile * kRow, warp, g, t);
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int r = warp * 16 + g + 8 * half;
          const float sc = ring.scale[meta][r];
          const float sum = indexer_head_sum(wf, sc, [&](int nt, int e) { return acc[4 * nt + 2 * half + e]; });
          if (t == 0) indexer_store(c, ring, meta, t0, r, sum * (sc * unscale));
        }
      },
      bars);
#else
  (void)p;
#endif
}

// The tensor map in p.k_map is read by the copy engine from the parameter itself (TKA_INDEXER_TMA).
#ifdef TKA_INDEXER_TMA
#define TKA_INDEXER_PARAMS const __grid_constant__ IndexerParams
#else
#define TKA_INDEXER_PARAMS const IndexerParams
#endif

template <class S>
__global__ void __launch_bounds__(kIndexerThreads) indexer_scores(TKA_INDEXER_PARAMS p) {
  begin_grid();
  if constexpr (kHaveWgmma && indexer_uses_wgmma(90, S::kHeads, S::kDim, S::kFp8))
    indexer_scores_wgmma<S>(p);
  else
    indexer_scores_mma<S>(p);
}

}  // namespace tka
