// Host-side tests of autotuning: the tuning database (format, lookup, fallbacks, corruption,
// merging writers), the config space, the presets, prewarm with a database, the CLI commands, and
// NVRTC compilation of every tunable variant for sm_80 and sm_90.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "autotune/decode_heuristic.h"
#include "autotune/decode_space.h"
#include "autotune/fidelity_space.h"
#include "autotune/gpu_timing.h"
#include "autotune/indexer_space.h"
#include "autotune/presets.h"
#include "autotune/prewarm.h"
#include "autotune/sparse_space.h"
#include "autotune/tuning_db.h"
#include "compile_util.h"
#include "runtime/fidelity_plan.h"
#include "runtime/sparse_plan.h"
#include "templates/indexer_params.cuh"
#include "test_util.h"
#include "topkattn/topkattn.h"

namespace tka {
namespace {

using nlohmann::json;
using tka_test::expect_all_compile;
using tka_test::read_text;
using tka_test::run_command;
using tka_test::ScratchDir;
using tka_test::write_text;

const TuningDevice kH100{"NVIDIA H100 80GB HBM3", 90, 132};

DecodeOp llama_op(int batch = 8, int seq_len = 32768) {
  DecodeOp op;
  EXPECT_TRUE(validate_decode(preset_main_desc(*find_preset("llama-3.1-8b"), batch, seq_len), &op).is_ok());
  return op;
}

TuningEntry entry(int seq_bucket, int batch_bucket, int select_threads = 1024) {
  TuningEntry e;
  e.device = kH100;
  e.shape = tuning_shape_for(llama_op());
  e.seq_bucket = seq_bucket;
  e.batch_bucket = batch_bucket;
  e.config = default_decode_config(llama_op());
  e.config.select_threads = select_threads;
  e.time_us = 100;
  e.default_time_us = 120;
  e.version = std::string(tka_version());
  return e;
}

TuningDb load_quiet(const std::string& path, std::vector<std::string>* warnings = nullptr) {
  std::vector<std::string> w;
  TuningDb db = TuningDb::load(path, &w);
  if (warnings) *warnings = w;
  return db;
}

bool any_contains(const std::vector<std::string>& lines, const std::string& what) {
  return std::any_of(lines.begin(), lines.end(),
                     [&](const std::string& l) { return l.find(what) != std::string::npos; });
}

TEST(TuningDb, Pow2Buckets) {
  EXPECT_EQ(pow2_bucket(0), 1);
  EXPECT_EQ(pow2_bucket(1), 1);
  EXPECT_EQ(pow2_bucket(3), 4);
  EXPECT_EQ(pow2_bucket(4096), 4096);
  EXPECT_EQ(pow2_bucket(4097), 8192);
  EXPECT_EQ(pow2_bucket(131072), 131072);
}

TEST(TuningDb, SavesAndLoadsEveryField) {
  ScratchDir dir;
  TuningDb db;
  TuningEntry a = entry(32768, 8);
  a.config.score_waves = 8;
  a.config.attend_min_split = 64;
  a.config.attend_chunk = 1024;
  a.config.select_split = 2;  // one cooperative grid (not the default)
  db.upsert(a);
  db.upsert(entry(4096, 1, 256));
  ASSERT_TRUE(db.save(dir / "db.json").is_ok());
  std::vector<std::string> warnings;
  const TuningDb back = load_quiet(dir / "db.json", &warnings);
  EXPECT_TRUE(warnings.empty()) << warnings.front();
  ASSERT_EQ(back.entries().size(), 2u);
  bool exact = false;
  const auto got = back.lookup(kH100, a.shape, 32768, 8, &exact);
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(exact);
  EXPECT_EQ(got->config, a.config);
  EXPECT_EQ(got->time_us, 100);
  EXPECT_EQ(got->default_time_us, 120);
  EXPECT_EQ(got->version, std::string(tka_version()));
  // The file is the documented JSON.
  const json j = json::parse(read_text(dir / "db.json"));
  EXPECT_EQ(j["format"], 2);
  EXPECT_EQ(j["entries"][0]["device"]["sm_count"], 132);
  EXPECT_EQ(j["entries"][0]["config"]["score_waves"], 8);
}

TEST(TuningDb, LengthAndBatchRoundUpToTheirBucket) {
  TuningDb db;
  db.upsert(entry(65536, 16));
  bool exact = false;
  ASSERT_TRUE(db.lookup(kH100, entry(1, 1).shape, 40000, 9, &exact).has_value());
  EXPECT_TRUE(exact);
}

TEST(TuningDb, FallsBackToTheNearestBucket) {
  TuningDb db;
  db.upsert(entry(4096, 1, 256));
  db.upsert(entry(131072, 64, 1024));
  const TuningShape shape = entry(1, 1).shape;
  bool exact = true;
  auto got = db.lookup(kH100, shape, 100000, 32, &exact);
  ASSERT_TRUE(got.has_value());
  EXPECT_FALSE(exact);
  EXPECT_EQ(got->seq_bucket, 131072);
  got = db.lookup(kH100, shape, 5000, 2, &exact);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->seq_bucket, 4096);
  EXPECT_EQ(got->config.select_threads, 256);
}

TEST(TuningDb, AnotherDeviceOrShapeNeverMatches) {
  TuningDb db;
  db.upsert(entry(32768, 8));
  const TuningShape shape = entry(1, 1).shape;
  EXPECT_FALSE(db.lookup({"NVIDIA H200", 90, 132}, shape, 32768, 8).has_value());
  EXPECT_FALSE(db.lookup({kH100.name, 90, 114}, shape, 32768, 8).has_value());
  EXPECT_FALSE(db.lookup({kH100.name, 80, 132}, shape, 32768, 8).has_value());
  TuningShape other = shape;
  other.top_k = 1024;
  EXPECT_FALSE(db.lookup(kH100, other, 32768, 8).has_value());
  other = shape;
  other.page_size = 16;
  EXPECT_FALSE(db.lookup(kH100, other, 32768, 8).has_value());
  other = shape;
  other.per_group = true;
  EXPECT_FALSE(db.lookup(kH100, other, 32768, 8).has_value());
  EXPECT_TRUE(db.lookup(kH100, shape, 32768, 8).has_value());
}

TEST(TuningDb, MissingFileIsEmptyWithoutWarning) {
  ScratchDir dir;
  std::vector<std::string> warnings;
  EXPECT_TRUE(load_quiet(dir / "absent.json", &warnings).entries().empty());
  EXPECT_TRUE(warnings.empty());
}

TEST(TuningDb, CorruptFilesAreIgnoredWithAWarning) {
  ScratchDir dir;
  TuningDb db;
  db.upsert(entry(32768, 8));
  ASSERT_TRUE(db.save(dir / "good.json").is_ok());
  const std::string good = read_text(dir / "good.json");
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"garbage", "\x7f\x45\x4c\x46 not json at all"},
      {"truncated", good.substr(0, good.size() / 2)},
      {"empty", ""},
      {"array", "[1, 2, 3]"},
      {"other format", R"({"format": 99, "entries": []})"},
      {"entries not a list", R"({"format": 2, "entries": {"a": 1}})"},
      {"format 1 (before full-wave scoring)", R"({"format": 1, "entries": []})"},
  };
  for (const auto& [what, text] : bad) {
    write_text(dir / "bad.json", text);
    std::vector<std::string> warnings;
    const TuningDb loaded = load_quiet(dir / "bad.json", &warnings);
    EXPECT_TRUE(loaded.entries().empty()) << what;
    EXPECT_FALSE(warnings.empty()) << what;
  }
}

