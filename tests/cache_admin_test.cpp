// cache/cache_admin.h and `topkattn cache`, on caches built with DiskCache::store (no GPU).
#include "cache/cache_admin.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <llvm/Support/FileSystem.h>
#include <llvm/Support/Path.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "cache/disk_cache.h"
#include "test_util.h"

namespace tka::cache {
namespace {

namespace fs = llvm::sys::fs;
using nlohmann::json;

constexpr int64_t kDay = 86400;

using tka_test::ScratchDir;

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

uint64_t file_size(const std::string& path) {
  uint64_t size = 0;
  return fs::file_size(path, size) ? 0 : size;
}

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void set_times(const std::string& path, int64_t atime, int64_t mtime) {
  struct timespec times[2] = {{atime, 0}, {mtime, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, 0), 0) << path;
}

int64_t access_time(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_atime : -1;
}

std::string cu_of(const std::string& cubin) { return cubin.substr(0, cubin.size() - 5) + "cu"; }

// Bytes of every file under `dir`.
uint64_t tree_bytes(const std::string& dir) {
  uint64_t bytes = 0;
  std::error_code error;
  for (fs::recursive_directory_iterator it(dir, error), end; it != end && !error; it.increment(error)) {
    if (fs::is_regular_file(it->path())) bytes += file_size(it->path());
  }
  return bytes;
}

// A cache with named entries, stored through the library, as a test's starting point.
class StoredCache {
 public:
  StoredCache() : cache_(tmp_.path()) { EXPECT_TRUE(cache_.writable()) << cache_.warning(); }

  const std::string& root() const { return tmp_.path(); }
  DiskCache& cache() { return cache_; }

  CacheKey key(const std::string& spec, const std::string& arch = "sm_90") const {
    return CacheKey{"nvrtc-13.0/" + arch, "decode_" + std::to_string(spec.size()),
                    hash_parts({"cache-admin-test", spec, arch}), spec};
  }

  // The stored entry's absolute path. A payload of `size` bytes with NUL and high bytes.
  std::string add(const std::string& spec, size_t size = 1000, const std::string& arch = "sm_90",
                  bool with_source = true) {
    std::string payload(size, '\0');
    for (size_t i = 0; i < size; ++i) payload[i] = static_cast<char>(i * 131 + spec.size());
    CacheKey k = key(spec, arch);
    EXPECT_TRUE(cache_.store(k, payload, with_source ? "// spec: " + spec : "").is_ok());
    return cache_.entry_path(k);
  }

  std::string relative(const std::string& path) const { return path.substr(cache_.dir().size() + 1); }

