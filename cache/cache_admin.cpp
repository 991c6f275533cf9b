#include "cache/cache_admin.h"

#include <fmt/format.h>
#include <llvm/ADT/SmallString.h>
#include <llvm/ADT/StringExtras.h>
#include <llvm/ADT/StringRef.h>
#include <llvm/Support/Chrono.h>
#include <llvm/Support/FileSystem.h>
#include <llvm/Support/Path.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <system_error>
#include <tuple>
#include <utility>

#include "cache/disk_cache.h"

namespace tka::cache {
namespace {

namespace fs = llvm::sys::fs;
namespace path = llvm::sys::path;

constexpr llvm::StringLiteral kLockFolder(".locks");

// An entry or other file as found by scan(), with what it takes to remove exactly that file.
template <typename Info>
struct Found {
  Info info;
  fs::UniqueID id;
};

struct Scan {
  std::string dir;
  std::vector<Found<EntryInfo>> entries;
  std::vector<Found<OtherFile>> temporary;
  std::vector<Found<OtherFile>> orphan_sources;
  std::vector<std::string> errors;
};

std::string versioned_dir(const std::string& root) {
  if (root.empty()) return "";  // make_absolute("") would name the working directory
  llvm::SmallString<256> dir(root);
  fs::make_absolute(dir);
  path::append(dir, "v" + std::to_string(kCacheFormat));
  return std::string(dir);
}

std::string absolute(const std::string& dir, const std::string& relative) { return dir + "/" + relative; }

// Writers name their temporaries <stem>.tmp-XXXXXX; DiskCache probes with .probe-XXXXXX.
bool is_temporary(llvm::StringRef name) {
  return path::extension(name).startswith(".tmp-") || name.startswith(".probe-");
}

// The 16 hex digits after the last '-' of "<name>-<hex16>.cubin", or "" when not of that form.
llvm::StringRef name_hash(llvm::StringRef file_name) {
  llvm::StringRef stem = path::stem(file_name);
  size_t dash = stem.rfind('-');
  if (dash == llvm::StringRef::npos) return "";
  llvm::StringRef hex = stem.substr(dash + 1);
  auto lower_hex = [](char c) { return llvm::isDigit(c) || (c >= 'a' && c <= 'f'); };
  return hex.size() == 16 && llvm::all_of(hex, lower_hex) ? hex : "";
}

std::string arch_of(llvm::StringRef relative) {
  llvm::StringRef folder = path::filename(path::parent_path(relative));
  return folder.startswith("sm_") ? folder.str() : "";
}

// Reads and checks one entry; false when it vanished (another process removed it meanwhile).
bool check_entry_file(const std::string& file, EntryInfo* info, fs::UniqueID* id) {
  std::optional<EntryFile> read = read_entry_file(file, /*keep_atime=*/true);
  if (!read) {
    if (!fs::exists(file)) return false;
    info->problem = "cannot be read";
    return true;
  }
  *id = read->id;
  // The folder listing and the read may have seen different files: report what was read.
  info->bytes = read->buffer->getBufferSize();
  llvm::StringRef expected = name_hash(path::filename(file));
  EntryView entry;
  if (const char* why = parse_entry(read->buffer->getBuffer(), &entry)) {
    info->problem = why;
  } else if (expected.empty()) {
    info->problem = "file name has no key hash";
  } else if (to_hex(entry.key).substr(0, 16) != expected) {
    info->problem = "written for another key";
  } else {
    info->ok = true;
  }
  if (info->ok || !entry.spec_text.empty()) info->spec = std::string(entry.spec_text);
  return true;
}

// Walks the versioned folder (not .locks/, not through symlinks). With `read`, every entry is
// read and verified; without, only names, sizes and times are looked at.
Scan scan(const std::string& root, bool read) {
  Scan out;
  out.dir = versioned_dir(root);
  if (out.dir.empty()) {
    out.errors.push_back("no cache directory (set TOPKATTN_CACHE_DIR or HOME)");
    return out;
  }
  std::map<std::string, Found<OtherFile>> sources;  // by the .cubin path they belong to
  std::error_code error;
  fs::recursive_directory_iterator it(out.dir, error, /*follow_symlinks=*/false), end;
  // A missing folder is an empty cache.
  if (error == std::errc::no_such_file_or_directory) return out;
  for (; it != end && !error; it.increment(error)) {
    llvm::StringRef name = path::filename(it->path());
    fs::file_status status;
    if (fs::status(it->path(), status, /*Follow=*/false)) continue;  // removed meanwhile
    if (status.type() == fs::file_type::directory_file) {
      if (name == kLockFolder && it.level() == 0) it.no_push();
      continue;
    }
    if (status.type() != fs::file_type::regular_file) continue;
    std::string relative = it->path().substr(out.dir.size() + 1);
    int64_t mtime = llvm::sys::toTimeT(status.getLastModificationTime());
    fs::UniqueID id = status.getUniqueID();
    OtherFile file{relative, status.getSize(), mtime};
    if (is_temporary(name)) {
      out.temporary.push_back({file, id});
    } else if (path::extension(name) == ".cu") {
      llvm::SmallString<256> entry(relative);
      path::replace_extension(entry, "cubin");
      sources.emplace(std::string(entry), Found<OtherFile>{file, id});
    } else if (path::extension(name) == ".cubin") {
      EntryInfo info;
      info.path = relative;
      info.bytes = status.getSize();
      info.mtime = mtime;
      info.last_used = std::max(mtime, llvm::sys::toTimeT(status.getLastAccessedTime()));
      info.arch = arch_of(relative);
      if (read && !check_entry_file(it->path(), &info, &id)) continue;
      out.entries.push_back({std::move(info), id});
    }
    // Anything else is not ours to judge and is left alone.
  }
  if (error) out.errors.push_back(fmt::format("cannot list {}: {}", out.dir, error.message()));
  for (Found<EntryInfo>& entry : out.entries) {
    auto source = sources.find(entry.info.path);
    if (source == sources.end()) continue;
    entry.info.source_bytes = source->second.info.bytes;
    sources.erase(source);
  }
  for (auto& [entry, source] : sources) out.orphan_sources.push_back(std::move(source));
  auto by_path = [](const auto& a, const auto& b) { return a.info.path < b.info.path; };
  std::sort(out.entries.begin(), out.entries.end(), by_path);
  std::sort(out.temporary.begin(), out.temporary.end(), by_path);
  std::sort(out.orphan_sources.begin(), out.orphan_sources.end(), by_path);
  return out;
}

std::string source_of(const std::string& entry) {
  llvm::SmallString<256> source(entry);
  path::replace_extension(source, "cu");
  return std::string(source);
}

enum class Removal { kRemoved, kReplaced, kFailed };

// Removes `file` if it is still the one that was examined. A file replaced meanwhile was
// published by a writer after our look and is kept.
Removal remove_examined(const std::string& file, const fs::UniqueID& id) {
  if (remove_if_unchanged(file, id)) return Removal::kRemoved;
  fs::UniqueID now;
  if (std::error_code error = fs::getUniqueID(file, now)) {
    return error == std::errc::no_such_file_or_directory ? Removal::kRemoved : Removal::kFailed;
  }
  return now == id ? Removal::kFailed : Removal::kReplaced;
}

std::string cannot_remove(const std::string& relative) { return fmt::format("cannot remove {}", relative); }

}  // namespace

Listing list_entries(const std::string& root) {
  Scan found = scan(root, /*read=*/true);
  Listing out;
  out.dir = found.dir;
  out.errors = std::move(found.errors);
  for (auto& entry : found.entries) out.entries.push_back(std::move(entry.info));
  for (auto& file : found.temporary) out.temporary.push_back(std::move(file.info));
  for (auto& file : found.orphan_sources) out.orphan_sources.push_back(std::move(file.info));
  return out;
}

CacheSummary summarize(const Listing& listing) {
  CacheSummary out;
  out.dir = listing.dir;
  out.entries = listing.entries.size();
  out.temporary = listing.temporary.size();
  for (const EntryInfo& entry : listing.entries) {
    out.bytes += entry.bytes + entry.source_bytes;
    ++out.by_arch[entry.arch.empty() ? "unknown" : entry.arch];
    if (!entry.ok) ++out.bad;
  }
  return out;
}

VerifyResult verify_entries(const std::string& root, bool remove) {
  Scan found = scan(root, /*read=*/true);
  VerifyResult out;
  out.dir = found.dir;
  out.errors = std::move(found.errors);
  out.checked = found.entries.size();
  for (const Found<EntryInfo>& entry : found.entries) {
    if (entry.info.ok) {
      ++out.ok;
      continue;
    }
    if (!remove) continue;
    const std::string file = absolute(found.dir, entry.info.path);
    Removal removal = remove_examined(file, entry.id);
    if (removal == Removal::kFailed) out.errors.push_back(cannot_remove(entry.info.path));
    if (removal != Removal::kRemoved) continue;
    out.removed.push_back(entry.info.path);
    // The source of a bad entry is of no use; a rebuild writes it again.
    if (entry.info.source_bytes > 0 && !fs::remove(source_of(file))) {
      out.removed.push_back(source_of(entry.info.path));
    }
  }
  if (!remove) return out;
  const int64_t stale_before =
      llvm::sys::toTimeT(std::chrono::system_clock::now()) - std::chrono::seconds(kStaleTemporaryAge).count();
  // A writer publishes the .cubin a moment after its .cu, so an old lone .cu is left over.
  for (const auto* files : {&found.temporary, &found.orphan_sources}) {
    for (const Found<OtherFile>& file : *files) {
      if (file.info.mtime >= stale_before) continue;
      Removal removal = remove_examined(absolute(found.dir, file.info.path), file.id);
      if (removal == Removal::kRemoved) out.removed.push_back(file.info.path);
      if (removal == Removal::kFailed) out.errors.push_back(cannot_remove(file.info.path));
    }
  }
  return out;
}

PruneResult prune(const std::string& root, const PrunePolicy& policy) {
  Scan found = scan(root, /*read=*/false);
  PruneResult out;
  out.dir = found.dir;
  out.errors = std::move(found.errors);
  for (const Found<EntryInfo>& entry : found.entries) {
    out.remaining_bytes += entry.info.bytes + entry.info.source_bytes;
  }
  // Least recently used first; the path breaks ties so that runs are repeatable.
  std::sort(found.entries.begin(), found.entries.end(), [](const auto& a, const auto& b) {
    return std::tie(a.info.last_used, a.info.path) < std::tie(b.info.last_used, b.info.path);
  });
  const int64_t now = llvm::sys::toTimeT(std::chrono::system_clock::now());
  for (const Found<EntryInfo>& entry : found.entries) {
    const bool too_old = policy.max_age && now - entry.info.last_used > policy.max_age->count();
    const bool too_big = policy.max_bytes && out.remaining_bytes > *policy.max_bytes;
    if (!too_old && !too_big) {
      // Sorted by age: once one entry is young enough and the size fits, all the rest are.
      break;
    }
    const std::string file = absolute(found.dir, entry.info.path);
    Removal removal = remove_examined(file, entry.id);
    if (removal == Removal::kFailed) out.errors.push_back(cannot_remove(entry.info.path));
    if (removal != Removal::kRemoved) continue;
    if (entry.info.source_bytes > 0) fs::remove(source_of(file));
    out.removed.push_back(entry.info.path);
    const uint64_t bytes = entry.info.bytes + entry.info.source_bytes;
    out.freed_bytes += bytes;
    out.remaining_bytes -= bytes;
  }
  return out;
}

ClearResult clear(const std::string& root) {
  ClearResult out;
  out.dir = versioned_dir(root);
  if (out.dir.empty()) {
    out.errors.push_back("no cache directory (set TOPKATTN_CACHE_DIR or HOME)");
    return out;
  }
  // List first, then remove: removing while iterating would disturb the iteration.
  std::vector<std::pair<std::string, uint64_t>> files;
  std::vector<std::string> folders;
  std::error_code error;
  fs::recursive_directory_iterator it(out.dir, error, /*follow_symlinks=*/false), end;
  if (error == std::errc::no_such_file_or_directory) return out;
  for (; it != end && !error; it.increment(error)) {
    llvm::ErrorOr<fs::basic_file_status> status = it->status();
    if (!status) continue;
    if (status->type() == fs::file_type::directory_file) {
      folders.push_back(it->path());
    } else {
      files.emplace_back(it->path(), status->getSize());
    }
  }
  if (error) out.errors.push_back(fmt::format("cannot list {}: {}", out.dir, error.message()));
  for (const auto& [file, bytes] : files) {
    if (std::error_code failed = fs::remove(file)) {
      out.errors.push_back(fmt::format("cannot remove {}: {}", file, failed.message()));
      continue;
    }
    out.freed_bytes += bytes;
    if (path::extension(file) == ".cubin") ++out.removed;
  }
  // Deepest first. A folder that a concurrent writer has just filled again stays; that is fine.
  std::sort(folders.rbegin(), folders.rend());
  for (const std::string& folder : folders) fs::remove(folder);
  return out;
}

bool parse_size(std::string_view text, uint64_t* bytes) {
  llvm::StringRef rest = llvm::StringRef(text.data(), text.size()).trim();
  llvm::StringRef number = rest.take_while([](char c) { return llvm::isDigit(c) || c == '.'; });
  static const std::pair<llvm::StringRef, int> kUnits[] = {{"k", 1}, {"m", 2}, {"g", 3}, {"t", 4}};
  int power = 0;
  std::string suffix = rest.drop_front(number.size()).lower();
  for (const auto& [letter, exponent] : kUnits) {
    if (llvm::StringRef(suffix).startswith(letter)) {
      power = exponent;
      suffix = suffix.substr(1);
      break;
    }
  }
  if (!(suffix.empty() || suffix == "b" || (power > 0 && suffix == "ib"))) return false;
  auto [whole, fraction] = number.split('.');
  uint64_t units = 0;
  if (whole.empty() || whole.getAsInteger(10, units)) return false;
  if (number.contains('.') && (fraction.empty() || !llvm::all_of(fraction, llvm::isDigit))) {
    return false;
  }
  const uint64_t scale = uint64_t{1} << (10 * power);
  uint64_t total = 0;
  if (__builtin_mul_overflow(units, scale, &total)) return false;
  if (!fraction.empty()) {
    // The digits after the point, as a fraction of one unit (rounded down to whole bytes).
    const double part = std::stod("0." + fraction.str()) * static_cast<double>(scale);
    if (__builtin_add_overflow(total, static_cast<uint64_t>(part), &total)) return false;
  }
  *bytes = total;
  return true;
}

bool parse_days(std::string_view text, std::chrono::seconds* age) {
  llvm::StringRef trimmed = llvm::StringRef(text.data(), text.size()).trim();
  // Plain decimal only: strtod would also take "inf", "nan" and hex.
  if (trimmed.empty() || !llvm::all_of(trimmed, [](char c) { return llvm::isDigit(c) || c == '.'; }) ||
      trimmed.count('.') > 1 || trimmed == ".") {
    return false;
  }
  double days = 0;
  if (trimmed.getAsDouble(days)) return false;
  const double seconds = days * 86400.0;
  if (!std::isfinite(seconds) || seconds > 1e15) return false;
  *age = std::chrono::seconds(static_cast<int64_t>(seconds));
  return true;
}

}  // namespace tka::cache
