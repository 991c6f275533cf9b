// Fidelity diagnostics: the CPU path (tka_fidelity_host) against an independent fp64 reference,
// its validation, NVRTC compilation of the GPU kernels for sm_80 and sm_90, the .npy reader and
// `topkattn analyze`; and, with a GPU, the fidelity plan against the CPU path.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gpu_util.h"
#include "reference/decode_reference.h"
#include "runtime/fidelity_plan.h"
#include "test_util.h"
#include "tools/npy.h"

namespace {

using namespace tka_test;
namespace ref = topkattn_ref;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// A problem's shape: batch, heads, keys, head dim, exact top-k and candidate width.
struct ProblemShape {
  int batch, hq, hkv, n, d, top_k, width;
};

struct Problem : ProblemShape {
  std::vector<float> q, k;  // exact values (fp32, or bf16 rounded)
  std::vector<int> lens;    // [batch], or empty
  std::vector<int> cand;    // [batch, hq, width], or empty
};

// What a problem holds. Values are rounded to `dtype` (so the host's fp64 and the library read
// the same numbers). `lens`: random lengths (the first sequence's 0) instead of none. With `ties`,
// q and K are +-0.5: every score is a multiple of scale / 4, shared by hundreds of keys, so the
// exact top-k (and recall) follows the lower-index tie rule and nothing else. `nan_keys` key rows
// of every KV head get one NaN element. `width` 0: no candidate.
struct ProblemSpec : ProblemShape {
  bool lens = false;
  tka_dtype dtype = TKA_DTYPE_FP32;
  bool ties = false;
  int nan_keys = 0;
};

Problem make_problem(const ProblemSpec& s, unsigned seed) {
  Problem p;
  static_cast<ProblemShape&>(p) = s;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  const auto value = [&] {
    const float x = normal(rng);
    if (s.ties) return x < 0 ? -0.5f : 0.5f;
    if (s.dtype == TKA_DTYPE_BF16) return ref::bf16_to_float(ref::float_to_bf16(x));
    if (s.dtype == TKA_DTYPE_FP16) return ref::half_to_float(ref::float_to_half(x, ref::Half::kFP16), ref::Half::kFP16);
    return x;
  };
  p.q.resize(static_cast<size_t>(s.batch) * s.hq * s.d);
  p.k.resize(static_cast<size_t>(s.batch) * s.hkv * s.n * s.d);
  for (float& x : p.q) x = value();
  for (float& x : p.k) x = value();
  std::uniform_int_distribution<int> key(0, s.n - 1), elem(0, s.d - 1);
  for (int r = 0; r < s.batch * s.hkv; ++r)
    for (int t = 0; t < s.nan_keys; ++t)
      p.k[(static_cast<size_t>(r) * s.n + key(rng)) * s.d + elem(rng)] = std::numeric_limits<float>::quiet_NaN();
  if (s.lens) {
    std::uniform_int_distribution<int> len(0, s.n);
    for (int b = 0; b < s.batch; ++b) p.lens.push_back(b == 0 ? 0 : len(rng));
  }
  if (s.width > 0) {
    std::uniform_int_distribution<int> pick(-3, s.n + 3);  // -1 padding and out-of-range entries
    p.cand.resize(static_cast<size_t>(s.batch) * s.hq * s.width);
    for (int& c : p.cand) c = pick(rng);
    if (s.width > 1) p.cand[1] = p.cand[0];  // a duplicate
  }
  return p;
}

struct Expected {
  std::vector<double> recall, mass, entropy;
};

// Written straight from the contract: full sort, explicit softmax.
// scale: the float the library uses (1/sqrt(d) rounded to float), widened.
Expected reference(const Problem& p, double scale) {
  Expected e;
  const int g = p.hq / p.hkv;
  for (int b = 0; b < p.batch; ++b) {
    const int n = p.lens.empty() ? p.n : p.lens[b];
    for (int h = 0; h < p.hq; ++h) {
      if (n == 0) {
        e.recall.push_back(kNaN), e.mass.push_back(kNaN), e.entropy.push_back(kNaN);
        continue;
      }
      std::vector<double> s(static_cast<size_t>(n));
      for (int i = 0; i < n; ++i) {
        double dot = 0;
        for (int j = 0; j < p.d; ++j)
          dot += double(p.q[(static_cast<size_t>(b) * p.hq + h) * p.d + j]) *
                 p.k[((static_cast<size_t>(b) * p.hkv + h / g) * p.n + i) * p.d + j];
        s[i] = scale * dot;
      }
      std::vector<int> order(static_cast<size_t>(n));
      std::iota(order.begin(), order.end(), 0);
      // NaN ranks below every number; a NaN score makes the softmax, so mass and entropy, NaN.
      std::stable_sort(order.begin(), order.end(),
                       [&](int a, int c) { return std::isnan(s[c]) ? !std::isnan(s[a]) : s[a] > s[c]; });
      const bool any_nan = std::any_of(s.begin(), s.end(), [](double x) { return std::isnan(x); });
      const int k = std::min(p.top_k, n);
      const std::set<int> exact(order.begin(), order.begin() + k);
      const double m = s[order[0]];
      double z = 0;
      for (double x : s) z += std::exp(x - m);
      double ent = 0;
      for (double x : s) {
        const double pi = std::exp(x - m) / z;
        if (pi > 0) ent -= pi * std::log(pi);
      }
      std::set<int> cand;
      if (!p.cand.empty())
        for (int c = 0; c < p.width; ++c) {
          const int i = p.cand[(static_cast<size_t>(b) * p.hq + h) * p.width + c];
          if (i >= 0 && i < n) cand.insert(i);
        }
      const std::set<int>& kept = p.cand.empty() ? exact : cand;
      double mass = 0;
      for (int i : kept) mass += std::exp(s[i] - m) / z;
      int both = 0;
      for (int i : cand) both += exact.count(i);
      e.recall.push_back(p.cand.empty() ? kNaN : double(both) / k);
      e.mass.push_back(any_nan ? kNaN : mass);
      e.entropy.push_back(any_nan ? kNaN : ent);
    }
  }
  return e;
}

tka_fidelity_desc desc_for(const Problem& p, tka_dtype dtype) {
  tka_fidelity_desc d{};
  d.dtype = dtype;
  d.num_q_heads = p.hq;
  d.num_kv_heads = p.hkv;
  d.head_dim = p.d;
  d.top_k = p.top_k;
  d.max_batch = p.batch;
  d.max_seq_len = p.n;
  return d;
}

void expect_close(const std::vector<float>& got, const std::vector<double>& want, double tol, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(want[i])) {
      EXPECT_TRUE(std::isnan(got[i])) << what << "[" << i << "] = " << got[i] << ", expected NaN";
    } else {
      EXPECT_NEAR(got[i], want[i], tol * std::max(1.0, std::fabs(want[i]))) << what << "[" << i << "]";
    }
  }
}

