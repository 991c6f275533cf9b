// Lightning Indexer scores (design section 2.3, DeepSeek Sparse Attention): for query token j of
// sequence b and cached token s, I = sum over heads h of w_h * ReLU(scale_s * (q_h . k_s)), with
// indexer keys k in bf16 or FP8 E4M3 and a per-token scale. H_I x d_I multiply-adds per token
// (64 x 128) are too many for CUDA cores at the memory rate, so the dot products run on tensor
// cores: per warp a [heads x 128] x [128 x 16 tokens] product in m16n8k16 tiles, queries and a
// 64-token key tile in shared memory (FP8 keys widened to bf16 on the way in: exact).
//
// Grid (token chunks, B * q_len); 128 threads, each warp 16 tokens of a 64-token tile. Tokens
// past the visible length score -inf (without any arithmetic); a token in a page outside the
// pool scores NaN (not read); a row whose sequence is longer than the cache or the score row is
// NaN throughout.
//
// Expects Spec with: kHeads (<= 64), kDim (128), kFp8, kPaged, kPageSize, kQLen.
#pragma once
#include "common/block_scan.cuh"
#include "common/mma.cuh"
#include "indexer_params.cuh"

namespace tka {

constexpr int kIndexerThreads = 128;
constexpr int kIndexerTile = 64;  // tokens per shared-memory tile

template <class S>
struct IndexerShape {
  static constexpr int kMTiles = (S::kHeads + 15) / 16;
  static constexpr int kHeadsPad = kMTiles * 16;
  static constexpr int kRow = S::kDim + 8;  // bf16 per shared row: +16 bytes keeps fragment loads conflict-free
  static constexpr int kKBytes = S::kFp8 ? S::kDim : 2 * S::kDim;  // bytes per cached key row
};

template <class S>
__device__ __forceinline__ const unsigned char* indexer_key(const IndexerParams& p, int b, int s, float* scale,
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
      *scale = 0.f;
      return nullptr;
    }
    row = page * p.k_stride[0] + (s % kPage) * p.k_stride[1];
    srow = page * p.k_scale_stride[0] + (s % kPage) * p.k_scale_stride[1];
  } else {
    row = b * p.k_stride[0] + static_cast<long long>(s) * p.k_stride[1];
    srow = b * p.k_scale_stride[0] + static_cast<long long>(s) * p.k_scale_stride[1];
  }
  *scale = p.k_scale ? p.k_scale[srow] : 1.f;
  return base + row * kElem;
}

// ReLU that lets NaN through (fmaxf would turn it into 0): a NaN key or weight must not pass
// for a zero score.
__device__ __forceinline__ float relu_keep_nan(float x) { return x != x ? x : fmaxf(x, 0.f); }

