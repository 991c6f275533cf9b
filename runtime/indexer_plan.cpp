#include "runtime/indexer_plan.h"

#include <algorithm>

#include "autotune/indexer_space.h"
#include "common/log.h"
#include "common/settings.h"
#include "runtime/indexer_key_map.h"
#include "runtime/launch.h"
#include "runtime/tensor_check.h"
#include "templates/indexer_params.cuh"

namespace tka {
namespace {

constexpr unsigned kScoreThreads = kIndexerThreads;
long long ceil_div(long long a, long long b) { return (a + b - 1) / b; }

// DLPack 0.6 has no FP8 code: FP8 keys come as uint8 bytes; DLPack >= 1.0 producers may say
// float8_e4m3fn (code 10).
bool is_fp8_bytes(const DLTensor* t) {
  return t && t->dtype.bits == 8 && (t->dtype.code == kDLUInt || t->dtype.code == 10);
}

}  // namespace

struct IndexerPlan::IndexerTensors {
  TensorView q, w, k, scale, lens, table;
  int64_t batch = 0;
};

Status IndexerPlan::build_scores(Runtime& runtime, const IndexerConfig& config) {
  config_ = config;
  kspec_ = indexer_kernel_spec(op_);
  kspec_.select = default_select_config(SelectOp{});
  // On sm_90+, rows fewer than SMs take one cooperative grid instead of a cluster per row: 205 ->
  // 191 µs at B = 16, N = 128K, 51 -> 41 at B = 1 (H100, bench/NOTES.md). Longer rows than one
  // grid holds fall back to the cluster path at run time. sm_80 (no clusters) keeps the split
  // path, which the grid has not been timed against there.
  kspec_.select.coop = runtime.target_sm() >= 90 ? 1 : 0;
  kspec_.stages = config.stages;
  TKA_RETURN_IF_ERROR(runtime.module_for(codegen::render_indexer(kspec_), &module_));
  const bool wgmma = indexer_uses_wgmma(device_.sm, kspec_.heads, kspec_.dim, kspec_.fp8);
  smem_bytes_ = indexer_smem_layout(kspec_.heads, kspec_.dim, kspec_.fp8, kspec_.stages, wgmma).bytes;
  key_map_ = wgmma && op_.desc.kv_layout == TKA_KV_CONTIGUOUS && kernel_define("TKA_INDEXER_TMA");
  // The query tile and the key tiles in flight are dynamic shared memory, above the 48 KiB default.
  if (!compile_only_) {
    TKA_RETURN_IF_ERROR(
        allow_dynamic_smem(device_, module_->functions[codegen::kIndexerScores], smem_bytes_, "indexer scores"));
    TKA_RETURN_IF_ERROR(resident_ctas_per_sm(device_, module_->functions[codegen::kIndexerScores],
                                             static_cast<int>(kScoreThreads), smem_bytes_, "indexer scores",
                                             &resident_per_sm_));
    TKA_RETURN_IF_ERROR(prepare_select(device_, module_->functions.data() + codegen::kIndexerSelectFirst, kspec_.select,
                                       4, 0, &select_smem_));
  }
  spec_text_ = fmt::format("{};cps={};sco={}", kspec_.text(), config.ctas_per_sm, kspec_.select.coop);
  return Status::ok();
}

Status IndexerPlan::create(Runtime& runtime, const tka_indexer_desc& desc, bool fused,
                           std::unique_ptr<IndexerPlan>* out, const IndexerConfig* config) {
  auto plan = std::make_unique<IndexerPlan>();
  TKA_RETURN_IF_ERROR(validate_indexer(desc, fused, &plan->op_));
  plan->compile_only_ = runtime.compile_only();
  plan->device_ = runtime.device();
  if (config) {
    TKA_RETURN_IF_ERROR(plan->build_scores(runtime, *config));
  } else {
    IndexerConfig chosen;
    TKA_RETURN_IF_ERROR(runtime.indexer_config_for(plan->op_, desc.max_seq_len, &chosen));
    TKA_RETURN_IF_ERROR(build_or_fall_back("indexer", chosen, default_indexer_config(plan->op_, runtime.target_sm()),
                                           [&](const IndexerConfig& c) { return plan->build_scores(runtime, c); }));
  }
  if (!fused) {
    *out = std::move(plan);
    return Status::ok();
  }
  TKA_RETURN_IF_ERROR(SparsePlan::create(runtime, plan->op_.attention.desc, &plan->attention_));
  plan->spec_text_ += fmt::format(";k={} + {}", desc.top_k, plan->attention_->spec_text());
  const IndexerOp& op = plan->op_;
  const size_t rows = static_cast<size_t>(op.desc.max_batch) * op.desc.q_len;
  IndexerWorkspace& ws = plan->ws_;
  ws.score_len = op.desc.kv_layout == TKA_KV_PAGED
                     ? ceil_div(op.desc.max_seq_len, op.desc.page_size) * op.desc.page_size
                     : op.desc.max_seq_len;
  ws.score_len = (ws.score_len + 3) / 4 * 4;
  WorkspaceLayout at;
  const auto take = [&](size_t bytes) { return at.take(bytes); };
  ws.scores = take(rows * ws.score_len * 4);
  ws.row_len = take(rows * 4);
  ws.selected = take(rows * op.desc.top_k * 4);
  ws.select =
      select_workspace(static_cast<int>(std::min<size_t>(rows, plan->device_.sm_count)), static_cast<int>(ws.score_len),
                       op.desc.top_k, plan->kspec_.select, plan->device_.sm_count, at.bytes());
  WorkspaceLayout rest(ws.select.bytes);
  ws.sparse = rest.take(plan->attention_->workspace_bytes());
  ws.bytes = rest.bytes();
  *out = std::move(plan);
  return Status::ok();
}

Status IndexerPlan::check_indexer_tensors(const tka_tensors& t, IndexerTensors* x) const {
  const tka_indexer_desc& d = op_.desc;
  const int dev = device_.ordinal;
  const int heads = d.num_index_heads, dim = d.index_head_dim;
  TKA_RETURN_IF_ERROR(check_tensor(t.index_q, {"index_q", kDLBfloat, 16, {-1, d.q_len, heads, dim}, true, dev}, &x->q));
  x->batch = x->q.shape[0];
  const int64_t batch = x->batch;
  if (batch > d.max_batch)
    return make_error(TKA_ERROR_TENSOR_SHAPE, "tensors.index_q: batch {} exceeds the plan's max_batch {}", batch,
                      d.max_batch);
  TKA_RETURN_IF_ERROR(
      check_tensor(t.index_weights, {"index_weights", kDLFloat, 32, {batch, d.q_len, heads}, true, dev}, &x->w));
  const bool paged = d.kv_layout == TKA_KV_PAGED, fp8 = d.key_dtype == TKA_DTYPE_FP8_E4M3;
  const std::vector<int64_t> k_shape =
      paged ? std::vector<int64_t>{-1, d.page_size, dim} : std::vector<int64_t>{-1, -1, dim};
  if (fp8) {
    const uint8_t code = t.index_k && is_fp8_bytes(t.index_k) ? t.index_k->dtype.code : static_cast<uint8_t>(kDLUInt);
    TKA_RETURN_IF_ERROR(check_tensor(t.index_k, {"index_k", code, 8, k_shape, true, dev, 16}, &x->k));
  } else {
    TKA_RETURN_IF_ERROR(check_tensor(t.index_k, {"index_k", kDLBfloat, 16, k_shape, true, dev}, &x->k));
  }
  if (!paged && x->k.shape[0] < batch)
    return make_error(TKA_ERROR_TENSOR_SHAPE, "tensors.index_k: {} sequences, fewer than the batch {}", x->k.shape[0],
                      batch);
  TKA_RETURN_IF_ERROR(check_tensor(
      t.index_scale, {"index_scale", kDLFloat, 32, {x->k.shape[0], x->k.shape[1]}, fp8, dev, 4}, &x->scale));
  TKA_RETURN_IF_ERROR(check_tensor(t.seq_lens, {"seq_lens", kDLInt, 32, {batch}, true, dev}, &x->lens));
  TKA_RETURN_IF_ERROR(check_block_table(t.block_table, paged, batch, dev, &x->table));
  return Status::ok();
}

Status IndexerPlan::launch_scores(const IndexerTensors& x, float* scores, long long s0, long long s1, int score_len,
                                  int* row_len, int limit, CUstream stream) const {
  const tka_indexer_desc& d = op_.desc;
  IndexerParams p{};
  p.q = x.q.data;
  for (int i = 0; i < 3; ++i) p.q_stride[i] = x.q.strides[i], p.w_stride[i] = x.w.strides[i];
  p.w = static_cast<const float*>(x.w.data);
  p.k = x.k.data;
  p.k_stride[0] = x.k.strides[0], p.k_stride[1] = x.k.strides[1];
  p.k_scale = static_cast<const float*>(x.scale.data);
  if (x.scale.data) p.k_scale_stride[0] = x.scale.strides[0], p.k_scale_stride[1] = x.scale.strides[1];
  p.seq_lens = static_cast<const int*>(x.lens.data);
  if (d.kv_layout == TKA_KV_PAGED) {
    p.block_table = static_cast<const int*>(x.table.data);
    p.block_table_stride = x.table.strides[0];
    p.max_pages = static_cast<int>(x.table.shape[1]);
    if (limit > 0) p.max_pages = std::min<int>(p.max_pages, static_cast<int>(ceil_div(limit, d.page_size)));
    p.num_pages = static_cast<int>(std::min(x.k.shape[0], x.scale.data ? x.scale.shape[0] : x.k.shape[0]));
  } else {
    p.capacity = static_cast<int>(x.k.shape[1]);
    if (limit > 0) p.capacity = std::min(p.capacity, limit);
  }
  p.scores = scores;
  p.score_stride[0] = s0, p.score_stride[1] = s1;
  p.score_len = score_len;
  p.row_len = row_len;
  p.batch = static_cast<int>(x.batch);
  p.num_heads = d.num_index_heads;
  const long long rows = x.batch * d.q_len;
  p.tokens_per_cta = indexer_tokens_per_cta(config_, score_len, rows, device_.sm_count, resident_per_sm_);
  const DriverApi* api = nullptr;
  TKA_RETURN_IF_ERROR(driver(&api));
  ScopedContext ctx(api, device_.context);
  TKA_RETURN_IF_ERROR(ctx.status());
  if (key_map_) encode_indexer_key_map(api, x.k, p.capacity, &p);
  void* args[] = {&p};
  KernelLaunch k;
  k.fn = module_->functions[codegen::kIndexerScores];
  k.grid_x = static_cast<unsigned>(ceil_div(score_len, p.tokens_per_cta));
  k.grid_y = static_cast<unsigned>(rows);
  k.threads = kScoreThreads;
  k.smem = static_cast<unsigned>(smem_bytes_);
  return launch_kernel(api, device_, k, stream, args);
}

Status IndexerPlan::run(const tka_tensors& t, void* workspace, CUstream stream) const {
  const tka_indexer_desc& d = op_.desc;
  const int dev = device_.ordinal;
  IndexerTensors x;
  if (!op_.fused) {
    TKA_RETURN_IF_ERROR(
        require_unused(t, {"index_q", "index_weights", "index_k", "index_scale", "seq_lens", "block_table", "scores"},
                       "indexer scores"));
    TKA_RETURN_IF_ERROR(check_indexer_tensors(t, &x));
    TensorView scores;
    TKA_RETURN_IF_ERROR(
        check_tensor(t.scores, written({"scores", kDLFloat, 32, {x.batch, d.q_len, -1}, true, dev, 4}), &scores));
    if (compile_only_)
      return make_error(TKA_ERROR_NO_DEVICE, "this plan belongs to a compile-only runtime (no GPU); it cannot run");
    // Rows longer than the scores tensor cannot be written: the kernel makes them NaN.
    const int width = static_cast<int>(scores.shape[2]);
    return launch_scores(x, static_cast<float*>(scores.data), scores.strides[0], scores.strides[1], width, nullptr,
                         width, stream);
  }

  TKA_RETURN_IF_ERROR(require_unused(t,
                                     {"q", "k_cache", "v_cache", "seq_lens", "block_table", "out", "lse", "indices",
                                      "index_q", "index_weights", "index_k", "index_scale"},
                                     "indexer decode"));
  TKA_RETURN_IF_ERROR(check_indexer_tensors(t, &x));
  if (t.q && t.q->ndim >= 1 && t.q->shape && t.q->shape[0] != x.batch)
    return make_error(TKA_ERROR_TENSOR_SHAPE, "tensors.q: batch {} differs from tensors.index_q's {}", t.q->shape[0],
                      x.batch);
  TensorView sel;
  TKA_RETURN_IF_ERROR(
      check_tensor(t.indices, written({"indices", kDLInt, 32, {x.batch, d.q_len, d.top_k}, false, dev, 4}), &sel));
  // The selection writes row b * q_len + j at row * stride: [B, q_len] must be one run of rows.
  const long long sel_row = !sel.data ? d.top_k : d.q_len == 1 ? sel.strides[0] : sel.strides[1];
  if (sel.data && d.q_len > 1 && x.batch > 1 && sel.strides[0] != d.q_len * sel.strides[1])
    return make_error(TKA_ERROR_TENSOR_STRIDE, "tensors.indices: batch stride {} must be q_len * the token stride ({})",
                      sel.strides[0], d.q_len * sel.strides[1]);
  TKA_RETURN_IF_ERROR(check_workspace(workspace, ws_.bytes));

  // One length limit for both caches and the score rows: the workspace's, the indexer cache's.
  int limit = std::min<int>(d.max_seq_len, static_cast<int>(ws_.score_len));
  if (d.kv_layout == TKA_KV_CONTIGUOUS) limit = std::min<int>(limit, static_cast<int>(x.k.shape[1]));

  // The attention reads the selection through a view with a zero head stride: every KV group
  // of the token uses the one list. All its tensors are checked before anything is launched.
  char* ws = static_cast<char*>(workspace);
  int* selected = sel.data ? static_cast<int*>(sel.data) : reinterpret_cast<int*>(ws + ws_.selected);
  std::vector<int64_t> view_shape = {x.batch, d.q_len, d.attention.num_kv_heads, d.top_k};
  std::vector<int64_t> view_strides = {d.q_len * sel_row, sel_row, 0, 1};
  DLTensor view{};
  view.data = selected;
  view.device = {kDLCUDA, dev};
  view.ndim = 4;
  view.dtype = {kDLInt, 32, 1};
  view.shape = view_shape.data();
  view.strides = view_strides.data();
  tka_tensors attention = t;
  attention.indices = &view;
  attention.index_q = attention.index_weights = attention.index_k = attention.index_scale = nullptr;
  SparseParams attend{};
  TKA_RETURN_IF_ERROR(attention_->prepare(attention, ws + ws_.sparse, limit, &attend));
  if (d.kv_layout == TKA_KV_PAGED && t.k_cache->shape[0] != x.k.shape[0])
    return make_error(TKA_ERROR_TENSOR_SHAPE,
                      "tensors.index_k: {} pages, but tensors.k_cache has {}: the block table indexes both pools",
                      x.k.shape[0], t.k_cache->shape[0]);
  if (compile_only_)
    return make_error(TKA_ERROR_NO_DEVICE, "this plan belongs to a compile-only runtime (no GPU); it cannot run");

  const int rows = static_cast<int>(x.batch) * d.q_len;
  int* row_len = reinterpret_cast<int*>(ws + ws_.row_len);
  float* scores = reinterpret_cast<float*>(ws + ws_.scores);
  TKA_RETURN_IF_ERROR(launch_scores(x, scores, d.q_len * ws_.score_len, ws_.score_len, static_cast<int>(ws_.score_len),
                                    row_len, limit, stream));
  SelectParams sp{};
  sp.input = scores;
  sp.input_stride = ws_.score_len;
  sp.lengths = row_len;
  sp.indices = selected;
  sp.indices_stride = sel_row;
  sp.rows = rows;
  sp.n = static_cast<int>(ws_.score_len);
  sp.k = d.top_k;
  const DriverApi* api = nullptr;
  TKA_RETURN_IF_ERROR(driver(&api));
  ScopedContext ctx(api, device_.context);
  TKA_RETURN_IF_ERROR(ctx.status());
  TKA_RETURN_IF_ERROR(launch_select(api, module_->functions.data() + codegen::kIndexerSelectFirst, sp, kspec_.select,
                                    select_smem_, ws_.select, ws, device_, false, stream));
  return attention_->launch(attend, stream);
}

}  // namespace tka