// Host tensors over a problem (fp32, or bf16 / fp16 bits) and its outputs.
struct HostTensors {
  std::vector<uint16_t> q16, k16;
  std::vector<float> recall, mass, entropy;
  std::vector<int64_t> q_shape, k_shape, len_shape, idx_shape, out_shape;
  DLTensor q{}, k{}, lens{}, idx{}, r{}, m{}, e{};
  tka_tensors t{};
  HostTensors(Problem& p, tka_dtype dtype) {
    const size_t cells = static_cast<size_t>(p.batch) * p.hq;
    recall.assign(cells, -7.f), mass.assign(cells, -7.f), entropy.assign(cells, -7.f);  // poison
    q_shape = {p.batch, p.hq, p.d};
    k_shape = {p.batch, p.hkv, p.n, p.d};
    len_shape = {p.batch};
    idx_shape = {p.batch, p.hq, p.width};
    out_shape = {p.batch, p.hq};
    const DLDevice cpu{kDLCPU, 0};
    const auto make = [&](DLTensor& t, void* data, DLDataType dt, std::vector<int64_t>& shape) {
      t.data = data, t.device = cpu, t.dtype = dt, t.ndim = static_cast<int>(shape.size()), t.shape = shape.data();
    };
    if (dtype != TKA_DTYPE_FP32) {
      const ref::Half h = dtype == TKA_DTYPE_BF16 ? ref::Half::kBF16 : ref::Half::kFP16;
      for (float x : p.q) q16.push_back(ref::float_to_half(x, h));
      for (float x : p.k) k16.push_back(ref::float_to_half(x, h));
      make(q, q16.data(), dl_half(dtype), q_shape);
      make(k, k16.data(), dl_half(dtype), k_shape);
    } else {
      make(q, p.q.data(), dl_f32(), q_shape);
      make(k, p.k.data(), dl_f32(), k_shape);
    }
    make(lens, p.lens.data(), dl_i32(), len_shape);
    make(idx, p.cand.data(), dl_i32(), idx_shape);
    make(r, recall.data(), dl_f32(), out_shape);
    make(m, mass.data(), dl_f32(), out_shape);
    make(e, entropy.data(), dl_f32(), out_shape);
    tka_tensors_init(&t);
    t.q = &q, t.k_cache = &k, t.retained_mass = &m, t.entropy = &e;
    if (!p.lens.empty()) t.seq_lens = &lens;
    if (!p.cand.empty()) t.indices = &idx, t.recall = &r;
  }
};

// tka_fidelity_host on p (read as dtype) against reference(); returns the reference.
Expected expect_host_matches_reference(Problem& p, tka_dtype dtype) {
  HostTensors t(p, dtype);
  const tka_fidelity_desc d = desc_for(p, dtype);
  const Expected e = reference(p, static_cast<double>(1.f / std::sqrt(static_cast<float>(p.d))));
  if (tka_fidelity_host(&d, &t.t) != TKA_SUCCESS) {
    ADD_FAILURE() << "tka_fidelity_host: " << tka_last_error();
    return e;
  }
  if (!p.cand.empty()) expect_close(t.recall, e.recall, 1e-6, "recall");
  expect_close(t.mass, e.mass, 1e-5, "retained_mass");
  expect_close(t.entropy, e.entropy, 1e-5, "entropy");
  return e;
}

// One NaN key per KV head of each sequence, k near N so that it sits at the selection's boundary;
// random lengths put some of those keys past their sequence's end.
Problem nan_key_problem(tka_dtype dtype) {
  return make_problem({6, 4, 2, 400, 64, 390, 395, true, dtype, false, /*nan_keys=*/1}, 61);
}

TEST(FidelityHost, MatchesTheReference) {
  using Case = ProblemSpec;
  const tka_dtype f32 = TKA_DTYPE_FP32, b16 = TKA_DTYPE_BF16, f16 = TKA_DTYPE_FP16;
  const Case cases[] = {
      {2, 8, 2, 300, 64, 40, 50, false, f32, false},        {3, 4, 4, 1000, 128, 1, 7, true, f32, false},
      {2, 6, 1, 77, 32, 200, 0, false, b16, false},         {4, 2, 1, 513, 256, 513, 600, true, b16, false},
      {1, 16, 2, 2049, 128, 2048, 2048, false, f32, false}, {2, 8, 2, 700, 64, 50, 80, true, f16, false},
      {2, 8, 2, 600, 64, 37, 60, false, f16, true},         {1, 4, 1, 1000, 128, 1, 5, false, b16, true}};
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message() << "n=" << c.n << " d=" << c.d << " k=" << c.top_k << " width=" << c.width
                                    << " dtype=" << c.dtype << " ties=" << c.ties);
    Problem p = make_problem(c, 99u + c.n);
    expect_host_matches_reference(p, c.dtype);
  }
}

