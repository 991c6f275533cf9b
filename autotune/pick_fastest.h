// The timing loop every tuner shares: each candidate's output must equal the default's (space[0])
// before its time counts; medians of CUDA event times; a winner must beat the default by 2% in an
// interleaved re-timing, else the default stays.
#pragma once
#include <llvm/Support/ThreadPool.h>
#include <llvm/Support/Threading.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "autotune/decode_tuner.h"
#include "autotune/gpu_timing.h"
#include "common/log.h"

namespace tka {

// A plan for every config of the space (create(config, &plan)); those the device cannot build are
// pruned with a note (their slot stays empty), but the default (space[0]) must build. *workspace:
// the largest any plan needs. jobs != 1 creates the plans on a thread pool (jobs <= 0: every
// core), for spaces whose variants each compile their own kernels (NVRTC dominates).
template <class Config, class Plan, class Create>
Status build_space_plans(const std::vector<Config>& space, Create create, std::vector<std::unique_ptr<Plan>>* plans,
                         size_t* workspace, TuneResult* result, int jobs = 1) {
  plans->clear();
  plans->resize(space.size());
  std::vector<Status> built(space.size());
  if (jobs == 1) {
    for (size_t i = 0; i < space.size(); ++i) built[i] = create(space[i], &(*plans)[i]);
  } else {
    llvm::ThreadPool pool(jobs > 0 ? llvm::hardware_concurrency(jobs) : llvm::hardware_concurrency());
    for (size_t i = 0; i < space.size(); ++i) pool.async([&, i] { built[i] = create(space[i], &(*plans)[i]); });
    pool.wait();
  }
  TKA_RETURN_IF_ERROR(built[0]);
  *workspace = 0;
  for (size_t i = 0; i < space.size(); ++i) {
    if (!built[i].is_ok()) {
      ++result->pruned;
      result->notes.push_back(fmt::format("pruned {}: {}", space[i].text(), built[i].message()));
      (*plans)[i].reset();
      continue;
    }
    *workspace = std::max(*workspace, (*plans)[i]->workspace_bytes());
  }
  return Status::ok();
}

// The database entry of a tuned shape, but for its op's config: this runtime's device, the
// power-of-two buckets of seq_len and batch, both medians and this library's version.
inline TuningEntry measured_entry(const Runtime& runtime, const TuningShape& shape, long long seq_len, long long batch,
                                  double time_us, double default_time_us) {
  TuningEntry e;
  e.device = runtime.tuning_device();
  e.shape = shape;
  e.seq_bucket = pow2_bucket(seq_len);
  e.batch_bucket = pow2_bucket(batch);
  e.time_us = time_us;
  e.default_time_us = default_time_us;
  e.version = TOPKATTN_VERSION_STRING;
  return e;
}

// The end of every tuner, once result->entry holds both times: the bytes the shape must move (the
// floor column of `topkattn tune`), the copy bandwidth, and one log line; `inputs` says how the
// inputs were rotated ("4 input copies").
inline Status finish_tune(const DriverApi* api, const std::string& config, double bytes, const std::string& inputs,
                          TuneResult* result) {
  result->bytes = bytes;
  TKA_RETURN_IF_ERROR(copy_bandwidth(api, &result->copy_bytes_per_second));
  log(TKA_LOG_INFO, "tune {}: {} ({:.1f} us, default {:.1f} us; {} timed, {} pruned, {} rejected, {})",
      result->entry.shape.op, config, result->entry.time_us, result->entry.default_time_us, result->candidates,
      result->pruned, result->rejected, inputs);
  return Status::ok();
}

// Interleaved re-timing of a winner against the default, three rounds of each: a winner by
// noise is no winner. Sets both medians; *holds when the winner is 2% faster (else *winner_us is
// the default's time: the default stays).
inline Status confirm_winner(const DriverApi* api, const TuneOptions& options,
                             const std::function<Status(int)>& run_default,
                             const std::function<Status(int)>& run_winner, double* default_us, double* winner_us,
                             bool* holds) {
  std::vector<double> ta, tb, each;
  for (int round = 0; round < 3; ++round) {
    TKA_RETURN_IF_ERROR(time_each(api, 1, options.repeats, run_default, &each));
    ta.insert(ta.end(), each.begin(), each.end());
    TKA_RETURN_IF_ERROR(time_each(api, 1, options.repeats, run_winner, &each));
    tb.insert(tb.end(), each.begin(), each.end());
  }
  *default_us = median(ta);
  *winner_us = median(tb);
  *holds = *winner_us <= 0.98 * *default_us;
  if (!*holds) *winner_us = *default_us;
  return Status::ok();
}

template <class Config, class Plan, class Output>
Status pick_fastest(const DriverApi* api, const std::vector<Config>& space,
                    const std::vector<std::unique_ptr<Plan>>& plans, const TuneOptions& options,
                    const std::function<Status(const Plan&, Output*)>& output,
                    const std::function<Status(const Plan&, int)>& run, const char* differs, TuneResult* result,
                    Config* best_config, double* best_time, double* default_time) {
  Output want, got;
  TKA_RETURN_IF_ERROR(output(*plans[0], &want));
  const int total =
      static_cast<int>(std::count_if(plans.begin(), plans.end(), [](const auto& p) { return p != nullptr; }));
  int done = 0;
  double best_us = INFINITY, default_us = INFINITY;
  size_t best = 0;
  for (size_t i = 0; i < space.size(); ++i) {
    if (!plans[i]) continue;
    double us = INFINITY;
    TKA_RETURN_IF_ERROR(output(*plans[i], &got));
    if (got != want) {
      ++result->rejected;
      result->notes.push_back(fmt::format("rejected {}: {}", space[i].text(), differs));
    } else {
      std::vector<double> each;
      TKA_RETURN_IF_ERROR(time_each(
          api, options.warmup, options.repeats, [&](int r) { return run(*plans[i], r); }, &each));
      us = median(each);
      ++result->candidates;
      result->notes.push_back(fmt::format("timed {}: {:.1f} us", space[i].text(), us));
    }
    if (options.progress) options.progress(++done, total);
    if (i == 0) default_us = us;
    if (us < best_us) best_us = us, best = i;
  }
  if (best != 0) {
    bool holds = false;
    TKA_RETURN_IF_ERROR(confirm_winner(
        api, options, [&](int r) { return run(*plans[0], r); }, [&](int r) { return run(*plans[best], r); },
        &default_us, &best_us, &holds));
    if (!holds) best = 0;
  }
  *best_config = space[best];
  *best_time = best_us;
  *default_time = default_us;
  return Status::ok();
}

}  // namespace tka
