#include <cstdio>

#include "autotune/decode_heuristic.h"
#include "codegen/nvrtc.h"
#include "codegen/render.h"
#include "tools/commands.h"
#include "tools/options.h"

namespace tka::tools {

bool desc_from_flags(tka_decode_desc* d, std::string* error) {
  *d = tka_decode_desc{};
  if (opt_dtype == "bf16") d->dtype = TKA_DTYPE_BF16;
  else if (opt_dtype == "fp16") d->dtype = TKA_DTYPE_FP16;
  else return *error = "--dtype must be bf16 or fp16", false;
  if (opt_select == "head") d->select = TKA_SELECT_PER_HEAD;
  else if (opt_select == "group") d->select = TKA_SELECT_PER_GROUP;
  else return *error = "--select must be head or group", false;
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

// The source of --op decode (shape flags) or --op select (--dtype fp32, bf16 or fp16).
bool source_from_flags(codegen::RenderedSource* source, std::string* error) {
  if (opt_op == "select") {
    tka_select_desc desc{};
    if (opt_dtype == "fp32") desc.dtype = TKA_DTYPE_FP32;
    else if (opt_dtype == "bf16") desc.dtype = TKA_DTYPE_BF16;
    else if (opt_dtype == "fp16") desc.dtype = TKA_DTYPE_FP16;
    else return *error = "--dtype must be fp32, bf16 or fp16", false;
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
  if (opt_op != "decode") return *error = "unknown --op " + opt_op + " (decode or select)", false;
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
