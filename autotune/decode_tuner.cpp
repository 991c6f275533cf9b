#include "autotune/decode_tuner.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

#include "autotune/decode_heuristic.h"
#include "autotune/decode_space.h"
#include "autotune/gpu_timing.h"
#include "autotune/pick_fastest.h"
#include "common/half.h"
#include "runtime/decode_plan.h"

namespace tka {
namespace {

long long ceil_div(long long a, long long b) { return (a + b - 1) / b; }

// One set of inputs; the tuner rotates over several so that no run starts with warm L2.
struct InputSet {
  DeviceBuffer q, k, v, block_table;
};

// Everything a timed run needs, built once per tuned shape.
class Bench {
 public:
  Bench(const DriverApi* api, const DecodeOp& op, const DeviceInfo& device) : api_(api), op_(op), device_(device) {}

  Status init(size_t workspace_bytes) {
    const tka_decode_desc& d = op_.desc;
    const long long B = d.max_batch, N = d.max_seq_len;
    const bool paged = d.kv_layout == TKA_KV_PAGED;
    pages_per_seq_ = paged ? ceil_div(N, d.page_size) : 0;
    const long long kv_rows = paged ? B * pages_per_seq_ * d.page_size : B * N;
    q_elems_ = static_cast<size_t>(B) * d.q_len * d.num_q_heads * d.head_dim;
    kv_elems_ = static_cast<size_t>(kv_rows) * d.num_kv_heads * d.head_dim;
    const double set_bytes = 2.0 * (q_elems_ + 2 * kv_elems_);
    copies_ = rotation_copies(device_.l2_bytes, set_bytes, 32);
    const bool bf16 = d.dtype == TKA_DTYPE_BF16;
    std::vector<int> table;
    if (paged) {  // every sequence's pages scattered over the pool, as after some churn
      table.resize(static_cast<size_t>(B * pages_per_seq_));
      std::iota(table.begin(), table.end(), 0);
      std::shuffle(table.begin(), table.end(), std::mt19937(7));
    }
    for (int c = 0; c < copies_; ++c) {
      InputSet s;
      TKA_RETURN_IF_ERROR(s.q.allocate(api_, q_elems_ * 2));
      TKA_RETURN_IF_ERROR(s.k.allocate(api_, kv_elems_ * 2));
      TKA_RETURN_IF_ERROR(s.v.allocate(api_, kv_elems_ * 2));
      TKA_RETURN_IF_ERROR(fill_random_halves(api_, bf16, 3 * c + 1, s.q.ptr(), q_elems_));
      TKA_RETURN_IF_ERROR(fill_random_halves(api_, bf16, 3 * c + 2, s.k.ptr(), kv_elems_));
      TKA_RETURN_IF_ERROR(fill_random_halves(api_, bf16, 3 * c + 3, s.v.ptr(), kv_elems_));
      if (paged) {
        TKA_RETURN_IF_ERROR(s.block_table.allocate(api_, table.size() * 4));
        TKA_RETURN_IF_ERROR(TKA_CU(api_, cuMemcpyHtoD, s.block_table.ptr(), table.data(), table.size() * 4));
      }
      sets_.push_back(std::move(s));
    }
    std::vector<int> lens(static_cast<size_t>(B), static_cast<int>(N));
    TKA_RETURN_IF_ERROR(seq_lens_.allocate(api_, B * 4));
    TKA_RETURN_IF_ERROR(TKA_CU(api_, cuMemcpyHtoD, seq_lens_.ptr(), lens.data(), lens.size() * 4));
    TKA_RETURN_IF_ERROR(out_.allocate(api_, q_elems_ * 2));
    return workspace_.allocate(api_, workspace_bytes);
  }

