// `topkattn run --model deepseek-v3.2` on a GPU: the fused indexer decode (FP8 indexer keys, the
// top-k shared by all heads, MLA sparse attention over the latent cache) planned, run, checked
// against the CPU fp64 reference and timed against its bytes floor.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <set>
#include <vector>

#include "autotune/gpu_timing.h"
#include "runtime/runtime.h"
#include "tests/reference/decode_reference.h"
#include "tests/reference/fp8_reference.h"
#include "tests/reference/select_reference.h"
#include "tools/commands.h"
#include "tools/options.h"
#include "tools/run_common.h"

namespace tka::tools {

int run_indexer_on_gpu(tka_runtime* rt, const ModelPreset& preset) {
  namespace ref = topkattn_ref;
  const DriverApi* api = nullptr;
  CHECK_STATUS(driver(&api));
  ScopedContext ctx(api, static_cast<Runtime*>(rt)->device().context);
  CHECK_STATUS(ctx.status());
  const int B = opt_batch, N = opt_seq_len, hi = preset.indexer_heads, di = preset.indexer_dim;
  const int hq = preset.num_q_heads, hkv = preset.num_kv_heads, d = preset.head_dim, dv = preset.head_dim_v;
  const int k = std::min({static_cast<int>(opt_top_k), preset.top_k, N});
  std::vector<tka_indexer_desc> descs = preset_indexer_descs(preset, B, N);
  tka_op_desc desc;
  tka_op_desc_init(&desc, TKA_OP_INDEXER_DECODE);
  desc.indexer = descs.front();  // contiguous caches
  desc.indexer.top_k = k;
  tka_plan* plan = nullptr;
  if (create_plan_reporting(rt, desc, &plan) != 0) return 1;

  // Inputs: random, never zero; FP8 indexer keys with a per-token scale; lengths vary.
  std::mt19937 rng(1234);
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<float> weight(-0.125f, 0.125f), scale(0.01f, 0.1f);
  const auto bf16 = [&](size_t count, std::vector<uint16_t>* bits, std::vector<float>* f) {
    bits->resize(count), f->resize(count);
    for (size_t i = 0; i < count; ++i) {
      (*bits)[i] = ref::float_to_bf16(normal(rng) + 0.001f);
      (*f)[i] = ref::bf16_to_float((*bits)[i]);
    }
  };
  std::vector<uint16_t> iq_bits, q_bits, kv_bits;
  std::vector<float> iq, q, kv, iw(static_cast<size_t>(B) * hi), iscale(static_cast<size_t>(B) * N), ik;
  bf16(static_cast<size_t>(B) * hi * di, &iq_bits, &iq);
  bf16(static_cast<size_t>(B) * hq * d, &q_bits, &q);
  bf16(static_cast<size_t>(B) * hkv * N * d, &kv_bits, &kv);
  for (float& w : iw) w = weight(rng);
  for (float& s : iscale) s = scale(rng);
  std::vector<uint8_t> ik8(static_cast<size_t>(B) * N * di);
  ik.resize(ik8.size());
  uint8_t table[256];  // E4M3 codes of 256 values spread over (-8, 8): rounding 256 floats, not millions
  for (int i = 0; i < 256; ++i) table[i] = ref::float_to_e4m3((i - 127.5f) / 16.f);
  std::uniform_int_distribution<int> byte(0, 255);
  for (size_t i = 0; i < ik8.size(); ++i) {
    ik8[i] = table[byte(rng)];
    ik[i] = ref::e4m3_to_float(ik8[i]);
  }
  std::vector<int32_t> lens(B);
  for (int b = 0; b < B; ++b) lens[b] = N - b * (N / (2 * B));
  size_t ws_bytes = 0;
  CHECK_TKA(tka_plan_workspace_size(plan, &ws_bytes));
  DeviceBuffer d_iq, d_iw, d_ik, d_is, d_q, d_kv, d_lens, d_out, d_sel, work;
  const size_t out_count = static_cast<size_t>(B) * hq * dv;
  CHECK_STATUS(d_iq.allocate(api, iq_bits.size() * 2));
  CHECK_STATUS(d_iw.allocate(api, iw.size() * 4));
  CHECK_STATUS(d_ik.allocate(api, ik8.size()));
  CHECK_STATUS(d_is.allocate(api, iscale.size() * 4));
  CHECK_STATUS(d_q.allocate(api, q_bits.size() * 2));
  CHECK_STATUS(d_kv.allocate(api, kv_bits.size() * 2));
  CHECK_STATUS(d_lens.allocate(api, B * 4));
  CHECK_STATUS(d_out.allocate(api, out_count * 2));
  CHECK_STATUS(d_sel.allocate(api, static_cast<size_t>(B) * k * 4));
  CHECK_STATUS(work.allocate(api, ws_bytes));
  CHECK_STATUS(TKA_CU(api, cuMemcpyHtoD, d_iq.ptr(), iq_bits.data(), iq_bits.size() * 2));
  CHECK_STATUS(TKA_CU(api, cuMemcpyHtoD, d_iw.ptr(), iw.data(), iw.size() * 4));
  CHECK_STATUS(TKA_CU(api, cuMemcpyHtoD, d_ik.ptr(), ik8.data(), ik8.size()));
  CHECK_STATUS(TKA_CU(api, cuMemcpyHtoD, d_is.ptr(), iscale.data(), iscale.size() * 4));
  CHECK_STATUS(TKA_CU(api, cuMemcpyHtoD, d_q.ptr(), q_bits.data(), q_bits.size() * 2));
  CHECK_STATUS(TKA_CU(api, cuMemcpyHtoD, d_kv.ptr(), kv_bits.data(), kv_bits.size() * 2));
  CHECK_STATUS(TKA_CU(api, cuMemcpyHtoD, d_lens.ptr(), lens.data(), B * 4));
  const std::vector<uint16_t> poison(out_count, 0xffff);  // NaN: an unwritten output cannot pass
  CHECK_STATUS(TKA_CU(api, cuMemcpyHtoD, d_out.ptr(), poison.data(), out_count * 2));

  const DLDataType t_bf16{kDLBfloat, 16, 1}, t_f32{kDLFloat, 32, 1}, t_i32{kDLInt, 32, 1}, t_u8{kDLUInt, 8, 1};
  std::vector<int64_t> s_iq{B, 1, hi, di}, s_iw{B, 1, hi}, s_ik{B, N, di}, s_is{B, N}, s_q{B, 1, hq, d},
      s_kv{B, hkv, N, d}, s_lens{B}, s_out{B, 1, hq, dv}, s_sel{B, 1, k};
  DLTensor t_iq = device_tensor(d_iq.ptr(), t_bf16, s_iq), t_iw = device_tensor(d_iw.ptr(), t_f32, s_iw),
           t_ik = device_tensor(d_ik.ptr(), t_u8, s_ik), t_is = device_tensor(d_is.ptr(), t_f32, s_is),
           t_q = device_tensor(d_q.ptr(), t_bf16, s_q), t_kv = device_tensor(d_kv.ptr(), t_bf16, s_kv),
           t_lens = device_tensor(d_lens.ptr(), t_i32, s_lens), t_out = device_tensor(d_out.ptr(), t_bf16, s_out),
           t_sel = device_tensor(d_sel.ptr(), t_i32, s_sel);
  tka_tensors t;
  tka_tensors_init(&t);
  t.index_q = &t_iq, t.index_weights = &t_iw, t.index_k = &t_ik, t.index_scale = &t_is;
  t.q = &t_q, t.k_cache = &t_kv, t.seq_lens = &t_lens, t.out = &t_out, t.indices = &t_sel;
  if (!desc.indexer.attention.shared_kv) t.v_cache = &t_kv;  // a GQA preset would read V rows too
  void* wsp = work.data();
  CHECK_TKA(tka_plan_run(plan, &t, wsp, nullptr));
  CHECK_STATUS(TKA_CU(api, cuStreamSynchronize, nullptr));
  std::vector<uint16_t> got(out_count);
  std::vector<int32_t> sel(static_cast<size_t>(B) * k);
  CHECK_STATUS(TKA_CU(api, cuMemcpyDtoH, got.data(), d_out.ptr(), out_count * 2));
  CHECK_STATUS(TKA_CU(api, cuMemcpyDtoH, sel.data(), d_sel.ptr(), sel.size() * 4));

  // Reference: fp64 indexer scores and their top-k (recall of ours against it), and fp64
  // attention over the tokens we selected.
  double worst = 0, recall_sum = 0;
  const double sm_scale = static_cast<double>(1.f / std::sqrt(static_cast<float>(d)));
  for (int b = 0; b < B; ++b) {
    const int n = lens[b];
    std::vector<float> scores(static_cast<size_t>(n));
    for (int s = 0; s < n; ++s) {
      double sum = 0;
      for (int h = 0; h < hi; ++h) {
        double dot = 0;
        for (int e = 0; e < di; ++e)
          dot += double(iq[(size_t(b) * hi + h) * di + e]) * ik[(size_t(b) * N + s) * di + e];
        sum += iw[size_t(b) * hi + h] * std::max(0.0, iscale[size_t(b) * N + s] * dot);
      }
      scores[s] = static_cast<float>(sum);
    }
    const std::vector<int> exact = ref::select_topk(scores.data(), n, k);
    const std::set<int> want(exact.begin(), exact.end());
    std::vector<int> mine(sel.begin() + size_t(b) * k, sel.begin() + size_t(b) * k + std::min(k, n));
    int hit = 0;
    for (int i : mine) hit += want.count(i);
    recall_sum += double(hit) / std::max<size_t>(want.size(), 1);
    for (int h = 0; h < hq; ++h) {
      const int kvh = h / (hq / hkv);
      std::vector<double> s(mine.size());
      double m = -INFINITY;
      for (size_t a = 0; a < mine.size(); ++a) {
        double dot = 0;
        for (int e = 0; e < d; ++e)
          dot += double(q[(size_t(b) * hq + h) * d + e]) * kv[((size_t(b) * hkv + kvh) * N + mine[a]) * d + e];
        s[a] = sm_scale * dot;
        m = std::max(m, s[a]);
      }
      double z = 0;
      for (double x : s) z += std::exp(x - m);
      double en = 0, rn = 0;
      for (int e = 0; e < dv; ++e) {
        double o = 0;
        for (size_t a = 0; a < mine.size(); ++a)
          o += std::exp(s[a] - m) / z * kv[((size_t(b) * hkv + kvh) * N + mine[a]) * d + e];
        const double g = ref::bf16_to_float(got[(size_t(b) * hq + h) * dv + e]);
        const double err = std::isnan(g) ? INFINITY : g - o;
        en += err * err, rn += o * o;
      }
      worst = std::max(worst, std::sqrt(en / std::max(rn, 1e-300)));
    }
  }
  const double recall = recall_sum / B;
  const bool pass = worst < 1e-2 && recall >= 0.99;
  std::printf(
      "  verify: %d x %d heads vs CPU fp64 reference: rel L2 error worst row %.2e; selection recall %.4f "
      "against fp64 indexer scores %s\n",
      B, hq, worst, recall, pass ? "PASS" : "FAIL");

  double bytes = 0;  // indexer keys and scales, then the selected latent rows (keys and values)
  for (int b = 0; b < B; ++b) bytes += double(lens[b]) * (di + 4) + double(hkv) * std::min(k, lens[b]) * d * 2;
  if (time_against_floor(api, plan, t, wsp, 20, bytes, B, N, k) != 0) return 1;
  tka_plan_destroy(plan);
  return pass ? 0 : 1;
}

}  // namespace tka::tools
