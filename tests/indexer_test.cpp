// Lightning Indexer, host side: descriptor and tensor validation (compile-only plans, fake device
// addresses), NVRTC compilation of its variants for sm_80 and sm_90, and the FP8 reference.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "gpu_util.h"
#include "reference/fp8_reference.h"
#include "test_util.h"

namespace {

using namespace tka_test;
namespace ref = topkattn_ref;

tka_op_desc indexer_desc(tka_op_kind op = TKA_OP_INDEXER_DECODE) {
  tka_op_desc d;
  tka_op_desc_init(&d, op);
  tka_indexer_desc& x = d.indexer;
  x.key_dtype = TKA_DTYPE_FP8_E4M3;
  x.num_index_heads = 64;
  x.index_head_dim = 128;
  x.max_batch = 16;
  x.max_seq_len = 131072;
  x.top_k = 2048;
  x.attention.num_q_heads = 32;
  x.attention.num_kv_heads = 8;
  x.attention.head_dim = 128;
  return d;
}

TEST(IndexerDesc, EveryBadFieldIsRejectedByName) {
  ScratchDir dir;
  RuntimePtr rt = compile_only_runtime(dir.path(), 90);
  struct Case {
    const char* name;
    std::function<void(tka_indexer_desc&)> mutate;
    tka_status status;
    const char* field;
  };
  const Case cases[] = {
      {"key dtype", [](tka_indexer_desc& d) { d.key_dtype = TKA_DTYPE_FP16; }, TKA_ERROR_INVALID_ARGUMENT,
       "indexer.key_dtype"},
      {"heads", [](tka_indexer_desc& d) { d.num_index_heads = 65; }, TKA_ERROR_INVALID_ARGUMENT,
       "indexer.num_index_heads"},
      {"head dim", [](tka_indexer_desc& d) { d.index_head_dim = 64; }, TKA_ERROR_UNSUPPORTED, "indexer.index_head_dim"},
      {"q_len", [](tka_indexer_desc& d) { d.q_len = 0; }, TKA_ERROR_INVALID_ARGUMENT, "indexer.q_len"},
      {"page", [](tka_indexer_desc& d) { d.kv_layout = TKA_KV_PAGED, d.page_size = 300; }, TKA_ERROR_UNSUPPORTED,
       "indexer.page_size"},
      {"batch", [](tka_indexer_desc& d) { d.max_batch = -1; }, TKA_ERROR_INVALID_ARGUMENT, "indexer.max_batch"},
      {"seq len", [](tka_indexer_desc& d) { d.max_seq_len = 0; }, TKA_ERROR_INVALID_ARGUMENT, "indexer.max_seq_len"},
      {"top_k", [](tka_indexer_desc& d) { d.top_k = 9000; }, TKA_ERROR_INVALID_ARGUMENT, "indexer.top_k"},
      {"grid rows", [](tka_indexer_desc& d) { d.max_batch = 8192, d.q_len = 8; }, TKA_ERROR_INVALID_ARGUMENT,
       "indexer.max_batch"},
      {"attention", [](tka_indexer_desc& d) { d.attention.head_dim = 96; }, TKA_ERROR_UNSUPPORTED,
       "indexer.attention: sparse.head_dim"},
  };
  for (const Case& c : cases) {
    tka_op_desc d = indexer_desc();
    c.mutate(d.indexer);
    tka_plan* plan = nullptr;
    EXPECT_EQ(tka_plan_create(rt.get(), &d, &plan), c.status) << c.name;
    EXPECT_NE(std::string(tka_last_error()).find(c.field), std::string::npos) << c.name << ": " << tka_last_error();
  }
  // The scores op needs neither top_k nor the attention.
  tka_op_desc scores = indexer_desc(TKA_OP_INDEXER_SCORES);
  scores.indexer.top_k = 0;
  scores.indexer.attention.head_dim = 0;
  tka_plan* plan = nullptr;
  EXPECT_EQ(tka_plan_create(rt.get(), &scores, &plan), TKA_SUCCESS) << tka_last_error();
  tka_plan_destroy(plan);
}

TEST(IndexerCompile, VariantsCompileForSm80AndSm90) {
  ScratchDir dir;
  std::vector<tka_op_desc> variants;
  for (tka_dtype key : {TKA_DTYPE_BF16, TKA_DTYPE_FP8_E4M3})
    for (int heads : {64, 32, 8}) {
      tka_op_desc d = indexer_desc();
      d.indexer.key_dtype = key, d.indexer.num_index_heads = heads;
      variants.push_back(d);
    }
  tka_op_desc paged = indexer_desc();
  paged.indexer.kv_layout = TKA_KV_PAGED, paged.indexer.page_size = 64, paged.indexer.q_len = 2;
  variants.push_back(paged);
  tka_op_desc mla = indexer_desc();
  mla.indexer.kv_layout = TKA_KV_PAGED, mla.indexer.page_size = 64;
  tka_sparse_desc& a = mla.indexer.attention;
  a.num_q_heads = 128, a.num_kv_heads = 1, a.head_dim = 576, a.head_dim_v = 512, a.shared_kv = 1;
  variants.push_back(mla);
  variants.push_back(indexer_desc(TKA_OP_INDEXER_SCORES));
  for (int sm : {80, 90}) {
    RuntimePtr rt = compile_only_runtime(dir.path(), sm);
    for (const tka_op_desc& d : variants) {
      tka_plan* plan = nullptr;
      ASSERT_EQ(tka_plan_create(rt.get(), &d, &plan), TKA_SUCCESS) << "sm_" << sm << ": " << tka_last_error();
      const std::string spec = tka_plan_spec(plan);
      EXPECT_EQ(spec.rfind("op=indexer;", 0), 0u);
      // On sm_90 the fused top-k of fewer rows than SMs runs one cooperative grid (bench/NOTES.md).
      EXPECT_NE(spec.find(sm >= 90 ? ";sco=1" : ";sco=0"), std::string::npos) << spec;
      size_t ws = 0;
      EXPECT_EQ(tka_plan_workspace_size(plan, &ws), TKA_SUCCESS);
      if (d.op == TKA_OP_INDEXER_DECODE) {
        EXPECT_GT(ws, 16u * 131072 * 4);  // at least the scores
      }
      tka_plan_destroy(plan);
    }
  }
}

struct IndexerTensors {
  TensorArg iq, iw, ik, is, lens, q, k, v, out, idx, scores;
  tka_tensors t{};
  IndexerTensors()
      : iq(reinterpret_cast<void*>(0x10000), dl_half(TKA_DTYPE_BF16), {2, 1, 64, 128}),
        iw(reinterpret_cast<void*>(0x20000), dl_f32(), {2, 1, 64}),
        ik(reinterpret_cast<void*>(0x30000), dl_type(kDLUInt, 8), {2, 8192, 128}),
        is(reinterpret_cast<void*>(0x40000), dl_f32(), {2, 8192}),
        lens(reinterpret_cast<void*>(0x50000), dl_i32(), {2}),
        q(reinterpret_cast<void*>(0x60000), dl_half(TKA_DTYPE_BF16), {2, 1, 32, 128}),
        k(reinterpret_cast<void*>(0x70000), dl_half(TKA_DTYPE_BF16), {2, 8, 8192, 128}),
        v(reinterpret_cast<void*>(0x80000), dl_half(TKA_DTYPE_BF16), {2, 8, 8192, 128}),
        out(reinterpret_cast<void*>(0x90000), dl_half(TKA_DTYPE_BF16), {2, 1, 32, 128}),
        idx(reinterpret_cast<void*>(0xa0000), dl_i32(), {2, 1, 2048}),
        scores(reinterpret_cast<void*>(0xb0000), dl_f32(), {2, 1, 8192}) {}
  tka_tensors* decode() {
    tka_tensors_init(&t);
    t.index_q = iq.get(), t.index_weights = iw.get(), t.index_k = ik.get(), t.index_scale = is.get();
    t.seq_lens = lens.get(), t.q = q.get(), t.k_cache = k.get(), t.v_cache = v.get(), t.out = out.get();
    t.indices = idx.get();
    return &t;
  }
};

TEST(IndexerTensors, EveryBadTensorIsRejectedByName) {
  ScratchDir dir;
  RuntimePtr rt = compile_only_runtime(dir.path(), 90);
  tka_op_desc d = indexer_desc();
  tka_plan* raw = nullptr;
  tka_ok(tka_plan_create(rt.get(), &d, &raw), "plan");
  PlanPtr plan(raw);
  void* ws = reinterpret_cast<void*>(0x1000000);
  struct Case {
    const char* name;
    std::function<void(IndexerTensors&, tka_tensors&)> mutate;
    tka_status status;
    const char* field;
  };
  const Case cases[] = {
      {"scale missing with FP8", [](IndexerTensors&, tka_tensors& t) { t.index_scale = nullptr; },
       TKA_ERROR_NULL_POINTER, "index_scale"},
      {"keys as bf16", [](IndexerTensors& x, tka_tensors&) { x.ik.dl().dtype = dl_half(TKA_DTYPE_BF16); },
       TKA_ERROR_TENSOR_DTYPE, "index_k"},
      {"key dim", [](IndexerTensors& x, tka_tensors&) { x.ik.shape[2] = 64; }, TKA_ERROR_TENSOR_SHAPE, "index_k"},
      {"key rows misaligned", [](IndexerTensors& x, tka_tensors&) { x.ik.strides[1] = 136; },
       TKA_ERROR_TENSOR_ALIGNMENT, "index_k"},
      {"scale shape", [](IndexerTensors& x, tka_tensors&) { x.is.shape[1] = 100; }, TKA_ERROR_TENSOR_SHAPE,
       "index_scale"},
      {"weights heads", [](IndexerTensors& x, tka_tensors&) { x.iw.shape[2] = 32; }, TKA_ERROR_TENSOR_SHAPE,
       "index_weights"},
      {"index_q dtype", [](IndexerTensors& x, tka_tensors&) { x.iq.dl().dtype = dl_f32(); }, TKA_ERROR_TENSOR_DTYPE,
       "index_q"},
      {"batch", [](IndexerTensors& x, tka_tensors&) { x.iq.shape[0] = 17; }, TKA_ERROR_TENSOR_SHAPE, "index_q"},
      {"indices width", [](IndexerTensors& x, tka_tensors&) { x.idx.shape[2] = 1024; }, TKA_ERROR_TENSOR_SHAPE,
       "indices"},
      {"out", [](IndexerTensors&, tka_tensors& t) { t.out = nullptr; }, TKA_ERROR_NULL_POINTER, "out"},
      {"v head dim", [](IndexerTensors& x, tka_tensors&) { x.v.shape[3] = 64; }, TKA_ERROR_TENSOR_SHAPE, "v_cache"},
      {"a scores output", [](IndexerTensors& x, tka_tensors& t) { t.scores = x.scores.get(); },
       TKA_ERROR_INVALID_ARGUMENT, "scores"},
      {"q batch differs", [](IndexerTensors& x, tka_tensors&) { x.q.shape[0] = 1; }, TKA_ERROR_TENSOR_SHAPE, "q"},
      {"a block table for contiguous keys", [](IndexerTensors& x, tka_tensors& t) { t.block_table = x.lens.get(); },
       TKA_ERROR_INVALID_ARGUMENT, "block_table"},
      {"indices rows overlap",
       [](IndexerTensors& x, tka_tensors&) {
         x.idx.strides = {0, 2048, 1};
       },
       TKA_ERROR_TENSOR_STRIDE, "indices"},
      {"index_k extent past int", [](IndexerTensors& x, tka_tensors&) { x.ik.shape[1] = int64_t{1} << 31; },
       TKA_ERROR_TENSOR_SHAPE, "index_k"},
  };
  for (const Case& c : cases) {
    IndexerTensors x;
    tka_tensors t = *x.decode();
    c.mutate(x, t);
    EXPECT_EQ(tka_plan_run(plan.get(), &t, ws, nullptr), c.status) << c.name << ": " << tka_last_error();
    EXPECT_NE(std::string(tka_last_error()).find(std::string("tensors.") + c.field), std::string::npos)
        << c.name << ": " << tka_last_error();
  }
  IndexerTensors x;
  EXPECT_EQ(tka_plan_run(plan.get(), x.decode(), ws, nullptr), TKA_ERROR_NO_DEVICE) << tka_last_error();
  EXPECT_EQ(tka_plan_run(plan.get(), x.decode(), nullptr, nullptr), TKA_ERROR_WORKSPACE);
  // One new token: the token dimension's stride is free (producers may write anything there).
  x.idx.strides = {4096, 1, 1};
  EXPECT_EQ(tka_plan_run(plan.get(), x.decode(), ws, nullptr), TKA_ERROR_NO_DEVICE) << tka_last_error();

  // Paged: one block table indexes both pools, so they must hold the same pages.
  tka_op_desc pd = indexer_desc();
  pd.indexer.kv_layout = TKA_KV_PAGED, pd.indexer.page_size = 64;
  tka_ok(tka_plan_create(rt.get(), &pd, &raw), "paged plan");
  PlanPtr paged(raw);
  IndexerTensors y;
  y.ik.set_dims({300, 64, 128});
  y.is.set_dims({300, 64});
  y.k.set_dims({300, 64, 8, 128});
  y.v.set_dims({300, 64, 8, 128});
  TensorArg table(reinterpret_cast<void*>(0xc0000), dl_i32(), {2, 128});
  tka_tensors pt = *y.decode();
  pt.block_table = table.get();
  EXPECT_EQ(tka_plan_run(paged.get(), &pt, ws, nullptr), TKA_ERROR_NO_DEVICE) << tka_last_error();
  y.k.shape[0] = 299;
  y.v.shape[0] = 299;
  EXPECT_EQ(tka_plan_run(paged.get(), &pt, ws, nullptr), TKA_ERROR_TENSOR_SHAPE);
  EXPECT_NE(std::string(tka_last_error()).find("tensors.index_k"), std::string::npos) << tka_last_error();

  // The scores op: its own tensors only.
  tka_op_desc s = indexer_desc(TKA_OP_INDEXER_SCORES);
  tka_ok(tka_plan_create(rt.get(), &s, &raw), "scores plan");
  PlanPtr scores(raw);
  tka_tensors t;
  tka_tensors_init(&t);
  t.index_q = x.iq.get(), t.index_weights = x.iw.get(), t.index_k = x.ik.get(), t.index_scale = x.is.get();
  t.seq_lens = x.lens.get(), t.scores = x.scores.get();
  EXPECT_EQ(tka_plan_run(scores.get(), &t, nullptr, nullptr), TKA_ERROR_NO_DEVICE) << tka_last_error();
  t.out = x.out.get();
  EXPECT_EQ(tka_plan_run(scores.get(), &t, nullptr, nullptr), TKA_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(tka_last_error()).find("tensors.out"), std::string::npos);
  t.out = nullptr;
  // The scores tensor itself.
  const auto expect_scores_error = [&](tka_status want, const char* what) {
    EXPECT_EQ(tka_plan_run(scores.get(), &t, nullptr, nullptr), want) << what << ": " << tka_last_error();
    EXPECT_NE(std::string(tka_last_error()).find("tensors.scores"), std::string::npos)
        << what << ": " << tka_last_error();
  };
  t.scores = nullptr;
  expect_scores_error(TKA_ERROR_NULL_POINTER, "missing");
  IndexerTensors z;
  t.scores = z.scores.get();
  z.scores.dl().dtype = dl_half(TKA_DTYPE_BF16);
  expect_scores_error(TKA_ERROR_TENSOR_DTYPE, "bf16");
  z = IndexerTensors{};
  t.scores = z.scores.get();
  z.scores.shape[0] = 3;
  expect_scores_error(TKA_ERROR_TENSOR_SHAPE, "batch");
  z = IndexerTensors{};
  t.scores = z.scores.get();
  z.scores.dl().device = DLDevice{kDLCPU, 0};
  expect_scores_error(TKA_ERROR_TENSOR_DEVICE, "on the host");
  z = IndexerTensors{};
  t.scores = z.scores.get();
  z.scores.strides[0] = 0;
  expect_scores_error(TKA_ERROR_TENSOR_STRIDE, "sequences on one row");
}

TEST(Fp8Reference, DecodesTheFormat) {
  EXPECT_EQ(ref::e4m3_to_float(0x00), 0.f);
  EXPECT_EQ(ref::e4m3_to_float(0x38), 1.f);                  // 0.0111.000
  EXPECT_EQ(ref::e4m3_to_float(0x7e), 448.f);                // largest
  EXPECT_EQ(ref::e4m3_to_float(0x01), std::ldexp(1.f, -9));  // smallest subnormal
  EXPECT_EQ(ref::e4m3_to_float(0xb8), -1.f);
  EXPECT_TRUE(std::isnan(ref::e4m3_to_float(0x7f)));
  for (int b = 0; b < 256; ++b)
    if (!std::isnan(ref::e4m3_to_float(static_cast<uint8_t>(b))) && b != 0x80) {  // -0 rounds to +0
      EXPECT_EQ(ref::float_to_e4m3(ref::e4m3_to_float(static_cast<uint8_t>(b))), b) << b;
    }
  // Nearest, ties to the even code, clamped to +-448.
  EXPECT_EQ(ref::float_to_e4m3(1.0624f), 0x38);  // 1 is nearer than 1.125
  EXPECT_EQ(ref::float_to_e4m3(1.0625f), 0x38);  // half way: the even code
  EXPECT_EQ(ref::float_to_e4m3(1.1875f), 0x3a);  // half way between 1.125 and 1.25: the even code
  EXPECT_EQ(ref::float_to_e4m3(-1.07f), 0xb9);   // -1.125
  EXPECT_EQ(ref::float_to_e4m3(1e9f), 0x7e);     // 448
  EXPECT_EQ(ref::float_to_e4m3(-std::numeric_limits<float>::infinity()), 0xfe);
  EXPECT_EQ(ref::float_to_e4m3(std::ldexp(1.f, -11)), 0x00);  // a quarter of the smallest subnormal
}

}  // namespace
