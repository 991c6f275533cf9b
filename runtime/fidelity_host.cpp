#include "runtime/fidelity_host.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "codegen/fidelity_spec.h"
#include "common/half.h"
#include "runtime/plan.h"
#include "runtime/tensor_check.h"

namespace tka {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// A host tensor of float32, bf16 or fp16 elements read as doubles.
struct Floats {
  const uint8_t* data;
  int kind;  // 0 fp32, 1 bf16, 2 fp16
  std::vector<int64_t> strides;
  double at(int64_t offset) const {
    if (kind == 0) {
      float f;
      std::memcpy(&f, data + offset * 4, 4);
      return f;
    }
    uint16_t h;
    std::memcpy(&h, data + offset * 2, 2);
    return half_bits_to_float(h, kind == 1);
  }
};

// q and k_cache in the descriptor's dtype, or float32.
Status check_floats(const DLTensor* t, const char* field, tka_dtype dtype, std::vector<int64_t> shape, Floats* out,
                    TensorView* view) {
  const auto [code, bits] = dl_type_of(dtype);
  TensorRule rule{field, code, bits, shape, true, 0, bits / 8, kDLCPU};
  Status s = check_tensor(t, rule, view);
  if (s.code() == TKA_ERROR_TENSOR_DTYPE && t->dtype.code == kDLFloat && t->dtype.bits == 32) {
    rule.code = kDLFloat, rule.bits = 32, rule.align = 4;
    s = check_tensor(t, rule, view);
  }
  TKA_RETURN_IF_ERROR(s);
  out->data = static_cast<const uint8_t*>(view->data);
  out->kind = t->dtype.bits == 32 ? 0 : t->dtype.code == kDLBfloat ? 1 : 2;
  out->strides = view->strides;
  return Status::ok();
}

// a ranks above b: larger score first, NaN last, then lower index.
bool ranks_above(const std::vector<double>& s, int a, int b) {
  const bool na = std::isnan(s[a]), nb = std::isnan(s[b]);
  if (na != nb) return nb;
  if (!na && s[a] != s[b]) return s[a] > s[b];
  return a < b;
}

struct HeadStats {
  double recall = kNaN, mass = kNaN, entropy = kNaN;
};

HeadStats head_stats(const std::vector<double>& s, int n, int top_k, const std::vector<char>* cand) {
  HeadStats r;
  if (n == 0) return r;
  std::vector<int> order(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) order[i] = i;
  const int e = std::min(top_k, n);
  std::nth_element(order.begin(), order.begin() + (e - 1), order.end(),
                   [&](int a, int b) { return ranks_above(s, a, b); });
  std::vector<char> exact(static_cast<size_t>(n), 0);
  for (int i = 0; i < e; ++i) exact[order[i]] = 1;
  double m = -std::numeric_limits<double>::infinity();
  for (int i = 0; i < n; ++i)
    if (!std::isnan(s[i])) m = std::max(m, s[i]);
  double z = 0, zs = 0, kept = 0;
  int both = 0;
  for (int i = 0; i < n; ++i) {
    const double w = std::exp(s[i] - m);
    z += w;
    if (w > 0)
      zs += w * (s[i] - m);
    else if (std::isnan(w))
      zs += w;
    if (cand ? (*cand)[i] : exact[i]) kept += w;
    if (cand && (*cand)[i] && exact[i]) ++both;
  }
  r.entropy = std::log(z) - zs / z;
  r.mass = kept / z;
  if (cand) r.recall = static_cast<double>(both) / e;
  return r;
}

}  // namespace

