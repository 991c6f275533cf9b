#include "runtime/runtime.h"

#include "common/log.h"
#include "common/settings.h"
#include "runtime/kernel_binary.h"

namespace tka {

Status Runtime::create(const tka_runtime_options& options, std::unique_ptr<Runtime>* out) {
  if (options.log_level < TKA_LOG_OFF || options.log_level > TKA_LOG_DEBUG)
    return make_error(TKA_ERROR_INVALID_ARGUMENT, "options.log_level: {} is not a log level (0..4)", int(options.log_level));
  if (options.compile_only_sm != 0 && options.compile_only_sm < 80)
    return make_error(TKA_ERROR_UNSUPPORTED, "options.compile_only_sm: sm_{} is not supported (80 or newer)", options.compile_only_sm);
  log_level_ref() = options.log_level;
  auto rt = std::unique_ptr<Runtime>(new tka_runtime());
  rt->compile_only_ = options.compile_only_sm != 0;
  rt->compile_only_sm_ = options.compile_only_sm;
  if (!rt->compile_only_) TKA_RETURN_IF_ERROR(open_device(options.device_ordinal, &rt->device_));
  rt->cache_ = std::make_unique<cache::DiskCache>(cache::resolve_root(options.cache_dir ? options.cache_dir : ""));
  *out = std::move(rt);
  return Status::ok();
}

Status Runtime::module_for(const codegen::RenderedSource& source, std::shared_ptr<const LoadedModule>* module) {
  const int sm = target_sm();
  const auto build = [&](KernelBinary* binary) { return get_kernel_binary(source, sm, *cache_, binary); };
  if (compile_only_) {
    KernelBinary binary;
    return build(&binary);
  }
  cache::CacheKey key;
  TKA_RETURN_IF_ERROR(cache_key_for(source, sm, &key));
  return get_loaded_module(device_, cache::to_hex(key.hash), build, module);
}

}  // namespace tka
