// Launch attributes and the kernels' side of them: on sm_90+ a kernel may start while the one
// before it on the stream is finishing (programmatic dependent launch), which is safe only if
// every kernel waits in begin_grid() before touching global memory.
#include "runtime/launch.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "codegen/embedded.h"

namespace tka {
namespace {

// The names of the __global__ functions in `text` whose body does not start with begin_grid().
std::vector<std::string> kernels_without_wait(const std::string& text) {
  std::vector<std::string> missing;
  for (size_t at = text.find("__global__"); at != std::string::npos; at = text.find("__global__", at + 1)) {
    const size_t open = text.find('{', at);
    if (open == std::string::npos) break;
    const size_t params = text.rfind('(', open);  // parameter lists hold no parentheses
    const size_t name_begin = text.find_last_of(" \n", params - 1) + 1;
    const size_t first = text.find_first_not_of(" \n", open + 1);
    if (text.compare(first, 13, "begin_grid();") != 0) missing.push_back(text.substr(name_begin, params - name_begin));
  }
  return missing;
}

TEST(GridDependency, EveryKernelWaitsForThePreviousGridFirst) {
  int kernels = 0;
  for (const codegen::EmbeddedFile& f : codegen::embedded_templates()) {
    const std::string text = f.text;
    for (size_t at = text.find("__global__"); at != std::string::npos; at = text.find("__global__", at + 1)) ++kernels;
    EXPECT_TRUE(kernels_without_wait(text).empty())
        << f.name << ": kernels that touch memory before begin_grid(): " << kernels_without_wait(text).front();
  }
  EXPECT_GE(kernels, 18);  // decode, select, sparse, indexer and fidelity kernels were all seen
}

TEST(GridDependency, TheCheckFindsAKernelWithoutTheWait) {
  const std::string text =
      "template <class S>\n__global__ void __launch_bounds__(128) good(const P p) {\n  begin_grid();\n  f();\n}\n"
      "template <class S>\n__global__ void __launch_bounds__(128) bad(const P p) {\n  int x = p.a[0];\n  "
      "begin_grid();\n}\n";
  EXPECT_EQ(kernels_without_wait(text), std::vector<std::string>{"bad"});
}

TEST(KernelLaunch, AttributesFollowTheDevice) {
  KernelLaunch k;
  k.grid_x = 8, k.grid_y = 3, k.threads = 256, k.smem = 1024, k.cluster = 4;
  DeviceInfo hopper;
  hopper.sm = 90;
  hopper.overlap_launches = true;
  CUlaunchAttribute attrs[kMaxLaunchAttributes];
  CUlaunchConfig c = launch_config(hopper, k, nullptr, attrs);
  ASSERT_EQ(c.numAttrs, 2u);
  EXPECT_EQ(c.gridDimX, 8u);
  EXPECT_EQ(c.gridDimY, 3u);
  EXPECT_EQ(c.gridDimZ, 1u);
  EXPECT_EQ(c.blockDimX, 256u);
  EXPECT_EQ(c.sharedMemBytes, 1024u);
  EXPECT_EQ(attrs[0].id, CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION);
  EXPECT_EQ(attrs[0].value.clusterDim.x, 4u);
  EXPECT_EQ(attrs[1].id, CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION);
  EXPECT_EQ(attrs[1].value.programmaticStreamSerializationAllowed, 1);

  DeviceInfo switched_off = hopper;  // TOPKATTN_PDL=0 on sm_90: the cluster attribute alone
  switched_off.overlap_launches = false;
  c = launch_config(switched_off, k, nullptr, attrs);
  ASSERT_EQ(c.numAttrs, 1u);
  EXPECT_EQ(attrs[0].id, CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION);

  k.cluster = 0;  // no cluster: PDL alone where the device allows it, else a plain launch
  c = launch_config(hopper, k, nullptr, attrs);
  ASSERT_EQ(c.numAttrs, 1u);
  EXPECT_EQ(attrs[0].id, CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION);
  c = launch_config(switched_off, k, nullptr, attrs);
  EXPECT_EQ(c.numAttrs, 0u);

  // Cooperative: the attribute, with the overlap where the device allows it.
  k.cooperative = true;
  c = launch_config(hopper, k, nullptr, attrs);
  ASSERT_EQ(c.numAttrs, 2u);
  EXPECT_EQ(attrs[0].id, CU_LAUNCH_ATTRIBUTE_COOPERATIVE);
  EXPECT_EQ(attrs[0].value.cooperative, 1);
  EXPECT_EQ(attrs[1].id, CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION);
  c = launch_config(switched_off, k, nullptr, attrs);
  ASSERT_EQ(c.numAttrs, 1u);
  EXPECT_EQ(attrs[0].id, CU_LAUNCH_ATTRIBUTE_COOPERATIVE);
  k.cluster = 2;  // all three
  c = launch_config(hopper, k, nullptr, attrs);
  ASSERT_EQ(c.numAttrs, 3u);
  EXPECT_EQ(attrs[0].id, CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION);
  EXPECT_EQ(attrs[1].id, CU_LAUNCH_ATTRIBUTE_COOPERATIVE);
  EXPECT_EQ(attrs[2].id, CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION);
}

TEST(KernelLaunch, OverlapFollowsTheArchAndTheSetting) {
  // open_device's rule, without a device: sm_90+ and TOPKATTN_PDL not "0".
  EXPECT_TRUE(overlap_launches_for(90, true));
  EXPECT_TRUE(overlap_launches_for(100, true));
  EXPECT_FALSE(overlap_launches_for(90, false));
  EXPECT_FALSE(overlap_launches_for(86, true));
}

}  // namespace
}  // namespace tka
