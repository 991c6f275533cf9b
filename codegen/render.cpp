#include "codegen/render.h"

#include <fmt/format.h>

namespace tka::codegen {

RenderedSource render_decode(const DecodeKernelSpec& spec) {
  const DecodeConfig& c = spec.config;
  RenderedSource r;
  r.name = spec.short_name();
  r.spec_text = spec.text();
  r.source = fmt::format(
      "// spec: {spec}\n"
      "#include \"common/types.cuh\"\n"
      "struct Spec {{\n"
      "  typedef tka::{elem} Elem;\n"
      "  static constexpr int kHeadDim = {d};\n"
      "  static constexpr int kGroup = {g};\n"
      "  static constexpr int kQLen = {q};\n"
      "  static constexpr bool kPerGroup = {per_group};\n"
      "  static constexpr bool kPaged = {paged};\n"
      "  static constexpr int kPageSize = {page};\n"
      "  static constexpr int kScoreThreads = {st};\n"
      "  static constexpr int kScoreRowTile = {sr};\n"
      "  static constexpr int kSelectThreads = {ss};\n"
      "  static constexpr int kSelectCapacity = {sc};\n"
      "  static constexpr int kAttendThreads = {at};\n"
      "  static constexpr int kAttendChunk = {ac};\n"
      "  static constexpr bool kCoopAttends = {coop_attends};\n"
      "}};\n"
      "#include \"decode.cuh\"\n",
      fmt::arg("spec", r.spec_text), fmt::arg("elem", dtype_name(spec.dtype)), fmt::arg("d", spec.head_dim),
      fmt::arg("g", spec.group), fmt::arg("q", spec.q_len), fmt::arg("per_group", spec.per_group ? "true" : "false"),
      fmt::arg("paged", spec.paged ? "true" : "false"), fmt::arg("page", spec.page_size),
      fmt::arg("st", c.score_threads), fmt::arg("sr", c.score_row_tile), fmt::arg("ss", c.select_threads),
      fmt::arg("sc", c.select_capacity), fmt::arg("at", c.attend_threads), fmt::arg("ac", c.attend_chunk),
      fmt::arg("coop_attends", spec.coop_attends() ? "true" : "false"));
  r.kernels = {"tka::decode_score<Spec>",         "tka::decode_select<Spec>",      "tka::decode_attend<Spec>",
               "tka::decode_merge<Spec>",         "tka::decode_select_hist<Spec>", "tka::decode_select_classify<Spec>",
               "tka::decode_select_finish<Spec>", "tka::decode_select_coop<Spec>", "tka::decode_select_cluster<Spec>"};
  return r;
}

namespace {
const char* elem_type(tka_dtype dtype) {
  return dtype == TKA_DTYPE_FP32 ? "float" : dtype == TKA_DTYPE_BF16 ? "tka::bf16" : "tka::fp16";
}

// The Spec that select.cuh expects, named `name` (modules that select over their own fp32 scores
// carry it beside their own Spec).
std::string select_spec_struct(const char* name, const char* elem, int threads, int capacity, int stages) {
  return fmt::format(
      "struct {name} {{\n"
      "  typedef {elem} Elem;\n"
      "  static constexpr int kThreads = {t};\n"
      "  static constexpr int kCapacity = {c};\n"
      "  static constexpr int kStages = {st};\n"
      "}};\n",
      fmt::arg("name", name), fmt::arg("elem", elem), fmt::arg("t", threads), fmt::arg("c", capacity),
      fmt::arg("st", stages));
}

// The selection kernels over `spec`, in SelectKernel order.
std::vector<std::string> select_kernels(const std::string& spec) {
  std::vector<std::string> names;
  for (const char* k : {"select_rows", "select_split_hist", "select_split_classify", "select_split_finish",
                        "select_sort", "select_rows_cluster", "select_rows_coop"})
    names.push_back(fmt::format("tka::{}<{}>", k, spec));
  return names;
}
}  // namespace

RenderedSource render_select(const SelectKernelSpec& spec) {
  RenderedSource r;
  r.name = spec.short_name();
  r.spec_text = spec.text();
  const char* elem = elem_type(spec.dtype);
  r.source =
      fmt::format("// spec: {}\n#include \"common/types.cuh\"\n{}#include \"select.cuh\"\n", r.spec_text,
                  select_spec_struct("Spec", elem, spec.config.threads, spec.config.capacity, spec.config.stages));
  r.kernels = select_kernels("Spec");
  return r;
}

RenderedSource render_fidelity(const FidelityKernelSpec& spec) {
  RenderedSource r;
  r.name = spec.short_name();
  r.spec_text = spec.text();
  r.source = fmt::format(
      "// spec: {spec}\n"
      "#include \"common/types.cuh\"\n"
      "struct Spec {{\n"
      "  typedef {elem} Elem;\n"
      "  static constexpr int kHeadDim = {d};\n"
      "}};\n"
      "{select}"
      "#include \"select.cuh\"\n"
      "#include \"fidelity.cuh\"\n",
      fmt::arg("spec", r.spec_text), fmt::arg("elem", elem_type(spec.dtype)), fmt::arg("d", spec.head_dim),
      fmt::arg("select", select_spec_struct("SelectSpec", "float", spec.select_threads, spec.select_capacity, 4)));
  r.kernels = {"tka::fidelity_scores<Spec>", "tka::select_rows<SelectSpec>", "tka::fidelity_stats<Spec>"};
  return r;
}

RenderedSource render_sparse(const SparseKernelSpec& spec) {
  RenderedSource r;
  r.name = spec.short_name();
  r.spec_text = spec.text();
  r.source = fmt::format(
      "// spec: {spec}\n"
      "#include \"common/types.cuh\"\n"
      "struct Spec {{\n"
      "  typedef {elem} Elem;\n"
      "  static constexpr int kHeadDim = {d};\n"
      "  static constexpr int kHeadDimV = {dv};\n"
      "  static constexpr bool kSharedKV = {shared};\n"
      "  static constexpr int kGroup = {g};\n"
      "  static constexpr int kQLen = {q};\n"
      "  static constexpr bool kPerGroup = {per_group};\n"
      "  static constexpr bool kPaged = {paged};\n"
      "  static constexpr int kPageSize = {page};\n"
      "  static constexpr int kThreads = {t};\n"
      "  static constexpr int kHeadTile = {ht};\n"
      "}};\n"
      "#include \"sparse.cuh\"\n",
      fmt::arg("spec", r.spec_text), fmt::arg("elem", elem_type(spec.dtype)), fmt::arg("d", spec.head_dim),
      fmt::arg("dv", spec.head_dim_v), fmt::arg("shared", spec.shared_kv ? "true" : "false"), fmt::arg("g", spec.group),
      fmt::arg("q", spec.q_len), fmt::arg("per_group", spec.per_group ? "true" : "false"),
      fmt::arg("paged", spec.paged ? "true" : "false"), fmt::arg("page", spec.page_size), fmt::arg("t", spec.threads),
      fmt::arg("ht", spec.head_tile));
  r.kernels = {"tka::sparse_attend<Spec>", "tka::sparse_merge<Spec>"};
  return r;
}

RenderedSource render_indexer(const IndexerKernelSpec& spec) {
  RenderedSource r;
  r.name = spec.short_name();
  r.spec_text = spec.text();
  r.source = fmt::format(
      "// spec: {spec}\n"
      "#include \"common/types.cuh\"\n"
      "struct Spec {{\n"
      "  static constexpr int kHeads = {h};\n"
      "  static constexpr int kDim = {d};\n"
      "  static constexpr bool kFp8 = {fp8};\n"
      "  static constexpr bool kPaged = {paged};\n"
      "  static constexpr int kPageSize = {page};\n"
      "  static constexpr int kQLen = {q};\n"
      "  static constexpr int kStages = {ks};\n"
      "}};\n"
      "{select}"
      "#include \"select.cuh\"\n"
      "#include \"indexer.cuh\"\n",
      fmt::arg("spec", r.spec_text), fmt::arg("h", spec.heads), fmt::arg("d", spec.dim),
      fmt::arg("fp8", spec.fp8 ? "true" : "false"), fmt::arg("paged", spec.paged ? "true" : "false"),
      fmt::arg("page", spec.page_size), fmt::arg("q", spec.q_len), fmt::arg("ks", spec.stages),
      fmt::arg("select", select_spec_struct("SelectSpec", "float", spec.select.threads, spec.select.capacity,
                                            spec.select.stages)));
  r.kernels = {"tka::indexer_scores<Spec>"};
  for (std::string& k : select_kernels("SelectSpec")) r.kernels.push_back(std::move(k));
  return r;
}

}  // namespace tka::codegen
