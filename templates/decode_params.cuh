// Launch parameters of the decode kernels, passed by value. Plain C++ so that the host
// (runtime/) fills the very same struct that the kernels read. Strides are in elements.
#pragma once
#include "split_select_params.cuh"

namespace tka {

// Steps of a score row in flight through shared memory in decode_select_cluster (the selection
// op's default stages); the host sizes the ring from it.
constexpr int kDecodeSelectStages = 4;

struct DecodeParams {
  // Inputs
  const void* q;  // [B, q_len, Hq, d]
  long long q_stride[3];
  const void* k;  // contiguous [B, Hkv, cap, d] or paged [pages, page_size, Hkv, d]
  long long k_stride[3];
  const void* v;
  long long v_stride[3];
  const int* seq_lens;     // [B]
  const int* block_table;  // [B, max_pages], paged only
  long long block_table_stride;
  int max_pages;
  int num_pages;
  int capacity;  // contiguous: keys per sequence in the cache

  // Outputs
  void* out;  // [B, q_len, Hq, d]
  long long out_stride[3];
  float* lse;  // optional [B, q_len, Hq]
  long long lse_stride[3];
  int* indices;  // optional [B, q_len, Hq or Hkv, max_k]
  long long indices_stride[3];

  // Shape and selection
  int batch;
  int num_kv_heads;
  int top_k;           // > 0: count
  double top_k_ratio;  // used when top_k == 0
  int n_sink;
  int n_local;
  int max_k;
  int max_seq_len;
  float scale;

  // Launch split
  int splits;     // attend pass: CTAs per selection row
  int split_len;  // selected keys per attend CTA

  // Workspace
  float* scores;  // [B * q_len * Hq, score_stride] fp32 scaled scores
  long long score_stride;
  int* selected;        // [B * q_len * Hsel, max_k]
  int* selected_count;  // [B * q_len * Hsel]
  float* partial;       // [B * q_len * Hq, splits, d + 2]: unnormalised o, max (log2), sum
  unsigned* flags;      // [B]: a block-table entry outside the pool was seen
  // TKA_SCORE_SLOTS only (an experiment, decode.cuh's ScoreShape): [B * q_len * Hq, 128 chunks,
  // 1024] histogram slots of the score pass; null otherwise.
  unsigned* score_slots;

  // Split selection over the selection rows, used when select_split.chunk > 0 (its histograms
  // are zeroed by decode_score each run)
  SplitSelectParams select_split;
  // Selection over one cooperative grid (decode_select_coop), used when select_coop.chunk > 0;
  // with per-head selection the same grid then attends, and no decode_attend runs.
  CoopSelectParams select_coop;
};

}  // namespace tka
