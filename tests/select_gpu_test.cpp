// Top-k selection on the GPU through the public C API, against the reference
// (tests/reference/select_reference.h). Without a GPU every test here reports itself skipped.
//
// Each case runs twice, outputs poisoned first with 0xFF bytes (NaN values, index -1: a slot the
// kernel forgets fails the "index in range" check or the padding check) and then with 0x55 bytes
// (finite values, index 0x55555555). Sorted output must equal the reference exactly; unsorted
// output must be the same set. Values must be the input's bits at the returned index.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gpu_util.h"
#include "reference/decode_reference.h"
#include "reference/select_reference.h"
#include "runtime/runtime.h"
#include "runtime/select_plan.h"
#include "test_util.h"

namespace {

using namespace tka_test;
namespace ref = topkattn_ref;

enum class Data {
  kNormal,       // N(0, 1) rounded to the dtype (ties only where rounding makes them)
  kFewValues,    // integers 0..2: every value tied with a third of the row (candidate overflow)
  kSpecial,      // normal, with NaN, +-inf, -0 and +0 sprinkled in
  kAscending,    // each row increasing: the top keys sit at the row's end (a skewed sample)
  kSampleHigh,   // normal, +0.3 where select_rows samples: its first threshold lets too few through
  kSampleLow,    // normal, -0.3 there: too many (a list overflows); both retry with a second sample
  kCoarse,       // normal rounded to multiples of 1/8: hundreds of keys tie at the k-th value, spread
                 // over the whole row (a cluster's CTAs split the tied keys among them)
  kSignedZeros,  // 1% positive, the rest -0 and +0 at random: the k-th value is a zero tied with
                 // most of the row, and -0 must equal +0 (ties to the lower index across both)
  // Normal, with keys far above everything sampled at columns outside the sample: the bucket
  // ranks' scale (from the sample's largest key) puts them all in its first bucket.
  kOutliersFew,   // ~100 a row of 128K: the first bucket holds them (<= 128 words)
  kOutliersMany,  // ~440 a row of 128K: too many for one bucket, the ranks fall back
};

// Whether column j of a row of n is in one of the one-read selection's sample blocks (blocks of
// 128, 64 of them from n = 64K up, else 32, block b at b * (n - 128) / (blocks - 1) rounded down
// to a multiple of 4: radix_select_sampled.cuh).
bool in_sample(int64_t j, int64_t n) {
  const int64_t blocks = n >= 65536 ? 64 : 32;
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t start = (b * (n - 128) / (blocks - 1)) & ~int64_t{3};
    if (j >= start && j < start + 128) return true;
  }
  return false;
}

struct SelectCase {
  std::string tag;
  tka_dtype dtype = TKA_DTYPE_FP32;
  int rows = 4, n = 1000, k = 16;
  bool sorted = true, pad = false, lengths = false;
  int row_stride_extra = 0;  // > 0: rows not aligned to four elements
  Data data = Data::kNormal;
  // >= 0: the plan's launch configuration is the default with this many CTAs per row at most in a
  // cluster (0: none; few long rows then take the split path, or one CTA per row). -1: the plan
  // as tka_plan_create makes it.
  int cluster = -1;
  bool coop = false;  // the default launch configuration with the cooperative grid on (cluster unused)
  int threads = 0;    // > 0: the default launch configuration with this many threads a CTA
};

std::string describe(const SelectCase& c) {
  std::ostringstream o;
  o << c.tag << " dtype=" << c.dtype << " rows=" << c.rows << " n=" << c.n << " k=" << c.k << " sorted=" << c.sorted
    << " pad=" << c.pad << " lengths=" << c.lengths << " extra=" << c.row_stride_extra;
  if (c.cluster >= 0) o << " cluster=" << c.cluster;
  if (c.coop) o << " coop";
  if (c.threads > 0) o << " threads=" << c.threads;
  return o.str();
}

