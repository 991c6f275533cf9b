// A stand-in libcuda.so.1 for the driver loader's tests (DriverLoader.* in driver_loader_test.cpp):
// every entry point of runtime/driver_functions.inc, generated from that list, none of which does
// anything; cuInit reports that there is no device. Variants (tests/CMakeLists.txt):
//   TKA_FAKE_NO_OPTIONAL        the optional entry points are left out (a driver without them);
//   -D<entry>=<another name>    that entry point is defined under another name, so its symbol is
//                               absent (a driver too old for it).
#include <cuda.h>

#define TKA_FAKE_EXPORT extern "C" __attribute__((visibility("default")))

// Written by hand below, not generated.
#define cuInit tka_fake_generated_cuInit
#define cuGetErrorName tka_fake_generated_cuGetErrorName

#define TKA_DRIVER_FN(name, ...) \
  TKA_FAKE_EXPORT CUresult name(__VA_ARGS__) { return CUDA_ERROR_NOT_SUPPORTED; }
#ifdef TKA_FAKE_NO_OPTIONAL
#define TKA_DRIVER_FN_OPTIONAL(name, ...)
#else
#define TKA_DRIVER_FN_OPTIONAL TKA_DRIVER_FN
#endif
#include "runtime/driver_functions.inc"
#undef cuInit
#undef cuGetErrorName

TKA_FAKE_EXPORT CUresult cuInit(unsigned int) { return CUDA_ERROR_NO_DEVICE; }

TKA_FAKE_EXPORT CUresult cuGetErrorName(CUresult r, const char** name) {
  *name = r == CUDA_ERROR_NO_DEVICE ? "CUDA_ERROR_NO_DEVICE" : "CUDA_ERROR_NOT_SUPPORTED";
  return CUDA_SUCCESS;
}
