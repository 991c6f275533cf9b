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

  // TKA_INDEXER_TMA (the wgmma path, contiguous FP8 keys): the keys as a CUtensorMap, 3-D {d_I,
  // capacity, B} in the 128-byte swizzle, boxes of one tile, encoded by the host each run; when
  // use_k_map is 0 the tiles are copied by cp.async, as without the macro.
  int use_k_map;
  alignas(64) unsigned char k_map[128];
};

constexpr int kIndexerThreads = 128;
constexpr int kIndexerTile = 64;  // tokens per shared-memory tile

// How indexer_scores lays its four warps over a tile (tokens x heads): heads go in mma n-tiles of
// 8, each warp holding the query fragments of at most 4 n-tiles (32 heads, 64 registers) for the
// whole kernel; above 32 heads two warps share the tile's tokens, each with half the heads.
struct IndexerWarpLayout {
  int head_warps, ntiles_per_warp, heads_pad;
};
constexpr IndexerWarpLayout indexer_warp_layout(int heads) {
  const int ntiles = (heads + 7) / 8;
  const int head_warps = ntiles > 4 ? 2 : 1;
  const int per_warp = (ntiles + head_warps - 1) / head_warps;
  return IndexerWarpLayout{head_warps, per_warp, head_warps * per_warp * 8};
}

// Whether indexer_scores multiplies with wgmma (sm_90a, FP8 keys of d = 128, 33 to 64 heads
// padded to 64): the query then goes in as two FP8 tiles (see indexer.cuh).
constexpr bool indexer_uses_wgmma(int sm, int heads, int dim, bool fp8) {
  return sm == 90 && fp8 && dim == 128 && heads > 32 && heads <= 64;
}

// Dynamic shared memory of indexer_scores, in bytes from its start. mma.sync: the query tile
// (16-bit, heads padded to the warp layout, rows 8 elements longer so that the column reads of
// consecutive heads fall in different banks) and `stages` key tiles in flight as stored in the
// cache (FP8 bytes or bf16, rows unpadded: the 16-byte pieces of odd rows are swizzled instead).
// wgmma: 1024 bytes of slack to align the start, the query's two FP8 tiles (64 x 128 bytes
// each) and the key tiles, all in the 128-byte swizzle. The plan raises the kernel's limit to
// `bytes`.
struct IndexerSmemLayout {
  int q, q_lo, tiles, tile_row, bytes;  // tile_row: bytes per token row of a key tile
};

constexpr IndexerSmemLayout indexer_smem_layout(int heads, int dim, bool fp8, int stages, bool wgmma = false) {
  IndexerSmemLayout l{};
  l.tile_row = dim * (fp8 ? 1 : 2);
  if (wgmma) {
    l.q = 0;
    l.q_lo = 64 * l.tile_row;
    l.tiles = 2 * 64 * l.tile_row;
    l.bytes = 1024 + l.tiles + stages * kIndexerTile * l.tile_row;
    return l;
  }
  l.q = 0;
  l.q_lo = 0;
  l.tiles = indexer_warp_layout(heads).heads_pad * (dim + 8) * 2;
  l.bytes = l.tiles + stages * kIndexerTile * l.tile_row;
  return l;
}

}  // namespace tka
