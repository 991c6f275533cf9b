// GPU tests of the tuner: it times the space, never picks a config slower than the default, and
// its database entries reach plans, by file or by tuning at plan creation. Skipped without a GPU.
#include <gtest/gtest.h>

#include <filesystem>

#include "autotune/decode_tuner.h"
#include "autotune/fidelity_tuner.h"
#include "autotune/indexer_tuner.h"
#include "autotune/presets.h"
#include "autotune/sparse_space.h"
#include "autotune/sparse_tuner.h"
#include "autotune/tuning_db.h"
#include "gpu_util.h"
#include "runtime/fidelity_plan.h"
#include "runtime/indexer_plan.h"
#include "runtime/runtime.h"
#include "runtime/sparse_plan.h"
#include "test_util.h"

namespace {

using tka_test::ScratchDir;

std::unique_ptr<tka::Runtime> internal_runtime() {
  tka_runtime_options o;
  tka_runtime_options_init(&o);
  o.tuning_db = "";
  std::unique_ptr<tka::Runtime> rt;
  const tka::Status s = tka::Runtime::create(o, &rt);
  if (!s.is_ok()) throw std::runtime_error(s.message());
  return rt;
}

// A GPU runtime that reads a database holding `entry` alone (the file lives in `dir`).
std::unique_ptr<tka::Runtime> runtime_reading(const tka::TuningEntry& entry, const ScratchDir& dir) {
  const std::string path = dir.path() + "/db.json";
  tka::TuningDb db;
  db.upsert(entry);
  const tka::Status saved = db.save(path);
  if (!saved.is_ok()) throw std::runtime_error(saved.message());
  tka_runtime_options o;
  tka_runtime_options_init(&o);
  o.tuning_db = path.c_str();
  std::unique_ptr<tka::Runtime> rt;
  const tka::Status s = tka::Runtime::create(o, &rt);
  if (!s.is_ok()) throw std::runtime_error(s.message());
  return rt;
}

// An entry of this runtime's device for `shape` (times and version filled in).
tka::TuningEntry entry_for(const tka::Runtime& rt, const tka::TuningShape& shape, int seq_bucket, int batch_bucket) {
  tka::TuningEntry e;
  e.device = rt.tuning_device();
  e.shape = shape;
  e.seq_bucket = seq_bucket, e.batch_bucket = batch_bucket;
  e.time_us = e.default_time_us = 1;
  e.version = tka_version();
  return e;
}

tka_decode_desc llama(int batch, int seq_len) {
  return tka::preset_main_desc(*tka::find_preset("llama-3.1-8b"), batch, seq_len);
}

TEST(TuneGpu, PicksAConfigNoSlowerThanTheDefault) {
  TKA_SKIP_WITHOUT_GPU();
  auto rt = internal_runtime();
  tka::TuneOptions options;
  int last_done = 0, last_total = 0;
  options.progress = [&](int done, int total) { last_done = done, last_total = total; };
  tka::TuneResult r;
  const tka::Status s = tka::tune_decode(*rt, llama(4, 8192), options, &r);
  ASSERT_TRUE(s.is_ok()) << s.message();
  for (const std::string& note : r.notes) std::printf("  %s\n", note.c_str());
  EXPECT_GE(r.candidates, 20);
  EXPECT_EQ(r.rejected, 0);
  EXPECT_EQ(last_done, last_total);
  EXPECT_GT(r.entry.time_us, 0);
  EXPECT_EQ(r.entry.device.name, rt->device().name);
  EXPECT_EQ(r.entry.seq_bucket, 8192);
  EXPECT_EQ(r.entry.batch_bucket, 4);
  EXPECT_GT(r.copy_bytes_per_second, 1e11);
  // At least the bytes of every key; the floor time is below the measured time.
  EXPECT_GE(r.bytes, 4.0 * 8 * 8192 * 128 * 2);
  EXPECT_LT(r.bytes / r.copy_bytes_per_second * 1e6, r.entry.time_us);
  std::printf("tuned %s: %.1f us (default %.1f us), %d timed, %d pruned\n", r.entry.config.text().c_str(),
              r.entry.time_us, r.entry.default_time_us, r.candidates, r.pruned);
}

// The indexer scores kernel: every config's scores equal the default's bit for bit, the winner is
// no slower, and a plan made from a database holding the entry (fused or not) takes its config.
TEST(TuneGpu, IndexerPicksAConfigNoSlowerThanTheDefaultAndPlansReadIt) {
  TKA_SKIP_WITHOUT_GPU();
  auto rt = internal_runtime();
  tka_indexer_desc d = tka::preset_indexer_descs(*tka::find_preset("deepseek-v3.2"), 4, 32768).at(0);
  tka::TuneOptions options;
  options.repeats = 5;
  tka::TuneResult r;
  const tka::Status s = tka::tune_indexer(*rt, d, options, &r);
  ASSERT_TRUE(s.is_ok()) << s.message();
  for (const std::string& note : r.notes) std::printf("  %s\n", note.c_str());
  EXPECT_EQ(r.rejected, 0);
  EXPECT_GE(r.candidates, 9);
  EXPECT_EQ(r.entry.shape.op, "indexer");
  EXPECT_EQ(r.entry.seq_bucket, 32768);
  EXPECT_EQ(r.entry.batch_bucket, 4);
  EXPECT_LT(r.bytes / r.copy_bytes_per_second * 1e6, r.entry.time_us);
  std::printf("tuned indexer %s: %.1f us (default %.1f us)\n", r.entry.indexer_config.text().c_str(), r.entry.time_us,
              r.entry.default_time_us);

  ScratchDir dir;
  r.entry.indexer_config = {6, 8};  // neither stage count nor CTAs per SM the default's: the plan must take it
  const auto tuned = runtime_reading(r.entry, dir);
  for (bool fused : {false, true}) {
    std::unique_ptr<tka::IndexerPlan> plan;
    const tka::Status c = tka::IndexerPlan::create(*tuned, d, fused, &plan);
    ASSERT_TRUE(c.is_ok()) << c.message();
    EXPECT_EQ(plan->config(), (tka::IndexerConfig{6, 8}));
    EXPECT_NE(plan->spec_text().find("ks=6;"), std::string::npos) << plan->spec_text();
  }
}

TEST(TuneGpu, PagedAndPerGroupShapesTune) {
  TKA_SKIP_WITHOUT_GPU();
  auto rt = internal_runtime();
  tka_decode_desc d = llama(2, 4096);
  d.select = TKA_SELECT_PER_GROUP;
  d.kv_layout = TKA_KV_PAGED;
  d.page_size = 64;
  tka::TuneResult r;
  const tka::Status s = tka::tune_decode(*rt, d, tka::TuneOptions{}, &r);
  ASSERT_TRUE(s.is_ok()) << s.message();
  EXPECT_EQ(r.rejected, 0);
  EXPECT_TRUE(r.entry.shape.per_group);
  EXPECT_EQ(r.entry.shape.page_size, 64);
}

TEST(TuneGpu, TuningAtPlanCreationWritesTheDatabaseOnce) {
  TKA_SKIP_WITHOUT_GPU();
  ScratchDir dir;
  const std::string path = dir / "db.json";
  tka_op_desc desc;
  tka_op_desc_init(&desc, TKA_OP_TOPK_DECODE);
  desc.decode = llama(2, 4096);
  tka_counters c0, c1, c2;
  tka_get_counters(&c0);
  {
    tka_runtime_options o;
    tka_runtime_options_init(&o);
    o.tuning_db = path.c_str();
    o.tune = 1;
    tka_runtime* rt = nullptr;
    tka_test::tka_ok(tka_runtime_create(&o, &rt), "tka_runtime_create");
    tka_test::RuntimePtr owned(rt);
    tka_plan* plan = nullptr;
    tka_test::tka_ok(tka_plan_create(rt, &desc, &plan), "tka_plan_create");
    tka_plan_destroy(plan);
    tka_get_counters(&c1);
    EXPECT_EQ(c1.online_tunings, c0.online_tunings + 1);
    EXPECT_EQ(c1.tuned_plans, c0.tuned_plans + 1);
    // The same shape again: the entry is there now, nothing is tuned.
    tka_test::tka_ok(tka_plan_create(rt, &desc, &plan), "tka_plan_create");
    tka_plan_destroy(plan);
    tka_get_counters(&c2);
    EXPECT_EQ(c2.online_tunings, c1.online_tunings);
    EXPECT_EQ(c2.tuned_plans, c1.tuned_plans + 1);
  }
  ASSERT_TRUE(std::filesystem::exists(path));
  std::vector<std::string> warnings;
  const tka::TuningDb db = tka::TuningDb::load(path, &warnings);
  EXPECT_TRUE(warnings.empty());
  ASSERT_EQ(db.entries().size(), 1u);
  // A new runtime without tuning reads the entry: no tuning, a tuned plan.
  tka_runtime_options o;
  tka_runtime_options_init(&o);
  o.tuning_db = path.c_str();
  tka_runtime* rt = nullptr;
  tka_test::tka_ok(tka_runtime_create(&o, &rt), "tka_runtime_create");
  tka_test::RuntimePtr owned(rt);
  tka_plan* plan = nullptr;
  tka_counters c3, c4;
  tka_get_counters(&c3);
  tka_test::tka_ok(tka_plan_create(rt, &desc, &plan), "tka_plan_create");
  tka_plan_destroy(plan);
  tka_get_counters(&c4);
  EXPECT_EQ(c4.tuned_plans, c3.tuned_plans + 1);
  EXPECT_EQ(c4.online_tunings, c3.online_tunings);
  // Another shape in the same database: nearest bucket, still no tuning.
  desc.decode = llama(4, 16384);
  tka_test::tka_ok(tka_plan_create(rt, &desc, &plan), "tka_plan_create");
  tka_plan_destroy(plan);
  tka_counters c5;
  tka_get_counters(&c5);
  EXPECT_EQ(c5.tuned_plans, c4.tuned_plans + 1);
  EXPECT_EQ(c5.default_plans, c4.default_plans);
}

}  // namespace

