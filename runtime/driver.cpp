#include "runtime/driver.h"

#include <dlfcn.h>

namespace tka {
namespace {

// Versioned symbols: the _v2 entry points are the ones cuda.h maps these names to.
const char* symbol_name(const char* name) {
  static const char* const kVersioned[][2] = {
      {"cuDevicePrimaryCtxRelease", "cuDevicePrimaryCtxRelease_v2"},
      {"cuCtxPushCurrent", "cuCtxPushCurrent_v2"},
      {"cuCtxPopCurrent", "cuCtxPopCurrent_v2"},
      {"cuMemsetD32Async", "cuMemsetD32Async"},
      {"cuMemAlloc", "cuMemAlloc_v2"},
      {"cuMemFree", "cuMemFree_v2"},
      {"cuMemcpyHtoD", "cuMemcpyHtoD_v2"},
      {"cuMemcpyDtoH", "cuMemcpyDtoH_v2"},
      {"cuMemcpyDtoDAsync", "cuMemcpyDtoDAsync_v2"},
      {"cuEventDestroy", "cuEventDestroy_v2"},
      {"cuEventElapsedTime", "cuEventElapsedTime_v2"},
      {"cuMemHostGetDevicePointer", "cuMemHostGetDevicePointer_v2"},
      {"cuStreamWaitValue32", "cuStreamWaitValue32_v2"},
  };
  for (const auto& v : kVersioned)
    if (std::string_view(name) == v[0]) return v[1];
  return name;
}

struct Loaded {
  DriverApi api;
  Status status;
};

Loaded load() {
  Loaded l;
  void* handle = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    l.status = make_error(TKA_ERROR_NO_DEVICE, "no CUDA driver: libcuda.so.1 could not be loaded ({})", dlerror());
    return l;
  }
  std::string missing;
#define TKA_DRIVER_FN(name, ...)                                                          \
  l.api.name = reinterpret_cast<decltype(l.api.name)>(dlsym(handle, symbol_name(#name))); \
  if (!l.api.name) missing += std::string(" ") + symbol_name(#name);
#define TKA_DRIVER_FN_OPTIONAL(name, ...) \
  l.api.name = reinterpret_cast<decltype(l.api.name)>(dlsym(handle, symbol_name(#name)));
#include "runtime/driver_functions.inc"
#undef TKA_DRIVER_FN_OPTIONAL
#undef TKA_DRIVER_FN
  // Older drivers lack cuEventElapsedTime_v2.
  if (!l.api.cuEventElapsedTime) {
    l.api.cuEventElapsedTime =
        reinterpret_cast<decltype(l.api.cuEventElapsedTime)>(dlsym(handle, "cuEventElapsedTime"));
    if (l.api.cuEventElapsedTime) missing.erase(missing.find(" cuEventElapsedTime_v2"), 22);
  }
  if (!missing.empty()) {
    l.status = make_error(TKA_ERROR_NO_DEVICE, "the CUDA driver is too old: missing{}", missing);
    return l;
  }
  const CUresult r = l.api.cuInit(0);
  if (r != CUDA_SUCCESS) {
    const char* name = "?";
    l.api.cuGetErrorName(r, &name);
    l.status = make_error(TKA_ERROR_NO_DEVICE, "no usable GPU: cuInit failed with {}", name);
    return l;
  }
  int count = 0;
  if (l.api.cuDeviceGetCount(&count) != CUDA_SUCCESS || count == 0)
    l.status = make_error(TKA_ERROR_NO_DEVICE, "no GPU: the CUDA driver reports no device");
  return l;
}

}  // namespace

Status driver(const DriverApi** api) {
  static const Loaded loaded = load();
  if (!loaded.status.is_ok()) return loaded.status;
  *api = &loaded.api;
  return Status::ok();
}

Status cuda_status(CUresult r, const char* what) {
  if (r == CUDA_SUCCESS) return Status::ok();
  const DriverApi* api = nullptr;
  const char* name = "?";
  const char* text = "";
  if (driver(&api).is_ok()) {
    api->cuGetErrorName(r, &name);
    api->cuGetErrorString(r, &text);
  }
  const tka_status code = r == CUDA_ERROR_OUT_OF_MEMORY ? TKA_ERROR_OUT_OF_MEMORY : TKA_ERROR_CUDA;
  return make_error(code, "{}: {} ({})", what, name, text);
}

}  // namespace tka
