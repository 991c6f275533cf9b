// Exact top-k decode on the GPU, through the public C API only, against the fp64 reference
// (tests/reference/decode_reference.h). Without a GPU every test here reports itself skipped.
//
// How a case is checked:
// - every output buffer is poisoned before each run, once with 0xFF bytes (NaN in bf16, fp16 and
//   fp32: an element the kernel forgets to write fails "finite where finite is expected") and
//   once with 0x55 bytes (finite, and not -1 as an index: a forgotten NaN or -1 padding fails);
//   the workspace gets the same bytes (a buffer a kernel reads before anything wrote it fails);
// - cache slots that no query may see (past a sequence's length, row padding, unused pages, the
//   extra cache batch entry) hold NaN, so a masked key or a padding element that leaks into a
//   score or a weighted sum shows up as NaN;
// - outputs are compared per (b, j, h) row by relative L2 error, NaN is required exactly where
//   the contract makes it, and indices are compared as sets under judge_selection's rules.
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <iomanip>
#include <limits>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "autotune/decode_heuristic.h"
#include "autotune/decode_space.h"
#include "autotune/tuning_db.h"
#include "codegen/decode_spec.h"
#include "codegen/render.h"
#include "compile_util.h"
#include "gpu_util.h"
#include "reference/decode_reference.h"
#include "runtime/decode_plan.h"
#include "runtime/runtime.h"
#include "runtime/select_coop.h"
#include "test_util.h"

namespace {

using namespace tka_test;
namespace ref = topkattn_ref;

// ---- cases -----------------------------------------------------------------------------------

enum class Data {
  kNormal,          // q, K, V ~ N(0, 1) rounded to the dtype, never zero; a few duplicated key rows
  kSignOnly,        // q, K in {-1, +1} with a power-of-two scale: fp32 scores are exact, massive ties
  kFewDistinctKeys  // every key row is one of 6 per sequence: every score is tied with hundreds
};

struct BadPage {
  enum Value { kPastEnd, kMinusOne, kHuge };
  int seq;
  int slot;  // block-table column; must hold a visible key
  Value value;
};

struct DecodeCase {
  std::string tag;
  tka_dtype dtype = TKA_DTYPE_BF16;
  int head_dim = 128;
  int num_q_heads = 8;
  int num_kv_heads = 2;
  int q_len = 1;
  int top_k = 64;
  float top_k_ratio = 0.0f;
  int n_sink = 0;
  int n_local = 0;
  tka_select_mode select = TKA_SELECT_PER_HEAD;
  tka_kv_layout layout = TKA_KV_CONTIGUOUS;
  int page_size = 0;
  std::vector<int> seq_lens;
  std::vector<int> alloc_lens;  // keys holding real data per sequence (default seq_lens)
  int max_seq_len = 0;          // 0: the longest allocated sequence
  int max_batch = 0;            // 0: the batch
  int capacity = 0;             // contiguous; 0: the longest allocated sequence + 5
  float scale = 0.0f;
  bool want_lse = true;
  bool want_indices = true;
  bool padded_strides = false;    // contiguous K with padded outer strides (V stays packed)
  bool share_first_page = false;  // paged: sequence 1 starts on sequence 0's first page
  Data data = Data::kNormal;
  double q_gain = 1.0;
  double dup_fraction = 0.02;
  int special_keys = 0;  // K rows with a NaN element (or +-inf: inf_keys), inside special_seq, never forced
  int special_seq = 0;
  bool inf_keys = false;  // the special element is +inf or -inf (alternately) instead of NaN
  int neg_inf_seq = 0, neg_inf_from = 0, neg_inf_count = 0;  // a run of keys scoring -inf for every head
  std::vector<BadPage> bad_pages;
  std::vector<int> nan_seqs;  // sequences whose outputs the contract makes NaN

  explicit DecodeCase(std::string t) : tag(std::move(t)) {}
  // One setter a line: the list of knobs a case can turn.
  // clang-format off
  DecodeCase& fp16() { dtype = TKA_DTYPE_FP16; return *this; }
  DecodeCase& dim(int d) { head_dim = d; return *this; }
  DecodeCase& heads(int hq, int hkv) { num_q_heads = hq; num_kv_heads = hkv; return *this; }
  DecodeCase& tokens(int n) { q_len = n; return *this; }
  DecodeCase& count(int k) { top_k = k; top_k_ratio = 0; return *this; }
  DecodeCase& ratio(float r) { top_k = 0; top_k_ratio = r; return *this; }
  DecodeCase& sink_local(int s, int l) { n_sink = s; n_local = l; return *this; }
  DecodeCase& group() { select = TKA_SELECT_PER_GROUP; return *this; }
  DecodeCase& paged(int ps) { layout = TKA_KV_PAGED; page_size = ps; return *this; }
  DecodeCase& lens(std::vector<int> l) { seq_lens = std::move(l); return *this; }
  DecodeCase& alloc(std::vector<int> l) { alloc_lens = std::move(l); return *this; }
  DecodeCase& max_len(int n) { max_seq_len = n; return *this; }
  DecodeCase& batch_limit(int b) { max_batch = b; return *this; }
  DecodeCase& cap(int c) { capacity = c; return *this; }
  DecodeCase& with_scale(float s) { scale = s; return *this; }
  DecodeCase& outputs(bool lse, bool idx) { want_lse = lse; want_indices = idx; return *this; }
  DecodeCase& padded() { padded_strides = true; return *this; }
  DecodeCase& shared_page() { share_first_page = true; return *this; }
  DecodeCase& sign_only(float s) { data = Data::kSignOnly; scale = s; return *this; }
  DecodeCase& few_distinct() { data = Data::kFewDistinctKeys; return *this; }
  DecodeCase& gain(double g) { q_gain = g; return *this; }
  DecodeCase& nan_in(int seq, int keys) { special_seq = seq; special_keys = keys; return *this; }
  // Scores of +inf or -inf by the sign of the query element: a +inf one ranks above every number
  // and makes its head's output NaN once selected; a -inf one ranks below every number and weighs
  // exactly 0 when selected (per-group selection takes it for the heads where it is +inf).
  DecodeCase& inf_in(int seq, int keys) { nan_in(seq, keys); inf_keys = true; return *this; }
  // Keys [from, from + n) of sequence seq score -inf for every head (K element 0 is -inf, every
  // query's element 0 is 1). With every key selected, whole attention splits hold nothing else:
  // they weigh 0, and the other splits' keys make the output.
  DecodeCase& neg_inf_run(int seq, int from, int n) {
    neg_inf_seq = seq, neg_inf_from = from, neg_inf_count = n;
    return *this;
  }
  DecodeCase& bad_page(int seq, int slot, BadPage::Value v) { bad_pages.push_back({seq, slot, v}); return *this; }
  DecodeCase& expect_nan(std::vector<int> seqs) { nan_seqs = std::move(seqs); return *this; }
  // clang-format on

  int batch() const { return static_cast<int>(seq_lens.size()); }
  bool paged_layout() const { return layout == TKA_KV_PAGED; }
  bool per_group() const { return select == TKA_SELECT_PER_GROUP; }
  const std::vector<int>& allocated() const { return alloc_lens.empty() ? seq_lens : alloc_lens; }
  int longest() const {
    int m = 0;
    for (int n : allocated()) m = std::max(m, n);
    return m;
  }
  int resolved_max_seq_len() const { return max_seq_len ? max_seq_len : std::max(1, longest()); }
  // Fixed per case (so a failure reproduces), different across cases.
  uint64_t seed() const {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char ch : tag) h = (h ^ ch) * 1099511628211ull;
    return h;
  }
  // Relative L2 error per output row: bf16 output rounding alone is up to 2^-9 per element.
  double out_tol() const { return dtype == TKA_DTYPE_BF16 ? 1e-2 : 3e-3; }
  // fp32 scores may reorder keys whose fp64 scores differ by less than this (relative); with
  // sign-only data the fp32 scores are exact, so the order must be too.
  double selection_tol() const { return data == Data::kSignOnly ? 0.0 : 1e-3; }

