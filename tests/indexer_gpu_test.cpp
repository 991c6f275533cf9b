// Lightning Indexer on the GPU through the C API. Scores against an fp64 reference (FP8 keys
// decoded by tests/reference/fp8_reference.h); the fused op's selection against the top-k of the
// GPU's own scores (the same fp32 values: the sets must be equal), its attention against fp64
// over the selected tokens, and its recall against the fp64 ranking. Skipped without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gpu_util.h"
#include "reference/decode_reference.h"
#include "reference/fp8_reference.h"
#include "reference/select_reference.h"
#include "templates/indexer_params.cuh"

namespace {

using namespace tka_test;
namespace ref = topkattn_ref;

struct IndexerCase {
  std::string tag;
  bool fp8 = true;
  int heads = 64, batch = 2, q_len = 1, n = 5000, top_k = 512, page = 0;
  bool mla = false;  // attention: MLA (16 heads, 576/512 shared) instead of GQA 32/8/128
  // Every 7th token's scale negative and every 11th zero (FP8), one key value NaN in every 97th
  // token: ReLU(scale x) of a negative scale, and NaN kept through the ReLU.
  bool special = false;
  // Infinite index-query elements: +inf in one head of row 0, -inf in another of the last row,
  // and both signs in the last head of both (FP8 has no infinity: the wgmma path takes these
  // heads apart).
  bool inf_query = false;
  bool zero_len = false;  // the last sequence has no token: -1 indices, zero outputs
};

struct Inputs {
  std::vector<uint16_t> iq16, q16, k16, v16;
  std::vector<float> iq, iw, ik, iscale, q, k, v;  // exact values; ik logical [B, N, 128]
  std::vector<uint8_t> ik8;
  std::vector<uint16_t> ik16;
  std::vector<int> lens, table;
  int max_pages = 0, pages = 0;
};

void fill_half(std::vector<uint16_t>& bits, std::vector<float>& f, size_t count, std::mt19937& rng, float sd = 1.f) {
  std::normal_distribution<float> normal(0.f, sd);
  bits.resize(count), f.resize(count);
  for (size_t i = 0; i < count; ++i) {
    bits[i] = ref::float_to_bf16(normal(rng));
    if (bits[i] == 0 || bits[i] == 0x8000) bits[i] = 0x3f00;  // never zero
    f[i] = ref::bf16_to_float(bits[i]);
  }
}

struct Run {
  std::vector<float> scores;  // [B, q_len, width]
  std::vector<int> selected;  // [B, q_len, top_k]
  std::vector<uint16_t> out;  // [B, q_len, Hq, dv]
};

class IndexerGpu : public ::testing::TestWithParam<IndexerCase> {};

TEST_P(IndexerGpu, ScoresSelectionAndAttention) {
  TKA_SKIP_WITHOUT_GPU();
  const IndexerCase& c = GetParam();
  const RuntimePtr rt = default_runtime();
  std::mt19937 rng(31 + c.n);
  const int D = 128, B = c.batch, Q = c.q_len, H = c.heads, N = c.n;
  const int hq = c.mla ? 16 : 32, hkv = c.mla ? 1 : 8, d = c.mla ? 576 : 128, dv = c.mla ? 512 : 128;
  Inputs x;
  fill_half(x.iq16, x.iq, static_cast<size_t>(B) * Q * H * D, rng);
  if (c.inf_query) {
    const auto set = [&](int row, int h, int e, bool negative) {
      const size_t at = (static_cast<size_t>(row) * H + h) * D + e;
      x.iq16[at] = negative ? 0xff80 : 0x7f80;
      x.iq[at] = negative ? -std::numeric_limits<float>::infinity() : std::numeric_limits<float>::infinity();
    };
    const int last = B * Q - 1;
    set(0, 3 % H, 5, false);
    set(last, 10 % H, 100, true);
    for (int row : {0, last}) set(row, H - 1, 0, false), set(row, H - 1, 77, true);
  }
  std::uniform_real_distribution<float> unit(-1.f, 1.f), pos(0.01f, 0.2f);
  x.iw.resize(static_cast<size_t>(B) * Q * H);
  for (float& w : x.iw) w = unit(rng);
  const size_t tokens = static_cast<size_t>(B) * N;
  x.ik.resize(tokens * D), x.iscale.resize(tokens);
  std::normal_distribution<float> normal;
  if (c.fp8) {
    x.ik8.resize(tokens * D);
    for (size_t i = 0; i < x.ik8.size(); ++i) {
      x.ik8[i] = ref::float_to_e4m3(normal(rng) * 16.f);
      if ((x.ik8[i] & 0x7f) == 0) x.ik8[i] |= 0x01;  // never zero: the smallest subnormal, same sign
      x.ik[i] = ref::e4m3_to_float(x.ik8[i]);
    }
    for (float& s : x.iscale) s = pos(rng);
  } else {
    fill_half(x.ik16, x.ik, tokens * D, rng);
    for (float& s : x.iscale) s = 1.f;
  }
  if (c.special)
    for (size_t tok = 0; tok < tokens; ++tok) {
      if (c.fp8 && tok % 7 == 3) x.iscale[tok] = -x.iscale[tok];
      if (c.fp8 && tok % 11 == 5) x.iscale[tok] = 0.f;
      if (tok % 97 == 13) {
        const size_t at = tok * D + tok % D;
        x.ik[at] = std::numeric_limits<float>::quiet_NaN();
        if (c.fp8)
          x.ik8[at] = 0x7f;
        else
          x.ik16[at] = 0x7fc0;
      }
    }
  if (c.inf_query)  // zero key values where row 0's head 3 holds +inf: inf * 0 is NaN on every path
    for (size_t tok = 0; tok < tokens; tok += 13) {
      const size_t at = tok * D + 5;
      x.ik[at] = 0.f;
      if (c.fp8)
        x.ik8[at] = 0;
      else
        x.ik16[at] = 0;
    }
  fill_half(x.q16, x.q, static_cast<size_t>(B) * Q * hq * d, rng);
  fill_half(x.k16, x.k, static_cast<size_t>(B) * hkv * N * d, rng);
  if (!c.mla) fill_half(x.v16, x.v, static_cast<size_t>(B) * hkv * N * dv, rng);
  std::uniform_int_distribution<int> len(N / 2, N);
  for (int b = 0; b < B; ++b) x.lens.push_back(b == 0 ? N : len(rng));
  if (c.zero_len) x.lens.back() = 0;

  // Device layouts: contiguous, or pages shared by the indexer and the main cache.
  std::vector<uint8_t> ik_dev;
  std::vector<float> is_dev;
  std::vector<uint16_t> k_dev, v_dev;
  std::vector<int64_t> ik_shape, is_shape, k_shape, v_shape;
  const size_t ik_elem = c.fp8 ? 1 : 2;
  const auto key_bytes = [&](size_t token) {
    return c.fp8 ? std::vector<uint8_t>(x.ik8.begin() + token * D, x.ik8.begin() + (token + 1) * D)
                 : std::vector<uint8_t>(reinterpret_cast<const uint8_t*>(&x.ik16[token * D]),
                                        reinterpret_cast<const uint8_t*>(&x.ik16[(token + 1) * D]));
  };
  if (c.page) {
    x.max_pages = (N + c.page - 1) / c.page;
    x.pages = B * x.max_pages + 2;
    std::vector<int> order(static_cast<size_t>(x.pages));
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    x.table.assign(order.begin(), order.begin() + static_cast<long>(B) * x.max_pages);
    ik_dev.assign(static_cast<size_t>(x.pages) * c.page * D * ik_elem, 0xff);
    is_dev.assign(static_cast<size_t>(x.pages) * c.page, std::numeric_limits<float>::quiet_NaN());
    k_dev.assign(static_cast<size_t>(x.pages) * c.page * hkv * d, 0xffff);
    v_dev.assign(static_cast<size_t>(x.pages) * c.page * hkv * dv, 0xffff);
    for (int b = 0; b < B; ++b)
      for (int s = 0; s < N; ++s) {
        const size_t slot =
            static_cast<size_t>(x.table[static_cast<size_t>(b) * x.max_pages + s / c.page]) * c.page + s % c.page;
        const std::vector<uint8_t> kb = key_bytes(static_cast<size_t>(b) * N + s);
        std::copy(kb.begin(), kb.end(), ik_dev.begin() + slot * D * ik_elem);
        is_dev[slot] = x.iscale[static_cast<size_t>(b) * N + s];
        for (int h = 0; h < hkv; ++h) {
          const size_t src = ((static_cast<size_t>(b) * hkv + h) * N + s);
          std::copy(x.k16.begin() + src * d, x.k16.begin() + (src + 1) * d, k_dev.begin() + (slot * hkv + h) * d);
          if (!c.mla)
            std::copy(x.v16.begin() + src * dv, x.v16.begin() + (src + 1) * dv, v_dev.begin() + (slot * hkv + h) * dv);
        }
      }
    ik_shape = {x.pages, c.page, D}, is_shape = {x.pages, c.page};
    k_shape = {x.pages, c.page, hkv, d}, v_shape = {x.pages, c.page, hkv, dv};
  } else {
    for (size_t t = 0; t < tokens; ++t) {
      const std::vector<uint8_t> kb = key_bytes(t);
      ik_dev.insert(ik_dev.end(), kb.begin(), kb.end());
    }
    is_dev = x.iscale, k_dev = x.k16, v_dev = x.v16;
    ik_shape = {B, N, D}, is_shape = {B, N}, k_shape = {B, hkv, N, d}, v_shape = {B, hkv, N, dv};
  }
  DeviceBuffer d_iq = DeviceBuffer::from(x.iq16), d_iw = DeviceBuffer::from(x.iw), d_ik = DeviceBuffer::from(ik_dev);
  DeviceBuffer d_is = DeviceBuffer::from(is_dev), d_lens = DeviceBuffer::from(x.lens);
  DeviceBuffer d_table = DeviceBuffer::from(c.page ? x.table : std::vector<int>{0});
  DeviceBuffer d_q = DeviceBuffer::from(x.q16), d_k = DeviceBuffer::from(k_dev);
  DeviceBuffer d_v = c.mla ? DeviceBuffer() : DeviceBuffer::from(v_dev);
  const DLDataType bf16 = dl_half(TKA_DTYPE_BF16);
  TensorArg iq(d_iq.get(), bf16, {B, Q, H, D}), iw(d_iw.get(), dl_f32(), {B, Q, H});
  TensorArg ik(d_ik.get(), c.fp8 ? dl_type(kDLUInt, 8) : bf16, ik_shape), is(d_is.get(), dl_f32(), is_shape);
  TensorArg lens(d_lens.get(), dl_i32(), {B}), table(d_table.get(), dl_i32(), {B, std::max(x.max_pages, 1)});

  tka_op_desc desc;
  tka_op_desc_init(&desc, TKA_OP_INDEXER_SCORES);
  tka_indexer_desc& id = desc.indexer;
  id.key_dtype = c.fp8 ? TKA_DTYPE_FP8_E4M3 : TKA_DTYPE_BF16;
  id.num_index_heads = H, id.q_len = Q, id.max_batch = B, id.max_seq_len = N, id.top_k = c.top_k;
  id.kv_layout = c.page ? TKA_KV_PAGED : TKA_KV_CONTIGUOUS, id.page_size = c.page;
  tka_sparse_desc& a = id.attention;
  a.num_q_heads = hq, a.num_kv_heads = hkv, a.head_dim = d, a.head_dim_v = c.mla ? 512 : 0, a.shared_kv = c.mla;

  // 1. Scores.
  tka_plan* praw = nullptr;
  tka_ok(tka_plan_create(rt.get(), &desc, &praw), "scores plan");
  PlanPtr scores_plan(praw);
  DeviceBuffer d_scores(static_cast<size_t>(B) * Q * N * 4);
  cuda_ok(cudaMemset(d_scores.get(), 0x55, d_scores.bytes()), "poison scores");
  TensorArg scores(d_scores.get(), dl_f32(), {B, Q, N});
  tka_tensors t;
  tka_tensors_init(&t);
  t.index_q = iq.get(), t.index_weights = iw.get(), t.index_k = ik.get(), t.index_scale = c.fp8 ? is.get() : nullptr;
  t.seq_lens = lens.get(), t.block_table = c.page ? table.get() : nullptr, t.scores = scores.get();
  tka_ok(tka_plan_run(scores_plan.get(), &t, nullptr, nullptr), "scores run");
  cuda_ok(cudaDeviceSynchronize(), "sync");
  const std::vector<float> got = d_scores.download<float>();
  // The scores' tolerance, relative to sum_h |w s| sum_e |q k|. mma.sync accumulates in fp32:
  // 2e-5. The wgmma path's FP8 products accumulate as Hopper's FP8 tensor cores do, aligned to
  // the largest exponent and kept to about 14 bits (DeepSeek-V3 report, section 3.3.2), over the
  // 128 products of a head: measured up to 2.9e-5 on these inputs, bounded here by 2e-4.
  int major = 0, minor = 0;
  cuda_ok(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0), "compute capability");
  cuda_ok(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0), "compute capability");
  const double rel_tol = tka::indexer_uses_wgmma(10 * major + minor, H, D, c.fp8) ? 2e-4 : 2e-5;
  std::vector<std::vector<double>> exact(static_cast<size_t>(B) * Q);
  for (int b = 0; b < B; ++b)
    for (int j = 0; j < Q; ++j) {
      const size_t row = static_cast<size_t>(b) * Q + j;
      const int n = std::max(0, x.lens[b] - Q + j + 1);
      for (int s = 0; s < N; ++s) {
        const float g = got[row * N + s];
        if (s >= n) {
          ASSERT_EQ(g, -std::numeric_limits<float>::infinity()) << "row " << row << " token " << s;
          continue;
        }
        double sum = 0, bound = 0;
        const double scale = x.iscale[static_cast<size_t>(b) * N + s];
        for (int h = 0; h < H; ++h) {
          double dot = 0, mag = 0;
          for (int e = 0; e < D; ++e) {
            const double p = double(x.iq[(row * H + h) * D + e]) * x.ik[(static_cast<size_t>(b) * N + s) * D + e];
            dot += p, mag += std::fabs(p);
          }
          const double w = x.iw[row * H + h];
          const double r = scale * dot;
          sum += w * (std::isnan(r) ? r : std::max(0.0, r));  // NaN kept, as the kernel's ReLU
          // A head whose product is not finite adds exactly 0 (ReLU of -inf) or makes the sum
          // infinite or NaN: no rounding of its own.
          if (std::isfinite(r)) bound += std::fabs(w * scale) * mag;
        }
        exact[row].push_back(sum);
        if (std::isnan(sum)) {
          ASSERT_TRUE(std::isnan(g)) << "row " << row << " token " << s << ": a NaN key or query must score NaN";
          continue;
        }
        if (std::isinf(sum)) {
          ASSERT_EQ(g, sum) << "row " << row << " token " << s << ": an infinite query must score infinite";
          continue;
        }
        ASSERT_NEAR(g, sum, rel_tol * bound + 1e-6) << "row " << row << " token " << s;
      }
    }

  // 2. Fused: selection, attention.
  desc.op = TKA_OP_INDEXER_DECODE;
  tka_ok(tka_plan_create(rt.get(), &desc, &praw), "decode plan");
  PlanPtr plan(praw);
  size_t ws_bytes = 0;
  tka_ok(tka_plan_workspace_size(plan.get(), &ws_bytes), "workspace");
  DeviceBuffer ws(ws_bytes);
  cuda_ok(cudaMemset(ws.get(), 0xff, ws_bytes), "poison workspace");
  DeviceBuffer d_sel(static_cast<size_t>(B) * Q * c.top_k * 4), d_out(static_cast<size_t>(B) * Q * hq * dv * 2);
  cuda_ok(cudaMemset(d_sel.get(), 0x55, d_sel.bytes()), "poison indices");
  cuda_ok(cudaMemset(d_out.get(), 0xff, d_out.bytes()), "poison out");
  TensorArg q(d_q.get(), bf16, {B, Q, hq, d}), k(d_k.get(), bf16, k_shape), v(d_v.get(), bf16, v_shape);
  TensorArg sel(d_sel.get(), dl_i32(), {B, Q, c.top_k}), out(d_out.get(), bf16, {B, Q, hq, dv});
  t.scores = nullptr;
  t.q = q.get(), t.k_cache = k.get(), t.v_cache = c.mla ? nullptr : v.get(), t.out = out.get(), t.indices = sel.get();
  tka_ok(tka_plan_run(plan.get(), &t, ws.get(), nullptr), "decode run");
  cuda_ok(cudaDeviceSynchronize(), "sync");
  const std::vector<int> picked = d_sel.download<int>();
  const std::vector<uint16_t> o = d_out.download<uint16_t>();
  const int g = hq / hkv;
  const double scale = static_cast<double>(1.f / std::sqrt(static_cast<float>(d)));
  for (int b = 0; b < B; ++b)
    for (int j = 0; j < Q; ++j) {
      const size_t row = static_cast<size_t>(b) * Q + j;
      const int n = std::max(0, x.lens[b] - Q + j + 1);
      std::vector<int> want = ref::select_topk(&got[row * N], n, c.top_k);
      std::vector<int> mine(picked.begin() + row * c.top_k, picked.begin() + row * c.top_k + want.size());
      std::sort(mine.begin(), mine.end());
      std::vector<int> want_sorted = want;
      std::sort(want_sorted.begin(), want_sorted.end());
      ASSERT_EQ(mine, want_sorted) << "row " << row << ": not the top-k of the indexer scores";
      for (size_t s = want.size(); s < static_cast<size_t>(c.top_k); ++s) ASSERT_EQ(picked[row * c.top_k + s], -1);
      // Recall against the fp64 ranking.
      std::vector<float> e(exact[row].begin(), exact[row].end());
      const std::vector<int> by_fp64 = ref::select_topk(e.data(), n, c.top_k);
      const std::set<int> a64(by_fp64.begin(), by_fp64.end());
      int hit = 0;
      for (int i : want) hit += a64.count(i);
      EXPECT_GE(hit, 0.98 * want.size()) << "row " << row;
      if (want.empty()) {  // no visible token: every head's output is 0
        for (size_t e2 = row * hq * dv; e2 < (row + 1) * hq * dv; ++e2)
          ASSERT_EQ(o[e2] & 0x7fff, 0) << "row " << row << " element " << e2;
        continue;
      }
      // Attention over the selected tokens, per query head.
      for (int h = 0; h < hq; ++h) {
        const int kvh = h / g;
        std::vector<double> sc;
        for (int i : want) {
          double dot = 0;
          for (int e2 = 0; e2 < d; ++e2)
            dot += double(x.q[((row)*hq + h) * d + e2]) * x.k[((static_cast<size_t>(b) * hkv + kvh) * N + i) * d + e2];
          sc.push_back(scale * dot);
        }
        const double m = *std::max_element(sc.begin(), sc.end());
        double z = 0;
        for (double s2 : sc) z += std::exp(s2 - m);
        double err = 0, norm = 0;
        for (int e2 = 0; e2 < dv; ++e2) {
          double acc = 0;
          for (size_t a2 = 0; a2 < want.size(); ++a2) {
            const size_t base = (static_cast<size_t>(b) * hkv + kvh) * N + want[a2];
            acc += std::exp(sc[a2] - m) / z * (c.mla ? x.k[base * d + e2] : x.v[base * dv + e2]);
          }
          const double gv = ref::bf16_to_float(o[(row * hq + h) * dv + e2]);
          err += (gv - acc) * (gv - acc), norm += acc * acc;
        }
        ASSERT_LT(std::sqrt(err / norm), 1e-2) << "row " << row << " head " << h;
      }
    }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, IndexerGpu,
    ::testing::Values(IndexerCase{"bf16_contig", false, 64, 2, 1, 5000, 512},
                      IndexerCase{"fp8_paged_mla", true, 64, 2, 1, 9000, 2048, 64, true},
                      IndexerCase{"fp8_q2_short", true, 32, 3, 2, 300, 512},
                      IndexerCase{"fp8_heads8_paged16", true, 8, 2, 1, 4000, 100, 16},
                      // Long enough for several key tiles per CTA: the pipeline's steady state.
                      IndexerCase{"fp8_long_tiles", true, 64, 4, 1, 70000, 2048},
                      IndexerCase{"bf16_long_paged64", false, 64, 3, 1, 90000, 1024, 64},
                      IndexerCase{"fp8_special", true, 64, 2, 1, 7000, 700, 0, false, true},
                      IndexerCase{"bf16_special_heads40", false, 40, 2, 1, 3000, 300, 0, false, true},
                      // sm_90: the wgmma path with heads padded to 64.
                      IndexerCase{"fp8_heads40_special", true, 40, 2, 1, 5000, 600, 0, false, true},
                      // Infinite query elements: wgmma (sm_90), fp16 mma, bf16 mma.
                      IndexerCase{"fp8_inf_query", true, 64, 2, 2, 3000, 300, 0, false, true, true},
                      IndexerCase{"fp8_heads16_inf_query", true, 16, 2, 1, 2000, 200, 0, false, false, true},
                      IndexerCase{"bf16_inf_query", false, 64, 1, 1, 2000, 200, 0, false, false, true},
                      // k = N for the first sequence, an empty last one.
                      IndexerCase{"bf16_k_eq_n_zero_len", false, 32, 3, 1, 512, 512, 0, false, false, false, true},
                      IndexerCase{"fp8_k1_zero_len_paged16", true, 64, 2, 1, 3000, 1, 16, false, false, false, true}),
    [](const ::testing::TestParamInfo<IndexerCase>& info) { return info.param.tag; });

}  // namespace

