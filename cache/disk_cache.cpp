#include "cache/disk_cache.h"

#include <fcntl.h>
#include <llvm/ADT/SmallString.h>
#include <llvm/ADT/StringExtras.h>
#include <llvm/Support/FileSystem.h>
#include <llvm/Support/LockFileManager.h>
#include <llvm/Support/MemoryBuffer.h>
#include <llvm/Support/Path.h>
#include <llvm/Support/SHA256.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Support/xxhash.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <memory>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>

#include "common/log.h"

namespace tka::cache {
namespace {

namespace fs = llvm::sys::fs;

constexpr std::string_view kMagic = "TKACUBIN";
// Long enough for any compile; past it we compile anyway rather than fail.
constexpr unsigned kLockWaitSeconds = 300;

std::string_view as_view(const Digest& digest) { return {reinterpret_cast<const char*>(digest.data()), digest.size()}; }

// The payload's integrity check. The key (what the payload is) is SHA-256; this only has to catch
// truncation and damage, and it runs on every load: xxHash64 reads a 300 KB CUBIN in ~20 µs,
// where SHA-256 took ~1 ms, most of a warm plan creation.
uint64_t payload_checksum(std::string_view payload) {
  return llvm::xxHash64(llvm::StringRef(payload.data(), payload.size()));
}

void put_le(std::string* out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>(value >> (8 * i)));
}

// Consumes an entry file front to back; every take fails cleanly on a short file.
class Reader {
 public:
  explicit Reader(std::string_view bytes) : rest_(bytes) {}

  bool take(size_t size, std::string_view* out) {
    if (rest_.size() < size) return false;
    *out = rest_.substr(0, size);
    rest_.remove_prefix(size);
    return true;
  }

  bool take_le(int bytes, uint64_t* out) {
    std::string_view raw;
    if (!take(bytes, &raw)) return false;
    *out = 0;
    for (int i = bytes - 1; i >= 0; --i) *out = (*out << 8) | static_cast<uint8_t>(raw[i]);
    return true;
  }

  std::string_view rest() const { return rest_; }

 private:
  std::string_view rest_;
};

std::string encode_header(const CacheKey& key, std::string_view payload) {
  std::string header(kMagic);
  put_le(&header, kCacheFormat, 4);
  header += as_view(key.hash);
  put_le(&header, payload.size(), 8);
  put_le(&header, payload_checksum(payload), 8);
  put_le(&header, key.spec_text.size(), 4);
  header += key.spec_text;
  return header;
}

// Whether `bytes` is a sound entry for `key`; sets `payload` when it is.
const char* check_entry(std::string_view bytes, const Digest& key, std::string_view* payload) {
  EntryView entry;
  if (const char* why = parse_entry(bytes, &entry)) return why;
  if (entry.key != key) return "written for another key";
  *payload = entry.payload;
  return nullptr;
}

std::error_code write_and_sync(int fd, std::initializer_list<std::string_view> chunks) {
  llvm::raw_fd_ostream out(fd, /*shouldClose=*/true);
  for (std::string_view chunk : chunks) out.write(chunk.data(), chunk.size());
  out.flush();
  std::error_code error = out.error();
  // Without fsync a crash after the rename could publish an empty or partial file.
  if (!error && ::fsync(fd) != 0) error = std::error_code(errno, std::generic_category());
  out.close();
  if (!error) error = out.error();
  out.clear_error();  // raw_fd_ostream aborts on destruction with an unhandled error
  return error;
}

// Readers see either the old file or the complete new one, never a partial write.
Status write_atomically(const std::string& path, std::initializer_list<std::string_view> chunks) {
  llvm::SmallString<256> model(path);
  llvm::sys::path::replace_extension(model, "tmp-%%%%%%");
  llvm::SmallString<256> temp;
  int fd = -1;
  if (std::error_code error = fs::createUniqueFile(model, fd, temp)) {
    return make_error(TKA_ERROR_INTERNAL, "cache: cannot create a temporary file for {}: {}", path, error.message());
  }
  std::error_code error = write_and_sync(fd, chunks);
  if (!error) error = fs::rename(temp, path);
  if (!error) return Status::ok();
  fs::remove(temp);
  return make_error(TKA_ERROR_INTERNAL, "cache: cannot write {}: {}", path, error.message());
}

bool is_safe_component(std::string_view part) {
  auto allowed = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-'; };
  return !part.empty() && part != "." && part != ".." && std::all_of(part.begin(), part.end(), allowed);
}

// A key must not name a path outside the cache folder.
bool is_safe_key(const CacheKey& key) {
  if (!is_safe_component(key.name)) return false;
  std::string_view rest = key.subdir;
  while (!rest.empty()) {
    size_t slash = rest.find('/');
    if (!is_safe_component(rest.substr(0, slash))) return false;
    rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
  }
  return key.subdir.empty() || key.subdir.back() != '/';
}

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? std::string() : std::string(value);
}