  std::string describe() const {
    std::ostringstream os;
    os << tag << ": " << (dtype == TKA_DTYPE_BF16 ? "bf16" : "fp16") << " d=" << head_dim << " Hq=" << num_q_heads
       << " Hkv=" << num_kv_heads << " q_len=" << q_len << (per_group() ? " per-group" : " per-head");
    if (paged_layout())
      os << " paged(page_size=" << page_size << (share_first_page ? ", shared page" : "") << ")";
    else
      os << " contiguous(capacity=" << (capacity ? capacity : longest() + 5)
         << (padded_strides ? ", padded K strides" : "") << ")";
    if (top_k)
      os << " top_k=" << top_k;
    else
      os << " ratio=" << top_k_ratio;
    os << " sink=" << n_sink << " local=" << n_local << " lens={";
    for (size_t i = 0; i < seq_lens.size(); ++i) {
      if (i == 16) {
        os << ",...(" << seq_lens.size() << ")";
        break;
      }
      os << (i ? "," : "") << seq_lens[i];
    }
    os << "} max_seq_len=" << resolved_max_seq_len() << " scale=" << scale << " data="
       << (data == Data::kNormal     ? "normal"
           : data == Data::kSignOnly ? "sign-only"
                                     : "few-distinct-keys")
       << " q_gain=" << q_gain << (want_lse ? " +lse" : "") << (want_indices ? " +indices" : "");
    if (special_keys) os << (inf_keys ? " inf_keys=" : " nan_keys=") << special_keys << "@seq" << special_seq;
    if (neg_inf_count)
      os << " neg_inf_keys=[" << neg_inf_from << "," << neg_inf_from + neg_inf_count << ")@seq" << neg_inf_seq;
    for (const BadPage& bp : bad_pages) os << " bad_page(seq " << bp.seq << ", slot " << bp.slot << ")";
    os << " seed=" << seed();
    return os.str();
  }
};

void PrintTo(const DecodeCase& c, std::ostream* os) { *os << c.describe(); }

std::vector<int> many_lens() {
  std::vector<int> l(64);
  for (int i = 0; i < 64; ++i) l[i] = (i * 7919 + 13) % 2999 + 1;
  l[5] = 0;
  l[17] = 1;
  return l;
}

const std::vector<int> kMixed = {0, 1, 37, 1000, 4099};

std::vector<DecodeCase> decode_cases() {
  // One case a line or a few: the list reads as the matrix it is.
  // clang-format off
  return {
      DecodeCase("bf16_d128_g4_contig_head_k64").lens(kMixed),
      DecodeCase("fp16_d128_g4_contig_group_k64").fp16().group().lens(kMixed),
      DecodeCase("bf16_d64_g1_paged16_head_q2_sinklocal_sharedpage")
          .dim(64).heads(2, 2).tokens(2).count(16).sink_local(4, 8).paged(16).shared_page()
          .lens({1, 37, 1000, 17, 0}),
      DecodeCase("fp16_d64_g16_paged64_group_q16_ratio")
          .fp16().dim(64).heads(16, 1).tokens(16).ratio(0.25f).group().paged(64)
          .lens({37, 1000, 0, 4099, 5}),
      DecodeCase("bf16_d256_g8_paged256_head_k256_nolse")
          .dim(256).heads(16, 2).count(256).sink_local(2, 30).paged(256).outputs(false, true)
          .lens({4099, 1000, 37, 1, 0, 300}),
      DecodeCase("fp16_d256_g4_contig_padded_group_q2_ratio_noidx")
          .fp16().dim(256).heads(4, 1).tokens(2).ratio(0.125f).group().padded().outputs(true, false)
          .lens({1000, 37, 4099, 2}),
      DecodeCase("bf16_d64_g16_kv2_contig_group_k1").dim(64).heads(32, 2).count(1).group().lens(kMixed),
      DecodeCase("bf16_d128_g1_contig_head_q16_k_eq_n").heads(2, 2).tokens(16).count(1000)
          .lens({1000, 999, 37, 0, 1}),
      DecodeCase("fp16_d128_g4_paged16_head_k_gt_n").fp16().heads(4, 1).count(5000).paged(16)
          .lens({1, 37, 1000, 4099}),
      DecodeCase("bf16_d128_g4_paged64_head_k8192_n20000").heads(4, 1).count(8192).paged(64)
          .lens({20000, 19999}),
      DecodeCase("fp16_d128_g8_contig_group_q2_k8192_n20011").fp16().heads(8, 1).tokens(2).count(8192)
          .group().lens({20011}),
      DecodeCase("bf16_d128_g4_contig_head_q2_ratio1_full").tokens(2).ratio(1.0f).lens(kMixed),
      // 0.1f is 0.100000001490116...: ceil in double gives 101 of 1000, not the 100 that float gives.
      DecodeCase("bf16_d64_g1_contig_head_ratio_inexact").dim(64).heads(4, 4).ratio(0.1f)
          .lens({10, 1000, 4099, 37}),
      DecodeCase("bf16_d128_g4_contig_head_only_forced").count(64).sink_local(16, 48)
          .lens({0, 1, 37, 63, 64, 65, 1000}),
      DecodeCase("fp16_d128_g4_paged16_group_q2_forced_over_ratio")
          .fp16().tokens(2).ratio(0.0625f).sink_local(32, 32).group().paged(16)
          .lens({40, 100, 1000, 4099}),
      DecodeCase("bf16_d128_g4_contig_head_nan_keys").count(16).lens({37, 1000, 4099}).nan_in(1, 20),
      DecodeCase("fp16_d64_g8_paged16_group_q2_nan_keys")
          .fp16().dim(64).heads(8, 1).tokens(2).count(32).group().paged(16).lens({1000, 37})
          .nan_in(0, 24),
      DecodeCase("bf16_d128_g4_contig_head_inf_keys").count(16).lens({37, 1000, 4099}).inf_in(1, 6),
      DecodeCase("fp16_d64_g8_paged16_group_q2_inf_keys")
          .fp16().dim(64).heads(8, 1).tokens(2).count(32).group().paged(16).lens({1000, 37}).inf_in(0, 8),
      DecodeCase("bf16_d128_g4_contig_group_ratio1_one_inf_key").heads(8, 2).ratio(1.0f).group()
          .lens({37, 500}).inf_in(1, 1),
      DecodeCase("fp16_d128_g8_contig_group_q2_split_inf_keys").fp16().heads(8, 1).tokens(2).count(8).group()
          .lens({30001, 17}).inf_in(0, 10),
      // Keys [0, 3000) of 4000 score -inf: the plan splits 4000 selected keys in at least two (an
      // attend chunk is at most 2048), so its first split lies inside the run whatever its length.
      DecodeCase("bf16_d128_g4_contig_head_ratio1_neg_inf_splits").heads(4, 1).ratio(1.0f).lens({4000, 37})
          .neg_inf_run(0, 0, 3000),
      DecodeCase("bf16_d128_g4_contig_head_ties").few_distinct().count(100).lens({37, 1000, 4099}),
      DecodeCase("fp16_d128_g4_paged64_group_q2_ties")
          .fp16().few_distinct().tokens(2).count(100).sink_local(3, 5).group().paged(64)
          .lens({1000, 4099, 37}),
      DecodeCase("bf16_d128_g4_contig_head_lowcontrast").heads(4, 1).sign_only(0.0625f).count(1000)
          .lens({4099, 1000, 37}),
      DecodeCase("bf16_d64_g8_paged16_group_q16_lowcontrast")
          .dim(64).heads(8, 1).tokens(16).sign_only(0.125f).count(256).group().paged(16)
          .lens({4099, 300}),
      DecodeCase("fp16_d256_g4_contig_head_lowcontrast_ratio")
          .fp16().dim(256).heads(4, 1).sign_only(0.03125f).ratio(0.5f).lens({1000, 4099}),
      DecodeCase("bf16_d128_g4_contig_head_longer_than_max_seq_len").max_len(512).cap(1024)
          .lens({100, 600, 512, 0}).expect_nan({1}),
      DecodeCase("fp16_d64_g4_contig_head_longer_than_capacity").fp16().dim(64).cap(256).max_len(1024)
          .lens({300, 256, 10}).expect_nan({0}),
      DecodeCase("bf16_d128_g4_contig_head_q16_short_seqs_scale")
          .tokens(16).count(8).sink_local(1, 2).with_scale(0.05f).lens({5, 16, 17, 0, 100}),
      DecodeCase("bf16_d128_g8_paged256_group_b1_n100003").heads(8, 1).count(2048).group().paged(256)
          .max_len(131072).lens({100003}),
      // The split selection (rows fewer than SMs, long rows) at its edges: rows that keep every
      // key (k = N, k > N), empty and one-key rows, k = N - 1, forced sink and local keys; k = 1
      // with NaN keys; every score tied with hundreds of others.
      DecodeCase("bf16_d128_g4_paged64_head_split_short").heads(4, 1).count(8192).sink_local(4, 16).paged(64)
          .lens({20000, 0, 1, 37, 8191, 8192, 8193}),
      DecodeCase("fp16_d128_g8_contig_group_q2_split_k1_nan").fp16().heads(8, 1).tokens(2).count(1).group()
          .lens({30001, 17, 0}).nan_in(0, 40),
      DecodeCase("bf16_d128_g4_contig_head_split_ties").heads(4, 1).few_distinct().count(2048).lens({20011, 4099}),
      DecodeCase("fp16_d128_g4_contig_head_b64_many_rows").fp16().count(128).batch_limit(80)
          .lens(many_lens()),
      DecodeCase("bf16_d256_g4_contig_head_peaky_no_outputs").dim(256).heads(8, 2).count(32).gain(3.0)
          .outputs(false, false).lens(kMixed),
      DecodeCase("fp16_d64_g4_paged256_group_q2_ratio_no_outputs")
          .fp16().dim(64).tokens(2).ratio(0.5f).group().paged(256).outputs(false, false).lens(kMixed),
      // Rows as many as SMs and long: one CTA per row reads the scores once (sampled threshold);
      // low-contrast scores make the sample miss and take the two-pass path.
      DecodeCase("bf16_d128_g4_contig_head_q2_one_read").heads(16, 4).tokens(2).count(512)
          .lens({40000, 33001, 17000, 50, 20000}),
      DecodeCase("fp16_d128_g4_contig_group_q4_one_read_lowcontrast")
          .fp16().heads(32, 8).tokens(4).sign_only(0.0625f).count(256).group()
          .lens({30011, 20000, 16400, 5, 100}),
      DecodeCase("bf16_d128_g16_kv2_paged16_group_q16_sinklocal")
          .heads(32, 2).tokens(16).count(512).sink_local(4, 64).group().paged(16)
          .lens({4099, 1000, 0, 37}),
  };
  // clang-format on
}