 private:
  ScratchDir tmp_;
  DiskCache cache_;
};

TEST(CacheAdmin, MissingFolderIsAnEmptyCache) {
  ScratchDir tmp;
  const std::string root = tmp.path() + "/absent";
  Listing listing = list_entries(root);
  EXPECT_EQ(listing.dir, root + "/v" + std::to_string(kCacheFormat));
  EXPECT_TRUE(listing.entries.empty());
  EXPECT_TRUE(listing.errors.empty());
  VerifyResult verified = verify_entries(root, true);
  EXPECT_EQ(verified.checked, 0u);
  EXPECT_TRUE(verified.errors.empty());
  PruneResult pruned = prune(root, PrunePolicy{uint64_t{0}, std::nullopt});
  EXPECT_TRUE(pruned.removed.empty());
  EXPECT_TRUE(pruned.errors.empty());
  ClearResult cleared = clear(root);
  EXPECT_EQ(cleared.removed, 0u);
  EXPECT_TRUE(cleared.errors.empty());
  EXPECT_FALSE(fs::exists(root)) << "inspecting must not create the cache";
}

TEST(CacheAdmin, EmptyRootIsAnError) {
  EXPECT_FALSE(list_entries("").errors.empty());
  EXPECT_FALSE(clear("").errors.empty());
}

TEST(CacheAdmin, ListsStoredEntries) {
  StoredCache c;
  const int64_t before = now_seconds();
  const std::string a = c.add("op=decode;d=128", 1000, "sm_90");
  const std::string b = c.add("op=decode;d=64", 2000, "sm_90", /*with_source=*/false);
  const std::string d = c.add("op=decode;d=256", 3000, "sm_80");
  // Not entries: a lock file, an unrelated file, a temporary file.
  ASSERT_FALSE(fs::create_directories(c.cache().dir() + "/.locks"));
  write_bytes(c.cache().dir() + "/.locks/nvrtc-13.0_sm_90_x-0123456789abcdef.cubin.lock", "");
  write_bytes(c.cache().dir() + "/nvrtc-13.0/sm_90/notes.txt", "mine");
  write_bytes(c.cache().dir() + "/nvrtc-13.0/sm_90/x-0123456789abcdef.tmp-a1b2c3", "partial");

  Listing listing = list_entries(c.root());
  EXPECT_EQ(listing.dir, c.cache().dir());
  EXPECT_TRUE(listing.errors.empty());
  ASSERT_EQ(listing.entries.size(), 3u);
  std::map<std::string, const EntryInfo*> by_path;
  for (const EntryInfo& entry : listing.entries) by_path[entry.path] = &entry;
  ASSERT_EQ(by_path.size(), 3u);
  EXPECT_EQ(listing.entries[0].path, c.relative(d)) << "sorted by path (sm_80 first)";
  const std::pair<std::string, std::string> kExpected[] = {
      {a, "op=decode;d=128"}, {b, "op=decode;d=64"}, {d, "op=decode;d=256"}};
  for (const auto& [path, spec] : kExpected) {
    SCOPED_TRACE(path);
    ASSERT_EQ(by_path.count(c.relative(path)), 1u);
    const EntryInfo& entry = *by_path[c.relative(path)];
    EXPECT_TRUE(entry.ok) << entry.problem;
    EXPECT_EQ(entry.spec, spec);
    EXPECT_EQ(entry.bytes, file_size(path));
    EXPECT_EQ(entry.source_bytes, fs::exists(cu_of(path)) ? file_size(cu_of(path)) : 0u);
    EXPECT_GE(entry.mtime, before - 1);
    EXPECT_LE(entry.mtime, now_seconds() + 1);
    EXPECT_GE(entry.last_used, entry.mtime);
  }
  EXPECT_EQ(by_path[c.relative(a)]->arch, "sm_90");
  EXPECT_EQ(by_path[c.relative(d)]->arch, "sm_80");
  EXPECT_GT(by_path[c.relative(a)]->source_bytes, 0u);
  EXPECT_EQ(by_path[c.relative(b)]->source_bytes, 0u);
  ASSERT_EQ(listing.temporary.size(), 1u);
  EXPECT_EQ(listing.temporary[0].path, "nvrtc-13.0/sm_90/x-0123456789abcdef.tmp-a1b2c3");

  CacheSummary summary = summarize(listing);
  EXPECT_EQ(summary.entries, 3u);
  EXPECT_EQ(summary.bytes, file_size(a) + file_size(cu_of(a)) + file_size(b) + file_size(d) + file_size(cu_of(d)));
  EXPECT_EQ(summary.by_arch, (std::map<std::string, size_t>{{"sm_80", 1}, {"sm_90", 2}}));
  EXPECT_EQ(summary.bad, 0u);
  EXPECT_EQ(summary.temporary, 1u);
}

TEST(CacheAdmin, ListingDoesNotCountAsUse) {
  StoredCache c;
  const std::string a = c.add("op=decode;d=128");
  const int64_t old = now_seconds() - 10 * kDay;
  set_times(a, old, old);
  ASSERT_EQ(list_entries(c.root()).entries.size(), 1u);
  ASSERT_EQ(verify_entries(c.root(), true).ok, 1u);
  EXPECT_EQ(access_time(a), old) << "reading for ls/verify must not refresh the access time";
}

// Damages that verify must find, each in its own entry.
struct DamagedCache {
  StoredCache c;
  std::vector<std::string> good;
  std::string truncated, flipped, foreign, other_key, stale_temp, fresh_temp, orphan_cu, lock;

