#include "runtime/sparse_plan.h"

#include <algorithm>

#include "runtime/launch.h"
#include "runtime/tensor_check.h"
#include "templates/sparse_params.cuh"

namespace tka {
namespace {

long long ceil_div(long long a, long long b) { return (a + b - 1) / b; }

}  // namespace

SparseSplit sparse_split(int ctas_per_split, int width, int sm_count, int ctas_per_sm, bool one_wave) {
  SparseSplit s;
  // Several CTAs per SM (4 by default): each holds two tiles of gathered rows in flight, and
  // several per SM keep enough bytes moving to hide the latency of the gather. MLA's 64-head
  // tiles fit one an SM: at B = 64 its 128 CTAs are one wave unsplit, where rounding up would
  // make two waves and a merge.
  const long long slots = static_cast<long long>(ctas_per_sm) * sm_count, ctas = std::max(ctas_per_split, 1);
  const long long want = one_wave ? std::max<long long>(1, slots / ctas) : ceil_div(slots, ctas);
  // At least 64 keys a split: at most 128 splits of the longest list, one per sparse_merge thread.
  static_assert((kMaxTopK + 63) / 64 <= kSparseMaxSplits, "sparse_merge holds a split per thread");
  const long long most = ceil_div(width, 64);
  s.splits = static_cast<int>(std::max<long long>(1, std::min(want, most)));
  s.split_len = static_cast<int>(ceil_div(ceil_div(width, s.splits), 32) * 32);
  s.splits = static_cast<int>(ceil_div(width, s.split_len));
  return s;
}

SparseSplit SparsePlan::split_for(int ctas) const {
  return sparse_split(ctas, op_.desc.index_width, device_.sm_count, config_.ctas_per_sm,
                      kspec_.head_tile > kSparseHeadRows);
}

int SparsePlan::head_tiles() const { return static_cast<int>(ceil_div(op_.list_heads(), kspec_.head_tile)); }

Status SparsePlan::create(Runtime& runtime, const tka_sparse_desc& desc, std::unique_ptr<SparsePlan>* out,
                          const SparseConfig* config) {
  auto plan = std::make_unique<SparsePlan>();
  TKA_RETURN_IF_ERROR(validate_sparse(desc, &plan->op_));
  plan->compile_only_ = runtime.compile_only();
  plan->device_ = runtime.device();
  if (config)
    plan->config_ = *config;
  else
    TKA_RETURN_IF_ERROR(runtime.sparse_config_for(plan->op_, &plan->config_));
  plan->kspec_ = sparse_kernel_spec(plan->op_, plan->config_);
  plan->spec_text_ = fmt::format("{};w={};cps={}", plan->kspec_.text(), desc.index_width, plan->config_.ctas_per_sm);
  TKA_RETURN_IF_ERROR(runtime.module_for(codegen::render_sparse(plan->kspec_), &plan->module_));
  plan->smem_bytes_ =
      sparse_smem_layout(plan->kspec_.head_dim, plan->kspec_.head_dim_v, plan->kspec_.shared_kv, plan->kspec_.head_tile)
          .bytes;
  // The gathered tiles are dynamic shared memory, above the 48 KiB default for large head dims.
  if (!plan->compile_only_)
    TKA_RETURN_IF_ERROR(allow_dynamic_smem(plan->device_, plan->module_->functions[codegen::kSparseAttend],
                                           plan->smem_bytes_, "sparse attention"));
  const SparseOp& op = plan->op_;
  // Batch 1 has the fewest rows, hence the most splits; larger batches need no more.
  const int ctas = op.desc.q_len * op.sel_heads() * plan->head_tiles();
  plan->max_splits_ = plan->split_for(ctas).splits;
  if (plan->max_splits_ > 1) {
    const size_t out_rows = static_cast<size_t>(op.desc.max_batch) * op.desc.q_len * op.desc.num_q_heads;
    WorkspaceLayout layout;
    layout.take(out_rows * plan->max_splits_ * (op.desc.head_dim_v + 2) * 4);
    plan->ws_bytes_ = layout.bytes();
  }
  *out = std::move(plan);
  return Status::ok();
}

Status SparsePlan::run(const tka_tensors& t, void* workspace, CUstream stream, int max_len) const {
  SparseParams p{};
  TKA_RETURN_IF_ERROR(prepare(t, workspace, max_len, &p));
  if (compile_only_)
    return make_error(TKA_ERROR_NO_DEVICE, "this plan belongs to a compile-only runtime (no GPU); it cannot run");
  return launch(p, stream);
}

Status SparsePlan::prepare(const tka_tensors& t, void* workspace, int max_len, SparseParams* out_params) const {
  TKA_RETURN_IF_ERROR(require_unused(t, {"q", "k_cache", "v_cache", "seq_lens", "block_table", "indices", "out", "lse"},
                                     "sparse attention"));
  const tka_sparse_desc& d = op_.desc;
  const int dev = device_.ordinal;
  const uint8_t code = dl_type_of(d.dtype).code;
  TensorView q, k, v, lens, table, idx, out, lse;
  const bool paged = d.kv_layout == TKA_KV_PAGED;
  int64_t batch = 0;
  TKA_RETURN_IF_ERROR(check_query_and_keys(
      t, {code, d.q_len, d.num_q_heads, d.num_kv_heads, d.head_dim, d.max_batch, paged ? d.page_size : 0, dev}, &q, &k,
      &batch));
  if (d.shared_kv) {
    if (t.v_cache)
      return make_error(TKA_ERROR_INVALID_ARGUMENT,
                        "tensors.v_cache: must be NULL with shared_kv (values are the key rows)");
    v = k;
  } else {
    std::vector<int64_t> v_shape = k.shape;
    v_shape[3] = d.head_dim_v;
    TKA_RETURN_IF_ERROR(check_tensor(t.v_cache, {"v_cache", code, 16, v_shape, true, dev}, &v));
  }
  TKA_RETURN_IF_ERROR(check_tensor(t.seq_lens, {"seq_lens", kDLInt, 32, {batch}, true, dev}, &lens));
  TKA_RETURN_IF_ERROR(check_block_table(t.block_table, paged, batch, dev, &table));
  TKA_RETURN_IF_ERROR(check_tensor(
      t.indices, {"indices", kDLInt, 32, {batch, d.q_len, op_.sel_heads(), d.index_width}, true, dev, 4}, &idx));
  TKA_RETURN_IF_ERROR(
      check_tensor(t.out, written({"out", code, 16, {batch, d.q_len, d.num_q_heads, d.head_dim_v}, true, dev}), &out));
  TKA_RETURN_IF_ERROR(
      check_tensor(t.lse, written({"lse", kDLFloat, 32, {batch, d.q_len, d.num_q_heads}, false, dev}), &lse));
  TKA_RETURN_IF_ERROR(check_workspace(workspace, ws_bytes_));

  SparseParams& p = *out_params;
  p = SparseParams{};
  p.q = q.data;
  for (int i = 0; i < 3; ++i) {
    p.q_stride[i] = q.strides[i];
    p.k_stride[i] = k.strides[i];
    p.v_stride[i] = v.strides[i];
    p.indices_stride[i] = idx.strides[i];
    p.out_stride[i] = out.strides[i];
    if (lse.data) p.lse_stride[i] = lse.strides[i];
  }
  p.k = k.data;
  p.v = v.data;
  p.seq_lens = static_cast<const int*>(lens.data);
  if (paged) {
    p.block_table = static_cast<const int*>(table.data);
    p.block_table_stride = table.strides[0];
    p.max_pages = static_cast<int>(table.shape[1]);
    if (max_len > 0) p.max_pages = std::min<int>(p.max_pages, static_cast<int>(ceil_div(max_len, d.page_size)));
    p.num_pages = static_cast<int>(std::min(k.shape[0], v.shape[0]));
  } else {
    p.capacity = static_cast<int>(std::min(k.shape[2], v.shape[2]));
    if (max_len > 0) p.capacity = std::min(p.capacity, max_len);
  }
  p.indices = static_cast<const int*>(idx.data);
  p.width = d.index_width;
  p.out = out.data;
  p.lse = static_cast<float*>(lse.data);
  p.batch = static_cast<int>(batch);
  p.num_kv_heads = d.num_kv_heads;
  p.scale = d.scale;
  const int rows = static_cast<int>(batch) * d.q_len * op_.sel_heads();
  const SparseSplit split = split_for(rows * head_tiles());
  if (split.splits > max_splits_) return make_error(TKA_ERROR_INTERNAL, "sparse split exceeds the workspace");
  p.splits = split.splits;
  p.split_len = split.split_len;
  p.partial = static_cast<float*>(workspace);
  return Status::ok();
}

Status SparsePlan::launch(const SparseParams& params, CUstream stream) const {
  const tka_sparse_desc& d = op_.desc;
  SparseParams p = params;
  const int rows = p.batch * d.q_len * op_.sel_heads();
  const DriverApi* api = nullptr;
  TKA_RETURN_IF_ERROR(driver(&api));
  ScopedContext ctx(api, device_.context);
  TKA_RETURN_IF_ERROR(ctx.status());
  void* args[] = {&p};
  const auto& fn = module_->functions;
  const unsigned threads = static_cast<unsigned>(kspec_.threads);
  KernelLaunch attend;
  attend.fn = fn[codegen::kSparseAttend];
  attend.grid_x = static_cast<unsigned>(rows);
  attend.grid_y = static_cast<unsigned>(p.splits);
  attend.grid_z = static_cast<unsigned>(head_tiles());
  attend.threads = threads;
  attend.smem = static_cast<unsigned>(smem_bytes_);
  TKA_RETURN_IF_ERROR(launch_kernel(api, device_, attend, stream, args));
  if (p.splits > 1) {
    KernelLaunch merge;
    merge.fn = fn[codegen::kSparseMerge];
    merge.grid_x = static_cast<unsigned>(p.batch * d.q_len * d.num_q_heads);
    merge.threads = threads;
    TKA_RETURN_IF_ERROR(launch_kernel(api, device_, merge, stream, args));
  }
  return Status::ok();
}

}  // namespace tka
