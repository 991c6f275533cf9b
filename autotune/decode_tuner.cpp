#include "autotune/decode_tuner.h"

#include <llvm/Support/ThreadPool.h>
#include <llvm/Support/Threading.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

#include "autotune/decode_heuristic.h"
#include "autotune/decode_space.h"
#include "autotune/gpu_timing.h"
#include "common/half.h"
#include "common/log.h"
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
    const auto make = [](void* p, DLDataType t, int ndim, int64_t* shape) {
      DLTensor x{};
      x.data = p, x.device = {kDLCUDA, 0}, x.ndim = ndim, x.dtype = t, x.shape = shape;
      return x;
    };
    DLTensor tq = make(s.q.data(), elem, 4, q_shape), tk = make(s.k.data(), elem, 4, kv_shape),
             tv = make(s.v.data(), elem, 4, kv_shape), tl = make(seq_lens_.data(), i32, 1, len_shape),
             tb = make(s.block_table.data(), i32, 2, table_shape), to = make(out_.data(), elem, 4, q_shape);
    tq.device.device_id = tk.device.device_id = tv.device.device_id = device_.ordinal;
    tl.device.device_id = tb.device.device_id = to.device.device_id = device_.ordinal;
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

// Same selection, different summation order: only rounding may differ. A wrong selection or an
// unwritten element (NaN) does not pass.
bool outputs_match(const std::vector<float>& got, const std::vector<float>& want, std::string* why) {
  for (size_t i = 0; i < want.size(); ++i) {
    const float g = got[i], w = want[i];
    if (std::isnan(w) || std::isnan(g) || std::fabs(g - w) > 2e-3f + 1e-2f * std::fabs(w)) {
      *why = fmt::format("output[{}] = {} where the default config gives {}", i, g, w);
      return false;
    }
  }
  return true;
}

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

  // Compile every variant (in parallel: NVRTC dominates) and keep those the device can launch.
  const std::vector<DecodeConfig> space = decode_compiled_space(op);
  std::vector<std::unique_ptr<DecodePlan>> plans(space.size());
  std::vector<Status> built(space.size());
  {
    llvm::ThreadPool pool(options.compile_jobs > 0 ? llvm::hardware_concurrency(options.compile_jobs)
                                                   : llvm::hardware_concurrency());
    for (size_t i = 0; i < space.size(); ++i)
      pool.async([&, i] { built[i] = DecodePlan::create(runtime, desc, &plans[i], &space[i]); });
    pool.wait();
  }
  if (!built[0].is_ok()) return built[0];  // the default config must work
  size_t workspace = 0;
  for (size_t i = 0; i < space.size(); ++i) {
    if (built[i].is_ok()) {
      workspace = std::max(workspace, plans[i]->workspace_bytes());
    } else {
      ++result->pruned;
      result->notes.push_back(fmt::format("pruned {}: {}", space[i].text(), built[i].message()));
    }
  }
  // Launch variants reuse a compiled kernel; their workspace can need more attend splits.
  for (const DecodeConfig& c : decode_launch_space(space[0])) {
    std::unique_ptr<DecodePlan> p;
    if (DecodePlan::create(runtime, desc, &p, &c).is_ok()) workspace = std::max(workspace, p->workspace_bytes());
  }

  Bench bench(api, op, runtime.device());
  TKA_RETURN_IF_ERROR(bench.init(workspace));
  std::vector<float> want, got;
  TKA_RETURN_IF_ERROR(bench.output(*plans[0], &want));

  const int launch_count = static_cast<int>(decode_launch_space(space[0]).size()) - 1;
  const int total = static_cast<int>(space.size()) - result->pruned + launch_count;
  int done = 0;
  // Times one plan; false if its output is wrong (then it does not compete).
  const auto measure = [&](const DecodePlan& plan, double* us) -> Status {
    std::string why;
    TKA_RETURN_IF_ERROR(bench.output(plan, &got));
    if (!outputs_match(got, want, &why)) {
      ++result->rejected;
      result->notes.push_back(fmt::format("rejected {}: {}", plan.config().text(), why));
      *us = INFINITY;
    } else {
      std::vector<double> each;
      TKA_RETURN_IF_ERROR(time_each(
          api, options.warmup, options.repeats, [&](int i) { return bench.run(plan, i); }, &each));
      *us = median(each);
      ++result->candidates;
    }
    if (options.progress) options.progress(++done, total);
    return Status::ok();
  };

  double best_us = INFINITY, default_us = INFINITY;
  DecodeConfig best = space[0];
  for (size_t i = 0; i < space.size(); ++i) {
    if (!built[i].is_ok()) continue;
    double us = 0;
    TKA_RETURN_IF_ERROR(measure(*plans[i], &us));
    if (i == 0) default_us = us;
    if (us < best_us) best_us = us, best = space[i];
  }
  plans.clear();
  const std::vector<DecodeConfig> launch = decode_launch_space(best);
  for (size_t i = 1; i < launch.size(); ++i) {
    std::unique_ptr<DecodePlan> plan;
    const Status s = DecodePlan::create(runtime, desc, &plan, &launch[i]);
    double us = INFINITY;
    if (s.is_ok())
      TKA_RETURN_IF_ERROR(measure(*plan, &us));
    else if (options.progress)
      options.progress(++done, total);
    if (us < best_us) best_us = us, best = launch[i];
  }

  // A winner by noise is no winner: time the default and the best again, interleaved, and keep
  // the default unless the best is clearly faster.
  const DecodeConfig fallback = space[0];
  if (best != fallback) {
    std::unique_ptr<DecodePlan> a, b;
    TKA_RETURN_IF_ERROR(DecodePlan::create(runtime, desc, &a, &fallback));
    TKA_RETURN_IF_ERROR(DecodePlan::create(runtime, desc, &b, &best));
    std::vector<double> ta, tb, each;
    for (int round = 0; round < 3; ++round) {
      TKA_RETURN_IF_ERROR(time_each(
          api, 1, options.repeats, [&](int i) { return bench.run(*a, i); }, &each));
      ta.insert(ta.end(), each.begin(), each.end());
      TKA_RETURN_IF_ERROR(time_each(
          api, 1, options.repeats, [&](int i) { return bench.run(*b, i); }, &each));
      tb.insert(tb.end(), each.begin(), each.end());
    }
    default_us = median(ta);
    best_us = median(tb);
    if (best_us > 0.98 * default_us) best = fallback, best_us = default_us;
  }

  TuningEntry& e = result->entry;
  e.device = runtime.tuning_device();
  e.shape = tuning_shape_for(op);
  e.seq_bucket = pow2_bucket(desc.max_seq_len);
  e.batch_bucket = pow2_bucket(desc.max_batch);
  e.config = best;
  e.time_us = best_us;
  e.default_time_us = default_us;
  e.version = TOPKATTN_VERSION_STRING;
  result->bytes = decode_bytes_floor(op, desc.max_batch, desc.max_seq_len);
  TKA_RETURN_IF_ERROR(copy_bandwidth(api, &result->copy_bytes_per_second));
  log(TKA_LOG_INFO, "tune {}: {} ({:.1f} us, default {:.1f} us; {} timed, {} pruned, {} rejected, {} input copies)",
      e.shape.op, best.text(), best_us, default_us, result->candidates, result->pruned, result->rejected,
      bench.copies());
  return Status::ok();
}

}  // namespace tka
