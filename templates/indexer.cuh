// Lightning Indexer scores (design section 2.3, DeepSeek Sparse Attention): for query token j of
// sequence b and cached token s, I = sum over heads h of w_h * ReLU(scale_s * (q_h . k_s)), with
// indexer keys k in bf16 or FP8 E4M3 and a per-token scale. H_I x d_I multiply-adds per token
// (64 x 128) are too many for CUDA cores at the memory rate, so the dot products run on tensor
// cores: per warp a [heads x 128] x [128 x 16 tokens] product in m16n8k16 tiles.
//
// Grid (token chunks, B * q_len); 128 threads, each warp 16 tokens of a 64-token tile. The key
// tiles are gathered into shared memory with cp.async exactly as stored (FP8 bytes or bf16), the
// next kStages - 1 tiles in flight while one is multiplied, and FP8 pairs are widened as the mma
// fragments are read:
//   sm_89+  cvt.rn.f16x2.e4m3x2 (exact) and fp16 mma; the queries are fp16, multiplied by a power
//           of two that puts the row's largest |q| near 2^14 (exact for every bf16 value within
//           2^-24 of it) and divided out of the fp32 scores;
//   sm_80   a 256-entry table to bf16 bits (exact) and bf16 mma on the queries as given.
// Tokens past the visible length score -inf (without any arithmetic); a token in a page outside
// the pool scores NaN (not read); a row whose sequence is longer than the cache or the score row
// is NaN throughout.
//
// Expects Spec with: kHeads (<= 64), kDim (128), kFp8, kPaged, kPageSize, kQLen, kStages (key
// tiles in flight, >= 2: a tuned knob, see autotune/indexer_space.h).
#pragma once
#include "common/block_scan.cuh"
#include "common/memory.cuh"
#include "common/mma.cuh"
#include "indexer_params.cuh"

