#include "runtime/kernel_binary.h"

#include <chrono>
#include <fstream>

#include "codegen/nvrtc.h"
#include "common/log.h"
#include "common/settings.h"
#include "runtime/counters.h"

namespace tka {
namespace {

// Bumped whenever the generated code or the payload layout changes meaning.
constexpr const char* kGenerator = "topkattn-gen-1";

// Payload: the lowered kernel names, one per line, a NUL, then the CUBIN.
std::string pack(const codegen::CompiledModule& m) {
  std::string out;
  for (const std::string& name : m.lowered) out += name + "\n";
  out.push_back('\0');
  return out + m.image;
}

bool unpack(const std::string& payload, size_t expected_names, KernelBinary* out) {
  const size_t nul = payload.find('\0');
  if (nul == std::string::npos) return false;
  out->lowered.clear();
  size_t start = 0;
  while (start < nul) {
    const size_t eol = payload.find('\n', start);
    if (eol == std::string::npos || eol > nul) return false;
    out->lowered.push_back(payload.substr(start, eol - start));
    start = eol + 1;
  }
  out->cubin = payload.substr(nul + 1);
  return out->lowered.size() == expected_names && !out->cubin.empty();
}

void dump(const codegen::RenderedSource& source, int sm) {
  const std::string& dir = settings().dump_dir;
  if (dir.empty()) return;
  const std::string stem = fmt::format("{}/{}.sm_{}", dir, source.name, sm);
  std::ofstream(stem + ".cu") << source.source;
  codegen::CompiledModule ptx;
  if (codegen::nvrtc_compile(source, sm, /*ptx=*/true, &ptx).is_ok()) std::ofstream(stem + ".ptx") << ptx.image;
}

}  // namespace

Status cache_key_for(const codegen::RenderedSource& source, int sm, cache::CacheKey* key) {
  std::string version;
  TKA_RETURN_IF_ERROR(codegen::nvrtc_version(&version));
  const std::vector<std::string> options = codegen::nvrtc_options(sm, false);
  const std::string joined = fmt::format("{}", fmt::join(options, " "));
  const std::string arch = fmt::format("sm_{}", sm);
  key->subdir = fmt::format("nvrtc-{}/{}", version, arch);
  key->name = source.name;
  key->spec_text = source.spec_text;
  key->hash = cache::hash_parts({kGenerator, source.source, codegen::templates_digest(), version, joined, arch});
  return Status::ok();
}

Status get_kernel_binary(const codegen::RenderedSource& source, int sm, cache::DiskCache& cache, KernelBinary* out) {
  cache::CacheKey key;
  TKA_RETURN_IF_ERROR(cache_key_for(source, sm, &key));
  out->key_hex = cache::to_hex(key.hash);
  out->compiled = false;
  const uint64_t corrupt_before = cache.stats().corrupt;
  const auto build = [&](std::string* payload, std::string* src) -> Status {
    if (settings().offline)
      return make_error(TKA_ERROR_CACHE_MISS, "TOPKATTN_OFFLINE is set and the cache has no kernel for sm_{}: {}", sm,
                        source.spec_text);
    const auto t0 = std::chrono::steady_clock::now();
    codegen::CompiledModule m;
    TKA_RETURN_IF_ERROR(codegen::nvrtc_compile(source, sm, /*ptx=*/false, &m));
    const auto us =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
    counters().nvrtc_compiles++;
    counters().compile_us += static_cast<uint64_t>(us);
    out->compiled = true;
    log(TKA_LOG_INFO, "compiled {} for sm_{} in {:.1f} ms", source.name, sm, us / 1000.0);
    if (!m.log.empty()) log(TKA_LOG_DEBUG, "NVRTC log for {}:\n{}", source.name, m.log);
    dump(source, sm);
    *payload = pack(m);
    *src = source.source;
    return Status::ok();
  };
  std::string payload;
  bool from_disk = false;
  TKA_RETURN_IF_ERROR(cache.get_or_build(key, build, &payload, &from_disk));
  counters().corrupt_entries += cache.stats().corrupt - corrupt_before;
  if (from_disk) counters().disk_hits++;
  if (!unpack(payload, source.kernels.size(), out)) {
    // Passed the content hash yet does not parse: a file from another generator. Rebuild.
    std::string fresh, src;
    TKA_RETURN_IF_ERROR(build(&fresh, &src));
    (void)cache.store(key, fresh, src);
    if (!unpack(fresh, source.kernels.size(), out))
      return make_error(TKA_ERROR_INTERNAL, "malformed kernel payload for {}", source.name);
  }
  if (from_disk) log(TKA_LOG_INFO, "cache hit {} for sm_{}", source.name, sm);
  return Status::ok();
}

}  // namespace tka
