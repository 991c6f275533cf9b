// Sparse attention over given indices on the GPU, through the public C API, against an fp64
// reference written from the contract. Without a GPU every test here reports itself skipped.
// Outputs are poisoned with 0x55 bytes (large finite values, so that the rows that must come out
// NaN are told apart from rows never written) and the workspace with 0xFF before each run; index
// lists mix valid entries, -1 padding
// and entries past the visible length; rows with no valid entry, a sequence longer than its
// cache and a block-table entry outside the pool are each checked.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gpu_util.h"
#include "reference/decode_reference.h"

namespace {

using namespace tka_test;
namespace ref = topkattn_ref;

struct SparseCase {
  std::string tag;
  tka_dtype dtype = TKA_DTYPE_BF16;
  int batch = 2, hq = 8, hkv = 2, d = 128, dv = 128, q_len = 1, n = 3000, width = 512;
  bool per_group = false, shared = false;
  int page = 0;  // 0: contiguous
  bool bad_len = false, bad_page = false, empty_row = false;
  bool zero_len = false;  // sequence 1 has no key: every list of it is past the end (out 0, lse -inf)
  // Keys of sequence 0 with one NaN element (kNaN) or one +-inf element (kInf, alternately), about
  // one per full list: a row whose list holds a NaN or +inf score is NaN (out and lse); a -inf
  // score weighs exactly 0. In the shared (MLA) layout the element is past the value columns.
  enum Special { kNone, kNaN, kInf } special = kNone;
};

std::string describe(const SparseCase& c) {
  std::ostringstream o;
  o << c.tag << " B=" << c.batch << " Hq=" << c.hq << " Hkv=" << c.hkv << " d=" << c.d << "/" << c.dv
    << " q=" << c.q_len << " N=" << c.n << " w=" << c.width << (c.per_group ? " group" : " head")
    << (c.page ? " paged" + std::to_string(c.page) : " contig")
    << (c.special == SparseCase::kNaN   ? " nan keys"
        : c.special == SparseCase::kInf ? " inf keys"
                                        : "");
  return o.str();
}

struct Data {
  std::vector<uint16_t> q16, k16, v16;
  std::vector<float> q, k, v;  // logical [B, Hkv, N, d] for k and v; q [B, q_len, Hq, d]
  std::vector<int> lens, table, idx;
  int max_pages = 0, pages = 0;
};

void fill(std::vector<uint16_t>& bits, std::vector<float>& f, size_t count, ref::Half h, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  bits.resize(count), f.resize(count);
  for (size_t i = 0; i < count; ++i) {
    float x = normal(rng);
    if (x == 0.f) x = 0.5f;
    bits[i] = ref::float_to_half(x, h);
    f[i] = ref::half_to_float(bits[i], h);
  }
}

void run_case(const SparseCase& c, tka_runtime* rt) {
  SCOPED_TRACE(describe(c));
  const ref::Half half = c.dtype == TKA_DTYPE_BF16 ? ref::Half::kBF16 : ref::Half::kFP16;
  std::mt19937 rng(17 + c.n + c.width);
  Data x;
  const int hsel = c.per_group ? c.hkv : c.hq;
  fill(x.q16, x.q, static_cast<size_t>(c.batch) * c.q_len * c.hq * c.d, half, rng);
  fill(x.k16, x.k, static_cast<size_t>(c.batch) * c.hkv * c.n * c.d, half, rng);
  if (!c.shared) fill(x.v16, x.v, static_cast<size_t>(c.batch) * c.hkv * c.n * c.dv, half, rng);
  if (c.special != SparseCase::kNone) {
    const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
    std::uniform_int_distribution<int> key(0, c.n - 1), elem(c.shared ? c.dv : 0, c.d - 1);
    for (int t = 0; t < std::max(1, c.n / c.width); ++t)
      for (int h = 0; h < c.hkv; ++h) {
        const size_t at = (static_cast<size_t>(h) * c.n + key(rng)) * c.d + elem(rng);  // sequence 0
        x.k16[at] = ref::float_to_half(c.special == SparseCase::kNaN ? nan : (t + h) % 2 ? -inf : inf, half);
        x.k[at] = ref::half_to_float(x.k16[at], half);
      }
  }
  std::uniform_int_distribution<int> len(c.n / 2, c.n);
  for (int b = 0; b < c.batch; ++b) x.lens.push_back(b == 0 ? c.n : len(rng));
  if (c.bad_len) x.lens[c.batch - 1] = c.n + 1;
  if (c.zero_len) x.lens[1] = 0;
  // Index lists: distinct valid keys, some -1, some past the visible length.
  std::uniform_int_distribution<int> any(0, c.n + 50), pick(0, 9);
  for (int b = 0; b < c.batch; ++b)
    for (int j = 0; j < c.q_len; ++j)
      for (int h = 0; h < hsel; ++h) {
        std::vector<int> perm(static_cast<size_t>(c.n));
        std::iota(perm.begin(), perm.end(), 0);
        std::shuffle(perm.begin(), perm.end(), rng);
        for (int w = 0; w < c.width; ++w) {
          int i = w < c.n ? perm[w] : -1;
          const int r = pick(rng);
          if (r == 0) i = -1;
          if (r == 1) i = any(rng);  // may be past the end (skipped) or a duplicate (counted)
          if (c.empty_row && b == 0 && h == 0) i = -1;
          if (c.bad_page && b == c.batch - 1 && w == 0) i = 0;  // every list touches the bad page
          x.idx.push_back(i);
        }
      }

  // Device layout.
  const size_t es = 2;
  std::vector<uint16_t> kdev, vdev;
  std::vector<int64_t> k_shape, v_shape;
  if (c.page) {
    x.max_pages = (c.n + c.page - 1) / c.page;
    x.pages = c.batch * x.max_pages + 3;
    std::vector<int> order(static_cast<size_t>(x.pages));
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    x.table.assign(order.begin(), order.begin() + static_cast<long>(c.batch) * x.max_pages);
    if (c.bad_page) x.table[static_cast<size_t>(c.batch - 1) * x.max_pages] = x.pages + 5;
    const auto place = [&](const std::vector<uint16_t>& logical, int dim, std::vector<uint16_t>& dev) {
      dev.assign(static_cast<size_t>(x.pages) * c.page * c.hkv * dim, 0xffff);  // NaN: unused slots
      for (int b = 0; b < c.batch; ++b)
        for (int h = 0; h < c.hkv; ++h)
          for (int i = 0; i < c.n; ++i) {
            const int page = x.table[static_cast<size_t>(b) * x.max_pages + i / c.page];
            if (page >= x.pages) continue;
            const size_t dst = ((static_cast<size_t>(page) * c.page + i % c.page) * c.hkv + h) * dim;
            const size_t src = ((static_cast<size_t>(b) * c.hkv + h) * c.n + i) * dim;
            std::copy(logical.begin() + src, logical.begin() + src + dim, dev.begin() + dst);
          }
    };
    place(x.k16, c.d, kdev);
    if (!c.shared) place(x.v16, c.dv, vdev);
    k_shape = {x.pages, c.page, c.hkv, c.d};
    v_shape = {x.pages, c.page, c.hkv, c.dv};
  } else {
    kdev = x.k16, vdev = x.v16;
    k_shape = {c.batch, c.hkv, c.n, c.d};
    v_shape = {c.batch, c.hkv, c.n, c.dv};
  }

  tka_op_desc desc;
  tka_op_desc_init(&desc, TKA_OP_SPARSE_ATTENTION);
  tka_sparse_desc& s = desc.sparse;
  s.dtype = c.dtype;
  s.num_q_heads = c.hq, s.num_kv_heads = c.hkv, s.head_dim = c.d, s.head_dim_v = c.dv;
  s.shared_kv = c.shared, s.q_len = c.q_len, s.index_width = c.width;
  s.select = c.per_group ? TKA_SELECT_PER_GROUP : TKA_SELECT_PER_HEAD;
  s.kv_layout = c.page ? TKA_KV_PAGED : TKA_KV_CONTIGUOUS;
  s.page_size = c.page;
  s.max_batch = c.batch;
  tka_plan* raw = nullptr;
  tka_ok(tka_plan_create(rt, &desc, &raw), "tka_plan_create");
  PlanPtr plan(raw);
  // The head tile the case exercises: up to 16 heads of a list in one CTA, more in tiles of 32 or 64.
  const int list_heads = c.per_group ? c.hq / c.hkv : 1;
  const std::string tile = list_heads > 32   ? "ht=64"
                           : list_heads > 16 ? "ht=32"
                                             : "ht=" + std::to_string(std::min(list_heads, 16));
  EXPECT_NE(std::string(tka_plan_spec(plan.get())).find(";" + tile + ";"), std::string::npos)
      << tka_plan_spec(plan.get());
  size_t ws_bytes = 0;
  tka_ok(tka_plan_workspace_size(plan.get(), &ws_bytes), "workspace");
  DeviceBuffer ws(ws_bytes);
  if (ws_bytes) cuda_ok(cudaMemset(ws.get(), 0xff, ws_bytes), "poison workspace");
  DeviceBuffer dq = DeviceBuffer::from(x.q16), dk = DeviceBuffer::from(kdev);
  DeviceBuffer dv = c.shared ? DeviceBuffer() : DeviceBuffer::from(vdev);
  DeviceBuffer dl = DeviceBuffer::from(x.lens), di = DeviceBuffer::from(x.idx);
  DeviceBuffer dt = DeviceBuffer::from(c.page ? x.table : std::vector<int>{0});
  const size_t out_count = static_cast<size_t>(c.batch) * c.q_len * c.hq;
  DeviceBuffer dout(out_count * c.dv * es), dlse(out_count * 4);
  cuda_ok(cudaMemset(dout.get(), 0x55, dout.bytes()), "poison out");
  cuda_ok(cudaMemset(dlse.get(), 0x55, dlse.bytes()), "poison lse");
  const DLDataType et = dl_half(c.dtype);
  TensorArg tq(dq.get(), et, {c.batch, c.q_len, c.hq, c.d}), tk(dk.get(), et, k_shape), tv(dv.get(), et, v_shape);
  TensorArg tl(dl.get(), dl_i32(), {c.batch}), tt(dt.get(), dl_i32(), {c.batch, std::max(x.max_pages, 1)});
  TensorArg ti(di.get(), dl_i32(), {c.batch, c.q_len, hsel, c.width});
  TensorArg to(dout.get(), et, {c.batch, c.q_len, c.hq, c.dv}), tlse(dlse.get(), dl_f32(), {c.batch, c.q_len, c.hq});
  tka_tensors t;
  tka_tensors_init(&t);
  t.q = tq.get(), t.k_cache = tk.get(), t.v_cache = c.shared ? nullptr : tv.get(), t.seq_lens = tl.get();
  t.block_table = c.page ? tt.get() : nullptr, t.indices = ti.get(), t.out = to.get(), t.lse = tlse.get();
  tka_ok(tka_plan_run(plan.get(), &t, ws.get(), nullptr), "tka_plan_run");
  cuda_ok(cudaDeviceSynchronize(), "sync");
  const std::vector<uint16_t> got = dout.download<uint16_t>();
  const std::vector<float> got_lse = dlse.download<float>();

  const int g = c.hq / c.hkv;
  const double scale = static_cast<double>(1.f / std::sqrt(static_cast<float>(c.d)));
  for (int b = 0; b < c.batch; ++b) {
    const bool bad_seq = (c.bad_len || c.bad_page) && b == c.batch - 1;
    for (int j = 0; j < c.q_len; ++j)
      for (int h = 0; h < c.hq; ++h) {
        const size_t row = (static_cast<size_t>(b) * c.q_len + j) * c.hq + h;
        const int hs = c.per_group ? h / g : h, kvh = h / g;
        const int visible = std::max(0, x.lens[b] - c.q_len + j + 1);
        const int* list = &x.idx[((static_cast<size_t>(b) * c.q_len + j) * hsel + hs) * c.width];
        std::vector<double> s;
        std::vector<int> keys;
        for (int w = 0; w < c.width; ++w) {
          const int i = list[w];
          if (i < 0 || i >= visible) continue;
          double dot = 0;
          for (int e = 0; e < c.d; ++e)
            dot += double(x.q[row * c.d + e]) * x.k[((static_cast<size_t>(b) * c.hkv + kvh) * c.n + i) * c.d + e];
          s.push_back(scale * dot);
          keys.push_back(i);
        }
        std::vector<double> o(static_cast<size_t>(c.dv), 0.0);
        double lse = -std::numeric_limits<double>::infinity();
        // A NaN or +inf score makes the softmax NaN (inf - inf), as IEEE arithmetic does.
        const bool nan_row = std::any_of(s.begin(), s.end(), [](double v) { return std::isnan(v) || v == HUGE_VAL; });
        if (nan_row) {
          for (int e = 0; e < c.dv; ++e)
            EXPECT_TRUE(std::isnan(ref::half_to_float(got[row * c.dv + e], half)))
                << "row " << row << " dim " << e << ": expected NaN (a NaN or +inf score)";
          EXPECT_TRUE(std::isnan(got_lse[row])) << "row " << row << ": expected NaN lse (a NaN or +inf score)";
          continue;
        }
        if (!s.empty()) {
          const double m = *std::max_element(s.begin(), s.end());
          double z = 0;
          for (double v : s) z += std::exp(v - m);
          for (size_t a = 0; a < s.size(); ++a) {
            const double p = std::exp(s[a] - m) / z;
            const size_t base = (static_cast<size_t>(b) * c.hkv + kvh) * c.n + keys[a];
            for (int e = 0; e < c.dv; ++e) o[e] += p * (c.shared ? x.k[base * c.d + e] : x.v[base * c.dv + e]);
          }
          lse = m + std::log(z);
        }
        double err = 0, norm = 0;
        for (int e = 0; e < c.dv; ++e) {
          const float v = ref::half_to_float(got[row * c.dv + e], half);
          if (bad_seq) {
            ASSERT_TRUE(std::isnan(v)) << "row " << row << " dim " << e << ": expected NaN";
            continue;
          }
          ASSERT_TRUE(std::isfinite(v)) << "row " << row << " dim " << e << " = " << v;
          err += (v - o[e]) * (v - o[e]);
          norm += o[e] * o[e];
        }
        if (bad_seq) {
          EXPECT_TRUE(std::isnan(got_lse[row])) << "row " << row;
          continue;
        }
        if (s.empty()) {
          EXPECT_EQ(err, 0.0) << "row " << row << ": no valid index must give 0";  // the reference is 0
          EXPECT_EQ(got_lse[row], -std::numeric_limits<float>::infinity()) << "row " << row;
        } else {
          EXPECT_LT(std::sqrt(err / norm), 1e-2) << "row " << row;
          EXPECT_NEAR(got_lse[row], lse, 1e-3 * std::max(1.0, std::fabs(lse))) << "row " << row;
        }
      }
  }
}

std::vector<SparseCase> cases() {
  std::vector<SparseCase> v;
  v.push_back({"gqa head"});
  v.push_back({"gqa group fp16 d64 q2", TKA_DTYPE_FP16, 2, 8, 2, 64, 64, 2, 3000, 700, true});
  v.push_back({"d256 paged16", TKA_DTYPE_BF16, 3, 4, 4, 256, 256, 1, 1000, 300, false, false, 16});
  v.push_back({"mla paged64", TKA_DTYPE_BF16, 3, 16, 1, 576, 512, 1, 5000, 2048, true, true, 64});
  v.push_back({"mla 128 heads", TKA_DTYPE_BF16, 1, 128, 1, 576, 512, 1, 3000, 512, true, true});
  // More than 16 heads on a list: tiles of 64 heads (eight warps) or 32, partial tiles padded.
  SparseCase mla64{"mla 64 heads paged16 q2 fp16", TKA_DTYPE_FP16, 2, 64, 1, 576, 512, 2, 1500, 700, true, true, 16};
  mla64.bad_page = true;
  v.push_back(mla64);
  SparseCase g48{"group 48 tile 64", TKA_DTYPE_BF16, 3, 96, 2, 128, 128, 1, 800, 300, true};
  g48.empty_row = true;
  v.push_back(g48);
  SparseCase g24{"group 24 d256 tile 32", TKA_DTYPE_BF16, 2, 24, 1, 256, 256, 1, 1000, 500, true};
  g24.bad_len = true;
  v.push_back(g24);
  v.push_back({"group 32 d64 fp16 tile 32", TKA_DTYPE_FP16, 2, 64, 2, 64, 64, 1, 2000, 1024, true});
  v.push_back({"group 64 many rows one split", TKA_DTYPE_BF16, 80, 128, 2, 128, 128, 1, 300, 64, true});
  v.push_back({"width 1", TKA_DTYPE_BF16, 4, 8, 8, 128, 128, 1, 100, 1});
  v.push_back({"many rows one split", TKA_DTYPE_BF16, 64, 8, 2, 128, 128, 1, 500, 64, true});
  SparseCase empty{"empty row and bad length", TKA_DTYPE_BF16, 3, 8, 2, 128, 128, 1, 800, 256};
  empty.empty_row = true, empty.bad_len = true;
  v.push_back(empty);
  // Lists wider than the visible keys and an empty sequence: at batch 3 every list splits, so
  // splits with no valid entry merge with the others (and a whole sequence's do).
  SparseCase wide{"width over len zero len", TKA_DTYPE_BF16, 3, 8, 2, 128, 128, 2, 100, 2048};
  wide.zero_len = true;
  v.push_back(wide);
  SparseCase mla_short{"mla width 1 zero len", TKA_DTYPE_BF16, 2, 128, 1, 576, 512, 1, 300, 1, true, true};
  mla_short.zero_len = true;
  v.push_back(mla_short);
  SparseCase nan_keys{"nan keys split", TKA_DTYPE_BF16, 2, 8, 2, 128, 128, 1, 3000, 512};
  nan_keys.special = SparseCase::kNaN;
  v.push_back(nan_keys);
  SparseCase inf_keys{
      "inf keys group paged16 fp16 q2", TKA_DTYPE_FP16, 2, 8, 2, 128, 128, 2, 2000, 400, true, false, 16};
  inf_keys.special = SparseCase::kInf;
  v.push_back(inf_keys);
  SparseCase inf_mla{"inf keys mla 64 heads", TKA_DTYPE_BF16, 2, 64, 1, 576, 512, 1, 1500, 300, true, true};
  inf_mla.special = SparseCase::kInf;
  v.push_back(inf_mla);
  SparseCase nan_many{"nan keys many rows one split", TKA_DTYPE_BF16, 64, 8, 2, 128, 128, 1, 500, 64, true};
  nan_many.special = SparseCase::kNaN;
  v.push_back(nan_many);
  SparseCase pool{"page outside the pool", TKA_DTYPE_FP16, 2, 8, 2, 128, 128, 1, 600, 256, true, false, 32};
  pool.bad_page = true;
  v.push_back(pool);
  return v;
}

class SparseMatrix : public ::testing::TestWithParam<SparseCase> {};

TEST_P(SparseMatrix, MatchesFp64Reference) {
  TKA_SKIP_WITHOUT_GPU();
  const RuntimePtr rt = default_runtime();
  run_case(GetParam(), rt.get());
}

INSTANTIATE_TEST_SUITE_P(Cases, SparseMatrix, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<SparseCase>& info) {
                           std::string out;
                           for (char ch : info.param.tag)
                             out += std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
                           return out;
                         });

}  // namespace
