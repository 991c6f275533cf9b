#include <fcntl.h>
#include <gtest/gtest.h>
#include <llvm/Support/FileSystem.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cache/disk_cache.h"

namespace tka::cache {
namespace {

namespace fs = llvm::sys::fs;

// A fresh directory per test, removed afterwards, so that runs and repeats never share state.
class TempDir {
 public:
  TempDir() {
    std::string model = ::testing::TempDir() + "tka_cache_XXXXXX";
    path_ = ::mkdtemp(model.data()) ? model : "";
  }
  ~TempDir() { fs::remove_directories(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

int count_files(const std::string& folder) {
  int count = 0;
  std::error_code error;
  for (fs::directory_iterator it(folder, error), end; it != end && !error; it.increment(error)) {
    ++count;
  }
  return count;
}

CacheKey make_key(const std::string& spec) {
  return CacheKey{"nvrtc-13.0/sm_90", "decode_bf16_d128", hash_parts({"test-key", spec}), spec};
}

// A payload with NUL and high bytes, as a real CUBIN has.
constexpr char kPayloadBytes[] = "\x7f\x45LF\0\x01\xff cubin bytes";
const std::string kPayload(kPayloadBytes, sizeof(kPayloadBytes) - 1);

// A build callback that counts its calls and returns a recognisable payload.
struct CountingBuild {
  std::atomic<int> calls{0};
  std::string payload = "rebuilt cubin";
  std::function<Status(std::string*, std::string*)> fn() {
    return [this](std::string* out, std::string* source) {
      ++calls;
      *out = payload;
      *source = "// spec: rebuilt";
      return Status::ok();
    };
  }
};

TEST(HashParts, MatchesLengthPrefixedSha256) {
  // Reference values: sha256 over (u64 little-endian length, bytes) per part, from Python hashlib.
  EXPECT_EQ(to_hex(hash_parts({})), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(to_hex(hash_parts({"abc"})), "ce91dc5eec0139adf091900d225971d6ad246a845bad791b5693a9d0d55dd391");
  EXPECT_EQ(to_hex(hash_parts({"ab", "c"})), "43ee655579de01ca739b3f95c1c2d3f46d353b2c0df818064ea594506cdb2617");
  EXPECT_EQ(hash_parts({"x", "y"}), hash_parts({"x", "y"}));
}

TEST(HashParts, OrderAndBoundarySensitive) {
  EXPECT_NE(hash_parts({"a", "b"}), hash_parts({"b", "a"}));
  EXPECT_NE(hash_parts({"ab", "c"}), hash_parts({"a", "bc"}));
  EXPECT_NE(hash_parts({"a", ""}), hash_parts({"a"}));
  EXPECT_NE(hash_parts({"", "a"}), hash_parts({"a", ""}));
  EXPECT_NE(hash_parts({"abc"}), hash_parts({"abd"}));
}

// Saves an environment variable and puts it back, so that tests do not leak settings.
class ScopedEnv {
 public:
  explicit ScopedEnv(const char* name) : name_(name) {
    if (const char* value = std::getenv(name)) saved_ = value;
  }
  ~ScopedEnv() {
    if (saved_) {
      ::setenv(name_, saved_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> saved_;
};

TEST(ResolveRoot, Precedence) {
  ScopedEnv keep_dir("TOPKATTN_CACHE_DIR"), keep_xdg("XDG_CACHE_HOME"), keep_home("HOME");
  ::setenv("TOPKATTN_CACHE_DIR", "/t/explicit", 1);
  ::setenv("XDG_CACHE_HOME", "/t/xdg", 1);
  ::setenv("HOME", "/t/home", 1);
  EXPECT_EQ(resolve_root("/t/override"), "/t/override");
  EXPECT_EQ(resolve_root(""), "/t/explicit");
  ::unsetenv("TOPKATTN_CACHE_DIR");
  EXPECT_EQ(resolve_root(""), "/t/xdg/topkattn");
  ::setenv("XDG_CACHE_HOME", "", 1);  // empty counts as unset
  EXPECT_EQ(resolve_root(""), "/t/home/.cache/topkattn");
  ::unsetenv("XDG_CACHE_HOME");
  EXPECT_EQ(resolve_root(""), "/t/home/.cache/topkattn");
  ::unsetenv("HOME");
  EXPECT_EQ(resolve_root(""), "");
  EXPECT_EQ(resolve_root("/t/override"), "/t/override");
}

TEST(DiskCache, StoreThenLoadRoundTrips) {
  TempDir tmp;
  DiskCache cache(tmp.path());
  ASSERT_TRUE(cache.writable()) << cache.warning();
  EXPECT_EQ(cache.dir(), tmp.path() + "/v" + std::to_string(kCacheFormat));
  CacheKey key = make_key("op=decode d=128");
  std::string hex = to_hex(key.hash);
  ASSERT_EQ(hex.size(), 64u);
  std::string stem = cache.dir() + "/nvrtc-13.0/sm_90/decode_bf16_d128-" + hex.substr(0, 16);
  EXPECT_EQ(cache.entry_path(key), stem + ".cubin");

  EXPECT_FALSE(cache.load(key).has_value());
  ASSERT_TRUE(cache.store(key, kPayload, "// spec: op=decode").is_ok());
  EXPECT_EQ(cache.load(key), kPayload);
  EXPECT_EQ(read_bytes(stem + ".cu"), "// spec: op=decode");

  EXPECT_EQ(count_files(cache.dir() + "/nvrtc-13.0/sm_90"), 2) << "temporary files were left";
  CacheStats stats = cache.stats();
  EXPECT_EQ(stats.stores, 1u);
  EXPECT_EQ(stats.disk_hits, 1u);
  EXPECT_EQ(stats.corrupt, 0u);
}

TEST(DiskCache, EmptySourceWritesNoCuFile) {
  TempDir tmp;
  DiskCache cache(tmp.path());
  CacheKey key = make_key("no source");
  ASSERT_TRUE(cache.store(key, kPayload, "").is_ok());
  std::string cu = cache.entry_path(key);
  cu.replace(cu.size() - 5, 5, "cu");
  EXPECT_TRUE(fs::exists(cache.entry_path(key)));
  EXPECT_FALSE(fs::exists(cu));
}

TEST(DiskCache, SecondCacheOnSameRootHitsDisk) {
  TempDir tmp;
  CacheKey key = make_key("shared root");
  CountingBuild build;
  std::string payload;
  bool from_disk = true;
  ASSERT_TRUE(DiskCache(tmp.path()).get_or_build(key, build.fn(), &payload, &from_disk).is_ok());
  EXPECT_FALSE(from_disk);
  DiskCache second(tmp.path());
  ASSERT_TRUE(second.get_or_build(key, build.fn(), &payload, &from_disk).is_ok());
  EXPECT_TRUE(from_disk);
  EXPECT_EQ(payload, build.payload);
  EXPECT_EQ(build.calls, 1);
}

TEST(DiskCache, BuildErrorPropagatesAndStoresNothing) {
  TempDir tmp;
  DiskCache cache(tmp.path());
  CacheKey key = make_key("fails");
  auto failing = [](std::string*, std::string*) {
    return make_error(TKA_ERROR_COMPILE, "nvrtc: error: expected a ';'");
  };
  std::string payload;
  bool from_disk = true;
  Status status = cache.get_or_build(key, failing, &payload, &from_disk);
  EXPECT_EQ(status.code(), TKA_ERROR_COMPILE);
  EXPECT_EQ(status.message(), "nvrtc: error: expected a ';'");
  EXPECT_FALSE(from_disk);
  EXPECT_FALSE(fs::exists(cache.entry_path(key)));
  EXPECT_FALSE(fs::exists(cache.entry_path(key) + ".lock"));
  EXPECT_EQ(cache.stats().stores, 0u);
}

TEST(DiskCache, RejectsKeysThatLeaveTheCacheFolder) {
  TempDir tmp;
  DiskCache cache(tmp.path());
  const std::pair<std::string, std::string> kUnsafe[] = {{"../escape", "k"}, {"/abs", "k"},  {"a//b", "k"},
                                                         {"a/", "k"},        {"ok", "../k"}, {"ok", ""},
                                                         {"ok", "a b"},      {"ok", ".."}};
  for (const auto& [subdir, name] : kUnsafe) {
    CacheKey key{subdir, name, hash_parts({subdir, name}), ""};
    EXPECT_EQ(cache.entry_path(key), "") << subdir << " " << name;
    EXPECT_FALSE(cache.store(key, kPayload, "").is_ok()) << subdir << " " << name;
    std::string payload;
    bool from_disk = false;
    CountingBuild build;
    EXPECT_EQ(cache.get_or_build(key, build.fn(), &payload, &from_disk).code(), TKA_ERROR_INTERNAL);
  }
  EXPECT_NE(cache.entry_path(CacheKey{"", "top_level", {}, ""}), "");
}

// Stores an entry, damages it, and checks that load() refuses and removes it and that
// get_or_build() rebuilds it exactly once into an entry that loads.
void expect_damage_detected(const std::function<void(DiskCache&, const std::string&)>& damage) {
  TempDir tmp;
  DiskCache cache(tmp.path());
  CacheKey key = make_key("victim");
  std::string path = cache.entry_path(key);

  ASSERT_TRUE(cache.store(key, kPayload, "// source").is_ok());
  damage(cache, path);
  EXPECT_FALSE(cache.load(key).has_value());
  EXPECT_FALSE(fs::exists(path)) << "a bad entry must be removed";
  EXPECT_EQ(cache.stats().corrupt, 1u);

  ASSERT_TRUE(cache.store(key, kPayload, "// source").is_ok());
  damage(cache, path);
  CountingBuild build;
  std::string payload;
  bool from_disk = true;
  ASSERT_TRUE(cache.get_or_build(key, build.fn(), &payload, &from_disk).is_ok());
  EXPECT_EQ(build.calls, 1);
  EXPECT_FALSE(from_disk);
  EXPECT_EQ(payload, build.payload);
  EXPECT_EQ(cache.stats().corrupt, 2u);
  EXPECT_EQ(cache.load(key), build.payload);
}

TEST(DiskCacheCorruption, TruncatedEntry) {
  for (size_t keep : {size_t{0}, size_t{5}, size_t{40}, size_t{70}}) {  // the entry is 89 bytes
    SCOPED_TRACE(keep);
    expect_damage_detected([keep](DiskCache&, const std::string& path) {
      const std::string bytes = read_bytes(path);
      ASSERT_LT(keep, bytes.size()) << "the damage must shorten the file";
      write_bytes(path, bytes.substr(0, keep));
    });
  }
  expect_damage_detected([](DiskCache&, const std::string& path) {
    std::string bytes = read_bytes(path);
    write_bytes(path, bytes.substr(0, bytes.size() - 1));
  });
}

TEST(DiskCacheCorruption, FlippedPayloadByte) {
  expect_damage_detected([](DiskCache&, const std::string& path) {
    std::string bytes = read_bytes(path);
    bytes[bytes.size() - kPayload.size() / 2] ^= 0x01;
    write_bytes(path, bytes);
  });
}

TEST(DiskCacheCorruption, FlippedHeaderByte) {
  // magic 8 + format 4 + key hash 32 + size 8 + payload checksum 8 + spec length 4.
  constexpr size_t kFixedHeader = 64;
  for (size_t offset = 0; offset < kFixedHeader; ++offset) {
    SCOPED_TRACE(offset);
    TempDir tmp;
    DiskCache cache(tmp.path());
    CacheKey key = make_key("header");
    ASSERT_TRUE(cache.store(key, kPayload, "").is_ok());
    std::string bytes = read_bytes(cache.entry_path(key));
    ASSERT_GT(bytes.size(), kFixedHeader);
    bytes[offset] ^= 0x01;
    write_bytes(cache.entry_path(key), bytes);
    EXPECT_FALSE(cache.load(key).has_value());
    EXPECT_EQ(cache.stats().corrupt, 1u);
  }
  expect_damage_detected([](DiskCache&, const std::string& path) {
    std::string bytes = read_bytes(path);
    bytes[20] ^= 0x80;  // inside the key hash
    write_bytes(path, bytes);
  });
}

TEST(DiskCacheCorruption, ValidEntryOfAnotherKey) {
  expect_damage_detected([](DiskCache& cache, const std::string& path) {
    CacheKey other = make_key("another spec");
    ASSERT_NE(cache.entry_path(other), path);
    ASSERT_TRUE(cache.store(other, "other cubin", "").is_ok());
    ASSERT_EQ(cache.load(other), "other cubin");
    ASSERT_FALSE(fs::copy_file(cache.entry_path(other), path));
  });
}

void expect_memory_only(const std::string& root) {
  DiskCache cache(root);
  EXPECT_FALSE(cache.writable());
  EXPECT_EQ(cache.dir(), "");
  EXPECT_FALSE(cache.warning().empty());
  CacheKey key = make_key("memory only");
  EXPECT_EQ(cache.entry_path(key), "");
  EXPECT_TRUE(cache.store(key, kPayload, "src").is_ok());
  EXPECT_FALSE(cache.load(key).has_value());
  CountingBuild build;
  for (int i = 0; i < 2; ++i) {
    std::string payload;
    bool from_disk = true;
    ASSERT_TRUE(cache.get_or_build(key, build.fn(), &payload, &from_disk).is_ok());
    EXPECT_EQ(payload, build.payload);
    EXPECT_FALSE(from_disk);
  }
  EXPECT_EQ(build.calls, 2);
  EXPECT_EQ(cache.stats().stores, 0u);
}

TEST(DiskCache, UnwritableDirectoryIsMemoryOnly) {
  TempDir tmp;
  // A path under a regular file cannot be created even by root, unlike a chmod'ed folder.
  write_bytes(tmp.path() + "/file", "not a directory");
  std::string root = tmp.path() + "/file/sub";
  expect_memory_only(root);
  EXPECT_NE(DiskCache(root).warning().find(root), std::string::npos);
}

TEST(DiskCache, EmptyRootIsMemoryOnly) { expect_memory_only(""); }

constexpr auto kSlowBuild = std::chrono::milliseconds(200);

// Appends one line per build to a file shared by all processes.
void append_line(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd < 0) return;
  ssize_t written = ::write(fd, "built\n", 6);
  (void)written;
  ::close(fd);
}

int count_lines(const std::string& path) {
  std::string bytes = read_bytes(path);
  return static_cast<int>(std::count(bytes.begin(), bytes.end(), '\n'));
}

// Forked children that all call get_or_build on one key in one cache. A child that builds says
// so on `building` (when set), sleeps like a compile, counts itself in a shared file and puts its
// pid into the payload, so that the parent can tell whose build each child got.
class Children {
 public:
  Children() { EXPECT_EQ(::pipe(gate_), 0); }
  ~Children() { open_gate(); }

  std::string result(int i) const { return tmp_.path() + "/result" + std::to_string(i); }
  const std::string& root() const { return tmp_.path(); }
  int builds() const { return count_lines(tmp_.path() + "/builds"); }

  // A gated child waits until open_gate(), so that all gated children start in the same instant.
  void spawn(bool gated, int building) {
    int index = static_cast<int>(pids_.size());
    pid_t pid = ::fork();
    EXPECT_GE(pid, 0);
    if (pid == 0) run_child(index, gated, building);
    if (pid > 0) pids_.push_back(pid);
  }

  // The children see EOF once no process holds the write end.
  void open_gate() {
    for (int& fd : gate_) {
      if (fd >= 0) ::close(fd);
      fd = -1;
    }
  }

  // True when every child was started and exited with 0.
  bool wait_all(int expected) {
    bool ok = static_cast<int>(pids_.size()) == expected;
    for (pid_t pid : pids_) {
      int status = 0;
      ok = ::waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0 && ok;
    }
    pids_.clear();
    return ok;
  }

 private:
  [[noreturn]] void run_child(int index, bool gated, int building) {
    ::close(gate_[1]);
    char byte = 0;
    bool ok = !gated || ::read(gate_[0], &byte, 1) == 0;
    auto build = [&](std::string* payload, std::string* source) {
      if (building >= 0 && ::write(building, "b", 1) != 1) return Status(TKA_ERROR_INTERNAL, "");
      std::this_thread::sleep_for(kSlowBuild);
      append_line(tmp_.path() + "/builds");
      *payload = "cubin built by pid " + std::to_string(::getpid());
      *source = "// source";
      return Status::ok();
    };
    DiskCache cache(tmp_.path());
    std::string payload;
    bool from_disk = false;
    ok = ok && cache.get_or_build(make_key("contended"), build, &payload, &from_disk).is_ok();
    write_bytes(result(index), payload);
    ::_exit(ok ? 0 : 1);
  }

  TempDir tmp_;
  int gate_[2] = {-1, -1};
  std::vector<pid_t> pids_;
};

TEST(DiskCacheConcurrency, ProcessesArrivingDuringABuildReuseIt) {
  constexpr int kChildren = 8;
  Children children;
  int building[2];
  ASSERT_EQ(::pipe(building), 0);
  children.spawn(/*gated=*/false, building[1]);
  ::close(building[1]);
  char byte = 0;
  bool first_is_building = ::read(building[0], &byte, 1) == 1;  // EOF if it died first
  ::close(building[0]);
  for (int i = 1; i < kChildren && first_is_building; ++i) children.spawn(/*gated=*/true, -1);
  children.open_gate();  // the others start together while the first holds the lock
  EXPECT_TRUE(first_is_building);
  ASSERT_TRUE(children.wait_all(kChildren));
  EXPECT_EQ(children.builds(), 1);
  std::string first = read_bytes(children.result(0));
  EXPECT_EQ(first.rfind("cubin built by pid ", 0), 0u);
  for (int i = 1; i < kChildren; ++i) EXPECT_EQ(read_bytes(children.result(i)), first) << i;
  EXPECT_EQ(DiskCache(children.root()).load(make_key("contended")), first);
  EXPECT_EQ(count_files(children.root() + "/v" + std::to_string(kCacheFormat) + "/nvrtc-13.0/sm_90"), 2)
      << "lock or temp files left";
}

// All start in the same instant: the fcntl lock per entry gives exact exclusion, so exactly one
// builds and everyone gets that build.
TEST(DiskCacheConcurrency, ProcessesStartingTogetherShareBuilds) {
  constexpr int kChildren = 8;
  Children children;
  for (int i = 0; i < kChildren; ++i) children.spawn(/*gated=*/true, -1);
  children.open_gate();
  ASSERT_TRUE(children.wait_all(kChildren));
  EXPECT_EQ(children.builds(), 1);
  std::set<std::string> payloads;
  for (int i = 0; i < kChildren; ++i) payloads.insert(read_bytes(children.result(i)));
  ASSERT_EQ(payloads.size(), 1u);
  EXPECT_EQ(payloads.begin()->rfind("cubin built by pid ", 0), 0u);
  std::optional<std::string> entry = DiskCache(children.root()).load(make_key("contended"));
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(*entry, *payloads.begin());
}

TEST(DiskCacheConcurrency, ThreadsBuildOnce) {
  constexpr int kThreads = 8;
  TempDir tmp;
  DiskCache cache(tmp.path());
  CacheKey key = make_key("threads");
  std::atomic<int> builds{0};
  auto build = [&](std::string* payload, std::string* source) {
    std::this_thread::sleep_for(kSlowBuild);
    *payload = "cubin from build " + std::to_string(++builds);
    *source = "// source";
    return Status::ok();
  };
  std::vector<std::string> payloads(kThreads);
  std::vector<int> ok(kThreads, 0);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      bool from_disk = false;
      ok[i] = cache.get_or_build(key, build, &payloads[i], &from_disk).is_ok();
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(builds, 1);
  for (int i = 0; i < kThreads; ++i) {
    EXPECT_TRUE(ok[i]);
    EXPECT_EQ(payloads[i], "cubin from build 1");
  }
  CacheStats stats = cache.stats();
  EXPECT_EQ(stats.stores, 1u);
  EXPECT_EQ(stats.disk_hits, static_cast<uint64_t>(kThreads - 1));
  EXPECT_EQ(count_files(cache.dir() + "/nvrtc-13.0/sm_90"), 2) << "lock or temporary files left";
}

}  // namespace
}  // namespace tka::cache
