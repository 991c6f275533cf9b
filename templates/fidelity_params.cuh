// Launch parameters of the fidelity kernels (fidelity.cuh). Plain C++ shared with runtime/.
// Strides in elements.
#pragma once

namespace tka {

struct FidelityParams {
  const void* q;  // [B, Hq, d]
  long long q_stride[2];
  const void* k;  // [>=B, Hkv, N, d]
  long long k_stride[3];
  const int* seq_lens;  // optional [B]
  const void* cand;     // optional [B, Hq, cand_width] int32 or int64 (cand_64)
  long long cand_stride[2];
  int cand_width;
  int cand_64;
  int has_cand;   // a candidate was given (possibly of width 0: then it keeps nothing)
  float* recall;  // optional [B, Hq]
  long long recall_stride[2];
  float* mass;  // [B, Hq]
  long long mass_stride[2];
  float* entropy;  // [B, Hq]
  long long entropy_stride[2];
  int batch;
  int num_q_heads;
  int group;
  int capacity;  // N: keys per sequence in the cache
  int top_k;
  float scale;
  int keys_per_cta;

  // Workspace
  float* scores;  // [B * Hq, score_stride]
  long long score_stride;
  int* row_len;    // [B * Hq]: the selection's row lengths
  int* exact;      // [B * Hq, top_k]: exact top-k indices (-1 padded)
  unsigned* bits;  // [B * Hq, 2, bit_words]: exact set, candidate set
  long long bit_words;
};

}  // namespace tka
