// `topkattn cache ls | stat | verify | prune | clear`: inspect and maintain the kernel cache.
// The work is in cache/cache_admin.h; this file parses the flags and prints.
#include <fmt/format.h>
#include <llvm/Support/CommandLine.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cache/cache_admin.h"
#include "cache/disk_cache.h"
#include "tools/commands.h"

namespace tka::tools {

static llvm::cl::SubCommand kCache("cache", "Inspect and maintain the kernel cache (ls, stat, verify, prune, clear)");

namespace {

using llvm::cl::cat;
using llvm::cl::desc;
using llvm::cl::sub;

// Shown by `topkattn cache --help`, and only there (llvm::cl skips categories without options).
llvm::cl::OptionCategory kCacheOptions("Cache options", R"(Actions:
  ls      one line per entry: path, bytes, modification time, ok or BAD (why), spec text
  stat    folder, number of entries, bytes (entries and their sources), entries per arch,
          bad entries, temporary files
  verify  check every entry (magic, format, payload size and checksum, key hash against the file
          name) and remove the bad ones, their sources, and temporary or orphan source files
          older than 10 minutes
  prune   remove entries unused for longer than --max-age, then the least recently used
          (by access or modification time) until entries and sources fit in --max-size
  clear   remove everything under the versioned folder, lock files included

Removing is safe while other processes use the cache: they verify what they load, so a removed
entry is rebuilt. A missing cache folder is an empty cache.

Exit codes: 0 done (verify also returns 0 after removing bad files; its output lists them),
1 some file could not be read or removed, 2 bad arguments.)");

llvm::cl::list<std::string> opt_action(llvm::cl::Positional, desc("<ls|stat|verify|prune|clear>"), sub(kCache),
                                       cat(kCacheOptions));
llvm::cl::opt<bool> opt_json("json", desc("Print one JSON object"), sub(kCache), cat(kCacheOptions));
llvm::cl::opt<std::string> opt_cache_dir(
    "cache-dir", desc("Cache directory (default: TOPKATTN_CACHE_DIR, XDG_CACHE_HOME/topkattn, ~/.cache/topkattn)"),
    sub(kCache), cat(kCacheOptions));
llvm::cl::opt<std::string> opt_max_size(
    "max-size", desc("prune: keep at most this many bytes (K, M, G, T: powers of 1024; e.g. 500M, 2G)"),
    llvm::cl::value_desc("size"), sub(kCache), cat(kCacheOptions));
llvm::cl::opt<std::string> opt_max_age("max-age",
                                       desc("prune: remove entries unused for more than this many days (e.g. 30, 0.5)"),
                                       llvm::cl::value_desc("days"), sub(kCache), cat(kCacheOptions));
// Collects unknown flags, so that they are reported with exit code 2 like other bad arguments.
llvm::cl::list<std::string> opt_unknown(llvm::cl::Sink, sub(kCache));

constexpr int kUsageError = 2;

int usage_error(const std::string& message) {
  std::fprintf(stderr, "topkattn cache: %s\n", message.c_str());
  return kUsageError;
}

std::string human_bytes(uint64_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 4) {
    value /= 1024;
    ++unit;
  }
  return unit == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.1f} {}", value, kUnits[unit]);
}

std::string local_time(int64_t seconds) {
  std::time_t time = static_cast<std::time_t>(seconds);
  std::tm parts{};
  char text[32] = "?";
  if (::localtime_r(&time, &parts)) std::strftime(text, sizeof(text), "%Y-%m-%d %H:%M", &parts);
  return text;
}

// Problems that did not stop the command; they make its exit code 1.
int report_errors(const std::vector<std::string>& errors) {
  for (const std::string& error : errors) std::fprintf(stderr, "topkattn cache: %s\n", error.c_str());
  return errors.empty() ? 0 : 1;
}

void print_json(const nlohmann::json& object) { std::printf("%s\n", object.dump().c_str()); }

int run_ls(const std::string& root) {
  const cache::Listing listing = cache::list_entries(root);
  if (opt_json) {
    nlohmann::json entries = nlohmann::json::array();
    for (const cache::EntryInfo& e : listing.entries) {
      nlohmann::json entry = {{"path", e.path},   {"bytes", e.bytes}, {"source_bytes", e.source_bytes},
                              {"mtime", e.mtime}, {"spec", e.spec},   {"arch", e.arch},
                              {"ok", e.ok}};
      if (!e.ok) entry["problem"] = e.problem;
      entries.push_back(std::move(entry));
    }
    print_json({{"dir", listing.dir}, {"entries", std::move(entries)}});
  } else {
    for (const cache::EntryInfo& e : listing.entries) {
      const std::string state = e.ok ? "ok" : "BAD (" + e.problem + ")";
      std::printf("%s  %llu  %s  %s  %s\n", e.path.c_str(), static_cast<unsigned long long>(e.bytes),
                  local_time(e.mtime).c_str(), state.c_str(), e.spec.c_str());
    }
  }
  return report_errors(listing.errors);
}

