// The on-disk CUBIN cache. Content-addressed: the caller hashes everything that
// determines the binary into a CacheKey; this layer only stores, verifies and finds bytes.
//
// Layout:  <root>/v<kCacheFormat>/<subdir>/<name>-<hex16>.cubin   (+ .cu with the source)
// Entry file: header (magic, format, full key hash, payload size, payload xxHash64, spec text)
// followed by the payload. Any mismatch is a miss: the file is removed and rebuilt, never loaded.
#pragma once

#include <llvm/Support/FileSystem/UniqueID.h>
#include <llvm/Support/MemoryBuffer.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace tka::cache {

inline constexpr int kCacheFormat = 2;  // 2: xxHash64 payload checksum (1: SHA-256)

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

// The parts of an entry file. The views point into the bytes given to parse_entry().
struct EntryView {
  Digest key{};
  std::string_view spec_text;
  std::string_view payload;
};

// Checks an entry file's bytes: magic, format version, header lengths, payload size and checksum.
// Returns nullptr and fills `entry` for a sound file, else why it is unusable. The key is left to
// the caller: load() compares the whole hash, the cache tools the file name's hash prefix.
const char* parse_entry(std::string_view bytes, EntryView* entry);

// A file read whole, with the identity of the inode that was read.
struct EntryFile {
  std::unique_ptr<llvm::MemoryBuffer> buffer;
  llvm::sys::fs::UniqueID id;
};

// nullopt when absent or unreadable. `keep_atime` reads without updating the access time where
// the system allows it, so that inspecting the cache does not count as using its entries.
std::optional<EntryFile> read_entry_file(const std::string& path, bool keep_atime = false);

// Removes `path` only if it is still the inode `id`: another process may have renamed a good
// entry into place since the bad one was read. True when it removed the file.
bool remove_if_unchanged(const std::string& path, const llvm::sys::fs::UniqueID& id);

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

  // The compile-once path: load; on a miss take a per-entry lock (within the process a mutex per
  // entry, across processes an fcntl lock on the entry's lock file under
  // <root>/v<kCacheFormat>/.locks/, waited for up to kLockWaitSeconds and released by the kernel if
  // its holder dies), load again, else build() and store. If the lock cannot be taken, build
  // anyway. `*from_disk` says whether the payload came from the disk.
  Status get_or_build(const CacheKey& key,
                      const std::function<Status(std::string* payload, std::string* source)>& build,
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
