#include "tools/run_common.h"

#include <chrono>

#include "autotune/gpu_timing.h"

namespace tka::tools {

int create_plan_reporting(tka_runtime* rt, const tka_op_desc& desc, tka_plan** plan) {
  tka_counters before, after;
  CHECK_TKA(tka_get_counters(&before));
  const auto t0 = std::chrono::steady_clock::now();
  CHECK_TKA(tka_plan_create(rt, &desc, plan));
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  CHECK_TKA(tka_get_counters(&after));
  std::printf("plan %s\n  created in %.2f ms, %llu NVRTC compiles\n", tka_plan_spec(*plan), ms,
              static_cast<unsigned long long>(after.nvrtc_compiles - before.nvrtc_compiles));
  return 0;
}

int time_against_floor(const DriverApi* api, const tka_plan* plan, const tka_tensors& t, void* ws, int reps,
                       double bytes, int batch, int seq_len, int k) {
  CUevent e0, e1;
  CHECK_STATUS(TKA_CU(api, cuEventCreate, &e0, 0));
  CHECK_STATUS(TKA_CU(api, cuEventCreate, &e1, 0));
  for (int i = 0; i < 3; ++i) CHECK_TKA(tka_plan_run(plan, &t, ws, nullptr));
  api->cuEventRecord(e0, nullptr);
  for (int i = 0; i < reps; ++i) CHECK_TKA(tka_plan_run(plan, &t, ws, nullptr));
  api->cuEventRecord(e1, nullptr);
  api->cuEventSynchronize(e1);
  float ms = 0;
  api->cuEventElapsedTime(&ms, e0, e1);
  api->cuEventDestroy(e0);
  api->cuEventDestroy(e1);
  const double us = ms * 1e3 / reps;
  double bw = 0;
  CHECK_STATUS(copy_bandwidth(api, &bw));
  const double floor_us = bytes / bw * 1e6;
  std::printf("  time: %.1f us per step (B=%d, N<=%d, k=%d); bytes floor %.1f us at %.0f GB/s copy: %.2fx\n", us, batch,
              seq_len, k, floor_us, bw / 1e9, us / floor_us);
  return 0;
}

}  // namespace tka::tools
