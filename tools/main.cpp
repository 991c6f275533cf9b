// topkattn: emit generated kernels, prewarm the kernel cache, run the main job.
#include <llvm/Support/CommandLine.h>

#include "tools/commands.h"
#include "tools/options.h"

namespace tka::tools {

llvm::cl::SubCommand kEmit("emit", "Print the generated CUDA source (or PTX) of a kernel spec");
llvm::cl::SubCommand kPrewarm("prewarm", "Compile every kernel a model preset needs into the cache (no GPU needed)");
llvm::cl::SubCommand kModels("models", "List the built-in model presets");
llvm::cl::SubCommand kTune("tune",
                           "Time every launch configuration on this GPU and write the best to the tuning database");
llvm::cl::SubCommand kRun("run", "Prewarm a preset, then on a GPU run, verify against the CPU reference and time it");

using llvm::cl::desc;
using llvm::cl::init;
using llvm::cl::sub;

llvm::cl::opt<std::string> opt_model("model", desc("Model preset (llama-3.1-8b, ...)"), init("llama-3.1-8b"),
                                     sub(kPrewarm), sub(kRun), sub(kTune));
llvm::cl::opt<std::string> opt_arch("arch", desc("Target arch(s), comma separated (sm_80,sm_90)"), init("sm_90"),
                                    sub(kEmit), sub(kPrewarm), sub(kRun));
llvm::cl::opt<std::string> opt_op("op",
                                  desc("Operation: decode, select, sparse, indexer or fidelity (emit); decode, select, "
                                       "indexer, sparse or fidelity (tune)"),
                                  init("decode"), sub(kEmit), sub(kTune));
llvm::cl::opt<int> opt_head_dim("head-dim", desc("Head dimension"), init(128), sub(kEmit), sub(kTune));
llvm::cl::opt<int> opt_group("group", desc("GQA group size (query heads per KV head)"), init(4), sub(kEmit),
                             sub(kTune));
llvm::cl::opt<int> opt_kv_heads("kv-heads", desc("KV heads"), init(8), sub(kEmit), sub(kTune));
llvm::cl::opt<int> opt_top_k("k", desc("Keys selected per query (top-k)"), init(2048), sub(kEmit), sub(kRun),
                             sub(kTune));
llvm::cl::opt<int> opt_q_len("q-len", desc("New tokens per sequence"), init(1), sub(kEmit), sub(kTune));
llvm::cl::opt<int> opt_page_size("page-size", desc("Paged KV page size (0: contiguous)"), init(0), sub(kEmit),
                                 sub(kTune));
llvm::cl::opt<std::string> opt_dtype("dtype",
                                     desc("bf16 or fp16 (select and fidelity: also fp32; indexer keys: fp8 or bf16)"),
                                     init("bf16"), sub(kEmit), sub(kTune));
llvm::cl::opt<std::string> opt_select("select", desc("head or group"), init("head"), sub(kEmit), sub(kTune));
llvm::cl::opt<bool> opt_ptx("ptx", desc("Print PTX instead of the source"), sub(kEmit));
llvm::cl::opt<bool> opt_json("json", desc("Print JSON"), sub(kPrewarm), sub(kModels), sub(kTune));
llvm::cl::opt<int> opt_jobs("j", desc("Parallel compile jobs (0: all cores)"), init(0), sub(kPrewarm), sub(kRun),
                            sub(kTune));
llvm::cl::opt<int> opt_batch("batch", desc("Batch size"), init(4), sub(kRun), sub(kPrewarm));
llvm::cl::opt<int> opt_seq_len("seq-len", desc("Sequence length"), init(32768), sub(kRun), sub(kPrewarm));
llvm::cl::opt<std::string> opt_cache_dir("cache-dir",
                                         desc("Cache directory (default: TOPKATTN_CACHE_DIR, XDG, ~/.cache)"), init(""),
                                         sub(kPrewarm), sub(kRun), sub(kTune));
llvm::cl::opt<std::string> opt_db("db", desc("Tuning database file (default: TOPKATTN_TUNING_DB)"), init(""),
                                  sub(kPrewarm), sub(kRun), sub(kTune));
llvm::cl::opt<std::string> opt_seq_lens(
    "seq-lens", desc("Sequence lengths (select: row lengths; sparse: cache lengths) to tune, comma separated"),
    init("4096,8192,16384,32768,65536,131072"), sub(kTune));
llvm::cl::opt<std::string> opt_batches("batches", desc("Batch sizes (select: row counts) to tune, comma separated"),
                                       init("1,2,4,8,16,32,64"), sub(kTune));
llvm::cl::opt<int> opt_repeats("repeats", desc("Timed runs per candidate (median)"), init(9), sub(kTune));
llvm::cl::opt<bool> opt_verbose("verbose", desc("Print every candidate's time, and why any was pruned"), sub(kTune));

}  // namespace tka::tools

int main(int argc, char** argv) {
  using namespace tka::tools;
  llvm::cl::ParseCommandLineOptions(argc, argv, "topkattn: run-time generated top-k attention kernels\n");
  if (kEmit) return run_emit();
  if (kPrewarm) return run_prewarm();
  if (kRun) return run_main_job();
  if (kModels) return run_models();
  if (kTune) return run_tune();
  if (cache_command_selected()) return run_cache_command();
  if (analyze_command_selected()) return run_analyze();
  llvm::cl::PrintHelpMessage();
  return 1;
}
