#include "codegen/sparse_spec.h"

#include <algorithm>
#include <cmath>

#include "codegen/decode_spec.h"
#include "templates/sparse_params.cuh"

namespace tka {
namespace {

constexpr FieldError invalid{"sparse"};

}  // namespace

Status validate_sparse(const tka_sparse_desc& d, SparseOp* op) {
  if (d.dtype != TKA_DTYPE_BF16 && d.dtype != TKA_DTYPE_FP16)
    return invalid("dtype", fmt::format("{} is not a dtype (TKA_DTYPE_BF16 or TKA_DTYPE_FP16)", int(d.dtype)));
  int group = 0;
  TKA_RETURN_IF_ERROR(validate_head_counts(invalid, d.num_q_heads, d.num_kv_heads, &group));
  if (group > kMaxSparseGroup)
    return make_error(TKA_ERROR_UNSUPPORTED, "sparse.num_kv_heads: group size {} exceeds {}", group, kMaxSparseGroup);
  if (d.shared_kv != 0 && d.shared_kv != 1)
    return invalid("shared_kv", fmt::format("must be 0 or 1, got {}", d.shared_kv));
  const int dv = d.head_dim_v == 0 ? d.head_dim : d.head_dim_v;
  const bool mla = d.head_dim == 576 && dv == 512 && d.shared_kv;
  const bool plain = (d.head_dim == 64 || d.head_dim == 128 || d.head_dim == 256) && dv == d.head_dim;
  if (!mla && !plain)
    return make_error(TKA_ERROR_UNSUPPORTED,
                      "sparse.head_dim: {} with head_dim_v {} is not supported (64, 128, 256 with equal head_dim_v; "
                      "576 with head_dim_v 512 and shared_kv)",
                      d.head_dim, d.head_dim_v);
  if (d.q_len < 1 || d.q_len > kMaxQLen)
    return invalid("q_len", fmt::format("must be in 1..{}, got {}", kMaxQLen, d.q_len));
  if (d.index_width < 1 || d.index_width > kMaxTopK)
    return invalid("index_width", fmt::format("must be in 1..{}, got {}", kMaxTopK, d.index_width));
  if (d.select != TKA_SELECT_PER_HEAD && d.select != TKA_SELECT_PER_GROUP)
    return invalid("select", fmt::format("{} is not a selection mode", int(d.select)));
  if (d.kv_layout != TKA_KV_CONTIGUOUS && d.kv_layout != TKA_KV_PAGED)
    return invalid("kv_layout", fmt::format("{} is not a KV layout", int(d.kv_layout)));
  if (d.kv_layout == TKA_KV_PAGED && (d.page_size < 16 || d.page_size > 256))
    return make_error(TKA_ERROR_UNSUPPORTED, "sparse.page_size: {} is not supported (16..256)", d.page_size);
  if (d.max_batch <= 0 || d.max_batch > kMaxBatch)
    return invalid("max_batch", fmt::format("must be in 1..{}, got {}", kMaxBatch, d.max_batch));
  if (!(d.scale >= 0.f) || std::isinf(d.scale))
    return invalid("scale", fmt::format("must be finite and >= 0 (0: 1/sqrt(head_dim)), got {}", d.scale));
  op->desc = d;
  op->desc.head_dim_v = dv;
  if (op->desc.scale == 0.f) op->desc.scale = 1.f / std::sqrt(static_cast<float>(d.head_dim));
  if (d.kv_layout == TKA_KV_CONTIGUOUS) op->desc.page_size = 0;
  op->group = group;
  return Status::ok();
}

int sparse_head_tile(int heads, int wanted) {
  if (wanted <= kSparseHeadRows || heads <= kSparseHeadRows)
    return std::max(1, std::min({heads, wanted, kSparseHeadRows}));
  // A wide tile is 32 or 64 mma rows; heads past the group are zero rows (48 heads: one tile of 64).
  return wanted >= kSparseWideTile && heads > 32 ? kSparseWideTile : 32;
}

std::string SparseConfig::text() const { return fmt::format("ht={} cps={}", head_tile, ctas_per_sm); }

SparseKernelSpec sparse_kernel_spec(const SparseOp& op, const SparseConfig& config) {
  const tka_sparse_desc& d = op.desc;
  SparseKernelSpec s;
  s.dtype = d.dtype;
  s.head_dim = d.head_dim;
  s.head_dim_v = d.head_dim_v;
  s.shared_kv = d.shared_kv != 0;
  s.group = op.group;
  s.q_len = d.q_len;
  s.per_group = d.select == TKA_SELECT_PER_GROUP && op.group > 1;
  s.paged = d.kv_layout == TKA_KV_PAGED;
  s.page_size = s.paged ? d.page_size : 0;
  s.head_tile = sparse_head_tile(op.list_heads(), config.head_tile);
  // sparse_attend's tiling (templates/sparse.cuh): four warps on 16 mma rows, or a pair of warps
  // per 16 rows of a wider tile.
  s.threads = s.head_tile > kSparseHeadRows ? 2 * 32 * (s.head_tile / kSparseHeadRows) : 128;
  return s;
}

std::string SparseKernelSpec::text() const {
  return fmt::format("op=sparse;dtype={};d={};dv={};shared={};g={};q={};sel={};kv={};page={};t={};ht={}",
                     dtype_name(dtype), head_dim, head_dim_v, shared_kv ? 1 : 0, group, q_len,
                     per_group ? "group" : "head", paged ? "paged" : "contig", page_size, threads, head_tile);
}

std::string SparseKernelSpec::short_name() const {
  std::string name = fmt::format("sparse_{}_d{}_g{}_q{}_{}_{}", dtype_name(dtype), head_dim, group, q_len,
                                 per_group ? "group" : "head", paged ? "paged" : "contig");
  if (paged) name += fmt::format("{}", page_size);
  return name;
}

}  // namespace tka
