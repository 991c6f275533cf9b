// From a rendered source to a binary for one arch: the content key, then the disk cache, then
// NVRTC on a miss (compiled once across threads and processes).
#pragma once
#include <string>
#include <vector>

#include "cache/disk_cache.h"
#include "codegen/render.h"

namespace tka {

struct KernelBinary {
  std::string key_hex;  // the content key, for the in-memory module table
  std::string cubin;
  std::vector<std::string> lowered;  // kernel symbols, in the order of RenderedSource::kernels
  bool compiled = false;             // NVRTC ran in this call
};

// The key and its readable parts: sha256(generator, source, templates, NVRTC version, options, arch).
Status cache_key_for(const codegen::RenderedSource& source, int sm, cache::CacheKey* key);

Status get_kernel_binary(const codegen::RenderedSource& source, int sm, cache::DiskCache& cache, KernelBinary* out);

}  // namespace tka