size_t elem_size(tka_dtype d) { return d == TKA_DTYPE_FP32 ? 4 : 2; }
DLDataType dl_elem(tka_dtype d) { return d == TKA_DTYPE_FP32 ? dl_f32() : dl_half(d); }
ref::Half half_of(tka_dtype d) { return d == TKA_DTYPE_BF16 ? ref::Half::kBF16 : ref::Half::kFP16; }

// The input as the device sees it (bytes) and as exact floats for the reference.
struct Input {
  std::vector<uint8_t> bytes;
  std::vector<float> exact;
};

Input make_input(const SelectCase& c, int64_t stride, std::mt19937& rng) {
  const size_t count = static_cast<size_t>(std::max(c.rows, 1)) * static_cast<size_t>(stride);
  Input in;
  in.exact.resize(count);
  in.bytes.resize(count * elem_size(c.dtype));
  std::normal_distribution<float> normal(0.f, 1.f);
  std::uniform_int_distribution<int> small(0, 2), pick(0, 39), percent(0, 99);
  const float specials[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(), -0.f, 0.f};
  for (size_t i = 0; i < count; ++i) {
    float v = normal(rng);
    if (c.data == Data::kFewValues) v = static_cast<float>(small(rng));
    if (c.data == Data::kSpecial && pick(rng) < 5) v = specials[pick(rng) % 5];
    if (c.data == Data::kAscending) v = static_cast<float>(i % static_cast<size_t>(stride)) * 0.001f - 7.f;
    if ((c.data == Data::kSampleHigh || c.data == Data::kSampleLow) && in_sample(static_cast<int64_t>(i) % stride, c.n))
      v += c.data == Data::kSampleHigh ? 0.3f : -0.3f;
    if (c.data == Data::kCoarse) v = std::round(v * 8.f) / 8.f;
    if (c.data == Data::kSignedZeros) v = percent(rng) == 0 ? std::fabs(v) + 0.5f : (percent(rng) % 2 ? -0.f : 0.f);
    if (c.data == Data::kOutliersFew || c.data == Data::kOutliersMany) {
      const int64_t j = static_cast<int64_t>(i) % stride;
      if (j % (c.data == Data::kOutliersFew ? 1300 : 300) == 7 && !in_sample(j, c.n))
        v = 10.f + static_cast<float>(j % 997) * 0.01f;  // 16-bit dtypes: some of them tie
    }
    if (c.dtype == TKA_DTYPE_FP32) {
      std::memcpy(&in.bytes[4 * i], &v, 4);
      in.exact[i] = v;
    } else {
      const uint16_t h = ref::float_to_half(v, half_of(c.dtype));
      std::memcpy(&in.bytes[2 * i], &h, 2);
      in.exact[i] = ref::half_to_float(h, half_of(c.dtype));
    }
  }
  return in;
}

bool same_bits(const uint8_t* a, const uint8_t* b, size_t size) { return std::memcmp(a, b, size) == 0; }

// A selection plan made by tka_plan_create (cluster < 0, no coop, threads 0), or by the library's
// own API with the default launch configuration but at most `cluster` CTAs per row in a cluster,
// with the cooperative grid on (select_rows_coop, a tuning choice), or with `threads` a CTA.
class CasePlan {
 public:
  CasePlan(tka_runtime* rt, const tka_op_desc& desc, int cluster, bool coop, int threads) {
    if (cluster < 0 && !coop && threads == 0) {
      tka_plan* raw = nullptr;
      tka_ok(tka_plan_create(rt, &desc, &raw), "tka_plan_create");
      c_plan_.reset(raw);
      return;
    }
    tka_runtime_options o;
    tka_runtime_options_init(&o);
    o.tuning_db = "";
    expect_ok(tka::Runtime::create(o, &runtime_), "Runtime::create");
    tka::SelectOp op;
    expect_ok(tka::validate_select(desc.select, &op), "validate_select");
    tka::SelectConfig config = tka::default_select_config(op);
    if (cluster >= 0) config.cluster = cluster;
    config.coop = coop;
    if (threads > 0) config.threads = threads;
    expect_ok(tka::SelectPlan::create(*runtime_, desc.select, &plan_, &config), "SelectPlan::create");
  }
  size_t workspace_bytes() const {
    size_t bytes = 0;
    if (c_plan_)
      tka_ok(tka_plan_workspace_size(c_plan_.get(), &bytes), "workspace size");
    else
      bytes = plan_->workspace_bytes();
    return std::max<size_t>(bytes, 1);
  }
  void run(const tka_tensors& t, void* ws, const CudaStream& stream) const {
    if (c_plan_)
      tka_ok(tka_plan_run(c_plan_.get(), &t, ws, stream.tka()), "tka_plan_run");
    else
      expect_ok(plan_->run(t, ws, reinterpret_cast<CUstream>(stream.get())), "SelectPlan::run");
  }

