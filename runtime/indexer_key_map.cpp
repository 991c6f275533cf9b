#include "runtime/indexer_key_map.h"

#include <cstdint>
#include <cstring>

namespace tka {

void encode_indexer_key_map(const DriverApi* api, const TensorView& k, int capacity, IndexerParams* p) {
  const auto addr = reinterpret_cast<uintptr_t>(k.data);
  const long long token = k.strides[1], seq = k.shape[0] > 1 ? k.strides[0] : token * capacity;
  if (!api->cuTensorMapEncodeTiled || capacity <= 0 || addr % 16 || token % 16 || seq % 16 || token < 128 ||
      seq < token * capacity)
    return;
  static_assert(sizeof(CUtensorMap) == sizeof(p->k_map), "the parameter holds one CUtensorMap");
  const cuuint64_t dims[3] = {128, static_cast<cuuint64_t>(capacity), static_cast<cuuint64_t>(k.shape[0])};
  const cuuint64_t strides[2] = {static_cast<cuuint64_t>(token), static_cast<cuuint64_t>(seq)};
  const cuuint32_t box[3] = {128, kIndexerTile, 1}, unit[3] = {1, 1, 1};
  CUtensorMap map;
  if (api->cuTensorMapEncodeTiled(&map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 3, k.data, dims, strides, box, unit,
                                  CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                  CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                  CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) != CUDA_SUCCESS)
    return;
  std::memcpy(p->k_map, &map, sizeof(map));
  p->use_k_map = 1;
}

}  // namespace tka