// NaN scores rank below every number (recall stays exact) and make the softmax NaN, so retained
// mass and entropy are NaN for a head that sees one; a NaN key past a sequence's length is unseen.
TEST(FidelityHost, NaNScoresRankLastAndMakeMassAndEntropyNaN) {
  for (tka_dtype dtype : {TKA_DTYPE_FP32, TKA_DTYPE_BF16}) {
    Problem p = nan_key_problem(dtype);
    const Expected e = expect_host_matches_reference(p, dtype);
    int nan_heads = 0, finite_heads = 0;
    for (size_t i = 0; i < e.mass.size(); ++i)
      (std::isnan(e.mass[i]) ? nan_heads : finite_heads) += !std::isnan(e.recall[i]);
    EXPECT_GT(nan_heads, 0) << "the case must hold heads that see a NaN key";
    EXPECT_GT(finite_heads, 0) << "and heads whose NaN keys are past their length";
  }
}

TEST(FidelityHost, KeepingEveryKeyKeepsAllTheMass) {
  Problem p = make_problem({1, 4, 2, 100, 64, 100, 0, false, TKA_DTYPE_FP32}, 5);
  HostTensors t(p, TKA_DTYPE_FP32);
  const tka_fidelity_desc d = desc_for(p, TKA_DTYPE_FP32);
  ASSERT_EQ(tka_fidelity_host(&d, &t.t), TKA_SUCCESS) << tka_last_error();
  for (float m : t.mass) EXPECT_NEAR(m, 1.0, 1e-6);
  for (float e : t.entropy) EXPECT_TRUE(e > 0.f && e <= std::log(100.f) + 1e-5f) << e;
}

// A candidate of width 0 is an empty selection: it keeps no mass and recalls nothing.
TEST(FidelityHost, AnEmptyCandidateKeepsNothing) {
  Problem p = make_problem({2, 4, 2, 50, 64, 10, 0, false, TKA_DTYPE_FP32}, 8);
  HostTensors t(p, TKA_DTYPE_FP32);
  t.idx_shape[2] = 0;
  t.idx.data = nullptr;
  t.t.indices = &t.idx;
  t.t.recall = &t.r;
  const tka_fidelity_desc d = desc_for(p, TKA_DTYPE_FP32);
  ASSERT_EQ(tka_fidelity_host(&d, &t.t), TKA_SUCCESS) << tka_last_error();
  for (size_t i = 0; i < t.mass.size(); ++i) {
    EXPECT_EQ(t.mass[i], 0.f);
    EXPECT_EQ(t.recall[i], 0.f);
    EXPECT_GT(t.entropy[i], 0.f);
  }
}

TEST(FidelityHost, BadArgumentsNameTheField) {
  Problem p = make_problem({2, 8, 2, 300, 64, 40, 50, true, TKA_DTYPE_FP32}, 3);
  const tka_fidelity_desc good = desc_for(p, TKA_DTYPE_FP32);
  struct Case {
    const char* name;
    std::function<void(tka_fidelity_desc&, HostTensors&)> mutate;
    tka_status status;
    const char* field;
  };
  const Case cases[] = {
      {"dtype", [](tka_fidelity_desc& d, HostTensors&) { d.dtype = static_cast<tka_dtype>(0); },
       TKA_ERROR_INVALID_ARGUMENT, "fidelity.dtype"},
      {"heads", [](tka_fidelity_desc& d, HostTensors&) { d.num_kv_heads = 3; }, TKA_ERROR_INVALID_ARGUMENT,
       "fidelity.num_kv_heads"},
      {"head_dim", [](tka_fidelity_desc& d, HostTensors&) { d.head_dim = 2000; }, TKA_ERROR_UNSUPPORTED,
       "fidelity.head_dim"},
      {"top_k", [](tka_fidelity_desc& d, HostTensors&) { d.top_k = 0; }, TKA_ERROR_INVALID_ARGUMENT, "fidelity.top_k"},
      {"max_batch", [](tka_fidelity_desc& d, HostTensors&) { d.max_batch = 65536; }, TKA_ERROR_INVALID_ARGUMENT,
       "fidelity.max_batch"},
      {"scale", [](tka_fidelity_desc& d, HostTensors&) { d.scale = -1.f; }, TKA_ERROR_INVALID_ARGUMENT,
       "fidelity.scale"},
      {"q on the GPU",
       [](tka_fidelity_desc&, HostTensors& t) {
         t.q.device = DLDevice{kDLCUDA, 0};
       },
       TKA_ERROR_TENSOR_DEVICE, "tensors.q"},
      {"k shape", [](tka_fidelity_desc&, HostTensors& t) { t.k_shape[3] = 32; }, TKA_ERROR_TENSOR_SHAPE,
       "tensors.k_cache"},
      {"q dtype", [](tka_fidelity_desc&, HostTensors& t) { t.q.dtype = dl_i32(); }, TKA_ERROR_TENSOR_DTYPE,
       "tensors.q"},
      {"indices dtype", [](tka_fidelity_desc&, HostTensors& t) { t.idx.dtype = dl_f32(); }, TKA_ERROR_TENSOR_DTYPE,
       "tensors.indices"},
      {"entropy missing", [](tka_fidelity_desc&, HostTensors& t) { t.t.entropy = nullptr; }, TKA_ERROR_NULL_POINTER,
       "tensors.entropy"},
      {"recall without a candidate", [](tka_fidelity_desc&, HostTensors& t) { t.t.indices = nullptr; },
       TKA_ERROR_INVALID_ARGUMENT, "tensors.recall"},
      {"length past the cache", [](tka_fidelity_desc&, HostTensors& t) { static_cast<int*>(t.lens.data)[1] = 301; },
       TKA_ERROR_INVALID_ARGUMENT, "tensors.seq_lens"},
      {"a decode tensor", [](tka_fidelity_desc&, HostTensors& t) { t.t.out = &t.m; }, TKA_ERROR_INVALID_ARGUMENT,
       "tensors.out"},
  };
  for (const Case& c : cases) {
    Problem copy = p;
    HostTensors t(copy, TKA_DTYPE_FP32);
    tka_fidelity_desc d = good;
    c.mutate(d, t);
    EXPECT_EQ(tka_fidelity_host(&d, &t.t), c.status) << c.name << ": " << tka_last_error();
    EXPECT_NE(std::string(tka_last_error()).find(c.field), std::string::npos) << c.name << ": " << tka_last_error();
  }
  EXPECT_EQ(tka_fidelity_host(nullptr, nullptr), TKA_ERROR_NULL_POINTER);
}

