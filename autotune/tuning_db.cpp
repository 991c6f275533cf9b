#include "autotune/tuning_db.h"

#include <llvm/Support/FileSystem.h>
#include <llvm/Support/Path.h>
#include <llvm/Support/Process.h>

#include <cmath>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>

#include "autotune/fidelity_space.h"
#include "autotune/indexer_space.h"
#include "autotune/sparse_space.h"

namespace tka {
namespace {

using nlohmann::json;
namespace fs = llvm::sys::fs;

// 2: score_waves counts full waves of resident CTAs, 0 = by batch (1 counted CTAs per SM);
// select_split.
constexpr int kFormat = 2;

const char* library_version() { return TOPKATTN_VERSION_STRING; }

json config_to_json(const DecodeConfig& c) {
  return {{"score_threads", c.score_threads},   {"score_row_tile", c.score_row_tile},
          {"select_threads", c.select_threads}, {"select_capacity", c.select_capacity},
          {"attend_threads", c.attend_threads}, {"attend_chunk", c.attend_chunk},
          {"score_waves", c.score_waves},       {"attend_min_split", c.attend_min_split},
          {"select_split", c.select_split}};
}

DecodeConfig config_from_json(const json& j) {
  DecodeConfig c;
  c.score_threads = j.at("score_threads").get<int>();
  c.score_row_tile = j.at("score_row_tile").get<int>();
  c.select_threads = j.at("select_threads").get<int>();
  c.select_capacity = j.at("select_capacity").get<int>();
  c.attend_threads = j.at("attend_threads").get<int>();
  c.attend_chunk = j.at("attend_chunk").get<int>();
  c.score_waves = j.at("score_waves").get<int>();
  c.attend_min_split = j.at("attend_min_split").get<int>();
  c.select_split = j.at("select_split").get<int>();
  return c;
}

// A config from a file is compiled into a kernel: reject what no kernel template accepts, so a
// hand-edited entry cannot ask for, say, 7 threads.
bool config_sane(const DecodeConfig& c) {
  const auto warp_multiple = [](int t, int hi) { return t >= 32 && t <= hi && t % 32 == 0; };
  return warp_multiple(c.score_threads, 256) && c.score_row_tile >= 16 && c.score_row_tile <= 64 &&
         c.score_row_tile % 16 == 0 && warp_multiple(c.select_threads, 1024) && c.select_capacity >= 256 &&
         c.select_capacity <= 8192 && warp_multiple(c.attend_threads, 1024) && c.attend_chunk >= 32 &&
         c.attend_chunk <= 8192 && c.score_waves >= 0 && c.score_waves <= 64 && c.attend_min_split >= 32 &&
         c.attend_min_split <= 8192 && c.select_split >= 0 && c.select_split <= 3;
}

json select_config_to_json(const SelectConfig& c) {
  return {{"threads", c.threads}, {"capacity", c.capacity}, {"stages", c.stages},
          {"split", c.split},     {"cluster", c.cluster},   {"coop", c.coop}};
}

SelectConfig select_config_from_json(const json& j) {
  SelectConfig c;
  c.threads = j.at("threads").get<int>();
  c.capacity = j.at("capacity").get<int>();
  c.stages = j.at("stages").get<int>();
  c.split = j.at("split").get<int>();
  c.cluster = j.value("cluster", 0);  // entries from before clusters were measured without them
  c.coop = j.value("coop", 0);        // and from before the cooperative path, without it
  return c;
}

bool select_config_sane(const SelectConfig& c) {
  return c.threads >= 32 && c.threads <= 1024 && c.threads % 32 == 0 && c.capacity >= 256 && c.capacity <= 4096 &&
         c.stages >= 2 && c.stages <= 8 && (c.split == 0 || c.split == 1) &&
         (c.cluster == 0 || (c.cluster >= 2 && c.cluster <= kMaxSelectCluster)) && (c.coop == 0 || c.coop == 1);
}

json indexer_config_to_json(const IndexerConfig& c) { return {{"stages", c.stages}, {"ctas_per_sm", c.ctas_per_sm}}; }

IndexerConfig indexer_config_from_json(const json& j) {
  return IndexerConfig{j.at("stages").get<int>(), j.at("ctas_per_sm").get<int>()};
}

json sparse_config_to_json(const SparseConfig& c) {
  return {{"head_tile", c.head_tile}, {"ctas_per_sm", c.ctas_per_sm}};
}

SparseConfig sparse_config_from_json(const json& j) {
  return SparseConfig{j.at("head_tile").get<int>(), j.at("ctas_per_sm").get<int>()};
}

json fidelity_config_to_json(const FidelityConfig& c) {
  return {{"select_threads", c.select_threads}, {"keys_per_cta", c.keys_per_cta}};
}

FidelityConfig fidelity_config_from_json(const json& j) {
  return FidelityConfig{j.at("select_threads").get<int>(), j.at("keys_per_cta").get<int>()};
}

json op_config_to_json(const TuningEntry& e) {
  if (e.shape.op == "select") return select_config_to_json(e.select_config);
  if (e.shape.op == "sparse") return sparse_config_to_json(e.sparse_config);
  if (e.shape.op == "fidelity") return fidelity_config_to_json(e.fidelity_config);
  if (e.shape.op == "indexer") return indexer_config_to_json(e.indexer_config);
  return config_to_json(e.config);
}

json entry_to_json(const TuningEntry& e) {
  return {{"device", {{"name", e.device.name}, {"sm", e.device.sm}, {"sm_count", e.device.sm_count}}},
          {"op", e.shape.op},
          {"dtype", dtype_name(e.shape.dtype)},
          {"head_dim", e.shape.head_dim},
          {"top_k", e.shape.top_k},
          {"group", e.shape.group},
          {"q_len", e.shape.q_len},
          {"select", e.shape.per_group ? "group" : "head"},
          {"page_size", e.shape.page_size},
          {"seq_bucket", e.seq_bucket},
          {"batch_bucket", e.batch_bucket},
          {"config", op_config_to_json(e)},
          {"time_us", e.time_us},
          {"default_time_us", e.default_time_us},
          {"version", e.version}};
}

// Throws (nlohmann's exceptions, std::invalid_argument) on anything malformed.
TuningEntry entry_from_json(const json& j) {
  TuningEntry e;
  const json& d = j.at("device");
  e.device = {d.at("name").get<std::string>(), d.at("sm").get<int>(), d.at("sm_count").get<int>()};
  e.shape.op = j.at("op").get<std::string>();
  const std::string dtype = j.at("dtype").get<std::string>();
  if (dtype == "bf16")
    e.shape.dtype = TKA_DTYPE_BF16;
  else if (dtype == "fp16")
    e.shape.dtype = TKA_DTYPE_FP16;
  else if (dtype == "fp32" && (e.shape.op == "select" || e.shape.op == "fidelity"))
    e.shape.dtype = TKA_DTYPE_FP32;
  else if (dtype == "fp8e4m3" && e.shape.op == "indexer")
    e.shape.dtype = TKA_DTYPE_FP8_E4M3;
  else
    throw std::invalid_argument("dtype '" + dtype + "'");
  e.shape.head_dim = j.at("head_dim").get<int>();
  e.shape.top_k = j.at("top_k").get<int>();
  e.shape.group = j.at("group").get<int>();
  e.shape.q_len = j.at("q_len").get<int>();
  const std::string select = j.at("select").get<std::string>();
  if (select != "head" && select != "group") throw std::invalid_argument("select '" + select + "'");
  e.shape.per_group = select == "group";
  e.shape.page_size = j.at("page_size").get<int>();
  e.seq_bucket = j.at("seq_bucket").get<int>();
  e.batch_bucket = j.at("batch_bucket").get<int>();
  if (e.shape.op == "select") {
    e.select_config = select_config_from_json(j.at("config"));
    if (!select_config_sane(e.select_config)) throw std::invalid_argument("config out of range");
  } else if (e.shape.op == "indexer") {
    e.indexer_config = indexer_config_from_json(j.at("config"));
    if (!indexer_config_sane(e.indexer_config)) throw std::invalid_argument("config out of range");
  } else if (e.shape.op == "sparse") {
    e.sparse_config = sparse_config_from_json(j.at("config"));
    if (!sparse_config_sane(e.sparse_config)) throw std::invalid_argument("config out of range");
  } else if (e.shape.op == "fidelity") {
    e.fidelity_config = fidelity_config_from_json(j.at("config"));
    if (!fidelity_config_sane(e.fidelity_config)) throw std::invalid_argument("config out of range");
  } else if (e.shape.op == "decode") {
    e.config = config_from_json(j.at("config"));
    if (!config_sane(e.config)) throw std::invalid_argument("config out of range");
  } else {
    throw std::invalid_argument("op '" + e.shape.op + "'");
  }
  e.time_us = j.at("time_us").get<double>();
  e.default_time_us = j.at("default_time_us").get<double>();
  e.version = j.at("version").get<std::string>();
  if (e.seq_bucket < 1 || e.batch_bucket < 1 || pow2_bucket(e.seq_bucket) != e.seq_bucket ||
      pow2_bucket(e.batch_bucket) != e.batch_bucket)
    throw std::invalid_argument("buckets must be powers of two");
  return e;
}

bool same_slot(const TuningEntry& a, const TuningEntry& b) {
  return a.device == b.device && a.shape == b.shape && a.seq_bucket == b.seq_bucket && a.batch_bucket == b.batch_bucket;
}

bool read_file(const std::string& path, std::string* text) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  *text = ss.str();
  return true;
}

// The raw entries of a file, or none if it is missing or not a database.
json raw_entries(const std::string& path) {
  std::string text;
  if (!read_file(path, &text)) return json::array();
  const json root = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!root.is_object() || !root.contains("entries") || !root["entries"].is_array()) return json::array();
  return root["entries"];
}

}  // namespace