  DamagedCache() {
    good = {c.add("good one", 500), c.add("good two", 700, "sm_80")};
    truncated = c.add("truncated", 900);
    write_bytes(truncated, read_bytes(truncated).substr(0, 60));
    flipped = c.add("flipped", 900);
    std::string bytes = read_bytes(flipped);
    bytes[bytes.size() - 100] ^= 0x01;
    write_bytes(flipped, bytes);
    const std::string folder = c.cache().dir() + "/nvrtc-13.0/sm_90";
    foreign = folder + "/foreign.cubin";
    write_bytes(foreign, std::string("\x7f"
                                     "ELF not ours",
                                     12));
    // A sound entry under a file name whose hash is not its key's.
    other_key = folder + "/decode_9-0000000000000000.cubin";
    EXPECT_FALSE(fs::copy_file(good[0], other_key));
    stale_temp = folder + "/decode_9-1111111111111111.tmp-abc123";
    write_bytes(stale_temp, "half written");
    set_times(stale_temp, now_seconds() - 3600, now_seconds() - 3600);
    fresh_temp = folder + "/decode_9-2222222222222222.tmp-def456";
    write_bytes(fresh_temp, "being written now");
    orphan_cu = folder + "/decode_9-3333333333333333.cu";
    write_bytes(orphan_cu, "// source of an entry that is gone");
    set_times(orphan_cu, now_seconds() - 3600, now_seconds() - 3600);
    // A build through the lock leaves a lock file, which verify must keep.
    std::string payload;
    bool from_disk = false;
    auto build = [](std::string* out, std::string* source) {
      *out = "built";
      *source = "// built";
      return Status::ok();
    };
    EXPECT_TRUE(c.cache().get_or_build(c.key("locked"), build, &payload, &from_disk).is_ok());
    lock = c.cache().dir() + "/.locks/nvrtc-13.0_sm_90_" +
           llvm::sys::path::filename(c.cache().entry_path(c.key("locked"))).str() + ".lock";
    EXPECT_TRUE(fs::exists(lock)) << lock;
  }
};

TEST(CacheAdmin, VerifyFindsAndRemovesBadEntries) {
  DamagedCache d;
  StoredCache& c = d.c;

  Listing listing = list_entries(c.root());
  std::map<std::string, std::string> problems;
  for (const EntryInfo& entry : listing.entries) {
    if (!entry.ok) problems[entry.path] = entry.problem;
  }
  EXPECT_EQ(problems, (std::map<std::string, std::string>{{c.relative(d.truncated), "truncated header"},
                                                          {c.relative(d.flipped), "payload checksum mismatch"},
                                                          {c.relative(d.foreign), "not a cache entry"},
                                                          {c.relative(d.other_key), "written for another key"}}));
  EXPECT_EQ(summarize(listing).bad, 4u);

  // Without `remove` nothing goes.
  VerifyResult checked = verify_entries(c.root(), false);
  EXPECT_EQ(checked.checked, 7u);  // 2 good + 4 bad + the locked build
  EXPECT_EQ(checked.ok, 3u);
  EXPECT_TRUE(checked.removed.empty());
  EXPECT_TRUE(fs::exists(d.truncated));

  VerifyResult repaired = verify_entries(c.root(), true);
  EXPECT_TRUE(repaired.errors.empty());
  EXPECT_EQ(repaired.checked, 7u);
  EXPECT_EQ(repaired.ok, 3u);
  const std::set<std::string> removed(repaired.removed.begin(), repaired.removed.end());
  EXPECT_EQ(removed,
            (std::set<std::string>{c.relative(d.truncated), c.relative(cu_of(d.truncated)), c.relative(d.flipped),
                                   c.relative(cu_of(d.flipped)), c.relative(d.foreign), c.relative(d.other_key),
                                   c.relative(d.stale_temp), c.relative(d.orphan_cu)}));
  for (const std::string& gone :
       {d.truncated, d.flipped, d.foreign, d.other_key, d.stale_temp, d.orphan_cu, cu_of(d.truncated)}) {
    EXPECT_FALSE(fs::exists(gone)) << gone;
  }
  EXPECT_TRUE(fs::exists(d.fresh_temp)) << "a store in progress must be left alone";
  EXPECT_TRUE(fs::exists(d.lock)) << "verify must not remove lock files";
  for (const std::string& path : d.good) EXPECT_TRUE(fs::exists(path) && fs::exists(cu_of(path)));
  EXPECT_EQ(c.cache().load(c.key("good one")).value_or("").size(), 500u);
  EXPECT_EQ(c.cache().load(c.key("good two", "sm_80")).value_or("").size(), 700u);

  VerifyResult again = verify_entries(c.root(), true);
  EXPECT_EQ(again.checked, 3u);
  EXPECT_EQ(again.ok, 3u);
  EXPECT_TRUE(again.removed.empty());
}

TEST(CacheAdmin, PruneBySizeKeepsTheMostRecentlyUsed) {
  StoredCache c;
  const int64_t now = now_seconds();
  std::vector<std::string> paths;
  for (int i = 0; i < 4; ++i) paths.push_back(c.add("entry " + std::to_string(i), 1000 + 100 * i));
  auto on_disk = [](const std::string& p) { return file_size(p) + file_size(cu_of(p)); };
  // Used in the order 1, 0, 2, 3 (oldest first): entry 0 was written long ago but read recently.
  set_times(paths[0], now - 2 * kDay, now - 9 * kDay);
  set_times(paths[1], now - 5 * kDay, now - 5 * kDay);
  set_times(paths[2], now - 1 * kDay, now - 1 * kDay);
  set_times(paths[3], now - 60, now - 60);
  const uint64_t limit = on_disk(paths[2]) + on_disk(paths[3]);
  const uint64_t total = limit + on_disk(paths[0]) + on_disk(paths[1]);

  PruneResult result = prune(c.root(), PrunePolicy{limit, std::nullopt});
  EXPECT_TRUE(result.errors.empty());
  EXPECT_EQ(result.removed, (std::vector<std::string>{c.relative(paths[1]), c.relative(paths[0])}));
  EXPECT_EQ(result.freed_bytes, total - limit);
  EXPECT_EQ(result.remaining_bytes, limit);
  EXPECT_FALSE(fs::exists(paths[0]));
  EXPECT_FALSE(fs::exists(cu_of(paths[0])));
  EXPECT_FALSE(fs::exists(paths[1]));
  EXPECT_TRUE(fs::exists(paths[2]) && fs::exists(cu_of(paths[2])));
  EXPECT_TRUE(fs::exists(paths[3]) && fs::exists(cu_of(paths[3])));
  EXPECT_EQ(summarize(list_entries(c.root())).bytes, limit);

  // One byte less than what is left: the older of the two goes.
  result = prune(c.root(), PrunePolicy{limit - 1, std::nullopt});
  EXPECT_EQ(result.removed, std::vector<std::string>{c.relative(paths[2])});
  EXPECT_EQ(result.remaining_bytes, on_disk(paths[3]));
  // Within the limit: nothing goes.
  result = prune(c.root(), PrunePolicy{on_disk(paths[3]), std::nullopt});
  EXPECT_TRUE(result.removed.empty());
  EXPECT_EQ(result.freed_bytes, 0u);
  EXPECT_TRUE(fs::exists(paths[3]));
}

TEST(CacheAdmin, PruneByAge) {
  StoredCache c;
  const int64_t now = now_seconds();
  const std::string old = c.add("old", 800), recent = c.add("recent", 900), fresh = c.add("fresh");
  set_times(old, now - 10 * kDay, now - 10 * kDay);
  set_times(recent, now - 3 * kDay, now - 3 * kDay);
  PruneResult result = prune(c.root(), PrunePolicy{std::nullopt, std::chrono::hours(24 * 5)});
  EXPECT_EQ(result.removed, std::vector<std::string>{c.relative(old)});
  EXPECT_FALSE(fs::exists(old));
  EXPECT_FALSE(fs::exists(cu_of(old)));
  EXPECT_TRUE(fs::exists(recent));
  EXPECT_TRUE(fs::exists(fresh));
  // Both limits: age first, then size.
  result = prune(c.root(), PrunePolicy{file_size(fresh) + file_size(cu_of(fresh)), std::chrono::hours(24 * 5)});
  EXPECT_EQ(result.removed, std::vector<std::string>{c.relative(recent)});
  EXPECT_TRUE(fs::exists(fresh));
}

TEST(CacheAdmin, ClearEmptiesTheVersionedFolder) {
  DamagedCache d;
  StoredCache& c = d.c;
  const uint64_t all_bytes = tree_bytes(c.cache().dir());
  ClearResult result = clear(c.root());
  EXPECT_TRUE(result.errors.empty());
  EXPECT_EQ(result.removed, 7u);  // every .cubin, sound or not
  EXPECT_EQ(result.freed_bytes, all_bytes);
  EXPECT_TRUE(fs::is_directory(c.cache().dir()));
  std::error_code error;
  fs::directory_iterator it(c.cache().dir(), error);
  EXPECT_TRUE(it == fs::directory_iterator()) << "left: " << it->path();
  // The cache still works afterwards, through the same DiskCache.
  const std::string again = c.add("after clear");
  EXPECT_EQ(c.cache().load(c.key("after clear")).value_or("").size(), 1000u);
  EXPECT_TRUE(fs::exists(again));
}

TEST(CacheAdmin, ParseSize) {
  const std::pair<const char*, uint64_t> kGood[] = {
      {"0", 0},           {"123", 123},         {"64K", 64 << 10},    {"500M", 500ull << 20},
      {"2G", 2ull << 30}, {"2g", 2ull << 30},   {"2GB", 2ull << 30},  {"2GiB", 2ull << 30},
      {"1T", 1ull << 40}, {"1.5G", 3ull << 29}, {" 7M ", 7ull << 20}, {"10B", 10}};
  for (const auto& [text, bytes] : kGood) {
    uint64_t parsed = 1;
    EXPECT_TRUE(parse_size(text, &parsed)) << text;
    EXPECT_EQ(parsed, bytes) << text;
  }
  for (const char* text :
       {"", "M", "-1", "1.", ".5G", "2X", "2 G", "1e9", "2GiBs", "1iB", "99999999999999999999", "20000000T"}) {
    uint64_t parsed = 0;
    EXPECT_FALSE(parse_size(text, &parsed)) << text;
  }
}

TEST(CacheAdmin, ParseDays) {
  std::chrono::seconds age{};
  EXPECT_TRUE(parse_days("30", &age));
  EXPECT_EQ(age.count(), 30 * kDay);
  EXPECT_TRUE(parse_days("0.5", &age));
  EXPECT_EQ(age.count(), kDay / 2);
  EXPECT_TRUE(parse_days("0", &age));
  EXPECT_EQ(age.count(), 0);
  for (const char* text : {"", "-1", "abc", "1d", "inf", "nan", "1e3", "1.2.3", "."}) {
    EXPECT_FALSE(parse_days(text, &age)) << text;
  }
}

// ---- The command line ----------------------------------------------------------------------

std::string quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

struct CliResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// One run of the built `topkattn`, started at once and collected by finish(), so that several
// can run at the same time. stderr goes to a file to keep it apart from the JSON on stdout.
class CliRun {
 public:
  CliRun(const std::string& args, const std::string& env = "") {
    std::string model = ::testing::TempDir() + "tka_cli_err_XXXXXX";
    int fd = ::mkstemp(model.data());
    if (fd >= 0) ::close(fd);
    err_path_ = model;
    const std::string command = env + " " + quote(TOPKATTN_CLI_PATH) + " " + args + " 2>" + quote(err_path_);
    pipe_ = ::popen(command.c_str(), "r");
  }
  ~CliRun() {
    if (pipe_) ::pclose(pipe_);
    fs::remove(err_path_);
  }

