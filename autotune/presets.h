// Built-in model shapes: the attention geometry of well-known models and a default k, used by
// `topkattn models/run/prewarm/tune --model NAME` and by the benchmarks.
#pragma once
#include <string>
#include <vector>

#include "topkattn/topkattn.h"

namespace tka {

struct ModelPreset {
  const char* name;
  int num_q_heads;
  int num_kv_heads;
  int head_dim;
  int head_dim_v;
  int top_k;
  int indexer_heads;  // DeepSeek Sparse Attention's Lightning Indexer (0: none)
  int indexer_dim;
  const char* attention;  // "GQA 4", "MLA", ...
};

const std::vector<ModelPreset>& model_presets();
const ModelPreset* find_preset(const std::string& name);
std::string preset_names();  // "llama-3.1-8b, llama-3.1-70b, ..."

// Whether exact top-k decode serves the preset's attention (head_dim 64/128/256, d_v = d).
bool preset_has_decode(const ModelPreset& preset);

// The decode descriptors whose kernels a deployment of the preset needs: bf16, one new token,
// per-head and per-group selection, contiguous KV and paged KV with pages of 16 and 64. Empty
// for a preset whose attention the decode op does not serve (MLA).
std::vector<tka_decode_desc> preset_decode_descs(const ModelPreset& preset, int max_batch, int max_seq_len);

// DeepSeek Sparse Attention presets (indexer_heads > 0): the fused indexer decode with FP8
// indexer keys over the preset's attention (MLA: shared 576/512 latent rows), contiguous and
// paged with pages of 64. Empty for presets without an indexer.
std::vector<tka_indexer_desc> preset_indexer_descs(const ModelPreset& preset, int max_batch, int max_seq_len);

// The one descriptor `topkattn run` and `topkattn tune --model` use: per-head, contiguous.
tka_decode_desc preset_main_desc(const ModelPreset& preset, int max_batch, int max_seq_len);

}  // namespace tka
