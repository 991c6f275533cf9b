// Top-k selection, host side: descriptor validation, NVRTC compilation of every selection
// variant for sm_80 and sm_90, tensor validation through compile-only plans (fake, never
// dereferenced device addresses), and the reference itself. Needs no GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "gpu_util.h"
#include "reference/select_reference.h"
#include "runtime/select_coop.h"
#include "runtime/select_plan.h"
#include "runtime/select_split.h"
#include "test_util.h"

namespace {

using namespace tka_test;
namespace ref = topkattn_ref;

tka_op_desc select_desc(tka_dtype dtype = TKA_DTYPE_FP32, int k = 16, int rows = 8, int n = 1000) {
  tka_op_desc d;
  tka_op_desc_init(&d, TKA_OP_TOPK_SELECT);
  d.select.dtype = dtype;
  d.select.top_k = k;
  d.select.max_rows = rows;
  d.select.max_n = n;
  return d;
}

TEST(SelectDesc, InitSetsTheDocumentedDefaults) {
  tka_op_desc d;
  std::memset(&d, 0x7f, sizeof(d));
  tka_op_desc_init(&d, TKA_OP_TOPK_SELECT);
  EXPECT_EQ(d.op, TKA_OP_TOPK_SELECT);
  EXPECT_EQ(d.select.dtype, TKA_DTYPE_FP32);
  EXPECT_EQ(d.select.max_rows, 1);
  EXPECT_EQ(d.select.sorted, 1);
  EXPECT_EQ(d.select.pad, 0);
  EXPECT_EQ(d.select.top_k, 0);
  tka_tensors t;
  std::memset(&t, 0x7f, sizeof(t));
  tka_tensors_init(&t);
  EXPECT_EQ(t.input, nullptr);
  EXPECT_EQ(t.values, nullptr);
  EXPECT_EQ(t.q, nullptr);
}

struct DescCase {
  const char* name;
  std::function<void(tka_select_desc&)> mutate;
  tka_status status;
  const char* field;
};

TEST(SelectDesc, EveryBadFieldIsRejectedByName) {
  ScratchDir dir;
  RuntimePtr rt = compile_only_runtime(dir.path(), 90);
  const DescCase cases[] = {
      {"dtype", [](tka_select_desc& d) { d.dtype = static_cast<tka_dtype>(9); }, TKA_ERROR_INVALID_ARGUMENT,
       "select.dtype"},
      {"k=0", [](tka_select_desc& d) { d.top_k = 0; }, TKA_ERROR_INVALID_ARGUMENT, "select.top_k"},
      {"k<0", [](tka_select_desc& d) { d.top_k = -3; }, TKA_ERROR_INVALID_ARGUMENT, "select.top_k"},
      {"k>8192", [](tka_select_desc& d) { d.top_k = 8193, d.max_n = 100000; }, TKA_ERROR_INVALID_ARGUMENT,
       "select.top_k"},
      {"k>n", [](tka_select_desc& d) { d.top_k = 1001; }, TKA_ERROR_INVALID_ARGUMENT, "select.top_k"},
      {"rows", [](tka_select_desc& d) { d.max_rows = 0; }, TKA_ERROR_INVALID_ARGUMENT, "select.max_rows"},
      {"n=0", [](tka_select_desc& d) { d.max_n = 0; }, TKA_ERROR_INVALID_ARGUMENT, "select.max_n"},
      {"n huge", [](tka_select_desc& d) { d.max_n = 1 << 30; }, TKA_ERROR_INVALID_ARGUMENT, "select.max_n"},
      {"pad", [](tka_select_desc& d) { d.pad = 2; }, TKA_ERROR_INVALID_ARGUMENT, "select.pad"},
      {"sorted", [](tka_select_desc& d) { d.sorted = -1; }, TKA_ERROR_INVALID_ARGUMENT, "select.sorted"},
  };
  for (const DescCase& c : cases) {
    tka_op_desc d = select_desc();
    c.mutate(d.select);
    tka_plan* plan = reinterpret_cast<tka_plan*>(0x1);
    EXPECT_EQ(tka_plan_create(rt.get(), &d, &plan), c.status) << c.name;
    EXPECT_EQ(plan, nullptr) << c.name;
    EXPECT_NE(std::string(tka_last_error()).find(c.field), std::string::npos) << c.name << ": " << tka_last_error();
  }
  // k > n is fine once padding is asked for.
  tka_op_desc d = select_desc(TKA_DTYPE_FP32, 1001);
  d.select.pad = 1;
  tka_plan* plan = nullptr;
  EXPECT_EQ(tka_plan_create(rt.get(), &d, &plan), TKA_SUCCESS) << tka_last_error();
  tka_plan_destroy(plan);
}

// Every selection kernel variant (three dtypes; the kernels do not depend on k or the sizes)
// compiles for both archs, and a second runtime on the same cache compiles nothing.
// The dynamic shared memory a select_rows launch asks for: the ring only for rows that take the
// one-read path (the rule the kernels apply, templates/common/one_read_rule.cuh), the sort buffer
// only for sorted output sorted in the rows kernel.
TEST(SelectSmem, TheRingGoesOnlyToRowsThatStream) {
  tka::SelectSmem s;
  s.ring = 64 << 10, s.sort = 16 << 10, s.sort_in_rows = true, s.capacity = 4096;
  EXPECT_EQ(s.bytes(131072, 2048, false), 64 << 10);
  EXPECT_EQ(s.bytes(131072, 2048, true), 64 << 10);  // the sort reuses the ring's bytes
  EXPECT_EQ(s.bytes(8192, 2048, true), 16 << 10);    // too short to stream: the sort only
  EXPECT_EQ(s.bytes(8192, 2048, false), 0);
  EXPECT_EQ(s.bytes(131072, 4096, true), 16 << 10);  // k over half the capacity: two reads
  EXPECT_EQ(s.bytes(16384, 1024, false), 64 << 10);  // the shortest row that streams
  EXPECT_EQ(s.bytes(16383, 64, false), 0);
  EXPECT_EQ(s.bytes(32768, 2049, false), 0);       // k > n / 16
  EXPECT_EQ(s.bytes(1 << 20, 1 << 21, false), 0);  // k > n: the whole row, nothing to select
  s.sort_in_rows = false;
  EXPECT_EQ(s.bytes(8192, 2048, true), 0);  // the sort runs in its own kernel
  s.capacity = 2048;                        // too small for the sample: never the one-read path
  EXPECT_EQ(s.bytes(131072, 512, false), 0);
}

// The split path stages each chunk's keys above the threshold bin and its candidates in slots of
// its own: every split that select_split can choose for a plan's rows and row length (any row
// count and any length up to it) fits the workspace bound, and each chunk's slots hold what it
// may stage (fewer than k sure keys, at most the capacity of candidates, neither more than the
// chunk).
TEST(SelectSplit, StagingFitsTheWorkspaceBound) {
  for (int threads : {32, 512}) {
    for (int sm : {108, 132}) {
      for (int min_chunks : {4, 16}) {
        for (int max_len : {4096, 32768, 131072, 1 << 20}) {
          for (int k : {1, 64, 2048, 8192}) {
            for (int max_rows : {1, 16, 32, 132}) {
              const long long bound = tka::split_stage_bound(max_rows, max_len, threads, min_chunks, k, 4096, sm);
              for (int rows = 1; rows <= std::min(max_rows, sm); ++rows) {
                for (int n : {max_len, max_len - 1, max_len / 3 + 7, max_len / 16, 1000}) {
                  const tka::SelectSplit split = tka::select_split(true, threads, rows, n, sm, min_chunks);
                  if (split.chunks == 0) continue;
                  const tka::SplitStage st = tka::split_stage(split, k, 4096);
                  EXPECT_LE(static_cast<long long>(rows) * split.chunks * st.slots, bound)
                      << "sm=" << sm << " rows=" << rows << " n=" << n << " of " << max_len << " k=" << k;
                  EXPECT_LE(split.chunks, 64);
                  EXPECT_LE(split.chunks, threads) << "the finish scans a chunk's count a thread";
                  EXPECT_EQ(st.sure, std::min(split.chunk, k));
                  EXPECT_EQ(st.slots - st.sure, std::min(split.chunk, 4096));
                }
              }
            }
          }
        }
      }
    }
  }
  // Batch-1 decode (32 rows of 32K, 512 threads, 132 SMs, k = 2048): 29 rows of 10 chunks of 4096
  // keys are the most slots.
  EXPECT_EQ(tka::split_stage_bound(32, 32768, 512, 4, 2048, 4096, 132), 29LL * 10 * (2048 + 4096));
  EXPECT_EQ(tka::split_stage_bound(32, 32768, 512, 64, 2048, 4096, 132), 0);  // too few chunks ever to split
  EXPECT_EQ(tka::split_stage_bound(0, 32768, 512, 4, 2048, 4096, 132), 0);
}

// The cooperative grid: every CTA resident at once (rows x chunks within what the SMs hold), two
// per SM where a chunk's keys fit that way, else one; chunks a multiple of 4 keys covering the
// row; no more chunks than a CTA's threads; none for many rows, short rows, or no room.
TEST(SelectCoop, ShapeKeepsTheGridResident) {
  tka::CoopResidency h100;
  h100.smem_for[1] = 220 * 1024, h100.smem_for[2] = 104 * 1024;
  tka::CoopSelectShape s = tka::coop_select_shape(32, 131072, 512, 132, h100);
  EXPECT_EQ(s.chunks, 8);  // 264 / 32
  EXPECT_EQ(s.chunk, 16384);
  EXPECT_EQ(s.smem, 65536);
  s = tka::coop_select_shape(32, 131071, 512, 132, h100);  // odd n: the last chunk is shorter
  EXPECT_EQ(s.chunks, 8);
  EXPECT_EQ(s.chunk, 16384);
  s = tka::coop_select_shape(1, 131072, 512, 132, h100);  // one row over the whole GPU
  EXPECT_LE(s.chunks, 264);
  EXPECT_GE(s.chunks, 256);
  EXPECT_EQ(s.chunk % 4, 0);
  EXPECT_GE(static_cast<long long>(s.chunk) * s.chunks, 131072);
  s = tka::coop_select_shape(1, 131072, 128, 132, h100);  // at most one chunk a thread
  EXPECT_EQ(s.chunks, 128);
  s = tka::coop_select_shape(16, 440000, 512, 132, h100);  // 16 chunks of 110 KB: one CTA per SM
  EXPECT_EQ(s.chunks, 8);
  EXPECT_LE(s.smem, h100.smem_for[1]);
  s = tka::coop_select_shape(32, 32768, 512, 132, h100, 24 * 1024);  // work after it needs 24 KB
  EXPECT_EQ(s.chunks, 8);
  EXPECT_EQ(s.chunk, 4096);
  EXPECT_EQ(s.smem, 24 * 1024);
  EXPECT_EQ(tka::coop_select_shape(32, 32768, 512, 132, h100, 300 * 1024).chunks, 0);
  EXPECT_EQ(tka::coop_select_shape(4, 64 << 20, 512, 132, h100).chunks, 0);  // no chunk fits
  EXPECT_EQ(tka::coop_select_shape(133, 131072, 512, 132, h100).chunks, 0);  // more rows than SMs
  EXPECT_EQ(tka::coop_select_shape(32, tka::kCoopMinLen - 1, 512, 132, h100).chunks, 0);
  EXPECT_EQ(tka::coop_select_shape(0, 131072, 512, 132, h100).chunks, 0);
  EXPECT_EQ(tka::coop_select_shape(32, 131072, 512, 132, tka::CoopResidency{}).chunks, 0);
  for (int rows = 1; rows <= 132; ++rows) {
    s = tka::coop_select_shape(rows, 100003, 512, 132, h100);
    if (rows <= 40) {  // beyond, a chunk of 100003 / 3 keys no longer fits
      ASSERT_GT(s.chunks, 0) << rows;
    }
    if (s.chunks == 0) continue;
    EXPECT_LE(rows * s.chunks, 2 * 132) << rows;
    EXPECT_GE(static_cast<long long>(s.chunk) * s.chunks, 100003) << rows;
    EXPECT_LT(static_cast<long long>(s.chunk) * (s.chunks - 1), 100003) << rows << ": an empty chunk";
  }
}

TEST(SelectCoop, ParamsStayInsideTheWorkspace) {
  tka::WorkspaceLayout at(256);
  const tka::CoopWorkspace ws = tka::take_coop_workspace(at, 16, 512);
  EXPECT_EQ(ws.hist, 256u);
  EXPECT_GE(ws.counts, ws.hist + 16u * 3 * 2048 * 4);
  EXPECT_GE(at.bytes(), ws.counts + 16u * 512 * 2 * 4);
  std::vector<char> base(8);
  tka::CoopSelectParams p{};
  const tka::CoopSelectShape shape{8, 16384, 65536};
  ASSERT_TRUE(tka::coop_select_params(ws, base.data(), 16, shape, &p).is_ok());
  EXPECT_EQ(reinterpret_cast<char*>(p.hist), base.data() + ws.hist);
  EXPECT_EQ(reinterpret_cast<char*>(p.counts), base.data() + ws.counts);
  EXPECT_EQ(p.chunk, 16384);
  EXPECT_EQ(p.chunks, 8);
  EXPECT_EQ(tka::coop_select_params(ws, base.data(), 17, shape, &p).code(), TKA_ERROR_INTERNAL);
  EXPECT_EQ(tka::coop_select_params(ws, base.data(), 16, {513, 4, 16}, &p).code(), TKA_ERROR_INTERNAL);
  EXPECT_EQ(tka::coop_select_params(ws, base.data(), 16, {}, &p).code(), TKA_ERROR_INTERNAL);
}

// How many CTAs share a row in a cluster: the config's size, else the largest size below it that
// keeps every row's cluster resident at once (no second wave) and two CTAs per SM at most; none
// when the device holds no cluster, or when the rows are too short for the cluster's exchanges to
// pay.
TEST(SelectCluster, SizeKeepsEveryClusterResident) {
  // Clusters of 0..8 CTAs at once, one CTA an SM, on a device of 132 SMs.
  const tka::ClusterResidency h200{0, 132, 66, 44, 32, 26, 22, 18, 16};
  const int n = 131072;
  EXPECT_EQ(tka::select_cluster_size(8, 1, n, 132, h200), 8);
  EXPECT_EQ(tka::select_cluster_size(8, 16, n, 132, h200), 8);
  EXPECT_EQ(tka::select_cluster_size(8, 17, n, 132, h200), 7);  // 17 clusters of 8 do not fit at once
  EXPECT_EQ(tka::select_cluster_size(8, 22, n, 132, h200), 6);
  EXPECT_EQ(tka::select_cluster_size(8, 26, n, 132, h200), 5);
  EXPECT_EQ(tka::select_cluster_size(8, 32, n, 132, h200), 4);
  EXPECT_EQ(tka::select_cluster_size(8, 33, n, 132, h200), 3);
  EXPECT_EQ(tka::select_cluster_size(8, 44, n, 132, h200), 3);
  EXPECT_EQ(tka::select_cluster_size(8, 45, n, 132, h200), 2);
  EXPECT_EQ(tka::select_cluster_size(8, 66, n, 132, h200), 2);
  EXPECT_EQ(tka::select_cluster_size(8, 67, n, 132, h200), 0);  // one CTA per row
  EXPECT_EQ(tka::select_cluster_size(4, 1, n, 132, h200), 4);   // the config's limit
  EXPECT_EQ(tka::select_cluster_size(0, 1, n, 132, h200), 0);
  EXPECT_EQ(tka::select_cluster_size(1, 1, n, 132, h200), 0);
  EXPECT_EQ(tka::select_cluster_size(8, 0, n, 132, h200), 0);
  const tka::ClusterResidency none{};  // below sm_90, or the ring does not fit
  EXPECT_EQ(tka::select_cluster_size(8, 1, n, 132, none), 0);
}

// A size need not be a power of two (the kernel takes any), and the sizes below it are tried
// one by one.
TEST(SelectCluster, AnySizeFromTheConfigThenEverySizeBelow) {
  // A device where 32 clusters of 4 do not fit at once (30), but 32 of 3 do.
  const tka::ClusterResidency h100{0, 132, 66, 44, 30, 26, 22, 18, 16};
  const int n = 131072;
  EXPECT_EQ(tka::select_cluster_size(8, 32, n, 132, h100), 3);  // 8, 7, 6, 5, 4 do not fit: 3
  EXPECT_EQ(tka::select_cluster_size(3, 32, n, 132, h100), 3);
  EXPECT_EQ(tka::select_cluster_size(2, 32, n, 132, h100), 2);
  EXPECT_EQ(tka::select_cluster_size(3, 45, n, 132, h100), 2);  // 45 clusters of 3 do not fit: 2
  EXPECT_EQ(tka::select_cluster_size(6, 20, n, 132, h100), 6);
  EXPECT_EQ(tka::select_cluster_size(6, 23, n, 132, h100), 5);     // 6, then 5
  EXPECT_EQ(tka::select_cluster_size(12, 1, n, 132, h100), 8);     // no more than 8
  EXPECT_EQ(tka::select_cluster_size(3, 1, 24575, 132, h100), 0);  // 2/3 of it is under 16K columns
  EXPECT_EQ(tka::select_cluster_size(3, 1, 24576, 132, h100), 3);
  EXPECT_EQ(tka::smaller_cluster_size(8), 7);
  EXPECT_EQ(tka::smaller_cluster_size(2), 1);
}

TEST(SelectCluster, OnlyRowsLongEnoughToPay) {
  const tka::ClusterResidency h200{0, 132, 66, 44, 32, 26, 22, 18, 16};
  EXPECT_EQ(tka::select_cluster_size(8, 45, 32768, 132, h200), 2);  // 16K columns saved
  EXPECT_EQ(tka::select_cluster_size(8, 45, 32767, 132, h200), 0);
  EXPECT_EQ(tka::select_cluster_size(8, 32, 32768, 132, h200), 4);  // 32 x 32K: clusters (H100: 23.0 us, 30.0 split)
  EXPECT_EQ(tka::select_cluster_size(8, 32, 21846, 132, h200), 4);  // 3/4 of it: 16K
  EXPECT_EQ(tka::select_cluster_size(8, 32, 21845, 132, h200), 0);
  EXPECT_EQ(tka::select_cluster_size(8, 1, 18725, 132, h200), 8);  // 7/8 of it: 16K
  EXPECT_EQ(tka::select_cluster_size(8, 1, 18724, 132, h200), 0);
}

TEST(SelectCompile, EveryVariantCompilesForSm80AndSm90) {
  ScratchDir dir;
  for (int sm : {80, 90}) {
    RuntimePtr rt = compile_only_runtime(dir.path(), sm);
    for (tka_dtype dtype : {TKA_DTYPE_FP32, TKA_DTYPE_BF16, TKA_DTYPE_FP16}) {
      for (int sorted : {0, 1}) {
        tka_op_desc d = select_desc(dtype, 2048, 4, 131072);
        d.select.sorted = sorted;
        tka_plan* plan = nullptr;
        ASSERT_EQ(tka_plan_create(rt.get(), &d, &plan), TKA_SUCCESS) << "sm_" << sm << ": " << tka_last_error();
        EXPECT_EQ(std::string(tka_plan_spec(plan)).rfind("op=select;", 0), 0u) << tka_plan_spec(plan);
        int max_k = 0;
        EXPECT_EQ(tka_plan_max_k(plan, &max_k), TKA_SUCCESS);
        EXPECT_EQ(max_k, 2048);
        tka_plan_destroy(plan);
      }
    }
  }
  tka_counters before{};
  tka_get_counters(&before);
  RuntimePtr again = compile_only_runtime(dir.path(), 90);
  for (tka_dtype dtype : {TKA_DTYPE_FP32, TKA_DTYPE_BF16, TKA_DTYPE_FP16}) {
    tka_op_desc d = select_desc(dtype);
    tka_plan* plan = nullptr;
    ASSERT_EQ(tka_plan_create(again.get(), &d, &plan), TKA_SUCCESS) << tka_last_error();
    tka_plan_destroy(plan);
  }
  tka_counters after{};
  tka_get_counters(&after);
  EXPECT_EQ(after.nvrtc_compiles, before.nvrtc_compiles);
  EXPECT_EQ(after.disk_hits, before.disk_hits + 3);
}

// Valid tensors for a plan of `rows` x `n`, top_k k; fake device addresses.
struct SelectTensors {
  TensorArg input, lengths, values, indices;
  tka_tensors t{};
  SelectTensors(DLDataType dtype, int64_t rows, int64_t n, int k)
      : input(reinterpret_cast<void*>(0x10000), dtype, {rows, n}),
        lengths(reinterpret_cast<void*>(0x20000), dl_i32(), {rows}),
        values(reinterpret_cast<void*>(0x30000), dtype, {rows, k}),
        indices(reinterpret_cast<void*>(0x40000), dl_i32(), {rows, k}) {}
  const tka_tensors* get() {
    t = tka_tensors{};
    t.input = input.get();
    t.lengths = lengths.get();
    t.values = values.get();
    t.indices = indices.get();
    return &t;
  }
};

struct TensorCase {
  const char* name;
  std::function<void(SelectTensors&, tka_tensors&)> mutate;
  tka_status status;
  const char* field;
};

TEST(SelectTensors, EveryBadTensorIsRejectedByNameBeforeAnythingRuns) {
  ScratchDir dir;
  RuntimePtr rt = compile_only_runtime(dir.path(), 90);
  tka_op_desc d = select_desc(TKA_DTYPE_BF16, 16, 8, 1000);
  tka_plan* raw = nullptr;
  tka_ok(tka_plan_create(rt.get(), &d, &raw), "plan");
  PlanPtr plan(raw);
  size_t ws_bytes = 0;
  tka_ok(tka_plan_workspace_size(plan.get(), &ws_bytes), "workspace size");
  void* ws = reinterpret_cast<void*>(0x100000);
  const DLDataType bf16 = dl_type(kDLBfloat, 16);
  const TensorCase cases[] = {
      {"input null", [](SelectTensors&, tka_tensors& t) { t.input = nullptr; }, TKA_ERROR_NULL_POINTER, "input"},
      {"values null", [](SelectTensors&, tka_tensors& t) { t.values = nullptr; }, TKA_ERROR_NULL_POINTER, "values"},
      {"indices null", [](SelectTensors&, tka_tensors& t) { t.indices = nullptr; }, TKA_ERROR_NULL_POINTER, "indices"},
      {"input dtype", [](SelectTensors& s, tka_tensors&) { s.input.dl().dtype = dl_f32(); }, TKA_ERROR_TENSOR_DTYPE,
       "input"},
      {"values dtype", [](SelectTensors& s, tka_tensors&) { s.values.dl().dtype = dl_type(kDLFloat, 16); },
       TKA_ERROR_TENSOR_DTYPE, "values"},
      {"indices int64", [](SelectTensors& s, tka_tensors&) { s.indices.dl().dtype = dl_i64(); }, TKA_ERROR_TENSOR_DTYPE,
       "indices"},
      {"lengths dtype", [](SelectTensors& s, tka_tensors&) { s.lengths.dl().dtype = dl_i64(); }, TKA_ERROR_TENSOR_DTYPE,
       "lengths"},
      {"input ndim",
       [](SelectTensors& s, tka_tensors&) {
         s.input.set_dims({8, 1000, 1});
       },
       TKA_ERROR_TENSOR_SHAPE, "input"},
      {"rows > max_rows", [](SelectTensors& s, tka_tensors&) { s.input.shape[0] = 9; }, TKA_ERROR_TENSOR_SHAPE,
       "input"},
      {"n > max_n",
       [](SelectTensors& s, tka_tensors&) {
         s.input.set_dims({8, 1001});
       },
       TKA_ERROR_TENSOR_SHAPE, "input"},
      {"n < k",
       [](SelectTensors& s, tka_tensors&) {
         s.input.set_dims({8, 15});
       },
       TKA_ERROR_TENSOR_SHAPE, "input"},
      {"values width", [](SelectTensors& s, tka_tensors&) { s.values.shape[1] = 15; }, TKA_ERROR_TENSOR_SHAPE,
       "values"},
      {"indices rows", [](SelectTensors& s, tka_tensors&) { s.indices.shape[0] = 7; }, TKA_ERROR_TENSOR_SHAPE,
       "indices"},
      {"lengths rows", [](SelectTensors& s, tka_tensors&) { s.lengths.shape[0] = 9; }, TKA_ERROR_TENSOR_SHAPE,
       "lengths"},
      {"input inner stride", [](SelectTensors& s, tka_tensors&) { s.input.strides[1] = 2; }, TKA_ERROR_TENSOR_STRIDE,
       "input"},
      {"values misaligned",
       [](SelectTensors& s, tka_tensors&) { s.values.dl().data = reinterpret_cast<void*>(0x30001); },
       TKA_ERROR_TENSOR_ALIGNMENT, "values"},
      {"input on the host",
       [](SelectTensors& s, tka_tensors&) {
         s.input.dl().device = DLDevice{kDLCPU, 0};
       },
       TKA_ERROR_TENSOR_DEVICE, "input"},
      {"indices on device 1",
       [](SelectTensors& s, tka_tensors&) {
         s.indices.dl().device = DLDevice{kDLCUDA, 1};
       },
       TKA_ERROR_TENSOR_DEVICE, "indices"},
      {"a decode tensor", [](SelectTensors& s, tka_tensors& t) { t.q = s.input.get(); }, TKA_ERROR_INVALID_ARGUMENT,
       "q"},
      {"another decode tensor", [](SelectTensors& s, tka_tensors& t) { t.out = s.values.get(); },
       TKA_ERROR_INVALID_ARGUMENT, "out"},
      {"lengths on the host",
       [](SelectTensors& s, tka_tensors&) {
         s.lengths.dl().device = DLDevice{kDLCPU, 0};
       },
       TKA_ERROR_TENSOR_DEVICE, "lengths"},
      {"lengths misaligned",
       [](SelectTensors& s, tka_tensors&) { s.lengths.dl().data = reinterpret_cast<void*>(0x20002); },
       TKA_ERROR_TENSOR_ALIGNMENT, "lengths"},
      {"input negative row stride", [](SelectTensors& s, tka_tensors&) { s.input.strides[0] = -1000; },
       TKA_ERROR_TENSOR_STRIDE, "input"},
      {"input byte_offset misaligned", [](SelectTensors& s, tka_tensors&) { s.input.dl().byte_offset = 1; },
       TKA_ERROR_TENSOR_ALIGNMENT, "input"},
      {"input data NULL", [](SelectTensors& s, tka_tensors&) { s.input.dl().data = nullptr; }, TKA_ERROR_NULL_POINTER,
       "input"},
      {"values rows on one row", [](SelectTensors& s, tka_tensors&) { s.values.strides[0] = 0; },
       TKA_ERROR_TENSOR_STRIDE, "values"},
      {"indices rows interleave", [](SelectTensors& s, tka_tensors&) { s.indices.strides[0] = 8; },
       TKA_ERROR_TENSOR_STRIDE, "indices"},
  };
  for (const TensorCase& c : cases) {
    SelectTensors s(bf16, 8, 1000, 16);
    tka_tensors t = *s.get();
    c.mutate(s, t);
    const tka_status st = tka_plan_run(plan.get(), &t, ws, nullptr);
    EXPECT_EQ(st, c.status) << c.name << ": " << tka_last_error();
    const std::string msg = tka_last_error();
    EXPECT_NE(msg.find(std::string("tensors.") + c.field), std::string::npos) << c.name << ": " << msg;
  }
  // Rows need no alignment (odd row stride, odd start) and lengths are optional; what stays is
  // that the plan cannot run without a GPU.
  SelectTensors s(bf16, 8, 999, 16);
  s.input.strides[0] = 1001;
  s.input.dl().data = reinterpret_cast<void*>(0x10002);
  tka_tensors t = *s.get();
  t.lengths = nullptr;
  EXPECT_EQ(tka_plan_run(plan.get(), &t, ws, nullptr), TKA_ERROR_NO_DEVICE) << tka_last_error();
  if (ws_bytes > 0) {
    EXPECT_EQ(tka_plan_run(plan.get(), s.get(), nullptr, nullptr), TKA_ERROR_WORKSPACE);
    EXPECT_EQ(tka_plan_run(plan.get(), s.get(), reinterpret_cast<void*>(0x100010), nullptr), TKA_ERROR_WORKSPACE);
  }
  // Zero columns are a valid input once padding is asked for.
  tka_op_desc dp = select_desc(TKA_DTYPE_BF16, 16, 8, 1000);
  dp.select.pad = 1;
  tka_ok(tka_plan_create(rt.get(), &dp, &raw), "padded plan");
  PlanPtr padded(raw);
  SelectTensors empty(bf16, 8, 0, 16);
  EXPECT_EQ(tka_plan_run(padded.get(), empty.get(), ws, nullptr), TKA_ERROR_NO_DEVICE) << tka_last_error();
}

TEST(SelectTensors, DecodeRejectsSelectionTensors) {
  ScratchDir dir;
  RuntimePtr rt = compile_only_runtime(dir.path(), 90);
  tka_op_desc d;
  tka_op_desc_init(&d, TKA_OP_TOPK_DECODE);
  d.decode.num_q_heads = 8;
  d.decode.num_kv_heads = 2;
  d.decode.head_dim = 128;
  d.decode.top_k = 16;
  d.decode.max_seq_len = 256;
  tka_plan* raw = nullptr;
  tka_ok(tka_plan_create(rt.get(), &d, &raw), "decode plan");
  PlanPtr plan(raw);
  TensorArg values(reinterpret_cast<void*>(0x30000), dl_f32(), {1, 16});
  tka_tensors t;
  tka_tensors_init(&t);
  t.values = values.get();
  EXPECT_EQ(tka_plan_run(plan.get(), &t, reinterpret_cast<void*>(0x100000), nullptr), TKA_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(tka_last_error()).find("tensors.values"), std::string::npos) << tka_last_error();
}

TEST(SelectReference, FollowsTheContract) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> row = {1.f, nan, -inf, 3.f, -0.f, 3.f, 0.f, nan, 2.f};
  EXPECT_EQ(ref::select_topk(row.data(), 9, 3), (std::vector<int>{3, 5, 8}));           // ties: lower index first
  EXPECT_EQ(ref::select_topk(row.data(), 9, 6), (std::vector<int>{3, 5, 8, 0, 4, 6}));  // -0 == +0
  EXPECT_EQ(ref::select_topk(row.data(), 9, 9), (std::vector<int>{3, 5, 8, 0, 4, 6, 2, 1, 7}));  // NaN below -inf
  EXPECT_EQ(ref::select_topk(row.data(), 9, 20).size(), 9u);
  EXPECT_TRUE(ref::select_topk(row.data(), 0, 4).empty());
}

}  // namespace
