#include "autotune/gpu_timing.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>

namespace tka {
namespace {

uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<uint16_t>((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

uint16_t to_fp16(float f) {  // |f| < 1 and not tiny: normal halves only
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t sign = (u >> 16) & 0x8000;
  const int exp = static_cast<int>((u >> 23) & 0xff) - 127 + 15;
  const uint32_t mant = (u >> 13) & 0x3ff;
  return static_cast<uint16_t>(sign | (static_cast<uint32_t>(exp) << 10) | mant);
}

// Holds the legacy stream behind a flag in host memory until the host has enqueued a group of
// timed calls, so that the events time the GPU's work, not the host's pace: without it, a call
// whose host side (launches, argument checks) outlasts its kernels leaves the GPU idle between its
// events, and short kernels time the host. Groups are kHeldRepeats calls, so the launch queue never
// fills while the GPU waits (a full queue would block the very host that must release it). A
// driver without stream memory operations, or a device that refuses the wait, times unheld.
class StreamHold {
 public:
  static constexpr int kHeldRepeats = 8;

  explicit StreamHold(const DriverApi* api) : api_(api) {
    if (!api->cuMemHostAlloc || !api->cuMemFreeHost || !api->cuMemHostGetDevicePointer || !api->cuStreamWaitValue32)
      return;
    void* host = nullptr;
    if (api->cuMemHostAlloc(&host, sizeof(uint32_t), CU_MEMHOSTALLOC_DEVICEMAP) != CUDA_SUCCESS) return;
    flag_ = static_cast<uint32_t*>(host);
    *flag_ = 0;
    if (api->cuMemHostGetDevicePointer(&device_flag_, host, 0) != CUDA_SUCCESS) device_flag_ = 0;
  }
  ~StreamHold() {
    if (!flag_) return;
    release();
    (void)api_->cuStreamSynchronize(nullptr);  // the GPU is past every wait before the flag goes
    (void)api_->cuMemFreeHost(flag_);
  }
  StreamHold(const StreamHold&) = delete;
  StreamHold& operator=(const StreamHold&) = delete;

  // What the stream does next waits until release(); without the means, nothing waits.
  void hold() {
    if (!device_flag_ || held_) return;
    if (api_->cuStreamWaitValue32(nullptr, device_flag_, target_ + 1, CU_STREAM_WAIT_VALUE_GEQ) != CUDA_SUCCESS) {
      device_flag_ = 0;  // refused (not supported here): time unheld from now on
      return;
    }
    ++target_;
    held_ = true;
  }
  void release() {
    if (!held_) return;
    __atomic_store_n(flag_, target_, __ATOMIC_RELEASE);
    held_ = false;
  }

 private:
  const DriverApi* api_;
  uint32_t* flag_ = nullptr;
  CUdeviceptr device_flag_ = 0;
  uint32_t target_ = 0;
  bool held_ = false;
};

}  // namespace

DeviceBuffer::~DeviceBuffer() {
  if (ptr_) api_->cuMemFree(ptr_);
}

Status DeviceBuffer::allocate(const DriverApi* api, size_t bytes) {
  if (ptr_) (void)api_->cuMemFree(ptr_), ptr_ = 0;  // a second call replaces the buffer
  api_ = api;
  bytes_ = std::max<size_t>(bytes, 256);
  const CUresult r = api->cuMemAlloc(&ptr_, bytes_);
  if (r == CUDA_ERROR_OUT_OF_MEMORY) {
    ptr_ = 0;
    return make_error(TKA_ERROR_OUT_OF_MEMORY, "cuMemAlloc: {} bytes: out of device memory", bytes_);
  }
  return cuda_status(r, "cuMemAlloc");
}

Status time_each(const DriverApi* api, int warmup, int repeats, const std::function<Status(int)>& launch,
                 std::vector<double>* us) {
  for (int i = 0; i < warmup; ++i) TKA_RETURN_IF_ERROR(launch(i));
  std::vector<CUevent> events(2 * repeats, nullptr);
  Status status;
  for (CUevent& e : events) {
    status = TKA_CU(api, cuEventCreate, &e, 0);
    if (!status.is_ok()) break;
  }
  {
    StreamHold hold(api);  // released (and waited for) on every path out of this block
    for (int r = 0; status.is_ok() && r < repeats; ++r) {
      if (r % StreamHold::kHeldRepeats == 0) {
        hold.release();  // the GPU runs the last group while the host enqueues the next one
        hold.hold();
      }
      status = TKA_CU(api, cuEventRecord, events[2 * r], nullptr);
      if (status.is_ok()) status = launch(warmup + r);
      if (status.is_ok()) status = TKA_CU(api, cuEventRecord, events[2 * r + 1], nullptr);
    }
  }
  if (status.is_ok()) status = TKA_CU(api, cuStreamSynchronize, nullptr);
  us->clear();
  for (int r = 0; status.is_ok() && r < repeats; ++r) {
    float ms = 0;
    status = TKA_CU(api, cuEventElapsedTime, &ms, events[2 * r], events[2 * r + 1]);
    us->push_back(ms * 1e3);
  }
  for (CUevent e : events)
    if (e) api->cuEventDestroy(e);
  return status;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int rotation_copies(size_t l2_bytes, double bytes, int most) {
  return static_cast<int>(
      std::clamp<double>(std::ceil(4.0 * static_cast<double>(l2_bytes) / std::max(bytes, 1.0)), 1, std::max(most, 1)));
}

Status copy_bandwidth(const DriverApi* api, double* bytes_per_second) {
  // Once per context: a tuning run asks for every shape it tunes, and each measurement copies
  // 12 GiB through two fresh 1 GiB buffers.
  static std::mutex mu;
  static std::map<CUcontext, double> measured;
  CUcontext ctx = nullptr;
  TKA_RETURN_IF_ERROR(TKA_CU(api, cuCtxGetCurrent, &ctx));
  {
    std::lock_guard<std::mutex> lock(mu);
    const auto hit = measured.find(ctx);
    if (hit != measured.end()) return *bytes_per_second = hit->second, Status::ok();
  }
  const size_t bytes = size_t(1) << 30;
  DeviceBuffer a, b;
  TKA_RETURN_IF_ERROR(a.allocate(api, bytes));
  TKA_RETURN_IF_ERROR(b.allocate(api, bytes));
  std::vector<double> us;
  TKA_RETURN_IF_ERROR(time_each(
      api, 1, 5, [&](int) { return TKA_CU(api, cuMemcpyDtoDAsync, b.ptr(), a.ptr(), bytes, nullptr); }, &us));
  *bytes_per_second = 2.0 * bytes / (median(us) * 1e-6);
  std::lock_guard<std::mutex> lock(mu);
  measured[ctx] = *bytes_per_second;
  return Status::ok();
}

Status fill_random(const DriverApi* api, tka_dtype dtype, uint64_t seed, CUdeviceptr dst, size_t count) {
  if (dtype != TKA_DTYPE_FP32) return fill_random_halves(api, dtype == TKA_DTYPE_BF16, seed, dst, count);
  const size_t block = std::min<size_t>(count, size_t(8) << 20);  // 8 Mi values = 32 MiB
  std::vector<float> host(block);
  uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;
  for (float& f : host) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    f = static_cast<float>(static_cast<int64_t>(x >> 11) - (int64_t{1} << 52)) / static_cast<float>(int64_t{1} << 52);
  }
  TKA_RETURN_IF_ERROR(TKA_CU(api, cuMemcpyHtoD, dst, host.data(), block * 4));
  for (size_t done = block; done < count;) {
    const size_t n = std::min(done, count - done);
    TKA_RETURN_IF_ERROR(TKA_CU(api, cuMemcpyDtoDAsync, dst + done * 4, dst, n * 4, nullptr));
    done += n;
  }
  return TKA_CU(api, cuStreamSynchronize, nullptr);
}

Status fill_random_halves(const DriverApi* api, bool bf16, uint64_t seed, CUdeviceptr dst, size_t count) {
  const size_t block = std::min<size_t>(count, size_t(16) << 20);  // 16 Mi values = 32 MiB
  std::vector<uint16_t> host(block);
  uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;
  for (uint16_t& h : host) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;  // xorshift64
    // (-1, 1) away from zero: magnitude in [1/64, 1).
    const float mag = 1.0f / 64 + (63.0f / 64) * static_cast<float>(x >> 40) / static_cast<float>(1 << 24);
    const float f = (x & 1) ? -mag : mag;
    h = bf16 ? to_bf16(f) : to_fp16(f);
  }
  TKA_RETURN_IF_ERROR(TKA_CU(api, cuMemcpyHtoD, dst, host.data(), block * 2));
  for (size_t done = block; done < count;) {  // doubling copies of what is already there
    const size_t n = std::min(done, count - done);
    TKA_RETURN_IF_ERROR(TKA_CU(api, cuMemcpyDtoDAsync, dst + done * 2, dst, n * 2, nullptr));
    done += n;
  }
  return TKA_CU(api, cuStreamSynchronize, nullptr);
}

DLTensor device_tensor(void* data, DLDataType type, int ndim, int64_t* shape, int device_ordinal) {
  DLTensor x{};
  x.data = data, x.device = {kDLCUDA, device_ordinal}, x.ndim = ndim, x.dtype = type, x.shape = shape;
  return x;
}

}  // namespace tka
