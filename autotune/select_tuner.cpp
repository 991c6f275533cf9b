#include "autotune/select_tuner.h"

#include <algorithm>
#include <cmath>

#include "autotune/gpu_timing.h"
#include "autotune/pick_fastest.h"
#include "autotune/select_space.h"
#include "runtime/select_plan.h"

namespace tka {
namespace {

// Inputs (rotated), outputs and workspace of one tuned shape.
class SelectBench {
 public:
  SelectBench(const DriverApi* api, const SelectOp& op, const DeviceInfo& device)
      : api_(api), op_(op), device_(device) {}

  Status init(size_t workspace_bytes) {
    const tka_select_desc& d = op_.desc;
    elem_ = d.dtype == TKA_DTYPE_FP32 ? 4 : 2;
    const size_t count = static_cast<size_t>(d.max_rows) * d.max_n;
    copies_ = rotation_copies(device_.l2_bytes, static_cast<double>(count * elem_), 32);
    inputs_.resize(static_cast<size_t>(copies_));
    for (int c = 0; c < copies_; ++c) {
      TKA_RETURN_IF_ERROR(inputs_[c].allocate(api_, count * elem_));
      TKA_RETURN_IF_ERROR(fill_random(api_, d.dtype, 11 + c, inputs_[c].ptr(), count));
    }
    const size_t out = static_cast<size_t>(d.max_rows) * d.top_k;
    TKA_RETURN_IF_ERROR(values_.allocate(api_, out * elem_));
    TKA_RETURN_IF_ERROR(indices_.allocate(api_, out * 4));
    return workspace_.allocate(api_, workspace_bytes);
  }

  Status run(const SelectPlan& plan, int iteration) {
    const tka_select_desc& d = op_.desc;
    const DLDataType elem{static_cast<uint8_t>(d.dtype == TKA_DTYPE_BF16 ? kDLBfloat : kDLFloat),
                          static_cast<uint8_t>(8 * elem_), 1};
    int64_t in_shape[] = {d.max_rows, d.max_n}, out_shape[] = {d.max_rows, d.top_k};
    const auto make = [&](void* p, DLDataType t, int64_t* shape) {
      return device_tensor(p, t, 2, shape, device_.ordinal);
    };
    DLTensor in = make(inputs_[static_cast<size_t>(iteration) % inputs_.size()].data(), elem, in_shape);
    DLTensor vals = make(values_.data(), elem, out_shape), idx = make(indices_.data(), {kDLInt, 32, 1}, out_shape);
    tka_tensors t{};
    t.input = &in, t.values = &vals, t.indices = &idx;
    return plan.run(t, workspace_.data(), nullptr);
  }

  // The selected set of every row on input 0 (sorted per row: the order is the config's own).
  Status selection(const SelectPlan& plan, std::vector<int>* out) {
    TKA_RETURN_IF_ERROR(run(plan, 0));
    out->resize(static_cast<size_t>(op_.desc.max_rows) * op_.desc.top_k);
    TKA_RETURN_IF_ERROR(TKA_CU(api_, cuMemcpyDtoH, out->data(), indices_.ptr(), out->size() * 4));
    for (size_t r = 0; r < static_cast<size_t>(op_.desc.max_rows); ++r)
      std::sort(out->begin() + r * op_.desc.top_k, out->begin() + (r + 1) * op_.desc.top_k);
    return Status::ok();
  }

  int copies() const { return copies_; }

 private:
  const DriverApi* api_;
  SelectOp op_;
  DeviceInfo device_;
  size_t elem_ = 4;
  int copies_ = 1;
  std::vector<DeviceBuffer> inputs_;
  DeviceBuffer values_, indices_, workspace_;
};

}  // namespace

Status tune_select(Runtime& runtime, const tka_select_desc& desc, const TuneOptions& options, TuneResult* result) {
  if (runtime.compile_only())
    return make_error(TKA_ERROR_NO_DEVICE, "tune: this runtime is compile-only; tuning needs a GPU");
  SelectOp op;
  TKA_RETURN_IF_ERROR(validate_select(desc, &op));
  const DriverApi* api = nullptr;
  TKA_RETURN_IF_ERROR(driver(&api));
  ScopedContext ctx(api, runtime.device().context);
  TKA_RETURN_IF_ERROR(ctx.status());
  *result = TuneResult{};

  const std::vector<SelectConfig> space = select_space(op);
  std::vector<std::unique_ptr<SelectPlan>> plans;
  size_t workspace = 0;
  TKA_RETURN_IF_ERROR(build_space_plans(
      space,
      [&](const auto& config, std::unique_ptr<SelectPlan>* plan) {
        return SelectPlan::create(runtime, desc, plan, &config);
      },
      &plans, &workspace, result));
  SelectBench bench(api, op, runtime.device());
  TKA_RETURN_IF_ERROR(bench.init(workspace));
  SelectConfig best;
  double best_us = 0, default_us = 0;
  const Status timed = pick_fastest<SelectConfig, SelectPlan, std::vector<int>>(
      api, space, plans, options, [&](const SelectPlan& p, std::vector<int>* out) { return bench.selection(p, out); },
      [&](const SelectPlan& p, int r) { return bench.run(p, r); }, "its selection differs from the default's", result,
      &best, &best_us, &default_us);
  TKA_RETURN_IF_ERROR(timed);

  TuningEntry& e = result->entry;
  e = measured_entry(runtime, tuning_shape_for(op), desc.max_n, desc.max_rows, best_us, default_us);
  e.select_config = best;
  const double elem = desc.dtype == TKA_DTYPE_FP32 ? 4 : 2;
  const double bytes = static_cast<double>(desc.max_rows) * desc.max_n * elem;  // read once
  return finish_tune(api, best.text(), bytes, fmt::format("{} input copies", bench.copies()), result);
}

}  // namespace tka