TEST(TuningDb, EntriesOfAnotherVersionAreSkipped) {
  ScratchDir dir;
  TuningDb db;
  TuningEntry old = entry(32768, 8);
  old.version = "0.0.1";
  db.upsert(old);
  db.upsert(entry(4096, 1));
  ASSERT_TRUE(db.save(dir / "db.json").is_ok());
  std::vector<std::string> warnings;
  const TuningDb loaded = load_quiet(dir / "db.json", &warnings);
  ASSERT_EQ(loaded.entries().size(), 1u);
  EXPECT_EQ(loaded.entries()[0].seq_bucket, 4096);
  EXPECT_TRUE(any_contains(warnings, "another library version"));
}

TEST(TuningDb, MalformedEntriesAreSkippedOthersKept) {
  ScratchDir dir;
  TuningDb db;
  db.upsert(entry(4096, 1));
  db.upsert(entry(8192, 1));
  db.upsert(entry(16384, 1));
  db.upsert(entry(32768, 1));
  db.upsert(entry(65536, 1));
  ASSERT_TRUE(db.save(dir / "db.json").is_ok());
  json j = json::parse(read_text(dir / "db.json"));
  j["entries"][0].erase("config");                  // missing field
  j["entries"][1]["config"]["select_split"] = 4;    // no such way to split a row
  j["entries"][2]["seq_bucket"] = 5000;             // not a bucket
  j["entries"][3]["config"]["select_threads"] = 7;  // no kernel takes 7 threads
  write_text(dir / "db.json", j.dump());
  std::vector<std::string> warnings;
  const TuningDb loaded = load_quiet(dir / "db.json", &warnings);
  ASSERT_EQ(loaded.entries().size(), 1u);
  EXPECT_EQ(loaded.entries()[0].seq_bucket, 65536);
  EXPECT_EQ(warnings.size(), 4u);
}

TEST(TuningDb, SaveMergesWithWhatTheFileHolds) {
  ScratchDir dir;
  const std::string path = dir / "db.json";
  TuningDb a, b;
  a.upsert(entry(4096, 1, 256));
  ASSERT_TRUE(a.save(path).is_ok());
  b.upsert(entry(8192, 1));  // b never read the file
  ASSERT_TRUE(b.save(path).is_ok());
  EXPECT_EQ(load_quiet(path).entries().size(), 2u);
  TuningDb c;
  c.upsert(entry(4096, 1, 512));  // same slot as a's: replaces it
  ASSERT_TRUE(c.save(path).is_ok());
  const TuningDb merged = load_quiet(path);
  ASSERT_EQ(merged.entries().size(), 2u);
  EXPECT_EQ(merged.lookup(kH100, entry(1, 1).shape, 4096, 1)->config.select_threads, 512);
}

TEST(TuningDb, ConcurrentWritersKeepEveryEntry) {
  ScratchDir dir;
  const std::string path = dir / "db.json";
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      TuningDb db;
      db.upsert(entry(1 << (10 + i), 1));
      if (!db.save(path).is_ok()) ++failures;
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(load_quiet(path).entries().size(), 8u);
}

TEST(TuningDb, UnwritablePathIsAnError) {
  TuningDb db;
  db.upsert(entry(4096, 1));
  const Status s = db.save("/proc/topkattn-no-such-dir/db.json");
  EXPECT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("tuning database"), std::string::npos);
}

// ---- config space ---------------------------------------------------------------------------

std::vector<DecodeOp> representative_ops() {
  std::vector<DecodeOp> ops{llama_op()};
  for (auto [hq, hkv, d, select, page] :
       std::vector<std::tuple<int, int, int, tka_select_mode, int>>{{64, 4, 256, TKA_SELECT_PER_GROUP, 64},
                                                                    {8, 8, 64, TKA_SELECT_PER_HEAD, 0},
                                                                    {32, 2, 128, TKA_SELECT_PER_GROUP, 16}}) {
    tka_decode_desc desc = preset_main_desc(*find_preset("llama-3.1-8b"), 4, 8192);
    desc.num_q_heads = hq, desc.num_kv_heads = hkv, desc.head_dim = d, desc.select = select;
    if (page) desc.kv_layout = TKA_KV_PAGED, desc.page_size = page;
    DecodeOp op;
    EXPECT_TRUE(validate_decode(desc, &op).is_ok());
    ops.push_back(op);
  }
  return ops;
}

TEST(DecodeSpace, StartsWithTheDefaultAndHoldsOnlyBuildableConfigs) {
  for (const DecodeOp& op : representative_ops()) {
    const std::vector<DecodeConfig> space = decode_compiled_space(op);
    ASSERT_GE(space.size(), 10u);
    EXPECT_EQ(space[0], default_decode_config(op));
    std::set<std::string> texts;
    for (const DecodeConfig& c : space) {
      EXPECT_TRUE(texts.insert(c.text()).second) << "duplicate " << c.text();
      const DecodeKernelSpec k = kernel_spec_for(op, c);
      EXPECT_LE(decode_score_smem(k), 227 * 1024) << c.text();
      EXPECT_LE(decode_attend_smem(k), 48 * 1024) << c.text();
      EXPECT_LE(decode_select_smem(k), 48 * 1024) << c.text();
      EXPECT_EQ(c.score_threads % 32, 0);
      EXPECT_EQ(c.attend_threads % 32, 0);
    }
  }
}

// decode_select_coop attends only where the host launches no decode_attend after it: the kernel's
// Spec::kCoopAttends is rendered from the same DecodeKernelSpec::coop_attends the plan reads. Specs
// come from kernel_spec_for, as the plan's do (a group of one selects per head).
TEST(DecodeSpec, CooperativeAttendIsRenderedFromTheHostsRule) {
  struct Case {
    int group;
    bool per_group, attends;
  };
  for (const Case c : {Case{4, false, true}, Case{4, true, false}, Case{1, true, true}, Case{8, true, false}}) {
    DecodeOp op = llama_op();
    op.group = c.group;
    op.desc.select = c.per_group ? TKA_SELECT_PER_GROUP : TKA_SELECT_PER_HEAD;
    const DecodeKernelSpec k = kernel_spec_for(op, default_decode_config(op));
    EXPECT_EQ(k.coop_attends(), c.attends) << "g=" << c.group << " per_group=" << c.per_group;
    const std::string line = std::string("static constexpr bool kCoopAttends = ") + (c.attends ? "true;" : "false;");
    EXPECT_NE(codegen::render_decode(k).source.find(line), std::string::npos)
        << "g=" << c.group << " per_group=" << c.per_group;
  }
}

TEST(DecodeSpace, LaunchVariantsShareTheKernel) {
  const DecodeConfig base = default_decode_config(llama_op());
  const std::vector<DecodeConfig> launch = decode_launch_space(base);
  ASSERT_EQ(launch.size(), 48u);  // selection split 4 ways x score waves x attend's least split
  EXPECT_EQ(launch[0], base);
  // Without clusters (below sm_90) select_split 3 would run as 1: not timed twice. The default
  // (3) stays first; no other variant asks for clusters, and none runs as the default does.
  ASSERT_EQ(base.select_split, 3);
  const std::vector<DecodeConfig> no_clusters = decode_launch_space(base, /*clusters=*/false);
  EXPECT_EQ(no_clusters.size(), 36u);
  EXPECT_EQ(no_clusters[0], base);
  for (size_t i = 1; i < no_clusters.size(); ++i) {
    DecodeConfig as_one = base;
    as_one.select_split = 1;
    EXPECT_NE(no_clusters[i].select_split, 3) << no_clusters[i].text();
    EXPECT_NE(no_clusters[i], as_one) << "runs as the default";
  }
  for (const DecodeConfig& c : launch) {
    // Launch knobs are not compiled in: same kernel spec text, same cache entry.
    EXPECT_EQ(kernel_spec_for(llama_op(), c).text(), kernel_spec_for(llama_op(), base).text());
  }
}

