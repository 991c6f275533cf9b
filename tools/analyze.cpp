// `topkattn analyze`: fidelity diagnostics of a selection from NumPy files, on the GPU when there
// is one (the fidelity plan), else on the CPU (tka_fidelity_host, fp64).
#include <llvm/Support/CommandLine.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "autotune/gpu_timing.h"
#include "common/half.h"
#include "runtime/driver.h"
#include "runtime/runtime.h"
#include "tools/commands.h"
#include "tools/npy.h"
#include "topkattn/topkattn.h"

namespace tka::tools {

static llvm::cl::SubCommand kAnalyze("analyze",
                                     "Recall, retained attention mass and entropy of a top-k selection (fidelity)");

namespace {

using llvm::cl::desc;
using llvm::cl::init;
using llvm::cl::sub;

llvm::cl::opt<std::string> opt_q("q", desc("Queries, .npy [B, Hq, d] float32 or float16"), sub(kAnalyze));
llvm::cl::opt<std::string> opt_k("k", desc("Keys, .npy [B, Hkv, N, d] float32 or float16"), sub(kAnalyze));
llvm::cl::opt<std::string> opt_indices("indices",
                                       desc("Candidate selection, .npy [B, Hq, k] int32 or int64, -1 padded"),
                                       sub(kAnalyze));
llvm::cl::opt<int> opt_topk("topk", desc("Size of the exact top-k that the candidate is measured against"), init(2048),
                            sub(kAnalyze));
llvm::cl::opt<float> opt_scale("scale", desc("Score scale (0: 1/sqrt(d))"), init(0.f), sub(kAnalyze));
llvm::cl::opt<std::string> opt_device("device", desc("auto (GPU when there is one), gpu or cpu"), init("auto"),
                                      sub(kAnalyze));
llvm::cl::opt<bool> opt_json("json", desc("Print one JSON object"), sub(kAnalyze));
llvm::cl::opt<bool> opt_per_head("per-head", desc("Also print one line per (b, h)"), sub(kAnalyze));
llvm::cl::list<std::string> opt_unknown(llvm::cl::Sink, sub(kAnalyze));

constexpr int kUsageError = 2;

int usage(const std::string& why) {
  std::fprintf(stderr, "topkattn analyze: %s\n", why.c_str());
  return kUsageError;
}

// float16 -> float32 (exact), so q and K share one dtype.
void widen(NpyArray* a) {
  if (a->descr != "<f2") return;
  std::vector<uint8_t> out(static_cast<size_t>(a->count()) * 4);
  for (int64_t i = 0; i < a->count(); ++i) {
    uint16_t h;
    std::memcpy(&h, &a->data[2 * i], 2);
    const float f = half_bits_to_float(h, /*bf16=*/false);
    std::memcpy(&out[4 * i], &f, 4);
  }
  a->data.swap(out);
  a->descr = "<f4";
}

DLDataType dl_of(const NpyArray& a) {
  if (a.descr == "<f4") return {kDLFloat, 32, 1};
  if (a.descr == "<f2") return {kDLFloat, 16, 1};
  if (a.descr == "<i4") return {kDLInt, 32, 1};
  return {kDLInt, 64, 1};
}

DLTensor tensor_of(void* data, const NpyArray& a, DLDevice device) {
  DLTensor t{};
  t.data = data;
  t.device = device;
  t.ndim = static_cast<int>(a.shape.size());
  t.dtype = dl_of(a);
  t.shape = const_cast<int64_t*>(a.shape.data());
  return t;
}

struct Results {
  std::vector<float> recall, mass, entropy;
};

Status run_cpu(const tka_fidelity_desc& desc, const NpyArray& q, const NpyArray& k, const NpyArray* idx,
               std::vector<int64_t>& out_shape, Results* r) {
  const DLDevice cpu{kDLCPU, 0};
  DLTensor tq = tensor_of(const_cast<uint8_t*>(q.data.data()), q, cpu);
  DLTensor tk = tensor_of(const_cast<uint8_t*>(k.data.data()), k, cpu);
  DLTensor ti{};
  NpyArray out;
  out.descr = "<f4";
  out.shape = out_shape;
  DLTensor tr = tensor_of(r->recall.data(), out, cpu), tm = tensor_of(r->mass.data(), out, cpu),
           te = tensor_of(r->entropy.data(), out, cpu);
  tka_tensors t;
  tka_tensors_init(&t);
  t.q = &tq, t.k_cache = &tk, t.retained_mass = &tm, t.entropy = &te;
  if (idx) {
    ti = tensor_of(const_cast<uint8_t*>(idx->data.data()), *idx, cpu);
    t.indices = &ti, t.recall = &tr;
  }
  if (tka_fidelity_host(&desc, &t) != TKA_SUCCESS)
    return make_error(TKA_ERROR_INVALID_ARGUMENT, "{}", tka_last_error());
  return Status::ok();
}

Status run_gpu(tka_runtime* rt, const tka_fidelity_desc& desc, const NpyArray& q, const NpyArray& k,
               const NpyArray* idx, std::vector<int64_t>& out_shape, Results* r) {
  const DriverApi* api = nullptr;
  TKA_RETURN_IF_ERROR(driver(&api));
  ScopedContext ctx(api, static_cast<Runtime*>(rt)->device().context);
  TKA_RETURN_IF_ERROR(ctx.status());
  tka_op_desc od;
  tka_op_desc_init(&od, TKA_OP_FIDELITY);
  od.fidelity = desc;
  tka_plan* plan = nullptr;
  if (tka_plan_create(rt, &od, &plan) != TKA_SUCCESS)
    return make_error(TKA_ERROR_INVALID_ARGUMENT, "{}", tka_last_error());
  std::unique_ptr<tka_plan, tka_status (*)(tka_plan*)> owned(plan, tka_plan_destroy);
  size_t ws_bytes = 0;
  tka_plan_workspace_size(plan, &ws_bytes);
  const size_t out_bytes = r->mass.size() * 4;
  DeviceBuffer dq, dk, di, dr, dm, de, ws;
  TKA_RETURN_IF_ERROR(dq.allocate(api, q.data.size()));
  TKA_RETURN_IF_ERROR(dk.allocate(api, k.data.size()));
  TKA_RETURN_IF_ERROR(dr.allocate(api, out_bytes));
  TKA_RETURN_IF_ERROR(dm.allocate(api, out_bytes));
  TKA_RETURN_IF_ERROR(de.allocate(api, out_bytes));
  TKA_RETURN_IF_ERROR(ws.allocate(api, ws_bytes));
  TKA_RETURN_IF_ERROR(TKA_CU(api, cuMemcpyHtoD, dq.ptr(), q.data.data(), q.data.size()));
  TKA_RETURN_IF_ERROR(TKA_CU(api, cuMemcpyHtoD, dk.ptr(), k.data.data(), k.data.size()));
  const DLDevice gpu{kDLCUDA, static_cast<Runtime*>(rt)->device().ordinal};
  NpyArray out;
  out.descr = "<f4";
  out.shape = out_shape;
  DLTensor tq = tensor_of(dq.data(), q, gpu), tk = tensor_of(dk.data(), k, gpu), ti{};
  DLTensor tr = tensor_of(dr.data(), out, gpu), tm = tensor_of(dm.data(), out, gpu),
           te = tensor_of(de.data(), out, gpu);
  tka_tensors t;
  tka_tensors_init(&t);
  t.q = &tq, t.k_cache = &tk, t.retained_mass = &tm, t.entropy = &te;
  if (idx) {
    TKA_RETURN_IF_ERROR(di.allocate(api, std::max<size_t>(idx->data.size(), 4)));
    if (!idx->data.empty())
      TKA_RETURN_IF_ERROR(TKA_CU(api, cuMemcpyHtoD, di.ptr(), idx->data.data(), idx->data.size()));
    ti = tensor_of(di.data(), *idx, gpu);
    t.indices = &ti, t.recall = &tr;
  }
  if (tka_plan_run(plan, &t, ws.data(), nullptr) != TKA_SUCCESS)
    return make_error(TKA_ERROR_INVALID_ARGUMENT, "{}", tka_last_error());
  TKA_RETURN_IF_ERROR(TKA_CU(api, cuStreamSynchronize, nullptr));
  if (idx) TKA_RETURN_IF_ERROR(TKA_CU(api, cuMemcpyDtoH, r->recall.data(), dr.ptr(), out_bytes));
  TKA_RETURN_IF_ERROR(TKA_CU(api, cuMemcpyDtoH, r->mass.data(), dm.ptr(), out_bytes));
  TKA_RETURN_IF_ERROR(TKA_CU(api, cuMemcpyDtoH, r->entropy.data(), de.ptr(), out_bytes));
  return Status::ok();
}

struct Summary {
  double mean = NAN, min = NAN, max = NAN;
  int nan = 0;
};

Summary summarize(const std::vector<float>& v) {
  Summary s;
  double sum = 0;
  int n = 0;
  for (float x : v) {
    if (std::isnan(x)) {
      ++s.nan;
      continue;
    }
    s.min = n == 0 ? x : std::min<double>(s.min, x);
    s.max = n == 0 ? x : std::max<double>(s.max, x);
    sum += x;
    ++n;
  }
  if (n > 0) s.mean = sum / n;
  return s;
}

nlohmann::json number(double x) { return std::isnan(x) ? nlohmann::json(nullptr) : nlohmann::json(x); }

nlohmann::json grid(const std::vector<float>& v, int64_t batch, int64_t heads) {
  nlohmann::json rows = nlohmann::json::array();
  for (int64_t b = 0; b < batch; ++b) {
    nlohmann::json row = nlohmann::json::array();
    for (int64_t h = 0; h < heads; ++h) row.push_back(number(v[b * heads + h]));
    rows.push_back(row);
  }
  return rows;
}

}  // namespace

bool analyze_command_selected() { return static_cast<bool>(kAnalyze); }

int run_analyze() {
  if (!opt_unknown.empty()) return usage("unexpected argument " + opt_unknown.front());
  if (opt_q.empty() || opt_k.empty()) return usage("--q and --k are required");
  if (opt_device != "auto" && opt_device != "gpu" && opt_device != "cpu")
    return usage("--device must be auto, gpu or cpu, not " + opt_device);
  NpyArray q, k, idx;
  for (auto [path, array] : {std::pair{opt_q.getValue(), &q}, std::pair{opt_k.getValue(), &k}}) {
    const Status s = read_npy(path, array);
    if (!s.is_ok()) return usage(s.message());
  }
  const bool has_idx = !opt_indices.empty();
  if (has_idx) {
    const Status s = read_npy(opt_indices, &idx);
    if (!s.is_ok()) return usage(s.message());
    if (idx.descr != "<i4" && idx.descr != "<i8")
      return usage("--indices: dtype must be int32 or int64, not " + idx.descr);
    if (idx.shape.size() != 3)
      return usage("--indices: expected [B, Hq, k], got " + std::to_string(idx.shape.size()) + " dimensions");
  }
  if (q.shape.size() != 3)
    return usage("--q: expected [B, Hq, d], got " + std::to_string(q.shape.size()) + " dimensions");
  if (k.shape.size() != 4)
    return usage("--k: expected [B, Hkv, N, d], got " + std::to_string(k.shape.size()) + " dimensions");
  for (const NpyArray* a : {&q, &k})
    if (a->descr != "<f4" && a->descr != "<f2")
      return usage("--q/--k: dtype must be float32 or float16, not " + a->descr);
  const int64_t batch = q.shape[0], hq = q.shape[1], d = q.shape[2], hkv = k.shape[1];
  if (k.shape[0] != batch || k.shape[3] != d) return usage("--k: shape must be [B, Hkv, N, d] with q's B and d");
  if (hkv <= 0 || hq % hkv != 0) return usage("--k: its heads must divide q's heads");
  if (has_idx && (idx.shape[0] != batch || idx.shape[1] != hq))
    return usage("--indices: shape must be [B, Hq, k] with q's B and Hq");
  if (q.descr != k.descr) widen(&q), widen(&k);

  tka_fidelity_desc desc{};
  desc.dtype = q.descr == "<f4" ? TKA_DTYPE_FP32 : TKA_DTYPE_FP16;
  desc.num_q_heads = static_cast<int>(hq);
  desc.num_kv_heads = static_cast<int>(hkv);
  desc.head_dim = static_cast<int>(d);
  desc.top_k = opt_topk;
  desc.max_batch = static_cast<int>(std::max<int64_t>(batch, 1));
  desc.max_seq_len = static_cast<int>(std::max<int64_t>(k.shape[2], 1));
  desc.scale = opt_scale;

  Results r;
  const size_t cells = static_cast<size_t>(batch * hq);
  r.recall.assign(cells, NAN), r.mass.assign(cells, NAN), r.entropy.assign(cells, NAN);
  std::vector<int64_t> out_shape = {batch, hq};
  std::string device = "cpu";
  tka_runtime* rt = nullptr;
  if (opt_device != "cpu") {
    tka_runtime_options o;
    tka_runtime_options_init(&o);
    if (o.log_level > TKA_LOG_ERROR) o.log_level = TKA_LOG_ERROR;
    const tka_status st = tka_runtime_create(&o, &rt);
    if (st != TKA_SUCCESS) {
      if (opt_device == "gpu") return std::fprintf(stderr, "topkattn analyze: %s\n", tka_last_error()), 1;
      if (!opt_json) std::printf("no GPU (%s): computing on the CPU\n", tka_last_error());
    } else if (d != 64 && d != 128 && d != 256) {
      if (opt_device == "gpu")
        return usage("--device gpu: head dim " + std::to_string(d) + " (the GPU takes 64, 128, 256)");
      tka_runtime_destroy(rt), rt = nullptr;
    }
  }
  Status s;
  if (rt) {
    device = "gpu: " + static_cast<Runtime*>(rt)->device().name;
    s = run_gpu(rt, desc, q, k, has_idx ? &idx : nullptr, out_shape, &r);
    tka_runtime_destroy(rt);
  } else {
    s = run_cpu(desc, q, k, has_idx ? &idx : nullptr, out_shape, &r);
  }
  if (!s.is_ok()) return std::fprintf(stderr, "topkattn analyze: %s\n", s.message().c_str()), 1;

  struct Metric {
    const char* name;
    const std::vector<float>* values;
  };
  std::vector<Metric> metrics;
  if (has_idx) metrics.push_back({"recall", &r.recall});
  metrics.push_back({"retained_mass", &r.mass});
  metrics.push_back({"entropy", &r.entropy});
  if (opt_json) {
    nlohmann::json j;
    j["device"] = device;
    j["top_k"] = opt_topk.getValue();
    j["batch"] = batch;
    j["num_q_heads"] = hq;
    j["candidate"] = has_idx ? nlohmann::json(opt_indices.getValue()) : nlohmann::json(nullptr);
    for (const Metric& m : metrics) {
      j[m.name] = grid(*m.values, batch, hq);
      const Summary sm = summarize(*m.values);
      j["summary"][m.name] = {
          {"mean", number(sm.mean)}, {"min", number(sm.min)}, {"max", number(sm.max)}, {"nan", sm.nan}};
    }
    std::printf("%s\n", j.dump(1).c_str());
    return 0;
  }
  std::printf("fidelity of %s against exact top-%d (%s), B=%lld Hq=%lld Hkv=%lld N=%lld d=%lld\n",
              has_idx ? opt_indices.c_str() : "exact top-k", opt_topk.getValue(), device.c_str(),
              static_cast<long long>(batch), static_cast<long long>(hq), static_cast<long long>(hkv),
              static_cast<long long>(k.shape[2]), static_cast<long long>(d));
  std::printf("%-14s %10s %10s %10s %6s\n", "metric", "mean", "min", "max", "NaN");
  for (const Metric& m : metrics) {
    const Summary sm = summarize(*m.values);
    std::printf("%-14s %10.4f %10.4f %10.4f %6d\n", m.name, sm.mean, sm.min, sm.max, sm.nan);
  }
  if (opt_per_head) {
    std::printf("\n%5s %5s", "b", "h");
    for (const Metric& m : metrics) std::printf(" %14s", m.name);
    std::printf("\n");
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t h = 0; h < hq; ++h) {
        std::printf("%5lld %5lld", static_cast<long long>(b), static_cast<long long>(h));
        for (const Metric& m : metrics) std::printf(" %14.6f", (*m.values)[b * hq + h]);
        std::printf("\n");
      }
  }
  return 0;
}

}  // namespace tka::tools
