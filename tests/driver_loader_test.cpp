// The Driver API loader (runtime/driver.cpp) against stand-in drivers (tests/fake_driver): an
// optional entry point that a driver lacks is not asked for, and a missing required one is named.
// Each case runs `topkattn tune` in a process of its own (the driver is loaded once per process)
// with the stand-in first on LD_LIBRARY_PATH; its cuInit reports no device, so the first failure
// past the symbol lookup is that one. Runs the same with or without a GPU.
#include <gtest/gtest.h>

#include <string>

#include "test_util.h"

namespace {

using tka_test::run_command;

tka_test::CommandResult tune_with_driver(const std::string& variant) {
  tka_test::ScratchDir dir;
  // The stand-in first; whatever else the command needs is still found where it was.
  return run_command("LD_LIBRARY_PATH='" TOPKATTN_FAKE_DRIVER_DIR "/" + variant +
                     "'${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} " + TOPKATTN_CLI_PATH +
                     " tune --model llama-3.1-8b --seq-lens 4096 --batches 1 --db '" + (dir / "db.json") + "'");
}

TEST(DriverLoader, ADriverWithoutTheOptionalEntryPointsLoads) {
  // Every required entry point, no cuTensorMapEncodeTiled: the loader gets as far as cuInit.
  const auto r = tune_with_driver("no_optional");
  EXPECT_EQ(r.exit_code, 3) << r.err;  // no device
  EXPECT_NE(r.err.find("no usable GPU: cuInit failed with CUDA_ERROR_NO_DEVICE"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("too old"), std::string::npos) << r.err;
}

TEST(DriverLoader, AMissingRequiredEntryPointIsNamed) {
  const auto r = tune_with_driver("no_launch");
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("the CUDA driver is too old: missing cuLaunchKernelEx"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("cuTensorMapEncodeTiled"), std::string::npos) << r.err;  // optional: never listed
  EXPECT_EQ(r.err.find("cuInit"), std::string::npos) << r.err;                  // not reached
}

}  // namespace