// ---- inputs ----------------------------------------------------------------------------------

struct DecodeInputs {
  ref::Half half = ref::Half::kBF16;
  int batch = 0;
  int num_pages = 0, max_pages = 0;
  int64_t cache_dim0 = 0, capacity = 0;
  std::vector<int64_t> k_shape, k_strides, v_shape, v_strides;
  std::vector<uint16_t> q_bits, k_bits, v_bits;  // as sent to the device
  std::vector<float> q, k, v;                    // the same values, for the reference
  std::vector<int32_t> seq_lens, block_table;
  std::vector<int> stored;                  // keys per sequence that exist in the cache
  std::vector<std::vector<int>> key_class;  // [b * Hkv + kvh][i]: lowest identical key row

  int64_t offset(const std::vector<int64_t>& st, int b, int kvh, int i, int page_size) const {
    if (page_size == 0) return b * st[0] + kvh * st[1] + static_cast<int64_t>(i) * st[2];
    const int64_t page = block_table[static_cast<size_t>(b) * max_pages + i / page_size];
    return page * st[0] + (i % page_size) * st[1] + kvh * st[2];
  }

  ref::DecodeProblem problem(const DecodeCase& c) const {
    ref::DecodeProblem p;
    p.num_q_heads = c.num_q_heads;
    p.num_kv_heads = c.num_kv_heads;
    p.head_dim = c.head_dim;
    p.q_len = c.q_len;
    p.top_k = c.top_k;
    p.top_k_ratio = c.top_k_ratio;
    p.n_sink = c.n_sink;
    p.n_local = c.n_local;
    p.per_group = c.per_group();
    p.paged = c.paged_layout();
    p.page_size = c.page_size;
    p.max_seq_len = c.resolved_max_seq_len();
    p.scale = c.scale;
    p.batch = batch;
    p.q = q.data();
    p.k = k.data();
    p.v = v.data();
    p.cache_dim0 = cache_dim0;
    p.capacity = capacity;
    for (int x = 0; x < 3; ++x) {
      p.k_strides[x] = k_strides[x];
      p.v_strides[x] = v_strides[x];
    }
    p.seq_lens = seq_lens.data();
    p.block_table = block_table.empty() ? nullptr : block_table.data();
    p.max_pages = max_pages;
    return p;
  }
};

class Rng {
 public:
  explicit Rng(uint64_t seed) : gen_(seed) {}
  // Never zero: a zero hides a missing term in a dot product or a weighted sum.
  uint16_t normal(ref::Half h, double gain) {
    for (;;) {
      const uint16_t b = ref::float_to_half(static_cast<float>(normal_(gen_) * gain), h);
      if ((b & 0x7fffu) != 0) return b;
    }
  }
  uint16_t sign(ref::Half h) { return ref::float_to_half((gen_() & 1) ? 1.0f : -1.0f, h); }
  int below(int n) { return static_cast<int>(gen_() % static_cast<uint64_t>(n)); }
  std::mt19937_64& gen() { return gen_; }

 private:
  std::mt19937_64 gen_;
  std::normal_distribution<double> normal_{0.0, 1.0};
};

uint16_t nan_bits(ref::Half h) { return ref::float_to_half(std::numeric_limits<float>::quiet_NaN(), h); }

void put(std::vector<uint16_t>& bits, std::vector<float>& f, int64_t at, uint16_t b, ref::Half h) {
  bits[at] = b;
  f[at] = ref::half_to_float(b, h);
}

int64_t span_of(const std::vector<int64_t>& shape, const std::vector<int64_t>& strides) {
  int64_t last = 0;
  for (size_t x = 0; x < shape.size(); ++x) last += (shape[x] - 1) * strides[x];
  return last + 1;
}

