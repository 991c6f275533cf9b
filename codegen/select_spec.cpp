#include "codegen/select_spec.h"

#include "codegen/decode_spec.h"

namespace tka {
namespace {

constexpr FieldError invalid{"select"};

}  // namespace

Status validate_select(const tka_select_desc& d, SelectOp* op) {
  if (d.dtype != TKA_DTYPE_FP32 && d.dtype != TKA_DTYPE_BF16 && d.dtype != TKA_DTYPE_FP16)
    return invalid("dtype",
                   fmt::format("{} is not a dtype (TKA_DTYPE_FP32, TKA_DTYPE_BF16 or TKA_DTYPE_FP16)", int(d.dtype)));
  if (d.top_k < 1 || d.top_k > kMaxSelectK)
    return invalid("top_k", fmt::format("must be in 1..{}, got {}", kMaxSelectK, d.top_k));
  if (d.max_rows <= 0) return invalid("max_rows", fmt::format("must be positive, got {}", d.max_rows));
  if (d.max_n <= 0 || d.max_n > kMaxSelectColumns)
    return invalid("max_n", fmt::format("must be in 1..{}, got {}", kMaxSelectColumns, d.max_n));
  if (d.pad != 0 && d.pad != 1) return invalid("pad", fmt::format("must be 0 or 1, got {}", d.pad));
  if (d.sorted != 0 && d.sorted != 1) return invalid("sorted", fmt::format("must be 0 or 1, got {}", d.sorted));
  if (!d.pad && d.top_k > d.max_n)
    return invalid("top_k", fmt::format("{} exceeds max_n {}; set pad = 1 to pad the missing slots", d.top_k, d.max_n));
  op->desc = d;
  op->sort_size = 1;
  while (op->sort_size < d.top_k) op->sort_size *= 2;
  return Status::ok();
}

SelectConfig default_select_config(const SelectOp&) {
  SelectConfig c;
  c.threads = 512;
  c.capacity = 4096;
  c.stages = 4;
  c.split = 1;
  c.cluster = 8;
  c.coop = 0;  // measured slower than the cluster path at 32 rows (bench/NOTES.md); a tuning choice
  return c;
}

std::string SelectConfig::text() const {
  return fmt::format("t={} c={} st={} sp={} cl={} co={}", threads, capacity, stages, split, cluster, coop);
}

std::string SelectKernelSpec::text() const {
  return fmt::format("op=select;dtype={};t={};c={};st={}", dtype_name(dtype), config.threads, config.capacity,
                     config.stages);
}

std::string SelectKernelSpec::short_name() const { return fmt::format("select_{}", dtype_name(dtype)); }

}  // namespace tka
