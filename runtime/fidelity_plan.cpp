#include "runtime/fidelity_plan.h"

#include "autotune/fidelity_space.h"
#include "runtime/launch.h"
#include "runtime/tensor_check.h"
#include "templates/fidelity_params.cuh"
#include "templates/select_params.cuh"

namespace tka {
namespace {

constexpr unsigned kScoreThreads = 256, kStatsThreads = 512;  // fidelity.cuh's block sizes

FidelityWorkspace layout(const FidelityOp& op) {
  const tka_fidelity_desc& d = op.desc;
  const size_t rows = static_cast<size_t>(d.max_batch) * d.num_q_heads;
  FidelityWorkspace ws;
  ws.score_stride = (d.max_seq_len + 3) / 4 * 4;
  ws.bit_words = (d.max_seq_len + 31) / 32;
  WorkspaceLayout at;
  const auto take = [&](size_t bytes) { return at.take(bytes); };
  ws.scores = take(rows * ws.score_stride * 4);
  ws.row_len = take(rows * 4);
  ws.exact = take(rows * d.top_k * 4);
  ws.bits = take(rows * 2 * ws.bit_words * 4);
  ws.bytes = at.bytes();
  return ws;
}

}  // namespace

Status FidelityPlan::create(Runtime& runtime, const tka_fidelity_desc& desc, std::unique_ptr<FidelityPlan>* out,
                            const FidelityConfig* config) {
  auto plan = std::make_unique<FidelityPlan>();
  TKA_RETURN_IF_ERROR(validate_fidelity(desc, /*host=*/false, &plan->op_));
  plan->compile_only_ = runtime.compile_only();
  plan->device_ = runtime.device();
  if (config)
    plan->config_ = *config;
  else
    TKA_RETURN_IF_ERROR(runtime.fidelity_config_for(plan->op_, &plan->config_));
  if (!fidelity_config_sane(plan->config_))
    return make_error(TKA_ERROR_INVALID_ARGUMENT, "fidelity config: {} is out of range", plan->config_.text());
  plan->kspec_ = fidelity_kernel_spec(plan->op_, plan->config_);
  plan->spec_text_ = fmt::format("{};kpc={};k={}", plan->kspec_.text(), plan->config_.keys_per_cta, desc.top_k);
  TKA_RETURN_IF_ERROR(runtime.module_for(codegen::render_fidelity(plan->kspec_), &plan->module_));
  if (config && !plan->compile_only_) {  // a tuner's candidate: what the compiler made must launch
    const auto& fn = plan->module_->functions;
    TKA_RETURN_IF_ERROR(
        check_kernel_fits(plan->device_, fn[codegen::kFidelityScores], kScoreThreads, 0, "fidelity scores"));
    TKA_RETURN_IF_ERROR(
        check_kernel_fits(plan->device_, fn[codegen::kFidelitySelect], config->select_threads, 0, "fidelity select"));
    TKA_RETURN_IF_ERROR(
        check_kernel_fits(plan->device_, fn[codegen::kFidelityStats], kStatsThreads, 0, "fidelity stats"));
  }
  plan->ws_ = layout(plan->op_);
  *out = std::move(plan);
  return Status::ok();
}

Status FidelityPlan::run(const tka_tensors& t, void* workspace, CUstream stream) const {
  TKA_RETURN_IF_ERROR(
      require_unused(t, {"q", "k_cache", "seq_lens", "indices", "recall", "retained_mass", "entropy"}, "fidelity"));
  const tka_fidelity_desc& d = op_.desc;
  const int dev = device_.ordinal;
  const auto [code, bits] = dl_type_of(d.dtype);
  const int elem = bits / 8;
  TensorView q, k, lens, idx, recall, mass, entropy;
  TKA_RETURN_IF_ERROR(check_tensor(t.q, {"q", code, bits, {-1, d.num_q_heads, d.head_dim}, true, dev, elem}, &q));
  const int64_t batch = q.shape[0];
  if (batch > d.max_batch)
    return make_error(TKA_ERROR_TENSOR_SHAPE, "tensors.q: batch {} exceeds the plan's max_batch {}", batch,
                      d.max_batch);
  TKA_RETURN_IF_ERROR(
      check_tensor(t.k_cache, {"k_cache", code, bits, {-1, d.num_kv_heads, -1, d.head_dim}, true, dev, elem}, &k));
  if (k.shape[0] < batch)
    return make_error(TKA_ERROR_TENSOR_SHAPE, "tensors.k_cache: {} sequences, fewer than the batch {}", k.shape[0],
                      batch);
  if (k.shape[2] > d.max_seq_len)
    return make_error(TKA_ERROR_TENSOR_SHAPE, "tensors.k_cache: {} keys per sequence exceed the plan's max_seq_len {}",
                      k.shape[2], d.max_seq_len);
  TKA_RETURN_IF_ERROR(check_tensor(t.seq_lens, {"seq_lens", kDLInt, 32, {batch}, false, dev, 4}, &lens));
  const uint8_t idx_bits = t.indices && t.indices->dtype.code == kDLInt && t.indices->dtype.bits == 64 ? 64 : 32;
  TKA_RETURN_IF_ERROR(check_tensor(
      t.indices, {"indices", kDLInt, idx_bits, {batch, d.num_q_heads, -2}, false, dev, idx_bits / 8}, &idx));
  const std::vector<int64_t> out_shape = {batch, d.num_q_heads};
  TKA_RETURN_IF_ERROR(check_tensor(t.recall, written({"recall", kDLFloat, 32, out_shape, false, dev, 4}), &recall));
  TKA_RETURN_IF_ERROR(
      check_tensor(t.retained_mass, written({"retained_mass", kDLFloat, 32, out_shape, true, dev, 4}), &mass));
  TKA_RETURN_IF_ERROR(check_tensor(t.entropy, written({"entropy", kDLFloat, 32, out_shape, true, dev, 4}), &entropy));
  const bool has_cand = t.indices != nullptr;  // width 0 is a candidate that keeps nothing
  if (recall.data && !has_cand)
    return make_error(TKA_ERROR_INVALID_ARGUMENT, "tensors.recall: needs a candidate selection in tensors.indices");
  TKA_RETURN_IF_ERROR(check_workspace(workspace, ws_.bytes));
  if (compile_only_)
    return make_error(TKA_ERROR_NO_DEVICE, "this plan belongs to a compile-only runtime (no GPU); it cannot run");

  char* ws = static_cast<char*>(workspace);
  FidelityParams p{};
  p.q = q.data;
  p.q_stride[0] = q.strides[0], p.q_stride[1] = q.strides[1];
  p.k = k.data;
  for (int i = 0; i < 3; ++i) p.k_stride[i] = k.strides[i];
  p.seq_lens = static_cast<const int*>(lens.data);
  p.cand = idx.data;
  p.has_cand = has_cand;
  if (has_cand) {
    p.cand_stride[0] = idx.strides[0], p.cand_stride[1] = idx.strides[1];
    p.cand_width = static_cast<int>(idx.shape[2]);
    p.cand_64 = idx_bits == 64;
  }
  const auto out = [](const TensorView& v, float** ptr, long long(&stride)[2]) {
    *ptr = static_cast<float*>(v.data);
    if (v.data) stride[0] = v.strides[0], stride[1] = v.strides[1];
  };
  out(recall, &p.recall, p.recall_stride);
  out(mass, &p.mass, p.mass_stride);
  out(entropy, &p.entropy, p.entropy_stride);
  p.batch = static_cast<int>(batch);
  p.num_q_heads = d.num_q_heads;
  p.group = op_.group;
  p.capacity = static_cast<int>(k.shape[2]);
  p.top_k = d.top_k;
  p.scale = d.scale;
  p.keys_per_cta = config_.keys_per_cta;
  p.scores = reinterpret_cast<float*>(ws + ws_.scores);
  p.score_stride = ws_.score_stride;
  p.row_len = reinterpret_cast<int*>(ws + ws_.row_len);
  p.exact = reinterpret_cast<int*>(ws + ws_.exact);
  p.bits = reinterpret_cast<unsigned*>(ws + ws_.bits);
  p.bit_words = ws_.bit_words;

  const int rows = static_cast<int>(batch) * d.num_q_heads;
  SelectParams sp{};
  sp.input = p.scores;
  sp.input_stride = ws_.score_stride;
  sp.lengths = p.row_len;
  sp.indices = p.exact;
  sp.indices_stride = d.top_k;
  sp.rows = rows;
  sp.n = p.capacity;
  sp.k = d.top_k;

  const DriverApi* api = nullptr;
  TKA_RETURN_IF_ERROR(driver(&api));
  ScopedContext ctx(api, device_.context);
  TKA_RETURN_IF_ERROR(ctx.status());
  void* args[] = {&p};
  void* select_args[] = {&sp};
  const auto& fn = module_->functions;
  const unsigned chunks = static_cast<unsigned>((p.capacity + p.keys_per_cta - 1) / p.keys_per_cta);
  const auto launch = [&](codegen::FidelityKernel kernel, unsigned gx, unsigned gy, unsigned gz, unsigned threads,
                          void** kernel_args) {
    KernelLaunch k;
    k.fn = fn[kernel];
    k.grid_x = gx, k.grid_y = gy, k.grid_z = gz;
    k.threads = threads;
    return launch_kernel(api, device_, k, stream, kernel_args);
  };
  TKA_RETURN_IF_ERROR(launch(codegen::kFidelityScores, chunks, static_cast<unsigned>(d.num_q_heads),
                             static_cast<unsigned>(batch), kScoreThreads, args));
  TKA_RETURN_IF_ERROR(launch(codegen::kFidelitySelect, static_cast<unsigned>(rows), 1, 1,
                             static_cast<unsigned>(kspec_.select_threads), select_args));
  TKA_RETURN_IF_ERROR(launch(codegen::kFidelityStats, static_cast<unsigned>(rows), 1, 1, kStatsThreads, args));
  return Status::ok();
}

}  // namespace tka
