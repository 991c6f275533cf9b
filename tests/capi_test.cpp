// The C API's host-side contract: status strings, the thread-local error message, NULL handling,
// descriptor and tensor validation, compile-only runtimes and the compile/cache counters.
// Needs no GPU and no driver (CI runs it so): plans come from compile-only runtimes (sm_90) and
// tensors carry fake, never dereferenced device addresses.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <mutex>
#include <regex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "gpu_util.h"
#include "test_util.h"

namespace {

using namespace tka_test;

// ---- helpers ---------------------------------------------------------------------------------

tka_counters counters() {
  tka_counters c{};
  tka_ok(tka_get_counters(&c), "tka_get_counters");
  return c;
}

PlanPtr plan_for(tka_runtime* rt, const tka_op_desc& desc) {
  tka_plan* p = nullptr;
  tka_ok(tka_plan_create(rt, &desc, &p), "tka_plan_create");
  return PlanPtr(p);
}

// The message names the field as a word of its own: "q" must not match inside "seq_lens".
bool mentions(const std::string& msg, const std::string& field) {
  auto ident = [](char ch) { return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_'; };
  for (size_t at = msg.find(field); at != std::string::npos; at = msg.find(field, at + 1)) {
    const bool before = at == 0 || !ident(msg[at - 1]);
    const bool after = at + field.size() == msg.size() || !ident(msg[at + field.size()]);
    if (before && after) return true;
  }
  return false;
}

bool mentions_any(const std::string& msg, const std::vector<std::string>& fields) {
  return std::any_of(fields.begin(), fields.end(), [&](const std::string& f) { return mentions(msg, f); });
}

std::string lower(std::string s) {
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

std::string status_name(tka_status s) {
  return std::to_string(static_cast<int>(s)) + " (" + tka_status_string(s) + ")";
}

// Contiguous, per head, count mode.
tka_op_desc contiguous_desc() {
  tka_op_desc d;
  tka_op_desc_init(&d, TKA_OP_TOPK_DECODE);
  d.decode.dtype = TKA_DTYPE_BF16;
  d.decode.num_q_heads = 8;
  d.decode.num_kv_heads = 2;
  d.decode.head_dim = 128;
  d.decode.head_dim_v = 0;
  d.decode.q_len = 2;
  d.decode.top_k = 64;
  d.decode.top_k_ratio = 0.0f;
  d.decode.n_sink = 0;
  d.decode.n_local = 0;
  d.decode.select = TKA_SELECT_PER_HEAD;
  d.decode.kv_layout = TKA_KV_CONTIGUOUS;
  d.decode.page_size = 0;
  d.decode.max_batch = 4;
  d.decode.max_seq_len = 4096;
  d.decode.scale = 0.0f;
  return d;
}

// Paged, per group, ratio mode. 0.1f is slightly above 0.1, so max_k = ceil(0.1f * 1000) = 101
// when computed in double, as the contract says.
tka_op_desc paged_desc() {
  tka_op_desc d = contiguous_desc();
  d.decode.dtype = TKA_DTYPE_FP16;
  d.decode.head_dim = 64;
  d.decode.q_len = 1;
  d.decode.top_k = 0;
  d.decode.top_k_ratio = 0.1f;
  d.decode.n_sink = 4;
  d.decode.n_local = 16;
  d.decode.select = TKA_SELECT_PER_GROUP;
  d.decode.kv_layout = TKA_KV_PAGED;
  d.decode.page_size = 64;
  d.decode.max_seq_len = 1000;
  return d;
}

// The width the contract gives the indices output.
int expected_max_k(const tka_decode_desc& d) {
  if (d.top_k > 0) return d.top_k;
  const double by_ratio = std::ceil(static_cast<double>(d.top_k_ratio) * d.max_seq_len);
  return std::max({1, static_cast<int>(by_ratio), d.n_sink + d.n_local});
}

void* fake_device_ptr(int slot) {  // 256-byte aligned, far apart, never dereferenced
  return reinterpret_cast<void*>(uintptr_t{0x7f0000000000} + static_cast<uintptr_t>(slot) * 0x100000000ull);
}

void* offset_ptr(void* p, int bytes) { return static_cast<char*>(p) + bytes; }

// A fully valid tka_plan_run call for a plan, built from fake device addresses; tests break one
// field at a time.
struct FakeCall {
  TensorArg q, k_cache, v_cache, seq_lens, block_table, out, lse, indices;
  std::set<std::string> dropped;  // tensors passed as NULL
  bool paged = false;
  bool block_table_anyway = false;  // pass block_table to a contiguous plan too
  void* workspace = fake_device_ptr(15);

  tka_tensors tensors() const {
    auto pick = [&](const char* name, const TensorArg& t) -> const DLTensor* {
      return dropped.count(name) ? nullptr : t.get();
    };
    tka_tensors t{};
    t.q = pick("q", q);
    t.k_cache = pick("k_cache", k_cache);
    t.v_cache = pick("v_cache", v_cache);
    t.seq_lens = pick("seq_lens", seq_lens);
    t.block_table = paged || block_table_anyway ? pick("block_table", block_table) : nullptr;
    t.out = pick("out", out);
    t.lse = pick("lse", lse);
    t.indices = pick("indices", indices);
    return t;
  }
};

FakeCall valid_call(const tka_decode_desc& d, int max_k, int batch = 2) {
  FakeCall f;
  const int64_t B = batch, d_k = d.head_dim;
  const DLDataType half = dl_half(d.dtype);
  const int sel_heads = d.select == TKA_SELECT_PER_GROUP ? d.num_kv_heads : d.num_q_heads;
  f.paged = d.kv_layout == TKA_KV_PAGED;
  f.q = TensorArg(fake_device_ptr(1), half, {B, d.q_len, d.num_q_heads, d_k});
  if (f.paged) {
    const int64_t pages_per_seq = (d.max_seq_len + d.page_size - 1) / d.page_size;
    const std::vector<int64_t> pool = {B * pages_per_seq + 1, d.page_size, d.num_kv_heads, d_k};
    f.k_cache = TensorArg(fake_device_ptr(2), half, pool);
    f.v_cache = TensorArg(fake_device_ptr(3), half, pool);
    f.block_table = TensorArg(fake_device_ptr(5), dl_i32(), {B, pages_per_seq});
  } else {
    const std::vector<int64_t> cache = {B + 1, d.num_kv_heads, d.max_seq_len, d_k};
    f.k_cache = TensorArg(fake_device_ptr(2), half, cache);
    f.v_cache = TensorArg(fake_device_ptr(3), half, cache);
  }
  f.seq_lens = TensorArg(fake_device_ptr(4), dl_i32(), {B});
  f.out = TensorArg(fake_device_ptr(6), half, {B, d.q_len, d.num_q_heads, d_k});
  f.lse = TensorArg(fake_device_ptr(7), dl_f32(), {B, d.q_len, d.num_q_heads});
  f.indices = TensorArg(fake_device_ptr(8), dl_i32(), {B, d.q_len, sel_heads, max_k});
  return f;
}

tka_status run_call(const tka_plan* plan, const FakeCall& f) {
  const tka_tensors t = f.tensors();
  return tka_plan_run(plan, &t, f.workspace, nullptr);
}

// One compile-only runtime with two plans, made on first use and shared by the validation tests
// (each compile costs real time); removed by the environment at the end of the run. CTest runs
// every test in a process of its own: through a cache folder that they share, the first process
// compiles the plans and the others load them (the tests of the counters use folders of their own).
struct SharedPlans {
  RuntimePtr rt;
  tka_op_desc contiguous = contiguous_desc(), paged = paged_desc();
  PlanPtr contiguous_plan, paged_plan;
  int contiguous_max_k = 0, paged_max_k = 0;
  std::string error;

  SharedPlans() {
    try {
      rt = compile_only_runtime(TOPKATTN_TEST_SHARED_CACHE);
      contiguous_plan = plan_for(rt.get(), contiguous);
      paged_plan = plan_for(rt.get(), paged);
      tka_ok(tka_plan_max_k(contiguous_plan.get(), &contiguous_max_k), "tka_plan_max_k");
      tka_ok(tka_plan_max_k(paged_plan.get(), &paged_max_k), "tka_plan_max_k");
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  const tka_plan* plan(bool paged_layout) const { return paged_layout ? paged_plan.get() : contiguous_plan.get(); }
  const tka_decode_desc& desc(bool paged_layout) const { return paged_layout ? paged.decode : contiguous.decode; }
  int max_k(bool paged_layout) const { return paged_layout ? paged_max_k : contiguous_max_k; }
};

SharedPlans*& shared_slot() {
  static SharedPlans* s = nullptr;
  return s;
}

SharedPlans& shared_plans() {
  static std::once_flag once;
  std::call_once(once, [] { shared_slot() = new SharedPlans(); });
  return *shared_slot();
}

class SharedPlansCleanup : public ::testing::Environment {
 public:
  void TearDown() override {
    delete shared_slot();
    shared_slot() = nullptr;
  }
};
[[maybe_unused]] ::testing::Environment* const kCleanup = ::testing::AddGlobalTestEnvironment(new SharedPlansCleanup);

#define ASSERT_SHARED_PLANS() ASSERT_EQ(shared_plans().error, "") << "compile-only setup failed"

// ---- status strings and errors -------------------------------------------------------------

TEST(CApi, VersionMatchesHeader) {
  const std::string want = std::to_string(TKA_VERSION_MAJOR) + "." + std::to_string(TKA_VERSION_MINOR) + "." +
                           std::to_string(TKA_VERSION_PATCH);
  ASSERT_NE(tka_version(), nullptr);
  EXPECT_EQ(std::string(tka_version()), want);
  EXPECT_EQ(tka_abi_version(), TKA_ABI_VERSION);
}

TEST(CApi, StatusStringsAreNonEmptyAndDistinct) {
  std::set<std::string> seen;
  for (int s = TKA_SUCCESS; s <= TKA_ERROR_INTERNAL; ++s) {
    const char* text = tka_status_string(static_cast<tka_status>(s));
    ASSERT_NE(text, nullptr) << "status " << s;
    EXPECT_STRNE(text, "") << "status " << s;
    EXPECT_TRUE(seen.insert(text).second) << "status " << s << " repeats \"" << text << "\"";
  }
  // A C caller may print whatever it got back.
  EXPECT_NE(tka_status_string(static_cast<tka_status>(999)), nullptr);
}

TEST(CApi, InitFunctionsSetTheDocumentedDefaults) {
  tka_runtime_options o;
  std::memset(&o, 0x5a, sizeof o);
  tka_runtime_options_init(&o);
  EXPECT_EQ(o.device_ordinal, 0);
  EXPECT_EQ(o.cache_dir, nullptr);
  EXPECT_EQ(o.compile_only_sm, 0);
  tka_op_desc d;
  std::memset(&d, 0x5a, sizeof d);
  tka_op_desc_init(&d, TKA_OP_TOPK_DECODE);
  EXPECT_EQ(d.op, TKA_OP_TOPK_DECODE);
  EXPECT_EQ(d.decode.head_dim_v, 0) << "0 means: same as head_dim";
  EXPECT_EQ(d.decode.scale, 0.0f) << "0 means: 1/sqrt(head_dim)";
}

TEST(CApi, LastErrorStartsEmptyOnAFreshThread) {
  std::string seen = "unset";
  std::thread([&] { seen = tka_last_error(); }).join();
  EXPECT_EQ(seen, "");
}

TEST(CApi, LastErrorNamesTheFieldAndIsThreadLocal) {
  ASSERT_SHARED_PLANS();
  tka_runtime* rt = shared_plans().rt.get();
  tka_op_desc bad_dim = contiguous_desc();
  bad_dim.decode.head_dim = 96;
  tka_plan* p = nullptr;
  ASSERT_NE(tka_plan_create(rt, &bad_dim, &p), TKA_SUCCESS);
  const std::string mine = tka_last_error();
  EXPECT_TRUE(mentions(mine, "head_dim")) << mine;

  std::string theirs;
  std::thread([&] {
    tka_op_desc bad_len = contiguous_desc();
    bad_len.decode.q_len = 0;
    tka_plan* q = nullptr;
    tka_plan_create(rt, &bad_len, &q);
    theirs = tka_last_error();
  }).join();
  EXPECT_TRUE(mentions(theirs, "q_len")) << theirs;
  EXPECT_EQ(std::string(tka_last_error()), mine) << "another thread's failure changed this thread's message";
}

TEST(CApi, RuntimeCreateWithoutGpuSaysNoDevice) {
  std::string why;
  const bool gpu = gpu_present(&why);
  tka_runtime* rt = nullptr;
  const tka_status s = tka_runtime_create(nullptr, &rt);
  if (gpu) {  // on the GPU machine the same test checks the success path
    EXPECT_EQ(s, TKA_SUCCESS) << tka_last_error();
    EXPECT_NE(rt, nullptr);
    if (rt) {
      EXPECT_EQ(tka_runtime_destroy(rt), TKA_SUCCESS);
    }
    return;
  }
  EXPECT_EQ(s, TKA_ERROR_NO_DEVICE) << status_name(s) << ": " << tka_last_error() << " (cudart says: " << why << ")";
  const std::string msg = lower(tka_last_error());
  EXPECT_TRUE(msg.find("driver") != std::string::npos || msg.find("gpu") != std::string::npos ||
              msg.find("libcuda") != std::string::npos)
      << "the message should say that the driver or a GPU is missing: " << tka_last_error();
}

TEST(CApi, CompileOnlyArchMustBeATarget) {
  for (int sm : {70, 85, 91, 1000}) {
    tka_runtime_options o;
    tka_runtime_options_init(&o);
    o.compile_only_sm = sm;
    tka_runtime* rt = nullptr;
    EXPECT_EQ(tka_runtime_create(&o, &rt), TKA_ERROR_UNSUPPORTED) << sm;
    EXPECT_EQ(rt, nullptr);
    EXPECT_TRUE(mentions(tka_last_error(), "options.compile_only_sm")) << tka_last_error();
  }
}

TEST(CApi, NullPointersAreRejected) {
  ASSERT_SHARED_PLANS();
  const SharedPlans& sp = shared_plans();
  tka_runtime* rt = sp.rt.get();
  const tka_plan* plan = sp.contiguous_plan.get();
  tka_runtime_options o;
  tka_runtime_options_init(&o);
  o.compile_only_sm = 90;
  tka_plan* p = nullptr;
  size_t bytes = 0;
  int k = 0;
  const FakeCall f = valid_call(sp.contiguous.decode, sp.contiguous_max_k);
  const tka_tensors t = f.tensors();
  const std::pair<const char*, std::function<tka_status()>> calls[] = {
      {"tka_runtime_create(options, NULL)", [&] { return tka_runtime_create(&o, nullptr); }},
      {"tka_plan_create(NULL runtime)", [&] { return tka_plan_create(nullptr, &sp.contiguous, &p); }},
      {"tka_plan_create(NULL desc)", [&] { return tka_plan_create(rt, nullptr, &p); }},
      {"tka_plan_create(NULL plan out)", [&] { return tka_plan_create(rt, &sp.contiguous, nullptr); }},
      {"tka_plan_workspace_size(NULL plan)", [&] { return tka_plan_workspace_size(nullptr, &bytes); }},
      {"tka_plan_workspace_size(NULL bytes)", [&] { return tka_plan_workspace_size(plan, nullptr); }},
      {"tka_plan_max_k(NULL plan)", [&] { return tka_plan_max_k(nullptr, &k); }},
      {"tka_plan_max_k(NULL max_k)", [&] { return tka_plan_max_k(plan, nullptr); }},
      {"tka_get_counters(NULL)", [&] { return tka_get_counters(nullptr); }},
      {"tka_plan_run(NULL plan)", [&] { return tka_plan_run(nullptr, &t, f.workspace, nullptr); }},
      {"tka_plan_run(NULL tensors)", [&] { return tka_plan_run(plan, nullptr, f.workspace, nullptr); }},
  };
  for (const auto& [name, call] : calls) {
    const tka_status s = call();
    EXPECT_EQ(s, TKA_ERROR_NULL_POINTER) << name << " returned " << status_name(s);
    EXPECT_STRNE(tka_last_error(), "") << name;
  }
  EXPECT_EQ(p, nullptr);
}

// ---- compile-only runtime, cache counters ---------------------------------------------------

// Descriptors that no other test compiles, so that the process-wide counters move only for us.
tka_op_desc counter_desc_a() {
  tka_op_desc d = contiguous_desc();
  d.decode.num_q_heads = 6;
  d.decode.num_kv_heads = 3;
  d.decode.head_dim = 64;
  d.decode.q_len = 3;
  d.decode.top_k = 32;
  d.decode.max_batch = 2;
  d.decode.max_seq_len = 512;
  return d;
}

tka_op_desc counter_desc_b() {
  tka_op_desc d = paged_desc();
  d.decode.num_q_heads = 10;
  d.decode.num_kv_heads = 5;
  d.decode.q_len = 5;
  d.decode.top_k = 48;
  d.decode.top_k_ratio = 0.0f;
  d.decode.n_sink = 0;
  d.decode.n_local = 0;
  d.decode.page_size = 32;
  d.decode.max_batch = 3;
  d.decode.max_seq_len = 777;
  return d;
}

TEST(CApiCache, CompileOnlyPlanCompilesThenASecondRuntimeReadsTheDisk) {
  ScratchDir dir;  // a fresh cache folder keeps the counters predictable
  const tka_op_desc desc = counter_desc_a();
  const tka_counters before = counters();
  uint64_t compiled = 0;
  {
    RuntimePtr rt = compile_only_runtime(dir.path());
    const std::string cache = tka_runtime_cache_dir(rt.get());
    EXPECT_EQ(cache.rfind(dir.path(), 0), 0u) << "cache folder " << cache << " is not under " << dir.path();
    PlanPtr plan = plan_for(rt.get(), desc);
    const tka_counters after = counters();
    compiled = after.nvrtc_compiles - before.nvrtc_compiles;
    EXPECT_GE(compiled, 1u) << "a fresh cache folder must mean an NVRTC compile";
    EXPECT_GT(after.compile_ms, before.compile_ms);
    size_t ws = 0;
    EXPECT_EQ(tka_plan_workspace_size(plan.get(), &ws), TKA_SUCCESS) << tka_last_error();
    EXPECT_GT(ws, 0u) << "decode keeps one step's fp32 scores in the workspace";
  }
  const tka_counters mid = counters();
  {
    // A second runtime stands in for a second process: the kernels must come from the disk.
    RuntimePtr rt = compile_only_runtime(dir.path());
    PlanPtr plan = plan_for(rt.get(), desc);
  }
  const tka_counters end = counters();
  EXPECT_EQ(end.nvrtc_compiles - mid.nvrtc_compiles, 0u) << "the second start compiled again";
  EXPECT_GE(end.disk_hits - mid.disk_hits, 1u)
      << "no disk hit (memory hits: " << end.memory_hits - mid.memory_hits << ")";
  EXPECT_EQ(end.corrupt_entries - before.corrupt_entries, 0u);
}

TEST(CApiCache, EightThreadsCreatingOnePlanCompileItOnce) {
  ScratchDir dir;  // a fresh cache folder keeps the counters predictable
  const tka_op_desc desc = counter_desc_b();
  constexpr int kThreads = 8;
  std::vector<tka_status> status(kThreads, TKA_ERROR_INTERNAL);
  std::vector<std::string> errors(kThreads);
  std::vector<tka_plan*> plans(kThreads, nullptr);
  const tka_counters before = counters();
  {
    RuntimePtr rt = compile_only_runtime(dir.path());
    run_together(kThreads, [&](int t) {
      status[t] = tka_plan_create(rt.get(), &desc, &plans[t]);
      if (status[t] != TKA_SUCCESS) errors[t] = tka_last_error();
      return std::string();
    });
    for (int t = 0; t < kThreads; ++t) {
      EXPECT_EQ(status[t], TKA_SUCCESS) << "thread " << t << ": " << errors[t];
      tka_plan_destroy(plans[t]);
    }
  }
  const tka_counters mid = counters();
  // How many kernels one plan loads: count what a later start finds in the cache.
  {
    RuntimePtr rt = compile_only_runtime(dir.path());
    PlanPtr plan = plan_for(rt.get(), desc);
  }
  const tka_counters end = counters();
  const uint64_t per_plan = (end.disk_hits - mid.disk_hits) + (end.memory_hits - mid.memory_hits);
  EXPECT_GE(per_plan, 1u);
  EXPECT_EQ(mid.nvrtc_compiles - before.nvrtc_compiles, per_plan)
      << "8 threads creating one plan must compile each of its kernels exactly once";
}

// ---- compile-only plans: queries and tka_plan_run ------------------------------------------

TEST(CompileOnly, WorkspaceSizeIsPositive) {
  ASSERT_SHARED_PLANS();
  for (bool paged : {false, true}) {
    size_t ws = 0;
    EXPECT_EQ(tka_plan_workspace_size(shared_plans().plan(paged), &ws), TKA_SUCCESS) << tka_last_error();
    EXPECT_GT(ws, 0u) << (paged ? "paged" : "contiguous");
  }
}

TEST(CompileOnly, MaxKFollowsTheDescriptor) {
  ASSERT_SHARED_PLANS();
  const SharedPlans& sp = shared_plans();
  EXPECT_EQ(sp.contiguous_max_k, 64) << "count mode: top_k";
  EXPECT_EQ(sp.paged_max_k, expected_max_k(sp.paged.decode)) << "ratio mode: ceil(ratio * max_seq_len) in double";
  // Ratio mode where the forced keys outnumber ceil(ratio * max_seq_len) = 1.
  tka_op_desc forced = paged_desc();
  forced.decode.top_k_ratio = 0.01f;
  forced.decode.max_seq_len = 100;
  forced.decode.n_sink = 4;
  forced.decode.n_local = 8;
  PlanPtr plan = plan_for(sp.rt.get(), forced);
  int k = 0;
  ASSERT_EQ(tka_plan_max_k(plan.get(), &k), TKA_SUCCESS) << tka_last_error();
  EXPECT_EQ(k, 12) << "at least n_sink + n_local";
  // Forced keys past int: every key, no wrap-around to a narrow row.
  forced.decode.n_sink = forced.decode.n_local = std::numeric_limits<int>::max();
  plan = plan_for(sp.rt.get(), forced);
  ASSERT_EQ(tka_plan_max_k(plan.get(), &k), TKA_SUCCESS) << tka_last_error();
  EXPECT_EQ(k, 100) << "n_sink + n_local above max_seq_len keeps every key";
}

TEST(CompileOnly, SpecStartsWithOpDecode) {
  ASSERT_SHARED_PLANS();
  const std::string a = tka_plan_spec(shared_plans().plan(false));
  const std::string b = tka_plan_spec(shared_plans().plan(true));
  EXPECT_EQ(a.rfind("op=decode", 0), 0u) << a;
  EXPECT_EQ(b.rfind("op=decode", 0), 0u) << b;
  EXPECT_NE(a, b) << "different descriptors, same spec text";
  // The launch-time choices close the text, the selection's split (0..3) last.
  EXPECT_TRUE(std::regex_search(a, std::regex(";sw=\\d+;am=\\d+;ssp=[0-3]$"))) << a;
}

TEST(CompileOnly, ValidCallsPassValidationThenSayNoDevice) {
  ASSERT_SHARED_PLANS();
  const SharedPlans& sp = shared_plans();
  for (bool paged : {false, true})
    for (int optional = 0; optional < 4; ++optional) {
      FakeCall f = valid_call(sp.desc(paged), sp.max_k(paged));
      if (!(optional & 1)) f.dropped.insert("lse");
      if (!(optional & 2)) f.dropped.insert("indices");
      const tka_status s = run_call(sp.plan(paged), f);
      EXPECT_EQ(s, TKA_ERROR_NO_DEVICE) << (paged ? "paged" : "contiguous") << ", lse " << (optional & 1)
                                        << ", indices " << (optional >> 1) << ": " << status_name(s) << ": "
                                        << tka_last_error();
    }
  // B < max_batch and a contiguous cache with more batch entries than B are both fine.
  FakeCall f = valid_call(sp.contiguous.decode, sp.contiguous_max_k, 1);
  EXPECT_EQ(run_call(sp.plan(false), f), TKA_ERROR_NO_DEVICE) << tka_last_error();
}

// DLPack: NULL strides mean compact row-major.
TEST(CompileOnly, NullStridesMeanCompact) {
  ASSERT_SHARED_PLANS();
  const SharedPlans& sp = shared_plans();
  FakeCall f = valid_call(sp.contiguous.decode, sp.contiguous_max_k);
  for (TensorArg* t : {&f.q, &f.k_cache, &f.v_cache, &f.seq_lens, &f.out, &f.lse, &f.indices}) t->use_null_strides();
  EXPECT_EQ(run_call(sp.plan(false), f), TKA_ERROR_NO_DEVICE) << tka_last_error();
}

TEST(CompileOnly, WorkspaceMustBePresentAndAligned) {
  ASSERT_SHARED_PLANS();
  const SharedPlans& sp = shared_plans();
  for (int misalign : {-1, 128, 8}) {  // -1: NULL
    FakeCall f = valid_call(sp.contiguous.decode, sp.contiguous_max_k);
    f.workspace = misalign < 0 ? nullptr : offset_ptr(f.workspace, misalign);
    const tka_status s = run_call(sp.plan(false), f);
    EXPECT_EQ(s, TKA_ERROR_WORKSPACE) << "workspace " << f.workspace << ": " << status_name(s) << ": "
                                      << tka_last_error();
    EXPECT_TRUE(mentions(tka_last_error(), "workspace")) << tka_last_error();
  }
}

// ---- descriptor validation -----------------------------------------------------------------

struct DescCase {
  std::string name;
  bool paged_base;
  std::function<void(tka_decode_desc&)> mutate;
  std::vector<tka_status> allowed;  // "invalid" vs "valid but not implemented" is open for some
  std::vector<std::string> fields;  // the message names one of them
};
void PrintTo(const DescCase& c, std::ostream* os) { *os << c.name; }

const std::vector<tka_status> kInvalid = {TKA_ERROR_INVALID_ARGUMENT};
const std::vector<tka_status> kInvalidOrUnsupported = {TKA_ERROR_INVALID_ARGUMENT, TKA_ERROR_UNSUPPORTED};

std::vector<DescCase> desc_cases() {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // One case a line (or two): the table reads as the list of what is rejected.
  // clang-format off
  return {
      {"head_dim_96", false, [](tka_decode_desc& d) { d.head_dim = 96; }, {TKA_ERROR_UNSUPPORTED}, {"head_dim"}},
      {"heads_not_divisible", false, [](tka_decode_desc& d) { d.num_q_heads = 12; d.num_kv_heads = 8; }, kInvalid,
       {"num_q_heads", "num_kv_heads"}},
      {"num_kv_heads_0", false, [](tka_decode_desc& d) { d.num_kv_heads = 0; }, kInvalid, {"num_kv_heads"}},
      {"num_q_heads_0", false, [](tka_decode_desc& d) { d.num_q_heads = 0; }, kInvalid, {"num_q_heads"}},
      {"group_32", false, [](tka_decode_desc& d) { d.num_q_heads = 32; d.num_kv_heads = 1; }, kInvalidOrUnsupported,
       {"num_q_heads", "num_kv_heads", "group"}},
      {"q_len_0", false, [](tka_decode_desc& d) { d.q_len = 0; }, kInvalid, {"q_len"}},
      {"q_len_17", false, [](tka_decode_desc& d) { d.q_len = 17; }, kInvalidOrUnsupported, {"q_len"}},
      {"top_k_0_ratio_0", false, [](tka_decode_desc& d) { d.top_k = 0; d.top_k_ratio = 0.0f; }, kInvalid,
       {"top_k", "top_k_ratio"}},
      {"top_k_negative", false, [](tka_decode_desc& d) { d.top_k = -5; }, kInvalid, {"top_k"}},
      {"ratio_above_1", false, [](tka_decode_desc& d) { d.top_k = 0; d.top_k_ratio = 1.5f; }, kInvalid, {"top_k_ratio"}},
      {"ratio_negative", false, [](tka_decode_desc& d) { d.top_k = 0; d.top_k_ratio = -0.5f; }, kInvalid,
       {"top_k_ratio"}},
      {"ratio_nan", false, [nan](tka_decode_desc& d) { d.top_k = 0; d.top_k_ratio = nan; }, kInvalid, {"top_k_ratio"}},
      {"top_k_8193", false, [](tka_decode_desc& d) { d.top_k = 8193; }, kInvalidOrUnsupported, {"top_k"}},
      {"sink_plus_local_above_top_k", false, [](tka_decode_desc& d) { d.n_sink = 40; d.n_local = 40; }, kInvalid,
       {"n_sink", "n_local"}},
      {"n_sink_negative", false, [](tka_decode_desc& d) { d.n_sink = -1; }, kInvalid, {"n_sink"}},
      {"n_local_negative", false, [](tka_decode_desc& d) { d.n_local = -1; }, kInvalid, {"n_local"}},
      {"page_size_8", true, [](tka_decode_desc& d) { d.page_size = 8; }, kInvalidOrUnsupported, {"page_size"}},
      {"page_size_512", true, [](tka_decode_desc& d) { d.page_size = 512; }, kInvalidOrUnsupported, {"page_size"}},
      {"max_batch_0", false, [](tka_decode_desc& d) { d.max_batch = 0; }, kInvalid, {"max_batch"}},
      {"max_seq_len_0", false, [](tka_decode_desc& d) { d.max_seq_len = 0; }, kInvalid, {"max_seq_len"}},
      {"scale_negative", false, [](tka_decode_desc& d) { d.scale = -1.0f; }, kInvalid, {"scale"}},
      {"scale_nan", false, [nan](tka_decode_desc& d) { d.scale = nan; }, kInvalid, {"scale"}},
      {"dtype_enum", false, [](tka_decode_desc& d) { d.dtype = static_cast<tka_dtype>(7); }, kInvalid, {"dtype"}},
      {"select_enum", false, [](tka_decode_desc& d) { d.select = static_cast<tka_select_mode>(5); }, kInvalid,
       {"select"}},
      {"kv_layout_enum", false, [](tka_decode_desc& d) { d.kv_layout = static_cast<tka_kv_layout>(9); }, kInvalid,
       {"kv_layout"}},
      {"head_dim_v_differs", false, [](tka_decode_desc& d) { d.head_dim_v = 64; }, kInvalidOrUnsupported,
       {"head_dim_v"}},
      // Sums and products that would overflow int, and limits that keep the grids and rows in range.
      {"sink_plus_local_overflows_int", false,
       [](tka_decode_desc& d) { d.n_sink = std::numeric_limits<int>::max(); d.n_local = 1; }, kInvalid,
       {"n_sink", "n_local"}},
      {"max_batch_65536", false, [](tka_decode_desc& d) { d.max_batch = 65536; }, kInvalid, {"max_batch"}},
      {"num_q_heads_2048", false, [](tka_decode_desc& d) { d.num_q_heads = 2048; d.num_kv_heads = 128; }, kInvalid,
       {"num_q_heads"}},
  };
  // clang-format on
}

class DescValidation : public ::testing::TestWithParam<DescCase> {};

TEST_P(DescValidation, RejectsAndNamesTheField) {
  ASSERT_SHARED_PLANS();
  const DescCase& c = GetParam();
  tka_op_desc desc = c.paged_base ? paged_desc() : contiguous_desc();
  c.mutate(desc.decode);
  tka_plan* plan = nullptr;
  const tka_status s = tka_plan_create(shared_plans().rt.get(), &desc, &plan);
  const std::string msg = tka_last_error();
  if (plan) tka_plan_destroy(plan);
  EXPECT_NE(std::find(c.allowed.begin(), c.allowed.end(), s), c.allowed.end())
      << "got " << status_name(s) << ": " << msg;
  EXPECT_TRUE(mentions_any(msg, c.fields)) << "message does not name the field: \"" << msg << "\"";
}

INSTANTIATE_TEST_SUITE_P(Desc, DescValidation, ::testing::ValuesIn(desc_cases()),
                         [](const ::testing::TestParamInfo<DescCase>& i) { return i.param.name; });

TEST(DescValidationOp, BadOpEnumIsInvalid) {
  ASSERT_SHARED_PLANS();
  tka_op_desc desc = contiguous_desc();
  desc.op = static_cast<tka_op_kind>(99);
  tka_plan* plan = nullptr;
  const tka_status s = tka_plan_create(shared_plans().rt.get(), &desc, &plan);
  const std::string msg = tka_last_error();
  if (plan) tka_plan_destroy(plan);
  EXPECT_EQ(s, TKA_ERROR_INVALID_ARGUMENT) << status_name(s) << ": " << msg;
  EXPECT_TRUE(mentions(msg, "op")) << msg;
}

// ---- tensor validation ---------------------------------------------------------------------

struct TensorCase {
  std::string name;
  bool paged_plan;
  std::function<void(FakeCall&, const tka_decode_desc&, int max_k)> mutate;
  tka_status expect;
  std::vector<std::string> fields;
};
void PrintTo(const TensorCase& c, std::ostream* os) { *os << c.name; }

using Mut = std::function<void(FakeCall&, const tka_decode_desc&, int)>;

Mut drop(const char* name) {
  return [name](FakeCall& f, const tka_decode_desc&, int) { f.dropped.insert(name); };
}
Mut retype(TensorArg FakeCall::*t, DLDataType dt) {
  return [t, dt](FakeCall& f, const tka_decode_desc&, int) { (f.*t).dl().dtype = dt; };
}
Mut reshape_dim(TensorArg FakeCall::*t, int dim, int64_t value) {
  return [t, dim, value](FakeCall& f, const tka_decode_desc&, int) { (f.*t).shape[dim] = value; };
}
Mut drop_dim(TensorArg FakeCall::*t) {
  return [t](FakeCall& f, const tka_decode_desc&, int) {
    std::vector<int64_t> s = (f.*t).shape;
    s.pop_back();
    (f.*t).set_dims(s);
  };
}
Mut add_dim(TensorArg FakeCall::*t) {
  return [t](FakeCall& f, const tka_decode_desc&, int) {
    std::vector<int64_t> s = (f.*t).shape;
    s.push_back(1);
    (f.*t).set_dims(s);
  };
}
Mut inner_stride_2(TensorArg FakeCall::*t) {
  return [t](FakeCall& f, const tka_decode_desc&, int) {
    std::vector<int64_t> s = (f.*t).shape;
    std::vector<int64_t> st = row_major_strides(s);
    for (int64_t& x : st) x *= 2;  // consistent, just not unit-stride innermost
    (f.*t).set_dims(s, st);
  };
}
// Rows of head_dim + 4 elements: 8 bytes, not 16, for 16-bit types.
Mut row_pitch_plus_4(TensorArg FakeCall::*t) {
  return [t](FakeCall& f, const tka_decode_desc&, int) {
    std::vector<int64_t> s = (f.*t).shape, row = s;
    row.back() += 4;
    std::vector<int64_t> st = row_major_strides(row);
    (f.*t).set_dims(s, st);
  };
}
Mut misalign(TensorArg FakeCall::*t, int bytes) {
  return
      [t, bytes](FakeCall& f, const tka_decode_desc&, int) { (f.*t).dl().data = offset_ptr((f.*t).dl().data, bytes); };
}
Mut move_to(TensorArg FakeCall::*t, DLDeviceType type, int id) {
  return [t, type, id](FakeCall& f, const tka_decode_desc&, int) { (f.*t).dl().device = DLDevice{type, id}; };
}

std::vector<TensorCase> tensor_cases() {
  using F = FakeCall;
  DLDataType two_lanes = dl_half(TKA_DTYPE_BF16);
  two_lanes.lanes = 2;
  const bool C = false, P = true;  // which shared plan: contiguous bf16 per-head / paged fp16 per-group
  // One case a line (or two): the table reads as the list of what is rejected.
  // clang-format off
  return {
      // NULL required tensors
      {"q_null", C, drop("q"), TKA_ERROR_NULL_POINTER, {"q"}},
      {"k_cache_null", C, drop("k_cache"), TKA_ERROR_NULL_POINTER, {"k_cache"}},
      {"v_cache_null", P, drop("v_cache"), TKA_ERROR_NULL_POINTER, {"v_cache"}},
      {"seq_lens_null", C, drop("seq_lens"), TKA_ERROR_NULL_POINTER, {"seq_lens"}},
      {"out_null", P, drop("out"), TKA_ERROR_NULL_POINTER, {"out"}},
      {"block_table_missing_in_paged_mode", P, drop("block_table"), TKA_ERROR_NULL_POINTER, {"block_table"}},
      // dtype
      {"q_fp16_on_bf16_plan", C, retype(&F::q, dl_half(TKA_DTYPE_FP16)), TKA_ERROR_TENSOR_DTYPE, {"q"}},
      {"q_two_lanes", C, retype(&F::q, two_lanes), TKA_ERROR_TENSOR_DTYPE, {"q"}},
      {"k_cache_f32", C, retype(&F::k_cache, dl_f32()), TKA_ERROR_TENSOR_DTYPE, {"k_cache"}},
      {"v_cache_bf16_on_fp16_plan", P, retype(&F::v_cache, dl_half(TKA_DTYPE_BF16)), TKA_ERROR_TENSOR_DTYPE, {"v_cache"}},
      {"out_bf16_on_fp16_plan", P, retype(&F::out, dl_half(TKA_DTYPE_BF16)), TKA_ERROR_TENSOR_DTYPE, {"out"}},
      {"seq_lens_i64", C, retype(&F::seq_lens, dl_i64()), TKA_ERROR_TENSOR_DTYPE, {"seq_lens"}},
      {"block_table_i64", P, retype(&F::block_table, dl_i64()), TKA_ERROR_TENSOR_DTYPE, {"block_table"}},
      {"lse_bf16", C, retype(&F::lse, dl_half(TKA_DTYPE_BF16)), TKA_ERROR_TENSOR_DTYPE, {"lse"}},
      {"indices_i64", P, retype(&F::indices, dl_i64()), TKA_ERROR_TENSOR_DTYPE, {"indices"}},
      // ndim and shape
      {"q_ndim_3", C, drop_dim(&F::q), TKA_ERROR_TENSOR_SHAPE, {"q"}},
      {"q_q_len", C, reshape_dim(&F::q, 1, 1), TKA_ERROR_TENSOR_SHAPE, {"q"}},
      {"q_head_count", C, reshape_dim(&F::q, 2, 4), TKA_ERROR_TENSOR_SHAPE, {"q"}},
      {"q_head_dim", P, reshape_dim(&F::q, 3, 128), TKA_ERROR_TENSOR_SHAPE, {"q"}},
      {"out_head_dim", C, reshape_dim(&F::out, 3, 64), TKA_ERROR_TENSOR_SHAPE, {"out"}},
      {"out_head_count", P, reshape_dim(&F::out, 2, 2), TKA_ERROR_TENSOR_SHAPE, {"out"}},
      {"out_batch", C, reshape_dim(&F::out, 0, 1), TKA_ERROR_TENSOR_SHAPE, {"out"}},
      {"batch_above_max_batch", C,
       [](FakeCall& f, const tka_decode_desc& d, int k) { f = valid_call(d, k, d.max_batch + 1); },
       TKA_ERROR_TENSOR_SHAPE, {"q", "max_batch", "batch"}},
      {"seq_lens_length", C, reshape_dim(&F::seq_lens, 0, 3), TKA_ERROR_TENSOR_SHAPE, {"seq_lens"}},
      {"seq_lens_ndim_2", P, add_dim(&F::seq_lens), TKA_ERROR_TENSOR_SHAPE, {"seq_lens"}},
      {"k_cache_kv_heads", C, reshape_dim(&F::k_cache, 1, 4), TKA_ERROR_TENSOR_SHAPE, {"k_cache"}},
      {"k_cache_fewer_batch_entries_than_B", C, reshape_dim(&F::k_cache, 0, 1), TKA_ERROR_TENSOR_SHAPE, {"k_cache"}},
      {"k_cache_head_dim", C, reshape_dim(&F::k_cache, 3, 64), TKA_ERROR_TENSOR_SHAPE, {"k_cache"}},
      {"k_cache_ndim_5", P, add_dim(&F::k_cache), TKA_ERROR_TENSOR_SHAPE, {"k_cache"}},
      {"v_cache_head_dim", C, reshape_dim(&F::v_cache, 3, 64), TKA_ERROR_TENSOR_SHAPE, {"v_cache"}},
      {"k_cache_page_size", P, reshape_dim(&F::k_cache, 1, 32), TKA_ERROR_TENSOR_SHAPE, {"k_cache"}},
      {"v_cache_kv_heads_paged", P, reshape_dim(&F::v_cache, 2, 1), TKA_ERROR_TENSOR_SHAPE, {"v_cache"}},
      {"block_table_rows", P, reshape_dim(&F::block_table, 0, 1), TKA_ERROR_TENSOR_SHAPE, {"block_table"}},
      {"block_table_ndim_1", P, drop_dim(&F::block_table), TKA_ERROR_TENSOR_SHAPE, {"block_table"}},
      {"lse_head_count", C, reshape_dim(&F::lse, 2, 9), TKA_ERROR_TENSOR_SHAPE, {"lse"}},
      {"indices_last_dim_short", C,
       [](FakeCall& f, const tka_decode_desc&, int k) { f.indices.shape[3] = k - 1; }, TKA_ERROR_TENSOR_SHAPE,
       {"indices"}},
      {"indices_last_dim_long", P,
       [](FakeCall& f, const tka_decode_desc&, int k) { f.indices.shape[3] = k + 1; }, TKA_ERROR_TENSOR_SHAPE,
       {"indices"}},
      {"indices_kv_heads_in_per_head_mode", C, reshape_dim(&F::indices, 2, 2), TKA_ERROR_TENSOR_SHAPE, {"indices"}},
      {"indices_q_heads_in_per_group_mode", P, reshape_dim(&F::indices, 2, 8), TKA_ERROR_TENSOR_SHAPE, {"indices"}},
      // innermost stride
      {"q_inner_stride_2", C, inner_stride_2(&F::q), TKA_ERROR_TENSOR_STRIDE, {"q"}},
      {"k_cache_inner_stride_2", P, inner_stride_2(&F::k_cache), TKA_ERROR_TENSOR_STRIDE, {"k_cache"}},
      {"v_cache_inner_stride_2", C, inner_stride_2(&F::v_cache), TKA_ERROR_TENSOR_STRIDE, {"v_cache"}},
      {"out_inner_stride_2", P, inner_stride_2(&F::out), TKA_ERROR_TENSOR_STRIDE, {"out"}},
      // alignment
      {"q_misaligned", C, misalign(&F::q, 2), TKA_ERROR_TENSOR_ALIGNMENT, {"q"}},
      {"k_cache_misaligned", P, misalign(&F::k_cache, 2), TKA_ERROR_TENSOR_ALIGNMENT, {"k_cache"}},
      {"v_cache_misaligned", C, misalign(&F::v_cache, 2), TKA_ERROR_TENSOR_ALIGNMENT, {"v_cache"}},
      {"out_misaligned", C, misalign(&F::out, 2), TKA_ERROR_TENSOR_ALIGNMENT, {"out"}},
      {"seq_lens_misaligned", C, misalign(&F::seq_lens, 2), TKA_ERROR_TENSOR_ALIGNMENT, {"seq_lens"}},
      {"block_table_misaligned", P, misalign(&F::block_table, 2), TKA_ERROR_TENSOR_ALIGNMENT, {"block_table"}},
      {"lse_misaligned", C, misalign(&F::lse, 2), TKA_ERROR_TENSOR_ALIGNMENT, {"lse"}},
      {"indices_misaligned", P, misalign(&F::indices, 2), TKA_ERROR_TENSOR_ALIGNMENT, {"indices"}},
      {"q_row_pitch_not_16_bytes", C, row_pitch_plus_4(&F::q), TKA_ERROR_TENSOR_ALIGNMENT, {"q"}},
      {"k_cache_row_pitch_not_16_bytes", C, row_pitch_plus_4(&F::k_cache), TKA_ERROR_TENSOR_ALIGNMENT, {"k_cache"}},
      {"v_cache_row_pitch_not_16_bytes", P, row_pitch_plus_4(&F::v_cache), TKA_ERROR_TENSOR_ALIGNMENT, {"v_cache"}},
      {"out_row_pitch_not_16_bytes", P, row_pitch_plus_4(&F::out), TKA_ERROR_TENSOR_ALIGNMENT, {"out"}},
      // device
      {"q_on_cpu", C, move_to(&F::q, kDLCPU, 0), TKA_ERROR_TENSOR_DEVICE, {"q"}},
      {"k_cache_on_device_1", C, move_to(&F::k_cache, kDLCUDA, 1), TKA_ERROR_TENSOR_DEVICE, {"k_cache"}},
      {"v_cache_on_cpu", P, move_to(&F::v_cache, kDLCPU, 0), TKA_ERROR_TENSOR_DEVICE, {"v_cache"}},
      {"seq_lens_on_cpu", C, move_to(&F::seq_lens, kDLCPU, 0), TKA_ERROR_TENSOR_DEVICE, {"seq_lens"}},
      {"block_table_on_device_1", P, move_to(&F::block_table, kDLCUDA, 1), TKA_ERROR_TENSOR_DEVICE, {"block_table"}},
      {"out_on_device_1", P, move_to(&F::out, kDLCUDA, 1), TKA_ERROR_TENSOR_DEVICE, {"out"}},
      {"lse_on_cpu", C, move_to(&F::lse, kDLCPU, 0), TKA_ERROR_TENSOR_DEVICE, {"lse"}},
      {"indices_on_cpu", P, move_to(&F::indices, kDLCPU, 0), TKA_ERROR_TENSOR_DEVICE, {"indices"}},
      // shapes and strides whose arithmetic would overflow, NULL data they would hide, NULL shape
      {"k_cache_extent_above_int32", C, reshape_dim(&F::k_cache, 2, int64_t{1} << 31), TKA_ERROR_TENSOR_SHAPE,
       {"k_cache"}},
      {"k_cache_null_data_element_count_overflows", C,
       [](FakeCall& f, const tka_decode_desc& d, int) {
         const int64_t big = std::numeric_limits<int32_t>::max();
         f.k_cache.set_dims({big, d.num_kv_heads, big, d.head_dim}, {0, 0, 0, 1});  // 2^70 elements
         f.k_cache.dl().data = nullptr;
       },
       TKA_ERROR_TENSOR_SHAPE, {"k_cache"}},
      {"v_cache_strides_span_overflows", C,
       [](FakeCall& f, const tka_decode_desc&, int) {
         std::vector<int64_t> st = f.v_cache.strides;
         st[0] = int64_t{1} << 62;
         f.v_cache.set_dims(f.v_cache.shape, st);
       },
       TKA_ERROR_TENSOR_STRIDE, {"v_cache"}},
      {"q_shape_null", C, [](FakeCall& f, const tka_decode_desc&, int) { f.q.dl().shape = nullptr; },
       TKA_ERROR_TENSOR_SHAPE, {"q"}},
      {"k_cache_data_null", P, [](FakeCall& f, const tka_decode_desc&, int) { f.k_cache.dl().data = nullptr; },
       TKA_ERROR_NULL_POINTER, {"k_cache"}},
      // outputs whose elements overlap: CTAs would write one element twice
      {"out_batch_stride_0", C,
       [](FakeCall& f, const tka_decode_desc&, int) {
         std::vector<int64_t> st = f.out.strides;
         st[0] = 0;
         f.out.set_dims(f.out.shape, st);
       },
       TKA_ERROR_TENSOR_STRIDE, {"out"}},
      {"indices_rows_interleave", P,
       [](FakeCall& f, const tka_decode_desc&, int) {
         std::vector<int64_t> st = f.indices.strides;
         st[2] = 4;  // heads 4 apart, rows max_k long: they overlap
         f.indices.set_dims(f.indices.shape, st);
       },
       TKA_ERROR_TENSOR_STRIDE, {"indices"}},
      {"lse_heads_stride_0", C,
       [](FakeCall& f, const tka_decode_desc&, int) {
         std::vector<int64_t> st = f.lse.strides;
         st[2] = 0;  // every head of a token on one element
         f.lse.set_dims(f.lse.shape, st);
       },
       TKA_ERROR_TENSOR_STRIDE, {"lse"}},
      // a block table given to a contiguous plan
      {"block_table_on_contiguous_plan", C,
       [](FakeCall& f, const tka_decode_desc&, int) {
         f.block_table = TensorArg(fake_device_ptr(5), dl_i32(), {2, 4});
         f.block_table_anyway = true;
       },
       TKA_ERROR_INVALID_ARGUMENT, {"block_table"}},
  };
  // clang-format on
}

class TensorValidation : public ::testing::TestWithParam<TensorCase> {};

TEST_P(TensorValidation, RejectsAndNamesTheTensor) {
  ASSERT_SHARED_PLANS();
  const TensorCase& c = GetParam();
  const SharedPlans& sp = shared_plans();
  FakeCall f = valid_call(sp.desc(c.paged_plan), sp.max_k(c.paged_plan));
  c.mutate(f, sp.desc(c.paged_plan), sp.max_k(c.paged_plan));
  const tka_status s = run_call(sp.plan(c.paged_plan), f);
  const std::string msg = tka_last_error();
  EXPECT_EQ(s, c.expect) << "expected " << status_name(c.expect) << ", got " << status_name(s) << ": " << msg;
  EXPECT_TRUE(mentions_any(msg, c.fields)) << "message does not name the tensor: \"" << msg << "\"";
}

INSTANTIATE_TEST_SUITE_P(Tensor, TensorValidation, ::testing::ValuesIn(tensor_cases()),
                         [](const ::testing::TestParamInfo<TensorCase>& i) { return i.param.name; });

}  // namespace
