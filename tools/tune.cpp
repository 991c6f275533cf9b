// `topkattn tune`: time launch configurations on this GPU for a list of sequence lengths and batch
// sizes, merge the best of each into the tuning database, and print what was found.
#include <llvm/ADT/StringExtras.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "autotune/decode_tuner.h"
#include "autotune/fidelity_tuner.h"
#include "autotune/indexer_tuner.h"
#include "autotune/presets.h"
#include "autotune/select_tuner.h"
#include "autotune/sparse_tuner.h"
#include "common/settings.h"
#include "tools/commands.h"
#include "tools/options.h"

namespace tka::tools {
namespace {

bool parse_int_list(const std::string& flag, const std::string& text, std::vector<int>* out, std::string* error) {
  llvm::SmallVector<llvm::StringRef, 8> parts;
  llvm::StringRef(text).split(parts, ',', -1, false);
  for (llvm::StringRef p : parts) {
    int v = 0;
    if (p.trim().getAsInteger(10, v) || v <= 0)
      return *error = flag + ": '" + p.str() + "' is not a positive integer", false;
    out->push_back(v);
  }
  if (out->empty()) return *error = flag + ": empty list", false;
  return true;
}

// The shape to tune: a preset's (with --select/--page-size/--k/--q-len/--dtype applied when
// given), or the shape flags when no --model is given but shape flags are.
bool tune_desc(tka_decode_desc* desc, std::string* label, std::string* error) {
  const bool shape_flags =
      opt_head_dim.getNumOccurrences() || opt_group.getNumOccurrences() || opt_kv_heads.getNumOccurrences();
  if (shape_flags && !opt_model.getNumOccurrences()) {
    if (!desc_from_flags(desc, error)) return false;
    *label = fmt::format("d{} g{} kv{}", desc->head_dim, opt_group.getValue(), desc->num_kv_heads);
    return true;
  }
  const ModelPreset* preset = find_preset(opt_model);
  if (!preset) return *error = "--model: unknown preset '" + opt_model + "' (" + preset_names() + ")", false;
  if (!preset_has_decode(*preset))
    return *error = "--model " + opt_model + ": decode tuning does not apply to its attention (" + preset->attention +
                    "); tune it with --op indexer and --op sparse",
           false;
  *desc = preset_main_desc(*preset, 1, 1);
  if (opt_select.getNumOccurrences()) {
    if (opt_select != "head" && opt_select != "group") return *error = "--select must be head or group", false;
    desc->select = opt_select == "group" ? TKA_SELECT_PER_GROUP : TKA_SELECT_PER_HEAD;
  }
  if (opt_page_size.getNumOccurrences() && opt_page_size > 0)
    desc->kv_layout = TKA_KV_PAGED, desc->page_size = opt_page_size;
  if (opt_top_k.getNumOccurrences()) desc->top_k = opt_top_k;
  if (opt_q_len.getNumOccurrences()) desc->q_len = opt_q_len;
  if (opt_dtype.getNumOccurrences()) {
    if (opt_dtype != "bf16" && opt_dtype != "fp16") return *error = "--dtype must be bf16 or fp16", false;
    desc->dtype = opt_dtype == "fp16" ? TKA_DTYPE_FP16 : TKA_DTYPE_BF16;
  }
  *label = preset->name;
  return true;
}

// Selection (--op select): rows of --seq-lens values, --batches rows, top --k, --dtype (fp32 by default).
bool select_desc(tka_select_desc* desc, std::string* label, std::string* error) {
  *desc = tka_select_desc{};
  const std::string dtype = opt_dtype.getNumOccurrences() ? opt_dtype.getValue() : "fp32";
  if (dtype == "fp32")
    desc->dtype = TKA_DTYPE_FP32;
  else if (dtype == "bf16")
    desc->dtype = TKA_DTYPE_BF16;
  else if (dtype == "fp16")
    desc->dtype = TKA_DTYPE_FP16;
  else
    return *error = "--dtype must be fp32, bf16 or fp16 for --op select", false;
  desc->top_k = opt_top_k;
  desc->sorted = 1;
  *label = fmt::format("select {} k={}", dtype, desc->top_k);
  return true;
}

// The preset --model names, or null when --model is not given; false (with *error) for an unknown name.
bool optional_preset(const ModelPreset** preset, std::string* error) {
  *preset = opt_model.getNumOccurrences() ? find_preset(opt_model) : nullptr;
  if (opt_model.getNumOccurrences() && !*preset)
    return *error = "--model: unknown preset '" + opt_model + "' (" + preset_names() + ")", false;
  return true;
}

// Indexer scores (--op indexer): the preset's indexer when --model names one that has it (else 64
// index heads of 128), keys in --dtype fp8 (default) or bf16, --q-len tokens.
bool indexer_desc(tka_indexer_desc* desc, std::string* label, std::string* error) {
  *desc = tka_indexer_desc{};
  desc->num_index_heads = 64;
  desc->index_head_dim = 128;
  const ModelPreset* preset = nullptr;
  if (!optional_preset(&preset, error)) return false;
  if (preset) {
    const std::vector<tka_indexer_desc> descs = preset_indexer_descs(*preset, 1, 1);
    if (descs.empty()) return *error = "--model " + opt_model + ": the preset has no indexer", false;
    *desc = descs[0];
  }
  const std::string dtype = opt_dtype.getNumOccurrences() ? opt_dtype.getValue() : "fp8";
  if (dtype != "fp8" && dtype != "bf16") return *error = "--dtype must be fp8 or bf16 for --op indexer", false;
  desc->key_dtype = dtype == "fp8" ? TKA_DTYPE_FP8_E4M3 : TKA_DTYPE_BF16;
  desc->kv_layout = TKA_KV_CONTIGUOUS;
  desc->page_size = 0;
  desc->q_len = opt_q_len;
  *label = fmt::format("indexer {} heads {} keys q_len {}", desc->num_index_heads, dtype, desc->q_len);
  return true;
}

// Sparse attention over given indices (--op sparse): the preset's (DeepSeek's MLA attention over
// its indexer's k; other presets' attention with --k indices per list), else the shape flags;
// --select, --dtype and --q-len apply. --seq-lens are the cache lengths the lists index into.
bool sparse_desc(tka_sparse_desc* desc, std::string* label, std::string* error) {
  *desc = tka_sparse_desc{};
  tka_decode_desc d{};
  const ModelPreset* preset = nullptr;
  if (!optional_preset(&preset, error)) return false;
  const std::vector<tka_indexer_desc> indexer =
      preset ? preset_indexer_descs(*preset, 1, 1) : std::vector<tka_indexer_desc>{};
  if (!indexer.empty()) {
    *desc = indexer[0].attention;  // as the fused indexer plan fills it (codegen/indexer_spec.cpp)
    desc->index_width = indexer[0].top_k;
    desc->select = TKA_SELECT_PER_GROUP;
    desc->q_len = indexer[0].q_len;
  } else {
    if (preset)
      d = preset_main_desc(*preset, 1, 1);
    else if (!desc_from_flags(&d, error))
      return false;
    desc->dtype = d.dtype, desc->num_q_heads = d.num_q_heads, desc->num_kv_heads = d.num_kv_heads;
    desc->head_dim = d.head_dim, desc->index_width = d.top_k, desc->select = d.select;
    if (d.head_dim == 576) desc->head_dim_v = 512, desc->shared_kv = 1;
  }
  if (opt_top_k.getNumOccurrences()) desc->index_width = opt_top_k;
  if (opt_select.getNumOccurrences()) {
    if (opt_select != "head" && opt_select != "group") return *error = "--select must be head or group", false;
    desc->select = opt_select == "group" ? TKA_SELECT_PER_GROUP : TKA_SELECT_PER_HEAD;
  }
  if (opt_dtype.getNumOccurrences()) {
    if (opt_dtype != "bf16" && opt_dtype != "fp16")
      return *error = "--dtype must be bf16 or fp16 for --op sparse", false;
    desc->dtype = opt_dtype == "fp16" ? TKA_DTYPE_FP16 : TKA_DTYPE_BF16;
  }
  if (opt_q_len.getNumOccurrences()) desc->q_len = opt_q_len;
  if (desc->q_len <= 0) desc->q_len = 1;
  desc->kv_layout = TKA_KV_CONTIGUOUS;
  desc->page_size = 0;
  *label = fmt::format("sparse {}{}{} heads on {} d={} k={} per {}", preset ? preset->name : "", preset ? ": " : "",
                       desc->num_q_heads, desc->num_kv_heads, desc->head_dim, desc->index_width,
                       desc->select == TKA_SELECT_PER_GROUP ? "group" : "head");
  return true;
}

// Fidelity diagnostics (--op fidelity): the preset's heads and k (else the shape flags), --dtype
// bf16 (default), fp16 or fp32, --k applies.
bool fidelity_desc(tka_fidelity_desc* desc, std::string* label, std::string* error) {
  *desc = tka_fidelity_desc{};
  tka_decode_desc d{};
  const ModelPreset* preset = nullptr;
  if (!optional_preset(&preset, error)) return false;
  if (preset && !preset_has_decode(*preset))
    return *error = "--model " + opt_model + ": its attention (" + preset->attention +
                    ") has no fidelity kernel (head dims 64, 128 and 256)",
           false;
  if (preset) {
    d = preset_main_desc(*preset, 1, 1);
  } else {  // the shape flags (not desc_from_flags: its dtype rule is decode's, without fp32)
    d.num_kv_heads = opt_kv_heads, d.num_q_heads = opt_kv_heads * opt_group, d.head_dim = opt_head_dim;
    d.top_k = opt_top_k;
  }
  desc->num_q_heads = d.num_q_heads, desc->num_kv_heads = d.num_kv_heads, desc->head_dim = d.head_dim;
  desc->top_k = opt_top_k.getNumOccurrences() ? opt_top_k.getValue() : d.top_k;
  const std::string dtype = opt_dtype.getNumOccurrences() ? opt_dtype.getValue() : "bf16";
  if (dtype == "bf16")
    desc->dtype = TKA_DTYPE_BF16;
  else if (dtype == "fp16")
    desc->dtype = TKA_DTYPE_FP16;
  else if (dtype == "fp32")
    desc->dtype = TKA_DTYPE_FP32;
  else
    return *error = "--dtype must be bf16, fp16 or fp32 for --op fidelity", false;
  *label = fmt::format("fidelity {}{}{} heads on {} d={} k={} {}", preset ? preset->name : "", preset ? ": " : "",
                       desc->num_q_heads, desc->num_kv_heads, desc->head_dim, desc->top_k, dtype);
  return true;
}

// Each op's descriptor as described by the flags; at() gives them at one tuned shape.
struct ShapeRequest {
  tka_decode_desc decode{};
  tka_select_desc select{};
  tka_indexer_desc indexer{};
  tka_sparse_desc sparse{};
  tka_fidelity_desc fidelity{};
  // Cache length n (select: row length) and batch b (select: rows); sparse keys on the batch only.
  ShapeRequest at(int n, int b) const {
    ShapeRequest r = *this;
    r.decode.max_seq_len = n, r.decode.max_batch = b;
    r.select.max_n = n, r.select.max_rows = b;
    r.indexer.max_seq_len = n, r.indexer.max_batch = b;
    r.sparse.max_batch = b;
    r.fidelity.max_seq_len = n, r.fidelity.max_batch = b;
    return r;
  }
};

// What `tune` does for one op: describe it from the flags, validate it at a shape, tune it there
// and name the config it found.
struct OpTuner {
  const char* name;
  bool (*describe)(ShapeRequest* r, std::string* label, std::string* error);
  Status (*validate)(const ShapeRequest& r);
  Status (*tune)(Runtime& runtime, const ShapeRequest& r, int n, const TuneOptions& to, TuneResult* out);
  std::string (*config_text)(const TuningEntry& e);
  bool batch_only;  // entries key on the batch alone (sparse: the lists set the time, not the cache length):
                    // one cache length, the longest given, is tuned
};

const OpTuner kOpTuners[] = {
    {"decode", [](ShapeRequest* r, std::string* l, std::string* e) { return tune_desc(&r->decode, l, e); },
     [](const ShapeRequest& r) {
       DecodeOp op;
       return validate_decode(r.decode, &op);
     },
     [](Runtime& rt, const ShapeRequest& r, int, const TuneOptions& to, TuneResult* out) {
       return tune_decode(rt, r.decode, to, out);
     },
     [](const TuningEntry& e) { return e.config.text(); }, false},
    {"select", [](ShapeRequest* r, std::string* l, std::string* e) { return select_desc(&r->select, l, e); },
     [](const ShapeRequest& r) {
       SelectOp op;
       return validate_select(r.select, &op);
     },
     [](Runtime& rt, const ShapeRequest& r, int, const TuneOptions& to, TuneResult* out) {
       return tune_select(rt, r.select, to, out);
     },
     [](const TuningEntry& e) { return e.select_config.text(); }, false},
    {"indexer", [](ShapeRequest* r, std::string* l, std::string* e) { return indexer_desc(&r->indexer, l, e); },
     [](const ShapeRequest& r) {
       IndexerOp op;
       return validate_indexer(r.indexer, /*fused=*/false, &op);
     },
     [](Runtime& rt, const ShapeRequest& r, int, const TuneOptions& to, TuneResult* out) {
       return tune_indexer(rt, r.indexer, to, out);
     },
     [](const TuningEntry& e) { return e.indexer_config.text(); }, false},
    {"sparse", [](ShapeRequest* r, std::string* l, std::string* e) { return sparse_desc(&r->sparse, l, e); },
     [](const ShapeRequest& r) {
       SparseOp op;
       return validate_sparse(r.sparse, &op);
     },
     [](Runtime& rt, const ShapeRequest& r, int n, const TuneOptions& to, TuneResult* out) {
       return tune_sparse(rt, r.sparse, n, to, out);
     },
     [](const TuningEntry& e) { return e.sparse_config.text(); }, true},
    {"fidelity", [](ShapeRequest* r, std::string* l, std::string* e) { return fidelity_desc(&r->fidelity, l, e); },
     [](const ShapeRequest& r) {
       FidelityOp op;
       return validate_fidelity(r.fidelity, /*host=*/false, &op);
     },
     [](Runtime& rt, const ShapeRequest& r, int, const TuneOptions& to, TuneResult* out) {
       return tune_fidelity(rt, r.fidelity, to, out);
     },
     [](const TuningEntry& e) { return e.fidelity_config.text(); }, false},
};

const OpTuner* find_op_tuner(const std::string& name) {
  for (const OpTuner& t : kOpTuners)
    if (name == t.name) return &t;
  return nullptr;
}

std::string format_eta(double seconds) {
  const int s = static_cast<int>(seconds + 0.5);
  return s >= 60 ? fmt::format("{}m{:02d}s", s / 60, s % 60) : fmt::format("{}s", s);
}

}  // namespace

int run_tune() {
  ShapeRequest base;
  std::string label, error;
  std::vector<int> seq_lens, batches;
  const OpTuner* op = find_op_tuner(opt_op);
  if (!op) {
    std::fprintf(stderr, "topkattn tune: --op must be decode, select, indexer, sparse or fidelity, not %s\n",
                 opt_op.c_str());
    return 2;
  }
  if (!op->describe(&base, &label, &error) || !parse_int_list("--seq-lens", opt_seq_lens, &seq_lens, &error) ||
      !parse_int_list("--batches", opt_batches, &batches, &error)) {
    std::fprintf(stderr, "topkattn tune: %s\n", error.c_str());
    return 2;
  }
  if (op->batch_only) seq_lens = {*std::max_element(seq_lens.begin(), seq_lens.end())};
  const std::string db_path = !opt_db.empty() ? opt_db.getValue() : settings().tuning_db;
  if (db_path.empty()) {
    std::fprintf(stderr, "topkattn tune: --db: no database file given (or set TOPKATTN_TUNING_DB)\n");
    return 2;
  }
  if (opt_repeats < 3) {
    std::fprintf(stderr, "topkattn tune: --repeats: %d is fewer than 3\n", opt_repeats.getValue());
    return 2;
  }
  for (int n : seq_lens) {
    for (int b : batches) {
      const Status s = op->validate(base.at(n, b));
      if (!s.is_ok()) {
        std::fprintf(stderr, "topkattn tune: %s\n", s.message().c_str());
        return 2;
      }
    }
  }

  std::unique_ptr<Runtime> runtime;
  tka_runtime_options options;
  tka_runtime_options_init(&options);
  options.tune = 0;
  options.tuning_db = "";  // the tuner times configs itself; the database is written below
  if (!opt_cache_dir.empty()) options.cache_dir = opt_cache_dir.c_str();
  const Status created = Runtime::create(options, &runtime);
  if (!created.is_ok()) {
    std::fprintf(stderr, "topkattn tune: %s\n", created.message().c_str());
    return created.code() == TKA_ERROR_NO_DEVICE ? 3 : 1;
  }
  std::vector<std::string> warnings;
  TuningDb db = TuningDb::load(db_path, &warnings);
  for (const std::string& w : warnings) std::fprintf(stderr, "topkattn tune: warning: %s\n", w.c_str());

  const int shapes = static_cast<int>(seq_lens.size() * batches.size());
  const bool tty = isatty(fileno(stderr));
  const auto t0 = std::chrono::steady_clock::now();
  const auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  std::printf("tune %s on %s (sm_%d, %d SMs) -> %s\n", label.c_str(), runtime->device().name.c_str(),
              runtime->device().sm, runtime->device().sm_count, db_path.c_str());
  if (!opt_json)
    std::printf("%6s %8s  %-48s %10s %8s %10s %7s\n", "batch", "seq_len", "config", "time us", "/floor", "default us",
                "gain");
  nlohmann::json rows = nlohmann::json::array();
  int shape_index = 0, failed = 0;
  for (int n : seq_lens) {
    for (int b : batches) {
      const ShapeRequest r = base.at(n, b);
      TuneOptions to;
      to.repeats = opt_repeats;
      to.compile_jobs = opt_jobs;
      to.progress = [&](int done, int total) {
        if (!tty && done < total) return;  // a log file gets one line per shape
        const double fraction = (shape_index + static_cast<double>(done) / total) / shapes;
        const double eta = fraction > 0 ? elapsed() * (1 - fraction) / fraction : 0;
        const int width = 30, filled = static_cast<int>(fraction * width);
        std::fprintf(stderr, "%s[%s%s] %3.0f%%  shape %d/%d (B=%d N=%d) config %d/%d  ETA %s%s", tty ? "\r" : "",
                     std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(), 100 * fraction,
                     shape_index + 1, shapes, b, n, done, total, format_eta(eta).c_str(), tty ? "  " : "\n");
        std::fflush(stderr);
      };
      TuneResult tuned;
      const Status s = op->tune(*runtime, r, n, to, &tuned);
      if (tty) std::fprintf(stderr, "\r%*s\r", 110, "");
      ++shape_index;
      if (!s.is_ok()) {
        ++failed;
        std::fprintf(stderr, "topkattn tune: B=%d N=%d: %s\n", b, n, s.message().c_str());
        continue;
      }
      db.upsert(tuned.entry);
      const Status saved = db.save(db_path);  // after every shape: an interrupted run keeps its work
      if (!saved.is_ok()) {
        std::fprintf(stderr, "topkattn tune: %s\n", saved.message().c_str());
        return 1;
      }
      const double floor_us = tuned.bytes / tuned.copy_bytes_per_second * 1e6;
      const TuningEntry& e = tuned.entry;
      const std::string config = op->config_text(e);
      rows.push_back({{"batch", b},
                      {"seq_len", n},
                      {"config", config},
                      {"time_us", e.time_us},
                      {"floor_us", floor_us},
                      {"default_time_us", e.default_time_us},
                      {"gain", e.default_time_us / e.time_us},
                      {"timed", tuned.candidates},
                      {"pruned", tuned.pruned},
                      {"rejected", tuned.rejected}});
      if (!opt_json)
        std::printf("%6d %8d  %-48s %10.1f %7.2fx %10.1f %6.2fx\n", b, n, config.c_str(), e.time_us,
                    e.time_us / floor_us, e.default_time_us, e.default_time_us / e.time_us);
      for (const std::string& note : tuned.notes)
        if (opt_verbose || note.rfind("rejected", 0) == 0) std::fprintf(stderr, "  %s\n", note.c_str());
      std::fflush(stdout);
    }
  }
  if (opt_json)
    std::printf("%s\n", nlohmann::json({{"db", db_path}, {"seconds", elapsed()}, {"shapes", rows}}).dump(1).c_str());
  else
    std::printf("tuned %d shapes in %.1f s (%d failed); database %s\n", shapes - failed, elapsed(), failed,
                db_path.c_str());
  return failed ? 1 : 0;
}

}  // namespace tka::tools
