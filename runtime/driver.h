// The CUDA Driver API, loaded with dlopen("libcuda.so.1") at first use so that the library loads
// on machines without a driver. Only runtime/ (and tests/tools through it) touch the GPU.
#pragma once
#include <cuda.h>  // types and constants only; nothing is linked

#include "common/status.h"

namespace tka {

struct DriverApi {
#define TKA_DRIVER_FN(name, ...) CUresult (*name)(__VA_ARGS__) = nullptr;
#include "runtime/driver_functions.inc"
#undef TKA_DRIVER_FN
};

// The loaded and initialised driver, or TKA_ERROR_NO_DEVICE naming why there is none.
Status driver(const DriverApi** api);

// Status from a CUresult: "cuModuleLoadData: CUDA_ERROR_INVALID_IMAGE (device kernel image is invalid)".
Status cuda_status(CUresult r, const char* what);

#define TKA_CU(api, call, ...) ::tka::cuda_status((api)->call(__VA_ARGS__), #call)

}  // namespace tka