 private:
  static void expect_ok(const tka::Status& s, const char* what) {
    if (!s.is_ok()) throw std::runtime_error(std::string(what) + ": " + s.message());
  }
  PlanPtr c_plan_;
  std::unique_ptr<tka::Runtime> runtime_;
  std::unique_ptr<tka::SelectPlan> plan_;
};

void check_case(const SelectCase& c, uint8_t poison, tka_runtime* rt, std::mt19937& rng) {
  SCOPED_TRACE(describe(c) + " poison=" + std::to_string(poison));
  tka_op_desc desc;
  tka_op_desc_init(&desc, TKA_OP_TOPK_SELECT);
  desc.select.dtype = c.dtype;
  desc.select.top_k = c.k;
  desc.select.max_rows = c.rows + 3;  // the plan may be larger than the run
  desc.select.max_n = std::max(c.n, 1) + 5;
  desc.select.pad = c.pad;
  desc.select.sorted = c.sorted;
  CasePlan plan(rt, desc, c.cluster, c.coop, c.threads);

  const int64_t stride = c.n + c.row_stride_extra;
  const Input in = make_input(c, std::max<int64_t>(stride, 1), rng);
  std::vector<int> lens(static_cast<size_t>(c.rows), c.n);
  if (c.lengths) {
    std::uniform_int_distribution<int> len(0, c.n);
    for (int r = 0; r < c.rows; ++r) lens[r] = len(rng);
    if (c.rows > 1) lens[0] = 0, lens[1] = c.n + 100;  // empty, and longer than the row (clamped)
    if (c.rows > 2) lens[2] = -5;
    if (c.rows > 3) lens[3] = std::min(c.k, c.n);
  }
  const size_t es = elem_size(c.dtype);
  DeviceBuffer d_in = DeviceBuffer::from(in.bytes);
  DeviceBuffer d_lens = DeviceBuffer::from(lens);
  const size_t out_count = static_cast<size_t>(c.rows) * c.k;
  DeviceBuffer d_vals(out_count * es), d_idx(out_count * 4);
  cuda_ok(cudaMemset(d_vals.get(), poison, d_vals.bytes()), "poison values");
  cuda_ok(cudaMemset(d_idx.get(), poison, d_idx.bytes()), "poison indices");
  DeviceBuffer ws(plan.workspace_bytes());
  cuda_ok(cudaMemset(ws.get(), poison, ws.bytes()), "poison workspace");

  TensorArg input(d_in.get(), dl_elem(c.dtype), {c.rows, c.n}, {stride, 1});
  TensorArg lengths(d_lens.get(), dl_i32(), {c.rows});
  TensorArg values(d_vals.get(), dl_elem(c.dtype), {c.rows, c.k});
  TensorArg indices(d_idx.get(), dl_i32(), {c.rows, c.k});
  tka_tensors t;
  tka_tensors_init(&t);
  t.input = input.get();
  t.lengths = c.lengths ? lengths.get() : nullptr;
  t.values = values.get();
  t.indices = indices.get();
  CudaStream stream;
  plan.run(t, ws.get(), stream);
  cuda_ok(cudaStreamSynchronize(stream.get()), "sync");
  const std::vector<uint8_t> got_vals = d_vals.download<uint8_t>();
  const std::vector<int> got_idx = d_idx.download<int>();

  const float neg_inf = -std::numeric_limits<float>::infinity();
  for (int r = 0; r < c.rows; ++r) {
    const int n = c.lengths ? std::clamp(lens[r], 0, c.n) : c.n;
    const float* row = in.exact.data() + static_cast<size_t>(r) * stride;
    const uint8_t* row_bytes = in.bytes.data() + static_cast<size_t>(r) * stride * es;
    const std::vector<int> want = ref::select_topk(row, n, c.k);
    const int s = static_cast<int>(want.size());
    std::vector<int> got(got_idx.begin() + static_cast<size_t>(r) * c.k,
                         got_idx.begin() + static_cast<size_t>(r) * c.k + s);
    for (int i = 0; i < s; ++i) {
      ASSERT_TRUE(got[i] >= 0 && got[i] < n) << "row " << r << " slot " << i << ": index " << got[i];
      const uint8_t* v = got_vals.data() + (static_cast<size_t>(r) * c.k + i) * es;
      ASSERT_TRUE(same_bits(v, row_bytes + static_cast<size_t>(got[i]) * es, es))
          << "row " << r << " slot " << i << ": value is not the input's at index " << got[i];
    }
    if (!c.sorted)
      std::sort(got.begin(), got.end(), [&](int a, int b) { return ref::select_before(row[a], a, row[b], b); });
    ASSERT_EQ(got, want) << "row " << r << " (n " << n << ")";
    for (int i = s; i < c.k; ++i) {
      const size_t at = static_cast<size_t>(r) * c.k + i;
      ASSERT_EQ(got_idx[at], -1) << "row " << r << " padding slot " << i;
      float v;
      if (c.dtype == TKA_DTYPE_FP32) {
        std::memcpy(&v, &got_vals[at * 4], 4);
      } else {
        uint16_t h;
        std::memcpy(&h, &got_vals[at * 2], 2);
        v = ref::half_to_float(h, half_of(c.dtype));
      }
      ASSERT_EQ(v, neg_inf) << "row " << r << " padding slot " << i;
    }
  }
}

