#include "common/settings.h"

#include <llvm/ADT/STLExtras.h>
#include <llvm/ADT/SmallVector.h>
#include <llvm/ADT/StringExtras.h>
#include <llvm/ADT/StringRef.h>

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

bool is_identifier(llvm::StringRef s) {
  return !s.empty() && !llvm::isDigit(s.front()) &&
         llvm::all_of(s, [](char c) { return llvm::isAlnum(c) || c == '_'; });
}

}  // namespace

std::vector<std::string> parse_kernel_defines(const std::string& v) {
  llvm::SmallVector<llvm::StringRef, 4> names;
  llvm::StringRef(v).split(names, ',');
  std::vector<std::string> out;
  for (llvm::StringRef name : names)
    if (is_identifier(name)) out.push_back(name.str());
  return out;
}

const Settings& settings() {
  static const Settings s = [] {
    Settings r;
    r.log_level = parse_level(env("TOPKATTN_LOG_LEVEL"), 2);
    const std::string offline = env("TOPKATTN_OFFLINE");
    r.offline = !offline.empty() && offline != "0";
    r.dump_dir = env("TOPKATTN_DUMP_DIR");
    r.tuning_db = env("TOPKATTN_TUNING_DB");
    const std::string tune = env("TOPKATTN_TUNE");
    r.tune = !tune.empty() && tune != "0";
    r.overlap_launches = env("TOPKATTN_PDL") != "0";
    r.kernel_defines = parse_kernel_defines(env("TOPKATTN_KERNEL_DEFINES"));
    return r;
  }();
  return s;
}

bool kernel_define(const std::string& macro) { return llvm::is_contained(settings().kernel_defines, macro); }

std::atomic<int>& log_level_ref() {
  static std::atomic<int> level{settings().log_level};
  return level;
}

}  // namespace tka
