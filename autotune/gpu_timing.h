// What timing on the GPU needs: owned device buffers, CUDA event timing, and the device's copy
// bandwidth (the denominator of every bytes floor). The caller makes the device's context current.
#pragma once
#include <dlpack/dlpack.h>

#include <cstddef>
#include <functional>
#include <vector>

#include "runtime/driver.h"

namespace tka {

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept : api_(o.api_), ptr_(o.ptr_), bytes_(o.bytes_) { o.ptr_ = 0; }
  DeviceBuffer& operator=(DeviceBuffer&&) = delete;
  DeviceBuffer(const DeviceBuffer&) = delete;

  // At least 256 bytes, 256-aligned; replaces (frees) what an earlier call allocated.
  Status allocate(const DriverApi* api, size_t bytes);
  CUdeviceptr ptr() const { return ptr_; }
  void* data() const { return reinterpret_cast<void*>(ptr_); }
  size_t bytes() const { return bytes_; }

 private:
  const DriverApi* api_ = nullptr;
  CUdeviceptr ptr_ = 0;
  size_t bytes_ = 0;
};

// A DLTensor over device memory of `device_ordinal` with compact strides (strides NULL), for a
// tuner's calls; `shape` must outlive it.
DLTensor device_tensor(void* data, DLDataType type, int ndim, int64_t* shape, int device_ordinal);

// Times `launch(i)` once per repeat with a pair of events around each, on the legacy stream;
// returns each repeat's microseconds. `warmup` untimed calls first.
Status time_each(const DriverApi* api, int warmup, int repeats, const std::function<Status(int)>& launch,
                 std::vector<double>* us);

double median(std::vector<double> values);

// How many copies of an input of `bytes` a tuner rotates over so that one pass over all of them
// moves four L2s (each timed run then finds its lines cold): ceil(4 L2 / bytes) in [1, most].
int rotation_copies(size_t l2_bytes, double bytes, int most);

// Device-to-device copy bandwidth in bytes per second (read + written), median of a few 1 GiB copies;
// measured once per context (the current one), then remembered.
Status copy_bandwidth(const DriverApi* api, double* bytes_per_second);

// Fills a buffer with pseudo-random 16-bit floats (bf16 or fp16) in (-1, 1), never zero: a
// 32 MiB random block is uploaded once and tiled by device copies, so filling is fast.
Status fill_random_halves(const DriverApi* api, bool bf16, uint64_t seed, CUdeviceptr dst, size_t count);

// The same in any of fp32, bf16 and fp16 (values of one random block, tiled).
Status fill_random(const DriverApi* api, tka_dtype dtype, uint64_t seed, CUdeviceptr dst, size_t count);

}  // namespace tka
