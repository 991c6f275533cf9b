// The main job: prewarm a preset for sm_80 and sm_90 (or --arch); then, on a GPU, plan, run,
// verify every output against the CPU fp64 reference, and time it against the bytes floor.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <optional>
#include <random>
#include <vector>

#include "autotune/gpu_timing.h"
#include "runtime/driver.h"
#include "runtime/runtime.h"
#include "tests/reference/decode_reference.h"
#include "tools/commands.h"
#include "tools/options.h"
#include "tools/prewarm.h"
#include "tools/run_common.h"
#include "topkattn/topkattn.h"

namespace tka::tools {
namespace {

int run_on_gpu(tka_runtime* rt, const ModelPreset& preset) {
  const DriverApi* api = nullptr;
  CHECK_STATUS(driver(&api));
  // The library keeps the device's primary context; this host code allocates in it too.
  ScopedContext ctx(api, static_cast<Runtime*>(rt)->device().context);
  CHECK_STATUS(ctx.status());
  const int B = opt_batch, N = opt_seq_len, hq = preset.num_q_heads, hkv = preset.num_kv_heads;
  const int d = preset.head_dim, k = std::min<int>(opt_top_k, 8192);
  tka_op_desc desc;
  tka_op_desc_init(&desc, TKA_OP_TOPK_DECODE);
  desc.decode.num_q_heads = hq;
  desc.decode.num_kv_heads = hkv;
  desc.decode.head_dim = d;
  desc.decode.top_k = k;
  desc.decode.max_batch = B;
  desc.decode.max_seq_len = N;
  tka_plan* plan = nullptr;
  if (create_plan_reporting(rt, desc, &plan) != 0) return 1;

  // Inputs: random bf16, never zeros; lengths vary across the batch.
  std::mt19937 rng(1234);
  std::normal_distribution<float> normal;
  const size_t nq = size_t(B) * hq * d, nkv = size_t(B) * hkv * N * d, no = nq;
  std::vector<uint16_t> hq_bits(nq), hk(nkv), hv(nkv);
  std::vector<float> fq(nq), fk(nkv), fv(nkv);
  const auto fill = [&](std::vector<uint16_t>& bits, std::vector<float>& f) {
    for (size_t i = 0; i < bits.size(); ++i) {
      bits[i] = topkattn_ref::float_to_bf16(normal(rng));
      f[i] = topkattn_ref::bf16_to_float(bits[i]);
    }
  };
  fill(hq_bits, fq);
  fill(hk, fk);
  fill(hv, fv);
  std::vector<int32_t> lens(B);
  for (int b = 0; b < B; ++b) lens[b] = N - b * (N / (2 * B));
  size_t ws = 0;
  CHECK_TKA(tka_plan_workspace_size(plan, &ws));
  DeviceBuffer q, kc, vc, sl, out, work;
  CHECK_STATUS(q.allocate(api, nq * 2));
  CHECK_STATUS(kc.allocate(api, nkv * 2));
  CHECK_STATUS(vc.allocate(api, nkv * 2));
  CHECK_STATUS(sl.allocate(api, B * 4));
  CHECK_STATUS(out.allocate(api, no * 2));
  CHECK_STATUS(work.allocate(api, ws));
  CHECK_STATUS(TKA_CU(api, cuMemcpyHtoD, q.ptr(), hq_bits.data(), nq * 2));
  CHECK_STATUS(TKA_CU(api, cuMemcpyHtoD, kc.ptr(), hk.data(), nkv * 2));
  CHECK_STATUS(TKA_CU(api, cuMemcpyHtoD, vc.ptr(), hv.data(), nkv * 2));
  CHECK_STATUS(TKA_CU(api, cuMemcpyHtoD, sl.ptr(), lens.data(), B * 4));
  std::vector<uint16_t> poison(no, 0xffff);  // NaN in bf16: an unwritten output cannot pass
  CHECK_STATUS(TKA_CU(api, cuMemcpyHtoD, out.ptr(), poison.data(), no * 2));

  const DLDataType bf16{kDLBfloat, 16, 1}, i32{kDLInt, 32, 1};
  std::vector<int64_t> q_shape{B, 1, hq, d}, kv_shape{B, hkv, N, d}, len_shape{B}, o_shape{B, 1, hq, d};
  DLTensor tq = device_tensor(q.ptr(), bf16, q_shape), tk = device_tensor(kc.ptr(), bf16, kv_shape),
           tv = device_tensor(vc.ptr(), bf16, kv_shape), tl = device_tensor(sl.ptr(), i32, len_shape),
           to = device_tensor(out.ptr(), bf16, o_shape);
  tka_tensors t{};
  t.q = &tq, t.k_cache = &tk, t.v_cache = &tv, t.seq_lens = &tl, t.out = &to;
  void* wsp = reinterpret_cast<void*>(work.ptr());
  CHECK_TKA(tka_plan_run(plan, &t, wsp, nullptr));
  CHECK_STATUS(TKA_CU(api, cuStreamSynchronize, nullptr));
  std::vector<uint16_t> got(no);
  CHECK_STATUS(TKA_CU(api, cuMemcpyDtoH, got.data(), out.ptr(), no * 2));

  topkattn_ref::DecodeProblem p;
  p.num_q_heads = hq, p.num_kv_heads = hkv, p.head_dim = d, p.top_k = k, p.max_seq_len = N;
  p.batch = B, p.q = fq.data(), p.k = fk.data(), p.v = fv.data(), p.cache_dim0 = B, p.capacity = N;
  p.k_strides[0] = p.v_strides[0] = int64_t(hkv) * N * d;
  p.k_strides[1] = p.v_strides[1] = int64_t(N) * d;
  p.k_strides[2] = p.v_strides[2] = d;
  p.seq_lens = lens.data();
  const topkattn_ref::DecodeReference ref = topkattn_ref::reference_decode(p);
  double worst = 0, num = 0, den = 0;
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < hq; ++h) {
      const double* r = ref.out_row(b, 0, h);
      double rn = 0, en = 0;
      for (int c = 0; c < d; ++c) {
        const double g = topkattn_ref::bf16_to_float(got[(size_t(b) * hq + h) * d + c]);
        const double e = std::isnan(g) ? INFINITY : g - r[c];
        en += e * e, rn += r[c] * r[c];
      }
      worst = std::max(worst, std::sqrt(en / std::max(rn, 1e-300)));
      num += en, den += rn;
    }
  }
  const bool pass = worst < 1e-2;
  std::printf("  verify: %d x %d heads vs CPU fp64 reference: rel L2 error %.2e (worst row %.2e) %s\n", B, hq,
              std::sqrt(num / den), worst, pass ? "PASS" : "FAIL");

