#include "autotune/sparse_tuner.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "autotune/gpu_timing.h"
#include "autotune/pick_fastest.h"
#include "autotune/sparse_space.h"
#include "common/half.h"
#include "runtime/sparse_plan.h"

namespace tka {
namespace {

// An output as 16-bit floats, one row of `row` values per query head, equal to the wanted one
// (`o`) when every row is within 1e-2 of it in relative L2 norm, as the fp64 reference tests ask.
// Elementwise bounds reject good configs: the weights enter P V in 16 bits, rounded against the
// running max of the split that holds them, so another split count moves an output element near
// zero by a few 1e-5 (1e-3 of the output scale, ~3 sd of that noise, failed ~10 of 1M elements).
// A split dropped or counted twice moves a row by ~1/splits, far above 1e-2.
struct NearOutput {
  std::vector<float> values;
  size_t row = 1;
  bool operator!=(const NearOutput& o) const {
    if (values.size() != o.values.size() || row == 0 || values.size() % row != 0) return true;
    for (size_t r = 0; r < values.size(); r += row) {
      double err = 0, norm = 0;
      for (size_t i = r; i < r + row; ++i) {
        const float a = values[i], b = o.values[i];
        if (std::isnan(a) != std::isnan(b)) return true;
        if (std::isnan(a)) continue;
        err += (double(a) - b) * (double(a) - b);
        norm += double(b) * b;
      }
      if (err > 1e-4 * norm) return true;
    }
    return false;
  }
};

// Inputs, indices, output and workspace of one tuned shape. A run reads only the listed rows, far
// fewer bytes than the cache: both the cache (when it is small) and the index lists rotate, each
// over enough copies that the rows a run reads were not read by the runs just before it.
class SparseBench {
 public:
  SparseBench(const DriverApi* api, const SparseOp& op, long long seq_len, const DeviceInfo& device)
      : api_(api), d_(op.desc), heads_(op.sel_heads()), n_(seq_len), device_(device) {}

  Status init(size_t workspace_bytes) {
    const size_t B = d_.max_batch, N = static_cast<size_t>(n_), Hkv = d_.num_kv_heads;
    const size_t kv = B * Hkv * N * (d_.head_dim + (d_.shared_kv ? 0 : d_.head_dim_v));
    copies_ = rotation_copies(device_.l2_bytes, 2.0 * kv, 16);
    sets_ = rotation_copies(device_.l2_bytes, selected_bytes(), 64);
    cache_.resize(static_cast<size_t>(copies_));
    for (int c = 0; c < copies_; ++c) {
      TKA_RETURN_IF_ERROR(cache_[c].allocate(api_, kv * 2));
      TKA_RETURN_IF_ERROR(fill_random(api_, d_.dtype, 41 + c, cache_[c].ptr(), kv));
    }
    const size_t q = B * d_.q_len * d_.num_q_heads * d_.head_dim;
    TKA_RETURN_IF_ERROR(q_.allocate(api_, q * 2));
    TKA_RETURN_IF_ERROR(fill_random(api_, d_.dtype, 5, q_.ptr(), q));
    // Distinct indices per list: a + j * stride mod N with an odd stride and N a power of two; each
    // set starts its lists elsewhere.
    const size_t lists = B * d_.q_len * heads_, w = d_.index_width;
    std::vector<int> idx(lists * w);
    indices_.resize(static_cast<size_t>(sets_));
    for (int set = 0; set < sets_; ++set) {
      for (size_t l = 0; l < lists; ++l) {
        const size_t seed = l * 2654435761u + static_cast<size_t>(set) * 40503u;
        const long long a = static_cast<long long>(seed % static_cast<size_t>(n_));
        const long long stride = 2 * static_cast<long long>((l + 13 * static_cast<size_t>(set)) % 97) + 1;
        for (size_t j = 0; j < w; ++j)
          idx[l * w + j] =
              j < static_cast<size_t>(n_) ? static_cast<int>((a + static_cast<long long>(j) * stride) % n_) : -1;
      }
      TKA_RETURN_IF_ERROR(indices_[set].allocate(api_, idx.size() * 4));
      TKA_RETURN_IF_ERROR(TKA_CU(api_, cuMemcpyHtoD, indices_[set].ptr(), idx.data(), idx.size() * 4));
    }
    const std::vector<int> lens(B, static_cast<int>(n_));
    TKA_RETURN_IF_ERROR(lens_.allocate(api_, B * 4));
    TKA_RETURN_IF_ERROR(TKA_CU(api_, cuMemcpyHtoD, lens_.ptr(), lens.data(), B * 4));
    TKA_RETURN_IF_ERROR(out_.allocate(api_, B * d_.q_len * d_.num_q_heads * d_.head_dim_v * 2));
    return workspace_.allocate(api_, std::max<size_t>(workspace_bytes, 1));
  }