bool TuningShape::operator==(const TuningShape& o) const {
  return op == o.op && dtype == o.dtype && head_dim == o.head_dim && top_k == o.top_k && group == o.group &&
         q_len == o.q_len && page_size == o.page_size && per_group == o.per_group;
}

int pow2_bucket(long long x) {
  long long b = 1;
  while (b < x && b < (1LL << 30)) b <<= 1;
  return static_cast<int>(b);
}

TuningShape tuning_shape_for(const DecodeOp& op) {
  const DecodeKernelSpec k = kernel_spec_for(op, DecodeConfig{});
  TuningShape s;
  s.op = "decode";
  s.dtype = k.dtype;
  s.head_dim = k.head_dim;
  s.top_k = op.max_k;
  s.group = k.group;
  s.q_len = k.q_len;
  s.page_size = k.page_size;
  s.per_group = k.per_group;
  return s;
}

TuningShape tuning_shape_for(const SelectOp& op) {
  TuningShape s;
  s.op = "select";
  s.dtype = op.desc.dtype;
  s.top_k = op.desc.top_k;
  s.group = 0;
  s.q_len = 0;
  return s;
}

TuningShape tuning_shape_for(const SparseOp& op) {
  const SparseKernelSpec k = sparse_kernel_spec(op, SparseConfig{});
  TuningShape s;
  s.op = "sparse";
  s.dtype = k.dtype;
  s.head_dim = k.head_dim;
  s.top_k = op.desc.index_width;
  s.group = k.group;
  s.q_len = k.q_len;
  s.page_size = k.page_size;
  s.per_group = k.per_group;
  return s;
}

