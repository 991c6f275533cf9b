// fp64 reference for exact top-k decode (contract: include/topkattn/topkattn.h): the contract that the GPU tests and
// the benchmarks check against. Written once; nothing here knows about CUDA or the library.
//
// Inputs are float copies of the exact bf16/fp16 values that were sent to the device, laid out as
// on the device (strides, pages, block table), so the GPU's addressing is checked too.
#ifndef TOPKATTN_TESTS_REFERENCE_DECODE_REFERENCE_H_
#define TOPKATTN_TESTS_REFERENCE_DECODE_REFERENCE_H_

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace topkattn_ref {

// ---- 16-bit floats <-> float, round to nearest even --------------------------------------------

enum class Half { kBF16, kFP16 };

inline float bf16_to_float(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline uint16_t float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // ties to even; overflow carries into +-inf as it should
  return static_cast<uint16_t>(u >> 16);
}

inline float fp16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t man = h & 0x3ffu;
  if (exp == 0) {  // zero or subnormal: man * 2^-24, exact in float
    const float f = std::ldexp(static_cast<float>(man), -24);
    return sign ? -f : f;
  }
  const uint32_t u = exp == 31 ? (sign | 0x7f800000u | (man << 13)) : (sign | ((exp + 112u) << 23) | (man << 13));
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline uint16_t float_to_fp16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
  if (a >= 0x38800000u) {  // fp16 normal range (or overflow): rebias, round the 13 dropped bits
    const uint32_t v = a - 0x38000000u;
    const uint32_t h = (v + 0x0fffu + ((v >> 13) & 1u)) >> 13;
    return static_cast<uint16_t>(sign | (h >= 0x7c00u ? 0x7c00u : h));
  }
  // Subnormal (or zero): |f| * 2^24 is exact, nearbyint rounds to even; 0x400 is the smallest normal.
  const float scaled = std::fabs(f) * 16777216.0f;
  return static_cast<uint16_t>(sign | static_cast<uint16_t>(std::nearbyint(scaled)));
}

inline float half_to_float(uint16_t h, Half t) { return t == Half::kBF16 ? bf16_to_float(h) : fp16_to_float(h); }
inline uint16_t float_to_half(float f, Half t) { return t == Half::kBF16 ? float_to_bf16(f) : float_to_fp16(f); }

// ---- the problem ---------------------------------------------------------------------------------

struct DecodeProblem {
  // Descriptor fields (tka_decode_desc) that the result depends on.
  int num_q_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int head_dim_v = 0;  // 0: head_dim
  int q_len = 1;
  int top_k = 0;             // > 0: count mode
  float top_k_ratio = 0.0f;  // used when top_k == 0
  int n_sink = 0;
  int n_local = 0;
  bool per_group = false;
  bool paged = false;
  int page_size = 0;
  int max_seq_len = 0;
  float scale = 0.0f;  // 0: 1/sqrt(head_dim)

  // Tensors.
  int batch = 0;
  const float* q = nullptr;  // [batch, q_len, num_q_heads, head_dim], packed
  // K and V as on the device; element strides of the three outer dimensions (innermost is 1).
  //   contiguous: [cache_dim0 = cache batch, num_kv_heads, capacity, d]
  //   paged:      [cache_dim0 = num_pages, page_size, num_kv_heads, d]
  const float* k = nullptr;
  const float* v = nullptr;
  int64_t cache_dim0 = 0;
  int64_t capacity = 0;  // contiguous only
  int64_t k_strides[3] = {0, 0, 0};
  int64_t v_strides[3] = {0, 0, 0};
  const int32_t* seq_lens = nullptr;     // [batch]
  const int32_t* block_table = nullptr;  // [batch, max_pages], paged only
  int max_pages = 0;
};

// The selection order of the contract: higher score first, NaN below every number (-inf
// included), ties to the lower index.
inline bool ranks_before(double a, int ia, double b, int ib) {
  const bool na = std::isnan(a), nb = std::isnan(b);
  if (na != nb) return nb;
  if (!na && a != b) return a > b;
  return ia < ib;
}