namespace {

// One fused indexer decode's buffers and tensors: bf16 indexer keys, 64 index heads, GQA 16/4 at
// d = 128, B = 2 sequences of N tokens, random inputs from `seed`, a workspace of its own.
struct FusedCall {
  static constexpr int B = 2, H = 64, D = 128, hq = 16, kvh = 4, d = 128;
  std::mt19937 rng;
  int N, k;
  DeviceBuffer iq, iw, ik, q, kc, vc, lens, out, sel, ws;
  TensorArg t_iq, t_iw, t_ik, t_q, t_k, t_v, t_lens, t_out, t_sel;
  tka_tensors t{};

  static tka_op_desc desc(int n, int top_k) {
    tka_op_desc desc;
    tka_op_desc_init(&desc, TKA_OP_INDEXER_DECODE);
    desc.indexer.key_dtype = TKA_DTYPE_BF16;
    desc.indexer.num_index_heads = H, desc.indexer.max_batch = B, desc.indexer.max_seq_len = n;
    desc.indexer.top_k = top_k;
    desc.indexer.attention.num_q_heads = hq, desc.indexer.attention.num_kv_heads = kvh;
    desc.indexer.attention.head_dim = d;
    return desc;
  }
  static size_t workspace_bytes(const tka_plan* plan) {
    size_t bytes = 0;
    tka_ok(tka_plan_workspace_size(plan, &bytes), "workspace");
    return bytes;
  }
  std::vector<uint16_t> bits(size_t n) {
    std::normal_distribution<float> normal;
    std::vector<uint16_t> v(n);
    for (uint16_t& x : v) x = ref::float_to_bf16(normal(rng) + 0.01f);
    return v;
  }
  std::vector<float> weights(size_t n) {
    std::normal_distribution<float> normal;
    std::vector<float> w(n);
    for (float& x : w) x = normal(rng) * 0.1f;
    return w;
  }

