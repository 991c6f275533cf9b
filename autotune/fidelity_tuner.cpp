#include "autotune/fidelity_tuner.h"

#include <algorithm>
#include <cmath>

#include "autotune/fidelity_space.h"
#include "autotune/gpu_timing.h"
#include "autotune/pick_fastest.h"
#include "runtime/fidelity_plan.h"
#include "runtime/tensor_check.h"

namespace tka {
namespace {

size_t elem_bytes(tka_dtype dtype) { return dtype == TKA_DTYPE_FP32 ? 4 : 2; }

// What a candidate config must reproduce, per (b, h): the retained mass of the exact top-k (a run
// without candidates: it depends on every selected index, and tied scores carry equal weight, so
// a tie broken either way keeps it), and the candidate's mass and the entropy (a run with them:
// they check the score pass and the statistics). Recall is not compared: with tied scores at the
// k-th place the exact sets of two correct configs may differ, and the exact mass already checks
// the selection. Equal to float rounding (1e-5).
struct FidelityOutput {
  std::vector<float> exact_mass, mass, entropy;
  bool operator!=(const FidelityOutput& o) const {
    const auto differ = [](const std::vector<float>& a, const std::vector<float>& b) {
      if (a.size() != b.size()) return true;
      for (size_t i = 0; i < a.size(); ++i) {
        if (std::isnan(a[i]) || std::isnan(b[i])) {
          if (std::isnan(a[i]) != std::isnan(b[i])) return true;
          continue;
        }
        if (std::fabs(double(a[i]) - b[i]) > 1e-5 * std::max(1.0, std::fabs(double(b[i])))) return true;
      }
      return false;
    };
    return differ(exact_mass, o.exact_mass) || differ(mass, o.mass) || differ(entropy, o.entropy);
  }
};

// Inputs, candidate lists, outputs and workspace of one tuned shape.
class FidelityBench {
 public:
  FidelityBench(const DriverApi* api, const FidelityOp& op, long long seq_len, const DeviceInfo& device)
      : api_(api), d_(op.desc), n_(seq_len), device_(device) {}

  Status init(size_t workspace_bytes) {
    const size_t B = d_.max_batch, N = static_cast<size_t>(n_), e = elem_bytes(d_.dtype);
    const size_t keys = B * d_.num_kv_heads * N * d_.head_dim;
    copies_ = rotation_copies(device_.l2_bytes, static_cast<double>(keys * e), 16);
    cache_.resize(static_cast<size_t>(copies_));
    for (int c = 0; c < copies_; ++c) {
      TKA_RETURN_IF_ERROR(cache_[c].allocate(api_, keys * e));
      TKA_RETURN_IF_ERROR(fill_random(api_, d_.dtype, 71 + c, cache_[c].ptr(), keys));
    }
    const size_t q = B * d_.num_q_heads * d_.head_dim;
    TKA_RETURN_IF_ERROR(q_.allocate(api_, q * e));
    TKA_RETURN_IF_ERROR(fill_random(api_, d_.dtype, 9, q_.ptr(), q));
    // Candidates: top_k distinct keys per head, a + j * stride mod N with an odd stride and N a
    // power of two (the bucket).
    const size_t rows = B * d_.num_q_heads, w = static_cast<size_t>(d_.top_k);
    std::vector<int> idx(rows * w);
    for (size_t r = 0; r < rows; ++r) {
      const long long a = static_cast<long long>((r * 2654435761u) % N);
      const long long stride = 2 * static_cast<long long>(r % 97) + 1;
      for (size_t j = 0; j < w; ++j)
        idx[r * w + j] = j < N ? static_cast<int>((a + static_cast<long long>(j) * stride) % n_) : -1;
    }
    TKA_RETURN_IF_ERROR(indices_.allocate(api_, idx.size() * 4));
    TKA_RETURN_IF_ERROR(TKA_CU(api_, cuMemcpyHtoD, indices_.ptr(), idx.data(), idx.size() * 4));
    const std::vector<int> lens(B, static_cast<int>(n_));
    TKA_RETURN_IF_ERROR(lens_.allocate(api_, B * 4));
    TKA_RETURN_IF_ERROR(TKA_CU(api_, cuMemcpyHtoD, lens_.ptr(), lens.data(), B * 4));
    TKA_RETURN_IF_ERROR(stats_.allocate(api_, 3 * rows * 4));
    return workspace_.allocate(api_, std::max<size_t>(workspace_bytes, 1));
  }

  // with_candidates: recall and the candidate's mass (as tuned); without: the exact top-k's mass.
  Status run(const FidelityPlan& plan, int iteration, bool with_candidates = true) {
    const int64_t B = d_.max_batch, Hq = d_.num_q_heads, Hkv = d_.num_kv_heads, N = n_;
    int64_t q_shape[] = {B, Hq, d_.head_dim}, k_shape[] = {B, Hkv, N, d_.head_dim}, l_shape[] = {B},
            i_shape[] = {B, Hq, d_.top_k}, s_shape[] = {B, Hq};
    const auto make = [&](void* p, DLDataType t, int ndim, int64_t* shape) {
      return device_tensor(p, t, ndim, shape, device_.ordinal);
    };
    const DlType e = dl_type_of(d_.dtype);
    const DLDataType elem{e.code, e.bits, 1}, i32{kDLInt, 32, 1}, f32{kDLFloat, 32, 1};
    float* stats = static_cast<float*>(stats_.data());
    const size_t rows = static_cast<size_t>(B * Hq);
    DLTensor q = make(q_.data(), elem, 3, q_shape);
    DLTensor k = make(cache_[static_cast<size_t>(iteration) % cache_.size()].data(), elem, 4, k_shape);
    DLTensor lens = make(lens_.data(), i32, 1, l_shape), idx = make(indices_.data(), i32, 3, i_shape);
    DLTensor recall = make(stats, f32, 2, s_shape), mass = make(stats + rows, f32, 2, s_shape),
             entropy = make(stats + 2 * rows, f32, 2, s_shape);
    tka_tensors t{};
    t.q = &q, t.k_cache = &k, t.seq_lens = &lens, t.retained_mass = &mass, t.entropy = &entropy;
    if (with_candidates) t.indices = &idx, t.recall = &recall;
    return plan.run(t, workspace_.data(), nullptr);
  }