TuningShape tuning_shape_for(const FidelityOp& op) {
  TuningShape s;
  s.op = "fidelity";
  s.dtype = op.desc.dtype;
  s.head_dim = op.desc.head_dim;
  s.top_k = op.desc.top_k;
  s.group = op.group;
  s.q_len = 1;
  return s;
}

// Indexer scores: key dtype, index heads (as group), d_I, q_len, page size; top_k is not a
// parameter of the scores kernel.
TuningShape tuning_shape_for(const IndexerOp& op) {
  TuningShape s;
  s.op = "indexer";
  s.dtype = op.desc.key_dtype;
  s.head_dim = op.desc.index_head_dim;
  s.top_k = 0;
  s.group = op.desc.num_index_heads;
  s.q_len = op.desc.q_len;
  s.page_size = op.desc.kv_layout == TKA_KV_PAGED ? op.desc.page_size : 0;
  return s;
}

TuningDb TuningDb::load(const std::string& path, std::vector<std::string>* warnings) {
  TuningDb db;
  std::string text;
  if (path.empty() || !read_file(path, &text)) return db;  // missing: empty, not an error
  const json root = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) {
    warnings->push_back(path + ": not a JSON object; tuning database ignored");
    return db;
  }
  if (!root.contains("format") || root["format"] != kFormat || !root.contains("entries") ||
      !root["entries"].is_array()) {
    warnings->push_back(path + ": not a format-" + std::to_string(kFormat) + " tuning database; ignored");
    return db;
  }
  int skipped_version = 0;
  const json& entries = root["entries"];
  for (size_t i = 0; i < entries.size(); ++i) {
    try {
      TuningEntry e = entry_from_json(entries[i]);
      if (e.version != library_version()) {
        ++skipped_version;
        continue;
      }
      db.upsert(e);
    } catch (const std::exception& ex) {
      warnings->push_back(path + ": entry " + std::to_string(i) + " skipped (" + ex.what() + ")");
    }
  }
  if (skipped_version)
    warnings->push_back(path + ": " + std::to_string(skipped_version) +
                        " entries of another library version skipped (re-run topkattn tune)");
  return db;
}

