#include "codegen/nvrtc.h"

#include <dlfcn.h>

#include <mutex>

#include "cache/disk_cache.h"
#include "codegen/embedded.h"
#include "common/settings.h"

namespace tka::codegen {
namespace {

// The few NVRTC entry points we use, declared here so no NVRTC header is needed.
using nvrtcResult = int;
using nvrtcProgram = struct _nvrtcProgram*;

struct NvrtcApi {
  void* handle = nullptr;
  std::string error;
  nvrtcResult (*Version)(int*, int*) = nullptr;
  const char* (*GetErrorString)(nvrtcResult) = nullptr;
  nvrtcResult (*CreateProgram)(nvrtcProgram*, const char*, const char*, int, const char* const*,
                               const char* const*) = nullptr;
  nvrtcResult (*DestroyProgram)(nvrtcProgram*) = nullptr;
  nvrtcResult (*AddNameExpression)(nvrtcProgram, const char*) = nullptr;
  nvrtcResult (*CompileProgram)(nvrtcProgram, int, const char* const*) = nullptr;
  nvrtcResult (*GetLoweredName)(nvrtcProgram, const char*, const char**) = nullptr;
  nvrtcResult (*GetProgramLogSize)(nvrtcProgram, size_t*) = nullptr;
  nvrtcResult (*GetProgramLog)(nvrtcProgram, char*) = nullptr;
  nvrtcResult (*GetCUBINSize)(nvrtcProgram, size_t*) = nullptr;
  nvrtcResult (*GetCUBIN)(nvrtcProgram, char*) = nullptr;
  nvrtcResult (*GetPTXSize)(nvrtcProgram, size_t*) = nullptr;
  nvrtcResult (*GetPTX)(nvrtcProgram, char*) = nullptr;
};

template <typename F>
bool bind(void* handle, const char* name, F* fn) {
  *fn = reinterpret_cast<F>(dlsym(handle, name));
  return *fn != nullptr;
}

const NvrtcApi& api() {
  static const NvrtcApi instance = [] {
    NvrtcApi a;
    for (const char* name :
         {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so", "/usr/local/cuda/lib64/libnvrtc.so.13"}) {
      a.handle = dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (a.handle) break;
    }
    if (!a.handle) {
      a.error = fmt::format(
          "libnvrtc could not be loaded ({}); install the CUDA toolkit's NVRTC "
          "or add it to LD_LIBRARY_PATH",
          dlerror());
      return a;
    }
    bool ok = bind(a.handle, "nvrtcVersion", &a.Version) && bind(a.handle, "nvrtcGetErrorString", &a.GetErrorString) &&
              bind(a.handle, "nvrtcCreateProgram", &a.CreateProgram) &&
              bind(a.handle, "nvrtcDestroyProgram", &a.DestroyProgram) &&
              bind(a.handle, "nvrtcAddNameExpression", &a.AddNameExpression) &&
              bind(a.handle, "nvrtcCompileProgram", &a.CompileProgram) &&
              bind(a.handle, "nvrtcGetLoweredName", &a.GetLoweredName) &&
              bind(a.handle, "nvrtcGetProgramLogSize", &a.GetProgramLogSize) &&
              bind(a.handle, "nvrtcGetProgramLog", &a.GetProgramLog) &&
              bind(a.handle, "nvrtcGetCUBINSize", &a.GetCUBINSize) && bind(a.handle, "nvrtcGetCUBIN", &a.GetCUBIN) &&
              bind(a.handle, "nvrtcGetPTXSize", &a.GetPTXSize) && bind(a.handle, "nvrtcGetPTX", &a.GetPTX);
    if (!ok) a.error = "libnvrtc lacks an expected entry point";
    return a;
  }();
  return instance;
}

Status check(nvrtcResult r, const char* what) {
  if (r == 0) return Status::ok();
  return make_error(TKA_ERROR_COMPILE, "NVRTC {} failed: {}", what, api().GetErrorString(r));
}

// Owns an nvrtcProgram.
struct Program {
  nvrtcProgram prog = nullptr;
  ~Program() {
    if (prog) api().DestroyProgram(&prog);
  }
};

std::string program_log(nvrtcProgram prog) {
  size_t size = 0;
  if (api().GetProgramLogSize(prog, &size) != 0 || size <= 1) return {};
  std::string log(size, '\0');
  api().GetProgramLog(prog, log.data());
  log.resize(size - 1);
  return log;
}

}  // namespace

int parse_arch(const std::string& arch) {
  if (arch.size() < 5 || arch.compare(0, 3, "sm_") != 0) return 0;
  int sm = 0;
  for (size_t i = 3; i < arch.size(); ++i) {
    if (arch[i] < '0' || arch[i] > '9') return 0;
    sm = sm * 10 + (arch[i] - '0');
    if (sm > 1000) return 0;
  }
  return sm;
}

bool is_target_arch(int sm) {
  switch (sm) {
    case 80:
    case 86:
    case 87:
    case 88:
    case 89:
    case 90:
    case 100:
    case 101:
    case 103:
    case 110:
    case 120:
    case 121:
      return true;
  }
  return false;
}

Status nvrtc_version(std::string* version) {
  const NvrtcApi& a = api();
  if (!a.error.empty()) return Status(TKA_ERROR_NVRTC_UNAVAILABLE, a.error);
  int major = 0, minor = 0;
  TKA_RETURN_IF_ERROR(check(a.Version(&major, &minor), "version"));
  *version = fmt::format("{}.{}", major, minor);
  return Status::ok();
}

std::vector<std::string> nvrtc_options(int sm, bool ptx) {
  // sm_90 code is built for sm_90a: the same devices (compute capability 9.0), plus the
  // arch-specific instructions (wgmma) that some kernels take when __CUDA_ARCH_FEAT_SM90_ALL is set.
  const char* suffix = sm == 90 ? "a" : "";
  std::vector<std::string> options = {fmt::format("--gpu-architecture={}_{}{}", ptx ? "compute" : "sm", sm, suffix),
                                      "-std=c++17", "-default-device", "-DNDEBUG", "--split-compile=0"};
  for (const std::string& name : settings().kernel_defines) options.push_back("-D" + name);
  return options;
}

const std::string& templates_digest() {
  static const std::string digest = [] {
    std::string all;
    for (const EmbeddedFile& f : embedded_templates()) {
      all += f.name;
      all.push_back('\0');
      all += f.text;
      all.push_back('\0');
    }
    return cache::to_hex(cache::hash_parts({all}));
  }();
  return digest;
}

Status nvrtc_compile(const RenderedSource& source, int sm, bool ptx, CompiledModule* out) {
  const NvrtcApi& a = api();
  if (!a.error.empty()) return Status(TKA_ERROR_NVRTC_UNAVAILABLE, a.error);
  if (sm < 70) return make_error(TKA_ERROR_UNSUPPORTED, "arch sm_{} is not supported (sm_80 or newer)", sm);
  const auto& files = embedded_templates();
  std::vector<const char*> header_text, header_names;
  for (const EmbeddedFile& f : files) {
    header_text.push_back(f.text);
    header_names.push_back(f.name);
  }
  Program p;
  TKA_RETURN_IF_ERROR(check(a.CreateProgram(&p.prog, source.source.c_str(), (source.name + ".cu").c_str(),
                                            static_cast<int>(files.size()), header_text.data(), header_names.data()),
                            "create program"));
  for (const std::string& k : source.kernels)
    TKA_RETURN_IF_ERROR(check(a.AddNameExpression(p.prog, k.c_str()), "add name expression"));
  const std::vector<std::string> options = nvrtc_options(sm, ptx);
  std::vector<const char*> argv;
  for (const std::string& o : options) argv.push_back(o.c_str());
  const nvrtcResult r = a.CompileProgram(p.prog, static_cast<int>(argv.size()), argv.data());
  out->log = program_log(p.prog);
  if (r != 0) {
    return make_error(TKA_ERROR_COMPILE, "NVRTC could not compile {} for sm_{} ({}).\nspec: {}\noptions: {}\nlog:\n{}",
                      source.name, sm, a.GetErrorString(r), source.spec_text, fmt::join(options, " "), out->log);
  }
  size_t size = 0;
  if (ptx) {
    TKA_RETURN_IF_ERROR(check(a.GetPTXSize(p.prog, &size), "get PTX size"));
    out->image.assign(size, '\0');
    TKA_RETURN_IF_ERROR(check(a.GetPTX(p.prog, out->image.data()), "get PTX"));
    if (!out->image.empty() && out->image.back() == '\0') out->image.pop_back();
  } else {
    TKA_RETURN_IF_ERROR(check(a.GetCUBINSize(p.prog, &size), "get CUBIN size"));
    out->image.assign(size, '\0');
    TKA_RETURN_IF_ERROR(check(a.GetCUBIN(p.prog, out->image.data()), "get CUBIN"));
  }
  out->lowered.clear();
  for (const std::string& k : source.kernels) {
    const char* lowered = nullptr;
    TKA_RETURN_IF_ERROR(check(a.GetLoweredName(p.prog, k.c_str(), &lowered), "get lowered name"));
    out->lowered.emplace_back(lowered);
  }
  return Status::ok();
}

}  // namespace tka::codegen