std::vector<SelectCase> cases() {
  std::vector<SelectCase> v;
  for (tka_dtype dt : {TKA_DTYPE_FP32, TKA_DTYPE_BF16, TKA_DTYPE_FP16}) {
    v.push_back({"k=1", dt, 3, 1001, 1});
    v.push_back({"k=n", dt, 5, 777, 777});
    v.push_back({"k>n pad", dt, 4, 100, 300, true, true});
    v.push_back({"n=0 pad", dt, 3, 0, 5, true, true});
    v.push_back({"many rows", dt, 200, 5003, 2048});
    // Few long rows: a cluster of CTAs per row (sm_90+), and the split path (cluster 0).
    v.push_back({"split odd n", dt, 4, 131071, 2048, true, false, false, 0, Data::kNormal, 0});
    v.push_back({"split unsorted", dt, 2, 100003, 1000, false, false, false, 0, Data::kNormal, 0});
    v.push_back({"cluster odd n", dt, 4, 131071, 2048, true, false, false, 0, Data::kNormal, 8});
    v.push_back({"cluster unsorted", dt, 2, 100003, 1000, false, false, false, 0, Data::kNormal, 8});
    v.push_back({"cluster of 2", dt, 3, 100001, 1, true, false, false, 0, Data::kNormal, 2});
    v.push_back({"cluster of 4 lengths", dt, 8, 100000, 1500, false, false, true, 0, Data::kNormal, 4});
    // Sizes that are not powers of two: uneven slices, and sorted shares of the row in three.
    v.push_back({"cluster of 3", dt, 3, 100003, 2048, true, false, false, 0, Data::kNormal, 3});
    v.push_back({"cluster of 5 ties", dt, 2, 131072, 2048, true, false, false, 0, Data::kFewValues, 5});
    v.push_back({"cluster of 6 lengths", dt, 4, 120001, 1000, false, true, true, 0, Data::kNormal, 6});
    v.push_back({"cluster of 7 unaligned", dt, 2, 90001, 700, true, false, false, 3, Data::kNormal, 7});
    v.push_back({"cluster unaligned", dt, 3, 90001, 700, true, false, false, 3, Data::kNormal, 8});
    v.push_back({"cluster coarse ties", dt, 5, 131072, 2048, true, false, false, 0, Data::kCoarse, 8});
    v.push_back({"cluster coarse ties unsorted", dt, 5, 131072, 2048, false, false, false, 0, Data::kCoarse});
    v.push_back({"cluster special", dt, 4, 65536, 1000, true, false, false, 0, Data::kSpecial});
    v.push_back({"cluster ascending", dt, 4, 65536, 2000, true, false, false, 0, Data::kAscending});
    // Rows as short as clusters take (16K columns read by the other CTAs): 32K, and 7/8 of 18725.
    v.push_back({"cluster short rows", dt, 6, 32768, 2048, true, false, false, 0, Data::kNormal, 8});
    v.push_back({"cluster of 2 short lengths", dt, 3, 32768, 1000, false, false, true, 0, Data::kNormal, 2});
    v.push_back({"cluster shortest", dt, 2, 18725, 1000, true, false, false, 1, Data::kNormal, 8});
    v.push_back({"k=8192", dt, 1, 65536, 8192});
    v.push_back({"k=200 sort", dt, 7, 9000, 200});  // a 256-word sort: the register pass, one merge pass
    // The sort's merge passes at other CTA sizes: 256 threads sort up to 2048 words by merges (k =
    // 3000 takes the bitonic stages), 1024 threads up to 8192 (two groups of outputs a thread).
    v.push_back({"sort t256", dt, 5, 20000, 2048, true, false, false, 0, Data::kNormal, -1, false, 256});
    v.push_back({"sort t256 bitonic", dt, 3, 20000, 3000, true, false, false, 0, Data::kNormal, -1, false, 256});
    v.push_back({"sort t1024", dt, 3, 70000, 8192, true, false, false, 0, Data::kNormal, -1, false, 1024});
    v.push_back({"sort t1024 ties", dt, 4, 20000, 5000, true, false, false, 0, Data::kFewValues, -1, false, 1024});
    v.push_back({"lengths", dt, 8, 40000, 100, true, false, true});
    v.push_back({"lengths pad", dt, 6, 3000, 2048, false, true, true});
    v.push_back({"unaligned rows", dt, 9, 4097, 64, true, false, false, 1});
    v.push_back({"unaligned split", dt, 3, 60001, 512, true, false, false, 3, Data::kNormal, 0});
    v.push_back({"ties split", dt, 4, 131072, 2048, true, false, false, 0, Data::kFewValues, 0});
    v.push_back({"ties cluster", dt, 4, 131072, 2048, true, false, false, 0, Data::kFewValues, 8});
    v.push_back({"cluster outliers", dt, 3, 131072, 2048, true, false, false, 0, Data::kOutliersFew, 8});
    v.push_back({"cluster many outliers", dt, 3, 131072, 2048, true, false, false, 0, Data::kOutliersMany, 8});
    v.push_back({"cluster outliers unsorted", dt, 3, 131072, 2048, false, false, false, 0, Data::kOutliersFew, 8});
    // A cluster's bucket ranks read each CTA's packed counts as one load a thread: 16 bytes at 256
    // threads, 8 at 512 (the cases above), 4 at 1024.
    v.push_back({"cluster t256 buckets", dt, 4, 131072, 2048, true, false, false, 0, Data::kNormal, 8, false, 256});
    v.push_back({"cluster t1024 buckets", dt, 3, 131071, 2048, true, false, false, 0, Data::kNormal, 4, false, 1024});
    v.push_back({"ties rows", dt, 150, 20000, 700, false, false, false, 0, Data::kFewValues});
    v.push_back({"special", dt, 140, 3001, 1500, true, false, false, 0, Data::kSpecial});
    v.push_back({"special split", dt, 2, 50000, 3000, true, false, true, 0, Data::kSpecial, 0});
    // One read of long rows (a sampled threshold), its fallbacks, and rows too short for it.
    v.push_back({"sampled rows", dt, 160, 40000, 1000});
    v.push_back({"sampled unsorted", dt, 140, 131072, 2048, false});
    v.push_back({"sampled ascending", dt, 150, 20000, 512, true, false, false, 0, Data::kAscending});
    v.push_back({"sampled lengths", dt, 150, 30000, 1024, true, false, true});
    v.push_back({"sampled special", dt, 133, 17000, 1000, true, false, false, 1, Data::kSpecial});
    // Every row retries: in clusters (24 rows), and one CTA per row.
    v.push_back({"sample high retry", dt, 24, 131072, 2048, true, false, false, 0, Data::kSampleHigh});
    v.push_back({"sample low retry", dt, 24, 131072, 2048, false, false, false, 0, Data::kSampleLow});
    v.push_back({"sample high retry one cta", dt, 24, 131072, 2048, true, false, false, 0, Data::kSampleHigh, 0});
    v.push_back({"sample low retry one cta", dt, 24, 131072, 2048, false, false, false, 0, Data::kSampleLow, 0});
    // Rows streamed through shared memory (16-byte aligned starts) with a partial last chunk, and
    // a row length whose rows alternate between streamed and register reads.
    v.push_back({"streamed tail", dt, 140, 16390, 1000, true, false, false, 2});
    v.push_back({"streamed mixed alignment", dt, 136, 65539, 2048, false});
    // k = 8192 of long rows: 2k candidates would not fit the one-read path's capacity, so these
    // rows take the two-read path (whole-row histogram, then the classify pass) with a wide sort.
    v.push_back({"two reads k=8192", dt, 140, 131072, 8192});
    // Edges of the split and one-read paths: k = 1, per-row lengths, special values while streaming.
    v.push_back({"split k=1", dt, 3, 100001, 1, true, false, false, 0, Data::kNormal, 0});
    v.push_back({"sampled k=1", dt, 140, 20000, 1});
    v.push_back({"split lengths", dt, 8, 100000, 2048, true, false, true, 0, Data::kNormal, 0});
    v.push_back({"streamed special", dt, 140, 16390, 1000, true, false, false, 2, Data::kSpecial});
    v.push_back({"signed zeros cluster", dt, 4, 131072, 2048, true, false, false, 0, Data::kSignedZeros, 8});
    // One cooperative grid (a tuning choice for few long rows): odd and unaligned rows, ties spread
    // over chunks, special values, per-row lengths (empty, clamped, k = n), k = 1, k = n, k > n.
    v.push_back({"coop odd n", dt, 4, 131071, 2048, true, false, false, 0, Data::kNormal, -1, true});
    v.push_back({"coop unsorted", dt, 2, 100003, 1000, false, false, false, 0, Data::kNormal, -1, true});
    v.push_back({"coop unaligned", dt, 3, 90001, 700, true, false, false, 3, Data::kNormal, -1, true});
    v.push_back({"coop coarse ties", dt, 5, 131072, 2048, false, false, false, 0, Data::kCoarse, -1, true});
    v.push_back({"coop few values", dt, 4, 131072, 2048, true, false, false, 0, Data::kFewValues, -1, true});
    v.push_back({"coop signed zeros", dt, 4, 131072, 2048, false, false, false, 0, Data::kSignedZeros, -1, true});
    v.push_back({"coop special", dt, 6, 32771, 3000, true, false, false, 0, Data::kSpecial, -1, true});
    v.push_back({"coop lengths", dt, 8, 100000, 1500, false, false, true, 0, Data::kNormal, -1, true});
    v.push_back({"coop k=1", dt, 32, 32768, 1, true, false, false, 0, Data::kNormal, -1, true});
    v.push_back({"coop k=n", dt, 3, 8192, 8192, false, false, false, 0, Data::kNormal, -1, true});
    v.push_back({"coop lengths pad", dt, 4, 9000, 8192, true, true, true, 0, Data::kNormal, -1, true});
    v.push_back({"coop many rows", dt, 100, 40000, 2048, false, false, false, 0, Data::kNormal, -1, true});
    v.push_back({"signed zeros split", dt, 4, 131072, 2048, false, false, false, 0, Data::kSignedZeros, 0});
    v.push_back({"signed zeros rows", dt, 150, 20000, 700, true, false, false, 0, Data::kSignedZeros});
  }
  return v;
}

