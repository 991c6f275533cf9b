// The host half of TKA_INDEXER_TMA: which key caches become a tensor map, and the map's geometry
// (dims, strides, box, swizzle) as the driver is asked for it. Runs without a driver: the encoder
// is a stand-in that records its arguments.
#include "runtime/indexer_key_map.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

namespace {

struct EncodeCall {
  int calls = 0;
  CUtensorMapDataType dtype{};
  cuuint32_t rank = 0;
  void* address = nullptr;
  std::vector<cuuint64_t> dims, strides;
  std::vector<cuuint32_t> box;
  CUtensorMapSwizzle swizzle{};
  CUresult result = CUDA_SUCCESS;
};
EncodeCall g_call;

CUresult fake_encode(CUtensorMap* map, CUtensorMapDataType dtype, cuuint32_t rank, void* address,
                     const cuuint64_t* dims, const cuuint64_t* strides, const cuuint32_t* box, const cuuint32_t*,
                     CUtensorMapInterleave, CUtensorMapSwizzle swizzle, CUtensorMapL2promotion,
                     CUtensorMapFloatOOBfill) {
  ++g_call.calls;
  g_call.dtype = dtype, g_call.rank = rank, g_call.address = address, g_call.swizzle = swizzle;
  g_call.dims.assign(dims, dims + rank);
  g_call.strides.assign(strides, strides + rank - 1);
  g_call.box.assign(box, box + rank);
  std::memset(map, 0x5a, sizeof(*map));
  return g_call.result;
}

struct Encoded {
  bool used;
  EncodeCall call;
  tka::IndexerParams params;
};

Encoded encode(uintptr_t address, std::vector<int64_t> shape, std::vector<int64_t> strides, int capacity,
               CUresult result = CUDA_SUCCESS, bool driver_has_encoder = true) {
  g_call = EncodeCall{};
  g_call.result = result;
  tka::DriverApi api;
  if (driver_has_encoder) api.cuTensorMapEncodeTiled = &fake_encode;
  tka::TensorView keys;
  keys.data = reinterpret_cast<void*>(address);
  keys.shape = std::move(shape);
  keys.strides = std::move(strides);
  tka::IndexerParams p{};
  tka::encode_indexer_key_map(&api, keys, capacity, &p);
  return {p.use_k_map != 0, g_call, p};
}

constexpr uintptr_t kAligned = 0x7f0000001000;

TEST(IndexerKeyMap, ContiguousKeysBecomeOneMapOfWholeTiles) {
  const Encoded e = encode(kAligned, {4, 1000, 128}, {1000 * 128, 128, 1}, 900);
  ASSERT_TRUE(e.used);
  ASSERT_EQ(e.call.calls, 1);
  EXPECT_EQ(e.call.dtype, CU_TENSOR_MAP_DATA_TYPE_UINT8);
  EXPECT_EQ(e.call.address, reinterpret_cast<void*>(kAligned));
  EXPECT_EQ(e.call.dims, (std::vector<cuuint64_t>{128, 900, 4}));  // the plan's capacity, not the tensor's
  EXPECT_EQ(e.call.strides, (std::vector<cuuint64_t>{128, 1000 * 128}));
  EXPECT_EQ(e.call.box, (std::vector<cuuint32_t>{128, static_cast<cuuint32_t>(tka::kIndexerTile), 1}));
  EXPECT_EQ(e.call.swizzle, CU_TENSOR_MAP_SWIZZLE_128B);            // the layout the wgmma descriptors read
  for (unsigned char byte : e.params.k_map) ASSERT_EQ(byte, 0x5a);  // the driver's map, whole, in the params
}

TEST(IndexerKeyMap, OneSequenceNeedsNoSequenceStride) {
  const Encoded e = encode(kAligned, {1, 1000, 128}, {1000 * 128 + 8, 256, 1}, 1000);
  ASSERT_TRUE(e.used);
  EXPECT_EQ(e.call.strides, (std::vector<cuuint64_t>{256, 256 * 1000}));
}

TEST(IndexerKeyMap, WhatTheCopyEngineCannotAddressStaysOnCpAsync) {
  EXPECT_FALSE(encode(kAligned + 8, {4, 1000, 128}, {1000 * 128, 128, 1}, 1000).used);  // start
  EXPECT_FALSE(encode(kAligned, {4, 1000, 128}, {1000 * 136, 136, 1}, 1000).used);      // token stride % 16
  EXPECT_FALSE(encode(kAligned, {4, 1000, 128}, {1000 * 128 + 8, 128, 1}, 1000).used);  // sequence stride % 16
  EXPECT_FALSE(encode(kAligned, {4, 1000, 128}, {0, 128, 1}, 1000).used);               // keys shared by sequences
  EXPECT_FALSE(encode(kAligned, {4, 1000, 128}, {1000 * 128, 128, 1}, 0).used);         // no capacity
  EXPECT_EQ(g_call.calls, 0);
  const Encoded declined = encode(kAligned, {4, 1000, 128}, {1000 * 128, 128, 1}, 1000, CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(declined.call.calls, 1);
  EXPECT_FALSE(declined.used);
}

TEST(IndexerKeyMap, ADriverWithoutTheEncoderStaysOnCpAsync) {
  // cuTensorMapEncodeTiled is an optional entry point: a driver that lacks it loads, and the key
  // map is simply not made.
  tka::DriverApi api;
  EXPECT_EQ(api.cuTensorMapEncodeTiled, nullptr);
  const Encoded e = encode(kAligned, {4, 1000, 128}, {1000 * 128, 128, 1}, 1000, CUDA_SUCCESS, false);
  EXPECT_FALSE(e.used);
  EXPECT_EQ(e.call.calls, 0);
  for (unsigned char byte : e.params.k_map) ASSERT_EQ(byte, 0);
}

}  // namespace
