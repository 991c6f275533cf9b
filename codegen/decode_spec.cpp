#include "codegen/decode_spec.h"

#include <cmath>

namespace tka {
namespace {

constexpr FieldError invalid{"decode"};

}  // namespace

const char* dtype_name(tka_dtype dtype) {
  switch (dtype) {
    case TKA_DTYPE_BF16:
      return "bf16";
    case TKA_DTYPE_FP16:
      return "fp16";
    case TKA_DTYPE_FP32:
      return "fp32";
    case TKA_DTYPE_FP8_E4M3:
      return "fp8e4m3";
  }
  return "?";
}

Status validate_head_counts(const FieldError& invalid, int num_q_heads, int num_kv_heads, int* group) {
  if (num_q_heads <= 0 || num_q_heads > kMaxHeads)
    return invalid("num_q_heads", fmt::format("must be in 1..{}, got {}", kMaxHeads, num_q_heads));
  if (num_kv_heads <= 0) return invalid("num_kv_heads", fmt::format("must be positive, got {}", num_kv_heads));
  if (num_q_heads % num_kv_heads != 0)
    return invalid("num_kv_heads", fmt::format("{} does not divide num_q_heads {}", num_kv_heads, num_q_heads));
  *group = num_q_heads / num_kv_heads;
  return Status::ok();
}

Status validate_decode(const tka_decode_desc& d, DecodeOp* op) {
  if (d.dtype != TKA_DTYPE_BF16 && d.dtype != TKA_DTYPE_FP16)
    return invalid("dtype", fmt::format("{} is not a dtype (TKA_DTYPE_BF16 or TKA_DTYPE_FP16)", int(d.dtype)));
  int group = 0;
  TKA_RETURN_IF_ERROR(validate_head_counts(invalid, d.num_q_heads, d.num_kv_heads, &group));
  if (group > kMaxGroup)
    return make_error(TKA_ERROR_UNSUPPORTED,
                      "decode.num_kv_heads: group size {} (num_q_heads / num_kv_heads) exceeds {}", group, kMaxGroup);
  if (d.head_dim != 64 && d.head_dim != 128 && d.head_dim != 256)
    return make_error(TKA_ERROR_UNSUPPORTED, "decode.head_dim: {} is not supported (64, 128 or 256)", d.head_dim);
  if (d.head_dim_v != 0 && d.head_dim_v != d.head_dim)
    return make_error(TKA_ERROR_UNSUPPORTED, "decode.head_dim_v: {} must equal head_dim {} (or be 0)", d.head_dim_v,
                      d.head_dim);
  if (d.q_len < 1 || d.q_len > kMaxQLen)
    return invalid("q_len", fmt::format("must be in 1..{}, got {}", kMaxQLen, d.q_len));
  if (d.top_k < 0 || d.top_k > kMaxTopK)
    return invalid("top_k", fmt::format("must be in 1..{} (or 0 to use top_k_ratio), got {}", kMaxTopK, d.top_k));
  if (d.top_k == 0 && !(d.top_k_ratio > 0.0 && d.top_k_ratio <= 1.0))
    return invalid("top_k_ratio", fmt::format("must be in (0, 1] when top_k is 0, got {}", d.top_k_ratio));
  if (d.n_sink < 0) return invalid("n_sink", fmt::format("must be >= 0, got {}", d.n_sink));
  if (d.n_local < 0) return invalid("n_local", fmt::format("must be >= 0, got {}", d.n_local));
  const long long forced = static_cast<long long>(d.n_sink) + d.n_local;  // no int overflow
  if (d.top_k > 0 && forced > d.top_k)
    return invalid("n_sink", fmt::format("n_sink + n_local = {} exceeds top_k {}", forced, d.top_k));
  if (d.select != TKA_SELECT_PER_HEAD && d.select != TKA_SELECT_PER_GROUP)
    return invalid("select", fmt::format("{} is not a selection mode", int(d.select)));
  if (d.kv_layout != TKA_KV_CONTIGUOUS && d.kv_layout != TKA_KV_PAGED)
    return invalid("kv_layout", fmt::format("{} is not a KV layout", int(d.kv_layout)));
  if (d.kv_layout == TKA_KV_PAGED && (d.page_size < 16 || d.page_size > 256))
    return make_error(TKA_ERROR_UNSUPPORTED, "decode.page_size: {} is not supported (16..256)", d.page_size);
  if (d.max_batch <= 0 || d.max_batch > kMaxBatch)  // the score pass's grid z
    return invalid("max_batch", fmt::format("must be in 1..{}, got {}", kMaxBatch, d.max_batch));
  if (d.max_seq_len <= 0) return invalid("max_seq_len", fmt::format("must be positive, got {}", d.max_seq_len));
  if (d.max_seq_len > (1 << 26)) return invalid("max_seq_len", fmt::format("{} exceeds {}", d.max_seq_len, 1 << 26));
  if (!(d.scale >= 0.f) || std::isinf(d.scale))
    return invalid("scale", fmt::format("must be finite and >= 0 (0: 1/sqrt(head_dim)), got {}", d.scale));

  op->desc = d;
  if (op->desc.head_dim_v == 0) op->desc.head_dim_v = d.head_dim;
  if (op->desc.scale == 0.f) op->desc.scale = 1.f / std::sqrt(static_cast<float>(d.head_dim));
  if (d.kv_layout == TKA_KV_CONTIGUOUS) op->desc.page_size = 0;
  op->group = group;
  if (d.top_k > 0) {
    op->max_k = d.top_k;
  } else {
    const int by_ratio = static_cast<int>(std::ceil(static_cast<double>(d.top_k_ratio) * d.max_seq_len));
    op->max_k = static_cast<int>(std::min<long long>(d.max_seq_len, std::max<long long>(by_ratio, forced)));
  }
  return Status::ok();
}

DecodeKernelSpec kernel_spec_for(const DecodeOp& op, const DecodeConfig& config) {
  DecodeKernelSpec s;
  s.dtype = op.desc.dtype;
  s.head_dim = op.desc.head_dim;
  s.group = op.group;
  s.q_len = op.desc.q_len;
  // With one head per group both modes select the same set; one kernel serves both.
  s.per_group = op.desc.select == TKA_SELECT_PER_GROUP && op.group > 1;
  s.paged = op.desc.kv_layout == TKA_KV_PAGED;
  s.page_size = s.paged ? op.desc.page_size : 0;
  s.config = config;
  return s;
}

bool DecodeConfig::operator==(const DecodeConfig& o) const {
  return score_threads == o.score_threads && score_row_tile == o.score_row_tile && select_threads == o.select_threads &&
         select_capacity == o.select_capacity && attend_threads == o.attend_threads && attend_chunk == o.attend_chunk &&
         score_waves == o.score_waves && attend_min_split == o.attend_min_split && select_split == o.select_split;
}

std::string DecodeConfig::text() const {
  return fmt::format("st={} sr={} ss={} sc={} at={} ac={} sw={} am={} ssp={}", score_threads, score_row_tile,
                     select_threads, select_capacity, attend_threads, attend_chunk, score_waves, attend_min_split,
                     select_split);
}

std::string DecodeKernelSpec::text() const {
  const DecodeConfig& c = config;
  return fmt::format("op=decode;dtype={};d={};g={};q={};sel={};kv={};page={};st={};sr={};ss={};sc={};at={};ac={}",
                     dtype_name(dtype), head_dim, group, q_len, per_group ? "group" : "head",
                     paged ? "paged" : "contig", page_size, c.score_threads, c.score_row_tile, c.select_threads,
                     c.select_capacity, c.attend_threads, c.attend_chunk);
}

std::string DecodeKernelSpec::short_name() const {
  std::string name = fmt::format("decode_{}_d{}_g{}_q{}_{}_{}", dtype_name(dtype), head_dim, group, q_len,
                                 per_group ? "group" : "head", paged ? "paged" : "contig");
  if (paged) name += fmt::format("{}", page_size);
  return name;
}

}  // namespace tka