// Candidates as int64 give exactly what the same candidates as int32 give.
TEST(FidelityHost, Int64CandidatesMatchInt32) {
  Problem p = make_problem({2, 8, 2, 300, 64, 40, 50, true, TKA_DTYPE_FP32}, 23);
  HostTensors t32(p, TKA_DTYPE_FP32), t64(p, TKA_DTYPE_FP32);
  const tka_fidelity_desc d = desc_for(p, TKA_DTYPE_FP32);
  ASSERT_EQ(tka_fidelity_host(&d, &t32.t), TKA_SUCCESS) << tka_last_error();
  std::vector<int64_t> cand64(p.cand.begin(), p.cand.end());
  t64.idx.data = cand64.data(), t64.idx.dtype = dl_i64();
  ASSERT_EQ(tka_fidelity_host(&d, &t64.t), TKA_SUCCESS) << tka_last_error();
  const auto same = [](const std::vector<float>& a, const std::vector<float>& b, const char* what) {
    ASSERT_EQ(a.size(), b.size()) << what;
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_NE(a[i], -7.f) << what << "[" << i << "] not written";
      EXPECT_TRUE(a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i]))) << what << "[" << i << "]";
    }
  };
  same(t64.recall, t32.recall, "recall");  // sequence 0 is empty: NaN in both
  same(t64.mass, t32.mass, "retained_mass");
  same(t64.entropy, t32.entropy, "entropy");
}

// Every length is checked before anything is written: a bad one late in the batch leaves every
// output as it was.
TEST(FidelityHost, ABadLengthWritesNothing) {
  Problem p = make_problem({3, 4, 2, 200, 64, 20, 30, true, TKA_DTYPE_FP32}, 5);
  p.lens = {150, 180, 201};
  HostTensors t(p, TKA_DTYPE_FP32);
  const tka_fidelity_desc d = desc_for(p, TKA_DTYPE_FP32);
  EXPECT_EQ(tka_fidelity_host(&d, &t.t), TKA_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(tka_last_error()).find("sequence 2 has length 201"), std::string::npos) << tka_last_error();
  for (size_t i = 0; i < t.mass.size(); ++i) {
    ASSERT_EQ(t.mass[i], -7.f) << i;
    ASSERT_EQ(t.entropy[i], -7.f) << i;
    ASSERT_EQ(t.recall[i], -7.f) << i;
  }
}

// Host tensors are dereferenced on the CPU: a shape whose element count overflows must not pass
// for an empty tensor (NULL data accepted, then read).
TEST(FidelityHost, AnOverflowingShapeIsRejectedBeforeItsDataIsRead) {
  Problem p = make_problem({2, 8, 2, 300, 64, 40, 50, true, TKA_DTYPE_FP32}, 3);
  HostTensors t(p, TKA_DTYPE_FP32);
  const tka_fidelity_desc d = desc_for(p, TKA_DTYPE_FP32);
  std::vector<int64_t> shape = {int64_t{1} << 30, 2, int64_t{1} << 30, 64}, strides = {0, 0, 64, 1};
  t.k.shape = shape.data(), t.k.strides = strides.data(), t.k.data = nullptr;
  EXPECT_NE(tka_fidelity_host(&d, &t.t), TKA_SUCCESS);
  EXPECT_NE(std::string(tka_last_error()).find("tensors.k_cache"), std::string::npos) << tka_last_error();
}

TEST(FidelityCompile, EveryVariantCompilesForSm80AndSm90) {
  ScratchDir dir;
  for (int sm : {80, 90}) {
    RuntimePtr rt = compile_only_runtime(dir.path(), sm);
    for (tka_dtype dtype : {TKA_DTYPE_FP32, TKA_DTYPE_BF16, TKA_DTYPE_FP16})
      for (int d : {64, 128, 256}) {
        tka_op_desc od;
        tka_op_desc_init(&od, TKA_OP_FIDELITY);
        od.fidelity.dtype = dtype;
        od.fidelity.num_q_heads = 8;
        od.fidelity.num_kv_heads = 2;
        od.fidelity.head_dim = d;
        od.fidelity.top_k = 2048;
        od.fidelity.max_seq_len = 4096;
        tka_plan* plan = nullptr;
        ASSERT_EQ(tka_plan_create(rt.get(), &od, &plan), TKA_SUCCESS)
            << "sm_" << sm << " d=" << d << ": " << tka_last_error();
        EXPECT_EQ(std::string(tka_plan_spec(plan)).rfind("op=fidelity;", 0), 0u);
        tka_plan_destroy(plan);
      }
  }
  // The GPU path takes the kernels' head dims only.
  RuntimePtr rt = compile_only_runtime(dir.path(), 90);
  tka_op_desc od;
  tka_op_desc_init(&od, TKA_OP_FIDELITY);
  od.fidelity.num_q_heads = 8, od.fidelity.num_kv_heads = 2, od.fidelity.head_dim = 96, od.fidelity.top_k = 8;
  od.fidelity.max_seq_len = 100;
  tka_plan* plan = nullptr;
  EXPECT_EQ(tka_plan_create(rt.get(), &od, &plan), TKA_ERROR_UNSUPPORTED);
  EXPECT_NE(std::string(tka_last_error()).find("fidelity.head_dim"), std::string::npos);
}

