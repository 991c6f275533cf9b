// Probe: exact top-k of few long rows by one cooperative grid, each CTA holding its chunk of a row
// in shared memory, three radix levels (11, 11, 10 bits) each one smem histogram -> global atomics
// -> grid barrier -> every CTA of the row finds the same digit; then one more barrier for the
// chunks' counts, and each CTA writes its selected keys in index order (ties to the lower index).
// Measures what the split selection's chain (histogram, classify, finish kernels) could become.
//
//   nvcc -O3 -arch=sm_90a -std=c++17 -o coop_select bench/probes/coop_select.cu
//   ./coop_select                      # rows x n x k x chunks per row, times and checks
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "common/grid_barrier.cuh"
#include "cuda_check.h"

namespace cg = cooperative_groups;
using tka::u32;

__host__ __device__ inline u32 order_key(float s) {
  if (s != s) return 0u;
  if (s == 0.0f) s = 0.0f;
  u32 u;
  std::memcpy(&u, &s, 4);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;

struct Work {
  u32* hist;    // [rows][3][2048]
  int* counts;  // [rows][chunks][2]
};

// Suffix search over the 2048 bins in smem: the bin b where count(bins > b) < need <= count(bins >= b).
__device__ void find_digit(const u32* h, int need, int* s_digit, int* s_above, int* s_scan) {
  // each thread sums 4 bins (2048 / 512), from the top
  const int t = threadIdx.x;
  const int top = 2047 - 4 * t;  // thread t covers bins top, top-1, top-2, top-3
  int local = 0;
#pragma unroll
  for (int j = 0; j < 4; ++j) local += h[top - j];
  // inclusive scan over threads (thread 0 = highest bins)
  const int lane = t & 31, warp = t >> 5;
  int v = local;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int n = __shfl_up_sync(0xffffffffu, v, o);
    if (lane >= o) v += n;
  }
  if (lane == 31) s_scan[warp] = v;
  __syncthreads();
  if (warp == 0) {
    int x = lane < kWarps ? s_scan[lane] : 0;
    int xs = x;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int n = __shfl_up_sync(0xffffffffu, xs, o);
      if (lane >= o) xs += n;
    }
    if (lane < kWarps) s_scan[lane] = xs - x;
  }
  __syncthreads();
  int before = s_scan[warp] + v - local;  // keys in bins above this thread's four
  if (before < need && before + local >= need) {
    for (int j = 0; j < 4; ++j) {
      const int c = h[top - j];
      if (before + c >= need) {
        *s_digit = top - j;
        *s_above = before;
        break;
      }
      before += c;
    }
  }
  __syncthreads();
}

// kOwn: the project's grid barrier (common/grid_barrier.cuh); else cooperative_groups' grid.sync.
template <bool kOwn>
__device__ __forceinline__ void sync_all(cg::grid_group& grid) {
  if constexpr (kOwn)
    tka::grid_barrier();
  else
    grid.sync();
}