// Returns an empty string when `dir` exists and accepts new files, else the reason it does not.
std::string prepare_dir(const std::string& dir) {
  if (std::error_code error = fs::create_directories(dir)) {
    return fmt::format("cannot create {}: {}", dir, error.message());
  }
  // A directory that exists may still be read-only (a mounted image, other owner).
  llvm::SmallString<256> probe;
  int fd = -1;
  if (std::error_code error = fs::createUniqueFile(dir + "/.probe-%%%%%%", fd, probe)) {
    return fmt::format("cannot write in {}: {}", dir, error.message());
  }
  ::close(fd);
  fs::remove(probe);
  return "";
}

// fcntl locks belong to the process, not the thread: two threads of one process would both
// "hold" the entry's lock. Threads of one process therefore queue on a mutex per entry first. One
// small entry per kernel this process builds; never erased.
std::shared_ptr<std::mutex> entry_mutex(const std::string& path) {
  static std::mutex registry_mu;
  static std::unordered_map<std::string, std::shared_ptr<std::mutex>> registry;
  std::lock_guard<std::mutex> lock(registry_mu);
  std::shared_ptr<std::mutex>& entry = registry[path];
  if (!entry) entry = std::make_shared<std::mutex>();
  return entry;
}

Status unsafe_key_error(const CacheKey& key) {
  return make_error(TKA_ERROR_INTERNAL, "cache: key subdir '{}' name '{}' is not a safe path", key.subdir, key.name);
}

}  // namespace

Digest hash_parts(std::initializer_list<std::string_view> parts) {
  llvm::SHA256 hasher;
  for (std::string_view part : parts) {
    std::string length;
    put_le(&length, part.size(), 8);
    hasher.update(llvm::StringRef(length));
    hasher.update(llvm::StringRef(part.data(), part.size()));
  }
  return hasher.final();
}

std::string to_hex(const Digest& digest) { return llvm::toHex(digest, /*LowerCase=*/true); }

// The spec text is not verified: it is for people, and a damaged one cannot serve wrong bytes.
const char* parse_entry(std::string_view bytes, EntryView* entry) {
  Reader in(bytes);
  std::string_view magic, key_hash, spec;
  uint64_t format = 0, size = 0, checksum = 0, spec_size = 0;
  if (!in.take(kMagic.size(), &magic) || magic != kMagic) return "not a cache entry";
  if (!in.take_le(4, &format) || format != kCacheFormat) return "another format version";
  if (!in.take(entry->key.size(), &key_hash) || !in.take_le(8, &size) || !in.take_le(8, &checksum) ||
      !in.take_le(4, &spec_size) || !in.take(spec_size, &spec)) {
    return "truncated header";
  }
  if (in.rest().size() != size) return "payload size mismatch";
  if (payload_checksum(in.rest()) != checksum) return "payload checksum mismatch";
  std::copy(key_hash.begin(), key_hash.end(), entry->key.begin());
  entry->spec_text = spec;
  entry->payload = in.rest();
  return nullptr;
}

// Absent and unreadable files are both plain misses.
std::optional<EntryFile> read_entry_file(const std::string& path, bool keep_atime) {
  int fd = -1;
#ifdef O_NOATIME
  // Only the owner may use O_NOATIME; anyone else reads normally.
  if (keep_atime) fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOATIME);
#else
  (void)keep_atime;
#endif
  if (fd < 0 && fs::openFileForRead(path, fd)) return std::nullopt;
  std::optional<EntryFile> file;
  fs::file_status status;
  if (!fs::status(fd, status)) {
    // Volatile: read, not mmap, so that a file shrunk by someone else cannot fault.
    auto buffer = llvm::MemoryBuffer::getOpenFile(fd, path, status.getSize(),
                                                  /*RequiresNullTerminator=*/false,
                                                  /*IsVolatile=*/true);
    if (buffer) file = EntryFile{std::move(*buffer), status.getUniqueID()};
  }
  fs::closeFile(fd);
  return file;
}

bool remove_if_unchanged(const std::string& path, const fs::UniqueID& id) {
  fs::UniqueID now;
  return !fs::getUniqueID(path, now) && now == id && !fs::remove(path, /*IgnoreNonExisting=*/false);
}

std::string resolve_root(const std::string& override_dir) {
  if (!override_dir.empty()) return override_dir;
  // Empty variables count as unset, as the XDG spec asks.
  if (std::string dir = env("TOPKATTN_CACHE_DIR"); !dir.empty()) return dir;
  if (std::string xdg = env("XDG_CACHE_HOME"); !xdg.empty()) return xdg + "/topkattn";
  if (std::string home = env("HOME"); !home.empty()) return home + "/.cache/topkattn";
  return "";
}

