// NVRTC, loaded with dlopen at first use (nothing links libnvrtc), compiling rendered sources
// with the embedded templates as in-memory headers.
#pragma once
#include <string>
#include <vector>

#include "codegen/render.h"
#include "common/status.h"

namespace tka::codegen {

struct CompiledModule {
  std::string image;                 // CUBIN (or PTX text when asked for PTX)
  std::vector<std::string> lowered;  // mangled kernel names, same order as the name expressions
  std::string log;                   // NVRTC's log (warnings), may be empty
};

// "13.0", or an error when NVRTC cannot be loaded.
Status nvrtc_version(std::string* version);

// The full normalised option list for an arch (part of the cache key).
std::vector<std::string> nvrtc_options(int sm, bool ptx);

// A digest of every embedded header (names and contents), hex.
const std::string& templates_digest();

Status nvrtc_compile(const RenderedSource& source, int sm, bool ptx, CompiledModule* out);

// "sm_90" -> 90; 0 when malformed.
int parse_arch(const std::string& arch);

// Whether kernels can be compiled for sm_<sm>: Ampere and newer, as NVRTC of CUDA 12 and 13 names
// them (101 is CUDA 12's name for what CUDA 13 calls 110; each NVRTC still rejects what it does
// not know, with its log).
bool is_target_arch(int sm);
inline constexpr const char* kTargetArchs = "80, 86, 87, 88, 89, 90, 100, 101, 103, 110, 120, 121";

}  // namespace tka::codegen
