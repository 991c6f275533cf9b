// Environment variables, read once at first use into one struct (documented in the README).
#pragma once
#include <string>

namespace tka {

struct Settings {
  std::string cache_dir;  // TOPKATTN_CACHE_DIR (resolved by cache/)
  int log_level = 2;      // TOPKATTN_LOG_LEVEL: 0..4 or off|error|warn|info|debug
  bool offline = false;   // TOPKATTN_OFFLINE=1: never compile; a cache miss is an error
  std::string dump_dir;   // TOPKATTN_DUMP_DIR: write each compiled source and its PTX there
  std::string tuning_db;  // TOPKATTN_TUNING_DB: the tuning database file plans read
  bool tune = false;      // TOPKATTN_TUNE=1: tune at plan creation when the database has no entry
};

const Settings& settings();

}  // namespace tka

namespace tka {
inline int settings_log_level() { return settings().log_level; }
}  // namespace tka