// The GPU plan's tensor checks (compile-only runtime: every check runs, then NO_DEVICE).
TEST(FidelityTensors, EveryBadTensorIsRejectedByName) {
  ScratchDir dir;
  RuntimePtr rt = compile_only_runtime(dir.path(), 90);
  tka_op_desc od;
  tka_op_desc_init(&od, TKA_OP_FIDELITY);
  tka_fidelity_desc& d = od.fidelity;
  d.dtype = TKA_DTYPE_BF16, d.num_q_heads = 8, d.num_kv_heads = 2, d.head_dim = 128, d.top_k = 64;
  d.max_batch = 4, d.max_seq_len = 4096;
  tka_plan* raw = nullptr;
  tka_ok(tka_plan_create(rt.get(), &od, &raw), "plan");
  PlanPtr plan(raw);
  void* ws = reinterpret_cast<void*>(0x1000000);
  const auto ptr = [](int slot) {
    return reinterpret_cast<void*>(uintptr_t{0x7f0000000000} + (uintptr_t(slot) << 32));
  };
  struct Tensors {
    TensorArg q, k, lens, idx, r, m, e;
    tka_tensors t{};
  };
  const auto valid = [&] {
    Tensors x{TensorArg(ptr(1), dl_half(TKA_DTYPE_BF16), {2, 8, 128}),
              TensorArg(ptr(2), dl_half(TKA_DTYPE_BF16), {2, 2, 4096, 128}),
              TensorArg(ptr(3), dl_i32(), {2}),
              TensorArg(ptr(4), dl_i32(), {2, 8, 100}),
              TensorArg(ptr(5), dl_f32(), {2, 8}),
              TensorArg(ptr(6), dl_f32(), {2, 8}),
              TensorArg(ptr(7), dl_f32(), {2, 8})};
    return x;
  };
  const auto tensors = [](Tensors& x) {
    tka_tensors_init(&x.t);
    x.t.q = x.q.get(), x.t.k_cache = x.k.get(), x.t.seq_lens = x.lens.get(), x.t.indices = x.idx.get();
    x.t.recall = x.r.get(), x.t.retained_mass = x.m.get(), x.t.entropy = x.e.get();
    return &x.t;
  };
  {
    Tensors x = valid();
    EXPECT_EQ(tka_plan_run(plan.get(), tensors(x), ws, nullptr), TKA_ERROR_NO_DEVICE) << tka_last_error();
  }
  struct Case {
    const char* name;
    std::function<void(Tensors&)> mutate;
    tka_status status;
    const char* field;
  };
  const Case cases[] = {
      {"q missing", [](Tensors& x) { x.t.q = nullptr; }, TKA_ERROR_NULL_POINTER, "q"},
      {"q fp16", [](Tensors& x) { x.q.dl().dtype = dl_half(TKA_DTYPE_FP16); }, TKA_ERROR_TENSOR_DTYPE, "q"},
      {"q heads", [](Tensors& x) { x.q.shape[1] = 4; }, TKA_ERROR_TENSOR_SHAPE, "q"},
      {"batch past max_batch", [](Tensors& x) { x.q.shape[0] = 5; }, TKA_ERROR_TENSOR_SHAPE, "q"},
      {"q on the host",
       [](Tensors& x) {
         x.q.dl().device = DLDevice{kDLCPU, 0};
       },
       TKA_ERROR_TENSOR_DEVICE, "q"},
      {"k misaligned", [](Tensors& x) { x.k.dl().data = static_cast<char*>(x.k.dl().data) + 1; },
       TKA_ERROR_TENSOR_ALIGNMENT, "k_cache"},
      {"k fewer sequences", [](Tensors& x) { x.k.shape[0] = 1; }, TKA_ERROR_TENSOR_SHAPE, "k_cache"},
      {"k past max_seq_len", [](Tensors& x) { x.k.shape[2] = 4097; }, TKA_ERROR_TENSOR_SHAPE, "k_cache"},
      {"k inner stride", [](Tensors& x) { x.k.strides[3] = 2; }, TKA_ERROR_TENSOR_STRIDE, "k_cache"},
      {"k data NULL", [](Tensors& x) { x.k.dl().data = nullptr; }, TKA_ERROR_NULL_POINTER, "k_cache"},
      {"seq_lens int64", [](Tensors& x) { x.lens.dl().dtype = dl_i64(); }, TKA_ERROR_TENSOR_DTYPE, "seq_lens"},
      {"seq_lens length", [](Tensors& x) { x.lens.shape[0] = 3; }, TKA_ERROR_TENSOR_SHAPE, "seq_lens"},
      {"indices float", [](Tensors& x) { x.idx.dl().dtype = dl_f32(); }, TKA_ERROR_TENSOR_DTYPE, "indices"},
      {"indices heads", [](Tensors& x) { x.idx.shape[1] = 2; }, TKA_ERROR_TENSOR_SHAPE, "indices"},
      {"recall without indices", [](Tensors& x) { x.t.indices = nullptr; }, TKA_ERROR_INVALID_ARGUMENT, "recall"},
      {"mass missing", [](Tensors& x) { x.t.retained_mass = nullptr; }, TKA_ERROR_NULL_POINTER, "retained_mass"},
      {"entropy shape", [](Tensors& x) { x.e.shape[1] = 16; }, TKA_ERROR_TENSOR_SHAPE, "entropy"},
      {"entropy bf16", [](Tensors& x) { x.e.dl().dtype = dl_half(TKA_DTYPE_BF16); }, TKA_ERROR_TENSOR_DTYPE, "entropy"},
      {"mass heads on one element", [](Tensors& x) { x.m.strides[1] = 0; }, TKA_ERROR_TENSOR_STRIDE, "retained_mass"},
      {"recall on device 1",
       [](Tensors& x) {
         x.r.dl().device = DLDevice{kDLCUDA, 1};
       },
       TKA_ERROR_TENSOR_DEVICE, "recall"},
      {"a decode tensor", [](Tensors& x) { x.t.out = x.m.get(); }, TKA_ERROR_INVALID_ARGUMENT, "out"},
  };
  for (const Case& c : cases) {
    Tensors x = valid();
    tensors(x);
    c.mutate(x);
    EXPECT_EQ(tka_plan_run(plan.get(), &x.t, ws, nullptr), c.status) << c.name << ": " << tka_last_error();
    EXPECT_NE(std::string(tka_last_error()).find(std::string("tensors.") + c.field), std::string::npos)
        << c.name << ": " << tka_last_error();
  }
  Tensors x = valid();
  EXPECT_EQ(tka_plan_run(plan.get(), tensors(x), nullptr, nullptr), TKA_ERROR_WORKSPACE);
}

