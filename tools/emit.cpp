#include <cstdio>

#include "autotune/decode_heuristic.h"
#include "autotune/sparse_space.h"
#include "codegen/nvrtc.h"
#include "codegen/render.h"
#include "tools/commands.h"
#include "tools/options.h"

namespace tka::tools {

bool desc_from_flags(tka_decode_desc* d, std::string* error) {
  *d = tka_decode_desc{};
  if (opt_dtype == "bf16")
    d->dtype = TKA_DTYPE_BF16;
  else if (opt_dtype == "fp16")
    d->dtype = TKA_DTYPE_FP16;
  else
    return *error = "--dtype must be bf16 or fp16", false;
  if (opt_select == "head")
    d->select = TKA_SELECT_PER_HEAD;
  else if (opt_select == "group")
    d->select = TKA_SELECT_PER_GROUP;
  else
    return *error = "--select must be head or group", false;
  d->num_kv_heads = opt_kv_heads;
  d->num_q_heads = opt_kv_heads * opt_group;
  d->head_dim = opt_head_dim;
  d->top_k = opt_top_k;
  d->q_len = opt_q_len;
  d->kv_layout = opt_page_size > 0 ? TKA_KV_PAGED : TKA_KV_CONTIGUOUS;
  d->page_size = opt_page_size;
  d->max_batch = 1;
  d->max_seq_len = 1 << 17;
  return true;
}

namespace {

// Sparse attention from the shape flags (--head-dim 576 means DeepSeek's MLA layout, 576/512).
bool sparse_source(codegen::RenderedSource* source, std::string* error) {
  tka_decode_desc d;
  if (!desc_from_flags(&d, error)) return false;
  tka_sparse_desc s{};
  s.dtype = d.dtype, s.num_q_heads = d.num_q_heads, s.num_kv_heads = d.num_kv_heads, s.head_dim = d.head_dim;
  if (d.head_dim == 576) s.head_dim_v = 512, s.shared_kv = 1;
  s.q_len = d.q_len, s.index_width = d.top_k, s.select = d.select;
  s.kv_layout = d.kv_layout, s.page_size = d.page_size, s.max_batch = 1;
  SparseOp op;
  const Status st = validate_sparse(s, &op);
  if (!st.is_ok()) return *error = st.message(), false;
  const int sm = codegen::parse_arch(opt_arch);
  *source =
      codegen::render_sparse(sparse_kernel_spec(op, default_sparse_config(op, smem_budget_for_sm(sm > 0 ? sm : 90))));
  return true;
}

// The Lightning Indexer scores (+ selection) module: 64 heads x 128, FP8 keys unless --dtype bf16.
bool indexer_source(codegen::RenderedSource* source, std::string* error) {
  tka_indexer_desc d{};
  d.key_dtype = opt_dtype.getNumOccurrences() && opt_dtype == "bf16" ? TKA_DTYPE_BF16 : TKA_DTYPE_FP8_E4M3;
  d.num_index_heads = 64, d.index_head_dim = 128, d.q_len = opt_q_len, d.max_batch = 1;
  d.kv_layout = opt_page_size > 0 ? TKA_KV_PAGED : TKA_KV_CONTIGUOUS;
  d.page_size = opt_page_size;
  IndexerOp op;
  const Status st = validate_indexer(d, /*fused=*/false, &op);
  if (!st.is_ok()) return *error = st.message(), false;
  IndexerKernelSpec spec = indexer_kernel_spec(op);
  spec.select = default_select_config(SelectOp{});
  *source = codegen::render_indexer(spec);
  return true;
}

// The source of --op decode or sparse (shape flags), select (--dtype fp32, bf16 or fp16),
// indexer or fidelity.
bool source_from_flags(codegen::RenderedSource* source, std::string* error) {
  if (opt_op == "sparse") return sparse_source(source, error);
  if (opt_op == "indexer") return indexer_source(source, error);
  if (opt_op == "fidelity") {
    FidelityKernelSpec spec;
    if (opt_dtype == "fp32")
      spec.dtype = TKA_DTYPE_FP32;
    else if (opt_dtype == "bf16")
      spec.dtype = TKA_DTYPE_BF16;
    else if (opt_dtype == "fp16")
      spec.dtype = TKA_DTYPE_FP16;
    else
      return *error = "--dtype must be fp32, bf16 or fp16", false;
    if (opt_head_dim != 64 && opt_head_dim != 128 && opt_head_dim != 256)
      return *error = "--head-dim must be 64, 128 or 256 for --op fidelity", false;
    spec.head_dim = opt_head_dim;
    *source = codegen::render_fidelity(spec);
    return true;
  }
  if (opt_op == "select") {
    tka_select_desc desc{};
    if (opt_dtype == "fp32")
      desc.dtype = TKA_DTYPE_FP32;
    else if (opt_dtype == "bf16")
      desc.dtype = TKA_DTYPE_BF16;
    else if (opt_dtype == "fp16")
      desc.dtype = TKA_DTYPE_FP16;
    else
      return *error = "--dtype must be fp32, bf16 or fp16", false;
    desc.top_k = opt_top_k;
    desc.max_rows = 1;
    desc.max_n = kMaxSelectColumns;
    SelectOp op;
    const Status s = validate_select(desc, &op);
    if (!s.is_ok()) return *error = s.message(), false;
    SelectKernelSpec spec;
    spec.dtype = desc.dtype;
    spec.config = default_select_config(op);
    *source = codegen::render_select(spec);
    return true;
  }
  if (opt_op != "decode")
    return *error = "unknown --op " + opt_op + " (decode, select, sparse, indexer or fidelity)", false;
  tka_decode_desc desc;
  if (!desc_from_flags(&desc, error)) return false;
  DecodeOp op;
  const Status s = validate_decode(desc, &op);
  if (!s.is_ok()) return *error = s.message(), false;
  *source = codegen::render_decode(kernel_spec_for(op, default_decode_config(op)));
  return true;
}

}  // namespace

int run_emit() {
  codegen::RenderedSource source;
  std::string error;
  if (!source_from_flags(&source, &error)) {
    std::fprintf(stderr, "topkattn emit: %s\n", error.c_str());
    return 2;
  }
  if (!opt_ptx) {
    std::fputs(source.source.c_str(), stdout);
    return 0;
  }
  const int sm = codegen::parse_arch(opt_arch);
  if (sm == 0) {
    std::fprintf(stderr, "topkattn emit: --arch %s is not of the form sm_XX\n", opt_arch.c_str());
    return 2;
  }
  codegen::CompiledModule ptx;
  const Status s = codegen::nvrtc_compile(source, sm, /*ptx=*/true, &ptx);
  if (!s.is_ok()) {
    std::fprintf(stderr, "topkattn emit: %s\n", s.message().c_str());
    return 1;
  }
  std::fputs(ptx.image.c_str(), stdout);
  return 0;
}

}  // namespace tka::tools
