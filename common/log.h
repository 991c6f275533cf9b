// Library logging: off unless the runtime's log level asks; one line per event, to stderr.
#pragma once

#include <fmt/format.h>

#include <atomic>
#include <cstdio>

#include "topkattn/topkattn.h"

namespace tka {

std::atomic<int>& log_level_ref();
inline bool log_enabled(tka_log_level level) { return level <= log_level_ref().load(); }

template <typename... Args>
void log(tka_log_level level, fmt::format_string<Args...> format, Args&&... args) {
  if (!log_enabled(level)) return;
  static const char* const kNames[] = {"off", "error", "warn", "info", "debug"};
  std::string line = fmt::format(format, std::forward<Args>(args)...);
  std::fprintf(stderr, "[topkattn %s] %s\n", kNames[level], line.c_str());
}

}  // namespace tka
