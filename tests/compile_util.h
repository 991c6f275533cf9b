// Host tests that compile many kernel variants: all at once through prewarm's compile_jobs (one
// pool over the disk cache), then one check that names every failure.
#ifndef TOPKATTN_TESTS_COMPILE_UTIL_H_
#define TOPKATTN_TESTS_COMPILE_UTIL_H_

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "autotune/prewarm.h"

namespace tka_test {

// Every job compiles to a non-empty CUBIN in the disk cache at `cache_dir`.
inline void expect_all_compile(const std::vector<tka::PrewarmJob>& jobs, const std::string& cache_dir) {
  const tka::PrewarmSummary sum = tka::compile_jobs(jobs, cache_dir, 0);
  std::string errors;
  for (const std::string& e : sum.errors) errors += "\n  " + e;
  EXPECT_EQ(sum.failed, 0) << sum.failed << " of " << jobs.size() << " failed:" << errors;
  EXPECT_EQ(sum.compiled + sum.cached, static_cast<int>(jobs.size()));
}

}  // namespace tka_test

#endif  // TOPKATTN_TESTS_COMPILE_UTIL_H_
