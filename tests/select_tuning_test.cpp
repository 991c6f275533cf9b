// Top-k selection tuning, host side: its config space, database entries (round trip, lookup,
// isolation from decode entries, malformed entries), prewarm of the configs a database holds;
// and on a GPU, the tuner and a plan that reads its result.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <utility>

#include "autotune/prewarm.h"
#include "autotune/select_space.h"
#include "autotune/select_tuner.h"
#include "autotune/tuning_db.h"
#include "codegen/render.h"
#include "compile_util.h"
#include "gpu_util.h"
#include "runtime/select_plan.h"
#include "test_util.h"

namespace tka {
namespace {

using nlohmann::json;
using tka_test::expect_all_compile;
using tka_test::ScratchDir;

const TuningDevice kH100{"NVIDIA H100 80GB HBM3", 90, 132};

SelectOp select_op(tka_dtype dtype = TKA_DTYPE_FP32, int k = 2048) {
  tka_select_desc d{};
  d.dtype = dtype, d.top_k = k, d.max_rows = 32, d.max_n = 131072, d.sorted = 1;
  SelectOp op;
  EXPECT_TRUE(validate_select(d, &op).is_ok());
  return op;
}

TuningEntry select_entry(int n_bucket, int rows_bucket, int threads) {
  TuningEntry e;
  e.device = kH100;
  e.shape = tuning_shape_for(select_op());
  e.seq_bucket = n_bucket, e.batch_bucket = rows_bucket;
  e.select_config = default_select_config(select_op());
  e.select_config.threads = threads;
  e.time_us = 50, e.default_time_us = 60, e.version = tka_version();
  return e;
}

// A database of `entry` saved as JSON, that JSON passed through `edit`, loaded back.
template <class Edit>
TuningDb reload_edited(const TuningEntry& entry, Edit edit, std::vector<std::string>* warnings) {
  ScratchDir dir;
  TuningDb db;
  db.upsert(entry);
  EXPECT_TRUE(db.save(dir / "db.json").is_ok());
  json j = json::parse(tka_test::read_text(dir / "db.json"));
  edit(j);
  tka_test::write_text(dir / "db.json", j.dump());
  return TuningDb::load(dir / "db.json", warnings);
}

TEST(SelectSpace, DefaultFirstDistinctAndBuildable) {
  const std::vector<SelectConfig> space = select_space(select_op());
  // threads x stages in flight x split; then without the cooperative path, each cluster size
  ASSERT_EQ(space.size(), 23u);
  EXPECT_EQ(space[0], default_select_config(select_op()));
  for (size_t i = 0; i < space.size(); ++i) {
    EXPECT_EQ(space[i].capacity, 4096) << "the one-read path keeps its sample in the candidates";
    EXPECT_GE(space[i].stages, 3) << "at least two steps in flight beside the one in use";
    for (size_t j = 0; j < i; ++j) EXPECT_NE(space[i], space[j]);
  }
}

// Every compiled variant of the space (threads x stages; split is a launch choice) compiles, the
// 32-bit rows for sm_80 and the 16-bit ones for sm_90 (the stream converts each differently).
TEST(SelectSpace, EveryCompiledVariantCompiles) {
  ScratchDir dir;
  std::vector<PrewarmJob> jobs;
  std::set<std::string> seen;
  for (const SelectConfig& c : select_space(select_op())) {
    for (const auto& [dtype, sm] : {std::pair{TKA_DTYPE_FP32, 80}, std::pair{TKA_DTYPE_BF16, 90}}) {
      SelectKernelSpec spec;
      spec.dtype = dtype;
      spec.config = c;
      const codegen::RenderedSource s = codegen::render_select(spec);
      if (!seen.insert(s.spec_text + std::to_string(sm)).second) continue;
      EXPECT_NE(s.source.find("kStages = " + std::to_string(c.stages) + ";"), std::string::npos);
      jobs.push_back({sm, s});
    }
  }
  EXPECT_EQ(seen.size(), 18u);  // 9 compiled configs x 2
  expect_all_compile(jobs, dir.path());
}

TEST(SelectTuningDb, RoundTripsAndNeverMatchesDecode) {
  ScratchDir dir;
  TuningDb db;
  db.upsert(select_entry(131072, 32, 1024));
  db.upsert(select_entry(131072, 2048, 256));
  TuningEntry odd_cluster = select_entry(131072, 8, 512);
  odd_cluster.select_config.cluster = 3;  // any size up to 8, not only powers of two
  db.upsert(odd_cluster);
  ASSERT_TRUE(db.save(dir / "db.json").is_ok());
  std::vector<std::string> warnings;
  const TuningDb back = TuningDb::load(dir / "db.json", &warnings);
  EXPECT_TRUE(warnings.empty()) << warnings.front();
  bool exact = false;
  auto got = back.lookup(kH100, tuning_shape_for(select_op()), 100000, 20, &exact);
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(exact);  // 100000 -> 131072, 20 -> 32
  EXPECT_EQ(got->select_config.threads, 1024);
  got = back.lookup(kH100, tuning_shape_for(select_op()), 131072, 1500, &exact);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->select_config.threads, 256);  // bucket 2048
  got = back.lookup(kH100, tuning_shape_for(select_op()), 131072, 8, &exact);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->select_config.cluster, 3);
  // Another k or dtype is another shape.
  EXPECT_FALSE(back.lookup(kH100, tuning_shape_for(select_op(TKA_DTYPE_FP32, 1024)), 131072, 32).has_value());
  EXPECT_FALSE(back.lookup(kH100, tuning_shape_for(select_op(TKA_DTYPE_BF16)), 131072, 32).has_value());
  const json j = json::parse(tka_test::read_text(dir / "db.json"));
  EXPECT_EQ(j["entries"][0]["op"], "select");
  EXPECT_EQ(j["entries"][0]["dtype"], "fp32");
  EXPECT_EQ(j["entries"][0]["config"]["threads"], 1024);
  EXPECT_EQ(j["entries"][0]["config"]["stages"], 4);
}

