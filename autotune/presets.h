// Built-in model shapes: the attention geometry of well-known models and a default k, used by
// `topkattn run/prewarm --model NAME` and by the benchmarks.
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
  int top_k;
  const char* note;
};

const std::vector<ModelPreset>& model_presets();
const ModelPreset* find_preset(const std::string& name);

// The decode descriptors whose kernels a deployment of the preset needs: bf16, one new token,
// per-head and per-group selection, contiguous KV and paged KV with pages of 16 and 64.
std::vector<tka_decode_desc> preset_decode_descs(const ModelPreset& preset, int max_batch, int max_seq_len);

}  // namespace tka