// Every value of every compiled knob must compile for both archs before a GPU ever sees it: the
// default config of each representative op, and each knob value with the others at default.
// (The GPU tests run the whole space through the tuner.) One test per arch: each is ~40 NVRTC
// compiles, within CTest's limit on two cores.
class DecodeSpaceArch : public ::testing::TestWithParam<int> {};

TEST_P(DecodeSpaceArch, EveryKnobValueCompiles) {
  const int sm = GetParam();
  ScratchDir dir;
  std::vector<PrewarmJob> jobs;
  std::set<std::string> seen;
  for (const DecodeOp& op : representative_ops()) {
    const std::vector<DecodeConfig> space = decode_compiled_space(op);
    const DecodeConfig& base = space[0];
    for (const DecodeConfig& c : space) {
      if (compiled_knobs_apart(c, base) > 1) continue;
      codegen::RenderedSource s = codegen::render_decode(kernel_spec_for(op, c));
      if (!seen.insert(s.spec_text).second) continue;
      jobs.push_back({sm, s});
    }
  }
  ASSERT_GE(jobs.size(), 20u);
  expect_all_compile(jobs, dir.path());
}

INSTANTIATE_TEST_SUITE_P(Sm, DecodeSpaceArch, ::testing::Values(80, 90),
                         [](const ::testing::TestParamInfo<int>& info) { return "sm_" + std::to_string(info.param); });

// ---- the indexer scores kernel ----------------------------------------------------------------

IndexerOp deepseek_indexer_op(tka_kv_layout layout = TKA_KV_CONTIGUOUS) {
  tka_indexer_desc d = preset_indexer_descs(*find_preset("deepseek-v3.2"), 16, 131072).at(0);
  d.kv_layout = layout;
  d.page_size = layout == TKA_KV_PAGED ? 64 : 0;
  IndexerOp op;
  EXPECT_TRUE(validate_indexer(d, /*fused=*/false, &op).is_ok());
  return op;
}

TuningEntry indexer_entry(int seq_bucket, int batch_bucket, IndexerConfig config) {
  TuningEntry e = entry(seq_bucket, batch_bucket);
  e.shape = tuning_shape_for(deepseek_indexer_op());
  e.config = DecodeConfig{};
  e.indexer_config = config;
  return e;
}

TEST(IndexerSpace, StartsWithTheDefaultAndHoldsEachConfigOnce) {
  const IndexerOp op = deepseek_indexer_op();
  for (int sm : {80, 90}) {
    const std::vector<IndexerConfig> space = indexer_space(op, sm);
    EXPECT_EQ(space.size(), 12u);
    EXPECT_EQ(space[0], default_indexer_config(op, sm));
    std::set<std::string> texts;
    for (const IndexerConfig& c : space) {
      EXPECT_TRUE(indexer_config_sane(c)) << c.text();
      EXPECT_TRUE(texts.insert(c.text()).second) << "twice: " << c.text();
    }
  }
  // The wgmma path (sm_90, FP8, 64 heads) defaults to 2 stages, the mma.sync kernels to 4.
  EXPECT_EQ(default_indexer_config(op, 90), (IndexerConfig{2, 1}));
  EXPECT_EQ(default_indexer_config(op, 80), (IndexerConfig{4, 1}));
  IndexerOp bf16 = op;
  bf16.desc.key_dtype = TKA_DTYPE_BF16;
  EXPECT_EQ(default_indexer_config(bf16, 90), (IndexerConfig{4, 1}));
  IndexerOp one_row = op;  // few rows: each CTA streams a long chunk, one more tile in flight
  one_row.desc.max_batch = 1;
  EXPECT_EQ(default_indexer_config(one_row, 90), (IndexerConfig{3, 1}));
  IndexerOp five = op;  // the tuner's bucket of 5 is 8: plan and tuner take the same default
  five.desc.max_batch = 5;
  EXPECT_EQ(default_indexer_config(five, 90), (IndexerConfig{2, 1}));
  // Prewarm's list: both sm_90 regimes, the one default elsewhere.
  EXPECT_EQ(indexer_default_configs(op, 90), (std::vector<IndexerConfig>{{3, 1}, {2, 1}}));
  EXPECT_EQ(indexer_default_configs(op, 80), (std::vector<IndexerConfig>{{4, 1}}));
  EXPECT_FALSE(indexer_config_sane(IndexerConfig{1, 16}));
  EXPECT_FALSE(indexer_config_sane(IndexerConfig{2, 0}));
}

TEST(IndexerSpace, TokensPerCtaAreWholeTilesCoveringTheRow) {
  for (const IndexerConfig& c : indexer_space(deepseek_indexer_op(), 90))
    for (long long n : {1LL, 63LL, 64LL, 4097LL, 131072LL})
      for (long long rows : {1LL, 16LL, 64LL}) {
        for (int resident : {0, 3, 5}) {
          const int t = indexer_tokens_per_cta(c, n, rows, 132, resident);
          EXPECT_EQ(t % 64, 0) << c.text();
          EXPECT_GE(t, 64);
          EXPECT_LE(t, (n + 63) / 64 * 64);
        }
      }
  // More CTAs per SM: fewer tokens per CTA.
  EXPECT_LT(indexer_tokens_per_cta({2, 32}, 131072, 16, 132, 3), indexer_tokens_per_cta({2, 8}, 131072, 16, 132, 3));
}

// The indexer's wgmma path: sm_90, FP8 keys of d = 128, 33-64 heads; its shared memory holds
// 1024 bytes of slack for the 128-byte swizzle's alignment, two query tiles and the key tiles.
TEST(IndexerSpace, WgmmaPathAndItsSharedMemory) {
  EXPECT_TRUE(indexer_uses_wgmma(90, 64, 128, true));
  EXPECT_TRUE(indexer_uses_wgmma(90, 33, 128, true));
  EXPECT_FALSE(indexer_uses_wgmma(90, 32, 128, true));
  EXPECT_FALSE(indexer_uses_wgmma(90, 64, 128, false));
  EXPECT_FALSE(indexer_uses_wgmma(80, 64, 128, true));
  EXPECT_FALSE(indexer_uses_wgmma(89, 64, 128, true));
  const IndexerSmemLayout w = indexer_smem_layout(64, 128, true, 4, true);
  EXPECT_EQ(w.q_lo % 1024, 0);
  EXPECT_EQ(w.tiles % 1024, 0);
  EXPECT_EQ(w.bytes, 1024 + 2 * 8192 + 4 * 64 * 128);
  const IndexerSmemLayout m = indexer_smem_layout(64, 128, true, 4, false);
  EXPECT_EQ(m.bytes, 64 * 136 * 2 + 4 * 64 * 128);
}

// Tuners rotate over enough input copies that a pass moves four L2s, within their cap.
TEST(TuningInputs, RotationCopiesCoverFourL2s) {
  const size_t l2 = 50u << 20;
  EXPECT_EQ(rotation_copies(l2, 10.0 * (1 << 20), 32), 20);
  EXPECT_EQ(rotation_copies(l2, 11.0 * (1 << 20), 32), 19);  // ceil(200 / 11)
  EXPECT_EQ(rotation_copies(l2, 1e9, 32), 1);
  EXPECT_EQ(rotation_copies(l2, 1024.0, 16), 16);
  EXPECT_EQ(rotation_copies(l2, 0.0, 16), 16);
}

