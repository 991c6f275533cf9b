// Sparse attention over given indices, host side: descriptor and tensor validation through
// compile-only plans (fake device addresses), and NVRTC compilation of the kernel variants for
// sm_80 and sm_90. Needs no GPU.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "gpu_util.h"
#include "runtime/sparse_plan.h"
#include "test_util.h"

namespace {

using namespace tka_test;

tka_op_desc sparse_desc() {
  tka_op_desc d;
  tka_op_desc_init(&d, TKA_OP_SPARSE_ATTENTION);
  d.sparse.num_q_heads = 32;
  d.sparse.num_kv_heads = 8;
  d.sparse.head_dim = 128;
  d.sparse.index_width = 2048;
  d.sparse.max_batch = 4;
  return d;
}

tka_op_desc mla_desc() {
  tka_op_desc d = sparse_desc();
  d.sparse.num_q_heads = 128;
  d.sparse.num_kv_heads = 1;
  d.sparse.head_dim = 576;
  d.sparse.head_dim_v = 512;
  d.sparse.shared_kv = 1;
  d.sparse.select = TKA_SELECT_PER_GROUP;
  d.sparse.kv_layout = TKA_KV_PAGED;
  d.sparse.page_size = 64;
  return d;
}

TEST(SparseDesc, EveryBadFieldIsRejectedByName) {
  ScratchDir dir;
  RuntimePtr rt = compile_only_runtime(dir.path(), 90);
  struct Case {
    const char* name;
    std::function<void(tka_sparse_desc&)> mutate;
    tka_status status;
    const char* field;
  };
  const Case cases[] = {
      {"dtype", [](tka_sparse_desc& d) { d.dtype = TKA_DTYPE_FP32; }, TKA_ERROR_INVALID_ARGUMENT, "sparse.dtype"},
      {"heads", [](tka_sparse_desc& d) { d.num_q_heads = 0; }, TKA_ERROR_INVALID_ARGUMENT, "sparse.num_q_heads"},
      {"kv heads", [](tka_sparse_desc& d) { d.num_kv_heads = 3; }, TKA_ERROR_INVALID_ARGUMENT, "sparse.num_kv_heads"},
      {"group", [](tka_sparse_desc& d) { d.num_q_heads = 256, d.num_kv_heads = 1; }, TKA_ERROR_UNSUPPORTED,
       "sparse.num_kv_heads"},
      {"head_dim", [](tka_sparse_desc& d) { d.head_dim = 96; }, TKA_ERROR_UNSUPPORTED, "sparse.head_dim"},
      {"576 unshared", [](tka_sparse_desc& d) { d.head_dim = 576, d.head_dim_v = 512; }, TKA_ERROR_UNSUPPORTED,
       "sparse.head_dim"},
      {"dv differs", [](tka_sparse_desc& d) { d.head_dim_v = 64; }, TKA_ERROR_UNSUPPORTED, "sparse.head_dim"},
      {"shared_kv", [](tka_sparse_desc& d) { d.shared_kv = 2; }, TKA_ERROR_INVALID_ARGUMENT, "sparse.shared_kv"},
      {"q_len", [](tka_sparse_desc& d) { d.q_len = 17; }, TKA_ERROR_INVALID_ARGUMENT, "sparse.q_len"},
      {"width 0", [](tka_sparse_desc& d) { d.index_width = 0; }, TKA_ERROR_INVALID_ARGUMENT, "sparse.index_width"},
      {"width", [](tka_sparse_desc& d) { d.index_width = 8193; }, TKA_ERROR_INVALID_ARGUMENT, "sparse.index_width"},
      {"select", [](tka_sparse_desc& d) { d.select = static_cast<tka_select_mode>(5); }, TKA_ERROR_INVALID_ARGUMENT,
       "sparse.select"},
      {"layout", [](tka_sparse_desc& d) { d.kv_layout = static_cast<tka_kv_layout>(5); }, TKA_ERROR_INVALID_ARGUMENT,
       "sparse.kv_layout"},
      {"page", [](tka_sparse_desc& d) { d.kv_layout = TKA_KV_PAGED, d.page_size = 8; }, TKA_ERROR_UNSUPPORTED,
       "sparse.page_size"},
      {"batch", [](tka_sparse_desc& d) { d.max_batch = 0; }, TKA_ERROR_INVALID_ARGUMENT, "sparse.max_batch"},
      {"batch past a grid", [](tka_sparse_desc& d) { d.max_batch = 65536; }, TKA_ERROR_INVALID_ARGUMENT,
       "sparse.max_batch"},
      {"heads past 1024", [](tka_sparse_desc& d) { d.num_q_heads = 2048, d.num_kv_heads = 256; },
       TKA_ERROR_INVALID_ARGUMENT, "sparse.num_q_heads"},
      {"scale", [](tka_sparse_desc& d) { d.scale = -1.f; }, TKA_ERROR_INVALID_ARGUMENT, "sparse.scale"},
  };
  for (const Case& c : cases) {
    tka_op_desc d = sparse_desc();
    c.mutate(d.sparse);
    tka_plan* plan = nullptr;
    EXPECT_EQ(tka_plan_create(rt.get(), &d, &plan), c.status) << c.name;
    EXPECT_EQ(plan, nullptr);
    EXPECT_NE(std::string(tka_last_error()).find(c.field), std::string::npos) << c.name << ": " << tka_last_error();
  }
}

// Lists split over CTAs: whole 32-key tiles per split, every key in exactly one split, one split
// when the rows alone fill the GPU (the bound of 128 splits is a static_assert in sparse_plan.cpp).
TEST(SparseSplit, CoversTheListInWholeTilesWithinTheMergeLimit) {
  for (int width : {1, 31, 64, 100, 2048, 8192})
    for (int ctas : {1, 8, 64, 4096})
      for (int cps : {1, 4, 16})
        for (bool one_wave : {false, true}) {
          const tka::SparseSplit s = tka::sparse_split(ctas, width, 132, cps, one_wave);
          EXPECT_GE(s.splits, 1);
          EXPECT_EQ(s.split_len % 32, 0);
          EXPECT_GE(static_cast<long long>(s.splits) * s.split_len, width);
          EXPECT_LT(static_cast<long long>(s.splits - 1) * s.split_len, width) << "an empty split";
          if (one_wave && s.splits > 1) {
            EXPECT_LE(static_cast<long long>(s.splits) * ctas, 132LL * cps) << "a second wave";
          }
        }
  EXPECT_EQ(tka::sparse_split(4096, 2048, 132, 4).splits, 1);
  EXPECT_EQ(tka::sparse_split(8, 2048, 132, 4).splits, 32);  // batch 1, 8 KV groups: 66 wanted, 64-key splits
  // MLA in tiles of 64 heads, one CTA an SM: at B = 64 128 CTAs are one wave unsplit (no merge),
  // at B = 16 4 splits (not 5: a second wave of 28 CTAs).
  EXPECT_EQ(tka::sparse_split(128, 2048, 132, 1, true).splits, 1);
  EXPECT_EQ(tka::sparse_split(32, 2048, 132, 1, true).splits, 4);
  EXPECT_EQ(tka::sparse_split(128, 2048, 132, 1).splits, 2);         // narrow tiles: at least the CTAs wanted
  EXPECT_EQ(tka::sparse_split(4096, 2048, 132, 1, true).splits, 1);  // more rows than slots
}

TEST(SparseCompile, KernelVariantsCompileForSm80AndSm90) {
  ScratchDir dir;
  std::vector<tka_op_desc> variants;
  for (tka_dtype dt : {TKA_DTYPE_BF16, TKA_DTYPE_FP16}) {
    for (int d : {64, 128, 256})
      for (tka_select_mode sel : {TKA_SELECT_PER_HEAD, TKA_SELECT_PER_GROUP}) {
        tka_op_desc x = sparse_desc();
        x.sparse.dtype = dt, x.sparse.head_dim = d, x.sparse.select = sel;
        variants.push_back(x);
      }
    tka_op_desc paged = sparse_desc();
    paged.sparse.dtype = dt, paged.sparse.kv_layout = TKA_KV_PAGED, paged.sparse.page_size = 16, paged.sparse.q_len = 2;
    variants.push_back(paged);
    tka_op_desc mla = mla_desc();
    mla.sparse.dtype = dt;
    variants.push_back(mla);
    tka_op_desc mla_contig = mla_desc();
    mla_contig.sparse.dtype = dt, mla_contig.sparse.kv_layout = TKA_KV_CONTIGUOUS, mla_contig.sparse.num_q_heads = 16;
    variants.push_back(mla_contig);
    // Tiles of 32 and 64 heads (more than 16 query heads on one list), every head dim.
    for (int d : {64, 128, 256}) {
      tka_op_desc wide = sparse_desc();
      wide.sparse.dtype = dt, wide.sparse.head_dim = d, wide.sparse.select = TKA_SELECT_PER_GROUP;
      wide.sparse.num_kv_heads = 1, wide.sparse.num_q_heads = d == 128 ? 48 : 24;
      variants.push_back(wide);
    }
  }
  for (int sm : {80, 90}) {
    RuntimePtr rt = compile_only_runtime(dir.path(), sm);
    for (const tka_op_desc& x : variants) {
      tka_plan* plan = nullptr;
      ASSERT_EQ(tka_plan_create(rt.get(), &x, &plan), TKA_SUCCESS) << "sm_" << sm << ": " << tka_last_error();
      const std::string spec = tka_plan_spec(plan);
      EXPECT_EQ(spec.rfind("op=sparse;", 0), 0u);
      const int heads = x.sparse.select == TKA_SELECT_PER_GROUP ? x.sparse.num_q_heads / x.sparse.num_kv_heads : 1;
      const char* tile = heads > 32 ? ";t=256;ht=64;" : heads > 16 ? ";t=128;ht=32;" : ";t=128;ht=";
      EXPECT_NE(spec.find(tile), std::string::npos) << spec;
      int width = 0;
      EXPECT_EQ(tka_plan_max_k(plan, &width), TKA_SUCCESS);
      EXPECT_EQ(width, x.sparse.index_width);
      tka_plan_destroy(plan);
    }
  }
}

// MLA's default tile of 64 heads needs 161 KB of shared memory a CTA: sm_80 (163 KB) and sm_90
// (227 KB) compile it, sm_86 (99 KB) keeps the tile of 16 that fits.
TEST(SparseCompile, TheDefaultHeadTileFitsTheArchitecture) {
  ScratchDir dir;
  const tka_op_desc mla = mla_desc();
  for (const auto& [sm, tile] :
       std::vector<std::pair<int, std::string>>{{80, ";t=256;ht=64;"}, {86, ";t=128;ht=16;"}, {90, ";t=256;ht=64;"}}) {
    RuntimePtr rt = compile_only_runtime(dir.path(), sm);
    tka_plan* plan = nullptr;
    ASSERT_EQ(tka_plan_create(rt.get(), &mla, &plan), TKA_SUCCESS) << "sm_" << sm << ": " << tka_last_error();
    EXPECT_NE(std::string(tka_plan_spec(plan)).find(tile), std::string::npos)
        << "sm_" << sm << ": " << tka_plan_spec(plan);
    tka_plan_destroy(plan);
  }
}

// Valid tensors for sparse_desc() at batch 2 (fake device addresses).
struct SparseTensors {
  TensorArg q, k, v, lens, table, idx, out, lse;
  tka_tensors t{};
  SparseTensors()
      : q(reinterpret_cast<void*>(0x10000), dl_half(TKA_DTYPE_BF16), {2, 1, 32, 128}),
        k(reinterpret_cast<void*>(0x20000), dl_half(TKA_DTYPE_BF16), {2, 8, 4096, 128}),
        v(reinterpret_cast<void*>(0x30000), dl_half(TKA_DTYPE_BF16), {2, 8, 4096, 128}),
        lens(reinterpret_cast<void*>(0x40000), dl_i32(), {2}),
        table(reinterpret_cast<void*>(0x50000), dl_i32(), {2, 64}),
        idx(reinterpret_cast<void*>(0x60000), dl_i32(), {2, 1, 32, 2048}),
        out(reinterpret_cast<void*>(0x70000), dl_half(TKA_DTYPE_BF16), {2, 1, 32, 128}),
        lse(reinterpret_cast<void*>(0x80000), dl_f32(), {2, 1, 32}) {}
  tka_tensors* get() {
    tka_tensors_init(&t);
    t.q = q.get(), t.k_cache = k.get(), t.v_cache = v.get(), t.seq_lens = lens.get();
    t.indices = idx.get(), t.out = out.get(), t.lse = lse.get();
    return &t;
  }
};

TEST(SparseTensors, EveryBadTensorIsRejectedByName) {
  ScratchDir dir;
  RuntimePtr rt = compile_only_runtime(dir.path(), 90);
  tka_op_desc d = sparse_desc();
  tka_plan* raw = nullptr;
  tka_ok(tka_plan_create(rt.get(), &d, &raw), "plan");
  PlanPtr plan(raw);
  void* ws = reinterpret_cast<void*>(0x1000000);
  struct Case {
    const char* name;
    std::function<void(SparseTensors&, tka_tensors&)> mutate;
    tka_status status;
    const char* field;
  };
  const Case cases[] = {
      {"indices missing", [](SparseTensors&, tka_tensors& t) { t.indices = nullptr; }, TKA_ERROR_NULL_POINTER,
       "indices"},
      {"v missing", [](SparseTensors&, tka_tensors& t) { t.v_cache = nullptr; }, TKA_ERROR_NULL_POINTER, "v_cache"},
      {"seq_lens missing", [](SparseTensors&, tka_tensors& t) { t.seq_lens = nullptr; }, TKA_ERROR_NULL_POINTER,
       "seq_lens"},
      {"indices int64", [](SparseTensors& s, tka_tensors&) { s.idx.dl().dtype = dl_i64(); }, TKA_ERROR_TENSOR_DTYPE,
       "indices"},
      {"indices width", [](SparseTensors& s, tka_tensors&) { s.idx.shape[3] = 1024; }, TKA_ERROR_TENSOR_SHAPE,
       "indices"},
      {"indices per group", [](SparseTensors& s, tka_tensors&) { s.idx.shape[2] = 8; }, TKA_ERROR_TENSOR_SHAPE,
       "indices"},
      {"q dtype", [](SparseTensors& s, tka_tensors&) { s.q.dl().dtype = dl_half(TKA_DTYPE_FP16); },
       TKA_ERROR_TENSOR_DTYPE, "q"},
      {"batch", [](SparseTensors& s, tka_tensors&) { s.q.shape[0] = 5; }, TKA_ERROR_TENSOR_SHAPE, "q"},
      {"k head dim", [](SparseTensors& s, tka_tensors&) { s.k.shape[3] = 64; }, TKA_ERROR_TENSOR_SHAPE, "k_cache"},
      {"out heads", [](SparseTensors& s, tka_tensors&) { s.out.shape[2] = 8; }, TKA_ERROR_TENSOR_SHAPE, "out"},
      {"lse dtype", [](SparseTensors& s, tka_tensors&) { s.lse.dl().dtype = dl_half(TKA_DTYPE_BF16); },
       TKA_ERROR_TENSOR_DTYPE, "lse"},
      {"k misaligned", [](SparseTensors& s, tka_tensors&) { s.k.dl().data = reinterpret_cast<void*>(0x20002); },
       TKA_ERROR_TENSOR_ALIGNMENT, "k_cache"},
      {"v on the host",
       [](SparseTensors& s, tka_tensors&) {
         s.v.dl().device = DLDevice{kDLCPU, 0};
       },
       TKA_ERROR_TENSOR_DEVICE, "v_cache"},
      {"a selection tensor", [](SparseTensors& s, tka_tensors& t) { t.values = s.out.get(); },
       TKA_ERROR_INVALID_ARGUMENT, "values"},
      {"a block table for contiguous keys", [](SparseTensors& s, tka_tensors& t) { t.block_table = s.table.get(); },
       TKA_ERROR_INVALID_ARGUMENT, "block_table"},
      {"out heads overlap",
       [](SparseTensors& s, tka_tensors&) {
         std::vector<int64_t> st = s.out.strides;
         st[2] = 0;
         s.out.set_dims(s.out.shape, st);
       },
       TKA_ERROR_TENSOR_STRIDE, "out"},
      {"k extent past int", [](SparseTensors& s, tka_tensors&) { s.k.shape[2] = int64_t{1} << 31; },
       TKA_ERROR_TENSOR_SHAPE, "k_cache"},
  };
  for (const Case& c : cases) {
    SparseTensors s;
    tka_tensors t = *s.get();
    c.mutate(s, t);
    EXPECT_EQ(tka_plan_run(plan.get(), &t, ws, nullptr), c.status) << c.name << ": " << tka_last_error();
    EXPECT_NE(std::string(tka_last_error()).find(std::string("tensors.") + c.field), std::string::npos)
        << c.name << ": " << tka_last_error();
  }
  SparseTensors s;
  EXPECT_EQ(tka_plan_run(plan.get(), s.get(), ws, nullptr), TKA_ERROR_NO_DEVICE) << tka_last_error();
  size_t ws_bytes = 0;
  tka_ok(tka_plan_workspace_size(plan.get(), &ws_bytes), "workspace size");
  EXPECT_GT(ws_bytes, 0u);  // batch 1 splits each list: partial results need room
  EXPECT_EQ(tka_plan_run(plan.get(), s.get(), nullptr, nullptr), TKA_ERROR_WORKSPACE);

  // MLA: values are the key rows; a v_cache is a mistake.
  tka_op_desc m = mla_desc();
  tka_ok(tka_plan_create(rt.get(), &m, &raw), "mla plan");
  PlanPtr mla(raw);
  TensorArg q(reinterpret_cast<void*>(0x10000), dl_half(TKA_DTYPE_BF16), {2, 1, 128, 576});
  TensorArg kc(reinterpret_cast<void*>(0x20000), dl_half(TKA_DTYPE_BF16), {100, 64, 1, 576});
  TensorArg lens(reinterpret_cast<void*>(0x40000), dl_i32(), {2});
  TensorArg table(reinterpret_cast<void*>(0x50000), dl_i32(), {2, 50});
  TensorArg idx(reinterpret_cast<void*>(0x60000), dl_i32(), {2, 1, 1, 2048});
  TensorArg out(reinterpret_cast<void*>(0x70000), dl_half(TKA_DTYPE_BF16), {2, 1, 128, 512});
  tka_tensors t;
  tka_tensors_init(&t);
  t.q = q.get(), t.k_cache = kc.get(), t.seq_lens = lens.get(), t.block_table = table.get();
  t.indices = idx.get(), t.out = out.get();
  EXPECT_EQ(tka_plan_run(mla.get(), &t, ws, nullptr), TKA_ERROR_NO_DEVICE) << tka_last_error();
  t.v_cache = kc.get();
  EXPECT_EQ(tka_plan_run(mla.get(), &t, ws, nullptr), TKA_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(tka_last_error()).find("tensors.v_cache"), std::string::npos) << tka_last_error();
  t.v_cache = nullptr;
  t.block_table = nullptr;
  EXPECT_EQ(tka_plan_run(mla.get(), &t, ws, nullptr), TKA_ERROR_NULL_POINTER);
  EXPECT_NE(std::string(tka_last_error()).find("tensors.block_table"), std::string::npos) << tka_last_error();
}

}  // namespace
