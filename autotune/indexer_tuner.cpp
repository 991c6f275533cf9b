#include "autotune/indexer_tuner.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "autotune/gpu_timing.h"
#include "autotune/indexer_space.h"
#include "autotune/pick_fastest.h"
#include "runtime/indexer_plan.h"

namespace tka {
namespace {

// FP8 E4M3 bytes from a fixed-seed generator, NaN codes (S.1111.111) replaced by their neighbour:
// random keys whose scores are all numbers.
std::vector<uint8_t> random_fp8(uint64_t seed, size_t count) {
  std::vector<uint8_t> out(count);
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (size_t i = 0; i < count; i += 8) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    for (size_t e = 0; e < 8 && i + e < count; ++e) {
      uint8_t b = static_cast<uint8_t>(x >> (8 * e));
      if ((b & 0x7f) == 0x7f) b ^= 1;
      out[i + e] = b;
    }
  }
  return out;
}

// Inputs (keys rotated), scores and workspace of one tuned shape: B sequences of N tokens.
class IndexerBench {
 public:
  IndexerBench(const DriverApi* api, const tka_indexer_desc& desc, const DeviceInfo& device)
      : api_(api), d_(desc), device_(device) {}

  Status init(size_t workspace_bytes) {
    const size_t B = d_.max_batch, N = d_.max_seq_len, H = d_.num_index_heads, D = d_.index_head_dim;
    fp8_ = d_.key_dtype == TKA_DTYPE_FP8_E4M3;
    const size_t key_bytes = B * N * D * (fp8_ ? 1 : 2);
    copies_ = rotation_copies(device_.l2_bytes, key_bytes, 16);
    keys_.resize(static_cast<size_t>(copies_));
    for (int c = 0; c < copies_; ++c) {
      TKA_RETURN_IF_ERROR(keys_[c].allocate(api_, key_bytes));
      if (fp8_) {
        const std::vector<uint8_t> host = random_fp8(31 + c, key_bytes);
        TKA_RETURN_IF_ERROR(TKA_CU(api_, cuMemcpyHtoD, keys_[c].ptr(), host.data(), key_bytes));
      } else {
        TKA_RETURN_IF_ERROR(fill_random(api_, TKA_DTYPE_BF16, 31 + c, keys_[c].ptr(), B * N * D));
      }
    }
    TKA_RETURN_IF_ERROR(q_.allocate(api_, B * d_.q_len * H * D * 2));
    TKA_RETURN_IF_ERROR(fill_random(api_, TKA_DTYPE_BF16, 5, q_.ptr(), B * d_.q_len * H * D));
    TKA_RETURN_IF_ERROR(w_.allocate(api_, B * d_.q_len * H * 4));
    TKA_RETURN_IF_ERROR(fill_random(api_, TKA_DTYPE_FP32, 6, w_.ptr(), B * d_.q_len * H));
    TKA_RETURN_IF_ERROR(scale_.allocate(api_, B * N * 4));
    TKA_RETURN_IF_ERROR(fill_random(api_, TKA_DTYPE_FP32, 7, scale_.ptr(), B * N));
    const std::vector<int> lens(B, static_cast<int>(N));
    TKA_RETURN_IF_ERROR(lens_.allocate(api_, B * 4));
    TKA_RETURN_IF_ERROR(TKA_CU(api_, cuMemcpyHtoD, lens_.ptr(), lens.data(), B * 4));
    TKA_RETURN_IF_ERROR(scores_.allocate(api_, B * d_.q_len * N * 4));
    return workspace_.allocate(api_, workspace_bytes);
  }

  Status run(const IndexerPlan& plan, int iteration) {
    const int64_t B = d_.max_batch, N = d_.max_seq_len, Q = d_.q_len, H = d_.num_index_heads, D = d_.index_head_dim;
    int64_t q_shape[] = {B, Q, H, D}, w_shape[] = {B, Q, H}, k_shape[] = {B, N, D}, s_shape[] = {B, N}, l_shape[] = {B},
            o_shape[] = {B, Q, N};
    const auto make = [&](void* p, DLDataType t, int ndim, int64_t* shape) {
      return device_tensor(p, t, ndim, shape, device_.ordinal);
    };
    const DLDataType bf16{kDLBfloat, 16, 1}, f32{kDLFloat, 32, 1}, i32{kDLInt, 32, 1}, u8{kDLUInt, 8, 1};
    DLTensor q = make(q_.data(), bf16, 4, q_shape), w = make(w_.data(), f32, 3, w_shape);
    DLTensor k = make(keys_[static_cast<size_t>(iteration) % keys_.size()].data(), fp8_ ? u8 : bf16, 3, k_shape);
    DLTensor sc = make(scale_.data(), f32, 2, s_shape), lens = make(lens_.data(), i32, 1, l_shape);
    DLTensor out = make(scores_.data(), f32, 3, o_shape);
    tka_tensors t{};
    t.index_q = &q, t.index_weights = &w, t.index_k = &k, t.index_scale = fp8_ ? &sc : nullptr;
    t.seq_lens = &lens, t.scores = &out;
    return plan.run(t, workspace_.data(), nullptr);
  }