Status fidelity_host(const tka_fidelity_desc& desc, const tka_tensors& t) {
  FidelityOp op;
  TKA_RETURN_IF_ERROR(validate_fidelity(desc, /*host=*/true, &op));
  TKA_RETURN_IF_ERROR(
      require_unused(t, {"q", "k_cache", "seq_lens", "indices", "recall", "retained_mass", "entropy"}, "fidelity"));
  const tka_fidelity_desc& d = op.desc;
  Floats q, k;
  TensorView qv, kv, lens, idx, recall, mass, entropy;
  TKA_RETURN_IF_ERROR(check_floats(t.q, "q", d.dtype, {-1, d.num_q_heads, d.head_dim}, &q, &qv));
  const int64_t batch = qv.shape[0];
  if (batch > d.max_batch)
    return make_error(TKA_ERROR_TENSOR_SHAPE, "tensors.q: batch {} exceeds max_batch {}", batch, d.max_batch);
  TKA_RETURN_IF_ERROR(check_floats(t.k_cache, "k_cache", d.dtype, {-1, d.num_kv_heads, -2, d.head_dim}, &k, &kv));
  if (kv.shape[0] < batch)
    return make_error(TKA_ERROR_TENSOR_SHAPE, "tensors.k_cache: {} sequences, fewer than the batch {}", kv.shape[0],
                      batch);
  const int64_t cap = kv.shape[2];
  const TensorRule lens_rule{"seq_lens", kDLInt, 32, {batch}, false, 0, 4, kDLCPU};
  TKA_RETURN_IF_ERROR(check_tensor(t.seq_lens, lens_rule, &lens));
  int idx_bits = 32;
  if (t.indices && t.indices->dtype.code == kDLInt && t.indices->dtype.bits == 64) idx_bits = 64;
  const TensorRule idx_rule{"indices",    kDLInt, static_cast<uint8_t>(idx_bits), {batch, d.num_q_heads, -2}, false, 0,
                            idx_bits / 8, kDLCPU};
  TKA_RETURN_IF_ERROR(check_tensor(t.indices, idx_rule, &idx));
  const auto out_rule = [&](const char* name, bool required) {
    return written(TensorRule{name, kDLFloat, 32, {batch, d.num_q_heads}, required, 0, 4, kDLCPU});
  };
  TKA_RETURN_IF_ERROR(check_tensor(t.recall, out_rule("recall", false), &recall));
  TKA_RETURN_IF_ERROR(check_tensor(t.retained_mass, out_rule("retained_mass", true), &mass));
  TKA_RETURN_IF_ERROR(check_tensor(t.entropy, out_rule("entropy", true), &entropy));
  const bool has_cand = t.indices != nullptr;  // width 0 is a candidate that keeps nothing
  if (recall.data && !has_cand)
    return make_error(TKA_ERROR_INVALID_ARGUMENT, "tensors.recall: needs a candidate selection in tensors.indices");

  const int group = op.group, dim = d.head_dim;
  const auto write = [](const TensorView& v, int64_t b, int h, double x) {
    if (v.data) static_cast<float*>(v.data)[b * v.strides[0] + h * v.strides[1]] = static_cast<float>(x);
  };
  std::vector<double> krow(static_cast<size_t>(dim));
  std::vector<std::vector<double>> qrows(static_cast<size_t>(group), std::vector<double>(static_cast<size_t>(dim)));
  std::vector<std::vector<double>> scores(static_cast<size_t>(group));
  // Every length is checked before any output is written: a bad one leaves the outputs untouched.
  const auto seq_len = [&](int64_t b) -> int64_t {
    return lens.data ? static_cast<const int*>(lens.data)[b * lens.strides[0]] : cap;
  };
  for (int64_t b = 0; b < batch; ++b)
    if (seq_len(b) < 0 || seq_len(b) > cap)
      return make_error(TKA_ERROR_INVALID_ARGUMENT, "tensors.seq_lens: sequence {} has length {}, outside 0..{}", b,
                        seq_len(b), cap);
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t n = seq_len(b);
    for (int kvh = 0; kvh < d.num_kv_heads; ++kvh) {
      for (int g = 0; g < group; ++g) {
        const int h = kvh * group + g;
        for (int j = 0; j < dim; ++j) qrows[g][j] = q.at(b * q.strides[0] + h * q.strides[1] + j * q.strides[2]);
        scores[g].assign(static_cast<size_t>(n), 0.0);
      }
      for (int64_t i = 0; i < n; ++i) {
        const int64_t base = b * k.strides[0] + kvh * k.strides[1] + i * k.strides[2];
        for (int j = 0; j < dim; ++j) krow[j] = k.at(base + j * k.strides[3]);
        for (int g = 0; g < group; ++g) {
          double dot = 0;
          for (int j = 0; j < dim; ++j) dot += qrows[g][j] * krow[j];
          scores[g][i] = static_cast<double>(d.scale) * dot;
        }
      }
      for (int g = 0; g < group; ++g) {
        const int h = kvh * group + g;
        std::vector<char> cand;
        if (has_cand) {
          cand.assign(static_cast<size_t>(n), 0);
          for (int64_t c = 0; c < idx.shape[2]; ++c) {
            const int64_t at = b * idx.strides[0] + h * idx.strides[1] + c * idx.strides[2];
            const int64_t i =
                idx_bits == 64 ? static_cast<const int64_t*>(idx.data)[at] : static_cast<const int*>(idx.data)[at];
            if (i >= 0 && i < n) cand[static_cast<size_t>(i)] = 1;
          }
        }
        const HeadStats st = head_stats(scores[g], static_cast<int>(n), d.top_k, has_cand ? &cand : nullptr);
        write(recall, b, h, st.recall);
        write(mass, b, h, st.mass);
        write(entropy, b, h, st.entropy);
      }
    }
  }
  return Status::ok();
}

}  // namespace tka