DecodeInputs make_inputs(const DecodeCase& c, uint64_t seed) {
  DecodeInputs in;
  Rng rng(seed);
  const ref::Half h = c.dtype == TKA_DTYPE_BF16 ? ref::Half::kBF16 : ref::Half::kFP16;
  const int B = c.batch(), d = c.head_dim, hkv = c.num_kv_heads;
  const std::vector<int>& alloc = c.allocated();
  if (alloc.size() != c.seq_lens.size()) throw std::runtime_error("alloc_lens and seq_lens differ in size");
  in.half = h;
  in.batch = B;
  in.seq_lens.assign(c.seq_lens.begin(), c.seq_lens.end());

  const int ps = c.paged_layout() ? c.page_size : 0;
  if (!c.paged_layout()) {
    in.capacity = c.capacity ? c.capacity : c.longest() + 5;  // odd: no tile divides it
    in.cache_dim0 = B + 1;                                    // "[>= B, ...]"
    in.k_shape = {B + 1, hkv, in.capacity, d};
    in.v_shape = in.k_shape;
    in.v_strides = row_major_strides(in.v_shape);
    if (c.padded_strides) {
      const int64_t row = d + 8, head = in.capacity * row + 24, bat = hkv * head + 40;
      in.k_strides = {bat, head, row, 1};
    } else {
      in.k_strides = in.v_strides;
    }
    for (int b = 0; b < B; ++b) in.stored.push_back(std::min<int>(alloc[b], static_cast<int>(in.capacity)));
  } else {
    std::vector<int> pages(B);
    int total = 0, widest = 0;
    for (int b = 0; b < B; ++b) {
      pages[b] = (alloc[b] + ps - 1) / ps;
      total += pages[b];
      widest = std::max(widest, pages[b]);
    }
    const bool share = c.share_first_page && B >= 2 && pages[0] > 0 && pages[1] > 0;
    in.num_pages = total - (share ? 1 : 0) + 3;  // spare pages stay NaN
    in.max_pages = widest + 1;                   // a column no sequence uses
    std::vector<int> order(in.num_pages);
    for (int i = 0; i < in.num_pages; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), rng.gen());
    // Entries no visible key uses must be ignored, whatever they hold.
    const int32_t garbage[] = {-1, in.num_pages, INT32_MAX, in.num_pages + 1000, INT32_MIN};
    in.block_table.resize(static_cast<size_t>(B) * in.max_pages);
    for (size_t i = 0; i < in.block_table.size(); ++i) in.block_table[i] = garbage[i % 5];
    int next = 0;
    for (int b = 0; b < B; ++b)
      for (int s = 0; s < pages[b]; ++s)
        in.block_table[static_cast<size_t>(b) * in.max_pages + s] =
            (share && b == 1 && s == 0) ? in.block_table[0] : order[next++];
    in.cache_dim0 = in.num_pages;
    in.k_shape = {in.num_pages, ps, hkv, d};
    in.v_shape = in.k_shape;
    in.k_strides = row_major_strides(in.k_shape);
    in.v_strides = in.k_strides;
    in.stored = alloc;
  }

  in.q_bits.resize(static_cast<size_t>(B) * c.q_len * c.num_q_heads * d);
  in.q.resize(in.q_bits.size());
  for (size_t i = 0; i < in.q_bits.size(); ++i)
    put(in.q_bits, in.q, static_cast<int64_t>(i), c.data == Data::kSignOnly ? rng.sign(h) : rng.normal(h, c.q_gain), h);

  const int64_t k_span = span_of(in.k_shape, in.k_strides), v_span = span_of(in.v_shape, in.v_strides);
  in.k_bits.assign(k_span, nan_bits(h));
  in.k.assign(k_span, std::numeric_limits<float>::quiet_NaN());
  in.v_bits.assign(v_span, nan_bits(h));
  in.v.assign(v_span, std::numeric_limits<float>::quiet_NaN());
  auto koff = [&](int b, int kvh, int i) { return in.offset(in.k_strides, b, kvh, i, ps); };
  auto voff = [&](int b, int kvh, int i) { return in.offset(in.v_strides, b, kvh, i, ps); };

  for (int b = 0; b < B; ++b) {
    std::vector<uint16_t> classes;  // few-distinct-keys: 6 rows of [hkv, d]
    if (c.data == Data::kFewDistinctKeys)
      for (int x = 0; x < 6 * hkv * d; ++x) classes.push_back(rng.normal(h, 1.0));
    for (int i = 0; i < in.stored[b]; ++i) {
      const int cls = c.data == Data::kFewDistinctKeys ? rng.below(6) : 0;
      for (int kvh = 0; kvh < hkv; ++kvh) {
        const int64_t ko = koff(b, kvh, i), vo = voff(b, kvh, i);
        for (int x = 0; x < d; ++x) {
          const uint16_t kb = c.data == Data::kSignOnly ? rng.sign(h)
                              : c.data == Data::kFewDistinctKeys
                                  ? classes[(static_cast<size_t>(cls) * hkv + kvh) * d + x]
                                  : rng.normal(h, 1.0);
          put(in.k_bits, in.k, ko + x, kb, h);
          put(in.v_bits, in.v, vo + x, rng.normal(h, 1.0), h);  // V never tied: ties must show
        }
      }
    }
    if (c.data == Data::kNormal && in.stored[b] > 1) {  // exact ties between copied key rows
      const int copies = static_cast<int>(in.stored[b] * c.dup_fraction);
      for (int t = 0; t < copies; ++t) {
        const int dst = 1 + rng.below(in.stored[b] - 1), src = rng.below(dst);
        for (int kvh = 0; kvh < hkv; ++kvh)
          for (int x = 0; x < d; ++x) put(in.k_bits, in.k, koff(b, kvh, dst) + x, in.k_bits[koff(b, kvh, src) + x], h);
      }
    }
  }

  if (c.special_keys > 0) {  // NaN (or infinite) scores, kept clear of every token's sink and local windows
    const int b = c.special_seq, lo = c.n_sink + c.q_len, hi = c.seq_lens[b] - c.n_local - c.q_len;
    if (hi - lo < 2 * c.special_keys) throw std::runtime_error("special keys do not fit outside the forced keys");
    std::vector<int> pos;
    for (int i = lo; i < hi; ++i) pos.push_back(i);
    std::shuffle(pos.begin(), pos.end(), rng.gen());
    for (int t = 0; t < c.special_keys; ++t)
      for (int kvh = 0; kvh < hkv; ++kvh) {
        const float inf = std::numeric_limits<float>::infinity();
        const uint16_t special = c.inf_keys ? ref::float_to_half((t + kvh) % 2 ? -inf : inf, h) : nan_bits(h);
        put(in.k_bits, in.k, koff(b, kvh, pos[t]) + rng.below(d), special, h);
      }
  }

  if (c.neg_inf_count > 0) {
    const int b = c.neg_inf_seq;
    if (c.neg_inf_from + c.neg_inf_count > in.stored[b]) throw std::runtime_error("neg_inf_run past the stored keys");
    const float inf = std::numeric_limits<float>::infinity();
    for (int j = 0; j < c.q_len; ++j)
      for (int hq = 0; hq < c.num_q_heads; ++hq) {
        const int64_t qo = ((static_cast<int64_t>(b) * c.q_len + j) * c.num_q_heads + hq) * d;
        put(in.q_bits, in.q, qo, ref::float_to_half(1.0f, h), h);
      }
    for (int i = c.neg_inf_from; i < c.neg_inf_from + c.neg_inf_count; ++i)
      for (int kvh = 0; kvh < hkv; ++kvh) put(in.k_bits, in.k, koff(b, kvh, i), ref::float_to_half(-inf, h), h);
  }

  // Classes of bitwise-identical key rows, from the data as finally written.
  in.key_class.resize(static_cast<size_t>(B) * hkv);
  for (int b = 0; b < B; ++b)
    for (int kvh = 0; kvh < hkv; ++kvh) {
      std::unordered_map<std::string, int> first;
      std::vector<int>& cls = in.key_class[static_cast<size_t>(b) * hkv + kvh];
      cls.resize(in.stored[b]);
      for (int i = 0; i < in.stored[b]; ++i) {
        const uint16_t* row = in.k_bits.data() + koff(b, kvh, i);
        cls[i] = first.emplace(std::string(reinterpret_cast<const char*>(row), d * sizeof(uint16_t)), i).first->second;
      }
    }

  for (const BadPage& bp : c.bad_pages) {
    if (!c.paged_layout() || bp.slot * c.page_size >= c.seq_lens[bp.seq])
      throw std::runtime_error("a bad page must hold a visible key of a paged cache");
    in.block_table[static_cast<size_t>(bp.seq) * in.max_pages + bp.slot] = bp.value == BadPage::kPastEnd ? in.num_pages
                                                                           : bp.value == BadPage::kMinusOne ? -1
                                                                                                            : INT32_MAX;
  }
  return in;
}

// ---- running on the GPU ----------------------------------------------------------------------

tka_runtime* gpu_runtime() {
  // Leaked on purpose: destroying it from a static destructor could race the library's own
  // teardown at exit.
  static tka_runtime* rt = default_runtime().release();
  return rt;
}

tka_op_desc desc_of(const DecodeCase& c) {
  tka_op_desc desc;
  tka_op_desc_init(&desc, TKA_OP_TOPK_DECODE);
  tka_decode_desc& x = desc.decode;
  x.dtype = c.dtype;
  x.num_q_heads = c.num_q_heads;
  x.num_kv_heads = c.num_kv_heads;
  x.head_dim = c.head_dim;
  x.head_dim_v = 0;
  x.q_len = c.q_len;
  x.top_k = c.top_k;
  x.top_k_ratio = c.top_k_ratio;
  x.n_sink = c.n_sink;
  x.n_local = c.n_local;
  x.select = c.select;
  x.kv_layout = c.layout;
  if (c.paged_layout()) x.page_size = c.page_size;
  x.max_batch = c.max_batch ? c.max_batch : c.batch();
  x.max_seq_len = c.resolved_max_seq_len();
  x.scale = c.scale;
  return desc;
}

PlanPtr make_plan(const DecodeCase& c) {
  const tka_op_desc desc = desc_of(c);
  tka_plan* plan = nullptr;
  tka_ok(tka_plan_create(gpu_runtime(), &desc, &plan), "tka_plan_create");
  return PlanPtr(plan);
}

// Device buffers and tensor descriptions for one case; not movable, since tensors points into it.
struct DeviceCase {
  DeviceBuffer q, k, v, seq_lens, block_table, out, lse, indices, workspace;
  TensorArg tq, tk, tv, tsl, tbt, tout, tlse, tidx;
  tka_tensors tensors{};
  int max_k = 0;
  DeviceCase() = default;
  DeviceCase(const DeviceCase&) = delete;
  DeviceCase& operator=(const DeviceCase&) = delete;
};

