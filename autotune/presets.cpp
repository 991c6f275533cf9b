#include "autotune/presets.h"

namespace tka {

const std::vector<ModelPreset>& model_presets() {
  // Heads and head dims from each model's published config; k = 2048 as in DeepSeek-V3.2.
  static const std::vector<ModelPreset> presets = {
      {"llama-3.1-8b", 32, 8, 128, 128, 2048, 0, 0, "GQA 4"},
      {"llama-3.1-70b", 64, 8, 128, 128, 2048, 0, 0, "GQA 8"},
      {"qwen2.5-7b", 28, 4, 128, 128, 2048, 0, 0, "GQA 7"},
      {"qwen2.5-72b", 64, 8, 128, 128, 2048, 0, 0, "GQA 8"},
      {"mistral-7b", 32, 8, 128, 128, 2048, 0, 0, "GQA 4"},
      // MLA: one shared latent KV row per token, keys of 512 + 64 (RoPE), values its first 512.
      {"deepseek-v3.2", 128, 1, 576, 512, 2048, 64, 128, "MLA + indexer"},
  };
  return presets;
}

const ModelPreset* find_preset(const std::string& name) {
  for (const ModelPreset& p : model_presets())
    if (name == p.name) return &p;
  return nullptr;
}

std::string preset_names() {
  std::string out;
  for (const ModelPreset& p : model_presets()) out += (out.empty() ? "" : ", ") + std::string(p.name);
  return out;
}

bool preset_has_decode(const ModelPreset& p) {
  return (p.head_dim == 64 || p.head_dim == 128 || p.head_dim == 256) && p.head_dim_v == p.head_dim;
}

tka_decode_desc preset_main_desc(const ModelPreset& preset, int max_batch, int max_seq_len) {
  tka_decode_desc d{};
  d.dtype = TKA_DTYPE_BF16;
  d.num_q_heads = preset.num_q_heads;
  d.num_kv_heads = preset.num_kv_heads;
  d.head_dim = preset.head_dim;
  d.q_len = 1;
  d.top_k = preset.top_k;
  d.select = TKA_SELECT_PER_HEAD;
  d.kv_layout = TKA_KV_CONTIGUOUS;
  d.max_batch = max_batch;
  d.max_seq_len = max_seq_len;
  return d;
}

std::vector<tka_decode_desc> preset_decode_descs(const ModelPreset& preset, int max_batch, int max_seq_len) {
  std::vector<tka_decode_desc> out;
  if (!preset_has_decode(preset)) return out;
  for (tka_select_mode select : {TKA_SELECT_PER_HEAD, TKA_SELECT_PER_GROUP}) {
    for (int page : {0, 16, 64}) {
      tka_decode_desc d = preset_main_desc(preset, max_batch, max_seq_len);
      d.select = select;
      d.kv_layout = page ? TKA_KV_PAGED : TKA_KV_CONTIGUOUS;
      d.page_size = page;
      out.push_back(d);
    }
  }
  return out;
}

std::vector<tka_indexer_desc> preset_indexer_descs(const ModelPreset& preset, int max_batch, int max_seq_len) {
  std::vector<tka_indexer_desc> out;
  if (preset.indexer_heads <= 0) return out;
  for (int page : {0, 64}) {
    tka_indexer_desc d{};
    d.key_dtype = TKA_DTYPE_FP8_E4M3;
    d.num_index_heads = preset.indexer_heads;
    d.index_head_dim = preset.indexer_dim;
    d.q_len = 1;
    d.kv_layout = page ? TKA_KV_PAGED : TKA_KV_CONTIGUOUS;
    d.page_size = page;
    d.max_batch = max_batch;
    d.max_seq_len = max_seq_len;
    d.top_k = preset.top_k;
    tka_sparse_desc& a = d.attention;
    a.dtype = TKA_DTYPE_BF16;
    a.num_q_heads = preset.num_q_heads;
    a.num_kv_heads = preset.num_kv_heads;
    a.head_dim = preset.head_dim;
    a.head_dim_v = preset.head_dim_v;
    a.shared_kv = preset.head_dim != preset.head_dim_v;  // MLA: values are the first d_v of the key row
    out.push_back(d);
  }
  return out;
}

}  // namespace tka