DiskCache::DiskCache(const std::string& root) {
  std::string reason = "no cache directory (set TOPKATTN_CACHE_DIR or HOME)";
  llvm::SmallString<256> dir(root);
  if (!root.empty()) {
    // Absolute, so that a later chdir in the host process cannot move the cache.
    fs::make_absolute(dir);
    llvm::sys::path::append(dir, "v" + std::to_string(kCacheFormat));
    reason = prepare_dir(std::string(dir));
  }
  if (reason.empty()) {
    dir_ = std::string(dir);
    writable_ = true;
    return;
  }
  warning_ = fmt::format("kernel cache is memory-only, every process compiles again: {}", reason);
  tka::log(TKA_LOG_WARN, "{}", warning_);
}

std::string DiskCache::entry_path(const CacheKey& key) const {
  if (!writable_ || !is_safe_key(key)) return "";
  std::string folder = key.subdir.empty() ? dir_ : dir_ + "/" + key.subdir;
  return fmt::format("{}/{}-{}.cubin", folder, key.name, to_hex(key.hash).substr(0, 16));
}

std::optional<std::string> DiskCache::load(const CacheKey& key) {
  std::string path = entry_path(key);
  if (path.empty()) return std::nullopt;
  std::optional<EntryFile> file = read_entry_file(path);
  if (!file) return std::nullopt;
  std::string_view payload;
  if (const char* why = check_entry(file->buffer->getBuffer(), key.hash, &payload)) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.corrupt;
    }
    tka::log(TKA_LOG_WARN, "cache: removing {} ({}); it will be rebuilt", path, why);
    remove_if_unchanged(path, file->id);
    return std::nullopt;
  }
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.disk_hits;
  return std::string(payload);
}

Status DiskCache::store(const CacheKey& key, const std::string& payload, const std::string& source) {
  if (!writable_) return Status::ok();
  std::string path = entry_path(key);
  if (path.empty()) return unsafe_key_error(key);
  llvm::StringRef folder = llvm::sys::path::parent_path(path);
  if (std::error_code error = fs::create_directories(folder)) {
    return make_error(TKA_ERROR_INTERNAL, "cache: cannot create {}: {}", folder.str(), error.message());
  }
  // The source goes first, so that every published CUBIN has its source beside it.
  if (!source.empty()) {
    llvm::SmallString<256> source_path(path);
    llvm::sys::path::replace_extension(source_path, "cu");
    TKA_RETURN_IF_ERROR(write_atomically(std::string(source_path), {source}));
  }
  TKA_RETURN_IF_ERROR(write_atomically(path, {encode_header(key, payload), payload}));
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.stores;
  return Status::ok();
}

Status DiskCache::get_or_build(const CacheKey& key,
                               const std::function<Status(std::string* payload, std::string* source)>& build,
                               std::string* payload, bool* from_disk) {
  *from_disk = false;
  auto take = [&](std::optional<std::string> hit) {
    *payload = std::move(*hit);
    *from_disk = true;
    return Status::ok();
  };
  if (std::optional<std::string> hit = load(key)) return take(std::move(hit));
  std::string source;
  if (!writable_) return build(payload, &source);
  std::string path = entry_path(key);
  if (path.empty()) return unsafe_key_error(key);
  std::shared_ptr<std::mutex> in_process = entry_mutex(path);
  std::lock_guard<std::mutex> hold(*in_process);
  // The entry's folder is made first: if it cannot be, locking fails too and the store after the
  // build reports why.
  fs::create_directories(llvm::sys::path::parent_path(path));
  // The lock only saves duplicate compiles; correctness comes from the atomic rename. An fcntl
  // lock on a file under .locks/ (kept apart from the entries): exact exclusion across processes,
  // released by the kernel if the holder dies.
  const std::string lock_dir = dir_ + "/.locks";
  fs::create_directories(lock_dir);
  std::string lock_name = key.subdir + "/" + llvm::sys::path::filename(path).str();
  std::replace(lock_name.begin(), lock_name.end(), '/', '_');
  int lock_fd = -1;
  bool locked = false;
  if (!fs::openFileForReadWrite(lock_dir + "/" + lock_name + ".lock", lock_fd, fs::CD_OpenAlways, fs::OF_None)) {
    locked = !fs::tryLockFile(lock_fd, std::chrono::seconds(kLockWaitSeconds));
  }
  struct Unlock {
    int fd;
    bool locked;
    ~Unlock() {
      if (locked) (void)fs::unlockFile(fd);
      if (fd >= 0) ::close(fd);
    }
  } unlock{lock_fd, locked};
  if (!locked) {
    tka::log(TKA_LOG_INFO, "cache: no lock for {}; compiling without it", path);
  } else if (std::optional<std::string> hit = load(key)) {
    return take(std::move(hit));
  }
  TKA_RETURN_IF_ERROR(build(payload, &source));
  if (Status stored = store(key, *payload, source); !stored.is_ok()) {
    tka::log(TKA_LOG_WARN, "{}", stored.message());
  }
  return Status::ok();
}

CacheStats DiskCache::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace tka::cache
