#include "runtime/launch.h"

namespace tka {

CUlaunchConfig launch_config(const DeviceInfo& device, const KernelLaunch& k, CUstream stream,
                             CUlaunchAttribute* attrs) {
  CUlaunchConfig c{};
  c.gridDimX = k.grid_x, c.gridDimY = k.grid_y, c.gridDimZ = k.grid_z;
  c.blockDimX = k.threads, c.blockDimY = c.blockDimZ = 1;
  c.sharedMemBytes = k.smem;
  c.hStream = stream;
  c.attrs = attrs;
  if (k.cluster > 0) {
    CUlaunchAttribute& a = attrs[c.numAttrs++];
    a = CUlaunchAttribute{};
    a.id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
    a.value.clusterDim.x = k.cluster, a.value.clusterDim.y = a.value.clusterDim.z = 1;
  }
  if (k.cooperative) {
    CUlaunchAttribute& a = attrs[c.numAttrs++];
    a = CUlaunchAttribute{};
    a.id = CU_LAUNCH_ATTRIBUTE_COOPERATIVE;
    a.value.cooperative = 1;
  }
  if (device.overlap_launches) {
    CUlaunchAttribute& a = attrs[c.numAttrs++];
    a = CUlaunchAttribute{};
    a.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    a.value.programmaticStreamSerializationAllowed = 1;
  }
  return c;
}

Status launch_kernel(const DriverApi* api, const DeviceInfo& device, const KernelLaunch& k, CUstream stream,
                     void** args) {
  CUlaunchAttribute attrs[kMaxLaunchAttributes];
  const CUlaunchConfig c = launch_config(device, k, stream, attrs);
  return TKA_CU(api, cuLaunchKernelEx, &c, k.fn, args, nullptr);
}

}  // namespace tka
