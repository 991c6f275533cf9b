// `topkattn emit`: the generated source of every operation, its PTX through NVRTC (no GPU), and
// the bad-argument exits.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "common/settings.h"
#include "test_util.h"

namespace {

using tka_test::run_command;

const std::string kCli = TOPKATTN_CLI_PATH;

int count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(EmitCli, EverySourceStartsWithItsSpecAndIncludesItsTemplate) {
  struct Case {
    std::string args, spec, include;
  };
  const Case cases[] = {
      {"--op decode --head-dim 128 --group 4 --k 2048 --dtype bf16", "// spec: op=decode;dtype=bf16;d=128;g=4;",
       "#include \"decode.cuh\""},
      {"--op select --dtype fp32", "// spec: op=select;dtype=fp32;", "#include \"select.cuh\""},
      {"--op sparse --head-dim 576 --group 128 --kv-heads 1 --select group",
       "// spec: op=sparse;dtype=bf16;d=576;dv=512;shared=1;g=128;", "#include \"sparse.cuh\""},
      {"--op indexer --page-size 64", "// spec: op=indexer;heads=64;d=128;q=1;key=fp8e4m3;kv=paged;page=64;",
       "#include \"indexer.cuh\""},
      {"--op fidelity --dtype fp16 --head-dim 64", "// spec: op=fidelity;dtype=fp16;d=64;",
       "#include \"fidelity.cuh\""},
  };
  for (const Case& c : cases) {
    const auto r = run_command(kCli + " emit " + c.args);
    ASSERT_EQ(r.exit_code, 0) << c.args << ": " << r.err;
    EXPECT_EQ(r.out.rfind(c.spec, 0), 0u) << c.args << ":\n" << r.out;
    EXPECT_NE(r.out.find(c.include), std::string::npos) << c.args;
  }
}

TEST(EmitCli, PtxHoldsEveryKernelOfTheModule) {
  struct Case {
    std::string args;
    int kernels;
  };
  const Case cases[] = {{"--op decode", 9},
                        {"--op select --dtype bf16", 7},
                        {"--op sparse --select group", 2},
                        {"--op indexer", 8},
                        {"--op fidelity", 3}};
  for (const Case& c : cases) {
    const auto r = run_command(kCli + " emit " + c.args + " --ptx --arch sm_80");
    ASSERT_EQ(r.exit_code, 0) << c.args << ": " << r.err;
    EXPECT_NE(r.out.find(".target sm_80"), std::string::npos) << c.args;
    EXPECT_EQ(count(r.out, ".entry "), c.kernels) << c.args;
  }
}

// TOPKATTN_KERNEL_DEFINES reaches NVRTC: the phase clocks compile in (a printf and the global
// timer) only when asked for, and a name that is not an identifier is dropped, not passed on.
TEST(EmitCli, KernelDefinesReachTheCompile) {
  const std::string emit = kCli + " emit --op select --dtype fp32 --ptx --arch sm_90";
  const auto plain = run_command(emit);
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_EQ(count(plain.out, "vprintf"), 0);
  EXPECT_EQ(count(plain.out, "%globaltimer"), 0);
  const auto clocks = run_command("TOPKATTN_KERNEL_DEFINES='TKA_PHASE_CLOCKS,-Dbad,1x' " + emit);
  ASSERT_EQ(clocks.exit_code, 0) << clocks.err;
  EXPECT_GT(count(clocks.out, "vprintf"), 0);
  EXPECT_GT(count(clocks.out, "%globaltimer"), 0);
  // The cooperative grid reports its phases too (bench/select_phases.py, configs ending in "o").
  const size_t coop = clocks.out.find(".entry _ZN3tka16select_rows_coop");
  ASSERT_NE(coop, std::string::npos);
  const std::string coop_body = clocks.out.substr(coop, clocks.out.find(".entry ", coop + 1) - coop);
  EXPECT_GT(count(coop_body, "vprintf"), 0);
}

// PTX with the names NVRTC derives from the source's hash made equal (any macro changes them).
std::string without_source_hash(const std::string& ptx) {
  static const std::regex kInternal(R"(_ZN\d+_INTERNAL_\w*?_cu_[0-9a-f]+_\d+)");
  return std::regex_replace(ptx, kInternal, "_ZN_INTERNAL_");
}

// Kernel changes kept behind a macro until the GPU has timed them (scripts/gpu_session.sh ab-NAME)
// compile for both archs and change the code of the ops they touch (on sm_90 only: those here are
// sm_90 features), so that a GPU call is never spent on a compile error or on a macro that does
// nothing.
// A macro that no kernel reads leaves the code as it was: the comparison can fail.
TEST(EmitCli, MacroGatedKernelChangesCompile) {
  struct Case {
    std::string macro, op;
  };
  const Case cases[] = {{"TKA_INDEXER_TMA", "--op indexer"},
                        {"TKA_PDL_EARLY", "--op decode"},
                        {"TKA_SCORE_KEEP", "--op decode"},
                        {"TKA_SCORE_SLOTS", "--op decode"}};
  for (const char* arch : {"sm_80", "sm_90"}) {
    const bool sm80 = std::string(arch) == "sm_80";
    for (const Case& c : cases) {
      const std::string emit = kCli + " emit " + c.op + " --ptx --arch " + arch;
      const auto plain = run_command(emit);
      ASSERT_EQ(plain.exit_code, 0) << c.op << " " << arch << ": " << plain.err;
      const auto gated = run_command("TOPKATTN_KERNEL_DEFINES=" + c.macro + " " + emit);
      ASSERT_EQ(gated.exit_code, 0) << c.macro << " " << c.op << " " << arch << ": " << gated.err;
      const bool changed = without_source_hash(gated.out) != without_source_hash(plain.out);
      EXPECT_EQ(changed, !sm80) << c.macro << " in " << c.op << " for " << arch;
    }
  }
  const std::string emit = kCli + " emit --op decode --ptx --arch sm_90";
  const auto plain = run_command(emit), unused = run_command("TOPKATTN_KERNEL_DEFINES=TKA_READ_BY_NO_KERNEL " + emit);
  ASSERT_EQ(unused.exit_code, 0) << unused.err;
  EXPECT_EQ(without_source_hash(unused.out), without_source_hash(plain.out));
}

// A CUDA tool (ptxas, cuobjdump) of the toolkit the tests were built against ($CUDA_HOME,
// /usr/local/cuda), of the wheels scripts/deps.sh installs into .deps/cuda-tools, or on PATH; or "".
std::string find_cuda_tool(const std::string& name) {
  std::vector<std::string> dirs;
  if (const char* home = std::getenv("CUDA_HOME")) dirs.push_back(std::string(home) + "/bin");
  dirs.push_back("/usr/local/cuda/bin");
  dirs.push_back(std::string(TOPKATTN_SOURCE_DIR) + "/.deps/cuda-tools/nvidia/cu13/bin");
  for (const std::string& d : dirs)
    if (::access((d + "/" + name).c_str(), X_OK) == 0) return d + "/" + name;
  const auto which = run_command("command -v " + name);
  return which.exit_code == 0 ? which.out.substr(0, which.out.find('\n')) : "";
}

// Registers per thread of each entry function whose name holds `kernel`, from `ptxas -v`.
std::vector<int> kernel_registers(const std::string& ptxas, const std::string& ptx_file, const std::string& arch,
                                  const std::string& kernel) {
  const auto r = run_command("'" + ptxas + "' -arch=" + arch + " -v '" + ptx_file + "' -o /dev/null");
  std::vector<int> regs;
  bool inside = false;
  std::istringstream lines(r.out + r.err);  // ptxas reports on stderr
  for (std::string line; std::getline(lines, line);) {
    if (line.find("Compiling entry function") != std::string::npos) inside = line.find(kernel) != std::string::npos;
    const size_t used = line.find("Used ");
    if (inside && used != std::string::npos && line.find(" registers") != std::string::npos) {
      regs.push_back(std::stoi(line.substr(used + 5)));
      inside = false;
    }
  }
  return regs;
}

// The wgmma indexer scores run 6 CTAs of 128 threads an SM, which their shared memory sets
// (bench/NOTES.md): more than 80 registers a thread (65536 / (6 x 128), in steps of 8) would cut
// that to 5 or fewer. A rare path compiled into the kernel once took it to 154.
TEST(EmitCli, WgmmaIndexerScoresKeepSixCtasAnSm) {
  const std::string ptxas = find_cuda_tool("ptxas");
  if (ptxas.empty()) GTEST_SKIP() << "no ptxas (CUDA_HOME, /usr/local/cuda or PATH)";
  tka_test::ScratchDir dir;
  const auto ptx = run_command(kCli + " emit --op indexer --ptx --arch sm_90 > '" + dir / "indexer.ptx" + "'");
  ASSERT_EQ(ptx.exit_code, 0) << ptx.err;
  const std::vector<int> regs = kernel_registers(ptxas, dir / "indexer.ptx", "sm_90a", "indexer_scores");
  ASSERT_EQ(regs.size(), 1u) << "one indexer_scores entry in the module";
  EXPECT_LE(regs[0], 80);
}

// A clamp max(0, min(x, hi)) whose result is tested against hi: ptxas of CUDA 12.0-13.3 fuses the
// three into one VIMNMX.RELU with a predicate output (and gets that predicate wrong on sm_90).
const char* const kFusedClampPtx = R"(.version 8.0
.target sm_90a
.address_size 64
.visible .entry clamp_tested(.param .u64 p_in, .param .u64 p_out, .param .u32 p_hi)
{
  .reg .b32 %r<8>;
  .reg .b64 %rd<8>;
  .reg .pred %p<2>;
  ld.param.u64 %rd1, [p_in];
  ld.param.u64 %rd2, [p_out];
  ld.param.u32 %r1, [p_hi];
  cvta.to.global.u64 %rd3, %rd1;
  cvta.to.global.u64 %rd4, %rd2;
  mov.u32 %r2, %tid.x;
  mul.wide.u32 %rd5, %r2, 4;
  add.s64 %rd6, %rd3, %rd5;
  add.s64 %rd7, %rd4, %rd5;
  ld.global.u32 %r3, [%rd6];
  min.s32 %r4, %r3, %r1;
  max.s32 %r5, %r4, 0;
  setp.eq.s32 %p1, %r5, %r1;
  @%p1 bra DONE;
  st.global.u32 [%rd7], %r5;
DONE:
  ret;
}
)";