class SelectMatrix : public ::testing::TestWithParam<SelectCase> {};

TEST_P(SelectMatrix, MatchesTheReference) {
  TKA_SKIP_WITHOUT_GPU();
  const RuntimePtr rt = default_runtime();
  std::mt19937 rng(1234 + static_cast<unsigned>(GetParam().n) * 7 + static_cast<unsigned>(GetParam().k));
  for (uint8_t poison : {uint8_t{0xff}, uint8_t{0x55}}) {
    check_case(GetParam(), poison, rt.get(), rng);
    if (HasFatalFailure()) return;
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, SelectMatrix, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<SelectCase>& info) {
                           std::string name = describe(info.param);
                           std::string out;
                           for (char ch : name) out += std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
                           return out + "_" + std::to_string(info.index);
                         });

// An fp32 selection plan, and random normal rows for it.
PlanPtr make_select_plan(tka_runtime* rt, int k, int max_rows, int max_n) {
  tka_op_desc desc;
  tka_op_desc_init(&desc, TKA_OP_TOPK_SELECT);
  desc.select.top_k = k;
  desc.select.max_rows = max_rows;
  desc.select.max_n = max_n;
  tka_plan* p = nullptr;
  tka_ok(tka_plan_create(rt, &desc, &p), "tka_plan_create");
  return PlanPtr(p);
}