TEST(SelectTuningDb, MalformedSelectEntriesAreSkipped) {
  std::vector<std::string> warnings;
  const TuningDb back = reload_edited(
      select_entry(131072, 32, 512),
      [](json& j) {
        json bad = j["entries"][0];
        bad["config"]["threads"] = 100;  // not a warp multiple
        json no_ring = j["entries"][0];
        no_ring["config"]["stages"] = 1;  // nothing in flight
        json unknown = j["entries"][0];
        unknown["op"] = "prefill";
        json decode_shaped = j["entries"][0];
        decode_shaped["op"] = "decode";  // a select config under a decode op
        json big_cluster = j["entries"][0];
        big_cluster["config"]["cluster"] = 9;  // past the portable limit
        json one_cluster = j["entries"][0];
        one_cluster["config"]["cluster"] = 1;  // a cluster of one is no cluster: 0
        j["entries"].push_back(big_cluster);
        j["entries"].push_back(one_cluster);
        j["entries"].push_back(bad);
        j["entries"].push_back(no_ring);
        j["entries"].push_back(unknown);
        j["entries"].push_back(decode_shaped);
      },
      &warnings);
  EXPECT_EQ(back.entries().size(), 1u);
  EXPECT_EQ(warnings.size(), 6u);
}

// Entries written before the cluster size was a config field load as measured: without clusters
// (and a rewrite keeps them).
TEST(SelectTuningDb, EntriesWithoutAClusterSizeLoadWithoutClusters) {
  std::vector<std::string> warnings;
  const TuningDb back = reload_edited(
      select_entry(131072, 32, 512),
      [](json& j) {
        ASSERT_EQ(j["entries"][0]["config"]["cluster"], 8);
        j["entries"][0]["config"].erase("cluster");
      },
      &warnings);
  EXPECT_TRUE(warnings.empty()) << warnings[0];
  ASSERT_EQ(back.entries().size(), 1u);
  EXPECT_EQ(back.entries()[0].select_config.cluster, 0);
  EXPECT_EQ(back.entries()[0].select_config.threads, 512);
}

