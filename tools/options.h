// Command-line options shared by several subcommands (llvm::cl), declared once.
#pragma once
#include <llvm/Support/CommandLine.h>

#include <string>

#include "topkattn/topkattn.h"

namespace tka::tools {

extern llvm::cl::SubCommand kEmit, kPrewarm, kRun, kModels, kTune;

extern llvm::cl::opt<std::string> opt_model;
extern llvm::cl::opt<std::string> opt_arch;
extern llvm::cl::opt<int> opt_head_dim, opt_group, opt_kv_heads, opt_top_k, opt_q_len, opt_page_size;
extern llvm::cl::opt<std::string> opt_dtype, opt_select, opt_op;
extern llvm::cl::opt<bool> opt_ptx, opt_json;
extern llvm::cl::opt<int> opt_jobs, opt_batch, opt_seq_len;
extern llvm::cl::opt<std::string> opt_cache_dir, opt_db, opt_seq_lens, opt_batches;
extern llvm::cl::opt<int> opt_repeats;
extern llvm::cl::opt<bool> opt_verbose;

// A decode descriptor from the shape flags (emit) or nullptr-safe defaults.
bool desc_from_flags(tka_decode_desc* desc, std::string* error);

}  // namespace tka::tools
