#include "runtime/tensor_check.h"

#include <fmt/format.h>
#include <llvm/ADT/SmallVector.h>

#include <algorithm>
#include <cstdint>

namespace tka {
namespace {

std::string dtype_text(uint8_t code, uint8_t bits) {
  switch (code) {
    case kDLBfloat:
      return fmt::format("bfloat{}", bits);
    case kDLFloat:
      return fmt::format("float{}", bits);
    case kDLInt:
      return fmt::format("int{}", bits);
    case kDLUInt:
      return fmt::format("uint{}", bits);
  }
  return fmt::format("code{}:{}", code, bits);
}

std::string shape_text(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + (s[i] < 0 ? std::string("*") : std::to_string(s[i]));
  return out + "]";
}

// Whether two index tuples of an output can name one element: with the dimensions of extent > 1
// in increasing stride, each stride must step past everything the smaller ones reach (a stride
// of 0, or strides that interleave, would make CTAs write one element twice).
Status check_no_overlap(const char* field, const TensorView& v) {
  llvm::SmallVector<int, 8> dims;  // no allocation: this runs for every output of every call
  for (size_t i = 0; i < v.shape.size(); ++i)
    if (v.shape[i] > 1) dims.push_back(static_cast<int>(i));
  std::sort(dims.begin(), dims.end(), [&](int a, int b) { return v.strides[a] < v.strides[b]; });
  int64_t reach = 0;  // the largest offset the dimensions before this one reach (fits: spans were checked)
  for (int i : dims) {
    if (v.strides[i] <= reach)
      return make_error(TKA_ERROR_TENSOR_STRIDE,
                        "tensors.{}: stride {} of dimension {} does not step past the dimensions of smaller "
                        "stride (an output's elements must not overlap)",
                        field, v.strides[i], i);
    reach += (v.shape[i] - 1) * v.strides[i];
  }
  return Status::ok();
}

}  // namespace

DlType dl_type_of(tka_dtype dtype) {
  switch (dtype) {
    case TKA_DTYPE_FP32:
      return {kDLFloat, 32};
    case TKA_DTYPE_BF16:
      return {kDLBfloat, 16};
    case TKA_DTYPE_FP16:
      return {kDLFloat, 16};
    case TKA_DTYPE_FP8_E4M3:
      return {kDLUInt, 8};
  }
  return {0, 0};
}

Status check_tensor(const DLTensor* t, const TensorRule& rule, TensorView* view) {
  *view = TensorView{};
  if (!t) {
    if (!rule.required) return Status::ok();
    return make_error(TKA_ERROR_NULL_POINTER, "tensors.{} is NULL", rule.field);
  }
  if (rule.device_type == kDLCPU) {
    if (t->device.device_type != kDLCPU)
      return make_error(TKA_ERROR_TENSOR_DEVICE,
                        "tensors.{}: on device (type {}, id {}), expected host memory (kDLCPU)", rule.field,
                        int(t->device.device_type), t->device.device_id);
  } else if (t->device.device_type != kDLCUDA || t->device.device_id != rule.device_id) {
    return make_error(TKA_ERROR_TENSOR_DEVICE, "tensors.{}: on device (type {}, id {}), expected CUDA device {}",
                      rule.field, int(t->device.device_type), t->device.device_id, rule.device_id);
  }
  if (t->dtype.code != rule.code || t->dtype.bits != rule.bits || t->dtype.lanes != 1)
    return make_error(TKA_ERROR_TENSOR_DTYPE, "tensors.{}: dtype {} (lanes {}), expected {}", rule.field,
                      dtype_text(t->dtype.code, t->dtype.bits), t->dtype.lanes, dtype_text(rule.code, rule.bits));
  if (!t->shape && t->ndim > 0) return make_error(TKA_ERROR_TENSOR_SHAPE, "tensors.{}: shape is NULL", rule.field);
  if (t->ndim != static_cast<int>(rule.shape.size()))
    return make_error(TKA_ERROR_TENSOR_SHAPE, "tensors.{}: {} dimensions, expected {} {}", rule.field, t->ndim,
                      rule.shape.size(), shape_text(rule.shape));
  view->shape.assign(t->shape, t->shape + t->ndim);
  for (int i = 0; i < t->ndim; ++i) {
    const bool ok = rule.shape[i] == -2   ? view->shape[i] >= 0
                    : rule.shape[i] == -1 ? view->shape[i] >= 1
                                          : view->shape[i] == rule.shape[i];
    if (!ok)
      return make_error(TKA_ERROR_TENSOR_SHAPE, "tensors.{}: shape {}, expected {} (dimension {})", rule.field,
                        shape_text(view->shape), shape_text(rule.shape), i);
    if (view->shape[i] > INT32_MAX)
      return make_error(TKA_ERROR_TENSOR_SHAPE, "tensors.{}: extent {} of dimension {} exceeds 2^31 - 1", rule.field,
                        view->shape[i], i);
  }
  // Element count and the strides of a compact tensor (strides NULL), without overflow.
  const int n = t->ndim;
  int64_t numel = 1;
  view->strides.resize(n);
  for (int i = n - 1; i >= 0; --i) {
    view->strides[i] = t->strides ? t->strides[i] : numel;
    if (__builtin_mul_overflow(numel, view->shape[i], &numel))
      return make_error(TKA_ERROR_TENSOR_SHAPE, "tensors.{}: shape {} has more than 2^63 elements", rule.field,
                        shape_text(view->shape));
  }
  if (n > 0 && view->strides[n - 1] != 1 && view->shape[n - 1] > 1)
    return make_error(TKA_ERROR_TENSOR_STRIDE, "tensors.{}: innermost stride {}, expected 1", rule.field,
                      view->strides[n - 1]);
  for (int i = 0; i < n; ++i)
    if (view->strides[i] < 0)
      return make_error(TKA_ERROR_TENSOR_STRIDE, "tensors.{}: negative stride {} in dimension {}", rule.field,
                        view->strides[i], i);
  // The bytes from the first element to the last: the kernels' address arithmetic must not wrap.
  int64_t span = 0;
  for (int i = 0; i < n; ++i) {
    int64_t dim_span = 0;
    if (numel > 0 && (__builtin_mul_overflow(view->shape[i] - 1, view->strides[i], &dim_span) ||
                      __builtin_mul_overflow(dim_span, int64_t{rule.bits / 8}, &dim_span) ||
                      __builtin_add_overflow(span, dim_span, &span)))
      return make_error(TKA_ERROR_TENSOR_STRIDE, "tensors.{}: its strides span more than 2^63 bytes", rule.field);
  }
  if (rule.output && numel > 1) TKA_RETURN_IF_ERROR(check_no_overlap(rule.field, *view));
  if (!t->data && numel > 0) return make_error(TKA_ERROR_NULL_POINTER, "tensors.{}: data is NULL", rule.field);
  const int elem = rule.bits / 8;
  const int align = rule.align > 0 ? rule.align : rule.bits == 16 ? 16 : elem;
  const uintptr_t addr = reinterpret_cast<uintptr_t>(t->data) + t->byte_offset;
  if (addr % align != 0)
    return make_error(TKA_ERROR_TENSOR_ALIGNMENT, "tensors.{}: data pointer (+ byte_offset) is not {}-byte aligned",
                      rule.field, align);
  for (int i = 0; i + 1 < n; ++i)
    if ((view->strides[i] * elem) % align != 0 && view->shape[i] > 1)
      return make_error(TKA_ERROR_TENSOR_ALIGNMENT,
                        "tensors.{}: stride {} of dimension {} is not a multiple of {} bytes", rule.field,
                        view->strides[i], i, align);
  view->data = reinterpret_cast<void*>(addr);
  return Status::ok();
}

Status check_block_table(const DLTensor* t, bool paged, int64_t batch, int device_id, TensorView* view) {
  if (!paged && t)
    return make_error(TKA_ERROR_INVALID_ARGUMENT,
                      "tensors.block_table: the plan's KV cache is contiguous (kv_layout); must be NULL");
  return check_tensor(t, {"block_table", kDLInt, 32, {batch, -1}, paged, device_id}, view);
}

Status check_query_and_keys(const tka_tensors& t, const QueryKeysRule& r, TensorView* q, TensorView* k,
                            int64_t* batch) {
  TKA_RETURN_IF_ERROR(
      check_tensor(t.q, {"q", r.code, 16, {-1, r.q_len, r.num_q_heads, r.head_dim}, true, r.device_id}, q));
  *batch = q->shape[0];
  if (*batch > r.max_batch)
    return make_error(TKA_ERROR_TENSOR_SHAPE, "tensors.q: batch {} exceeds the plan's max_batch {}", *batch,
                      r.max_batch);
  const bool paged = r.page_size > 0;
  std::vector<int64_t> kv_shape{-1, r.num_kv_heads, -1, r.head_dim};
  if (paged) kv_shape = {-1, r.page_size, r.num_kv_heads, r.head_dim};
  TKA_RETURN_IF_ERROR(check_tensor(t.k_cache, {"k_cache", r.code, 16, kv_shape, true, r.device_id}, k));
  if (!paged && k->shape[0] < *batch)
    return make_error(TKA_ERROR_TENSOR_SHAPE, "tensors.k_cache: {} sequences, fewer than the batch {}", k->shape[0],
                      *batch);
  return Status::ok();
}

}  // namespace tka