// The outlier cases' premise, on the host: every outlier is above every sampled key (so the bucket
// ranks' scale puts it in the first bucket), all are among the top k, and the first bucket holds
// them in one case (<= 128 words) and not in the other.
TEST(SelectCases, OutliersSitAboveTheSample) {
  for (Data data : {Data::kOutliersFew, Data::kOutliersMany}) {
    SelectCase c{"outliers", TKA_DTYPE_FP32, 1, 131072, 2048, true, false, false, 0, data, 8};
    std::mt19937 rng(7);
    const Input in = make_input(c, c.n, rng);
    float sampled = -std::numeric_limits<float>::infinity();
    for (int j = 0; j < c.n; ++j)
      if (in_sample(j, c.n)) sampled = std::max(sampled, in.exact[j]);
    int above = 0;
    for (int j = 0; j < c.n; ++j) above += in.exact[j] > sampled;
    std::vector<float> sorted(in.exact);
    std::sort(sorted.begin(), sorted.end(), std::greater<float>());
    EXPECT_GT(sorted[c.k - 1], sampled - 5.f) << "a normal row's k-th value is far below the outliers";
    EXPECT_LT(sorted[c.k - 1], 10.f) << "the outliers are all among the top k";
    if (data == Data::kOutliersFew) {
      EXPECT_GT(above, 64);
      EXPECT_LE(above, 128);
    } else {
      EXPECT_GT(above, 128);
    }
  }
}

