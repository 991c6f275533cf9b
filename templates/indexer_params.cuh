// Launch parameters of the Lightning Indexer scores kernel (indexer.cuh). Plain C++ shared with
// runtime/. Strides in elements.
#pragma once

namespace tka {

struct IndexerParams {
  const void* q;  // [B, q_len, H_I, d_I] bf16
  long long q_stride[3];
  const float* w;  // [B, q_len, H_I]
  long long w_stride[3];
  const void* k;  // bf16 or FP8 bytes: contiguous [B, N, d_I]; paged [pages, page_size, d_I]
  long long k_stride[2];
  const float* k_scale;  // per token: contiguous [B, N]; paged [pages, page_size]; optional for bf16
  long long k_scale_stride[2];
  const int* seq_lens;     // [B]
  const int* block_table;  // [B, max_pages], paged only
  long long block_table_stride;
  int max_pages;
  int num_pages;
  int capacity;  // contiguous: tokens per sequence in the cache

  float* scores;  // [B, q_len, score_len] rows
  long long score_stride[2];
  int score_len;  // tokens per score row written (-inf past the visible length)
  int* row_len;   // optional [B * q_len]: visible tokens per row (the selection's lengths)

  int batch;
  int num_heads;       // H_I
  int tokens_per_cta;  // a multiple of the token tile
};

}  // namespace tka
