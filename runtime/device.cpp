#include "runtime/device.h"

#include "common/settings.h"
#include "runtime/launch.h"

namespace tka {

Status open_device(int ordinal, DeviceInfo* info) {
  const DriverApi* api = nullptr;
  TKA_RETURN_IF_ERROR(driver(&api));
  int count = 0;
  TKA_RETURN_IF_ERROR(TKA_CU(api, cuDeviceGetCount, &count));
  if (ordinal < 0 || ordinal >= count)
    return make_error(TKA_ERROR_INVALID_ARGUMENT, "options.device_ordinal: {} is not a device (there are {})", ordinal,
                      count);
  CUdevice dev;
  TKA_RETURN_IF_ERROR(TKA_CU(api, cuDeviceGet, &dev, ordinal));
  int major = 0, minor = 0;
  TKA_RETURN_IF_ERROR(TKA_CU(api, cuDeviceGetAttribute, &major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev));
  TKA_RETURN_IF_ERROR(TKA_CU(api, cuDeviceGetAttribute, &minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev));
  TKA_RETURN_IF_ERROR(
      TKA_CU(api, cuDeviceGetAttribute, &info->sm_count, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev));
  TKA_RETURN_IF_ERROR(TKA_CU(api, cuDeviceGetAttribute, &info->max_smem_optin,
                             CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, dev));
  TKA_RETURN_IF_ERROR(TKA_CU(api, cuDeviceGetAttribute, &info->smem_per_sm,
                             CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR, dev));
  TKA_RETURN_IF_ERROR(TKA_CU(api, cuDeviceGetAttribute, &info->l2_bytes, CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, dev));
  char name[256] = {0};
  TKA_RETURN_IF_ERROR(TKA_CU(api, cuDeviceGetName, name, sizeof(name) - 1, dev));
  info->ordinal = ordinal;
  info->sm = major * 10 + minor;
  info->name = name;
  info->overlap_launches = overlap_launches_for(info->sm, settings().overlap_launches);
  if (info->sm < 80)
    return make_error(TKA_ERROR_UNSUPPORTED, "device {} ({}) is sm_{}; topkattn needs sm_80 or newer", ordinal,
                      info->name, info->sm);
  TKA_RETURN_IF_ERROR(TKA_CU(api, cuDevicePrimaryCtxRetain, &info->context, dev));
  return Status::ok();
}

ScopedContext::ScopedContext(const DriverApi* api, CUcontext ctx) : api_(api) {
  CUcontext current = nullptr;
  status_ = TKA_CU(api_, cuCtxGetCurrent, &current);
  if (status_.is_ok() && current != ctx) {
    status_ = TKA_CU(api_, cuCtxPushCurrent, ctx);
    pushed_ = status_.is_ok();
  }
}

ScopedContext::~ScopedContext() {
  if (pushed_) {
    CUcontext popped;
    (void)api_->cuCtxPopCurrent(&popped);
  }
}

SmemBudget smem_budget_for_sm(int sm) {
  switch (sm) {
    case 80:
    case 87:
      return {163 << 10, 164 << 10};
    case 90:
    case 100:
    case 103:
      return {227 << 10, 228 << 10};
    case 120:
    case 121:
      return {99 << 10, 128 << 10};
    default:  // 86, 89
      return {99 << 10, 100 << 10};
  }
}

Status allow_dynamic_smem(const DeviceInfo& device, CUfunction fn, int bytes, const char* what, bool prefer_shared) {
  if (bytes > device.max_smem_optin)
    return make_error(TKA_ERROR_UNSUPPORTED, "{}: {} bytes of shared memory per CTA, the device has {}", what, bytes,
                      device.max_smem_optin);
  const DriverApi* api = nullptr;
  TKA_RETURN_IF_ERROR(driver(&api));
  ScopedContext ctx(api, device.context);
  TKA_RETURN_IF_ERROR(ctx.status());
  TKA_RETURN_IF_ERROR(TKA_CU(api, cuFuncSetAttribute, fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes));
  if (!prefer_shared) return Status::ok();
  return TKA_CU(api, cuFuncSetAttribute, fn, CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT,
                CU_SHAREDMEM_CARVEOUT_MAX_SHARED);
}

Status check_kernel_fits(const DeviceInfo& device, CUfunction fn, int threads, int dynamic_smem, const char* what) {
  const DriverApi* api = nullptr;
  TKA_RETURN_IF_ERROR(driver(&api));
  ScopedContext ctx(api, device.context);
  TKA_RETURN_IF_ERROR(ctx.status());
  int max_threads = 0, static_smem = 0;
  TKA_RETURN_IF_ERROR(TKA_CU(api, cuFuncGetAttribute, &max_threads, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, fn));
  TKA_RETURN_IF_ERROR(static_smem_bytes(device, fn, &static_smem));
  if (max_threads < threads)
    return make_error(TKA_ERROR_UNSUPPORTED, "{} kernel: {} threads per CTA asked, the compiled kernel allows {}", what,
                      threads, max_threads);
  if (static_smem + dynamic_smem > device.max_smem_optin)
    return make_error(TKA_ERROR_UNSUPPORTED, "{} kernel: {} bytes of shared memory, the device has {}", what,
                      static_smem + dynamic_smem, device.max_smem_optin);
  return Status::ok();
}

Status static_smem_bytes(const DeviceInfo& device, CUfunction fn, int* bytes) {
  const DriverApi* api = nullptr;
  TKA_RETURN_IF_ERROR(driver(&api));
  ScopedContext ctx(api, device.context);
  TKA_RETURN_IF_ERROR(ctx.status());
  *bytes = 0;
  return TKA_CU(api, cuFuncGetAttribute, bytes, CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, fn);
}

Status resident_ctas_per_sm(const DeviceInfo& device, CUfunction fn, int threads, int dynamic_smem, const char* what,
                            int* per_sm) {
  const DriverApi* api = nullptr;
  TKA_RETURN_IF_ERROR(driver(&api));
  ScopedContext ctx(api, device.context);
  TKA_RETURN_IF_ERROR(ctx.status());
  *per_sm = 0;
  TKA_RETURN_IF_ERROR(
      TKA_CU(api, cuOccupancyMaxActiveBlocksPerMultiprocessor, per_sm, fn, threads, static_cast<size_t>(dynamic_smem)));
  if (*per_sm < 1) return make_error(TKA_ERROR_UNSUPPORTED, "{} kernel: no CTA fits on an SM", what);
  return Status::ok();
}

}  // namespace tka