  FusedCall(const tka_plan* plan, int n, int top_k, unsigned seed)
      : rng(seed),
        N(n),
        k(top_k),
        iq(DeviceBuffer::from(bits(size_t(B) * H * D))),
        iw(DeviceBuffer::from(weights(size_t(B) * H))),
        ik(DeviceBuffer::from(bits(size_t(B) * N * D))),
        q(DeviceBuffer::from(bits(size_t(B) * hq * d))),
        kc(DeviceBuffer::from(bits(size_t(B) * kvh * N * d))),
        vc(DeviceBuffer::from(bits(size_t(B) * kvh * N * d))),
        lens(DeviceBuffer::from(std::vector<int>{N, N})),
        out(size_t(B) * hq * d * 2),
        sel(size_t(B) * k * 4),
        ws(workspace_bytes(plan)),
        t_iq(iq.get(), dl_half(TKA_DTYPE_BF16), {B, 1, H, D}),
        t_iw(iw.get(), dl_f32(), {B, 1, H}),
        t_ik(ik.get(), dl_half(TKA_DTYPE_BF16), {B, N, D}),
        t_q(q.get(), dl_half(TKA_DTYPE_BF16), {B, 1, hq, d}),
        t_k(kc.get(), dl_half(TKA_DTYPE_BF16), {B, kvh, N, d}),
        t_v(vc.get(), dl_half(TKA_DTYPE_BF16), {B, kvh, N, d}),
        t_lens(lens.get(), dl_i32(), {B}),
        t_out(out.get(), dl_half(TKA_DTYPE_BF16), {B, 1, hq, d}),
        t_sel(sel.get(), dl_i32(), {B, 1, k}) {
    tka_tensors_init(&t);
    t.index_q = t_iq.get(), t.index_weights = t_iw.get(), t.index_k = t_ik.get();
    t.q = t_q.get(), t.k_cache = t_k.get(), t.v_cache = t_v.get(), t.seq_lens = t_lens.get(), t.out = t_out.get();
    t.indices = t_sel.get();
  }
  // Outputs and workspace overwritten with `byte` on `stream`.
  void poison(int byte, cudaStream_t stream) {
    for (DeviceBuffer* b : {&sel, &out, &ws}) cuda_ok(cudaMemsetAsync(b->get(), byte, b->bytes(), stream), "poison");
  }
};

PlanPtr fused_plan(const RuntimePtr& rt, int n, int top_k) {
  const tka_op_desc desc = FusedCall::desc(n, top_k);
  tka_plan* praw = nullptr;
  tka_ok(tka_plan_create(rt.get(), &desc, &praw), "plan");
  return PlanPtr(praw);
}

// The fused indexer decode under CUDA graph capture: replays after the lengths change give what
// an eager run with the new lengths gives (nothing allocated, nothing synchronized in run).
TEST(IndexerGpuGraph, ReplayFollowsNewLengths) {
  TKA_SKIP_WITHOUT_GPU();
  const RuntimePtr rt = default_runtime();
  const int N = 6000, k = 256, hq = FusedCall::hq, d = FusedCall::d;
  const PlanPtr plan = fused_plan(rt, N, k);
  FusedCall call(plan.get(), N, k, 5);
  const tka_tensors& t = call.t;
  DeviceBuffer &lens = call.lens, &out = call.out, &sel = call.sel, &ws = call.ws;
  CudaStream stream;
  cudaGraph_t graph;
  cuda_ok(cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeThreadLocal), "begin capture");
  tka_ok(tka_plan_run(plan.get(), &t, ws.get(), stream.tka()), "captured run");
  cuda_ok(cudaStreamEndCapture(stream.get(), &graph), "end capture");
  cudaGraphExec_t exec;
  cuda_ok(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
  // The replay and the eager run each write over a poison of their own (and the workspace's), so
  // equal outputs mean both wrote every element.
  const auto poison = [&](int byte) {
    call.poison(byte, stream.get());
    cuda_ok(cudaStreamSynchronize(stream.get()), "poison");
  };
  for (const std::vector<int>& l : {std::vector<int>{N, 100}, std::vector<int>{3000, 0}}) {
    SCOPED_TRACE(testing::Message() << "lengths " << l[0] << ", " << l[1]);
    cuda_ok(cudaMemcpy(lens.get(), l.data(), l.size() * 4, cudaMemcpyHostToDevice), "lengths");
    poison(0x55);
    cuda_ok(cudaGraphLaunch(exec, stream.get()), "replay");
    cuda_ok(cudaStreamSynchronize(stream.get()), "sync");
    const std::vector<int> replay_sel = sel.download<int>();
    const std::vector<uint16_t> replay_out = out.download<uint16_t>();
    poison(0xa3);
    tka_ok(tka_plan_run(plan.get(), &t, ws.get(), stream.tka()), "eager run");
    cuda_ok(cudaStreamSynchronize(stream.get()), "sync");
    EXPECT_EQ(replay_sel, sel.download<int>());
    EXPECT_EQ(replay_out, out.download<uint16_t>());
    // Sequence 1: its visible tokens, each once, then -1 padding.
    std::set<int> seen;
    for (int s = 0; s < k; ++s) {
      const int i = replay_sel[k + s];
      if (s >= std::min(k, l[1])) {
        EXPECT_EQ(i, -1) << "slot " << s;
      } else {
        EXPECT_TRUE(i >= 0 && i < l[1]) << "slot " << s << ": " << i;
        EXPECT_TRUE(seen.insert(i).second) << "token " << i << " twice";
      }
    }
    if (l[1] == 0) {  // no visible token: every head's output is 0
      for (size_t e = static_cast<size_t>(hq) * d; e < replay_out.size(); ++e)
        ASSERT_EQ(replay_out[e] & 0x7fff, 0) << "element " << e;
    }
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

// One fused plan run from four threads at once, each with its own stream, inputs and workspace:
// every run gives what the same inputs gave alone. Rows of 20000 tokens take the cooperative grid
// for the top-k on sm_90+ (sco=1), so four cooperative launches may be in flight together.
TEST(IndexerGpuThreads, FourStreamsAtOnceMatchOneAtATime) {
  TKA_SKIP_WITHOUT_GPU();
  const RuntimePtr rt = default_runtime();
  const int N = 20000, k = 512;
  const PlanPtr plan = fused_plan(rt, N, k);
  int major = 0;
  cuda_ok(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0), "compute capability");
  const std::string spec = tka_plan_spec(plan.get());
  EXPECT_NE(spec.find(major >= 9 ? ";sco=1" : ";sco=0"), std::string::npos) << spec;
  constexpr int kThreads = 4, kRuns = 3;
  std::vector<std::unique_ptr<FusedCall>> calls;
  std::vector<std::unique_ptr<CudaStream>> streams;
  std::vector<std::vector<int>> alone_sel;
  std::vector<std::vector<uint16_t>> alone_out;
  for (int i = 0; i < kThreads; ++i) {
    calls.push_back(std::make_unique<FusedCall>(plan.get(), N, k, 100 + i));
    streams.push_back(std::make_unique<CudaStream>());
    FusedCall& c = *calls.back();
    c.poison(0x55, streams.back()->get());
    tka_ok(tka_plan_run(plan.get(), &c.t, c.ws.get(), streams.back()->tka()), "run alone");
    cuda_ok(cudaStreamSynchronize(streams.back()->get()), "sync");
    alone_sel.push_back(c.sel.download<int>());
    alone_out.push_back(c.out.download<uint16_t>());
  }
  ASSERT_NE(alone_sel[0], alone_sel[1]) << "the inputs differ, so must the selections";
  const std::vector<std::string> failures = run_together(kThreads, [&](int i) -> std::string {
    FusedCall& c = *calls[i];
    const cudaStream_t s = streams[i]->get();
    for (int run = 0; run < kRuns; ++run) {
      c.poison(run % 2 ? 0xa3 : 0xff, s);
      tka_ok(tka_plan_run(plan.get(), &c.t, c.ws.get(), streams[i]->tka()), "run");
      if (c.sel.download_on<int>(s) != alone_sel[i]) return "run " + std::to_string(run) + ": indices differ";
      if (c.out.download_on<uint16_t>(s) != alone_out[i]) return "run " + std::to_string(run) + ": out differs";
    }
    return "";
  });
  for (int i = 0; i < kThreads; ++i) EXPECT_EQ(failures[i], "") << "thread " << i;
}

}  // namespace