std::unique_ptr<DeviceCase> upload(const DecodeCase& c, const DecodeInputs& in, const tka_plan* plan) {
  auto dc = std::make_unique<DeviceCase>();
  const int B = in.batch, sel_heads = c.per_group() ? c.num_kv_heads : c.num_q_heads;
  tka_ok(tka_plan_max_k(plan, &dc->max_k), "tka_plan_max_k");
  size_t ws = 0;
  tka_ok(tka_plan_workspace_size(plan, &ws), "tka_plan_workspace_size");
  dc->workspace = DeviceBuffer(ws);  // cudaMalloc: 256-byte aligned
  const DLDataType half = dl_half(c.dtype);

  dc->q = DeviceBuffer::from(in.q_bits);
  dc->k = DeviceBuffer::from(in.k_bits);
  dc->v = DeviceBuffer::from(in.v_bits);
  dc->seq_lens = DeviceBuffer::from(in.seq_lens);
  dc->tq = TensorArg(dc->q.get(), half, {B, c.q_len, c.num_q_heads, c.head_dim});
  dc->tk = TensorArg(dc->k.get(), half, in.k_shape, in.k_strides);
  dc->tv = TensorArg(dc->v.get(), half, in.v_shape, in.v_strides);
  dc->tsl = TensorArg(dc->seq_lens.get(), dl_i32(), {B});
  dc->out = DeviceBuffer(static_cast<size_t>(B) * c.q_len * c.num_q_heads * c.head_dim * 2);
  dc->tout = TensorArg(dc->out.get(), half, {B, c.q_len, c.num_q_heads, c.head_dim});
  dc->tensors.q = dc->tq.get();
  dc->tensors.k_cache = dc->tk.get();
  dc->tensors.v_cache = dc->tv.get();
  dc->tensors.seq_lens = dc->tsl.get();
  dc->tensors.out = dc->tout.get();
  if (c.paged_layout()) {
    dc->block_table = DeviceBuffer::from(in.block_table);
    dc->tbt = TensorArg(dc->block_table.get(), dl_i32(), {B, in.max_pages});
    dc->tensors.block_table = dc->tbt.get();
  }
  if (c.want_lse) {
    dc->lse = DeviceBuffer(static_cast<size_t>(B) * c.q_len * c.num_q_heads * 4);
    dc->tlse = TensorArg(dc->lse.get(), dl_f32(), {B, c.q_len, c.num_q_heads});
    dc->tensors.lse = dc->tlse.get();
  }
  if (c.want_indices) {
    dc->indices = DeviceBuffer(static_cast<size_t>(B) * c.q_len * sel_heads * dc->max_k * 4);
    dc->tidx = TensorArg(dc->indices.get(), dl_i32(), {B, c.q_len, sel_heads, dc->max_k});
    dc->tensors.indices = dc->tidx.get();
  }
  return dc;
}

// The outputs and the workspace: nothing a run reads may depend on what an earlier run, or
// another plan, left there.
void poison(const DeviceCase& dc, int byte, cudaStream_t s) {
  for (const DeviceBuffer* b : {&dc.out, &dc.lse, &dc.indices, &dc.workspace})
    if (b->get()) cuda_ok(cudaMemsetAsync(b->get(), byte, b->bytes(), s), "cudaMemsetAsync (poison)");
}

void launch(const tka_plan* plan, const DeviceCase& dc, cudaStream_t s) {
  tka_ok(tka_plan_run(plan, &dc.tensors, dc.workspace.get(), reinterpret_cast<tka_stream>(s)), "tka_plan_run");
}

struct GpuOutputs {
  std::vector<float> out, lse;
  std::vector<int32_t> indices;
  int max_k = 0;
};

GpuOutputs download(const DecodeInputs& in, const DeviceCase& dc) {
  GpuOutputs g;
  const std::vector<uint16_t> bits = dc.out.download<uint16_t>();
  g.out.resize(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) g.out[i] = ref::half_to_float(bits[i], in.half);
  if (dc.lse.get()) g.lse = dc.lse.download<float>();
  if (dc.indices.get()) g.indices = dc.indices.download<int32_t>();
  g.max_k = dc.max_k;
  return g;
}

GpuOutputs run_gpu(const DecodeCase& c, const DecodeInputs& in, const tka_plan* plan, int poison_byte) {
  CudaStream stream;
  auto dc = upload(c, in, plan);
  poison(*dc, poison_byte, stream.get());
  launch(plan, *dc, stream.get());
  cuda_ok(cudaStreamSynchronize(stream.get()), "cudaStreamSynchronize after tka_plan_run");
  return download(in, *dc);
}

// ---- checking --------------------------------------------------------------------------------

struct CheckReport {
  size_t rows = 0, failures = 0, near_tie_swaps = 0;
  std::vector<std::string> messages;  // the first few
  void fail(std::string m) {
    ++failures;
    if (messages.size() < 12) messages.push_back(std::move(m));
  }
  bool ok() const { return failures == 0; }
  std::string summary() const {
    std::ostringstream os;
    os << failures << " failures in " << rows << " selection rows (" << near_tie_swaps << " accepted near-tie swaps)";
    for (const std::string& m : messages) os << "\n  " << m;
    return os.str();
  }
};

bool all_nan(const float* x, int n) {
  for (int i = 0; i < n; ++i)
    if (!std::isnan(x[i])) return false;
  return true;
}

// "" when GPU head h of (b, j) matches the expected output over `set`.
std::string compare_head(const DecodeCase& c, const ref::DecodeProblem& p, const ref::DecodeReference& r,
                         const ref::SelectionRow& row, const GpuOutputs& g, int b, int j, int h,
                         const std::vector<int>& set) {
  const int dv = r.head_dim_v;
  std::vector<double> alt(dv);
  double alt_lse = 0;
  const double* want = r.out_row(b, j, h);
  double want_lse = r.lse_at(b, j, h);
  if (set != row.selected) {
    ref::attend(p, b, j, h, set, alt.data(), &alt_lse);
    want = alt.data();
    want_lse = alt_lse;
  }
  const size_t at = (static_cast<size_t>(b) * c.q_len + j) * c.num_q_heads + h;
  const float* got = g.out.data() + at * dv;
  const bool has_lse = !g.lse.empty();
  const float got_lse = has_lse ? g.lse[at] : 0.0f;
  std::ostringstream why;
  why << "head " << h << ": ";
  if (std::isnan(want_lse)) {  // a selected NaN score
    if (!all_nan(got, dv)) return why.str() + "expected NaN output (a selected score is NaN)";
    if (has_lse && !std::isnan(got_lse)) return why.str() + "expected NaN lse";
    return "";
  }
  if (row.n == 0) {
    for (int x = 0; x < dv; ++x)
      if (got[x] != 0.0f) {
        why << "no visible keys: out[" << x << "] = " << got[x] << ", expected 0";
        return why.str();
      }
    if (has_lse && !(std::isinf(got_lse) && got_lse < 0)) {
      why << "no visible keys: lse = " << got_lse << ", expected -inf";
      return why.str();
    }
    return "";
  }
  double err = 0, norm = 0;
  for (int x = 0; x < dv; ++x) {
    if (!std::isfinite(got[x])) {
      why << "out[" << x << "] = " << got[x] << " where " << want[x]
          << " is expected (unused cache slots hold NaN in these tests: a NaN here can be an invisible key or padding "
             "leaking in)";
      return why.str();
    }
    err += (got[x] - want[x]) * (got[x] - want[x]);
    norm += want[x] * want[x];
  }
  const double rel = std::sqrt(err) / std::max(std::sqrt(norm), 1e-6);
  if (rel > c.out_tol()) {
    why << "relative L2 error " << rel << " > " << c.out_tol() << " (|o_ref| = " << std::sqrt(norm)
        << ", out[0] = " << got[0] << " vs " << want[0] << ")";
    return why.str();
  }
  if (has_lse && !(std::abs(got_lse - want_lse) <= 1e-3 * std::max(1.0, std::abs(want_lse)))) {
    why << "lse " << got_lse << ", expected " << want_lse;
    return why.str();
  }
  return "";
}