Status TuningDb::save(const std::string& path) const {
  if (path.empty()) return make_error(TKA_ERROR_INVALID_ARGUMENT, "tuning database: no path");
  // Serialize writers on a lock file beside the database (fcntl: other processes) and a mutex
  // (threads of this one, which fcntl locks do not separate), then merge with what is there now.
  static std::mutex process_mu;
  std::lock_guard<std::mutex> process_lock(process_mu);
  const std::string lock_path = path + ".lock";
  int lock_fd = -1;
  if (std::error_code ec = fs::openFileForReadWrite(lock_path, lock_fd, fs::CD_OpenAlways, fs::OF_None))
    return make_error(TKA_ERROR_INVALID_ARGUMENT, "tuning database {}: cannot create {}: {}", path, lock_path,
                      ec.message());
  const auto unlock = [&] {
    (void)fs::unlockFile(lock_fd);
    llvm::sys::Process::SafelyCloseFileDescriptor(lock_fd);
  };
  if (std::error_code ec = fs::lockFile(lock_fd)) {
    llvm::sys::Process::SafelyCloseFileDescriptor(lock_fd);
    return make_error(TKA_ERROR_INVALID_ARGUMENT, "tuning database {}: cannot lock: {}", path, ec.message());
  }
  json kept = json::array();
  for (const json& raw : raw_entries(path)) {
    bool replaced = false;
    try {
      const TuningEntry e = entry_from_json(raw);
      for (const TuningEntry& mine : entries_) replaced = replaced || same_slot(e, mine);
    } catch (const std::exception&) {
      continue;  // malformed entries are dropped on rewrite
    }
    if (!replaced) kept.push_back(raw);
  }
  for (const TuningEntry& e : entries_) kept.push_back(entry_to_json(e));
  const json root = {{"format", kFormat}, {"entries", kept}};
  const std::string tmp = path + ".tmp" + std::to_string(llvm::sys::Process::getProcessId());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << root.dump(1) << "\n";
    if (!out.flush()) {
      unlock();
      fs::remove(tmp);
      return make_error(TKA_ERROR_INVALID_ARGUMENT, "tuning database {}: cannot write {}", path, tmp);
    }
  }
  const std::error_code ec = fs::rename(tmp, path);
  unlock();
  if (ec) {
    fs::remove(tmp);
    return make_error(TKA_ERROR_INVALID_ARGUMENT, "tuning database {}: {}", path, ec.message());
  }
  return Status::ok();
}

void TuningDb::upsert(const TuningEntry& entry) {
  for (TuningEntry& e : entries_) {
    if (same_slot(e, entry)) {
      e = entry;
      return;
    }
  }
  entries_.push_back(entry);
}

std::optional<TuningEntry> TuningDb::lookup(const TuningDevice& device, const TuningShape& shape, long long seq_len,
                                            long long batch, bool* exact) const {
  const double want_n = std::log2(pow2_bucket(seq_len)), want_b = std::log2(pow2_bucket(batch));
  const TuningEntry* best = nullptr;
  double best_distance = 0;
  for (const TuningEntry& e : entries_) {
    if (!(e.device == device) || !(e.shape == shape)) continue;
    const double distance = std::abs(std::log2(e.seq_bucket) - want_n) + std::abs(std::log2(e.batch_bucket) - want_b);
    // Ties go to the larger work size: its config fills the GPU, the smaller one may not.
    const bool better = !best || distance < best_distance ||
                        (distance == best_distance &&
                         1.0 * e.seq_bucket * e.batch_bucket > 1.0 * best->seq_bucket * best->batch_bucket);
    if (better) best = &e, best_distance = distance;
  }
  if (exact) *exact = best && best_distance == 0;
  if (!best) return std::nullopt;
  return *best;
}

std::vector<TuningEntry> TuningDb::entries_for_sm(int sm) const {
  std::vector<TuningEntry> out;
  for (const TuningEntry& e : entries_)
    if (e.device.sm == sm) out.push_back(e);
  return out;
}

}  // namespace tka
