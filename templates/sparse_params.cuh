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
  int capacity;        // contiguous: keys per sequence in the cache
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
  int splits;      // CTAs per (row, head tile) over the index list
  int split_len;   // indices per split, a multiple of 32
  float* partial;  // [B * q_len * Hq, splits, d_v + 2]: unnormalised o, max, sum (splits > 1)
};

// Dynamic shared memory of sparse_attend, in bytes from its start: the query tile, two key tiles
// and two value tiles (double buffering; none for values that share the key rows), the scores and
// the probabilities. Rows carry 8 extra 16-bit elements so that fragment reads from consecutive
// rows fall in different banks. The plan raises the kernel's limit to `bytes`.
constexpr int kSparseChunk = 32;       // listed keys per tile
constexpr int kSparseHeadRows = 16;    // query heads per warp: the M of the mma
constexpr int kSparseWideTile = 64;    // the most query heads per CTA (four warps' rows)
constexpr int kSparseMaxSplits = 128;  // splits of a list (>= 64 keys each; index_width <= 8192)

// Rows of the mma a CTA computes for a head tile: 16 up to 16 heads, else the tile (32 or 64).
constexpr int sparse_head_rows(int head_tile) { return head_tile > kSparseHeadRows ? head_tile : kSparseHeadRows; }

struct SparseSmemLayout {
  int q, k, v, s, p, bytes;
};

constexpr SparseSmemLayout sparse_smem_layout(int head_dim, int head_dim_v, bool shared_kv, int head_tile) {
  const int rows = sparse_head_rows(head_tile);
  const int q_row = head_dim + 8, v_row = head_dim_v + 8, p_row = kSparseChunk + 8;
  SparseSmemLayout l{};
  l.q = 0;
  l.k = l.q + rows * q_row * 2;
  l.v = l.k + 2 * kSparseChunk * q_row * 2;
  l.s = l.v + (shared_kv ? 0 : 2 * kSparseChunk * v_row * 2);
  l.p = l.s + rows * kSparseChunk * 4;
  l.bytes = l.p + rows * p_row * 2;
  return l;
}

}  // namespace tka
