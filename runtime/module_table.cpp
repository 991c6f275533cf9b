#include "runtime/module_table.h"

#include <map>
#include <mutex>

#include "runtime/counters.h"

namespace tka {
namespace {

struct Entry {
  std::once_flag once;
  Status status;
  std::shared_ptr<LoadedModule> module;
};

Status load_module(const DeviceInfo& device, const KernelBinary& binary, LoadedModule* m) {
  const DriverApi* api = nullptr;
  TKA_RETURN_IF_ERROR(driver(&api));
  ScopedContext ctx(api, device.context);
  TKA_RETURN_IF_ERROR(ctx.status());
  TKA_RETURN_IF_ERROR(TKA_CU(api, cuModuleLoadData, &m->module, binary.cubin.data()));
  for (const std::string& name : binary.lowered) {
    CUfunction f;
    TKA_RETURN_IF_ERROR(TKA_CU(api, cuModuleGetFunction, &f, m->module, name.c_str()));
    m->functions.push_back(f);
  }
  // Functions are not touched further here: under CUDA's lazy loading each kernel then loads at
  // its first use. A plan opts its dynamic-shared-memory kernels in to what they need.
  return Status::ok();
}

}  // namespace

Status get_loaded_module(const DeviceInfo& device, const std::string& key_hex,
                         const std::function<Status(KernelBinary*)>& build, std::shared_ptr<const LoadedModule>* out) {
  static std::mutex mu;
  static std::map<std::pair<int, std::string>, std::shared_ptr<Entry>> table;
  std::shared_ptr<Entry> entry;
  bool fresh = false;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto& slot = table[{device.ordinal, key_hex}];
    if (!slot) {
      slot = std::make_shared<Entry>();
      fresh = true;
    }
    entry = slot;
  }
  std::call_once(entry->once, [&] {
    KernelBinary binary;
    entry->status = build(&binary);
    if (!entry->status.is_ok()) return;
    auto m = std::make_shared<LoadedModule>();
    entry->status = load_module(device, binary, m.get());
    if (entry->status.is_ok()) entry->module = std::move(m);
  });
  if (!entry->status.is_ok()) {
    // A failed entry is not kept: a later request (after fixing the cache, say) tries again.
    std::lock_guard<std::mutex> lock(mu);
    auto it = table.find({device.ordinal, key_hex});
    if (it != table.end() && it->second == entry) table.erase(it);
    return entry->status;
  }
  if (!fresh) counters().memory_hits++;
  *out = entry->module;
  return Status::ok();
}

}  // namespace tka