// The grid is whole waves of resident CTAs: 16 rows of 128K at 3 CTAs per SM in one wave use at
// least 95% of the 396 slots and never 397 (a second, almost empty wave).
TEST(IndexerSpace, TokensPerCtaFillWholeWaves) {
  const auto ctas = [](const IndexerConfig& c, long long n, long long rows, int resident) {
    const long long t = indexer_tokens_per_cta(c, n, rows, 132, resident);
    return rows * ((n + t - 1) / t);
  };
  EXPECT_LE(ctas({2, 1}, 131072, 16, 3), 396);
  EXPECT_GE(ctas({2, 1}, 131072, 16, 3), 376);
  EXPECT_LE(ctas({2, 1}, 131072, 1, 3), 396);
  EXPECT_GE(ctas({2, 1}, 131072, 1, 3), 300);
  // 8 per SM at 3 resident: three waves, 1188 slots.
  EXPECT_LE(ctas({2, 8}, 131072, 16, 3), 1188);
  EXPECT_GT(ctas({2, 8}, 131072, 16, 3), 792);
  // More rows than slots: one chunk per row.
  EXPECT_EQ(ctas({2, 1}, 8192, 512, 3), 512);
}

TEST(IndexerTuning, EntriesRoundTripAndMatchOnlyTheirShape) {
  ScratchDir dir;
  const std::string path = dir.path() + "/db.json";
  TuningDb db;
  db.upsert(indexer_entry(131072, 16, {3, 32}));
  db.upsert(entry(131072, 16));  // a decode entry of the same buckets stays apart
  ASSERT_TRUE(db.save(path).is_ok());
  const json j = json::parse(read_text(path));
  bool seen = false;
  for (const json& e : j["entries"])
    if (e["op"] == "indexer") {
      seen = true;
      EXPECT_EQ(e["dtype"], "fp8e4m3");
      EXPECT_EQ(e["group"], 64);
      EXPECT_EQ(e["config"]["stages"], 3);
      EXPECT_EQ(e["config"]["ctas_per_sm"], 32);
    }
  EXPECT_TRUE(seen);
  std::vector<std::string> warnings;
  const TuningDb back = load_quiet(path, &warnings);
  EXPECT_TRUE(warnings.empty()) << warnings[0];
  const auto hit = back.lookup(kH100, tuning_shape_for(deepseek_indexer_op()), 100000, 9);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->indexer_config, (IndexerConfig{3, 32}));
  EXPECT_FALSE(back.lookup(kH100, tuning_shape_for(deepseek_indexer_op(TKA_KV_PAGED)), 131072, 16).has_value());
  IndexerOp bf16 = deepseek_indexer_op();
  bf16.desc.key_dtype = TKA_DTYPE_BF16;
  EXPECT_FALSE(back.lookup(kH100, tuning_shape_for(bf16), 131072, 16).has_value());
}

TEST(IndexerTuning, OutOfRangeConfigsAreSkippedWithAWarning) {
  ScratchDir dir;
  const std::string path = dir.path() + "/db.json";
  TuningDb db;
  db.upsert(indexer_entry(131072, 16, {3, 32}));
  db.upsert(indexer_entry(65536, 16, {2, 8}));
  ASSERT_TRUE(db.save(path).is_ok());
  json j = json::parse(read_text(path));
  for (json& e : j["entries"])
    if (e["seq_bucket"] == 131072) e["config"]["stages"] = 1;  // no pipeline at all: refused
  write_text(path, j.dump());
  std::vector<std::string> warnings;
  const TuningDb back = load_quiet(path, &warnings);
  EXPECT_TRUE(any_contains(warnings, "config out of range"));
  ASSERT_EQ(back.entries().size(), 1u);
  EXPECT_EQ(back.entries()[0].indexer_config, (IndexerConfig{2, 8}));
}

// Every stage count the space holds compiles, for both key types and both archs.
TEST(IndexerSpace, EveryStageCountCompilesForSm80AndSm90) {
  ScratchDir dir;
  std::vector<PrewarmJob> jobs;
  std::set<int> stages;
  for (const IndexerConfig& c : indexer_space(deepseek_indexer_op(), 90)) stages.insert(c.stages);
  for (tka_dtype key : {TKA_DTYPE_FP8_E4M3, TKA_DTYPE_BF16}) {
    IndexerOp op = deepseek_indexer_op();
    op.desc.key_dtype = key;
    for (int st : stages) {
      IndexerKernelSpec spec = indexer_kernel_spec(op);
      spec.stages = st;
      const codegen::RenderedSource s = codegen::render_indexer(spec);
      EXPECT_NE(s.source.find("kStages = " + std::to_string(st) + ";"), std::string::npos);
      for (int sm : {80, 90})
        if (st != default_indexer_config(op, sm).stages) jobs.push_back({sm, s});  // IndexerCompile: the default
    }
  }
  ASSERT_FALSE(jobs.empty());
  expect_all_compile(jobs, dir.path());
}

// ---- sparse attention over given indices ------------------------------------------------------

// DeepSeek's MLA attention (128 heads on one shared 576/512 KV head, per-group lists), or a
// Llama-shaped GQA one (32 heads on 8 KV heads) with lists per group or per head.
SparseOp sparse_op(bool mla, tka_select_mode select = TKA_SELECT_PER_GROUP) {
  tka_sparse_desc d{};
  d.dtype = TKA_DTYPE_BF16;
  d.num_q_heads = mla ? 128 : 32;
  d.num_kv_heads = mla ? 1 : 8;
  d.head_dim = mla ? 576 : 128;
  d.head_dim_v = mla ? 512 : 128;
  d.shared_kv = mla ? 1 : 0;
  d.q_len = 1;
  d.index_width = 2048;
  d.select = select;
  d.kv_layout = TKA_KV_CONTIGUOUS;
  d.max_batch = 64;
  SparseOp op;
  const Status s = validate_sparse(d, &op);
  EXPECT_TRUE(s.is_ok()) << s.message();
  return op;
}

TuningEntry sparse_entry(int batch_bucket, SparseConfig config, bool mla = true) {
  TuningEntry e = entry(1, batch_bucket);
  e.shape = tuning_shape_for(sparse_op(mla));
  e.config = DecodeConfig{};
  e.sparse_config = config;
  return e;
}

