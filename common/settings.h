// Environment variables, read once at first use into one struct (documented in the README). The
// cache folder's (TOPKATTN_CACHE_DIR, XDG_CACHE_HOME, HOME) are read by cache::resolve_root each
// time a cache is opened instead, so that a process can point runtimes at different folders.
#pragma once
#include <string>
#include <vector>

namespace tka {

struct Settings {
  int log_level = 2;      // TOPKATTN_LOG_LEVEL: 0..4 or off|error|warn|info|debug
  bool offline = false;   // TOPKATTN_OFFLINE=1: never compile; a cache miss is an error
  std::string dump_dir;   // TOPKATTN_DUMP_DIR: write each compiled source and its PTX there
  std::string tuning_db;  // TOPKATTN_TUNING_DB: the tuning database file plans read
  bool tune = false;      // TOPKATTN_TUNE=1: tune at plan creation when the database has no entry
  // TOPKATTN_PDL=0: launch each kernel only after the previous one on the stream has finished
  // (default on sm_90+: programmatic dependent launch, runtime/launch.h).
  bool overlap_launches = true;
  // TOPKATTN_KERNEL_DEFINES=NAME[,NAME...]: macros defined for every kernel compile (diagnostics
  // such as TKA_PHASE_CLOCKS); part of the cache key. Names that are not identifiers are dropped.
  std::vector<std::string> kernel_defines;
};

const Settings& settings();

// Whether TOPKATTN_KERNEL_DEFINES names `macro` (a kernel change kept behind a macro until timed,
// whose launches differ: bench/NOTES.md).
bool kernel_define(const std::string& macro);

// TOPKATTN_KERNEL_DEFINES's value as macro names: comma-separated, non-identifiers dropped.
std::vector<std::string> parse_kernel_defines(const std::string& value);

}  // namespace tka

namespace tka {
inline int settings_log_level() { return settings().log_level; }
}  // namespace tka