std::vector<float> normal_rows(int rows, int n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> host(static_cast<size_t>(rows) * n);
  for (float& x : host) x = normal(rng);
  return host;
}

// Plans of different k share one module; creating a plan of small k after one of large k must not
// take away the shared memory that the larger sort needs.
TEST(SelectGpu, SmallerPlanKeepsTheLargerSortRunnable) {
  TKA_SKIP_WITHOUT_GPU();
  const RuntimePtr rt = default_runtime();
  const int rows = 2, n = 10000, k = 8192;
  PlanPtr large = make_select_plan(rt.get(), k, rows, n);
  PlanPtr small = make_select_plan(rt.get(), 16, rows, n);
  const std::vector<float> host = normal_rows(rows, n, 11);
  DeviceBuffer d_in = DeviceBuffer::from(host), d_vals(rows * k * 4), d_idx(rows * k * 4);
  cuda_ok(cudaMemset(d_idx.get(), 0x55, d_idx.bytes()), "poison");
  size_t ws_bytes = 0;
  tka_ok(tka_plan_workspace_size(large.get(), &ws_bytes), "workspace size");
  DeviceBuffer ws(std::max<size_t>(ws_bytes, 1));
  TensorArg input(d_in.get(), dl_f32(), {rows, n});
  TensorArg values(d_vals.get(), dl_f32(), {rows, k}), indices(d_idx.get(), dl_i32(), {rows, k});
  tka_tensors t;
  tka_tensors_init(&t);
  t.input = input.get(), t.values = values.get(), t.indices = indices.get();
  CudaStream stream;
  tka_ok(tka_plan_run(large.get(), &t, ws.get(), stream.tka()), "tka_plan_run (k = 8192)");
  cuda_ok(cudaStreamSynchronize(stream.get()), "sync");
  const std::vector<int> got = d_idx.download<int>();
  for (int r = 0; r < rows; ++r)
    EXPECT_EQ(std::vector<int>(got.begin() + r * k, got.begin() + (r + 1) * k),
              ref::select_topk(host.data() + static_cast<size_t>(r) * n, n, k))
        << "row " << r;
}