// Head tiles past the heads a list serves compile to one kernel: the space holds each kernel and
// launch once, the default first.
TEST(SparseSpace, StartsWithTheDefaultAndHoldsEachKernelOnce) {
  struct Case {
    SparseOp op;
    size_t size;  // head tiles x CTAs per SM
    int default_tile;
  };
  SparseOp twenty = sparse_op(false);
  twenty.desc.num_q_heads = 160, twenty.group = 20;
  const Case cases[] = {{sparse_op(true), 21, 64},                       // 128 heads a list: 64, 32, 16, 8, 4, 2, 1
                        {twenty, 18, 32},                                // 20 heads a list: 32, 16, 8, 4, 2, 1
                        {sparse_op(false), 9, 4},                        // 4 heads a list: 4, 2, 1
                        {sparse_op(false, TKA_SELECT_PER_HEAD), 3, 1}};  // one head a list
  for (const Case& c : cases) {
    const std::vector<SparseConfig> space = sparse_space(c.op);
    EXPECT_EQ(space.size(), c.size);
    ASSERT_FALSE(space.empty());
    EXPECT_EQ(space[0], default_sparse_config(c.op));
    EXPECT_EQ(space[0].head_tile, c.default_tile);
    std::set<std::string> kernels;
    for (const SparseConfig& s : space) {
      EXPECT_TRUE(sparse_config_sane(s)) << s.text();
      EXPECT_EQ(sparse_kernel_spec(c.op, s).head_tile, s.head_tile) << s.text();
      EXPECT_TRUE(kernels.insert(sparse_kernel_spec(c.op, s).text() + s.text()).second) << "twice: " << s.text();
    }
  }
  // MLA's tile of 64 heads holds 160 KB of shared memory: one CTA an SM; GQA's 20 heads, two.
  EXPECT_EQ(default_sparse_config(sparse_op(true)), (SparseConfig{64, 1}));
  EXPECT_EQ(default_sparse_config(twenty), (SparseConfig{32, 2}));
  // sm_80 (163 KB a CTA) holds MLA's tile of 64; sm_86/89 (99 KB) neither 64 (161 KB) nor 32
  // (118 KB): 16 heads as before. GQA's 20 heads fit in 32 there, one CTA of 52 KB an SM of 100.
  EXPECT_EQ(default_sparse_config(sparse_op(true), smem_budget_for_sm(80)), (SparseConfig{64, 1}));
  EXPECT_EQ(default_sparse_config(sparse_op(true), smem_budget_for_sm(86)), (SparseConfig{16, 4}));
  EXPECT_EQ(default_sparse_config(twenty, smem_budget_for_sm(89)), (SparseConfig{32, 1}));
  EXPECT_EQ(sparse_space(sparse_op(true), smem_budget_for_sm(86))[0], (SparseConfig{16, 4}));
  EXPECT_TRUE(sparse_config_sane(SparseConfig{32, 4}));
  EXPECT_TRUE(sparse_config_sane(SparseConfig{64, 1}));
  EXPECT_FALSE(sparse_config_sane(SparseConfig{24, 4}));   // wide tiles are 32 or 64 mma rows
  EXPECT_FALSE(sparse_config_sane(SparseConfig{128, 4}));  // more heads than any tile
  EXPECT_FALSE(sparse_config_sane(SparseConfig{0, 4}));
  EXPECT_FALSE(sparse_config_sane(SparseConfig{16, 0}));
}

TEST(SparseTuning, EntriesRoundTripAndMatchOnlyTheirShape) {
  ScratchDir dir;
  const std::string path = dir.path() + "/db.json";
  TuningDb db;
  db.upsert(sparse_entry(64, {8, 2}));
  db.upsert(entry(1, 64));  // a decode entry of the same buckets stays apart
  ASSERT_TRUE(db.save(path).is_ok());
  const json j = json::parse(read_text(path));
  bool seen = false;
  for (const json& e : j["entries"])
    if (e["op"] == "sparse") {
      seen = true;
      EXPECT_EQ(e["head_dim"], 576);
      EXPECT_EQ(e["top_k"], 2048);
      EXPECT_EQ(e["group"], 128);
      EXPECT_EQ(e["select"], "group");
      EXPECT_EQ(e["config"]["head_tile"], 8);
      EXPECT_EQ(e["config"]["ctas_per_sm"], 2);
    }
  EXPECT_TRUE(seen);
  std::vector<std::string> warnings;
  const TuningDb back = load_quiet(path, &warnings);
  EXPECT_TRUE(warnings.empty()) << warnings[0];
  const auto hit = back.lookup(kH100, tuning_shape_for(sparse_op(true)), 1, 48);  // the nearest batch bucket
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->sparse_config, (SparseConfig{8, 2}));
  EXPECT_FALSE(back.lookup(kH100, tuning_shape_for(sparse_op(false)), 1, 64).has_value());
  SparseOp wider = sparse_op(true);
  wider.desc.index_width = 4096;
  EXPECT_FALSE(back.lookup(kH100, tuning_shape_for(wider), 1, 64).has_value());
}

TEST(SparseTuning, OutOfRangeConfigsAreSkippedWithAWarning) {
  ScratchDir dir;
  const std::string path = dir.path() + "/db.json";
  TuningDb db;
  db.upsert(sparse_entry(64, {8, 2}));
  db.upsert(sparse_entry(8, {4, 8}));
  ASSERT_TRUE(db.save(path).is_ok());
  json j = json::parse(read_text(path));
  for (json& e : j["entries"])
    if (e["batch_bucket"] == 64) e["config"]["head_tile"] = 48;  // not a tile the kernel has
  write_text(path, j.dump());
  std::vector<std::string> warnings;
  const TuningDb back = load_quiet(path, &warnings);
  EXPECT_TRUE(any_contains(warnings, "config out of range"));
  ASSERT_EQ(back.entries().size(), 1u);
  EXPECT_EQ(back.entries()[0].sparse_config, (SparseConfig{4, 8}));
}

// A plan compiles the head tile of the config it is given and launches with its CTAs per SM; a
// compile-only runtime ignores the database (no device to match: prewarm --db compiles those).
// Plans reading the database on a GPU: tests/tune_gpu_test.cpp.
TEST(SparseTuning, PlansTakeTheirConfig) {
  ScratchDir dir;
  tka_runtime_options o;
  tka_runtime_options_init(&o);
  o.cache_dir = dir.path().c_str();
  o.compile_only_sm = 90;
  TuningEntry e = sparse_entry(64, {8, 2});
  TuningDb db;
  db.upsert(e);
  const std::string path = dir.path() + "/db.json";
  ASSERT_TRUE(db.save(path).is_ok());
  o.tuning_db = path.c_str();
  std::unique_ptr<Runtime> rt;
  ASSERT_TRUE(Runtime::create(o, &rt).is_ok());
  const SparseOp op = sparse_op(true);
  std::unique_ptr<SparsePlan> plan;
  ASSERT_TRUE(SparsePlan::create(*rt, op.desc, &plan).is_ok());
  EXPECT_EQ(plan->config(), default_sparse_config(op));
  EXPECT_NE(plan->spec_text().find("t=256;ht=64"), std::string::npos) << plan->spec_text();
  const SparseConfig mine{8, 2};
  ASSERT_TRUE(SparsePlan::create(*rt, op.desc, &plan, &mine).is_ok());
  EXPECT_EQ(plan->config(), mine);
  EXPECT_NE(plan->spec_text().find("ht=8"), std::string::npos) << plan->spec_text();
  EXPECT_NE(plan->spec_text().find("cps=2"), std::string::npos) << plan->spec_text();
}

// Every head tile of the MLA space compiles for both archs (the sparse tests compile the default).
TEST(SparseSpace, EveryHeadTileCompilesForSm80AndSm90) {
  ScratchDir dir;
  std::vector<PrewarmJob> jobs;
  const SparseOp op = sparse_op(true);
  std::set<std::string> seen;
  for (const SparseConfig& c : sparse_space(op)) {
    if (c.head_tile == default_sparse_config(op).head_tile) continue;
    const codegen::RenderedSource s = codegen::render_sparse(sparse_kernel_spec(op, c));
    if (!seen.insert(s.spec_text).second) continue;
    EXPECT_NE(s.source.find("kHeadTile = " + std::to_string(c.head_tile) + ";"), std::string::npos) << s.spec_text;
    for (int sm : {80, 90}) jobs.push_back({sm, s});
  }
  EXPECT_EQ(seen.size(), 6u);  // 32, 16, 8, 4, 2, 1
  expect_all_compile(jobs, dir.path());
}