  // The scores of input 0, as bits.
  Status scores(const IndexerPlan& plan, std::vector<uint32_t>* out) {
    TKA_RETURN_IF_ERROR(run(plan, 0));
    out->resize(static_cast<size_t>(d_.max_batch) * d_.q_len * d_.max_seq_len);
    return TKA_CU(api_, cuMemcpyDtoH, out->data(), scores_.ptr(), out->size() * 4);
  }

  int copies() const { return copies_; }
  double key_bytes() const {
    return static_cast<double>(d_.max_batch) * d_.max_seq_len * (d_.index_head_dim * (fp8_ ? 1 : 2) + (fp8_ ? 4 : 0));
  }

 private:
  const DriverApi* api_;
  tka_indexer_desc d_;
  DeviceInfo device_;
  bool fp8_ = true;
  int copies_ = 1;
  std::vector<DeviceBuffer> keys_;
  DeviceBuffer q_, w_, scale_, lens_, scores_, workspace_;
};

}  // namespace

Status tune_indexer(Runtime& runtime, const tka_indexer_desc& desc_in, const TuneOptions& options, TuneResult* result) {
  if (runtime.compile_only())
    return make_error(TKA_ERROR_NO_DEVICE, "tune: this runtime is compile-only; tuning needs a GPU");
  tka_indexer_desc desc = desc_in;
  if (desc.kv_layout != TKA_KV_CONTIGUOUS)
    return make_error(TKA_ERROR_UNSUPPORTED, "tune indexer: only the contiguous indexer cache is tuned");
  if (desc.max_seq_len <= 0 || desc.max_seq_len > (1 << 26))
    return make_error(TKA_ERROR_INVALID_ARGUMENT, "indexer.max_seq_len: must be in 1..{} to tune, got {}", 1 << 26,
                      desc.max_seq_len);
  desc.max_seq_len = pow2_bucket(desc.max_seq_len);
  if (desc.max_batch > 0) desc.max_batch = pow2_bucket(desc.max_batch);
  IndexerOp op;
  TKA_RETURN_IF_ERROR(validate_indexer(desc, /*fused=*/false, &op));
  const DriverApi* api = nullptr;
  TKA_RETURN_IF_ERROR(driver(&api));
  ScopedContext ctx(api, runtime.device().context);
  TKA_RETURN_IF_ERROR(ctx.status());
  *result = TuneResult{};

  const std::vector<IndexerConfig> space = indexer_space(op, runtime.target_sm());
  std::vector<std::unique_ptr<IndexerPlan>> plans;
  size_t workspace = 0;
  TKA_RETURN_IF_ERROR(build_space_plans(
      space,
      [&](const auto& config, std::unique_ptr<IndexerPlan>* plan) {
        return IndexerPlan::create(runtime, desc, /*fused=*/false, plan, &config);
      },
      &plans, &workspace, result));
  IndexerBench bench(api, desc, runtime.device());
  TKA_RETURN_IF_ERROR(bench.init(workspace));
  IndexerConfig best;
  double best_us = 0, default_us = 0;
  const Status timed = pick_fastest<IndexerConfig, IndexerPlan, std::vector<uint32_t>>(
      api, space, plans, options,
      [&](const IndexerPlan& p, std::vector<uint32_t>* out) { return bench.scores(p, out); },
      [&](const IndexerPlan& p, int r) { return bench.run(p, r); }, "its scores differ from the default's", result,
      &best, &best_us, &default_us);
  TKA_RETURN_IF_ERROR(timed);

  TuningEntry& e = result->entry;
  e = measured_entry(runtime, tuning_shape_for(op), desc.max_seq_len, desc.max_batch, best_us, default_us);
  e.indexer_config = best;
  const double bytes = bench.key_bytes() + static_cast<double>(desc.max_batch) * desc.q_len * desc.max_seq_len * 4;
  return finish_tune(api, best.text(), bytes, fmt::format("{} key copies", bench.copies()), result);
}

}  // namespace tka