// The kernels keep every clamp of a count away from a test of its result (clamp_count in
// templates/common/types.cuh): with the fused predicate, a chunk that starts at a row's end was
// copied whole, 16 bytes past the row (bench/NOTES.md). The sm_90a code of each op holds no VIMNMX
// with a predicate output; the check first finds the one it looks for in a module known to have it.
TEST(EmitCli, NoClampIsTestedThroughAVimnmxPredicate) {
  const std::string ptxas = find_cuda_tool("ptxas"), cuobjdump = find_cuda_tool("cuobjdump");
  if (ptxas.empty() || cuobjdump.empty()) GTEST_SKIP() << "no ptxas or cuobjdump (scripts/deps.sh installs cuobjdump)";
  tka_test::ScratchDir dir;
  const std::string tools = cuobjdump.substr(0, cuobjdump.rfind('/'));  // nvdisasm sits beside it
  const std::regex predicated(R"(VIMNMX[.A-Z0-9]* R[0-9]+, !?P[0-6],)");
  // The VIMNMX instructions with a predicate output in the sm_90a code of a PTX file, or why
  // there is no count.
  struct Scan {
    std::string error;
    int predicated = 0;
  };
  const auto scan = [&](const std::string& ptx) -> Scan {
    const std::string cubin = ptx + ".cubin";
    const auto built = run_command("'" + ptxas + "' -arch=sm_90a '" + ptx + "' -o '" + cubin + "'");
    if (built.exit_code != 0) return {ptx + ": ptxas failed: " + built.err};
    const auto sass = run_command("PATH='" + tools + "':$PATH '" + cuobjdump + "' -sass '" + cubin + "'");
    if (sass.exit_code != 0) return {ptx + ": cuobjdump failed: " + sass.err};
    if (sass.out.find("VIMNMX") == std::string::npos) return {ptx + ": no VIMNMX at all (the SASS format changed?)"};
    return {"", static_cast<int>(std::distance(std::sregex_iterator(sass.out.begin(), sass.out.end(), predicated),
                                               std::sregex_iterator()))};
  };
  const std::string control = dir / "control.ptx";
  std::ofstream(control) << kFusedClampPtx;
  const Scan seen = scan(control);
  ASSERT_EQ(seen.error, "");
  ASSERT_GE(seen.predicated, 1) << "the check does not see the fused clamp it looks for";
  const char* const ops[] = {"--op select --dtype fp32 -k 2048", "--op select --dtype bf16 -k 1",
                             "--op select --dtype fp16 -k 700",  "--op decode",
                             "--op decode --head-dim 64",        "--op indexer"};
  for (const char* op : ops) {
    const std::string ptx = dir / "op.ptx";
    const auto emitted = run_command(kCli + " emit " + op + " --ptx --arch sm_90 > '" + ptx + "'");
    ASSERT_EQ(emitted.exit_code, 0) << op << ": " << emitted.err;
    const Scan s = scan(ptx);
    ASSERT_EQ(s.error, "") << op;
    EXPECT_EQ(s.predicated, 0) << op << ": a clamp tested through a VIMNMX predicate (use clamp_count)";
  }
}

TEST(KernelDefines, CommaSeparatedIdentifiersOnly) {
  EXPECT_EQ(tka::parse_kernel_defines(""), std::vector<std::string>{});
  EXPECT_EQ(tka::parse_kernel_defines("A,B_2,,_c"), (std::vector<std::string>{"A", "B_2", "_c"}));
  EXPECT_EQ(tka::parse_kernel_defines("2x,a b,-DX,Y=1,ok"), std::vector<std::string>{"ok"});
}

TEST(EmitCli, BadArgumentsExitWithTwoAndSayWhy) {
  auto r = run_command(kCli + " emit --op prefill");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--op"), std::string::npos) << r.err;
  r = run_command(kCli + " emit --op decode --head-dim 96");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("head_dim"), std::string::npos) << r.err;
  r = run_command(kCli + " emit --op select --dtype int8");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--dtype"), std::string::npos) << r.err;
  r = run_command(kCli + " emit --op decode --ptx --arch compute90");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--arch"), std::string::npos) << r.err;
}

}  // namespace
