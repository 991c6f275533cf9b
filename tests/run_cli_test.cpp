// `topkattn run` (the main job) without a GPU: it prewarms the archs that --arch names (all the
// library targets by default), reads the tuning database that --db names, and says that no GPU
// was found; a bad --arch exits with 2. With a GPU the same commands also run, verify and time.
#include <gtest/gtest.h>

#include <string>

#include "test_util.h"

namespace {

using tka_test::run_command;

const std::string kCli = TOPKATTN_CLI_PATH;

TEST(RunCli, PrewarmsTheNamedArchAndReadsTheNamedDatabase) {
  tka_test::ScratchDir dir;
  tka_test::write_text(dir / "db.json", "{ not json");
  const auto r = run_command(kCli + " run --model llama-3.1-8b --arch sm_90 --cache-dir '" + dir / "cache" +
                             "' --db '" + dir / "db.json" + "'");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("prewarm llama-3.1-8b for sm_90: 6 compiled, 0 already cached, 0 failed"), std::string::npos)
      << r.out;
  EXPECT_NE(r.err.find("topkattn run: warning:"), std::string::npos) << r.err;  // the corrupt database, ignored
  // Without a GPU nothing but the prewarm compiled: nothing for an arch not asked for. (With one,
  // the run compiles for the device's arch too.)
  if (r.out.find("no GPU found") != std::string::npos) {
    const auto ls = run_command(kCli + " cache ls --json --cache-dir '" + dir / "cache" + "'");
    EXPECT_EQ(ls.out.find("sm_80"), std::string::npos) << ls.out;
  }
}

TEST(RunCli, ABadArchExitsWithTwo) {
  const auto r = run_command(kCli + " run --model llama-3.1-8b --arch sm_70");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--arch"), std::string::npos) << r.err;
  EXPECT_EQ(run_command(kCli + " run --model no-such-model").exit_code, 2);
}

}  // namespace