  double bytes = 0;
  for (int b = 0; b < B; ++b) bytes += double(hkv) * lens[b] * d * 2 + double(hq) * std::min(k, lens[b]) * d * 2;
  if (time_against_floor(api, plan, t, wsp, 50, bytes, B, N, k) != 0) return 1;
  tka_plan_destroy(plan);
  return pass ? 0 : 1;
}

}  // namespace

int run_main_job() {
  const ModelPreset* preset = find_preset(opt_model);
  if (!preset) {
    std::fprintf(stderr, "topkattn run: unknown --model %s\n", opt_model.c_str());
    return 2;
  }
  // The main job prewarms every arch the library targets unless --arch names others.
  const std::string arch_list = opt_arch.getNumOccurrences() ? opt_arch.getValue() : "sm_80,sm_90";
  std::vector<int> archs;
  std::string error;
  if (!parse_arch_list(arch_list, &archs, &error)) {
    std::fprintf(stderr, "topkattn run: %s\n", error.c_str());
    return 2;
  }
  const std::optional<TuningDb> db = load_db_option("run");  // its configurations are prewarmed and run
  const PrewarmSummary s =
      prewarm(*preset, archs, opt_cache_dir, opt_jobs, opt_batch, opt_seq_len, true, db ? &*db : nullptr);
  std::printf("prewarm %s for %s: %d compiled, %d already cached, %d failed, %.2f s\n", preset->name, arch_list.c_str(),
              s.compiled, s.cached, s.failed, s.seconds);
  for (const std::string& e : s.errors) std::fprintf(stderr, "%s\n", e.c_str());
  if (s.failed) return 1;

  tka_runtime_options options;
  tka_runtime_options_init(&options);
  if (!opt_cache_dir.empty()) options.cache_dir = opt_cache_dir.c_str();
  if (!opt_db.empty()) options.tuning_db = opt_db.getValue().c_str();
  tka_runtime* rt = nullptr;
  const tka_status st = tka_runtime_create(&options, &rt);
  if (st == TKA_ERROR_NO_DEVICE) {
    std::printf("no GPU found (%s): the kernels are compiled into the cache; nothing was run\n", tka_last_error());
    return 0;
  }
  CHECK_TKA(st);
  const int rc = preset_has_decode(*preset) ? run_on_gpu(rt, *preset) : run_indexer_on_gpu(rt, *preset);
  tka_runtime_destroy(rt);
  return rc;
}

}  // namespace tka::tools
