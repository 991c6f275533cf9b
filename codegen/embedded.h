// The kernel templates, embedded at build time (cmake/embed_templates.cmake).
#pragma once
#include <string>
#include <vector>

namespace tka::codegen {

struct EmbeddedFile {
  const char* name;  // relative to templates/, e.g. "common/types.cuh"
  const char* text;
};

const std::vector<EmbeddedFile>& embedded_templates();

}  // namespace tka::codegen
