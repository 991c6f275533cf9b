#include "common/settings.h"

#include <cstdlib>
#include <string_view>

#include "common/log.h"

namespace tka {
namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

int parse_level(const std::string& v, int fallback) {
  static const char* const kNames[] = {"off", "error", "warn", "info", "debug"};
  for (int i = 0; i < 5; ++i)
    if (v == kNames[i] || v == std::to_string(i)) return i;
  return fallback;
}

}  // namespace

const Settings& settings() {
  static const Settings s = [] {
    Settings r;
    r.cache_dir = env("TOPKATTN_CACHE_DIR");
    r.log_level = parse_level(env("TOPKATTN_LOG_LEVEL"), 2);
    const std::string offline = env("TOPKATTN_OFFLINE");
    r.offline = !offline.empty() && offline != "0";
    r.dump_dir = env("TOPKATTN_DUMP_DIR");
    r.tuning_db = env("TOPKATTN_TUNING_DB");
    const std::string tune = env("TOPKATTN_TUNE");
    r.tune = !tune.empty() && tune != "0";
    return r;
  }();
  return s;
}

std::atomic<int>& log_level_ref() {
  static std::atomic<int> level{settings().log_level};
  return level;
}

}  // namespace tka
