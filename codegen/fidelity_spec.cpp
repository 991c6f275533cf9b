#include "codegen/fidelity_spec.h"

#include <cmath>

#include "codegen/decode_spec.h"
#include "codegen/select_spec.h"

namespace tka {
namespace {

constexpr FieldError invalid{"fidelity"};

}  // namespace

Status validate_fidelity(const tka_fidelity_desc& d, bool host, FidelityOp* op) {
  if (d.dtype != TKA_DTYPE_FP32 && d.dtype != TKA_DTYPE_BF16 && d.dtype != TKA_DTYPE_FP16)
    return invalid("dtype",
                   fmt::format("{} is not a dtype (TKA_DTYPE_FP32, TKA_DTYPE_BF16 or TKA_DTYPE_FP16)", int(d.dtype)));
  int group = 0;
  TKA_RETURN_IF_ERROR(validate_head_counts(invalid, d.num_q_heads, d.num_kv_heads, &group));
  if (host ? (d.head_dim < 1 || d.head_dim > 1024) : (d.head_dim != 64 && d.head_dim != 128 && d.head_dim != 256))
    return make_error(TKA_ERROR_UNSUPPORTED, "fidelity.head_dim: {} is not supported ({})", d.head_dim,
                      host ? "1..1024" : "64, 128 or 256");
  if (d.top_k < 1 || d.top_k > kMaxSelectK)
    return invalid("top_k", fmt::format("must be in 1..{}, got {}", kMaxSelectK, d.top_k));
  if (d.max_batch <= 0 || d.max_batch > 65535)  // the score kernel's grid z
    return invalid("max_batch", fmt::format("must be in 1..65535, got {}", d.max_batch));
  if (d.max_seq_len <= 0 || d.max_seq_len > (1 << 26))
    return invalid("max_seq_len", fmt::format("must be in 1..{}, got {}", 1 << 26, d.max_seq_len));
  if (!(d.scale >= 0.f) || std::isinf(d.scale))
    return invalid("scale", fmt::format("must be finite and >= 0 (0: 1/sqrt(head_dim)), got {}", d.scale));
  op->desc = d;
  if (op->desc.scale == 0.f) op->desc.scale = 1.f / std::sqrt(static_cast<float>(d.head_dim));
  op->group = group;
  return Status::ok();
}

std::string FidelityKernelSpec::text() const {
  return fmt::format("op=fidelity;dtype={};d={};ss={};sc={}", dtype_name(dtype), head_dim, select_threads,
                     select_capacity);
}

std::string FidelityConfig::text() const { return fmt::format("ss={} kpc={}", select_threads, keys_per_cta); }

FidelityKernelSpec fidelity_kernel_spec(const FidelityOp& op, const FidelityConfig& config) {
  FidelityKernelSpec k;
  k.dtype = op.desc.dtype;
  k.head_dim = op.desc.head_dim;
  k.select_threads = config.select_threads;
  return k;
}

std::string FidelityKernelSpec::short_name() const {
  return fmt::format("fidelity_{}_d{}", dtype_name(dtype), head_dim);
}

}  // namespace tka
