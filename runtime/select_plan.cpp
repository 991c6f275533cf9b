#include "runtime/select_plan.h"

#include <algorithm>

#include "common/log.h"
#include "runtime/launch.h"
#include "runtime/select_split.h"
#include "runtime/tensor_check.h"
#include "templates/select_params.cuh"

namespace tka {
namespace {
// Rows split over CTAs only when each gets at least this many (about 16 rows or fewer on 132 SMs).
constexpr int kSelectMinChunks = 16;

}  // namespace

SelectWorkspace select_workspace(int rows, int row_len, int k, const SelectConfig& config, int sm_count, size_t at) {
  SelectWorkspace ws;
  ws.bytes = at;
  if (!config.split) return ws;
  WorkspaceLayout layout(at);
  ws.split =
      take_split_workspace(layout, rows, row_len, k, config.threads, config.capacity, kSelectMinChunks, sm_count);
  if (config.coop) ws.coop = take_coop_workspace(layout, rows, config.threads);
  ws.bytes = layout.bytes();
  return ws;
}

Status prepare_select(const DeviceInfo& device, const CUfunction* fns, const SelectConfig& c, int elem_bytes,
                      int sort_size, SelectSmem* out) {
  const DriverApi* api = nullptr;
  TKA_RETURN_IF_ERROR(driver(&api));
  int static_bytes = 0;  // the larger of select_rows' and select_rows_cluster's
  for (codegen::SelectKernel k : {codegen::kSelectRows, codegen::kSelectRowsCluster}) {
    int bytes = 0;
    TKA_RETURN_IF_ERROR(static_smem_bytes(device, fns[k], &bytes));
    static_bytes = std::max(static_bytes, bytes);
  }
  const int room = device.max_smem_optin - static_bytes;
  const int ring = row_stream_ring_bytes(c.stages, c.threads, elem_bytes);
  const int sort = sort_size * 8;
  SelectSmem s;
  s.ring = ring <= room ? ring : 0;
  s.sort = sort;
  s.sort_in_rows = sort > 0 && sort <= room;
  s.capacity = c.capacity;
  for (codegen::SelectKernel k : {codegen::kSelectRows, codegen::kSelectRowsCluster})
    TKA_RETURN_IF_ERROR(
        allow_dynamic_smem(device, fns[k], s.bytes(1 << 30, 1, true), "select rows", /*prefer_shared=*/true));
  if (device.sm >= 90 && s.ring > 0) {
    s.cluster_bytes = cluster_smem_bytes(device, static_bytes, s.bytes(1 << 30, 1, true));
    TKA_RETURN_IF_ERROR(allow_dynamic_smem(device, fns[codegen::kSelectRowsCluster], s.cluster_bytes,
                                           "select rows in clusters", /*prefer_shared=*/true));
    TKA_RETURN_IF_ERROR(cluster_residency(device, fns[codegen::kSelectRowsCluster], c.threads, s.cluster_bytes,
                                          c.cluster, &s.resident_clusters));
  }
  if (c.coop)
    TKA_RETURN_IF_ERROR(
        coop_residency(device, fns[codegen::kSelectRowsCoop], c.threads, "select rows (cooperative)", &s.coop));
  if (sort > 0) {
    // The split path's sort buffer. Plans of every k share a module, so the limit is raised to what
    // the largest k needs (a plan setting its own size would lower it under a plan of larger k).
    if (sort > device.max_smem_optin)
      return make_error(TKA_ERROR_UNSUPPORTED,
                        "select.top_k: sorting {} entries needs {} bytes of shared memory; "
                        "the device has {}",
                        sort_size, sort, device.max_smem_optin);
    TKA_RETURN_IF_ERROR(allow_dynamic_smem(device, fns[codegen::kSelectSort],
                                           std::min(kMaxSelectK * 8, device.max_smem_optin), "select sort"));
  }
  *out = s;
  return Status::ok();
}

Status launch_select(const DriverApi* api, const CUfunction* fn, SelectParams p, const SelectConfig& c,
                     const SelectSmem& smem, const SelectWorkspace& ws, char* ws_base, const DeviceInfo& device,
                     bool sorted, CUstream stream) {
  const unsigned threads = static_cast<unsigned>(c.threads), rows = static_cast<unsigned>(p.rows);
  void* args[] = {&p};
  const auto launch = [&](codegen::SelectKernel kernel, unsigned gx, unsigned gy, unsigned smem_bytes,
                          unsigned cluster = 0, bool cooperative = false) {
    KernelLaunch k;
    k.fn = fn[kernel];
    k.grid_x = gx, k.grid_y = gy;
    k.threads = threads;
    k.smem = smem_bytes;
    k.cluster = cluster;
    k.cooperative = cooperative;
    return launch_kernel(api, device, k, stream, args);
  };
  const unsigned sort_bytes = static_cast<unsigned>(p.sort_size * 8);
  // Few long rows: one cooperative grid, each CTA a chunk of a row in shared memory.
  const CoopSelectShape coop =
      c.coop ? coop_select_shape(p.rows, p.n, c.threads, device.sm_count, smem.coop) : CoopSelectShape{};
  if (coop.chunks > 0) {
    TKA_RETURN_IF_ERROR(coop_select_params(ws.coop, ws_base, p.rows, coop, &p.coop));
    TKA_RETURN_IF_ERROR(launch(codegen::kSelectRowsCoop, static_cast<unsigned>(coop.chunks), rows,
                               static_cast<unsigned>(coop.smem), 0, true));
    if (sorted) TKA_RETURN_IF_ERROR(launch(codegen::kSelectSort, rows, 1, sort_bytes));
    return Status::ok();
  }
  // A cluster per row where rows are few and long enough for the one-read path (shorter rows
  // would leave all but one CTA of each cluster idle), and where the ring fits (its bytes are the
  // exact threshold's scratch).
  const int cluster = smem.ring > 0 && sampled_select_pays(p.n, std::min(p.k, p.n), c.capacity)
                          ? select_cluster_size(c.cluster, p.rows, p.n, device.sm_count, smem.resident_clusters)
                          : 0;
  if (cluster > 0) {
    p.sort_rows = sorted && smem.sort_in_rows;
    TKA_RETURN_IF_ERROR(launch(codegen::kSelectRowsCluster, rows * static_cast<unsigned>(cluster), 1,
                               static_cast<unsigned>(smem.cluster_bytes), static_cast<unsigned>(cluster)));
    if (sorted && !p.sort_rows) TKA_RETURN_IF_ERROR(launch(codegen::kSelectSort, rows, 1, sort_bytes));
    return Status::ok();
  }
  const SelectSplit split = select_split(c.split != 0, c.threads, p.rows, p.n, device.sm_count, kSelectMinChunks);
  if (split.chunks > 0) {
    TKA_RETURN_IF_ERROR(split_select_params(ws.split, ws_base, p.rows, split, p.k, c.capacity, &p.split));
    // The histograms of the rows in use: phase 1 adds into them.
    TKA_RETURN_IF_ERROR(TKA_CU(api, cuMemsetD32Async, reinterpret_cast<CUdeviceptr>(p.split.hist), 0,
                               static_cast<size_t>(p.rows) * 2048, stream));
    for (codegen::SelectKernel k : {codegen::kSelectSplitHist, codegen::kSelectSplitClassify})
      TKA_RETURN_IF_ERROR(launch(k, static_cast<unsigned>(split.chunks), rows, 0));
    TKA_RETURN_IF_ERROR(launch(codegen::kSelectSplitFinish, rows, 1, 0));
  } else {
    // select_rows sorts its own rows in shared memory where the buffer fits.
    p.sort_rows = sorted && smem.sort_in_rows;
    TKA_RETURN_IF_ERROR(launch(codegen::kSelectRows, rows, 1, static_cast<unsigned>(smem.bytes(p.n, p.k, sorted))));
  }
  if (sorted && !p.sort_rows) TKA_RETURN_IF_ERROR(launch(codegen::kSelectSort, rows, 1, sort_bytes));
  return Status::ok();
}

Status SelectPlan::create(Runtime& runtime, const tka_select_desc& desc, std::unique_ptr<SelectPlan>* out,
                          const SelectConfig* config) {
  auto plan = std::make_unique<SelectPlan>();
  TKA_RETURN_IF_ERROR(validate_select(desc, &plan->op_));
  plan->compile_only_ = runtime.compile_only();
  plan->device_ = runtime.device();
  plan->kspec_.dtype = desc.dtype;
  if (config) {
    TKA_RETURN_IF_ERROR(plan->build(runtime, *config));
  } else {
    SelectConfig chosen;
    TKA_RETURN_IF_ERROR(runtime.select_config_for(plan->op_, &chosen));
    TKA_RETURN_IF_ERROR(build_or_fall_back("select", chosen, default_select_config(plan->op_),
                                           [&](const SelectConfig& c) { return plan->build(runtime, c); }));
  }
  *out = std::move(plan);
  return Status::ok();
}

Status SelectPlan::build(Runtime& runtime, const SelectConfig& config) {
  const tka_select_desc& desc = op_.desc;
  kspec_.config = config;
  spec_text_ = fmt::format("{};k={};sorted={};sp={};cl={};co={}", kspec_.text(), desc.top_k, desc.sorted, config.split,
                           config.cluster, config.coop);
  TKA_RETURN_IF_ERROR(runtime.module_for(codegen::render_select(kspec_), &module_));
  if (!compile_only_)
    TKA_RETURN_IF_ERROR(prepare_select(device_, module_->functions.data(), config, dl_type_of(desc.dtype).bits / 8,
                                       desc.sorted ? op_.sort_size : 0, &smem_));
  // The split path runs only while rows are fewer than SMs.
  ws_ = select_workspace(std::min(desc.max_rows, device_.sm_count), desc.max_n, desc.top_k, config, device_.sm_count);
  return Status::ok();
}

Status SelectPlan::run(const tka_tensors& t, void* workspace, CUstream stream) const {
  TKA_RETURN_IF_ERROR(require_unused(t, {"input", "lengths", "values", "indices"}, "select"));
  const tka_select_desc& d = op_.desc;
  const int dev = device_.ordinal;
  const DlType type = dl_type_of(d.dtype);
  const int elem = type.bits / 8;
  TensorView in, lens, vals, idx;
  // Any row stride: rows that are not 16-byte aligned are read one element at a time.
  TKA_RETURN_IF_ERROR(check_tensor(t.input, {"input", type.code, type.bits, {-2, -2}, true, dev, elem}, &in));
  const int64_t rows = in.shape[0], n = in.shape[1];
  if (rows > d.max_rows)
    return make_error(TKA_ERROR_TENSOR_SHAPE, "tensors.input: {} rows exceed the plan's max_rows {}", rows, d.max_rows);
  if (n > d.max_n)
    return make_error(TKA_ERROR_TENSOR_SHAPE, "tensors.input: {} columns exceed the plan's max_n {}", n, d.max_n);
  if (!d.pad && n < d.top_k)
    return make_error(TKA_ERROR_TENSOR_SHAPE,
                      "tensors.input: {} columns, fewer than top_k {}; create the plan with pad = 1", n, d.top_k);
  TKA_RETURN_IF_ERROR(check_tensor(t.lengths, {"lengths", kDLInt, 32, {rows}, false, dev, 4}, &lens));
  TKA_RETURN_IF_ERROR(
      check_tensor(t.values, written({"values", type.code, type.bits, {rows, d.top_k}, true, dev, elem}), &vals));
  TKA_RETURN_IF_ERROR(check_tensor(t.indices, written({"indices", kDLInt, 32, {rows, d.top_k}, true, dev, 4}), &idx));
  TKA_RETURN_IF_ERROR(check_workspace(workspace, ws_.bytes));
  if (compile_only_)
    return make_error(TKA_ERROR_NO_DEVICE, "this plan belongs to a compile-only runtime (no GPU); it cannot run");
  if (rows == 0) return Status::ok();

  SelectParams p{};
  p.input = in.data;
  p.input_stride = in.strides[0];
  p.lengths = static_cast<const int*>(lens.data);
  p.values = vals.data;
  p.values_stride = vals.strides[0];
  p.indices = static_cast<int*>(idx.data);
  p.indices_stride = idx.strides[0];
  p.rows = static_cast<int>(rows);
  p.n = static_cast<int>(n);
  p.k = d.top_k;
  p.sort_size = op_.sort_size;
  const DriverApi* api = nullptr;
  TKA_RETURN_IF_ERROR(driver(&api));
  ScopedContext ctx(api, device_.context);
  TKA_RETURN_IF_ERROR(ctx.status());
  return launch_select(api, module_->functions.data(), p, kspec_.config, smem_, ws_, static_cast<char*>(workspace),
                       device_, d.sorted != 0, stream);
}

}  // namespace tka