CheckReport check_against_reference(const DecodeCase& c, const DecodeInputs& in, const ref::DecodeProblem& p,
                                    const ref::DecodeReference& r, const GpuOutputs& g) {
  CheckReport rep;
  const int G = c.num_q_heads / c.num_kv_heads, dv = r.head_dim_v;
  for (int b = 0; b < r.batch; ++b)
    for (int j = 0; j < r.q_len; ++j)
      for (int sh = 0; sh < r.select_heads; ++sh) {
        ++rep.rows;
        const ref::SelectionRow& row = r.row(b, j, sh);
        const int h0 = c.per_group() ? sh * G : sh, h1 = c.per_group() ? h0 + G : h0 + 1;
        const int kvh = c.per_group() ? sh : sh / G;
        std::ostringstream where;
        where << "b=" << b << " j=" << j << (c.per_group() ? " kv_head=" : " head=") << sh << " (N=" << p.seq_lens[b]
              << ", n=" << row.n << ", |S|=" << row.size << "): ";
        if (r.seq_nan[b]) {  // the contract: every output of the sequence is NaN
          for (int h = h0; h < h1; ++h) {
            const size_t at = (static_cast<size_t>(b) * c.q_len + j) * c.num_q_heads + h;
            if (!all_nan(g.out.data() + at * dv, dv))
              rep.fail(where.str() + "expected NaN output for an invalid sequence");
            else if (!g.lse.empty() && !std::isnan(g.lse[at]))
              rep.fail(where.str() + "expected NaN lse for an invalid sequence");
          }
          continue;
        }
        std::vector<int> set = row.selected;
        bool set_from_gpu = false;
        if (c.want_indices) {
          const int32_t* ir =
              g.indices.data() + ((static_cast<size_t>(b) * c.q_len + j) * r.select_heads + sh) * g.max_k;
          int cnt = 0;
          while (cnt < g.max_k && ir[cnt] != -1) ++cnt;
          bool padded = true;
          for (int t = cnt; t < g.max_k; ++t) padded = padded && ir[t] == -1;
          std::vector<int> got(ir, ir + cnt);
          std::sort(got.begin(), got.end());
          const std::vector<int>& cls = in.key_class[static_cast<size_t>(b) * c.num_kv_heads + kvh];
          std::string why = padded ? ref::judge_selection(row, got, c.selection_tol(), cls.data())
                                   : "not -1 after the first " + std::to_string(cnt) + " entries";
          if (!why.empty())
            rep.fail(where.str() + "indices: " + why);
          else {
            set = got;
            set_from_gpu = true;
          }
        }
        auto compare_all = [&](const std::vector<int>& s) {
          for (int h = h0; h < h1; ++h) {
            std::string e = compare_head(c, p, r, row, g, b, j, h, s);
            if (!e.empty()) return e;
          }
          return std::string();
        };
        std::string err = compare_all(set);
        if (!err.empty() && !set_from_gpu) {
          // No indices came back: the GPU may have swapped keys whose scores differ by fp32 noise.
          std::vector<std::vector<int>> alts;
          if (!ref::near_tie_alternatives(row, 1e-4, 256, &alts))
            err += " (too many near-ties to try the alternatives: give this case indices)";
          for (const auto& a : alts)
            if (compare_all(a).empty()) {
              err.clear();
              ++rep.near_tie_swaps;
              break;
            }
        }
        if (!err.empty()) rep.fail(where.str() + err);
      }
  return rep;
}

// The case must mean what it says: NaN exactly on the sequences it names, and the reference
// finite everywhere else (designed NaN keys are never selected).
std::string case_sanity(const DecodeCase& c, const ref::DecodeReference& r) {
  for (int b = 0; b < r.batch; ++b) {
    const bool want = std::count(c.nan_seqs.begin(), c.nan_seqs.end(), b) > 0;
    if (static_cast<bool>(r.seq_nan[b]) != want)
      return "reference NaN for sequence " + std::to_string(b) + " is " + (r.seq_nan[b] ? "true" : "false");
    if (r.seq_nan[b]) continue;
    int nan_heads = 0, finite_heads = 0;
    for (int j = 0; j < r.q_len; ++j)
      for (int h = 0; h < r.num_q_heads; ++h) {
        const bool nan = std::isnan(r.lse_at(b, j, h));
        nan_heads += nan, finite_heads += !nan;
        // NaN keys are placed where no selection reaches them; a selected +inf score is meant
        // to make its head NaN.
        if (nan && !(c.inf_keys && b == c.special_seq))
          return "reference selects a NaN key at b=" + std::to_string(b) + " j=" + std::to_string(j);
      }
    if (c.inf_keys && b == c.special_seq) {
      if (nan_heads == 0) return "no head of the infinite-key sequence selects a +inf score";
      // One infinite key per KV head: its sign differs across the heads that share it, so some
      // heads select it as -inf (weight 0) and stay finite.
      if (c.special_keys == 1 && finite_heads == 0) return "no head of the one-infinite-key sequence stays finite";
    }
  }
  return "";
}

// ---- the tests -------------------------------------------------------------------------------

// The judge itself (host only, runs in CI): fp32 rounding may swap near-tied finite scores, but
// nothing rounds past an infinity, so a set that keeps a finite score over +inf, or -inf over a
// number, or breaks an infinite tie to the higher index, must be refused.
TEST(DecodeJudge, InfiniteScoresAreOrderedExactly) {
  const double inf = std::numeric_limits<double>::infinity();
  ref::SelectionRow row;
  row.n = 6, row.size = 3, row.sink_end = 0, row.local_begin = 6;
  row.key = {1.0, inf, 2.0, -inf, inf, 0.5};
  row.selected = {1, 2, 4};
  EXPECT_EQ(ref::judge_selection(row, {1, 2, 4}, 1e-3, nullptr), "");
  EXPECT_NE(ref::judge_selection(row, {0, 1, 2}, 1e-3, nullptr), "") << "finite 1.0 kept over +inf";
  row.key = {-inf, 1.0, -inf, 3.0, 2.0, -inf};
  row.size = 4, row.selected = {0, 1, 3, 4};
  EXPECT_EQ(ref::judge_selection(row, {0, 1, 3, 4}, 1e-3, nullptr), "");
  EXPECT_NE(ref::judge_selection(row, {1, 2, 3, 4}, 1e-3, nullptr), "") << "-inf tie broken to the higher index";
  row.key = {inf, inf, inf, 1.0, 2.0, 0.0};
  row.size = 2, row.selected = {0, 1};
  EXPECT_NE(ref::judge_selection(row, {0, 2}, 1e-3, nullptr), "") << "+inf tie broken to the higher index";
  std::vector<std::vector<int>> alts;
  EXPECT_TRUE(ref::near_tie_alternatives(row, 1e-3, 100, &alts));
  EXPECT_TRUE(alts.empty()) << "an infinite boundary has no near-tie alternative";
  // A huge finite score elsewhere in the row still widens the tolerance between finite ones; an
  // infinite one must not make every finite swap acceptable.
  row.key = {inf, 1.0, 1.5, 0.0, 0.0, 0.0};
  row.size = 2, row.selected = {0, 2};
  EXPECT_NE(ref::judge_selection(row, {0, 1}, 1e-3, nullptr), "") << "1.0 kept over 1.5";
}

class DecodeMatrix : public ::testing::TestWithParam<DecodeCase> {};

TEST_P(DecodeMatrix, MatchesFp64Reference) {
  TKA_SKIP_WITHOUT_GPU();
  const DecodeCase& c = GetParam();
  SCOPED_TRACE(c.describe());
  const DecodeInputs in = make_inputs(c, c.seed());
  const PlanPtr plan = make_plan(c);
  const ref::DecodeProblem p = in.problem(c);
  const ref::DecodeReference r = ref::reference_decode(p);
  ASSERT_EQ(case_sanity(c, r), "");
  int max_k = 0;
  ASSERT_EQ(tka_plan_max_k(plan.get(), &max_k), TKA_SUCCESS) << tka_last_error();
  EXPECT_EQ(max_k, ref::max_k(p)) << "tka_plan_max_k";
  for (int byte : {0xFF, 0x55}) {
    const GpuOutputs g = run_gpu(c, in, plan.get(), byte);
    const CheckReport rep = check_against_reference(c, in, p, r, g);
    EXPECT_TRUE(rep.ok()) << "outputs poisoned with 0x" << std::hex << byte << std::dec << ": " << rep.summary();
  }
}

