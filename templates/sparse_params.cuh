// Launch parameters of the sparse attention kernels (sparse.cuh). Plain C++ shared with
// runtime/. Strides in elements.
#pragma once

namespace tka {

struct SparseParams {
  const void* q;  // [B, q_len, Hq, d]
  long long q_stride[3];
  const void* k;  // contiguous [B, Hkv, cap, d] or paged [pages, page_size, Hkv, d]
  long long k_stride[3];
  const void* v;  // as k with d_v; the key rows themselves when values share them (MLA)
  long long v_stride[3];
  const int* seq_lens;     // [B]
  const int* block_table;  // [B, max_pages], paged only
  long long block_table_stride;
  int max_pages;
  int num_pages;
  int capacity;       // contiguous: keys per sequence in the cache
  const int* indices;  // [B, q_len, Hsel, width], -1 padded
  long long indices_stride[3];
  int width;

  void* out;  // [B, q_len, Hq, d_v]
  long long out_stride[3];
  float* lse;  // optional [B, q_len, Hq]
  long long lse_stride[3];

  int batch;
  int num_kv_heads;
  float scale;
  int splits;     // CTAs per (row, head tile) over the index list
  int split_len;  // indices per split, a multiple of 32
  float* partial;  // [B * q_len * Hq, splits, d_v + 2]: unnormalised o, max, sum (splits > 1)
};

}  // namespace tka
