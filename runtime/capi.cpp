// The C API: argument checks, status codes and the thread-local error message around the runtime.
#include <cstring>
#include <exception>
#include <memory>
#include <new>

#include "common/log.h"
#include "common/settings.h"
#include "runtime/counters.h"
#include "runtime/decode_plan.h"
#include "runtime/fidelity_host.h"
#include "runtime/fidelity_plan.h"
#include "runtime/indexer_plan.h"
#include "runtime/runtime.h"
#include "runtime/select_plan.h"
#include "runtime/sparse_plan.h"

struct tka_plan {
  std::unique_ptr<tka::Plan> impl;
};

namespace tka {
namespace {

thread_local std::string t_last_error;

tka_status fail(const Status& s) {
  t_last_error = s.message();
  log(TKA_LOG_DEBUG, "{}: {}", tka_status_string(s.code()), s.message());
  return s.code();
}

tka_status finish(const Status& s) {
  if (s.is_ok()) return TKA_SUCCESS;
  return fail(s);
}

// No exception crosses the C boundary.
template <typename F>
tka_status guarded(F&& f) {
  try {
    return finish(f());
  } catch (const std::bad_alloc&) {
    return fail(Status(TKA_ERROR_OUT_OF_MEMORY, "host memory exhausted"));
  } catch (const std::exception& e) {
    return fail(make_error(TKA_ERROR_INTERNAL, "internal error: {}", e.what()));
  }
}

Status null_arg(const char* name) { return make_error(TKA_ERROR_NULL_POINTER, "{} is NULL", name); }

}  // namespace

Counters& counters() {
  static Counters c;
  return c;
}

}  // namespace tka

using tka::guarded;
using tka::Status;