// ---- .npy files and `topkattn analyze` ---------------------------------------------------------

tka::tools::NpyArray npy_of(const std::vector<float>& v, std::vector<int64_t> shape) {
  tka::tools::NpyArray a;
  a.descr = "<f4";
  a.shape = std::move(shape);
  a.data.resize(v.size() * 4);
  std::memcpy(a.data.data(), v.data(), a.data.size());
  return a;
}

TEST(Npy, RoundTripsAndRejectsBadFiles) {
  ScratchDir dir;
  tka::tools::NpyArray a = npy_of({1.f, 2.f, 3.f, 4.f, 5.f, 6.f}, {2, 3});
  ASSERT_TRUE(tka::tools::write_npy(dir / "a.npy", a).is_ok());
  tka::tools::NpyArray b;
  ASSERT_TRUE(tka::tools::read_npy(dir / "a.npy", &b).is_ok());
  EXPECT_EQ(b.shape, a.shape);
  EXPECT_EQ(b.data, a.data);
  const std::string text = read_text(dir / "a.npy");
  EXPECT_EQ(text.size() % 64, 24u % 64);  // 64-byte aligned header, then 24 bytes of data
  write_text(dir / "short.npy", text.substr(0, text.size() - 4));
  tka::Status s = tka::tools::read_npy(dir / "short.npy", &b);
  EXPECT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("truncated"), std::string::npos) << s.message();
  write_text(dir / "junk.npy", "not numpy at all");
  s = tka::tools::read_npy(dir / "junk.npy", &b);
  EXPECT_NE(s.message().find("magic"), std::string::npos) << s.message();
  std::string big_endian = text;
  big_endian.replace(big_endian.find("<f4"), 3, ">f4");
  write_text(dir / "be.npy", big_endian);
  s = tka::tools::read_npy(dir / "be.npy", &b);
  EXPECT_NE(s.message().find(">f4"), std::string::npos) << s.message();
  std::string fortran = text;
  fortran.replace(fortran.find("False"), 5, "True ");
  write_text(dir / "f.npy", fortran);
  EXPECT_FALSE(tka::tools::read_npy(dir / "f.npy", &b).is_ok());
  EXPECT_FALSE(tka::tools::read_npy(dir / "missing.npy", &b).is_ok());
}

struct AnalyzeFiles {
  ScratchDir dir;
  Problem p;
  AnalyzeFiles() : p(make_problem({2, 8, 2, 300, 64, 40, 50, false, TKA_DTYPE_FP32}, 11)) {
    EXPECT_TRUE(tka::tools::write_npy(dir / "q.npy", npy_of(p.q, {p.batch, p.hq, p.d})).is_ok());
    EXPECT_TRUE(tka::tools::write_npy(dir / "k.npy", npy_of(p.k, {p.batch, p.hkv, p.n, p.d})).is_ok());
    tka::tools::NpyArray idx;
    idx.descr = "<i8";
    idx.shape = {p.batch, p.hq, p.width};
    for (int c : p.cand) {
      const int64_t v = c;
      const auto* b = reinterpret_cast<const uint8_t*>(&v);
      idx.data.insert(idx.data.end(), b, b + 8);
    }
    EXPECT_TRUE(tka::tools::write_npy(dir / "idx.npy", idx).is_ok());
  }
  std::string cli(const std::string& args) const {
    return std::string(TOPKATTN_CLI_PATH) + " analyze --device cpu --q " + (dir / "q.npy") + " --k " + (dir / "k.npy") +
           " " + args;
  }
};

