// NumPy .npy files (format versions 1-3), little-endian C-order arrays of float32, float16,
// int32 and int64: what `topkattn analyze` reads, and what its tests write.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace tka::tools {

struct NpyArray {
  std::string descr;  // "<f4", "<f2", "<i4", "<i8"
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;  // C order
  int elem_size() const { return descr == "<f2" ? 2 : descr == "<f4" || descr == "<i4" ? 4 : 8; }
  int64_t count() const;
};

// Errors name the file and what is wrong with it (TKA_ERROR_INVALID_ARGUMENT).
Status read_npy(const std::string& path, NpyArray* out);
Status write_npy(const std::string& path, const NpyArray& array);

}  // namespace tka::tools