  // The statistics of input 0, with every buffer the run writes poisoned (NaN) first: a config
  // that leaves part of them unwritten does not inherit the previous config's values.
  Status output(const FidelityPlan& plan, FidelityOutput* out) {
    const size_t rows = static_cast<size_t>(d_.max_batch) * d_.num_q_heads;
    std::vector<float> all(3 * rows);
    const auto poisoned_run = [&](bool with_candidates) {
      TKA_RETURN_IF_ERROR(
          TKA_CU(api_, cuMemsetD32Async, workspace_.ptr(), 0xFFFFFFFFu, workspace_.bytes() / 4, nullptr));
      TKA_RETURN_IF_ERROR(TKA_CU(api_, cuMemsetD32Async, stats_.ptr(), 0xFFFFFFFFu, 3 * rows, nullptr));
      TKA_RETURN_IF_ERROR(run(plan, 0, with_candidates));
      return TKA_CU(api_, cuMemcpyDtoH, all.data(), stats_.ptr(), all.size() * 4);
    };
    TKA_RETURN_IF_ERROR(poisoned_run(false));
    out->exact_mass.assign(all.begin() + rows, all.begin() + 2 * rows);
    TKA_RETURN_IF_ERROR(poisoned_run(true));
    out->mass.assign(all.begin() + rows, all.begin() + 2 * rows);
    out->entropy.assign(all.begin() + 2 * rows, all.end());
    return Status::ok();
  }

  int copies() const { return copies_; }

 private:
  const DriverApi* api_;
  tka_fidelity_desc d_;
  long long n_;
  DeviceInfo device_;
  int copies_ = 1;
  std::vector<DeviceBuffer> cache_;
  DeviceBuffer q_, indices_, lens_, stats_, workspace_;
};

}  // namespace

double fidelity_bytes_floor(const FidelityOp& op, long long batch, long long seq_len) {
  return static_cast<double>(batch) * op.desc.num_kv_heads * static_cast<double>(seq_len) * op.desc.head_dim *
         static_cast<double>(elem_bytes(op.desc.dtype));
}

Status tune_fidelity(Runtime& runtime, const tka_fidelity_desc& desc_in, const TuneOptions& options,
                     TuneResult* result) {
  if (runtime.compile_only())
    return make_error(TKA_ERROR_NO_DEVICE, "tune: this runtime is compile-only; tuning needs a GPU");
  tka_fidelity_desc desc = desc_in;
  if (desc.max_batch > 0) desc.max_batch = pow2_bucket(desc.max_batch);
  if (desc.max_seq_len > 0) desc.max_seq_len = pow2_bucket(desc.max_seq_len);
  FidelityOp op;
  TKA_RETURN_IF_ERROR(validate_fidelity(desc, /*host=*/false, &op));
  const DriverApi* api = nullptr;
  TKA_RETURN_IF_ERROR(driver(&api));
  ScopedContext ctx(api, runtime.device().context);
  TKA_RETURN_IF_ERROR(ctx.status());
  *result = TuneResult{};

  const std::vector<FidelityConfig> space = fidelity_space(op);
  std::vector<std::unique_ptr<FidelityPlan>> plans;
  size_t workspace = 0;
  TKA_RETURN_IF_ERROR(build_space_plans(
      space,
      [&](const auto& config, std::unique_ptr<FidelityPlan>* plan) {
        return FidelityPlan::create(runtime, desc, plan, &config);
      },
      &plans, &workspace, result, options.compile_jobs));
  FidelityBench bench(api, op, desc.max_seq_len, runtime.device());
  TKA_RETURN_IF_ERROR(bench.init(workspace));
  FidelityConfig best;
  double best_us = 0, default_us = 0;
  TKA_RETURN_IF_ERROR((pick_fastest<FidelityConfig, FidelityPlan, FidelityOutput>(
      api, space, plans, options, [&](const FidelityPlan& p, FidelityOutput* out) { return bench.output(p, out); },
      [&](const FidelityPlan& p, int r) { return bench.run(p, r); },
      "its exact top-k mass, candidate mass or entropy differs from the default's", result, &best, &best_us,
      &default_us)));

  TuningEntry& e = result->entry;
  e = measured_entry(runtime, tuning_shape_for(op), desc.max_seq_len, desc.max_batch, best_us, default_us);
  e.fidelity_config = best;
  return finish_tune(api, best.text(), fidelity_bytes_floor(op, desc.max_batch, desc.max_seq_len),
                     fmt::format("{} key copies", bench.copies()), result);
}

}  // namespace tka