template <bool kOwn>
__global__ void __launch_bounds__(kThreads, 1)
    coop_topk(const float* __restrict__ x, int n, int k, int chunk, Work w, int* __restrict__ out_idx,
              float* __restrict__ out_val) {
  cg::grid_group grid = cg::this_grid();
  extern __shared__ __align__(16) u32 keys[];  // [chunk]
  __shared__ u32 h[2048];
  __shared__ int s_scan[33];
  __shared__ int s_digit, s_above;
  const int c = blockIdx.x, chunks = gridDim.x, row = blockIdx.y;
  const int begin = c * chunk, end = min(n, begin + chunk), len = max(0, end - begin);
  u32* rh = w.hist + static_cast<long long>(row) * 3 * 2048;
  // zero this CTA's share of the row's histograms
  for (int i = c * kThreads + threadIdx.x; i < 3 * 2048; i += chunks * kThreads) rh[i] = 0;
  for (int i = threadIdx.x; i < 2048; i += kThreads) h[i] = 0;
  // load the chunk (float4), keys into smem
  const float* xr = x + static_cast<long long>(row) * n + begin;
  for (int i = 4 * threadIdx.x; i < len; i += 4 * kThreads) {
    if (i + 3 < len) {
      const float4 v = __ldcs(reinterpret_cast<const float4*>(xr + i));
      keys[i] = order_key(v.x), keys[i + 1] = order_key(v.y), keys[i + 2] = order_key(v.z),
      keys[i + 3] = order_key(v.w);
    } else {
      for (int j = i; j < len; ++j) keys[j] = order_key(xr[j]);
    }
  }
  __syncthreads();
  int need = min(k, n);  // keys still to take at and below the prefix
  u32 prefix = 0;        // decided high bits
  int decided = 0;       // how many high bits are decided
  bool done = need <= 0 || need >= n;
  if (need >= n) decided = 0;  // everything: prefix of 0 bits, all keys "equal"
  const int shifts[3] = {21, 10, 0}, widths[3] = {11, 11, 10};
  for (int level = 0; level < 3; ++level) {
    const int shift = shifts[level];
    if (!done) {
      for (int i = threadIdx.x; i < len; i += kThreads) {
        const u32 key = keys[i];
        if (decided == 0 || (key >> (32 - decided)) == (prefix >> (32 - decided)))
          atomicAdd(&h[(key >> shift) & ((1u << widths[level]) - 1)], 1u);
      }
      __syncthreads();
    }
    if (level == 0) sync_all<kOwn>(grid);  // zeroed everywhere before anyone adds
    if (!done) {
      u32* gh = rh + level * 2048;
      for (int i = threadIdx.x; i < 2048; i += kThreads)
        if (h[i]) atomicAdd(&gh[i], h[i]), h[i] = 0;
    }
    sync_all<kOwn>(grid);
    if (!done) {
      const u32* gh = rh + level * 2048;
      for (int i = threadIdx.x; i < 2048; i += kThreads) h[i] = __ldcg(&gh[i]);
      __syncthreads();
      find_digit(h, need, &s_digit, &s_above, s_scan);
      const int digit = s_digit;
      const int in_bin = static_cast<int>(h[digit]);
      need -= s_above;
      prefix |= static_cast<u32>(digit) << shift;
      decided += widths[level];
      done = in_bin == need;  // every key with this prefix is selected: no finer level needed
      __syncthreads();
      for (int i = threadIdx.x; i < 2048; i += kThreads) h[i] = 0;
      __syncthreads();
    }
  }
  // Keys above the prefix are selected; of those equal to it, the first `need` in index order.
  auto cmp = [&](u32 key) {  // 1: above, 0: equal, -1: below
    if (decided == 0) return 0;
    const u32 a = key >> (32 - decided), b = prefix >> (32 - decided);
    return a > b ? 1 : (a == b ? 0 : -1);
  };
  int gt = 0, eq = 0;
  for (int i = threadIdx.x; i < len; i += kThreads) {
    const int r = cmp(keys[i]);
    gt += r > 0, eq += r == 0;
  }
  // block sums
  {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) gt += __shfl_xor_sync(0xffffffffu, gt, o), eq += __shfl_xor_sync(0xffffffffu, eq, o);
    __shared__ int sg[kWarps], se[kWarps];
    if (lane == 0) sg[warp] = gt, se[warp] = eq;
    __syncthreads();
    if (threadIdx.x == 0) {
      int a = 0, b = 0;
      for (int i = 0; i < kWarps; ++i) a += sg[i], b += se[i];
      int* cnt = w.counts + 2LL * (static_cast<long long>(row) * chunks + c);
      cnt[0] = a, cnt[1] = b;
    }
  }
  sync_all<kOwn>(grid);
  // offsets from the chunks before this one
  __shared__ int s_off, s_eq_take_before;
  if (threadIdx.x < 32) {
    int gsum = 0, esum = 0;
    for (int j = threadIdx.x; j < c; j += 32) {
      const int* cnt = w.counts + 2LL * (static_cast<long long>(row) * chunks + j);
      gsum += __ldcg(&cnt[0]), esum += __ldcg(&cnt[1]);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) gsum += __shfl_xor_sync(0xffffffffu, gsum, o), esum += __shfl_xor_sync(0xffffffffu, esum, o);
    if (threadIdx.x == 0) s_off = gsum + min(esum, need), s_eq_take_before = min(esum, need);
  }
  __syncthreads();
  // compaction in index order: tiles of kThreads keys
  int out = s_off, eq_taken = s_eq_take_before;
  const int kk = min(k, n);
  int* oi = out_idx + static_cast<long long>(row) * k;
  float* ov = out_val + static_cast<long long>(row) * k;
  for (int base = 0; base < len; base += kThreads) {
    const int i = base + threadIdx.x;
    int r = i < len ? cmp(keys[i]) : -1;
    // equal keys: take while eq_taken + rank among equal < need
    const int is_eq = r == 0;
    const unsigned beq = __ballot_sync(0xffffffffu, is_eq);
    __shared__ int weq[kWarps], wsel[kWarps];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) weq[warp] = __popc(beq);
    __syncthreads();
    int eq_before = eq_taken;
    for (int j = 0; j < warp; ++j) eq_before += weq[j];
    eq_before += __popc(beq & ((1u << lane) - 1));
    const bool sel = r > 0 || (is_eq && eq_before < need);
    const unsigned bs = __ballot_sync(0xffffffffu, sel);
    if (lane == 0) wsel[warp] = __popc(bs);
    __syncthreads();
    int pos = out;
    for (int j = 0; j < warp; ++j) pos += wsel[j];
    pos += __popc(bs & ((1u << lane) - 1));
    if (sel && pos < kk) oi[pos] = begin + i, ov[pos] = x[static_cast<long long>(row) * n + begin + i];
    int tot_eq = 0, tot_sel = 0;
    for (int j = 0; j < kWarps; ++j) tot_eq += weq[j], tot_sel += wsel[j];
    eq_taken += tot_eq, out += tot_sel;
    __syncthreads();
  }
}