// Every case's inputs and fp64 reference, built on the host (in CI): a case whose data breaks
// its own premise (a NaN key selected where none should be, an infinite-key sequence without a
// NaN head, a contract-NaN sequence that is not) fails here rather than on the GPU.
TEST(DecodeCases, EveryCaseMeetsItsPremiseOnTheHost) {
  for (const DecodeCase& c : decode_cases()) {
    const DecodeInputs in = make_inputs(c, c.seed());
    EXPECT_EQ(case_sanity(c, ref::reference_decode(in.problem(c))), "") << c.describe();
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, DecodeMatrix, ::testing::ValuesIn(decode_cases()),
                         [](const ::testing::TestParamInfo<DecodeCase>& info) { return info.param.tag; });

// seq_lens is read on the device: a graph captured once must follow new lengths on replay.
TEST(DecodeGpu, GraphReplayFollowsNewSeqLens) {
  TKA_SKIP_WITHOUT_GPU();
  const std::vector<int32_t> first = {37, 1000, 0, 4099}, second = {4099, 1, 37, 1000};
  const DecodeCase c = DecodeCase("graph_replay")
                           .tokens(2)
                           .ratio(0.25f)
                           .sink_local(4, 16)
                           .group()
                           .paged(64)
                           .lens(first)
                           .alloc({4099, 1000, 37, 4099});
  SCOPED_TRACE(c.describe());
  const DecodeInputs in = make_inputs(c, c.seed());
  const PlanPtr plan = make_plan(c);
  auto dc = upload(c, in, plan.get());
  CudaStream stream;

  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeGlobal), cudaSuccess);
  const tka_status st = tka_plan_run(plan.get(), &dc->tensors, dc->workspace.get(), stream.tka());
  const std::string run_error = tka_last_error();
  const cudaError_t end = cudaStreamEndCapture(stream.get(), &graph);
  ASSERT_EQ(st, TKA_SUCCESS) << "tka_plan_run during capture: " << run_error;
  ASSERT_EQ(end, cudaSuccess) << "capture: " << cudaGetErrorString(end);
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);

  ref::DecodeProblem p = in.problem(c);
  for (const std::vector<int32_t>* lens : {&first, &second}) {
    SCOPED_TRACE(lens == &first ? "replay with the captured lengths" : "replay after changing seq_lens");
    cuda_ok(cudaMemcpyAsync(dc->seq_lens.get(), lens->data(), lens->size() * 4, cudaMemcpyHostToDevice, stream.get()),
            "cudaMemcpyAsync seq_lens");
    poison(*dc, lens == &first ? 0xFF : 0x55, stream.get());
    ASSERT_EQ(cudaGraphLaunch(exec, stream.get()), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream.get()), cudaSuccess);
    p.seq_lens = lens->data();
    const ref::DecodeReference r = ref::reference_decode(p);
    const CheckReport rep = check_against_reference(c, in, p, r, download(in, *dc));
    EXPECT_TRUE(rep.ok()) << rep.summary();
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

// One plan, four threads, each with its own stream, workspace and data, running at once.
TEST(DecodeGpu, FourThreadsShareOnePlan) {
  TKA_SKIP_WITHOUT_GPU();
  const DecodeCase c = DecodeCase("threads").tokens(2).count(100).sink_local(2, 8).paged(16).lens({1000, 37, 4099, 1});
  SCOPED_TRACE(c.describe());
  const PlanPtr plan = make_plan(c);
  constexpr int kThreads = 4, kRuns = 3;
  std::vector<DecodeInputs> ins;
  std::vector<ref::DecodeProblem> probs;
  std::vector<ref::DecodeReference> refs;
  std::vector<std::unique_ptr<DeviceCase>> dcs;
  std::vector<std::unique_ptr<CudaStream>> streams;
  ins.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    ins.push_back(make_inputs(c, c.seed() + t));
    probs.push_back(ins.back().problem(c));
    refs.push_back(ref::reference_decode(probs.back()));
    dcs.push_back(upload(c, ins.back(), plan.get()));
    streams.push_back(std::make_unique<CudaStream>());
  }
  const std::vector<std::string> failures = run_together(kThreads, [&](int t) -> std::string {
    for (int run = 0; run < kRuns; ++run) {
      poison(*dcs[t], run % 2 ? 0x55 : 0xFF, streams[t]->get());
      launch(plan.get(), *dcs[t], streams[t]->get());
      cuda_ok(cudaStreamSynchronize(streams[t]->get()), "cudaStreamSynchronize");
      const CheckReport rep = check_against_reference(c, ins[t], probs[t], refs[t], download(ins[t], *dcs[t]));
      if (!rep.ok()) return "run " + std::to_string(run) + ": " + rep.summary();
    }
    return "";
  });
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(failures[t], "") << "thread " << t;
}

// A block-table entry outside the pool for a visible key: nothing outside the pool is read (no
// fault; compute-sanitizer checks the rest) and only that sequence's outputs are NaN.
TEST(DecodeGpu, OutOfPoolBlockTableEntryPoisonsOnlyItsSequence) {
  TKA_SKIP_WITHOUT_GPU();
  const std::pair<int, BadPage::Value> bad[] = {
      {5, BadPage::kPastEnd}, {0, BadPage::kMinusOne}, {18, BadPage::kHuge}};  // slot 18: the last, partial page
  for (const auto& [slot, value] : bad) {
    const DecodeCase c = DecodeCase("out_of_pool")
                             .tokens(2)
                             .count(32)
                             .paged(16)
                             .lens({300, 300, 300})
                             .bad_page(1, slot, value)
                             .expect_nan({1});
    SCOPED_TRACE(c.describe());
    const DecodeInputs in = make_inputs(c, c.seed() + slot);
    const PlanPtr plan = make_plan(c);
    const ref::DecodeProblem p = in.problem(c);
    const ref::DecodeReference r = ref::reference_decode(p);
    ASSERT_EQ(case_sanity(c, r), "");
    for (int byte : {0xFF, 0x55}) {
      const CheckReport rep = check_against_reference(c, in, p, r, run_gpu(c, in, plan.get(), byte));
      EXPECT_TRUE(rep.ok()) << rep.summary();
    }
  }
}

// ---- tuned configurations ------------------------------------------------------------------------

// Case `c` run by a plan whose config is `v`, reached the way users reach it: through a tuning
// database (written to db_path) that a fresh runtime reads; checked against the fp64 reference.
void check_tuned(const DecodeCase& c, const tka::DecodeOp& op, const tka::DecodeConfig& v, const DecodeInputs& in,
                 const ref::DecodeReference& r, const std::string& db_path) {
  SCOPED_TRACE(c.describe() + "\nconfig " + v.text());
  const tka_op_desc desc = desc_of(c);
  tka::TuningEntry e;
  e.device = static_cast<tka::Runtime*>(gpu_runtime())->tuning_device();
  e.shape = tka::tuning_shape_for(op);
  e.seq_bucket = tka::pow2_bucket(op.desc.max_seq_len);
  e.batch_bucket = tka::pow2_bucket(op.desc.max_batch);
  e.config = v;
  e.time_us = e.default_time_us = 1;
  e.version = tka_version();
  tka::TuningDb db;
  db.upsert(e);
  ASSERT_TRUE(db.save(db_path).is_ok());
  tka_runtime_options o;
  tka_runtime_options_init(&o);
  o.tuning_db = db_path.c_str();
  tka_runtime* rt = nullptr;
  tka_ok(tka_runtime_create(&o, &rt), "tka_runtime_create");
  RuntimePtr runtime(rt);
  tka_counters before, after;
  tka_get_counters(&before);
  tka_plan* plan = nullptr;
  tka_ok(tka_plan_create(rt, &desc, &plan), "tka_plan_create");
  PlanPtr owned(plan);
  tka_get_counters(&after);
  ASSERT_EQ(after.tuned_plans, before.tuned_plans + 1) << "the database entry was not used";
  const GpuOutputs g = run_gpu(c, in, plan, 0xFF);
  const CheckReport rep = check_against_reference(c, in, in.problem(c), r, g);
  EXPECT_TRUE(rep.ok()) << rep.summary();
}