// Entries written before the cooperative path was a config field load as measured: without it.
TEST(SelectTuningDb, EntriesWithoutTheCooperativeFieldLoadWithoutIt) {
  std::vector<std::string> warnings;
  TuningEntry entry = select_entry(131072, 32, 512);
  entry.select_config.coop = 1;
  const TuningDb back = reload_edited(
      entry,
      [](json& j) {
        ASSERT_EQ(j["entries"][0]["config"]["coop"], 1);
        j["entries"][0]["config"].erase("coop");
      },
      &warnings);
  EXPECT_TRUE(warnings.empty()) << warnings[0];
  ASSERT_EQ(back.entries().size(), 1u);
  EXPECT_EQ(back.entries()[0].select_config.coop, 0);
  EXPECT_EQ(back.entries()[0].select_config.cluster, 8);
}

TEST(SelectTuningDb, PrewarmCompilesTheTunedSelections) {
  TuningDb db;
  db.upsert(select_entry(131072, 32, 1024));
  db.upsert(select_entry(131072, 256, 1024));  // the same kernel: one job
  TuningEntry other_arch = select_entry(131072, 32, 256);
  other_arch.device.sm = 80;
  db.upsert(other_arch);
  const ModelPreset& p = *find_preset("llama-3.1-8b");
  const size_t base = prewarm_jobs(p, {90}, nullptr, 4, 32768).size();
  const std::vector<PrewarmJob> jobs = prewarm_jobs(p, {90}, &db, 4, 32768);
  ASSERT_EQ(jobs.size(), base + 1);
  EXPECT_EQ(jobs.back().source.spec_text, "op=select;dtype=fp32;t=1024;c=4096;st=4");
  ScratchDir dir;
  const PrewarmSummary sum = prewarm(p, {80, 90}, dir.path(), 2, 4, 32768, false, &db);
  EXPECT_EQ(sum.failed, 0) << (sum.errors.empty() ? "" : sum.errors[0]);
  EXPECT_EQ(sum.compiled, static_cast<int>(2 * base + 2));
}

TEST(SelectTuneGpu, PicksAConfigNoSlowerThanTheDefaultAndPlansReadIt) {
  TKA_SKIP_WITHOUT_GPU();
  ScratchDir dir;
  std::unique_ptr<Runtime> rt;
  tka_runtime_options o;
  tka_runtime_options_init(&o);
  o.tuning_db = "";
  ASSERT_TRUE(Runtime::create(o, &rt).is_ok());
  tka_select_desc d{};
  d.dtype = TKA_DTYPE_FP32, d.top_k = 2048, d.max_rows = 32, d.max_n = 131072, d.sorted = 1;
  TuneOptions to;
  to.repeats = 5;
  TuneResult r;
  const Status s = tune_select(*rt, d, to, &r);
  ASSERT_TRUE(s.is_ok()) << s.message();
  EXPECT_EQ(r.rejected, 0) << (r.notes.empty() ? "" : r.notes[0]);
  EXPECT_GE(r.candidates, 1);
  EXPECT_EQ(r.entry.shape.op, "select");
  EXPECT_EQ(r.entry.seq_bucket, 131072);
  EXPECT_EQ(r.entry.batch_bucket, 32);
  TuningDb db;
  db.upsert(r.entry);
  ASSERT_TRUE(db.save(dir / "db.json").is_ok());
  const std::string path = dir / "db.json";
  o.tuning_db = path.c_str();
  std::unique_ptr<Runtime> tuned;
  ASSERT_TRUE(Runtime::create(o, &tuned).is_ok());
  std::unique_ptr<SelectPlan> plan;
  ASSERT_TRUE(SelectPlan::create(*tuned, d, &plan).is_ok());
  EXPECT_EQ(plan->config(), r.entry.select_config);
}

}  // namespace
}  // namespace tka