  Status run(const DecodePlan& plan, int iteration) {
    const tka_decode_desc& d = op_.desc;
    const InputSet& s = sets_[static_cast<size_t>(iteration) % sets_.size()];
    const int64_t B = d.max_batch, N = d.max_seq_len;
    const bool paged = d.kv_layout == TKA_KV_PAGED;
    const DLDataType elem{static_cast<uint8_t>(d.dtype == TKA_DTYPE_BF16 ? kDLBfloat : kDLFloat), 16, 1};
    const DLDataType i32{kDLInt, 32, 1};
    int64_t q_shape[] = {B, d.q_len, d.num_q_heads, d.head_dim};
    int64_t kv_shape[] = {B, d.num_kv_heads, N, d.head_dim};
    if (paged) {
      kv_shape[0] = B * pages_per_seq_, kv_shape[1] = d.page_size, kv_shape[2] = d.num_kv_heads;
    }
    int64_t len_shape[] = {B}, table_shape[] = {B, pages_per_seq_};
    const auto make = [&](void* p, DLDataType t, int ndim, int64_t* shape) {
      return device_tensor(p, t, ndim, shape, device_.ordinal);
    };
    DLTensor tq = make(s.q.data(), elem, 4, q_shape), tk = make(s.k.data(), elem, 4, kv_shape),
             tv = make(s.v.data(), elem, 4, kv_shape), tl = make(seq_lens_.data(), i32, 1, len_shape),
             tb = make(s.block_table.data(), i32, 2, table_shape), to = make(out_.data(), elem, 4, q_shape);
    tka_tensors t{};
    t.q = &tq, t.k_cache = &tk, t.v_cache = &tv, t.seq_lens = &tl, t.out = &to;
    if (paged) t.block_table = &tb;
    return plan.run(t, workspace_.data(), nullptr);
  }

  // The output on input set 0, written over a NaN poison so that an unwritten element shows.
  Status output(const DecodePlan& plan, std::vector<float>* out) {
    TKA_RETURN_IF_ERROR(TKA_CU(api_, cuMemsetD32Async, out_.ptr(), 0xffffffffu, q_elems_ / 2, nullptr));
    TKA_RETURN_IF_ERROR(run(plan, 0));
    std::vector<uint16_t> bits(q_elems_);
    TKA_RETURN_IF_ERROR(TKA_CU(api_, cuMemcpyDtoH, bits.data(), out_.ptr(), bits.size() * 2));
    out->resize(bits.size());
    for (size_t i = 0; i < bits.size(); ++i) (*out)[i] = half_bits_to_float(bits[i], op_.desc.dtype == TKA_DTYPE_BF16);
    return Status::ok();
  }

  // A larger workspace, for plans built after init (launch variants with more attend splits).
  Status reserve_workspace(size_t bytes) {
    return bytes > workspace_.bytes() ? workspace_.allocate(api_, bytes) : Status::ok();
  }

  int copies() const { return copies_; }