extern "C" {

const char* tka_version(void) { return TOPKATTN_VERSION_STRING; }

int tka_abi_version(void) { return TKA_ABI_VERSION; }

const char* tka_status_string(tka_status status) {
  switch (status) {
    case TKA_SUCCESS:
      return "TKA_SUCCESS";
    case TKA_ERROR_INVALID_ARGUMENT:
      return "TKA_ERROR_INVALID_ARGUMENT";
    case TKA_ERROR_NULL_POINTER:
      return "TKA_ERROR_NULL_POINTER";
    case TKA_ERROR_UNSUPPORTED:
      return "TKA_ERROR_UNSUPPORTED";
    case TKA_ERROR_NO_DEVICE:
      return "TKA_ERROR_NO_DEVICE";
    case TKA_ERROR_NVRTC_UNAVAILABLE:
      return "TKA_ERROR_NVRTC_UNAVAILABLE";
    case TKA_ERROR_COMPILE:
      return "TKA_ERROR_COMPILE";
    case TKA_ERROR_CUDA:
      return "TKA_ERROR_CUDA";
    case TKA_ERROR_CACHE_MISS:
      return "TKA_ERROR_CACHE_MISS";
    case TKA_ERROR_TENSOR_DTYPE:
      return "TKA_ERROR_TENSOR_DTYPE";
    case TKA_ERROR_TENSOR_SHAPE:
      return "TKA_ERROR_TENSOR_SHAPE";
    case TKA_ERROR_TENSOR_STRIDE:
      return "TKA_ERROR_TENSOR_STRIDE";
    case TKA_ERROR_TENSOR_ALIGNMENT:
      return "TKA_ERROR_TENSOR_ALIGNMENT";
    case TKA_ERROR_TENSOR_DEVICE:
      return "TKA_ERROR_TENSOR_DEVICE";
    case TKA_ERROR_WORKSPACE:
      return "TKA_ERROR_WORKSPACE";
    case TKA_ERROR_OUT_OF_MEMORY:
      return "TKA_ERROR_OUT_OF_MEMORY";
    case TKA_ERROR_INTERNAL:
      return "TKA_ERROR_INTERNAL";
  }
  return "TKA_ERROR_UNKNOWN_STATUS";
}

const char* tka_last_error(void) { return tka::t_last_error.c_str(); }

void tka_runtime_options_init(tka_runtime_options* options) {
  if (!options) return;
  std::memset(options, 0, sizeof(*options));
  options->log_level = static_cast<tka_log_level>(tka::settings_log_level());
}

tka_status tka_runtime_create(const tka_runtime_options* options, tka_runtime** runtime) {
  return guarded([&] {
    if (!runtime) return tka::null_arg("runtime (output)");
    *runtime = nullptr;
    tka_runtime_options defaults;
    tka_runtime_options_init(&defaults);
    std::unique_ptr<tka::Runtime> rt;
    TKA_RETURN_IF_ERROR(tka::Runtime::create(options ? *options : defaults, &rt));
    *runtime = static_cast<tka_runtime*>(rt.release());
    return Status::ok();
  });
}

tka_status tka_runtime_destroy(tka_runtime* runtime) {
  delete static_cast<tka::Runtime*>(runtime);
  return TKA_SUCCESS;
}

const char* tka_runtime_cache_dir(const tka_runtime* runtime) {
  if (!runtime) return "";
  return const_cast<tka_runtime*>(runtime)->disk_cache().dir().c_str();
}

tka_status tka_get_counters(tka_counters* out) {
  return guarded([&] {
    if (!out) return tka::null_arg("counters");
    const tka::Counters& c = tka::counters();
    out->nvrtc_compiles = c.nvrtc_compiles;
    out->disk_hits = c.disk_hits;
    out->memory_hits = c.memory_hits;
    out->corrupt_entries = c.corrupt_entries;
    out->compile_ms = c.compile_us / 1000.0;
    out->tuned_plans = c.tuned_plans;
    out->default_plans = c.default_plans;
    out->online_tunings = c.online_tunings;
    return Status::ok();
  });
}

void tka_op_desc_init(tka_op_desc* desc, tka_op_kind op) {
  if (!desc) return;
  std::memset(desc, 0, sizeof(*desc));
  desc->op = op;
  desc->decode.dtype = TKA_DTYPE_BF16;
  desc->decode.q_len = 1;
  desc->decode.max_batch = 1;
  desc->select.dtype = TKA_DTYPE_FP32;
  desc->select.max_rows = 1;
  desc->select.sorted = 1;
  desc->fidelity.dtype = TKA_DTYPE_BF16;
  desc->fidelity.max_batch = 1;
  desc->sparse.dtype = TKA_DTYPE_BF16;
  desc->sparse.q_len = 1;
  desc->sparse.max_batch = 1;
  desc->indexer.key_dtype = TKA_DTYPE_BF16;
  desc->indexer.index_head_dim = 128;
  desc->indexer.q_len = 1;
  desc->indexer.max_batch = 1;
  desc->indexer.attention = desc->sparse;
}

void tka_tensors_init(tka_tensors* tensors) {
  if (tensors) std::memset(tensors, 0, sizeof(*tensors));
}

tka_status tka_plan_create(tka_runtime* runtime, const tka_op_desc* desc, tka_plan** plan) {
  return guarded([&] {
    if (!plan) return tka::null_arg("plan (output)");
    *plan = nullptr;
    if (!runtime) return tka::null_arg("runtime");
    if (!desc) return tka::null_arg("desc");
    auto p = std::make_unique<tka_plan>();
    switch (desc->op) {
      case TKA_OP_TOPK_DECODE: {
        std::unique_ptr<tka::DecodePlan> decode;
        TKA_RETURN_IF_ERROR(tka::DecodePlan::create(*runtime, desc->decode, &decode));
        p->impl = std::move(decode);
        break;
      }
      case TKA_OP_TOPK_SELECT: {
        std::unique_ptr<tka::SelectPlan> select;
        TKA_RETURN_IF_ERROR(tka::SelectPlan::create(*runtime, desc->select, &select));
        p->impl = std::move(select);
        break;
      }
      case TKA_OP_FIDELITY: {
        std::unique_ptr<tka::FidelityPlan> fidelity;
        TKA_RETURN_IF_ERROR(tka::FidelityPlan::create(*runtime, desc->fidelity, &fidelity));
        p->impl = std::move(fidelity);
        break;
      }
      case TKA_OP_SPARSE_ATTENTION: {
        std::unique_ptr<tka::SparsePlan> sparse;
        TKA_RETURN_IF_ERROR(tka::SparsePlan::create(*runtime, desc->sparse, &sparse));
        p->impl = std::move(sparse);
        break;
      }
      case TKA_OP_INDEXER_SCORES:
      case TKA_OP_INDEXER_DECODE: {
        std::unique_ptr<tka::IndexerPlan> indexer;
        TKA_RETURN_IF_ERROR(
            tka::IndexerPlan::create(*runtime, desc->indexer, desc->op == TKA_OP_INDEXER_DECODE, &indexer));
        p->impl = std::move(indexer);
        break;
      }
      default:
        return tka::make_error(TKA_ERROR_INVALID_ARGUMENT, "desc.op: {} is not an operation", int(desc->op));
    }
    *plan = p.release();
    return Status::ok();
  });
}

tka_status tka_plan_destroy(tka_plan* plan) {
  delete plan;
  return TKA_SUCCESS;
}

tka_status tka_plan_workspace_size(const tka_plan* plan, size_t* bytes) {
  return guarded([&] {
    if (!plan) return tka::null_arg("plan");
    if (!bytes) return tka::null_arg("bytes");
    *bytes = plan->impl->workspace_bytes();
    return Status::ok();
  });
}

tka_status tka_plan_max_k(const tka_plan* plan, int* max_k) {
  return guarded([&] {
    if (!plan) return tka::null_arg("plan");
    if (!max_k) return tka::null_arg("max_k");
    *max_k = plan->impl->max_k();
    return Status::ok();
  });
}

const char* tka_plan_spec(const tka_plan* plan) { return plan ? plan->impl->spec_text().c_str() : ""; }

tka_status tka_plan_run(const tka_plan* plan, const tka_tensors* tensors, void* workspace, tka_stream stream) {
  return guarded([&] {
    if (!plan) return tka::null_arg("plan");
    if (!tensors) return tka::null_arg("tensors");
    return plan->impl->run(*tensors, workspace, reinterpret_cast<CUstream>(stream));
  });
}

tka_status tka_fidelity_host(const tka_fidelity_desc* desc, const tka_tensors* tensors) {
  return guarded([&] {
    if (!desc) return tka::null_arg("desc");
    if (!tensors) return tka::null_arg("tensors");
    return tka::fidelity_host(*desc, *tensors);
  });
}

}  // extern "C"
