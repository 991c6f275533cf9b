// Exact top-k decode: the validated request (DecodeOp), the launch/tile choices (DecodeConfig),
// and what the generated kernels are specialized on (DecodeKernelSpec) with its canonical text.
#pragma once
#include <string>

#include "common/status.h"
#include "topkattn/topkattn.h"

namespace tka {

inline constexpr int kMaxTopK = 8192;
inline constexpr int kMaxGroup = 16;
inline constexpr int kMaxQLen = 16;
inline constexpr int kMaxHeads = 1024;   // query heads: keeps rows and grids of every op within int and 65535
inline constexpr int kMaxBatch = 65535;  // sequences: a grid dimension in decode and sparse attention

// A descriptor that passed validation, with defaults resolved.
struct DecodeOp {
  tka_decode_desc desc{};  // head_dim_v and scale filled in
  int group = 0;           // num_q_heads / num_kv_heads
  int max_k = 0;           // width of the indices output
  int sel_heads() const { return desc.select == TKA_SELECT_PER_GROUP ? desc.num_kv_heads : desc.num_q_heads; }
};

// The head counts of every attention descriptor: both positive, num_kv_heads dividing num_q_heads
// (*group: the quotient); errors name the field as `invalid` does ("sparse.num_kv_heads: ...").
Status validate_head_counts(const FieldError& invalid, int num_q_heads, int num_kv_heads, int* group);

// Every field names the field of the descriptor it rejects ("decode.head_dim: ...").
Status validate_decode(const tka_decode_desc& desc, DecodeOp* op);

struct DecodeConfig {
  int score_threads = 128;  // score pass: 16 keys per warp per tile
  int score_row_tile = 16;  // query rows per score CTA (whole 16-row mma tiles, up to 64)
  int select_threads = 512;
  int select_capacity = 4096;  // candidates kept in shared memory
  int attend_threads = 128;
  int attend_chunk = 1024;  // most selected keys per attend CTA
  // Launch-time choices: not compiled in, so not part of the spec text or the cache key.
  int score_waves = 0;         // score pass: full waves of resident CTAs over the keys; 0: one wave
                               // up to batch 4 (few rows), else 4 (ragged lengths balance)
  int attend_min_split = 128;  // fewest selected keys per attend CTA when rows are few
  // When rows are fewer than SMs, split each selection row over CTAs: 1 by the split selection's
  // three kernels, 2 over one cooperative grid that also attends where the rows fit it at once
  // (else as 1; a tuning choice: not faster under graph replay at B=1, bench/NOTES.md), 3 by a
  // cluster of CTAs per row on sm_90 where the rows are long enough to pay (select_cluster_size;
  // else as 1), 0 never. 3 by default: at batch 1 it measured 6-7% faster than 1 (bench/NOTES.md).
  int select_split = 3;

  bool operator==(const DecodeConfig& o) const;
  bool operator!=(const DecodeConfig& o) const { return !(*this == o); }
  // Every field, for tables and logs (ssp: select_split):
  // "st=128 sr=4 ss=512 sc=4096 at=128 ac=1024 sw=4 am=128 ssp=3".
  std::string text() const;
};

struct DecodeKernelSpec {
  tka_dtype dtype = TKA_DTYPE_BF16;
  int head_dim = 128;
  int group = 1;
  int q_len = 1;
  bool per_group = false;
  bool paged = false;
  int page_size = 0;
  DecodeConfig config;

  // "op=decode;dtype=bf16;d=128;g=4;q=1;sel=head;kv=contig;page=0;st=128;sr=4;ss=512;sc=4096;at=128;ac=1024"
  std::string text() const;
  // "decode_bf16_d128_g4_q1_head_contig": readable file names in the cache.
  std::string short_name() const;
  // Whether decode_select_coop attends too (Spec::kCoopAttends; DecodePlan::run launches
  // decode_attend when it does not): per-head selection only. A group's accumulators, one set a
  // head, do not fit the selection's 64 registers a thread. (kernel_spec_for makes a group of
  // one select per head.)
  bool coop_attends() const { return !per_group; }
};

DecodeKernelSpec kernel_spec_for(const DecodeOp& op, const DecodeConfig& config);
const char* dtype_name(tka_dtype dtype);

}  // namespace tka
