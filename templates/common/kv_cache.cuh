// Where a key or value row lives in a KV cache, for every kernel that reads one: contiguous
// [B, Hkv, capacity, d] (strides st[0..2] per sequence, head, key), or paged [pages, page_size,
// Hkv, d] (per page, slot, head) through a block table [B, max_pages]. `P` is the kernel's
// parameter struct: block_table, block_table_stride and num_pages; `S` its Spec: Elem, kPaged,
// kPageSize.
#pragma once

namespace tka {

// The page of key `i` of sequence `b` in a paged cache (its block-table entry, not yet checked).
template <class S, class P>
__device__ __forceinline__ int page_of(const P& p, int b, int i) {
  constexpr int kPageSize = S::kPaged ? S::kPageSize : 1;  // no division by zero when contiguous
  return p.block_table[b * p.block_table_stride + i / kPageSize];
}

// Row `i` of KV head `kvh` inside `page`; nullptr when the page is outside the pool.
template <class S, class P>
__device__ __forceinline__ const typename S::Elem* page_row(const P& p, const void* base, const long long (&st)[3],
                                                            int page, int kvh, int i) {
  constexpr int kPageSize = S::kPaged ? S::kPageSize : 1;
  if (page < 0 || page >= p.num_pages) return nullptr;
  return static_cast<const typename S::Elem*>(base) + page * st[0] + (i % kPageSize) * st[1] + kvh * st[2];
}

// Address of key or value row `i` of KV head `kvh` of sequence `b`; nullptr when the block table
// points outside the page pool.
template <class S, class P>
__device__ __forceinline__ const typename S::Elem* kv_row(const P& p, const void* base, const long long (&st)[3], int b,
                                                          int kvh, int i) {
  if (!S::kPaged)
    return static_cast<const typename S::Elem*>(base) + b * st[0] + kvh * st[1] + static_cast<long long>(i) * st[2];
  return page_row<S>(p, base, st, page_of<S>(p, b, i), kvh, i);
}

}  // namespace tka
