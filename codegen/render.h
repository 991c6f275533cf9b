// Turns a kernel spec into the CUDA source NVRTC compiles: a short stub that fixes the
// specialization constants and includes the op's template, plus the kernels' name expressions.
#pragma once
#include <string>
#include <vector>

#include "codegen/decode_spec.h"
#include "codegen/fidelity_spec.h"
#include "codegen/indexer_spec.h"
#include "codegen/select_spec.h"
#include "codegen/sparse_spec.h"

namespace tka::codegen {

struct RenderedSource {
  std::string name;                  // short readable name
  std::string spec_text;             // canonical spec text (first line of the source)
  std::string source;                // the stub
  std::vector<std::string> kernels;  // name expressions, in launch order
};

RenderedSource render_decode(const DecodeKernelSpec& spec);

// Names of the decode kernels inside RenderedSource::kernels.
enum DecodeKernel {
  kDecodeScore,
  kDecodeSelect,
  kDecodeAttend,
  kDecodeMerge,
  kDecodeSelectHist,  // split selection (few rows): phases 1-3
  kDecodeSelectClassify,
  kDecodeSelectFinish,
  kDecodeSelectCoop,     // few rows over one cooperative grid (radix_select_coop.cuh)
  kDecodeSelectCluster,  // sm_90+: a cluster of CTAs per row (an empty kernel below sm_90)
};

RenderedSource render_select(const SelectKernelSpec& spec);

// Names of the selection kernels inside RenderedSource::kernels.
enum SelectKernel {
  kSelectRows,
  kSelectSplitHist,
  kSelectSplitClassify,
  kSelectSplitFinish,
  kSelectSort,
  kSelectRowsCluster,  // sm_90+: a cluster of CTAs per row (an empty kernel below sm_90)
  kSelectRowsCoop,     // few long rows over one cooperative grid
};

RenderedSource render_fidelity(const FidelityKernelSpec& spec);

enum FidelityKernel { kFidelityScores, kFidelitySelect, kFidelityStats };

RenderedSource render_sparse(const SparseKernelSpec& spec);

enum SparseKernel { kSparseAttend, kSparseMerge };

// The indexer scores kernel, then the selection kernels (SelectKernel order) over fp32 rows.
RenderedSource render_indexer(const IndexerKernelSpec& spec);

enum IndexerKernel { kIndexerScores, kIndexerSelectFirst };

}  // namespace tka::codegen
