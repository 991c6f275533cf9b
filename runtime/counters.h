// Process-wide counters of the compile and cache path, readable through tka_get_counters.
#pragma once
#include <atomic>
#include <cstdint>

namespace tka {

struct Counters {
  std::atomic<uint64_t> nvrtc_compiles{0};
  std::atomic<uint64_t> disk_hits{0};
  std::atomic<uint64_t> memory_hits{0};
  std::atomic<uint64_t> corrupt_entries{0};
  std::atomic<uint64_t> compile_us{0};
  std::atomic<uint64_t> tuned_plans{0};
  std::atomic<uint64_t> default_plans{0};
  std::atomic<uint64_t> online_tunings{0};
};

Counters& counters();

}  // namespace tka