int run_stat(const std::string& root) {
  const cache::Listing listing = cache::list_entries(root);
  const cache::CacheSummary s = cache::summarize(listing);
  if (opt_json) {
    print_json({{"dir", s.dir},
                {"entries", s.entries},
                {"bytes", s.bytes},
                {"by_arch", s.by_arch},
                {"bad", s.bad},
                {"temporary", s.temporary}});
  } else {
    std::string archs;
    for (const auto& [arch, count] : s.by_arch) archs += fmt::format("{}{} {}", archs.empty() ? "" : ", ", arch, count);
    std::printf("dir        %s\nentries    %zu (%zu bad)\nbytes      %s (%llu)\nby arch    %s\ntemporary  %zu\n",
                s.dir.c_str(), s.entries, s.bad, human_bytes(s.bytes).c_str(), static_cast<unsigned long long>(s.bytes),
                archs.empty() ? "-" : archs.c_str(), s.temporary);
  }
  return report_errors(listing.errors);
}

int run_verify(const std::string& root) {
  const cache::VerifyResult r = cache::verify_entries(root, /*remove=*/true);
  if (opt_json) {
    print_json({{"dir", r.dir}, {"checked", r.checked}, {"ok", r.ok}, {"removed", r.removed}});
  } else {
    for (const std::string& path : r.removed) std::printf("removed %s\n", path.c_str());
    std::printf("verified %zu entries in %s: %zu ok, %zu bad; %zu files removed\n", r.checked, r.dir.c_str(), r.ok,
                r.checked - r.ok, r.removed.size());
  }
  return report_errors(r.errors);
}

int run_prune(const std::string& root, const cache::PrunePolicy& policy) {
  const cache::PruneResult r = cache::prune(root, policy);
  if (opt_json) {
    print_json({{"dir", r.dir},
                {"removed", r.removed},
                {"freed_bytes", r.freed_bytes},
                {"remaining_bytes", r.remaining_bytes}});
  } else {
    for (const std::string& path : r.removed) std::printf("removed %s\n", path.c_str());
    std::printf("pruned %zu entries from %s: %s freed, %s remaining\n", r.removed.size(), r.dir.c_str(),
                human_bytes(r.freed_bytes).c_str(), human_bytes(r.remaining_bytes).c_str());
  }
  return report_errors(r.errors);
}

int run_clear(const std::string& root) {
  const cache::ClearResult r = cache::clear(root);
  if (opt_json) {
    print_json({{"dir", r.dir}, {"removed", r.removed}, {"freed_bytes", r.freed_bytes}});
  } else {
    std::printf("cleared %s: %zu entries, %s freed\n", r.dir.c_str(), r.removed, human_bytes(r.freed_bytes).c_str());
  }
  return report_errors(r.errors);
}

}  // namespace

bool cache_command_selected() { return static_cast<bool>(kCache); }

int run_cache_command() {
  if (!opt_unknown.empty()) return usage_error("unknown option '" + opt_unknown.front() + "'");
  if (opt_action.empty()) return usage_error("missing action: ls, stat, verify, prune or clear");
  if (opt_action.size() > 1) return usage_error("unexpected argument '" + opt_action[1] + "'");
  const std::string& action = opt_action.front();
  if (action != "ls" && action != "stat" && action != "verify" && action != "prune" && action != "clear") {
    return usage_error("unknown action '" + action + "' (ls, stat, verify, prune, clear)");
  }
  cache::PrunePolicy policy;
  const bool limits = opt_max_size.getNumOccurrences() > 0 || opt_max_age.getNumOccurrences() > 0;
  if (action != "prune" && limits) return usage_error("--max-size and --max-age apply to prune only");
  if (opt_max_size.getNumOccurrences() > 0) {
    uint64_t bytes = 0;
    if (!cache::parse_size(opt_max_size, &bytes)) {
      return usage_error("--max-size: '" + opt_max_size + "' is not a size (e.g. 1048576, 500M, 2G)");
    }
    policy.max_bytes = bytes;
  }
  if (opt_max_age.getNumOccurrences() > 0) {
    std::chrono::seconds age{};
    if (!cache::parse_days(opt_max_age, &age)) {
      return usage_error("--max-age: '" + opt_max_age + "' is not a number of days (e.g. 30, 0.5)");
    }
    policy.max_age = age;
  }
  if (action == "prune" && !limits) return usage_error("prune needs --max-size and/or --max-age");
  const std::string root = cache::resolve_root(opt_cache_dir);
  if (root.empty()) return usage_error("no cache directory: pass --cache-dir or set TOPKATTN_CACHE_DIR or HOME");
  if (action == "ls") return run_ls(root);
  if (action == "stat") return run_stat(root);
  if (action == "verify") return run_verify(root);
  if (action == "prune") return run_prune(root, policy);
  return run_clear(root);
}

}  // namespace tka::tools