  Status run(const SparsePlan& plan, int iteration) {
    const int64_t B = d_.max_batch, Q = d_.q_len, Hq = d_.num_q_heads, Hkv = d_.num_kv_heads, N = n_;
    int64_t q_shape[] = {B, Q, Hq, d_.head_dim}, k_shape[] = {B, Hkv, N, d_.head_dim},
            v_shape[] = {B, Hkv, N, d_.head_dim_v}, l_shape[] = {B}, i_shape[] = {B, Q, heads_, d_.index_width},
            o_shape[] = {B, Q, Hq, d_.head_dim_v};
    const auto make = [&](void* p, DLDataType t, int ndim, int64_t* shape) {
      return device_tensor(p, t, ndim, shape, device_.ordinal);
    };
    const DLDataType h{static_cast<uint8_t>(d_.dtype == TKA_DTYPE_BF16 ? kDLBfloat : kDLFloat), 16, 1};
    const DLDataType i32{kDLInt, 32, 1};
    char* base = static_cast<char*>(cache_[static_cast<size_t>(iteration) % cache_.size()].data());
    const size_t k_bytes = static_cast<size_t>(B * Hkv * N * d_.head_dim) * 2;
    DLTensor q = make(q_.data(), h, 4, q_shape), k = make(base, h, 4, k_shape), v = make(base + k_bytes, h, 4, v_shape);
    DLTensor lens = make(lens_.data(), i32, 1, l_shape);
    DLTensor idx = make(indices_[static_cast<size_t>(iteration) % indices_.size()].data(), i32, 4, i_shape);
    DLTensor out = make(out_.data(), h, 4, o_shape);
    tka_tensors t{};
    t.q = &q, t.k_cache = &k, t.v_cache = d_.shared_kv ? nullptr : &v, t.seq_lens = &lens, t.indices = &idx;
    t.out = &out;
    return plan.run(t, workspace_.data(), nullptr);
  }

  // The output of input 0, as floats.
  Status output(const SparsePlan& plan, NearOutput* out) {
    TKA_RETURN_IF_ERROR(run(plan, 0));
    std::vector<uint16_t> bits(static_cast<size_t>(d_.max_batch) * d_.q_len * d_.num_q_heads * d_.head_dim_v);
    TKA_RETURN_IF_ERROR(TKA_CU(api_, cuMemcpyDtoH, bits.data(), out_.ptr(), bits.size() * 2));
    out->values.resize(bits.size());
    out->row = static_cast<size_t>(d_.head_dim_v);
    for (size_t i = 0; i < bits.size(); ++i) out->values[i] = half_bits_to_float(bits[i], d_.dtype == TKA_DTYPE_BF16);
    return Status::ok();
  }

  // Bytes the selected rows require: each list's keys (and values when not shared).
  double selected_bytes() const {
    const double row = 2.0 * (d_.head_dim + (d_.shared_kv ? 0 : d_.head_dim_v));
    return static_cast<double>(d_.max_batch) * d_.q_len * heads_ * std::min<long long>(d_.index_width, n_) * row;
  }
  int copies() const { return copies_; }
  int sets() const { return sets_; }

 private:
  const DriverApi* api_;
  tka_sparse_desc d_;
  int heads_;
  long long n_;
  DeviceInfo device_;
  int copies_ = 1, sets_ = 1;
  std::vector<DeviceBuffer> cache_, indices_;
  DeviceBuffer q_, lens_, out_, workspace_;
};

}  // namespace

Status tune_sparse(Runtime& runtime, const tka_sparse_desc& desc_in, long long seq_len, const TuneOptions& options,
                   TuneResult* result) {
  if (runtime.compile_only())
    return make_error(TKA_ERROR_NO_DEVICE, "tune: this runtime is compile-only; tuning needs a GPU");
  tka_sparse_desc desc = desc_in;
  if (desc.kv_layout != TKA_KV_CONTIGUOUS)
    return make_error(TKA_ERROR_UNSUPPORTED, "tune sparse: only the contiguous cache is tuned");
  if (seq_len <= 0 || seq_len > (1 << 24))
    return make_error(TKA_ERROR_INVALID_ARGUMENT, "tune sparse: the cache length must be in 1..{}, got {}", 1 << 24,
                      seq_len);
  seq_len = pow2_bucket(seq_len);
  if (desc.max_batch > 0) desc.max_batch = pow2_bucket(desc.max_batch);
  SparseOp op;
  TKA_RETURN_IF_ERROR(validate_sparse(desc, &op));
  const DriverApi* api = nullptr;
  TKA_RETURN_IF_ERROR(driver(&api));
  ScopedContext ctx(api, runtime.device().context);
  TKA_RETURN_IF_ERROR(ctx.status());
  *result = TuneResult{};

  const std::vector<SparseConfig> space = sparse_space(op, smem_budget(runtime.device()));
  std::vector<std::unique_ptr<SparsePlan>> plans;
  size_t workspace = 0;
  TKA_RETURN_IF_ERROR(build_space_plans(
      space,
      [&](const auto& config, std::unique_ptr<SparsePlan>* plan) {
        return SparsePlan::create(runtime, desc, plan, &config);
      },
      &plans, &workspace, result));
  SparseBench bench(api, op, seq_len, runtime.device());
  TKA_RETURN_IF_ERROR(bench.init(workspace));
  SparseConfig best;
  double best_us = 0, default_us = 0;
  const Status timed = pick_fastest<SparseConfig, SparsePlan, NearOutput>(
      api, space, plans, options, [&](const SparsePlan& p, NearOutput* out) { return bench.output(p, out); },
      [&](const SparsePlan& p, int r) { return bench.run(p, r); }, "its output differs from the default's", result,
      &best, &best_us, &default_us);
  TKA_RETURN_IF_ERROR(timed);

  TuningEntry& e = result->entry;
  e = measured_entry(runtime, tuning_shape_for(op), 1, desc.max_batch, best_us, default_us);
  e.sparse_config = best;
  return finish_tune(api, best.text(), bench.selected_bytes(),
                     fmt::format("{} cache copies, {} index sets", bench.copies(), bench.sets()), result);
}

}  // namespace tka