template <class S>
__global__ void __launch_bounds__(kIndexerThreads) indexer_scores(const IndexerParams p) {
  typedef IndexerShape<S> Sh;
  __shared__ __align__(16) unsigned short q_s[Sh::kHeadsPad * Sh::kRow];
  __shared__ __align__(16) unsigned short k_s[kIndexerTile * Sh::kRow];
  __shared__ float w_s[Sh::kHeadsPad];
  __shared__ float scale_s[kIndexerTile];
  __shared__ int state_s[kIndexerTile];  // 1 valid, 0 past the end, -1 outside the pool
  __shared__ const unsigned char* rows_s[kIndexerTile];  // the tile's key rows (block table read once)
  __shared__ unsigned short lut[S::kFp8 ? 256 : 1];

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

  if (S::kFp8)
    for (int x = threadIdx.x; x < 256; x += kIndexerThreads) lut[x] = e4m3_to_bf16_bits(x);
  const unsigned short* q = static_cast<const unsigned short*>(p.q) + b * p.q_stride[0] + j * p.q_stride[1];
  for (int x = threadIdx.x; x < Sh::kHeadsPad * S::kDim; x += kIndexerThreads) {
    const int h = x / S::kDim, c = x % S::kDim;
    q_s[h * Sh::kRow + c] = h < p.num_heads ? q[h * p.q_stride[2] + c] : 0;
  }
  for (int h = threadIdx.x; h < Sh::kHeadsPad; h += kIndexerThreads)
    w_s[h] = h < p.num_heads ? p.w[b * p.w_stride[0] + j * p.w_stride[1] + h * p.w_stride[2]] : 0.f;
  float* out = p.scores + b * p.score_stride[0] + j * p.score_stride[1];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;

  for (int t0 = begin; t0 < end; t0 += kIndexerTile) {
    if (t0 >= n) {  // past the visible tokens (the same for the whole block, and for every later tile)
      for (int s = t0 + threadIdx.x; s < min(t0 + kIndexerTile, end); s += kIndexerThreads)
        out[s] = bad ? quiet_nan() : neg_inf();
      continue;
    }
    __syncthreads();  // q, w, lut ready; the previous tile is consumed
    if (threadIdx.x < kIndexerTile) {
      const int s = t0 + threadIdx.x;
      int st = 0;
      float scale = 0.f;
      const unsigned char* row = nullptr;
      if (s < n) {
        bool outside;
        row = indexer_key<S>(p, b, s, &scale, &outside);
        st = outside ? -1 : 1;
      }
      state_s[threadIdx.x] = st;
      scale_s[threadIdx.x] = scale;
      rows_s[threadIdx.x] = row;
    }
    __syncthreads();
    // The key tile, 16 bytes at a time; rows not read are zeros.
    constexpr int kChunks = Sh::kKBytes / 16;
    for (int x = threadIdx.x; x < kIndexerTile * kChunks; x += kIndexerThreads) {
      const int r = x / kChunks, c = x % kChunks;
      uint4 v = make_uint4(0, 0, 0, 0);
      if (state_s[r] == 1) v = *reinterpret_cast<const uint4*>(rows_s[r] + 16 * c);
      if (S::kFp8) {
        const u32 words[4] = {v.x, v.y, v.z, v.w};
        u32 wide[8];
#pragma unroll
        for (int e = 0; e < 8; ++e) {
          const u32 w = words[e / 2] >> (16 * (e % 2));
          wide[e] = u32(lut[w & 0xffu]) | (u32(lut[(w >> 8) & 0xffu]) << 16);
        }
        uint4* dst = reinterpret_cast<uint4*>(&k_s[r * Sh::kRow + 16 * c]);
        dst[0] = make_uint4(wide[0], wide[1], wide[2], wide[3]);
        dst[1] = make_uint4(wide[4], wide[5], wide[6], wide[7]);
      } else {
        *reinterpret_cast<uint4*>(&k_s[r * Sh::kRow + 8 * c]) = v;
      }
    }
    __syncthreads();

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
        const unsigned short* kr = &k_s[(warp * 16 + nt * 8 + g) * Sh::kRow + col];
        bf[nt][0] = *reinterpret_cast<const u32*>(kr);
        bf[nt][1] = *reinterpret_cast<const u32*>(kr + 8);
      }
#pragma unroll
      for (int m = 0; m < Sh::kMTiles; ++m) {
        const unsigned short* q0 = &q_s[(m * 16 + g) * Sh::kRow + col];
        const unsigned short* q1 = q0 + 8 * Sh::kRow;
        const u32 af[4] = {*reinterpret_cast<const u32*>(q0), *reinterpret_cast<const u32*>(q1),
                           *reinterpret_cast<const u32*>(q0 + 8), *reinterpret_cast<const u32*>(q1 + 8)};
#pragma unroll
        for (int nt = 0; nt < 2; ++nt) mma_bf16_16816(acc[m][nt], af, bf[nt]);
      }
    }
    // Weighted ReLU over this thread's heads, then over the 8 lanes that share its tokens.
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int r = warp * 16 + nt * 8 + 2 * t + c;
        const float sc = scale_s[r];
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
          const int st = state_s[r];
          out[s] = st == 1 ? sum : (st == 0 ? neg_inf() : quiet_nan());
        }
      }
    }
  }
}

}  // namespace tka
