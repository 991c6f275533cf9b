#include "common/settings.h"

#include <algorithm>
#include <cctype>
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

bool is_identifier(const std::string& s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  return true;
}

}  // namespace

std::vector<std::string> parse_kernel_defines(const std::string& v) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= v.size()) {
    const size_t end = std::min(v.find(',', start), v.size());
    const std::string name = v.substr(start, end - start);
    if (is_identifier(name)) out.push_back(name);
    start = end + 1;
  }
  return out;
}

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
    r.kernel_defines = parse_kernel_defines(env("TOPKATTN_KERNEL_DEFINES"));
    return r;
  }();
  return s;
}

std::atomic<int>& log_level_ref() {
  static std::atomic<int> level{settings().log_level};
  return level;
}

}  // namespace tka
