#include "runtime/decode_plan.h"

#include <algorithm>
#include <utility>

#include "autotune/decode_heuristic.h"
#include "autotune/decode_space.h"
#include "common/log.h"
#include "common/settings.h"
#include "runtime/launch.h"
#include "runtime/tensor_check.h"
#include "templates/common/one_read_rule.cuh"
#include "templates/decode_params.cuh"

namespace tka {
namespace {

long long ceil_div(long long a, long long b) { return (a + b - 1) / b; }

DecodeWorkspace layout(const DecodeOp& op, int sm_count, const DecodeConfig& config) {
  const tka_decode_desc& d = op.desc;
  const long long out_rows = static_cast<long long>(d.max_batch) * d.q_len * d.num_q_heads;
  const long long sel_rows = static_cast<long long>(d.max_batch) * d.q_len * op.sel_heads();
  DecodeWorkspace ws;
  ws.score_stride = (d.max_seq_len + 3) / 4 * 4;  // rows start 16-byte aligned for float4 reads
  ws.max_splits = attend_split(d.q_len * op.sel_heads(), op.max_k, config, sm_count).splits;
  WorkspaceLayout at;
  const auto take = [&](size_t bytes) { return at.take(bytes); };
  ws.scores = take(out_rows * ws.score_stride * 4);
  ws.selected = take(sel_rows * op.max_k * 4);
  ws.counts = take(sel_rows * 4);
  ws.partial = take(out_rows * ws.max_splits * (d.head_dim_v + 2) * 4);
  ws.flags = take(static_cast<size_t>(d.max_batch) * 4);
  // An experiment's buffer (decode.cuh, TKA_SCORE_SLOTS): 128 chunks of 4 KiB a score row.
  if (kernel_define("TKA_SCORE_SLOTS")) ws.score_slots = take(out_rows * 128 * 4096);
  if (config.select_split)  // split selection runs only while rows are fewer than SMs
    ws.split = take_split_workspace(at, static_cast<int>(std::min<long long>(sel_rows, sm_count)), d.max_seq_len,
                                    op.max_k, config.select_threads, config.select_capacity, kMinSplitChunks, sm_count);
  if (config.select_split == 2)
    ws.coop = take_coop_workspace(at, static_cast<int>(std::min<long long>(sel_rows, sm_count)), config.select_threads);
  ws.bytes = at.bytes();
  return ws;
}

// The score pass's CTAs of one KV head along its query rows (ScoreShape::kRowTiles).
int score_row_tiles(const DecodeKernelSpec& k) {
  return static_cast<int>(ceil_div(k.group * k.q_len, k.config.score_row_tile));
}

// The score pass's CTAs along the keys (chunks), so that the grid is `score_waves` full waves of
// resident CTAs (a partial last wave would leave SMs idle while the others stream their keys).
// Each takes tiles chunk, chunk + chunks, ... (decode_score), about keys / chunks keys.
int score_chunks(const DecodeKernelSpec& k, int batch, int kv_heads, int max_seq_len, int sm_count, int ctas_per_sm) {
  const int tile = decode_score_tile(k.config);
  const long long ctas_per_key = static_cast<long long>(batch) * kv_heads * score_row_tiles(k);
  const int waves = k.config.score_waves > 0 ? k.config.score_waves : batch <= 4 ? 1 : 4;
  const long long slots = static_cast<long long>(waves) * ctas_per_sm * sm_count;
  // At most 65535 chunks: paged caches put them on the grid's y dimension.
  const long long want =
      std::max(ceil_div(static_cast<long long>(max_seq_len) * ctas_per_key, slots), ceil_div(max_seq_len, 65535));
  const long long keys_per_chunk = std::max<long long>(ceil_div(want, tile) * tile, tile);
  return static_cast<int>(ceil_div(static_cast<long long>(max_seq_len), keys_per_chunk));
}

}  // namespace

AttendSplit attend_split(int rows, int max_k, const DecodeConfig& config, int sm_count) {
  // At least enough splits for the chunk; more while rows are too few to fill the GPU, but keep
  // attend_min_split keys per split so that merging stays cheap.
  const int chunk = config.attend_chunk;
  int splits = static_cast<int>(ceil_div(max_k, chunk));
  const int for_occupancy = static_cast<int>(ceil_div(2LL * sm_count, std::max(rows, 1)));
  splits = std::max(splits, std::min(for_occupancy, static_cast<int>(ceil_div(max_k, config.attend_min_split))));
  AttendSplit s;
  s.splits = std::max(splits, 1);
  s.split_len = static_cast<int>(ceil_div(ceil_div(max_k, s.splits), 32) * 32);
  s.split_len = std::min(s.split_len, chunk);
  s.splits = static_cast<int>(ceil_div(max_k, s.split_len));
  return s;
}

Status DecodePlan::create(Runtime& runtime, const tka_decode_desc& desc, std::unique_ptr<DecodePlan>* out,
                          const DecodeConfig* config) {
  auto plan = std::make_unique<DecodePlan>();
  TKA_RETURN_IF_ERROR(validate_decode(desc, &plan->op_));
  plan->compile_only_ = runtime.compile_only();
  plan->device_ = runtime.device();
  if (config) {
    TKA_RETURN_IF_ERROR(plan->build(runtime, *config, /*full_check=*/true));
  } else {
    DecodeConfig chosen;
    TKA_RETURN_IF_ERROR(runtime.decode_config_for(plan->op_, &chosen));
    TKA_RETURN_IF_ERROR(build_or_fall_back("decode", chosen, default_decode_config(plan->op_),
                                           [&](const DecodeConfig& c) { return plan->build(runtime, c); }));
  }
  *out = std::move(plan);
  return Status::ok();
}

Status DecodePlan::build(Runtime& runtime, const DecodeConfig& config, bool full_check) {
  kspec_ = kernel_spec_for(op_, config);
  // The kernels' spec, then the launch-time choices that are not compiled in.
  spec_text_ = fmt::format("{};sw={};am={};ssp={}", kspec_.text(), config.score_waves, config.attend_min_split,
                           config.select_split);
  const int smem_limit = device_.max_smem_optin;
  if (decode_score_smem(kspec_) > smem_limit)
    return make_error(TKA_ERROR_UNSUPPORTED, "decode: score tile needs {} bytes of shared memory; the device has {}",
                      decode_score_smem(kspec_), smem_limit);
  const codegen::RenderedSource source = codegen::render_decode(kspec_);
  TKA_RETURN_IF_ERROR(runtime.module_for(source, &module_));
  if (!compile_only_) TKA_RETURN_IF_ERROR(check_launchable(full_check));
  ws_ = layout(op_, device_.sm_count, kspec_.config);
  return Status::ok();
}

// What the compiler made of the kernels must fit the launches: registers can cap the threads
// per CTA below what the config asks, and static plus dynamic shared memory must fit the device.
Status DecodePlan::check_launchable(bool full) {
  const DecodeConfig& c = kspec_.config;
  struct Need {
    int kernel, threads, dynamic_smem;
    const char* name;
  };
  const Need needs[] = {{codegen::kDecodeScore, c.score_threads, decode_score_smem(kspec_), "decode score"},
                        {codegen::kDecodeSelect, c.select_threads, 0, "decode select"},
                        {codegen::kDecodeAttend, c.attend_threads, 0, "decode attend"},
                        {codegen::kDecodeMerge, kspec_.head_dim, 0, "decode merge"},
                        {codegen::kDecodeSelectHist, c.select_threads, 0, "decode select (split, histogram)"},
                        {codegen::kDecodeSelectClassify, c.select_threads, 0, "decode select (split, classify)"},
                        {codegen::kDecodeSelectFinish, c.select_threads, 0, "decode select (split, finish)"},
                        {codegen::kDecodeSelectCoop, c.select_threads, 0, "decode select (cooperative)"},
                        {codegen::kDecodeSelectCluster, c.select_threads, 0, "decode select (clusters)"}};
  // __launch_bounds__ and the static shared memory limit already hold every kernel to its config
  // at compile time; reading the attributes back (which loads each kernel) is for the tuner,
  // whose configs are untried. Every plan reads the score kernel's occupancy.
  for (const Need& n : needs) {
    if (!full) break;
    TKA_RETURN_IF_ERROR(check_kernel_fits(device_, module_->functions[n.kernel], n.threads, n.dynamic_smem, n.name));
  }
  if (c.select_split == 2)
    TKA_RETURN_IF_ERROR(coop_residency(device_, module_->functions[codegen::kDecodeSelectCoop], c.select_threads,
                                       "decode select (cooperative)", &coop_residency_));
  cluster_bytes_ = 0;  // a plan built again with another config keeps nothing of the first
  resident_clusters_.fill(0);
  if (c.select_split == 3 && device_.sm >= 90) {
    const CUfunction fn = module_->functions[codegen::kDecodeSelectCluster];
    int static_bytes = 0;
    TKA_RETURN_IF_ERROR(static_smem_bytes(device_, fn, &static_bytes));
    const int ring = row_stream_ring_bytes(kDecodeSelectStages, c.select_threads, 4);  // fp32 scores
    if (ring <= device_.max_smem_optin - static_bytes) {
      cluster_bytes_ = cluster_smem_bytes(device_, static_bytes, ring);
      TKA_RETURN_IF_ERROR(allow_dynamic_smem(device_, fn, cluster_bytes_, "decode select (clusters)",
                                             /*prefer_shared=*/true));
      TKA_RETURN_IF_ERROR(
          cluster_residency(device_, fn, c.select_threads, cluster_bytes_, kMaxSelectCluster, &resident_clusters_));
    }
  }
  // The score kernel's K tiles are dynamic shared memory, often above the 48 KiB default.
  TKA_RETURN_IF_ERROR(allow_dynamic_smem(device_, module_->functions[codegen::kDecodeScore], decode_score_smem(kspec_),
                                         "decode score"));
  return resident_ctas_per_sm(device_, module_->functions[codegen::kDecodeScore], c.score_threads,
                              decode_score_smem(kspec_), "decode score", &score_ctas_per_sm_);
}

int DecodePlan::select_cluster_ctas(int sel_rows) const {
  const tka_decode_desc& d = op_.desc;
  if (kspec_.config.select_split != 3 || cluster_bytes_ == 0 ||
      !sampled_select_pays(d.max_seq_len, std::min(op_.max_k, d.max_seq_len), kspec_.config.select_capacity))
    return 0;
  return select_cluster_size(kMaxSelectCluster, sel_rows, d.max_seq_len, device_.sm_count, resident_clusters_);
}

Status DecodePlan::run(const tka_tensors& t, void* workspace, CUstream stream) const {
  TKA_RETURN_IF_ERROR(
      require_unused(t, {"q", "k_cache", "v_cache", "seq_lens", "block_table", "out", "lse", "indices"}, "decode"));
  const tka_decode_desc& d = op_.desc;
  const int dev = device_.ordinal;
  const uint8_t code = d.dtype == TKA_DTYPE_BF16 ? kDLBfloat : kDLFloat;
  TensorView q, k, v, lens, table, out, lse, idx;
  const bool paged = d.kv_layout == TKA_KV_PAGED;
  int64_t batch = 0;
  TKA_RETURN_IF_ERROR(check_query_and_keys(
      t, {code, d.q_len, d.num_q_heads, d.num_kv_heads, d.head_dim, d.max_batch, paged ? d.page_size : 0, dev}, &q, &k,
      &batch));
  std::vector<int64_t> v_shape = k.shape;
  v_shape[3] = d.head_dim_v;
  TKA_RETURN_IF_ERROR(check_tensor(t.v_cache, {"v_cache", code, 16, v_shape, true, dev}, &v));
  TKA_RETURN_IF_ERROR(check_tensor(t.seq_lens, {"seq_lens", kDLInt, 32, {batch}, true, dev}, &lens));
  TKA_RETURN_IF_ERROR(check_block_table(t.block_table, paged, batch, dev, &table));
  TKA_RETURN_IF_ERROR(
      check_tensor(t.out, written({"out", code, 16, {batch, d.q_len, d.num_q_heads, d.head_dim_v}, true, dev}), &out));
  TKA_RETURN_IF_ERROR(
      check_tensor(t.lse, written({"lse", kDLFloat, 32, {batch, d.q_len, d.num_q_heads}, false, dev}), &lse));
  TKA_RETURN_IF_ERROR(check_tensor(
      t.indices, written({"indices", kDLInt, 32, {batch, d.q_len, op_.sel_heads(), op_.max_k}, false, dev}), &idx));
  TKA_RETURN_IF_ERROR(check_workspace(workspace, ws_.bytes));
  if (compile_only_)
    return make_error(TKA_ERROR_NO_DEVICE, "this plan belongs to a compile-only runtime (no GPU); it cannot run");
  if (batch == 0) return Status::ok();

  DecodeParams p{};
  const auto strides3 = [](const TensorView& x, long long(&s)[3]) {
    for (int i = 0; i < 3; ++i) s[i] = x.strides[i];
  };
  p.q = q.data;
  strides3(q, p.q_stride);
  p.k = k.data;
  p.v = v.data;
  if (paged) {
    for (int i = 0; i < 3; ++i) p.k_stride[i] = k.strides[i], p.v_stride[i] = v.strides[i];
    p.block_table = static_cast<const int*>(table.data);
    p.block_table_stride = table.strides[0];
    p.max_pages = static_cast<int>(table.shape[1]);
    p.num_pages = static_cast<int>(std::min(k.shape[0], v.shape[0]));
  } else {
    // [B, Hkv, cap, d] -> per sequence, per head, per key.
    p.k_stride[0] = k.strides[0], p.k_stride[1] = k.strides[1], p.k_stride[2] = k.strides[2];
    p.v_stride[0] = v.strides[0], p.v_stride[1] = v.strides[1], p.v_stride[2] = v.strides[2];
    p.capacity = static_cast<int>(std::min(k.shape[2], v.shape[2]));
  }
  p.seq_lens = static_cast<const int*>(lens.data);
  p.out = out.data;
  strides3(out, p.out_stride);
  p.lse = static_cast<float*>(lse.data);
  if (lse.data) p.lse_stride[0] = lse.strides[0], p.lse_stride[1] = lse.strides[1], p.lse_stride[2] = lse.strides[2];
  p.indices = static_cast<int*>(idx.data);
  if (idx.data) strides3(idx, p.indices_stride);
  p.batch = static_cast<int>(batch);
  p.num_kv_heads = d.num_kv_heads;
  p.top_k = d.top_k;
  p.top_k_ratio = static_cast<double>(d.top_k_ratio);
  p.n_sink = d.n_sink;
  p.n_local = d.n_local;
  p.max_k = op_.max_k;
  p.max_seq_len = d.max_seq_len;
  p.scale = d.scale;

  char* ws = static_cast<char*>(workspace);
  p.scores = reinterpret_cast<float*>(ws + ws_.scores);
  p.score_stride = ws_.score_stride;
  p.selected = reinterpret_cast<int*>(ws + ws_.selected);
  p.selected_count = reinterpret_cast<int*>(ws + ws_.counts);
  p.partial = reinterpret_cast<float*>(ws + ws_.partial);
  p.flags = reinterpret_cast<unsigned*>(ws + ws_.flags);
  p.score_slots = ws_.score_slots ? reinterpret_cast<unsigned*>(ws + ws_.score_slots) : nullptr;

  const int sel_rows = static_cast<int>(batch) * d.q_len * op_.sel_heads();
  const AttendSplit split = attend_split(sel_rows, op_.max_k, kspec_.config, device_.sm_count);
  // Fewer rows never need more splits than the workspace was sized for (batch 1).
  if (split.splits > ws_.max_splits) return make_error(TKA_ERROR_INTERNAL, "attend split exceeds the workspace");
  p.splits = split.splits;
  p.split_len = split.split_len;
  // Rows fewer than SMs: one cooperative grid where they fit it, else the split selection. With
  // per-head selection the grid attends too (the kernel's Spec::kCoopAttends is this same
  // function's answer), in the bytes of the selection's keys.
  const bool coop_attends = kspec_.coop_attends();
  const CoopSelectShape coop =
      kspec_.config.select_split == 2
          ? coop_select_shape(sel_rows, d.max_seq_len, kspec_.config.select_threads, device_.sm_count, coop_residency_,
                              coop_attends ? decode_attend_smem(kspec_) : 0)
          : CoopSelectShape{};
  if (coop.chunks > 0) TKA_RETURN_IF_ERROR(coop_select_params(ws_.coop, ws, sel_rows, coop, &p.select_coop));
  // Few long rows on sm_90 (select_split 3): a cluster of CTAs per row, else the split selection.
  const int cluster = coop.chunks > 0 ? 0 : select_cluster_ctas(sel_rows);
  const SelectSplit ssplit = coop.chunks > 0 || cluster > 0
                                 ? SelectSplit{}
                                 : select_split(kspec_.config.select_split != 0, kspec_.config.select_threads, sel_rows,
                                                d.max_seq_len, device_.sm_count);
  if (ssplit.chunks > 0)
    TKA_RETURN_IF_ERROR(split_select_params(ws_.split, ws, sel_rows, ssplit, op_.max_k, kspec_.config.select_capacity,
                                            &p.select_split));

  const DriverApi* api = nullptr;
  TKA_RETURN_IF_ERROR(driver(&api));
  ScopedContext ctx(api, device_.context);
  TKA_RETURN_IF_ERROR(ctx.status());
  void* args[] = {&p};
  const auto& fn = module_->functions;
  if (paged)
    TKA_RETURN_IF_ERROR(TKA_CU(api, cuMemsetD32Async, reinterpret_cast<CUdeviceptr>(p.flags), 0, batch, stream));
  // Paged: head tiles along x, so that the CTAs of one token range's pages run together.
  unsigned chunks = static_cast<unsigned>(
      score_chunks(kspec_, p.batch, d.num_kv_heads, d.max_seq_len, device_.sm_count, score_ctas_per_sm_));
  unsigned head_tiles = static_cast<unsigned>(d.num_kv_heads * score_row_tiles(kspec_));
  if (paged) std::swap(chunks, head_tiles);
  const auto launch = [&](codegen::DecodeKernel kernel, unsigned gx, unsigned gy, unsigned gz, int threads,
                          int smem = 0, bool cooperative = false, int cluster_ctas = 0) {
    KernelLaunch k;
    k.fn = fn[kernel];
    k.grid_x = gx, k.grid_y = gy, k.grid_z = gz;
    k.threads = static_cast<unsigned>(threads);
    k.smem = static_cast<unsigned>(smem);
    k.cooperative = cooperative;
    k.cluster = static_cast<unsigned>(cluster_ctas);
    return launch_kernel(api, device_, k, stream, args);
  };
  // The score pass also zeroes the split selection's histograms (p.select_split.hist).
  TKA_RETURN_IF_ERROR(launch(codegen::kDecodeScore, chunks, head_tiles, static_cast<unsigned>(batch),
                             kspec_.config.score_threads, decode_score_smem(kspec_)));
  const int st = kspec_.config.select_threads;
  const unsigned rows = static_cast<unsigned>(sel_rows);
  if (coop.chunks > 0) {
    TKA_RETURN_IF_ERROR(
        launch(codegen::kDecodeSelectCoop, static_cast<unsigned>(coop.chunks), rows, 1, st, coop.smem, true));
  } else if (cluster > 0) {
    TKA_RETURN_IF_ERROR(launch(codegen::kDecodeSelectCluster, rows * static_cast<unsigned>(cluster), 1, 1, st,
                               cluster_bytes_, false, cluster));
  } else if (ssplit.chunks > 0) {
    const unsigned select_chunks = static_cast<unsigned>(ssplit.chunks);
    for (codegen::DecodeKernel k : {codegen::kDecodeSelectHist, codegen::kDecodeSelectClassify})
      TKA_RETURN_IF_ERROR(launch(k, select_chunks, rows, 1, st));
    TKA_RETURN_IF_ERROR(launch(codegen::kDecodeSelectFinish, rows, 1, 1, st));
  } else {
    TKA_RETURN_IF_ERROR(launch(codegen::kDecodeSelect, rows, 1, 1, st));
  }
  if (coop.chunks == 0 || !coop_attends)
    TKA_RETURN_IF_ERROR(
        launch(codegen::kDecodeAttend, rows, static_cast<unsigned>(p.splits), 1, kspec_.config.attend_threads));
  if (p.splits > 1) {
    const unsigned out_rows = static_cast<unsigned>(batch * d.q_len * d.num_q_heads);
    TKA_RETURN_IF_ERROR(launch(codegen::kDecodeMerge, out_rows, 1, 1, d.head_dim_v));
  }
  return Status::ok();
}

}  // namespace tka