TEST(AnalyzeCli, JsonHoldsEveryMetricPerBatchAndHead) {
  AnalyzeFiles f;
  const CommandResult r = run_command(f.cli("--indices " + (f.dir / "idx.npy") + " --topk 40 --json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  const Expected e = reference(f.p, 1.0 / 8.0);
  for (const char* key : {"recall", "retained_mass", "entropy"}) {
    ASSERT_TRUE(j.contains(key)) << key;
    ASSERT_EQ(j[key].size(), 2u) << key;
    ASSERT_EQ(j[key][0].size(), 8u) << key;
  }
  for (int b = 0; b < 2; ++b)
    for (int h = 0; h < 8; ++h) {
      const size_t i = static_cast<size_t>(b) * 8 + h;
      EXPECT_NEAR(j["recall"][b][h].get<double>(), e.recall[i], 1e-6);
      EXPECT_NEAR(j["retained_mass"][b][h].get<double>(), e.mass[i], 1e-5);
      EXPECT_NEAR(j["entropy"][b][h].get<double>(), e.entropy[i], 1e-5);
    }
  EXPECT_EQ(j["device"], "cpu");
}

TEST(AnalyzeCli, WithoutACandidateReportsExactTopKAndNoRecall) {
  AnalyzeFiles f;
  CommandResult r = run_command(f.cli("--topk 40 --json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_FALSE(j.contains("recall"));
  Problem exact = f.p;
  exact.cand.clear();
  const Expected e = reference(exact, 1.0 / 8.0);
  EXPECT_NEAR(j["retained_mass"][1][3].get<double>(), e.mass[11], 1e-5);
  r = run_command(f.cli("--topk 40"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("retained_mass"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("entropy"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("recall"), std::string::npos) << r.out;
}

TEST(AnalyzeCli, BadInputsExitWithTwoAndSayWhy) {
  AnalyzeFiles f;
  CommandResult r = run_command(std::string(TOPKATTN_CLI_PATH) + " analyze --q " + (f.dir / "q.npy"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--k"), std::string::npos) << r.err;
  r = run_command(f.cli("--indices " + (f.dir / "nope.npy")));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("nope.npy"), std::string::npos) << r.err;
  // q and K swapped: the shapes do not fit.
  r = run_command(std::string(TOPKATTN_CLI_PATH) + " analyze --device cpu --q " + (f.dir / "k.npy") + " --k " +
                  (f.dir / "q.npy"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--q"), std::string::npos) << r.err;
  r = run_command(f.cli("--topk 0"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("top_k"), std::string::npos) << r.err;
  r = run_command(f.cli("--device tpu"));
  EXPECT_EQ(r.exit_code, 2);
}

TEST(AnalyzeCli, GpuRequestWithoutAGpuSaysSo) {
  std::string why;
  if (gpu_present(&why)) GTEST_SKIP() << "a GPU is present";
  AnalyzeFiles f;
  const CommandResult r = run_command(std::string(TOPKATTN_CLI_PATH) + " analyze --device gpu --q " +
                                      (f.dir / "q.npy") + " --k " + (f.dir / "k.npy"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_FALSE(r.err.empty());
}

// ---- GPU ---------------------------------------------------------------------------------------

struct GpuOutputs {
  std::vector<float> recall, mass, entropy;
};

// One run of a fidelity plan with `config` on the problem's tensors copied to the GPU (p.lens as
// the lengths when given), every output and the workspace poisoned first.
GpuOutputs run_on_gpu(tka_runtime& rt, const Problem& p, const HostTensors& host, const tka_fidelity_desc& d,
                      const tka::FidelityConfig& config, tka_dtype dtype, bool cand64 = false) {
  std::unique_ptr<tka::FidelityPlan> plan;
  const tka::Status created = tka::FidelityPlan::create(rt, d, &plan, &config);
  if (!created.is_ok()) throw std::runtime_error("plan: " + created.message());
  DeviceBuffer ws(plan->workspace_bytes());
  cuda_ok(cudaMemset(ws.get(), 0xff, plan->workspace_bytes()), "poison workspace");
  const bool half = dtype != TKA_DTYPE_FP32;
  DeviceBuffer dq = half ? DeviceBuffer::from(host.q16) : DeviceBuffer::from(p.q);
  DeviceBuffer dk = half ? DeviceBuffer::from(host.k16) : DeviceBuffer::from(p.k);
  DeviceBuffer dl = DeviceBuffer::from(p.lens.empty() ? std::vector<int>{0} : p.lens);
  const std::vector<int64_t> cand64_values(p.cand.begin(), p.cand.end());
  DeviceBuffer di = cand64 ? DeviceBuffer::from(cand64_values.empty() ? std::vector<int64_t>{0} : cand64_values)
                           : DeviceBuffer::from(p.cand.empty() ? std::vector<int>{0} : p.cand);
  const std::vector<float> poison(host.mass.size(), -7.f);
  DeviceBuffer dr = DeviceBuffer::from(poison), dm = DeviceBuffer::from(poison), de = DeviceBuffer::from(poison);
  DLTensor q = host.q, k = host.k, lens = host.lens, idx = host.idx, r = host.r, m = host.m, e = host.e;
  for (DLTensor* t : {&q, &k, &lens, &idx, &r, &m, &e}) t->device = DLDevice{kDLCUDA, 0};
  q.data = dq.get(), k.data = dk.get(), lens.data = dl.get(), idx.data = di.get();
  if (cand64) idx.dtype = dl_i64();
  r.data = dr.get(), m.data = dm.get(), e.data = de.get();
  tka_tensors t;
  tka_tensors_init(&t);
  t.q = &q, t.k_cache = &k, t.retained_mass = &m, t.entropy = &e;
  if (!p.lens.empty()) t.seq_lens = &lens;
  if (!p.cand.empty()) t.indices = &idx, t.recall = &r;
  const tka::Status ran = plan->run(t, ws.get(), nullptr);
  if (!ran.is_ok()) throw std::runtime_error("run: " + ran.message());
  cuda_ok(cudaDeviceSynchronize(), "sync");
  return {p.cand.empty() ? std::vector<float>{} : dr.download<float>(), dm.download<float>(), de.download<float>()};
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want, double tol, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::isnan(want[i]))
      EXPECT_TRUE(std::isnan(got[i])) << what << "[" << i << "]";
    else
      EXPECT_NEAR(got[i], want[i], tol * std::max(1.0, std::fabs(double(want[i])))) << what << "[" << i << "]";
  }
}

// The GPU's statistics against the CPU path's (recall only with a candidate).
void expect_matches_host(const GpuOutputs& got, const HostTensors& host, bool has_cand) {
  if (has_cand) expect_close(got.recall, host.recall, 1e-6, "recall");
  expect_close(got.mass, host.mass, 1e-3, "retained_mass");
  expect_close(got.entropy, host.entropy, 1e-3, "entropy");
}

// The CPU path on p, then a GPU run with each config compared with it.
void expect_gpu_matches_cpu(tka_runtime& rt, Problem& p, tka_dtype dtype,
                            std::initializer_list<tka::FidelityConfig> configs = {tka::FidelityConfig{}},
                            bool cand64 = false) {
  HostTensors host(p, dtype);
  const tka_fidelity_desc d = desc_for(p, dtype);
  ASSERT_EQ(tka_fidelity_host(&d, &host.t), TKA_SUCCESS) << tka_last_error();
  for (const tka::FidelityConfig& config : configs) {
    SCOPED_TRACE(config.text());
    expect_matches_host(run_on_gpu(rt, p, host, d, config, dtype, cand64), host, !p.cand.empty());
  }
}

// The default config and two tuned ones (other selection threads; score chunks of 96, which no N
// here is a multiple of, and of 1000, which the third case's N is) against the CPU path, every
// output and the workspace poisoned before each run.
TEST(FidelityGpu, MatchesTheCpuPath) {
  TKA_SKIP_WITHOUT_GPU();
  const RuntimePtr rt = default_runtime();
  using Case = ProblemSpec;
  const tka_dtype f32 = TKA_DTYPE_FP32, b16 = TKA_DTYPE_BF16, f16 = TKA_DTYPE_FP16;
  const Case cases[] = {{2, 8, 2, 3001, 64, 40, 50, true, f32, false},
                        {1, 32, 8, 32768, 128, 2048, 2048, false, b16, false},
                        {3, 4, 4, 1000, 256, 1000, 0, true, f32, false},
                        {2, 16, 1, 513, 128, 1, 9, false, b16, false},
                        {2, 8, 2, 1000, 64, 1000, 30, false, f32, false},  // k = N: every key kept
                        {2, 8, 2, 5003, 128, 300, 400, true, f16, false},
                        // Scores tied by the hundred: recall follows the lower-index rule exactly.
                        {2, 8, 2, 3001, 64, 77, 200, false, f16, true},
                        {1, 16, 2, 20000, 128, 2048, 2048, false, b16, true}};
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message() << "n=" << c.n << " d=" << c.d << " k=" << c.top_k << " dtype=" << c.dtype
                                    << " ties=" << c.ties);
    Problem p = make_problem(c, 7u + c.n + c.top_k);
    expect_gpu_matches_cpu(*rt, p, c.dtype,
                           {tka::FidelityConfig{}, tka::FidelityConfig{1024, 96}, tka::FidelityConfig{256, 1000}});
  }
}

// NaN keys on the GPU: what the CPU path gives (NaN mass and entropy where a head sees one, recall
// with NaN ranked last).
TEST(FidelityGpu, NaNScoresMatchTheCpuPath) {
  TKA_SKIP_WITHOUT_GPU();
  const RuntimePtr rt = default_runtime();
  for (tka_dtype dtype : {TKA_DTYPE_FP32, TKA_DTYPE_BF16}) {
    Problem p = nan_key_problem(dtype);
    expect_gpu_matches_cpu(*rt, p, dtype);
  }
}

// Candidates as int64 (as torch produces them) give what int32 ones give, on the GPU.
TEST(FidelityGpu, Int64CandidatesMatchTheCpuPath) {
  TKA_SKIP_WITHOUT_GPU();
  const RuntimePtr rt = default_runtime();
  Problem p = make_problem({2, 8, 2, 3001, 64, 40, 50, true, TKA_DTYPE_FP32}, 17);
  expect_gpu_matches_cpu(*rt, p, TKA_DTYPE_FP32, {tka::FidelityConfig{}}, /*cand64=*/true);
}

// A length the kernels cannot use (negative, or past the cache) is data on the GPU, so it cannot
// fail the call: that sequence's statistics are NaN, as for an empty one, and the others are
// unchanged. (tka_fidelity_host, which reads the lengths first, rejects them instead.)
TEST(FidelityGpu, ALengthOutsideTheCacheGivesNaN) {
  TKA_SKIP_WITHOUT_GPU();
  const RuntimePtr rt = default_runtime();
  Problem p = make_problem({3, 4, 2, 700, 64, 30, 40, true, TKA_DTYPE_FP32}, 41);
  p.lens = {0, 0, 650};
  HostTensors host(p, TKA_DTYPE_FP32);
  const tka_fidelity_desc d = desc_for(p, TKA_DTYPE_FP32);
  ASSERT_EQ(tka_fidelity_host(&d, &host.t), TKA_SUCCESS) << tka_last_error();
  for (size_t i = 0; i < 8; ++i) ASSERT_TRUE(std::isnan(host.mass[i]));  // empty sequences 0 and 1
  Problem bad = p;
  bad.lens = {-5, 701, 650};
  expect_matches_host(run_on_gpu(*rt, bad, host, d, tka::FidelityConfig{}, TKA_DTYPE_FP32), host, true);
}

}  // namespace
