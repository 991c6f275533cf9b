// Loaded modules, process-wide, keyed by (device, content key): every plan of one kernel spec on
// one device shares one module. Each entry loads once (its own once-flag), so callers of other
// specs never wait behind a compile.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "runtime/device.h"
#include "runtime/kernel_binary.h"

namespace tka {

struct LoadedModule {
  CUmodule module = nullptr;
  std::vector<CUfunction> functions;  // in the order of the rendered kernels
};

// `build` produces the binary on the first request of a key (disk cache or NVRTC).
Status get_loaded_module(const DeviceInfo& device, const std::string& key_hex,
                         const std::function<Status(KernelBinary*)>& build, std::shared_ptr<const LoadedModule>* out);

}  // namespace tka