// Lengths live on the device: a captured graph replayed after they change selects over the new
// lengths without being captured again.
TEST(SelectGpu, GraphReplayFollowsNewLengths) {
  TKA_SKIP_WITHOUT_GPU();
  const RuntimePtr rt = default_runtime();
  const int rows = 4, n = 50000, k = 64;
  PlanPtr plan = make_select_plan(rt.get(), k, rows, n);
  const std::vector<float> host = normal_rows(rows, n, 7);
  DeviceBuffer d_in = DeviceBuffer::from(host), d_lens = DeviceBuffer::from(std::vector<int>{n, n, n, n});
  DeviceBuffer d_vals(rows * k * 4), d_idx(rows * k * 4);
  size_t ws_bytes = 0;
  tka_ok(tka_plan_workspace_size(plan.get(), &ws_bytes), "workspace size");
  DeviceBuffer ws(ws_bytes);
  TensorArg input(d_in.get(), dl_f32(), {rows, n}), lengths(d_lens.get(), dl_i32(), {rows});
  TensorArg values(d_vals.get(), dl_f32(), {rows, k}), indices(d_idx.get(), dl_i32(), {rows, k});
  tka_tensors t;
  tka_tensors_init(&t);
  t.input = input.get(), t.lengths = lengths.get(), t.values = values.get(), t.indices = indices.get();
  CudaStream stream;
  cudaGraph_t graph;
  cuda_ok(cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeThreadLocal), "begin capture");
  tka_ok(tka_plan_run(plan.get(), &t, ws.get(), stream.tka()), "tka_plan_run (captured)");
  cuda_ok(cudaStreamEndCapture(stream.get(), &graph), "end capture");
  cudaGraphExec_t exec;
  cuda_ok(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
  for (const std::vector<int>& lens : {std::vector<int>{n, 10, 30000, 0}, std::vector<int>{7, n, 64, 1000}}) {
    cuda_ok(cudaMemcpy(d_lens.get(), lens.data(), lens.size() * 4, cudaMemcpyHostToDevice), "lengths");
    cuda_ok(cudaMemset(d_idx.get(), 0x55, d_idx.bytes()), "poison");
    cuda_ok(cudaGraphLaunch(exec, stream.get()), "graph launch");
    cuda_ok(cudaStreamSynchronize(stream.get()), "sync");
    const std::vector<int> got = d_idx.download<int>();
    for (int r = 0; r < rows; ++r) {
      std::vector<int> want = ref::select_topk(host.data() + static_cast<size_t>(r) * n, lens[r], k);
      want.resize(k, -1);
      EXPECT_EQ(std::vector<int>(got.begin() + r * k, got.begin() + (r + 1) * k), want)
          << "row " << r << " length " << lens[r];
    }
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

}  // namespace