// Case c's op as the plan sees it; a case whose descriptor does not validate fails the test.
::testing::AssertionResult validated_op(const DecodeCase& c, tka::DecodeOp* op) {
  const tka::Status st = tka::validate_decode(desc_of(c).decode, op);
  if (st.is_ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << c.describe() << ": " << st.message();
}

// Every knob the tuner may turn must keep the answer exact: each variant of the config space
// (one knob away from the default), reached the way users reach it, through a tuning database
// that a fresh runtime reads, is checked against the fp64 reference on cases that cover paged and
// contiguous KV, per-head and per-group selection, d 64/128/256, k = 1 and k = 8192.
TEST(DecodeGpu, EveryTunedVariantMatchesTheReference) {
  TKA_SKIP_WITHOUT_GPU();
  const std::vector<DecodeCase> all = decode_cases();
  std::vector<DecodeCase> cases;
  for (const DecodeCase& c : all)
    for (const char* tag : {"bf16_d64_g1_paged16_head_q2_sinklocal_sharedpage", "fp16_d64_g16_paged64_group_q16_ratio",
                            "bf16_d256_g8_paged256_head_k256_nolse", "bf16_d64_g16_kv2_contig_group_k1",
                            "bf16_d128_g4_paged64_head_k8192_n20000", "bf16_d128_g4_contig_head_k64"})
      if (c.tag == tag) cases.push_back(c);
  ASSERT_EQ(cases.size(), 6u);
  std::vector<tka::DecodeOp> ops(cases.size());
  std::vector<std::vector<tka::DecodeConfig>> variants(cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    ASSERT_TRUE(validated_op(cases[i], &ops[i]));
    const tka::DecodeConfig base = tka::default_decode_config(ops[i]);
    for (const tka::DecodeConfig& v : tka::decode_compiled_space(ops[i])) {
      if (tka::compiled_knobs_apart(v, base) == 1) variants[i].push_back(v);
    }
    for (const tka::DecodeConfig& v : tka::decode_launch_space(base))
      if (v != base) variants[i].push_back(v);
  }
  // Their kernels compiled at once into the disk cache that check_tuned's fresh runtimes read (the
  // default root): one plan at a time, the NVRTC compiles were most of this test's time (219 s of
  // an H100 run whose other kernels were cached).
  const int sm = static_cast<tka::Runtime*>(gpu_runtime())->target_sm();
  std::set<std::string> seen;
  std::vector<tka::PrewarmJob> jobs;
  for (size_t i = 0; i < cases.size(); ++i)
    for (const tka::DecodeConfig& v : variants[i]) {
      tka::codegen::RenderedSource s = tka::codegen::render_decode(tka::kernel_spec_for(ops[i], v));
      if (seen.insert(s.spec_text).second) jobs.push_back({sm, std::move(s)});
    }
  tka_test::expect_all_compile(jobs, "");
  ASSERT_FALSE(HasFailure()) << "a variant did not compile";
  ScratchDir dir;
  int checked = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const DecodeInputs in = make_inputs(cases[i], cases[i].seed());
    const ref::DecodeReference r = ref::reference_decode(in.problem(cases[i]));
    for (const tka::DecodeConfig& v : variants[i]) {
      check_tuned(cases[i], ops[i], v, in, r, dir / ("db" + std::to_string(checked) + ".json"));
      ++checked;
    }
  }
  EXPECT_GE(checked, 40);
}

// The default config of case c's op with another select_split, checked by check_tuned on fresh
// inputs.
tka::DecodeConfig with_select_split(const tka::DecodeOp& op, int split) {
  tka::DecodeConfig v = tka::default_decode_config(op);
  v.select_split = split;
  return v;
}
void check_select_split(const DecodeCase& c, const tka::DecodeOp& op, int split, const std::string& db_path) {
  const DecodeInputs in = make_inputs(c, c.seed());
  check_tuned(c, op, with_select_split(op, split), in, ref::reference_decode(in.problem(c)), db_path);
}

// Few selection rows over one cooperative grid (select_split = 2, a tuning choice; per-head
// selection attends in the same grid): every case of the matrix whose rows are fewer than SMs
// and long enough for the grid, with their odd lengths, ties, NaN and infinite keys, paged and
// contiguous caches, k = 1 and k >= N.
TEST(DecodeGpu, CooperativeSelectionMatchesTheReference) {
  TKA_SKIP_WITHOUT_GPU();
  const int sm_count = static_cast<tka::Runtime*>(gpu_runtime())->device().sm_count;
  ScratchDir dir;
  int checked = 0;
  for (const DecodeCase& c : decode_cases()) {
    tka::DecodeOp op;
    ASSERT_TRUE(validated_op(c, &op));
    const long long rows = static_cast<long long>(op.desc.max_batch) * op.desc.q_len * op.sel_heads();
    if (rows >= sm_count || op.desc.max_seq_len < tka::kCoopMinLen) continue;
    check_select_split(c, op, 2, dir / ("coop" + std::to_string(checked) + ".json"));
    ++checked;
  }
  EXPECT_GE(checked, 5) << "cases with few long rows";
}

// Few long selection rows in a cluster of CTAs each (select_split = 3, sm_90): the B=1 shape of
// the benchmark (32 head rows of 100003 keys, streamed), the max over a group's heads with forced
// sink and local keys (per-thread loads), a ratio k on a paged cache (k = 1967 at 131072), k = 1
// with NaN keys, rows that keep every key beside long ones (the cluster's first CTA alone), and
// ties so many (6 distinct keys) that both estimates miss and the first CTA selects the row alone
// after the cluster gave up (the cluster's own cut of ties across CTAs: the selection op's cluster
// cases); empty and short rows among them. On sm_90 the plan must take the cluster path for each
// case (else the check would pass on the split selection).
std::vector<DecodeCase> cluster_cases() {
  // clang-format off
  return {
      DecodeCase("bf16_d128_g4_contig_head_b1_n100003_cluster").heads(32, 8).count(2048).max_len(131072)
          .lens({100003}),
      DecodeCase("fp16_d128_g4_contig_group_sinklocal_cluster").fp16().heads(8, 2).count(2048).sink_local(4, 64)
          .group().max_len(131072).lens({120001, 0, 37, 70001}),
      DecodeCase("bf16_d128_g4_paged64_head_ratio_cluster").heads(8, 2).ratio(0.015f).paged(64).max_len(131072)
          .lens({131072, 65537, 1000}),
      DecodeCase("bf16_d128_g4_contig_head_ties_cluster").heads(8, 2).few_distinct().count(2048).max_len(131072)
          .lens({90001}),
      DecodeCase("fp16_d128_g4_contig_head_k1_nan_cluster").fp16().heads(8, 2).count(1).max_len(131072)
          .lens({100003, 17}).nan_in(0, 40),
      DecodeCase("bf16_d128_g4_contig_head_k_ge_n_cluster").heads(8, 2).count(2048).max_len(131072)
          .lens({1500, 100000, 2048}),
      // Other head dims, two query tokens with LSE and indices out, a paged group of 2 with a page
      // outside the pool (that sequence NaN), and a group of 8.
      DecodeCase("bf16_d64_g4_contig_head_q2_lse_cluster").dim(64).heads(16, 4).tokens(2).count(2048)
          .max_len(131072).lens({99991}).outputs(true, true),
      DecodeCase("fp16_d256_g2_paged32_group_badpage_cluster").fp16().dim(256).heads(4, 2).group().count(1024)
          .paged(32).max_len(131072).lens({70001, 131072}).bad_page(0, 7, BadPage::kPastEnd).expect_nan({0}),
      DecodeCase("bf16_d128_g8_contig_group_cluster").heads(16, 2).group().count(2048).max_len(131072)
          .lens({80021}),
  };
  // clang-format on
}

TEST(DecodeGpu, ClusterSelectionMatchesTheReference) {
  TKA_SKIP_WITHOUT_GPU();
  tka::Runtime& runtime = *static_cast<tka::Runtime*>(gpu_runtime());
  ScratchDir dir;
  int checked = 0;
  for (const DecodeCase& c : cluster_cases()) {
    tka::DecodeOp op;
    ASSERT_TRUE(validated_op(c, &op));
    if (runtime.device().sm >= 90) {
      const tka::DecodeConfig v = with_select_split(op, 3);
      std::unique_ptr<tka::DecodePlan> plan;
      ASSERT_TRUE(tka::DecodePlan::create(runtime, desc_of(c).decode, &plan, &v).is_ok()) << c.describe();
      const int rows = op.desc.max_batch * op.desc.q_len * op.sel_heads();
      EXPECT_GE(plan->select_cluster_ctas(rows), 2) << c.describe() << ": " << rows << " rows take no cluster";
    }
    check_select_split(c, op, 3, dir / ("cluster" + std::to_string(checked) + ".json"));
    ++checked;
  }
}

}  // namespace
