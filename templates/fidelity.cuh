// Fidelity diagnostics (contract: include/topkattn/topkattn.h): how much of full attention a selection keeps.
//
//   fidelity_scores  grid (key chunks, Hq, B): s_i = scale * q . k_i into the workspace, one warp
//                    per key (lanes across the head dim); the row's length for the selection
//   select_rows      (select.cuh, over the scores) the exact top-k of each (b, h)
//   fidelity_stats   one CTA per (b, h): marks the exact and candidate sets in bitmaps, then one
//                    pass over the scores for the softmax max, sum, entropy and kept mass
//
// A diagnostic, not a hot path: K is read once per query head. Expects Spec with Elem and
// kHeadDim, and includes select.cuh for the selection (its own Spec is SelectSpec).
#pragma once
#include "common/block_scan.cuh"
#include "common/grid_dependency.cuh"
#include "fidelity_params.cuh"

namespace tka {

constexpr int kFidelityThreads = 256;
constexpr int kStatsThreads = 512;

template <class S>
__global__ void __launch_bounds__(kFidelityThreads) fidelity_scores(const FidelityParams p) {
  begin_grid();
  typedef typename S::Elem Elem;
  constexpr int kPerLane = S::kHeadDim / 32;
  const int h = blockIdx.y, b = blockIdx.z;
  const int row = b * p.num_q_heads + h;
  // A length outside 0..capacity cannot be scored: the sequence counts as empty (NaN statistics).
  const int len = p.seq_lens ? p.seq_lens[b] : p.capacity;
  const int n = len < 0 || len > p.capacity ? 0 : len;
  if (blockIdx.x == 0 && threadIdx.x == 0) p.row_len[row] = n;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const Elem* q = static_cast<const Elem*>(p.q) + b * p.q_stride[0] + h * p.q_stride[1];
  float qv[kPerLane];
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) qv[j] = to_float(q[lane + 32 * j]);
  const Elem* k = static_cast<const Elem*>(p.k) + b * p.k_stride[0] + (h / p.group) * p.k_stride[1];
  const int begin = blockIdx.x * p.keys_per_cta, end = min(begin + p.keys_per_cta, n);
  float* out = p.scores + row * p.score_stride;
  for (int i = begin + warp; i < end; i += kFidelityThreads / 32) {
    const Elem* kr = k + i * p.k_stride[2];
    float dot = 0.f;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) dot += qv[j] * to_float(kr[lane + 32 * j]);
    dot = warp_sum(dot);
    if (lane == 0) out[i] = p.scale * dot;
  }
}

__device__ __forceinline__ void write_stat(float* base, const long long (&stride)[2], int b, int h, float v) {
  if (base) base[b * stride[0] + h * stride[1]] = v;
}

template <class S>
__global__ void __launch_bounds__(kStatsThreads) fidelity_stats(const FidelityParams p) {
  begin_grid();
  __shared__ BlockScratch scratch;
  const int row = blockIdx.x, b = row / p.num_q_heads, h = row % p.num_q_heads;
  const int n = p.row_len[row];
  if (n == 0) {
    if (threadIdx.x == 0) {
      write_stat(p.recall, p.recall_stride, b, h, quiet_nan());
      write_stat(p.mass, p.mass_stride, b, h, quiet_nan());
      write_stat(p.entropy, p.entropy_stride, b, h, quiet_nan());
    }
    return;
  }
  const int words = (n + 31) / 32;
  unsigned* exact_bits = p.bits + 2LL * row * p.bit_words;
  unsigned* cand_bits = exact_bits + p.bit_words;
  for (int w = threadIdx.x; w < words; w += kStatsThreads) exact_bits[w] = 0u, cand_bits[w] = 0u;
  __syncthreads();
  const int e = min(p.top_k, n);
  const int* exact = p.exact + static_cast<long long>(row) * p.top_k;
  for (int s = threadIdx.x; s < e; s += kStatsThreads) {
    const int i = exact[s];
    atomicOr(&exact_bits[i >> 5], 1u << (i & 31));
  }
  const bool has_cand = p.has_cand != 0;
  if (has_cand && p.cand_width > 0) {
    const long long base = b * p.cand_stride[0] + h * p.cand_stride[1];
    for (int c = threadIdx.x; c < p.cand_width; c += kStatsThreads) {
      const long long i =
          p.cand_64 ? static_cast<const long long*>(p.cand)[base + c] : static_cast<const int*>(p.cand)[base + c];
      if (i >= 0 && i < n) atomicOr(&cand_bits[i >> 5], 1u << (i & 31));
    }
  }
  __syncthreads();  // the bitmaps are complete (block-wide visibility of global writes)

  const float* scores = p.scores + row * p.score_stride;
  float m = neg_inf();
  for (int i = threadIdx.x; i < n; i += kStatsThreads) m = fmaxf(m, scores[i]);
  m = block_max<kStatsThreads>(m, scratch);
  float z = 0.f, zs = 0.f, kept = 0.f;
  int both = 0;
  for (int i = threadIdx.x; i < n; i += kStatsThreads) {
    const float x = scores[i] - m;
    const float w = __expf(x);
    z += w;
    if (w > 0.f || w != w) zs += w * x;  // exp underflow: 0 * -inf would be NaN
    const unsigned bit = 1u << (i & 31);
    const bool in_exact = exact_bits[i >> 5] & bit, in_cand = cand_bits[i >> 5] & bit;
    if (has_cand ? in_cand : in_exact) kept += w;
    both += in_exact && in_cand;
  }
  z = block_sum<kStatsThreads>(z, scratch);
  zs = block_sum<kStatsThreads>(zs, scratch);
  kept = block_sum<kStatsThreads>(kept, scratch);
  int total;
  block_exclusive_sum<kStatsThreads>(both, scratch, &total);
  if (threadIdx.x == 0) {
    if (has_cand) write_stat(p.recall, p.recall_stride, b, h, static_cast<float>(total) / e);
    write_stat(p.mass, p.mass_stride, b, h, kept / z);
    write_stat(p.entropy, p.entropy_stride, b, h, logf(z) - zs / z);
  }
}

}  // namespace tka