double resolved_scale(const DecodeProblem& p);
int head_dim_v(const DecodeProblem& p);
int group_size(const DecodeProblem& p);
// Keys visible to query token j of sequence b: clamp(N_b - q_len + j + 1, 0, N_b).
int visible_keys(const DecodeProblem& p, int b, int j);
// |S| for a row that sees n keys.
int selection_size(const DecodeProblem& p, int n);
// Width of the indices output (tka_plan_max_k): top_k, or max(ceil(ratio * max_seq_len),
// n_sink + n_local) in ratio mode.
int max_k(const DecodeProblem& p);
// nullptr when the key does not lie in the cache (past capacity, past the block table, or a
// block-table entry outside the pool).
const float* key_row(const DecodeProblem& p, int b, int kv_head, int i);
const float* value_row(const DecodeProblem& p, int b, int kv_head, int i);
// False when the contract says the sequence's outputs are all NaN: N_b > max_seq_len, a visible
// key outside the cache, or (not in the contract; our choice) N_b < 0.
bool sequence_valid(const DecodeProblem& p, int b);

// One selection: per (b, j, q head) in per-head mode, per (b, j, kv head) in per-group mode.
struct SelectionRow {
  bool valid = true;          // false: the sequence's outputs are NaN and nothing is judged
  int n = 0;                  // visible keys
  int size = 0;               // |S|
  int sink_end = 0;           // keys [0, sink_end) are forced
  int local_begin = 0;        // keys [local_begin, n) are forced
  std::vector<double> key;    // the order score of each visible key (group max in per-group mode)
  std::vector<int> selected;  // S, ascending

  bool forced(int i) const { return i < sink_end || i >= local_begin; }
  int forced_count() const;
};

struct DecodeReference {
  int batch = 0, q_len = 0, num_q_heads = 0, select_heads = 0, head_dim_v = 0;
  std::vector<double> out;         // [batch, q_len, num_q_heads, head_dim_v]
  std::vector<double> lse;         // [batch, q_len, num_q_heads]; -inf when n = 0
  std::vector<SelectionRow> rows;  // [batch, q_len, select_heads]
  std::vector<char> seq_nan;       // [batch]: every output of the sequence is NaN

  const double* out_row(int b, int j, int h) const {
    return out.data() + ((static_cast<size_t>(b) * q_len + j) * num_q_heads + h) * head_dim_v;
  }
  double lse_at(int b, int j, int h) const { return lse[(static_cast<size_t>(b) * q_len + j) * num_q_heads + h]; }
  const SelectionRow& row(int b, int j, int sh) const {
    return rows[(static_cast<size_t>(b) * q_len + j) * select_heads + sh];
  }
};

// threads = 0: all hardware threads.
DecodeReference reference_decode(const DecodeProblem& p, int threads = 0);

// o (head_dim_v values) and lse of q head h of (b, j) over an arbitrary key set: used when the
// GPU picked a different but acceptable set (near-ties under fp32 scores).
void attend(const DecodeProblem& p, int b, int j, int h, const std::vector<int>& set, double* out, double* lse);

// Judges a selection (ascending, no -1) against the reference row. Returns "" when acceptable:
// the right size, in range, no duplicates, every forced key, and every selected non-forced key
// ranks above every unselected visible key. rel_tol = 0 demands the exact order (inputs designed
// so that fp32 scores are exact); rel_tol > 0 lets scores within rel_tol of each other (relative,
// with a floor of rel_tol/10 of the row's largest |score|) swap. NaN keys are never excused.
// key_class (may be null): for each visible key, the lowest index whose key row is bitwise
// identical; identical rows tie exactly under any arithmetic, so the lower index must win there
// whatever rel_tol is.
std::string judge_selection(const SelectionRow& row, const std::vector<int>& set, double rel_tol, const int* key_class);

// The other sets that judge_selection(rel_tol) would accept and that differ from the reference
// only among near-tied keys at the boundary, for checking outputs when no indices came back.
// Returns false (and fills nothing) when there would be more than `limit` of them.
bool near_tie_alternatives(const SelectionRow& row, double rel_tol, size_t limit,
                           std::vector<std::vector<int>>* alternatives);

}  // namespace topkattn_ref

#endif  // TOPKATTN_TESTS_REFERENCE_DECODE_REFERENCE_H_
