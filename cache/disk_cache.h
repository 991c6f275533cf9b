// The on-disk CUBIN cache (design section 4). Content-addressed: the caller hashes everything that
// determines the binary into a CacheKey; this layer only stores, verifies and finds bytes.
//
// Layout:  <root>/v<kCacheFormat>/<subdir>/<name>-<hex16>.cubin   (+ .cu with the source)
// Entry file: header (magic, format, full key hash, payload size, payload sha256, spec text)
// followed by the payload. Any mismatch is a miss: the file is removed and rebuilt, never loaded.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

#include "common/status.h"

namespace tka::cache {

inline constexpr int kCacheFormat = 1;

using Digest = std::array<uint8_t, 32>;

// SHA-256 over the parts in order, each length-prefixed (so "ab"+"c" != "a"+"bc").
Digest hash_parts(std::initializer_list<std::string_view> parts);
std::string to_hex(const Digest& digest);

struct CacheKey {
  std::string subdir;     // readable, e.g. "nvrtc-13.0/sm_90"; no absolute paths
  std::string name;       // readable, e.g. "decode_bf16_d128_g4_q1"; [A-Za-z0-9_.-]
  Digest hash{};          // the content key
  std::string spec_text;  // written into the header for people and `cache ls`
};

// $TOPKATTN_CACHE_DIR, else $XDG_CACHE_HOME/topkattn, else $HOME/.cache/topkattn;
// `override_dir` (non-empty) wins over all of them.
std::string resolve_root(const std::string& override_dir);

struct CacheStats {
  uint64_t disk_hits = 0;
  uint64_t stores = 0;
  uint64_t corrupt = 0;  // bad files found and removed
};

class DiskCache {
 public:
  // Creates <root>/v<kCacheFormat>. When that fails (read-only, not a directory...) the cache is
  // memory-only: lookups miss, stores are skipped, and warning() says why.
  explicit DiskCache(const std::string& root);

  bool writable() const { return writable_; }
  const std::string& dir() const { return dir_; }  // the versioned root, "" when memory-only
  const std::string& warning() const { return warning_; }

  // "" when memory-only or when the key's subdir/name could leave the cache folder.
  std::string entry_path(const CacheKey& key) const;

  // A verified payload, or nullopt (absent or corrupt; a corrupt file is removed).
  std::optional<std::string> load(const CacheKey& key);

  // Atomic: write to a unique temporary file in the same folder, fsync, rename. `source` (may be
  // empty) is written beside it as .cu for people to read. Failures are reported, not fatal.
  Status store(const CacheKey& key, const std::string& payload, const std::string& source);

  // The compile-once path: load; on a miss take a per-entry cross-process lock
  // (llvm::LockFileManager), load again, else build() and store. If the lock cannot be taken, build
  // anyway. `*from_disk` says whether the payload came from the disk.
  Status get_or_build(const CacheKey& key, const std::function<Status(std::string* payload,
                                                                      std::string* source)>& build,
                      std::string* payload, bool* from_disk);

  CacheStats stats() const;

 private:
  std::string dir_;
  std::string warning_;
  bool writable_ = false;
  mutable std::mutex mu_;
  CacheStats stats_;
};

}  // namespace tka::cache