// ---- fidelity diagnostics ----------------------------------------------------------------

FidelityOp fidelity_op(tka_dtype dtype = TKA_DTYPE_BF16, int top_k = 2048) {
  tka_fidelity_desc d{};
  d.dtype = dtype;
  d.num_q_heads = 32, d.num_kv_heads = 8, d.head_dim = 128, d.top_k = top_k;
  d.max_batch = 8, d.max_seq_len = 32768;
  FidelityOp op;
  const Status s = validate_fidelity(d, /*host=*/false, &op);
  EXPECT_TRUE(s.is_ok()) << s.message();
  return op;
}

TuningEntry fidelity_entry(int seq_bucket, int batch_bucket, FidelityConfig config, tka_dtype dtype = TKA_DTYPE_FP32) {
  TuningEntry e = entry(seq_bucket, batch_bucket);
  e.shape = tuning_shape_for(fidelity_op(dtype));
  e.config = DecodeConfig{};
  e.fidelity_config = config;
  return e;
}

TEST(FidelitySpace, StartsWithTheDefaultAndHoldsEachConfigOnce) {
  const FidelityOp op = fidelity_op();
  const std::vector<FidelityConfig> space = fidelity_space(op);
  ASSERT_EQ(space.size(), 12u);  // selection threads 512, 256, 1024 x keys per CTA 256, 128, 512, 1024
  EXPECT_EQ(space[0], default_fidelity_config(op));
  EXPECT_EQ(space[0], (FidelityConfig{512, 256}));
  std::set<std::string> seen;
  for (const FidelityConfig& c : space) {
    EXPECT_TRUE(fidelity_config_sane(c)) << c.text();
    EXPECT_TRUE(seen.insert(c.text()).second) << "twice: " << c.text();
  }
  EXPECT_FALSE(fidelity_config_sane(FidelityConfig{128, 256}));  // select_rows is built for 256..1024
  EXPECT_FALSE(fidelity_config_sane(FidelityConfig{768, 256}));
  EXPECT_FALSE(fidelity_config_sane(FidelityConfig{512, 0}));
}

TEST(FidelityTuning, EntriesRoundTripAndMatchOnlyTheirShape) {
  ScratchDir dir;
  const std::string path = dir.path() + "/db.json";
  TuningDb db;
  db.upsert(fidelity_entry(32768, 8, {256, 1024}));
  db.upsert(entry(32768, 8));  // a decode entry of the same buckets stays apart
  ASSERT_TRUE(db.save(path).is_ok());
  const json j = json::parse(read_text(path));
  bool seen = false;
  for (const json& e : j["entries"])
    if (e["op"] == "fidelity") {
      seen = true;
      EXPECT_EQ(e["dtype"], "fp32");
      EXPECT_EQ(e["head_dim"], 128);
      EXPECT_EQ(e["top_k"], 2048);
      EXPECT_EQ(e["group"], 4);
      EXPECT_EQ(e["config"]["select_threads"], 256);
      EXPECT_EQ(e["config"]["keys_per_cta"], 1024);
    }
  EXPECT_TRUE(seen);
  std::vector<std::string> warnings;
  const TuningDb back = load_quiet(path, &warnings);
  EXPECT_TRUE(warnings.empty()) << warnings[0];
  const auto hit = back.lookup(kH100, tuning_shape_for(fidelity_op(TKA_DTYPE_FP32)), 20000, 3);  // nearest
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->fidelity_config, (FidelityConfig{256, 1024}));
  EXPECT_FALSE(back.lookup(kH100, tuning_shape_for(fidelity_op(TKA_DTYPE_BF16)), 32768, 8).has_value());
  EXPECT_FALSE(back.lookup(kH100, tuning_shape_for(fidelity_op(TKA_DTYPE_FP32, 64)), 32768, 8).has_value());
}

TEST(FidelityTuning, OutOfRangeConfigsAreSkippedWithAWarning) {
  ScratchDir dir;
  const std::string path = dir.path() + "/db.json";
  TuningDb db;
  db.upsert(fidelity_entry(32768, 8, {256, 1024}));
  db.upsert(fidelity_entry(4096, 1, {1024, 128}));
  ASSERT_TRUE(db.save(path).is_ok());
  json j = json::parse(read_text(path));
  for (json& e : j["entries"])
    if (e["batch_bucket"] == 8) e["config"]["select_threads"] = 2048;  // more than a CTA holds
  write_text(path, j.dump());
  std::vector<std::string> warnings;
  const TuningDb back = load_quiet(path, &warnings);
  EXPECT_TRUE(any_contains(warnings, "config out of range"));
  ASSERT_EQ(back.entries().size(), 1u);
  EXPECT_EQ(back.entries()[0].fidelity_config, (FidelityConfig{1024, 128}));
}

