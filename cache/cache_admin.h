// Inspecting and maintaining a kernel cache folder from outside the library (`topkattn cache`).
// Every function takes the cache root (as resolve_root() gives it) and works on its versioned
// folder <root>/v<kCacheFormat>; a root that does not exist is an empty cache, not an error.
//
// Removal is safe while other processes use the cache: the library verifies every entry it
// loads, so a file removed under a reader is a miss and a rebuild. Lock files under .locks/ are
// only removed by clear().
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tka::cache {

// A temporary file older than this is left over from a crashed writer, not a store in progress.
inline constexpr std::chrono::minutes kStaleTemporaryAge{10};

struct EntryInfo {
  std::string path;           // relative to the versioned folder: nvrtc-13.0/sm_90/<name>-<hex16>.cubin
  uint64_t bytes = 0;         // the .cubin file
  uint64_t source_bytes = 0;  // the .cu beside it; 0 when there is none
  int64_t mtime = 0;          // seconds since the epoch
  int64_t last_used = 0;      // max(atime, mtime): what prune orders by
  std::string spec;           // from the header; "" when the header is unreadable
  std::string arch;           // "sm_90" from the folder name; "" when not in an sm_* folder
  bool ok = false;
  std::string problem;  // why the entry is unusable, when !ok
};

struct OtherFile {
  std::string path;  // relative to the versioned folder
  uint64_t bytes = 0;
  int64_t mtime = 0;
};

struct Listing {
  std::string dir;                        // <root>/v<kCacheFormat>, absolute
  std::vector<EntryInfo> entries;         // sorted by path
  std::vector<OtherFile> temporary;       // unfinished stores (*.tmp-XXXXXX, .probe-XXXXXX)
  std::vector<OtherFile> orphan_sources;  // .cu files with no .cubin beside them
  std::vector<std::string> errors;        // folders or files that could not be read
};

// Every entry, each read and verified (magic, format, payload size and checksum, and the key hash
// in the header against the one in the file name).
Listing list_entries(const std::string& root);

struct CacheSummary {
  std::string dir;
  size_t entries = 0;
  uint64_t bytes = 0;                     // entries and their sources, what prune's size limit counts
  std::map<std::string, size_t> by_arch;  // "unknown" for entries outside an sm_* folder
  size_t bad = 0;
  size_t temporary = 0;
};

CacheSummary summarize(const Listing& listing);

struct VerifyResult {
  std::string dir;
  size_t checked = 0;
  size_t ok = 0;
  std::vector<std::string> removed;  // bad entries, their sources, stale temporaries, orphan sources
  std::vector<std::string> errors;   // files that should have gone but could not be removed
};

// Checks every entry; with `remove`, deletes the bad ones (with their .cu), temporary files and
// orphan sources older than kStaleTemporaryAge.
VerifyResult verify_entries(const std::string& root, bool remove);

struct PrunePolicy {
  std::optional<uint64_t> max_bytes;            // keep entries + sources at most this large
  std::optional<std::chrono::seconds> max_age;  // remove entries unused for longer
};

struct PruneResult {
  std::string dir;
  std::vector<std::string> removed;  // .cubin paths; the .cu beside each went with it
  uint64_t freed_bytes = 0;
  uint64_t remaining_bytes = 0;
  std::vector<std::string> errors;
};

// Removes entries past max_age, then the least recently used until under max_bytes.
PruneResult prune(const std::string& root, const PrunePolicy& policy);

struct ClearResult {
  std::string dir;
  size_t removed = 0;        // entries (.cubin files)
  uint64_t freed_bytes = 0;  // every file removed: entries, sources, temporaries, locks
  std::vector<std::string> errors;
};

// Empties the versioned folder, .locks/ included; the root and the versioned folder stay.
ClearResult clear(const std::string& root);

// "123", "500K", "500M", "2G", "1T" (powers of 1024; a trailing "B" or "iB" is accepted, and a
// fraction such as "1.5G"). False for anything else.
bool parse_size(std::string_view text, uint64_t* bytes);

// A non-negative number of days, fractions allowed ("30", "0.5"). False for anything else.
bool parse_days(std::string_view text, std::chrono::seconds* age);

}  // namespace tka::cache