  CliResult finish() {
    CliResult result;
    if (!pipe_) return result;
    char buffer[4096];
    for (size_t n; (n = std::fread(buffer, 1, sizeof(buffer), pipe_)) > 0;) result.out.append(buffer, n);
    const int status = ::pclose(pipe_);
    pipe_ = nullptr;
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    result.err = read_bytes(err_path_);
    return result;
  }

 private:
  FILE* pipe_ = nullptr;
  std::string err_path_;
};

CliResult cli(const std::string& args, const std::string& env = "") { return CliRun(args, env).finish(); }

// Runs `topkattn cache <args> --json --cache-dir <root>` and parses its output.
json cli_json(const std::string& args, const std::string& root, int expected_exit = 0) {
  CliResult run = cli("cache " + args + " --json --cache-dir " + quote(root));
  EXPECT_EQ(run.exit_code, expected_exit) << args << "\n" << run.err;
  json parsed = json::parse(run.out, nullptr, /*allow_exceptions=*/false);
  EXPECT_TRUE(parsed.is_object()) << args << " printed: " << run.out;
  return parsed.is_object() ? parsed : json::object();
}

TEST(CacheAdminCli, LsAndStat) {
  StoredCache c;
  const std::string a = c.add("op=decode;d=128", 1000, "sm_90");
  const std::string b = c.add("op=decode;d=64", 2000, "sm_80");
  std::string bytes = read_bytes(b);
  bytes.back() ^= 0x01;
  write_bytes(b, bytes);

  json ls = cli_json("ls", c.root());
  EXPECT_EQ(ls.value("dir", ""), c.cache().dir());
  ASSERT_TRUE(ls["entries"].is_array());
  ASSERT_EQ(ls["entries"].size(), 2u);
  const json& bad = ls["entries"][0];  // sm_80 sorts first
  const json& good = ls["entries"][1];
  EXPECT_EQ(good.value("path", ""), c.relative(a));
  EXPECT_EQ(good.value("bytes", uint64_t{0}), file_size(a));
  EXPECT_EQ(good.value("spec", ""), "op=decode;d=128");
  EXPECT_EQ(good.value("arch", ""), "sm_90");
  EXPECT_EQ(good.value("ok", false), true);
  EXPECT_NEAR(good.value("mtime", int64_t{0}), now_seconds(), 60);
  EXPECT_EQ(bad.value("path", ""), c.relative(b));
  EXPECT_EQ(bad.value("arch", ""), "sm_80");
  EXPECT_EQ(bad.value("ok", true), false);
  EXPECT_EQ(bad.value("problem", ""), "payload checksum mismatch");

  json stat = cli_json("stat", c.root());
  EXPECT_EQ(stat.value("dir", ""), c.cache().dir());
  EXPECT_EQ(stat.value("entries", 0), 2);
  EXPECT_EQ(stat.value("bytes", uint64_t{0}), file_size(a) + file_size(cu_of(a)) + file_size(b) + file_size(cu_of(b)));
  EXPECT_EQ(stat["by_arch"], (json{{"sm_80", 1}, {"sm_90", 1}}));
  EXPECT_EQ(stat.value("bad", 0), 1);
  EXPECT_EQ(stat.value("temporary", -1), 0);

  // Plain text: one line per entry, with path, size and verdict.
  CliResult text = cli("cache ls --cache-dir " + quote(c.root()));
  EXPECT_EQ(text.exit_code, 0);
  EXPECT_EQ(std::count(text.out.begin(), text.out.end(), '\n'), 2);
  EXPECT_NE(text.out.find(c.relative(a) + "  " + std::to_string(file_size(a))), std::string::npos);
  EXPECT_NE(text.out.find("BAD (payload checksum mismatch)"), std::string::npos);
}

TEST(CacheAdminCli, DefaultFolderFollowsTheEnvironment) {
  StoredCache c;
  c.add("from env");
  CliResult run = cli("cache stat --json", "env -u XDG_CACHE_HOME TOPKATTN_CACHE_DIR=" + quote(c.root()));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  json stat = json::parse(run.out, nullptr, false);
  EXPECT_EQ(stat.value("dir", ""), c.cache().dir());
  EXPECT_EQ(stat.value("entries", 0), 1);
  run = cli("cache stat --json", "env -u TOPKATTN_CACHE_DIR XDG_CACHE_HOME=" + quote(c.root() + "/xdg"));
  EXPECT_EQ(json::parse(run.out, nullptr, false).value("dir", ""),
            c.root() + "/xdg/topkattn/v" + std::to_string(kCacheFormat));
}

TEST(CacheAdminCli, VerifyRemovesBadEntries) {
  DamagedCache d;
  json verify = cli_json("verify", d.c.root());
  EXPECT_EQ(verify.value("checked", 0), 7);
  EXPECT_EQ(verify.value("ok", 0), 3);
  ASSERT_TRUE(verify["removed"].is_array());
  std::set<std::string> removed;
  for (const json& path : verify["removed"]) removed.insert(path.get<std::string>());
  EXPECT_EQ(removed.size(), 8u);
  EXPECT_EQ(removed.count(d.c.relative(d.flipped)), 1u);
  EXPECT_EQ(removed.count(d.c.relative(d.foreign)), 1u);
  EXPECT_EQ(removed.count(d.c.relative(d.stale_temp)), 1u);
  EXPECT_FALSE(fs::exists(d.truncated));
  EXPECT_TRUE(fs::exists(d.lock));

  json again = cli_json("verify", d.c.root());
  EXPECT_EQ(again.value("checked", 0), 3);
  EXPECT_EQ(again.value("ok", 0), 3);
  EXPECT_EQ(again["removed"], json::array());
}

TEST(CacheAdminCli, Prune) {
  StoredCache c;
  const int64_t now = now_seconds();
  const std::string old = c.add("old", 4000), mid = c.add("mid", 3000), young = c.add("young", 2000);
  set_times(old, now - 40 * kDay, now - 40 * kDay);
  set_times(mid, now - 2 * kDay, now - 2 * kDay);
  const uint64_t young_bytes = file_size(young) + file_size(cu_of(young));
  const uint64_t mid_bytes = file_size(mid) + file_size(cu_of(mid));
  const uint64_t old_bytes = file_size(old) + file_size(cu_of(old));

  json by_age = cli_json("prune --max-age 30", c.root());
  EXPECT_EQ(by_age["removed"], json::array({c.relative(old)}));
  EXPECT_EQ(by_age.value("freed_bytes", uint64_t{0}), old_bytes);
  EXPECT_EQ(by_age.value("remaining_bytes", uint64_t{0}), mid_bytes + young_bytes);

  // A size with a suffix: 4K holds the young entry (about 2K) but not both.
  ASSERT_LT(young_bytes, 4u << 10);
  ASSERT_GT(young_bytes + mid_bytes, 4u << 10);
  json by_size = cli_json("prune --max-size 4K", c.root());
  EXPECT_EQ(by_size["removed"], json::array({c.relative(mid)}));
  EXPECT_EQ(by_size.value("freed_bytes", uint64_t{0}), mid_bytes);
  EXPECT_EQ(by_size.value("remaining_bytes", uint64_t{0}), young_bytes);
  EXPECT_TRUE(fs::exists(young));
  EXPECT_FALSE(fs::exists(cu_of(mid)));
}

TEST(CacheAdminCli, Clear) {
  DamagedCache d;
  const uint64_t all_bytes = tree_bytes(d.c.cache().dir());
  json cleared = cli_json("clear", d.c.root());
  EXPECT_EQ(cleared.value("removed", 0), 7);
  EXPECT_EQ(cleared.value("freed_bytes", uint64_t{0}), all_bytes);
  EXPECT_FALSE(fs::exists(d.c.cache().dir() + "/.locks"));
  EXPECT_TRUE(fs::is_directory(d.c.root()));
  json stat = cli_json("stat", d.c.root());
  EXPECT_EQ(stat.value("entries", -1), 0);
  EXPECT_EQ(stat.value("bytes", -1), 0);
}

TEST(CacheAdminCli, MissingFolderIsEmptyForEveryAction) {
  ScratchDir tmp;
  const std::string root = tmp.path() + "/never-made";
  EXPECT_EQ(cli_json("ls", root)["entries"], json::array());
  EXPECT_EQ(cli_json("stat", root).value("entries", -1), 0);
  EXPECT_EQ(cli_json("verify", root).value("checked", -1), 0);
  EXPECT_EQ(cli_json("prune --max-size 0", root)["removed"], json::array());
  EXPECT_EQ(cli_json("clear", root).value("removed", -1), 0);
  EXPECT_FALSE(fs::exists(root));
}

TEST(CacheAdminCli, BadArgumentsExitWithTwoAndNameTheArgument) {
  ScratchDir tmp;
  const std::string dir = " --cache-dir " + quote(tmp.path());
  const std::pair<std::string, std::string> kCases[] = {
      {"cache frobnicate", "frobnicate"},
      {"cache", "missing action"},
      {"cache ls extra", "extra"},
      {"cache ls --bogus", "--bogus"},
      {"cache prune --max-size 12Q", "12Q"},
      {"cache prune --max-size=-5", "--max-size"},
      {"cache prune --max-age soon", "soon"},
      {"cache prune", "--max-size"},
      {"cache ls --max-age 3", "--max-age"},
  };
  for (const auto& [args, named] : kCases) {
    CliResult run = cli(args + dir);
    EXPECT_EQ(run.exit_code, 2) << args;
    EXPECT_NE(run.err.find(named), std::string::npos) << args << ": " << run.err;
    EXPECT_EQ(run.out, "") << args;
  }
}

TEST(CacheAdminCli, HelpDocumentsActionsAndExitCodes) {
  CliResult run = cli("cache --help");
  EXPECT_EQ(run.exit_code, 0);
  for (const char* text : {"verify", "prune", "--max-size", "--max-age", "--json", "--cache-dir", "Exit codes"}) {
    EXPECT_NE(run.out.find(text), std::string::npos) << text;
  }
}

// Eight processes prewarm one empty cache at once: every kernel is compiled by exactly one of
// them, all succeed, and the result verifies.
TEST(CacheAdminCli, ConcurrentPrewarmCompilesEachKernelOnce) {
  constexpr int kProcesses = 8;
  ScratchDir tmp;
  const std::string args = "prewarm --model llama-3.1-8b --arch sm_80 --json --cache-dir " + quote(tmp.path());
  std::vector<std::unique_ptr<CliRun>> runs;
  for (int i = 0; i < kProcesses; ++i) runs.push_back(std::make_unique<CliRun>(args));
  int compiled = 0;
  std::set<int> kernels;
  for (auto& run : runs) {
    CliResult result = run->finish();
    EXPECT_EQ(result.exit_code, 0) << result.err;
    json summary = json::parse(result.out, nullptr, false);
    ASSERT_TRUE(summary.is_object()) << result.out << result.err;
    EXPECT_EQ(summary.value("failed", -1), 0);
    compiled += summary.value("compiled", 0);
    kernels.insert(summary.value("compiled", 0) + summary.value("cached", 0));
  }
  ASSERT_EQ(kernels.size(), 1u) << "every process must see the same set of kernels";
  const int distinct = *kernels.begin();
  EXPECT_GT(distinct, 0);
  EXPECT_EQ(compiled, distinct) << "a kernel was compiled by more than one process";

  json verify = cli_json("verify", tmp.path());
  EXPECT_EQ(verify.value("checked", 0), distinct);
  EXPECT_EQ(verify.value("ok", 0), distinct);
  EXPECT_EQ(verify["removed"], json::array());
  json stat = cli_json("stat", tmp.path());
  EXPECT_EQ(stat["by_arch"], (json{{"sm_80", distinct}}));
  EXPECT_EQ(stat.value("temporary", -1), 0);
}

}  // namespace
}  // namespace tka::cache