// A plan compiles the selection threads of the config it is given and launches with its keys per
// CTA; a compile-only runtime ignores the database. Plans reading it on a GPU: tune_gpu_test.cpp.
TEST(FidelityTuning, PlansTakeTheirConfig) {
  ScratchDir dir;
  TuningDb db;
  db.upsert(fidelity_entry(32768, 8, {256, 1024}, TKA_DTYPE_BF16));
  const std::string path = dir.path() + "/db.json";
  ASSERT_TRUE(db.save(path).is_ok());
  tka_runtime_options o;
  tka_runtime_options_init(&o);
  o.cache_dir = dir.path().c_str();
  o.compile_only_sm = 90;
  o.tuning_db = path.c_str();
  std::unique_ptr<Runtime> rt;
  ASSERT_TRUE(Runtime::create(o, &rt).is_ok());
  const FidelityOp op = fidelity_op();
  std::unique_ptr<FidelityPlan> plan;
  ASSERT_TRUE(FidelityPlan::create(*rt, op.desc, &plan).is_ok());
  EXPECT_EQ(plan->config(), default_fidelity_config(op));
  EXPECT_NE(plan->spec_text().find("ss=512;"), std::string::npos) << plan->spec_text();
  const FidelityConfig mine{256, 1024};
  ASSERT_TRUE(FidelityPlan::create(*rt, op.desc, &plan, &mine).is_ok());
  EXPECT_EQ(plan->config(), mine);
  EXPECT_NE(plan->spec_text().find("ss=256;"), std::string::npos) << plan->spec_text();
  EXPECT_NE(plan->spec_text().find("kpc=1024"), std::string::npos) << plan->spec_text();
  const FidelityConfig bad{512, 0};
  const Status s = FidelityPlan::create(*rt, op.desc, &plan, &bad);
  EXPECT_EQ(s.code(), TKA_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(s.message().find("fidelity config"), std::string::npos) << s.message();
}

// Every selection thread count of the space compiles for both archs (the fidelity tests compile
// the default's 512).
TEST(FidelityCompile, EveryConfigOfTheSpaceCompilesForSm80AndSm90) {
  ScratchDir dir;
  std::vector<PrewarmJob> jobs;
  const FidelityOp op = fidelity_op();
  std::set<std::string> seen;
  for (const FidelityConfig& c : fidelity_space(op)) {
    const codegen::RenderedSource s = codegen::render_fidelity(fidelity_kernel_spec(op, c));
    if (c.select_threads == 512 || !seen.insert(s.spec_text).second) continue;
    EXPECT_NE(s.source.find("kThreads = " + std::to_string(c.select_threads) + ";"), std::string::npos) << s.spec_text;
    for (int sm : {80, 90}) jobs.push_back({sm, s});
  }
  EXPECT_EQ(seen.size(), 2u);  // 256, 1024
  expect_all_compile(jobs, dir.path());
}

// ---- presets and prewarm --------------------------------------------------------------------

TEST(Presets, HoldTheRequiredModels) {
  for (const char* name : {"llama-3.1-8b", "llama-3.1-70b", "qwen2.5-7b", "qwen2.5-72b", "mistral-7b", "deepseek-v3.2"})
    ASSERT_NE(find_preset(name), nullptr) << name;
  EXPECT_EQ(find_preset("Llama-3.1-8B"), nullptr);  // names are lower case
  const ModelPreset& ds = *find_preset("deepseek-v3.2");
  EXPECT_EQ(ds.num_q_heads, 128);
  EXPECT_EQ(ds.head_dim, 576);
  EXPECT_EQ(ds.head_dim_v, 512);
  EXPECT_EQ(ds.indexer_heads, 64);
  EXPECT_EQ(ds.indexer_dim, 128);
  EXPECT_EQ(ds.top_k, 2048);
  EXPECT_TRUE(preset_decode_descs(ds, 4, 4096).empty());
  const ModelPreset& l70 = *find_preset("llama-3.1-70b");
  EXPECT_EQ(l70.num_q_heads / l70.num_kv_heads, 8);
  for (const ModelPreset& p : model_presets()) {
    for (const tka_decode_desc& d : preset_decode_descs(p, 4, 4096)) {
      DecodeOp op;
      EXPECT_TRUE(validate_decode(d, &op).is_ok()) << p.name << ": " << validate_decode(d, &op).message();
    }
  }
}

// A job that does not compile is counted and named with NVRTC's log, so that the compile tests
// above (expect_all_compile) report every failing variant.
TEST(Prewarm, CompileJobsCountsAFailedCompileAndNamesIt) {
  ScratchDir dir;
  const codegen::RenderedSource broken{
      "broken_kernel", "op=broken", "// op=broken\n__global__ void k() { this_is_not_declared(); }\n", {"k"}};
  const PrewarmSummary sum = compile_jobs({{90, broken}}, dir.path(), 1);
  EXPECT_EQ(sum.failed, 1);
  EXPECT_EQ(sum.compiled + sum.cached, 0);
  ASSERT_EQ(sum.errors.size(), 1u);
  EXPECT_NE(sum.errors[0].find("broken_kernel [op=broken] sm_90"), std::string::npos) << sum.errors[0];
  EXPECT_NE(sum.errors[0].find("this_is_not_declared"), std::string::npos) << sum.errors[0];
}

TEST(Prewarm, AddsTheDatabaseConfigsOfTheArch) {
  const ModelPreset& p = *find_preset("llama-3.1-8b");
  const size_t base = prewarm_jobs(p, {80, 90}, nullptr, 4, 32768).size();
  EXPECT_EQ(base, 12u);  // head/group x contiguous/paged 16/paged 64, two archs
  TuningDb db;
  db.upsert(entry(32768, 8, 1024));  // sm_90 H100, a non-default config
  db.upsert(entry(4096, 1, 1024));   // the same config again: one kernel
  TuningEntry same = entry(8192, 1);
  same.config = default_decode_config(llama_op());  // the default: nothing new
  db.upsert(same);
  const std::vector<PrewarmJob> jobs = prewarm_jobs(p, {80, 90}, &db, 4, 32768);
  ASSERT_EQ(jobs.size(), base + 1);
  EXPECT_EQ(jobs.size(), prewarm_jobs(p, {80, 90}, &db, 4, 32768).size());
  int extra_sm90 = 0;
  for (const PrewarmJob& j : jobs) extra_sm90 += j.sm == 90 && j.source.spec_text.find("ss=1024") != std::string::npos;
  EXPECT_EQ(extra_sm90, 1);
}

// A tuned head tile of the DeepSeek preset's MLA attention is prewarmed beside the default one.
TEST(Prewarm, AddsTheDatabaseSparseConfigs) {
  const ModelPreset& p = *find_preset("deepseek-v3.2");
  const size_t base = prewarm_jobs(p, {90}, nullptr, 8, 65536).size();
  TuningDb db;
  db.upsert(sparse_entry(8, {8, 2}));   // sm_90 H100
  db.upsert(sparse_entry(64, {8, 4}));  // the same kernel (CTAs per SM is a launch choice)
  const std::vector<PrewarmJob> jobs = prewarm_jobs(p, {90}, &db, 8, 65536);
  ASSERT_EQ(jobs.size(), base + 1);
  int tuned = 0;
  for (const PrewarmJob& j : jobs)
    tuned += j.source.spec_text.find("op=sparse") != std::string::npos &&
             j.source.spec_text.find("ht=8") != std::string::npos;
  EXPECT_EQ(tuned, 1);
  EXPECT_EQ(prewarm_jobs(p, {80}, &db, 8, 65536).size(), prewarm_jobs(p, {80}, nullptr, 8, 65536).size());
}

// Fidelity configs the database tuned are prewarmed for their arch (they belong to no preset).
TEST(Prewarm, AddsTheDatabaseFidelityConfigs) {
  const ModelPreset& p = *find_preset("llama-3.1-8b");
  const size_t base = prewarm_jobs(p, {80, 90}, nullptr, 4, 32768).size();
  TuningDb db;
  db.upsert(fidelity_entry(32768, 8, {256, 1024}));  // sm_90 H100
  db.upsert(fidelity_entry(4096, 8, {256, 128}));    // the same kernel (keys per CTA is a launch choice)
  const std::vector<PrewarmJob> jobs = prewarm_jobs(p, {80, 90}, &db, 4, 32768);
  ASSERT_EQ(jobs.size(), base + 1);
  int tuned = 0;
  for (const PrewarmJob& j : jobs)
    tuned += j.sm == 90 && j.source.spec_text == "op=fidelity;dtype=fp32;d=128;ss=256;sc=4096";
  EXPECT_EQ(tuned, 1);
}

// The DeepSeek preset prewarms its indexer decode (indexer + selection module, MLA sparse
// attention module; contiguous and paged 64), after which creating those plans compiles nothing,
// at any batch: on sm_90 the indexer's default has 3 stages below 8 rows and 2 from 8 on, and
// prewarm compiles both whatever --batch says.
TEST(Prewarm, DeepSeekIndexerDecodePlansCompileNothingAfterward) {
  const ModelPreset& p = *find_preset("deepseek-v3.2");
  EXPECT_EQ(prewarm_jobs(p, {90}, nullptr, 8, 65536).size(), 6u);
  EXPECT_EQ(prewarm_jobs(p, {90}, nullptr, 1, 65536).size(), 6u);
  EXPECT_EQ(prewarm_jobs(p, {80}, nullptr, 8, 65536).size(), 4u);  // one default (no wgmma)
  ScratchDir dir;
  const PrewarmSummary sum = prewarm(p, {90}, dir.path(), 2, 4, 65536, false, nullptr);
  EXPECT_EQ(sum.failed, 0) << (sum.errors.empty() ? "" : sum.errors[0]);
  EXPECT_EQ(sum.compiled, 6);
  tka_runtime_options o;
  tka_runtime_options_init(&o);
  o.compile_only_sm = 90;
  o.cache_dir = dir.path().c_str();
  tka_runtime* rt = nullptr;
  ASSERT_EQ(tka_runtime_create(&o, &rt), TKA_SUCCESS) << tka_last_error();
  tka_counters before{}, after{};
  tka_get_counters(&before);
  for (int batch : {8, 1})
    for (const tka_indexer_desc& d : preset_indexer_descs(p, batch, 65536)) {
      tka_op_desc desc;
      tka_op_desc_init(&desc, TKA_OP_INDEXER_DECODE);
      desc.indexer = d;
      tka_plan* plan = nullptr;
      EXPECT_EQ(tka_plan_create(rt, &desc, &plan), TKA_SUCCESS) << tka_last_error();
      tka_plan_destroy(plan);
    }
  tka_get_counters(&after);
  EXPECT_EQ(after.nvrtc_compiles, before.nvrtc_compiles);
  EXPECT_GE(after.disk_hits, before.disk_hits + 6);  // both indexer modules of each layout, the attention
  tka_runtime_destroy(rt);
}

// A tuned indexer config of another stage count adds that indexer module to the prewarm.
TEST(Prewarm, AddsTheDatabaseIndexerStages) {
  const ModelPreset& p = *find_preset("deepseek-v3.2");
  const size_t base = prewarm_jobs(p, {90}, nullptr, 8, 65536).size();
  TuningDb db;
  for (const IndexerConfig& c : indexer_default_configs(deepseek_indexer_op(), 90))
    ASSERT_NE(c.stages, 6) << "the test needs a stage count other than the defaults'";
  db.upsert(indexer_entry(131072, 16, {6, 16}));
  db.upsert(indexer_entry(65536, 16, {6, 32}));  // the same kernel: once
  const std::vector<PrewarmJob> jobs = prewarm_jobs(p, {90}, &db, 8, 65536);
  EXPECT_EQ(jobs.size(), base + 1);
  int six = 0;
  for (const PrewarmJob& j : jobs) six += j.source.spec_text.find("ks=6;") != std::string::npos;
  EXPECT_EQ(six, 1);
}

// ---- the commands ---------------------------------------------------------------------------

const std::string kCli = TOPKATTN_CLI_PATH;

TEST(TuneCli, ModelsListsEveryPreset) {
  const auto r = run_command(kCli + " models --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json j = json::parse(r.out);
  ASSERT_EQ(j.size(), model_presets().size());
  EXPECT_EQ(j[0]["name"], "llama-3.1-8b");
  EXPECT_EQ(j[5]["name"], "deepseek-v3.2");
  EXPECT_EQ(j[5]["indexer_heads"], 64);
  const auto table = run_command(kCli + " models");
  EXPECT_EQ(table.exit_code, 0);
  EXPECT_NE(table.out.find("qwen2.5-72b"), std::string::npos);
}

TEST(TuneCli, BadArgumentsNameTheFlag) {
  const std::string env = "env -u TOPKATTN_TUNING_DB ";
  struct Case {
    std::string args, flag;
  } cases[] = {{" tune --model nope --db x.json", "--model"},
               {" tune --model deepseek-v3.2 --db x.json", "--model deepseek-v3.2"},
               {" tune --seq-lens 0,4096 --db x.json", "--seq-lens"},
               {" tune --batches 1,x --db x.json", "--batches"},
               {" tune --repeats 1 --db x.json", "--repeats"},
               {" tune", "--db"},
               {" tune --model llama-3.1-8b --k 0 --db x.json", "top_k"},
               {" tune --op indexer --dtype fp16 --db x.json", "--dtype"},
               {" tune --op indexer --model llama-3.1-8b --db x.json", "--model llama-3.1-8b"},
               {" tune --op sparse --model nope --db x.json", "--model"},
               {" tune --op sparse --model deepseek-v3.2 --dtype fp32 --db x.json", "--dtype"},
               {" tune --op sparse --model llama-3.1-8b --select both --db x.json", "--select"},
               {" tune --op sparse --model llama-3.1-8b --k 9000 --db x.json", "index_width"},
               {" tune --op fidelity --model nope --db x.json", "--model"},
               {" tune --op fidelity --model deepseek-v3.2 --db x.json", "--model deepseek-v3.2"},
               {" tune --op fidelity --model llama-3.1-8b --dtype fp8 --db x.json", "--dtype"},
               {" tune --op fidelity --model llama-3.1-8b --k 0 --db x.json", "fidelity.top_k"},
               {" tune --op fidelity --head-dim 96 --dtype fp32 --db x.json", "fidelity.head_dim"},
               {" tune --op nope --db x.json", "--op"}};
  for (const Case& c : cases) {
    const auto r = run_command(env + kCli + c.args);
    EXPECT_EQ(r.exit_code, 2) << c.args << ": " << r.err;
    EXPECT_NE(r.err.find(c.flag), std::string::npos) << c.args << ": " << r.err;
  }
}

TEST(TuneCli, WithoutAGpuSaysSo) {
  if (run_command("nvidia-smi -L >/dev/null 2>&1 && echo yes").out.find("yes") != std::string::npos)
    GTEST_SKIP() << "a GPU is present: the GPU tests tune for real";
  ScratchDir dir;
  for (const char* op : {"decode", "sparse --model deepseek-v3.2", "fidelity --model llama-3.1-8b",
                         "fidelity --head-dim 128 --group 4 --kv-heads 8 --dtype fp32"}) {
    const auto r = run_command(kCli + " tune --op " + op + " --seq-lens 4096 --batches 1 --db " + (dir / "db.json"));
    EXPECT_EQ(r.exit_code, 3) << op << ": " << r.err;
    EXPECT_NE(r.err.find("no CUDA driver"), std::string::npos) << op << ": " << r.err;
  }
}

TEST(TuneCli, PrewarmCompilesTheDatabaseConfigs) {
  ScratchDir dir;
  TuningDb db;
  db.upsert(entry(32768, 8, 1024));
  ASSERT_TRUE(db.save(dir / "db.json").is_ok());
  const std::string cmd = kCli + " prewarm --model llama-3.1-8b --arch sm_90 --json --cache-dir " + (dir / "cache") +
                          " --db " + (dir / "db.json");
  auto r = run_command(cmd);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["compiled"], 7);  // six preset kernels and the tuned one
  EXPECT_EQ(j["failed"], 0);
  r = run_command(cmd);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  j = json::parse(r.out);
  EXPECT_EQ(j["compiled"], 0);
  EXPECT_EQ(j["cached"], 7);
  EXPECT_LT(j["seconds"].get<double>(), 1.0);
}

TEST(TuneCapi, OptionsAreValidated) {
  tka_runtime_options o;
  tka_runtime_options_init(&o);
  EXPECT_EQ(o.tune, 0);
  EXPECT_EQ(o.tuning_db, nullptr);
  tka_runtime* rt = nullptr;
  o.compile_only_sm = 90;
  o.tune = 2;
  EXPECT_EQ(tka_runtime_create(&o, &rt), TKA_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(tka_last_error()).find("options.tune"), std::string::npos);
  o.tune = 1;
  EXPECT_EQ(tka_runtime_create(&o, &rt), TKA_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(tka_last_error()).find("compile-only"), std::string::npos);
  // A corrupt database never stops a runtime: it is ignored with a warning.
  ScratchDir dir;
  write_text(dir / "db.json", "{ not json");
  o.tune = 0;
  o.tuning_db = (dir / "db.json").c_str();
  const std::string db_path = dir / "db.json";
  o.tuning_db = db_path.c_str();
  o.log_level = TKA_LOG_OFF;
  ASSERT_EQ(tka_runtime_create(&o, &rt), TKA_SUCCESS) << tka_last_error();
  tka_runtime_destroy(rt);
}

}  // namespace
}  // namespace tka
