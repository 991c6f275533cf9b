// Test helpers around the CUDA runtime and DLPack: skipping without a GPU, device buffers that free
// themselves, DLTensors that own their shape and strides, and RAII for the library's handles.
// Helpers throw std::runtime_error on failure; GoogleTest reports an exception as a test failure
// with its message, which keeps the test bodies about the contract.
#ifndef TOPKATTN_TESTS_GPU_UTIL_H_
#define TOPKATTN_TESTS_GPU_UTIL_H_

#include <cuda_runtime_api.h>
#include <dlpack/dlpack.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "topkattn/topkattn.h"

namespace tka_test {

// True when a CUDA device can be used; otherwise `why` says what the runtime reported.
inline bool gpu_present(std::string* why) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    *why = std::string("cudaGetDeviceCount failed: ") + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")";
    cudaGetLastError();  // not sticky, but clear it so later error checks start clean
    return false;
  }
  if (count == 0) {
    *why = "cudaGetDeviceCount returned 0 devices";
    return false;
  }
  return true;
}

// In CI there is no GPU: the GPU tests must report themselves skipped, saying why.
#define TKA_SKIP_WITHOUT_GPU()                                                       \
  do {                                                                               \
    std::string tka_why_;                                                            \
    if (!::tka_test::gpu_present(&tka_why_)) GTEST_SKIP() << "no GPU: " << tka_why_; \
  } while (0)

