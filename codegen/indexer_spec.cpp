#include "codegen/indexer_spec.h"

#include "codegen/decode_spec.h"

namespace tka {
namespace {

constexpr FieldError invalid{"indexer"};

}  // namespace

Status validate_indexer(const tka_indexer_desc& d, bool fused, IndexerOp* op) {
  if (d.key_dtype != TKA_DTYPE_BF16 && d.key_dtype != TKA_DTYPE_FP8_E4M3)
    return invalid("key_dtype", fmt::format("{} is not an indexer key dtype (TKA_DTYPE_BF16 or TKA_DTYPE_FP8_E4M3)",
                                            int(d.key_dtype)));
  if (d.num_index_heads < 1 || d.num_index_heads > kMaxIndexHeads)
    return invalid("num_index_heads", fmt::format("must be in 1..{}, got {}", kMaxIndexHeads, d.num_index_heads));
  if (d.index_head_dim != 128)
    return make_error(TKA_ERROR_UNSUPPORTED, "indexer.index_head_dim: {} is not supported (128)", d.index_head_dim);
  if (d.q_len < 1 || d.q_len > kMaxQLen)
    return invalid("q_len", fmt::format("must be in 1..{}, got {}", kMaxQLen, d.q_len));
  if (d.kv_layout != TKA_KV_CONTIGUOUS && d.kv_layout != TKA_KV_PAGED)
    return invalid("kv_layout", fmt::format("{} is not a KV layout", int(d.kv_layout)));
  if (d.kv_layout == TKA_KV_PAGED && (d.page_size < 16 || d.page_size > 256))
    return make_error(TKA_ERROR_UNSUPPORTED, "indexer.page_size: {} is not supported (16..256)", d.page_size);
  if (d.max_batch <= 0) return invalid("max_batch", fmt::format("must be positive, got {}", d.max_batch));
  if (static_cast<long long>(d.max_batch) * d.q_len > 65535)  // one grid row per (sequence, token)
    return invalid("max_batch",
                   fmt::format("max_batch * q_len = {} exceeds 65535", static_cast<long long>(d.max_batch) * d.q_len));
  op->desc = d;
  if (d.kv_layout == TKA_KV_CONTIGUOUS) op->desc.page_size = 0;
  op->fused = fused;
  if (!fused) return Status::ok();
  if (d.max_seq_len <= 0 || d.max_seq_len > (1 << 26))
    return invalid("max_seq_len", fmt::format("must be in 1..{}, got {}", 1 << 26, d.max_seq_len));
  if (d.top_k < 1 || d.top_k > kMaxSelectK)
    return invalid("top_k", fmt::format("must be in 1..{}, got {}", kMaxSelectK, d.top_k));
  tka_sparse_desc a = d.attention;
  a.index_width = d.top_k;
  a.select = TKA_SELECT_PER_GROUP;  // one list for every query head of the token
  a.q_len = d.q_len;
  a.kv_layout = d.kv_layout;
  a.page_size = d.page_size;
  a.max_batch = d.max_batch;
  const Status s = validate_sparse(a, &op->attention);
  if (!s.is_ok()) return Status(s.code(), "indexer.attention: " + s.message());
  return Status::ok();
}

IndexerKernelSpec indexer_kernel_spec(const IndexerOp& op) {
  IndexerKernelSpec s;
  s.heads = op.desc.num_index_heads;
  s.dim = op.desc.index_head_dim;
  s.q_len = op.desc.q_len;
  s.fp8 = op.desc.key_dtype == TKA_DTYPE_FP8_E4M3;
  s.paged = op.desc.kv_layout == TKA_KV_PAGED;
  s.page_size = s.paged ? op.desc.page_size : 0;
  return s;
}

std::string IndexerConfig::text() const { return fmt::format("ks={} cps={}", stages, ctas_per_sm); }

std::string IndexerKernelSpec::text() const {
  return fmt::format("op=indexer;heads={};d={};q={};key={};kv={};page={};ks={};st={};sc={};sks={}", heads, dim, q_len,
                     fp8 ? "fp8e4m3" : "bf16", paged ? "paged" : "contig", page_size, stages, select.threads,
                     select.capacity, select.stages);
}

std::string IndexerKernelSpec::short_name() const {
  std::string name =
      fmt::format("indexer_h{}_q{}_{}_{}", heads, q_len, fp8 ? "fp8" : "bf16", paged ? "paged" : "contig");
  if (paged) name += fmt::format("{}", page_size);
  return name + fmt::format("_s{}", stages);
}

}  // namespace tka