static bool check(const std::vector<float>& x, int rows, int n, int k, const std::vector<int>& idx) {
  const int kk = std::min(k, n);
  for (int r = 0; r < rows; ++r) {
    std::vector<std::pair<u32, int>> v(n);
    for (int i = 0; i < n; ++i) v[i] = {order_key(x[(size_t)r * n + i]), i};
    std::sort(v.begin(), v.end(), [](auto a, auto b) { return a.first != b.first ? a.first > b.first : a.second < b.second; });
    std::vector<int> want(kk), got(idx.begin() + (size_t)r * k, idx.begin() + (size_t)r * k + kk);
    for (int i = 0; i < kk; ++i) want[i] = v[i].second;
    std::sort(want.begin(), want.end());
    if (!std::is_sorted(got.begin(), got.end()) || got != want) {
      std::printf("row %d mismatch\n", r);
      return false;
    }
  }
  return true;
}

int main() {
  int dev = 0, sms = 0;
  CHECK(cudaGetDevice(&dev));
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, dev));
  std::printf("%s, %d SMs\n", prop.name, sms);
  struct Case {
    int rows, n, k, chunks;
    const char* data;
  } cases[] = {{32, 131072, 2048, 8, "normal"},  {32, 131072, 2048, 4, "normal"}, {32, 32768, 2048, 8, "normal"},
               {32, 32768, 2048, 4, "normal"},   {32, 32768, 2048, 2, "normal"},  {8, 131072, 2048, 32, "normal"},
               {32, 32768, 2048, 8, "ties"},     {32, 32768, 1, 8, "normal"},     {32, 32768, 32768, 8, "normal"},
               {64, 32768, 2048, 4, "normal"}};
  std::printf("%5s %7s %5s %6s %7s  %9s  %s\n", "rows", "n", "k", "chunks", "data", "us/launch", "check");
  for (int own = 1; own >= 0; --own)
  for (const Case& cs : cases) {
    const void* fn = own ? reinterpret_cast<const void*>(coop_topk<true>) : reinterpret_cast<const void*>(coop_topk<false>);
    const int rows = cs.rows, n = cs.n, k = cs.k, chunks = cs.chunks;
    const int chunk = ((n + chunks - 1) / chunks + 3) / 4 * 4;
    const size_t smem = static_cast<size_t>(chunk) * 4;
    CHECK(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    int per_sm = 0;
    CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, fn, kThreads, smem));
    if (per_sm * sms < rows * chunks) {
      std::printf("%5d %7d %5d %6d %7s  does not fit (%d per SM)\n", rows, n, k, chunks, cs.data, per_sm);
      continue;
    }
    std::vector<float> hx(static_cast<size_t>(rows) * n);
    std::mt19937 gen(1234);
    std::normal_distribution<float> nd(0.f, 1.f);
    for (auto& v : hx) v = std::strcmp(cs.data, "ties") == 0 ? static_cast<float>(static_cast<int>(nd(gen) * 4)) : nd(gen);
    float *dx, *dv;
    int *di, *dc;
    u32* dh;
    CHECK(cudaMalloc(&dx, hx.size() * 4));
    CHECK(cudaMalloc(&dv, static_cast<size_t>(rows) * k * 4));
    CHECK(cudaMalloc(&di, static_cast<size_t>(rows) * k * 4));
    CHECK(cudaMalloc(&dh, static_cast<size_t>(rows) * 3 * 2048 * 4));
    CHECK(cudaMalloc(&dc, static_cast<size_t>(rows) * chunks * 2 * 4));
    CHECK(cudaMemcpy(dx, hx.data(), hx.size() * 4, cudaMemcpyHostToDevice));
    CHECK(cudaMemset(dh, 0x5a, static_cast<size_t>(rows) * 3 * 2048 * 4));  // garbage: the kernel zeroes
    CHECK(cudaMemset(di, 0xff, static_cast<size_t>(rows) * k * 4));
    Work w{dh, dc};
    int nn = n, kk = k, ch = chunk;
    void* args[] = {&dx, &nn, &kk, &ch, &w, &di, &dv};
    const dim3 grid(chunks, rows), block(kThreads);
    CHECK(cudaLaunchCooperativeKernel(fn, grid, block, args, smem, 0));
    CHECK(cudaDeviceSynchronize());
    std::vector<int> hi(static_cast<size_t>(rows) * k);
    CHECK(cudaMemcpy(hi.data(), di, hi.size() * 4, cudaMemcpyDeviceToHost));
    const bool ok = check(hx, rows, n, k, hi);
    cudaEvent_t a, b;
    CHECK(cudaEventCreate(&a));
    CHECK(cudaEventCreate(&b));
    const int reps = 200;
    for (int i = 0; i < 20; ++i)
      CHECK(cudaLaunchCooperativeKernel(fn, grid, block, args, smem, 0));
    CHECK(cudaEventRecord(a));
    for (int i = 0; i < reps; ++i)
      CHECK(cudaLaunchCooperativeKernel(fn, grid, block, args, smem, 0));
    CHECK(cudaEventRecord(b));
    CHECK(cudaEventSynchronize(b));
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, a, b));
    // the same launches in a graph: launch gaps as the library sees them under replay
    cudaStream_t st;
    CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    cudaGraph_t g;
    cudaGraphExec_t ge;
    float gms = -1;
    CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
    bool captured = true;
    for (int i = 0; i < 20; ++i)
      captured = captured &&
                 cudaLaunchCooperativeKernel(fn, grid, block, args, smem, st) == cudaSuccess;
    captured = cudaStreamEndCapture(st, &g) == cudaSuccess && captured;
    cudaGetLastError();
    if (captured && cudaGraphInstantiate(&ge, g, 0) == cudaSuccess) {
      CHECK(cudaGraphLaunch(ge, st));
      CHECK(cudaStreamSynchronize(st));
      CHECK(cudaEventRecord(a, st));
      for (int i = 0; i < 10; ++i) CHECK(cudaGraphLaunch(ge, st));
      CHECK(cudaEventRecord(b, st));
      CHECK(cudaEventSynchronize(b));
      CHECK(cudaEventElapsedTime(&gms, a, b));
      gms /= 200;
    }
    std::printf("%5d %7d %5d %6d %7s  %9.1f  graph %6.1f  %s  %s\n", rows, n, k, chunks, cs.data, 1000 * ms / reps,
                1000 * gms, ok ? "ok" : "WRONG", own ? "own barrier" : "cg grid.sync");
    CHECK(cudaFree(dx));
    CHECK(cudaFree(dv));
    CHECK(cudaFree(di));
    CHECK(cudaFree(dh));
    CHECK(cudaFree(dc));
  }
  return 0;
}