 private:
  const DriverApi* api_;
  DecodeOp op_;
  DeviceInfo device_;
  int64_t pages_per_seq_ = 0;
  size_t q_elems_ = 0, kv_elems_ = 0;
  int copies_ = 1;
  std::vector<InputSet> sets_;
  DeviceBuffer seq_lens_, out_, workspace_;
};

// A config's output. Same selection, different summation order: only rounding may differ; a wrong
// selection or an unwritten element (NaN) differs.
struct DecodeOutput {
  std::vector<float> values;
  bool operator!=(const DecodeOutput& o) const {
    if (values.size() != o.values.size()) return true;
    for (size_t i = 0; i < values.size(); ++i) {
      const float g = values[i], w = o.values[i];
      if (std::isnan(w) || std::isnan(g) || std::fabs(g - w) > 2e-3f + 1e-2f * std::fabs(w)) return true;
    }
    return false;
  }
};

}  // namespace

double decode_bytes_floor(const DecodeOp& op, long long batch, long long seq_len) {
  const tka_decode_desc& d = op.desc;
  const double keys = static_cast<double>(batch) * d.num_kv_heads * seq_len * d.head_dim * 2;
  const double k = std::min<long long>(op.max_k, seq_len);
  const double values = static_cast<double>(batch) * d.q_len * op.sel_heads() * k * d.head_dim_v * 2;
  return keys + values;
}

Status tune_decode(Runtime& runtime, const tka_decode_desc& desc, const TuneOptions& options, TuneResult* result) {
  if (runtime.compile_only())
    return make_error(TKA_ERROR_NO_DEVICE, "tune: this runtime is compile-only; tuning needs a GPU");
  DecodeOp op;
  TKA_RETURN_IF_ERROR(validate_decode(desc, &op));
  const DriverApi* api = nullptr;
  TKA_RETURN_IF_ERROR(driver(&api));
  ScopedContext ctx(api, runtime.device().context);
  TKA_RETURN_IF_ERROR(ctx.status());
  *result = TuneResult{};

  // Every compiled variant (in parallel: NVRTC dominates), those the device can launch timed;
  // then the launch-time choices (score waves, attend splits, split selection) over the winner's
  // kernels, which compile nothing.
  const std::vector<DecodeConfig> space = decode_compiled_space(op);
  const auto create = [&](const DecodeConfig& c, std::unique_ptr<DecodePlan>* plan) {
    return DecodePlan::create(runtime, desc, plan, &c);
  };
  std::vector<std::unique_ptr<DecodePlan>> plans;
  size_t workspace = 0;
  TKA_RETURN_IF_ERROR(build_space_plans(space, create, &plans, &workspace, result, options.compile_jobs));
  Bench bench(api, op, runtime.device());
  TKA_RETURN_IF_ERROR(bench.init(workspace));
  const auto output = [&](const DecodePlan& plan, DecodeOutput* out) { return bench.output(plan, &out->values); };
  const auto run = [&](const DecodePlan& plan, int i) { return bench.run(plan, i); };
  // Each stage checks against its first config: the default, then the first stage's winner.
  const char* differs = "its output differs from the reference config's beyond rounding, or is NaN";

  // One progress bar over both stages (the launch stage's size is that of the default's).
  const int compiled = static_cast<int>(space.size()) - result->pruned;
  TuneOptions first = options, second = options;
  const bool clusters = runtime.device().sm >= 90;
  int total = compiled + static_cast<int>(decode_launch_space(space[0], clusters).size());
  if (options.progress) first.progress = [&](int done, int) { options.progress(done, total); };

  DecodeConfig best;
  double best_us = 0, default_us = 0;
  const Status compiled_timed = pick_fastest<DecodeConfig, DecodePlan, DecodeOutput>(
      api, space, plans, first, output, run, differs, result, &best, &best_us, &default_us);
  TKA_RETURN_IF_ERROR(compiled_timed);
  std::unique_ptr<DecodePlan> default_plan = std::move(plans[0]);  // for the final comparison
  plans.clear();

  const std::vector<DecodeConfig> launch = decode_launch_space(best, clusters);
  const int pruned_before = result->pruned;
  TKA_RETURN_IF_ERROR(build_space_plans(launch, create, &plans, &workspace, result));
  TKA_RETURN_IF_ERROR(bench.reserve_workspace(workspace));  // more attend splits may need more
  total = compiled + static_cast<int>(launch.size()) - (result->pruned - pruned_before);
  if (options.progress) second.progress = [&](int done, int) { options.progress(compiled + done, total); };
  double winner_us = 0;
  const Status launch_timed = pick_fastest<DecodeConfig, DecodePlan, DecodeOutput>(
      api, launch, plans, second, output, run, differs, result, &best, &best_us, &winner_us);
  TKA_RETURN_IF_ERROR(launch_timed);
  // The two stages compare against different references: the final pick is re-timed against the
  // default itself (the same config: one time for both). A launch variant that does not hold
  // against the default leaves the first stage's winner (launch[0]) to be tried the same way
  // before the default stays.
  if (best == space[0]) {
    default_us = best_us;
  } else {
    const auto holds_against_default = [&](const DecodeConfig& c, bool* holds) {
      const DecodePlan& winner = *plans[std::find(launch.begin(), launch.end(), c) - launch.begin()];
      return confirm_winner(
          api, options, [&](int r) { return run(*default_plan, r); }, [&](int r) { return run(winner, r); },
          &default_us, &best_us, holds);
    };
    bool holds = false;
    TKA_RETURN_IF_ERROR(holds_against_default(best, &holds));
    if (!holds && best != launch[0] && launch[0] != space[0]) {
      best = launch[0];
      TKA_RETURN_IF_ERROR(holds_against_default(best, &holds));
    }
    if (!holds) best = space[0];
  }

  TuningEntry& e = result->entry;
  e = measured_entry(runtime, tuning_shape_for(op), desc.max_seq_len, desc.max_batch, best_us, default_us);
  e.config = best;
  return finish_tune(api, best.text(), decode_bytes_floor(op, desc.max_batch, desc.max_seq_len),
                     fmt::format("{} input copies", bench.copies()), result);
}

}  // namespace tka
