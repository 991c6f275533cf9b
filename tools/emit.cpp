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

int run_emit() {
  if (opt_op != "decode") {
    std::fprintf(stderr, "topkattn emit: unknown --op %s (decode)\n", opt_op.c_str());
    return 2;
  }
  tka_decode_desc desc;
  std::string error;
  if (!desc_from_flags(&desc, &error)) {
    std::fprintf(stderr, "topkattn emit: %s\n", error.c_str());
    return 2;
  }
  DecodeOp op;
  Status s = validate_decode(desc, &op);
  if (!s.is_ok()) {
    std::fprintf(stderr, "topkattn emit: %s\n", s.message().c_str());
    return 2;
  }
  const codegen::RenderedSource source = codegen::render_decode(kernel_spec_for(op, default_decode_config(op)));
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
  s = codegen::nvrtc_compile(source, sm, /*ptx=*/true, &ptx);
  if (!s.is_ok()) {
    std::fprintf(stderr, "topkattn emit: %s\n", s.message().c_str());
    return 1;
  }
  std::fputs(ptx.image.c_str(), stdout);
  return 0;
}

}  // namespace tka::tools