namespace tka {

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
constexpr bool kIndexerCvtFp8 = true;
#else
constexpr bool kIndexerCvtFp8 = false;
#endif

template <class S>
struct IndexerShape {
  static constexpr int kMTiles = (S::kHeads + 15) / 16;
  static constexpr int kHeadsPad = kMTiles * 16;
  static constexpr int kQRow = S::kDim + 8;                        // 16-bit elements per query row
  static constexpr int kKBytes = S::kFp8 ? S::kDim : 2 * S::kDim;  // bytes per cached key row
  static constexpr bool kHalfQ = S::kFp8 && kIndexerCvtFp8;        // fp16 queries and mma
  static constexpr IndexerSmemLayout kSmem = indexer_smem_layout(S::kHeads, S::kDim, S::kFp8, S::kStages);
};

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

// ReLU that lets NaN through (fmaxf would turn it into 0): a NaN key or weight must not pass
// for a zero score.
__device__ __forceinline__ float relu_keep_nan(float x) { return x != x ? x : fmaxf(x, 0.f); }

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

template <class S>
__global__ void __launch_bounds__(kIndexerThreads) indexer_scores(const IndexerParams p) {
  typedef IndexerShape<S> Sh;
  constexpr int T = kIndexerTile;
  constexpr int kRow = Sh::kSmem.tile_row;
  extern __shared__ __align__(16) unsigned char smem[];
  unsigned short* q_s = reinterpret_cast<unsigned short*>(smem + Sh::kSmem.q);  // [kHeadsPad][kQRow]
  // Tile i: data in tiles[i % kStages], its tokens' state, scale and rows in entry i % kMeta of
  // the rings below. One more metadata entry than tiles, so that resolving tile i + kStages - 1
  // (before the barrier of iteration i) writes the entry of tile i - 2, which every thread is
  // done with, not that of tile i - 1, which a slow warp may still be reading.
  constexpr int kStages = S::kStages, kMeta = kStages + 1;
  unsigned char* tiles = smem + Sh::kSmem.tiles;  // [kStages][T][kRow]
  __shared__ float w_s[Sh::kHeadsPad];
  __shared__ float scale_s[kMeta][T];
  __shared__ int state_s[kMeta][T];  // 1 valid, 0 past the end, -1 outside the pool
  __shared__ const unsigned char* rows_s[kMeta][T];
  __shared__ unsigned short lut[(S::kFp8 && !kIndexerCvtFp8) ? 256 : 1];
  __shared__ u32 amax_bits;

  const int row = blockIdx.y, b = row / S::kQLen, j = row % S::kQLen;
  const int seq = p.seq_lens[b];
  // A sequence longer than the cache or than the score row cannot be scored: its row is NaN.
  const int limit = min(S::kPaged ? p.max_pages * S::kPageSize : p.capacity, p.score_len);
  const bool bad = seq < 0 || seq > limit;
  const int n = bad ? 0 : max(0, seq - S::kQLen + j + 1);
  if (p.row_len && blockIdx.x == 0 && threadIdx.x == 0) p.row_len[row] = n;
  const int begin = blockIdx.x * p.tokens_per_cta;
  const int end = min(begin + p.tokens_per_cta, p.score_len);
  if (begin >= end) return;
  float* out = p.scores + b * p.score_stride[0] + j * p.score_stride[1];
  // Whole tiles over the visible tokens of this chunk; the rest is -inf (NaN for a bad row).
  const int tiles_end = begin + (max(0, min(end, n) - begin) + T - 1) / T * T;
  for (int s = max(begin, tiles_end) + threadIdx.x; s < end; s += kIndexerThreads)
    out[s] = bad ? quiet_nan() : neg_inf();
  if (tiles_end <= begin) return;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
  if (S::kFp8 && !kIndexerCvtFp8)
    for (int x = tid; x < 256; x += kIndexerThreads) lut[x] = e4m3_to_bf16_bits(x);
  if (tid == 0) amax_bits = 0;
  const unsigned short* q = static_cast<const unsigned short*>(p.q) + b * p.q_stride[0] + j * p.q_stride[1];
  u32 amax_mine = 0;
  for (int x = tid; x < Sh::kHeadsPad * S::kDim; x += kIndexerThreads) {
    const int h = x / S::kDim, c = x % S::kDim;
    const unsigned short v = h < p.num_heads ? q[h * p.q_stride[2] + c] : 0;
    q_s[h * Sh::kQRow + c] = v;
    amax_mine = max(amax_mine, u32(v & 0x7fffu) << 16);  // |q| as float bits: ordered like the values
  }
  for (int h = tid; h < Sh::kHeadsPad; h += kIndexerThreads)
    w_s[h] = h < p.num_heads ? p.w[b * p.w_stride[0] + j * p.w_stride[1] + h * p.w_stride[2]] : 0.f;
  float unscale = 1.f;  // multiplies the scores: undoes the queries' power of two
  if (Sh::kHalfQ) {
    __syncthreads();  // amax_bits is zero
    atomicMax(&amax_bits, amax_mine);
    __syncthreads();
    const int e = static_cast<int>(amax_bits >> 23) - 127;  // floor(log2 max|q|); -127: all zero
    // Finite, nonzero queries: scale by 2^(14 - e), clamped to powers that are normal floats.
    const int shift = (amax_bits >= 0x7f800000u || amax_bits == 0) ? 0 : min(max(14 - e, -100), 100);
    const float up = __uint_as_float(static_cast<u32>(127 + shift) << 23);
    unscale = __uint_as_float(static_cast<u32>(127 - shift) << 23);
    for (int x = tid; x < Sh::kHeadsPad * S::kDim; x += kIndexerThreads) {
      unsigned short& v = q_s[(x / S::kDim) * Sh::kQRow + x % S::kDim];
      v = from_float<fp16>(to_float(bf16{v}) * up).bits;
    }
  }

  // Where the tile's tokens live (threads < T: no load but the block table's), into metadata
  // entry `meta`; then their rows into tile buffer `buf` and their scales, both by cp.async; rows
  // not read are zeros.
  __shared__ const float* scale_rows_s[kMeta][T];
  auto resolve = [&](int t0, int meta) {
    if (tid < T) {
      const int s = t0 + tid;
      int st = 0;
      const float* scale = nullptr;
      const unsigned char* r = nullptr;
      if (s < n && s < end) {
        bool outside;
        r = indexer_key<S>(p, b, s, &scale, &outside);
        st = outside ? -1 : 1;
      }
      state_s[meta][tid] = st;
      scale_rows_s[meta][tid] = scale;
      rows_s[meta][tid] = r;
    }
  };
  auto gather = [&](int meta, int buf) {
    constexpr int kVecs = Sh::kKBytes / 16;
    if (tid < T) {
      // Tokens without a scale tensor (bf16 keys) weigh 1; tokens not read, 0.
      const float* sc = scale_rows_s[meta][tid];
      if (sc || state_s[meta][tid] != 1)
        cp_async4(&scale_s[meta][tid], sc ? static_cast<const void*>(sc) : p.seq_lens, sc != nullptr);
      else
        scale_s[meta][tid] = 1.f;
    }
    unsigned char* dst = tiles + buf * T * kRow;
    for (int x = tid; x < T * kVecs; x += kIndexerThreads) {
      const int r = x / kVecs, c = x % kVecs;
      const bool ok = state_s[meta][r] == 1;
      cp_async16(dst + r * kRow + 16 * c, ok ? rows_s[meta][r] + 16 * c : p.k, ok);
    }
  };

  const int tiles_here = (tiles_end - begin) / T;
  for (int i = 0; i < kStages - 1; ++i)
    if (i < tiles_here) resolve(begin + i * T, i % kMeta);
  __syncthreads();  // q, w, the table and the first tiles' rows are ready
  for (int i = 0; i < kStages - 1; ++i) {
    if (i < tiles_here) gather(i % kMeta, i % kStages);
    cp_async_commit();  // one group per tile, empty past the last: the wait below counts groups
  }
  for (int it = 0; it < tiles_here; ++it) {
    const int t0 = begin + it * T, ahead = it + kStages - 1;
    const int meta = it % kMeta, buf = it % kStages;
    if (ahead < tiles_here) resolve(begin + ahead * T, ahead % kMeta);
    __syncthreads();  // tile `ahead`'s rows are known; everyone is done with tile it - 1's data
    if (ahead < tiles_here) gather(ahead % kMeta, ahead % kStages);
    cp_async_commit();
    cp_async_wait<kStages - 1>();
    __syncthreads();  // tile `it` has landed, for every thread's copies

    const unsigned char* tile = tiles + buf * T * kRow;
    float acc[Sh::kMTiles][2][4];
#pragma unroll
    for (int m = 0; m < Sh::kMTiles; ++m)
#pragma unroll
      for (int nt = 0; nt < 2; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[m][nt][e] = 0.f;
#pragma unroll
    for (int ks = 0; ks < S::kDim / 16; ++ks) {
      const int col = ks * 16 + 2 * t;
      u32 bf[2][2];
#pragma unroll
      for (int nt = 0; nt < 2; ++nt) {
        const unsigned char* kr = tile + (warp * 16 + nt * 8 + g) * kRow;
        if (S::kFp8) {
          bf[nt][0] = widen_e4m3x2(*reinterpret_cast<const unsigned short*>(kr + col), lut);
          bf[nt][1] = widen_e4m3x2(*reinterpret_cast<const unsigned short*>(kr + col + 8), lut);
        } else {
          bf[nt][0] = *reinterpret_cast<const u32*>(kr + 2 * col);
          bf[nt][1] = *reinterpret_cast<const u32*>(kr + 2 * col + 16);
        }
      }
#pragma unroll
      for (int m = 0; m < Sh::kMTiles; ++m) {
        const unsigned short* q0 = &q_s[(m * 16 + g) * Sh::kQRow + col];
        const unsigned short* q1 = q0 + 8 * Sh::kQRow;
        const u32 af[4] = {*reinterpret_cast<const u32*>(q0), *reinterpret_cast<const u32*>(q1),
                           *reinterpret_cast<const u32*>(q0 + 8), *reinterpret_cast<const u32*>(q1 + 8)};
#pragma unroll
        for (int nt = 0; nt < 2; ++nt) {
          if (Sh::kHalfQ)
            mma_fp16_16816(acc[m][nt], af, bf[nt]);
          else
            mma_bf16_16816(acc[m][nt], af, bf[nt]);
        }
      }
    }
    // Weighted ReLU over this thread's heads, then over the 8 lanes that share its tokens.
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int r = warp * 16 + nt * 8 + 2 * t + c;
        const float sc = scale_s[meta][r] * unscale;
        float sum = 0.f;
#pragma unroll
        for (int m = 0; m < Sh::kMTiles; ++m)
          sum += w_s[m * 16 + g] * relu_keep_nan(acc[m][nt][c] * sc) +
                 w_s[m * 16 + g + 8] * relu_keep_nan(acc[m][nt][2 + c] * sc);
        sum += __shfl_xor_sync(kFullMask, sum, 4);
        sum += __shfl_xor_sync(kFullMask, sum, 8);
        sum += __shfl_xor_sync(kFullMask, sum, 16);
        const int s = t0 + r;
        if (g == 0 && s < end) {
          const int st = state_s[meta][r];
          out[s] = st == 1 ? sum : (st == 0 ? neg_inf() : quiet_nan());
        }
      }
    }
  }
}

}  // namespace tka