namespace {

// DeepSeek's MLA attention: 128 heads on one shared 576/512 KV head, one list of 2048 per token.
tka_sparse_desc mla_sparse_desc(int max_batch) {
  tka_sparse_desc d{};
  d.dtype = TKA_DTYPE_BF16;
  d.num_q_heads = 128, d.num_kv_heads = 1, d.head_dim = 576, d.head_dim_v = 512, d.shared_kv = 1;
  d.q_len = 1, d.index_width = 2048, d.select = TKA_SELECT_PER_GROUP, d.kv_layout = TKA_KV_CONTIGUOUS;
  d.max_batch = max_batch;
  return d;
}

// Sparse attention: every config's output is the default's within the tolerance (no rejection),
// and all 21 configs (head tiles 64 and 32 by 3 CTA counts, 16..1 by 3) are timed or pruned; the
// MLA layout, 128 heads on one list per token.
TEST(TuneGpu, SparsePicksAConfigNoSlowerThanTheDefault) {
  TKA_SKIP_WITHOUT_GPU();
  auto rt = internal_runtime();
  const tka_sparse_desc d = mla_sparse_desc(3);  // tuned at its bucket, 4
  tka::TuneOptions options;
  options.repeats = 5;
  tka::TuneResult r;
  const tka::Status s = tka::tune_sparse(*rt, d, 20000, options, &r);
  ASSERT_TRUE(s.is_ok()) << s.message();
  for (const std::string& note : r.notes) std::printf("  %s\n", note.c_str());
  std::printf("tuned sparse %s: %.1f us (default %.1f us)\n", r.entry.sparse_config.text().c_str(), r.entry.time_us,
              r.entry.default_time_us);
  EXPECT_EQ(r.rejected, 0);  // every config within the tolerance of the default
  tka::SparseOp op;
  ASSERT_TRUE(tka::validate_sparse(d, &op).is_ok());
  EXPECT_EQ(r.candidates + r.pruned, static_cast<int>(tka::sparse_space(op, tka::smem_budget(rt->device())).size()));
  EXPECT_EQ(tka::sparse_space(op, tka::smem_budget_for_sm(90)).size(), 21u);
  EXPECT_EQ(r.entry.shape.op, "sparse");
  EXPECT_EQ(r.entry.seq_bucket, 1);
  EXPECT_EQ(r.entry.batch_bucket, 4);
  EXPECT_GT(r.bytes, 0);
}

// A sparse attention plan on the GPU takes the tuning database's entry for its shape (the nearest
// batch bucket): the MLA layout, 128 heads a list, 8 heads a CTA.
TEST(TuneGpu, SparsePlansReadTheDatabase) {
  TKA_SKIP_WITHOUT_GPU();
  auto rt = internal_runtime();
  const tka_sparse_desc d = mla_sparse_desc(4);
  tka::SparseOp op;
  ASSERT_TRUE(tka::validate_sparse(d, &op).is_ok());
  tka::TuningEntry e = entry_for(*rt, tka::tuning_shape_for(op), 1, 64);
  e.sparse_config = {8, 2};
  ScratchDir dir;
  const auto tuned = runtime_reading(e, dir);
  std::unique_ptr<tka::SparsePlan> plan;
  const tka::Status s = tka::SparsePlan::create(*tuned, d, &plan);
  ASSERT_TRUE(s.is_ok()) << s.message();
  EXPECT_EQ(plan->config(), (tka::SparseConfig{8, 2}));
  EXPECT_NE(plan->spec_text().find("ht=8;"), std::string::npos) << plan->spec_text();
}

tka_fidelity_desc llama_fidelity(int max_batch, int max_seq_len) {
  tka_fidelity_desc d{};
  d.dtype = TKA_DTYPE_BF16;
  d.num_q_heads = 32, d.num_kv_heads = 8, d.head_dim = 128, d.top_k = 256;
  d.max_batch = max_batch, d.max_seq_len = max_seq_len;
  return d;
}

// Fidelity diagnostics: every config, run on poisoned buffers, gives the default's exact top-k
// mass, candidate mass and entropy (no rejection; the configs themselves against the CPU path:
// FidelityGpu.MatchesTheCpuPath), all 12 are timed or pruned, and the entry is stored under the
// buckets of the shape.
TEST(TuneGpu, FidelityTimesEveryConfigAndAgreesWithTheDefault) {
  TKA_SKIP_WITHOUT_GPU();
  auto rt = internal_runtime();
  tka::TuneOptions options;
  options.repeats = 5;
  tka::TuneResult r;
  const tka::Status s = tka::tune_fidelity(*rt, llama_fidelity(3, 5000), options, &r);
  ASSERT_TRUE(s.is_ok()) << s.message();
  for (const std::string& note : r.notes) std::printf("  %s\n", note.c_str());
  std::printf("tuned fidelity %s: %.1f us (default %.1f us)\n", r.entry.fidelity_config.text().c_str(), r.entry.time_us,
              r.entry.default_time_us);
  EXPECT_EQ(r.rejected, 0);
  EXPECT_EQ(r.candidates + r.pruned, 12);
  EXPECT_GT(r.candidates, 0);
  EXPECT_EQ(r.entry.shape.op, "fidelity");
  EXPECT_EQ(r.entry.seq_bucket, 8192);
  EXPECT_EQ(r.entry.batch_bucket, 4);
  EXPECT_GT(r.bytes, 0);
}

// A fidelity plan on the GPU takes the database's entry for its shape (the nearest bucket); the
// statistics under non-default configs: FidelityGpu.MatchesTheCpuPath.
TEST(TuneGpu, FidelityPlansReadTheDatabase) {
  TKA_SKIP_WITHOUT_GPU();
  auto rt = internal_runtime();
  const tka_fidelity_desc d = llama_fidelity(4, 4096);
  tka::FidelityOp op;
  ASSERT_TRUE(tka::validate_fidelity(d, false, &op).is_ok());
  tka::TuningEntry e = entry_for(*rt, tka::tuning_shape_for(op), 65536, 16);
  e.fidelity_config = {1024, 128};
  ScratchDir dir;
  const auto tuned = runtime_reading(e, dir);
  std::unique_ptr<tka::FidelityPlan> plan;
  const tka::Status s = tka::FidelityPlan::create(*tuned, d, &plan);
  ASSERT_TRUE(s.is_ok()) << s.message();
  EXPECT_EQ(plan->config(), (tka::FidelityConfig{1024, 128}));
  EXPECT_NE(plan->spec_text().find("ss=1024;"), std::string::npos) << plan->spec_text();
}

}  // namespace