inline void cuda_ok(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

inline void tka_ok(tka_status st, const char* what) {
  if (st != TKA_SUCCESS)
    throw std::runtime_error(std::string(what) + ": " + tka_status_string(st) + ": " + tka_last_error());
}

// Runs body(0) .. body(n - 1) on n threads that start together; returns each one's failure ("" when
// it passed; an exception's message when one escaped).
inline std::vector<std::string> run_together(int n, const std::function<std::string(int)>& body) {
  std::vector<std::string> failures(static_cast<size_t>(n));
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i)
    threads.emplace_back([&, i] {
      ++ready;
      while (ready.load() < n) std::this_thread::yield();
      try {
        failures[static_cast<size_t>(i)] = body(i);
      } catch (const std::exception& e) {
        failures[static_cast<size_t>(i)] = e.what();
      }
    });
  for (std::thread& t : threads) t.join();
  return failures;
}

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes) cuda_ok(cudaMalloc(&ptr_, bytes), "cudaMalloc");
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept { swap(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    DeviceBuffer(std::move(o)).swap(*this);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (ptr_) cudaFree(ptr_);
  }
  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }

  template <class T>
  static DeviceBuffer from(const std::vector<T>& host) {
    DeviceBuffer b(host.size() * sizeof(T));
    if (!host.empty()) cuda_ok(cudaMemcpy(b.ptr_, host.data(), b.bytes_, cudaMemcpyHostToDevice), "cudaMemcpy H2D");
    return b;
  }
  template <class T>
  std::vector<T> download() const {
    std::vector<T> host(bytes_ / sizeof(T));
    if (!host.empty()) cuda_ok(cudaMemcpy(host.data(), ptr_, bytes_, cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
    return host;
  }
  // The same on `stream` alone (download's copy on the legacy stream waits for every blocking
  // stream: threads that must overlap copy on their own).
  template <class T>
  std::vector<T> download_on(cudaStream_t stream) const {
    std::vector<T> host(bytes_ / sizeof(T));
    if (!host.empty())
      cuda_ok(cudaMemcpyAsync(host.data(), ptr_, bytes_, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync D2H");
    cuda_ok(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    return host;
  }

 private:
  void swap(DeviceBuffer& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(bytes_, o.bytes_);
  }
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

class CudaStream {
 public:
  // A blocking stream: the tests poison and fill buffers with cudaMemset / cudaMemcpy on the
  // legacy default stream, which may still be running when they return; a non-blocking stream
  // would let a kernel start before its inputs are written or have its outputs re-poisoned.
  CudaStream() { cuda_ok(cudaStreamCreateWithFlags(&s_, cudaStreamDefault), "cudaStreamCreate"); }
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;
  ~CudaStream() { cudaStreamDestroy(s_); }
  cudaStream_t get() const { return s_; }
  // The library's stream type is the same CUstream_st*.
  tka_stream tka() const { return reinterpret_cast<tka_stream>(s_); }

 private:
  cudaStream_t s_ = nullptr;
};

inline DLDataType dl_type(DLDataTypeCode code, int bits) {
  DLDataType t;
  t.code = static_cast<uint8_t>(code);
  t.bits = static_cast<uint8_t>(bits);
  t.lanes = 1;
  return t;
}
inline DLDataType dl_half(tka_dtype d) { return dl_type(d == TKA_DTYPE_BF16 ? kDLBfloat : kDLFloat, 16); }
inline DLDataType dl_f32() { return dl_type(kDLFloat, 32); }
inline DLDataType dl_i32() { return dl_type(kDLInt, 32); }
inline DLDataType dl_i64() { return dl_type(kDLInt, 64); }

inline std::vector<int64_t> row_major_strides(const std::vector<int64_t>& shape) {
  std::vector<int64_t> s(shape.size(), 1);
  for (size_t i = shape.size(); i-- > 1;) s[i - 1] = s[i] * shape[i];
  return s;
}

// A DLTensor that owns its shape and strides (so tests can mutate one field of a valid tensor).
// Changing the number of dimensions goes through set_dims, which re-points the arrays.
class TensorArg {
 public:
  TensorArg() { relink(); }
  TensorArg(void* data, DLDataType dtype, std::vector<int64_t> shape, std::vector<int64_t> strides = {},
            DLDevice device = DLDevice{kDLCUDA, 0}) {
    t_.data = data;
    t_.dtype = dtype;
    t_.device = device;
    t_.byte_offset = 0;
    set_dims(std::move(shape), std::move(strides));
  }
  TensorArg(const TensorArg& o) : shape(o.shape), strides(o.strides), t_(o.t_), null_strides_(o.null_strides_) {
    relink();
  }
  TensorArg& operator=(const TensorArg& o) {
    shape = o.shape;
    strides = o.strides;
    t_ = o.t_;
    null_strides_ = o.null_strides_;
    relink();
    return *this;
  }

  void set_dims(std::vector<int64_t> new_shape, std::vector<int64_t> new_strides = {}) {
    shape = std::move(new_shape);
    strides = new_strides.empty() ? row_major_strides(shape) : std::move(new_strides);
    relink();
  }
  // DLPack: NULL strides mean compact row-major.
  void use_null_strides() {
    null_strides_ = true;
    relink();
  }

  DLTensor& dl() { return t_; }
  const DLTensor* get() const { return &t_; }

  std::vector<int64_t> shape, strides;  // mutate elements freely; resize only via set_dims

 private:
  void relink() {
    t_.ndim = static_cast<int>(shape.size());
    t_.shape = shape.empty() ? nullptr : shape.data();
    t_.strides = (null_strides_ || strides.empty()) ? nullptr : strides.data();
  }
  DLTensor t_{};
  bool null_strides_ = false;
};

struct RuntimeDeleter {
  void operator()(tka_runtime* r) const { tka_runtime_destroy(r); }
};
struct PlanDeleter {
  void operator()(tka_plan* p) const { tka_plan_destroy(p); }
};
using RuntimePtr = std::unique_ptr<tka_runtime, RuntimeDeleter>;
using PlanPtr = std::unique_ptr<tka_plan, PlanDeleter>;

// A runtime on GPU 0 with the default options (cache directory from the environment).
inline RuntimePtr default_runtime() {
  tka_runtime* rt = nullptr;
  tka_ok(tka_runtime_create(nullptr, &rt), "tka_runtime_create");
  return RuntimePtr(rt);
}

// A runtime that needs no GPU: its plans compile for sm_`sm` into `cache_dir`, and their run
// validates the tensors, then returns TKA_ERROR_NO_DEVICE.
inline RuntimePtr compile_only_runtime(const std::string& cache_dir, int sm = 90) {
  tka_runtime_options o;
  tka_runtime_options_init(&o);
  o.compile_only_sm = sm;
  o.cache_dir = cache_dir.c_str();
  tka_runtime* rt = nullptr;
  tka_ok(tka_runtime_create(&o, &rt), "tka_runtime_create (compile-only)");
  return RuntimePtr(rt);
}

}  // namespace tka_test

#endif  // TOPKATTN_TESTS_GPU_UTIL_H_
