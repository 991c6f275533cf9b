// fp64 reference for exact top-k decode; see reference/decode_reference.h.
#include "reference/decode_reference.h"

#include <algorithm>
#include <atomic>
#include <limits>
#include <sstream>
#include <thread>

namespace topkattn_ref {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

const float* cache_row(const DecodeProblem& p, const float* base, const int64_t* strides, int b, int kv_head, int i) {
  if (b < 0 || b >= p.batch || kv_head < 0 || kv_head >= p.num_kv_heads || i < 0) return nullptr;
  if (!p.paged) {
    if (b >= p.cache_dim0 || i >= p.capacity) return nullptr;
    return base + b * strides[0] + kv_head * strides[1] + static_cast<int64_t>(i) * strides[2];
  }
  const int slot = i / p.page_size;
  if (slot >= p.max_pages) return nullptr;
  const int64_t page = p.block_table[static_cast<int64_t>(b) * p.max_pages + slot];
  if (page < 0 || page >= p.cache_dim0) return nullptr;
  return base + page * strides[0] + (i % p.page_size) * strides[1] + kv_head * strides[2];
}

double dot(const float* a, const float* b, int d) {
  double s = 0;
  for (int x = 0; x < d; ++x) s += static_cast<double>(a[x]) * static_cast<double>(b[x]);
  return s;
}

// softmax over `m` scores, weighted sum of the value rows.
void softmax_sum(const double* s, const float* const* vrows, size_t m, int dv, double* out, double* lse) {
  if (m == 0) {
    std::fill(out, out + dv, 0.0);
    *lse = -kInf;
    return;
  }
  double mx = -kInf;
  for (size_t t = 0; t < m; ++t) {
    if (std::isnan(s[t])) {  // a selected NaN score poisons the row, as it would in the kernel
      std::fill(out, out + dv, kNaN);
      *lse = kNaN;
      return;
    }
    mx = std::max(mx, s[t]);
  }
  std::vector<double> acc(dv, 0.0);
  double z = 0;
  for (size_t t = 0; t < m; ++t) {
    const double w = std::exp(s[t] - mx);
    z += w;
    for (int x = 0; x < dv; ++x) acc[x] += w * static_cast<double>(vrows[t][x]);
  }
  for (int x = 0; x < dv; ++x) out[x] = acc[x] / z;
  *lse = mx + std::log(z);
}

void init_row(const DecodeProblem& p, int n, SelectionRow* row) {
  row->valid = true;
  row->n = n;
  row->size = selection_size(p, n);
  row->sink_end = std::min(std::max(p.n_sink, 0), n);
  row->local_begin = std::max(0, n - std::max(p.n_local, 0));
}

void select_row(SelectionRow* row) {
  std::vector<int> rest;
  row->selected.clear();
  for (int i = 0; i < row->n; ++i) (row->forced(i) ? row->selected : rest).push_back(i);
  const size_t take = static_cast<size_t>(row->size) - row->selected.size();
  const auto& key = row->key;
  std::partial_sort(rest.begin(), rest.begin() + static_cast<std::ptrdiff_t>(take), rest.end(),
                    [&](int a, int b) { return ranks_before(key[a], a, key[b], b); });
  row->selected.insert(row->selected.end(), rest.begin(), rest.begin() + static_cast<std::ptrdiff_t>(take));
  std::sort(row->selected.begin(), row->selected.end());
}

template <class F>
void parallel_for(size_t count, int threads, const F& fn) {
  size_t workers = threads > 0 ? static_cast<size_t>(threads) : std::max(1u, std::thread::hardware_concurrency());
  workers = std::min(workers, count);
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t u = next++; u < count; u = next++) fn(u);
  };
  std::vector<std::thread> pool;
  for (size_t w = 1; w < workers; ++w) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
}

std::string list_ints(const std::vector<int>& v) {
  std::ostringstream os;
  os << "{";
  for (size_t i = 0; i < v.size() && i < 8; ++i) os << (i ? "," : "") << v[i];
  if (v.size() > 8) os << ",... (" << v.size() << ")";
  os << "}";
  return os.str();
}

}  // namespace

double resolved_scale(const DecodeProblem& p) {
  return p.scale != 0.0f ? static_cast<double>(p.scale) : 1.0 / std::sqrt(static_cast<double>(p.head_dim));
}

int head_dim_v(const DecodeProblem& p) { return p.head_dim_v > 0 ? p.head_dim_v : p.head_dim; }

int group_size(const DecodeProblem& p) { return p.num_q_heads / p.num_kv_heads; }

int visible_keys(const DecodeProblem& p, int b, int j) {
  const int64_t nb = p.seq_lens[b];
  if (nb <= 0) return 0;
  const int64_t n = nb - p.q_len + j + 1;
  return static_cast<int>(std::min(std::max<int64_t>(n, 0), nb));
}

int SelectionRow::forced_count() const {
  if (n == 0) return 0;
  return sink_end + (n - std::max(local_begin, sink_end));
}

int selection_size(const DecodeProblem& p, int n) {
  if (n <= 0) return 0;
  SelectionRow r;
  r.n = n;
  r.sink_end = std::min(std::max(p.n_sink, 0), n);
  r.local_begin = std::max(0, n - std::max(p.n_local, 0));
  const int64_t k_row =
      p.top_k > 0 ? p.top_k
                  : std::max<int64_t>(1, static_cast<int64_t>(std::ceil(static_cast<double>(p.top_k_ratio) * n)));
  return static_cast<int>(std::min<int64_t>(n, std::max<int64_t>(k_row, r.forced_count())));
}

int max_k(const DecodeProblem& p) {
  if (p.top_k > 0) return p.top_k;
  const int64_t by_ratio = static_cast<int64_t>(std::ceil(static_cast<double>(p.top_k_ratio) * p.max_seq_len));
  return static_cast<int>(std::max<int64_t>({1, by_ratio, static_cast<int64_t>(p.n_sink) + p.n_local}));
}

const float* key_row(const DecodeProblem& p, int b, int kv_head, int i) {
  return cache_row(p, p.k, p.k_strides, b, kv_head, i);
}

const float* value_row(const DecodeProblem& p, int b, int kv_head, int i) {
  return cache_row(p, p.v, p.v_strides, b, kv_head, i);
}

bool sequence_valid(const DecodeProblem& p, int b) {
  const int nb = p.seq_lens[b];
  if (nb < 0 || nb > p.max_seq_len) return false;
  if (!p.paged) return nb <= p.capacity && b < p.cache_dim0;
  for (int i = 0; i < nb; i += p.page_size)  // one key per page decides the page
    if (!key_row(p, b, 0, i)) return false;
  return true;
}

DecodeReference reference_decode(const DecodeProblem& p, int threads) {
  DecodeReference r;
  const int g = group_size(p), dv = head_dim_v(p), d = p.head_dim;
  r.batch = p.batch;
  r.q_len = p.q_len;
  r.num_q_heads = p.num_q_heads;
  r.select_heads = p.per_group ? p.num_kv_heads : p.num_q_heads;
  r.head_dim_v = dv;
  r.out.assign(static_cast<size_t>(p.batch) * p.q_len * p.num_q_heads * dv, 0.0);
  r.lse.assign(static_cast<size_t>(p.batch) * p.q_len * p.num_q_heads, 0.0);
  r.rows.resize(static_cast<size_t>(p.batch) * p.q_len * r.select_heads);
  r.seq_nan.assign(p.batch, 0);
  for (int b = 0; b < p.batch; ++b) r.seq_nan[b] = !sequence_valid(p, b);
  const double scale = resolved_scale(p);

  // One unit = (b, j, kv head): its G heads share the key rows and, per group, the selection.
  const size_t units = static_cast<size_t>(p.batch) * p.q_len * p.num_kv_heads;
  parallel_for(units, threads, [&](size_t u) {
    const int kvh = static_cast<int>(u % p.num_kv_heads);
    const int j = static_cast<int>((u / p.num_kv_heads) % p.q_len);
    const int b = static_cast<int>(u / (static_cast<size_t>(p.num_kv_heads) * p.q_len));
    auto row_at = [&](int sh) -> SelectionRow& {
      return r.rows[(static_cast<size_t>(b) * p.q_len + j) * r.select_heads + sh];
    };
    auto out_at = [&](int h) {
      return r.out.data() + ((static_cast<size_t>(b) * p.q_len + j) * p.num_q_heads + h) * dv;
    };
    auto lse_at = [&](int h) -> double& { return r.lse[(static_cast<size_t>(b) * p.q_len + j) * p.num_q_heads + h]; };
    if (r.seq_nan[b]) {
      for (int h = kvh * g; h < (kvh + 1) * g; ++h) {
        std::fill(out_at(h), out_at(h) + dv, kNaN);
        lse_at(h) = kNaN;
        if (!p.per_group) row_at(h).valid = false;
      }
      if (p.per_group) row_at(kvh).valid = false;
      return;
    }
    const int n = visible_keys(p, b, j);
    std::vector<const float*> krows(n), vrows(n);
    for (int i = 0; i < n; ++i) {
      krows[i] = key_row(p, b, kvh, i);
      vrows[i] = value_row(p, b, kvh, i);
    }
    std::vector<std::vector<double>> scores(g, std::vector<double>(n));
    for (int hl = 0; hl < g; ++hl) {
      const int h = kvh * g + hl;
      const float* qrow = p.q + ((static_cast<size_t>(b) * p.q_len + j) * p.num_q_heads + h) * d;
      for (int i = 0; i < n; ++i) scores[hl][i] = scale * dot(qrow, krows[i], d);
    }
    auto attend_row = [&](int hl, const SelectionRow& row) {
      std::vector<double> s(row.selected.size());
      std::vector<const float*> vs(row.selected.size());
      for (size_t t = 0; t < s.size(); ++t) {
        s[t] = scores[hl][row.selected[t]];
        vs[t] = vrows[row.selected[t]];
      }
      const int h = kvh * g + hl;
      softmax_sum(s.data(), vs.data(), s.size(), dv, out_at(h), &lse_at(h));
    };
    if (p.per_group) {
      SelectionRow& row = row_at(kvh);
      init_row(p, n, &row);
      row.key.assign(n, kNaN);
      for (int i = 0; i < n; ++i)
        for (int hl = 0; hl < g; ++hl) {  // max with NaN lowest
          const double s = scores[hl][i];
          if (!std::isnan(s) && (std::isnan(row.key[i]) || s > row.key[i])) row.key[i] = s;
        }
      select_row(&row);
      for (int hl = 0; hl < g; ++hl) attend_row(hl, row);
    } else {
      for (int hl = 0; hl < g; ++hl) {
        SelectionRow& row = row_at(kvh * g + hl);
        init_row(p, n, &row);
        row.key = scores[hl];
        select_row(&row);
        attend_row(hl, row);
      }
    }
  });
  return r;
}

void attend(const DecodeProblem& p, int b, int j, int h, const std::vector<int>& set, double* out, double* lse) {
  const int kvh = h / group_size(p), dv = head_dim_v(p);
  if (!sequence_valid(p, b)) {
    std::fill(out, out + dv, kNaN);
    *lse = kNaN;
    return;
  }
  const float* qrow = p.q + ((static_cast<size_t>(b) * p.q_len + j) * p.num_q_heads + h) * p.head_dim;
  std::vector<double> s(set.size());
  std::vector<const float*> vs(set.size());
  for (size_t t = 0; t < set.size(); ++t) {
    s[t] = resolved_scale(p) * dot(qrow, key_row(p, b, kvh, set[t]), p.head_dim);
    vs[t] = value_row(p, b, kvh, set[t]);
  }
  softmax_sum(s.data(), vs.data(), s.size(), dv, out, lse);
}

namespace {

double row_abs_max(const SelectionRow& row) {
  double m = 0;
  for (double s : row.key)
    if (std::isfinite(s)) m = std::max(m, std::abs(s));
  return m;
}

// An infinite score is infinite in fp32 too: no rounding can move a key past it, so pairs with
// one are judged exactly.
double pair_tol(double a, double b, double rel_tol, double row_max) {
  if (std::isinf(a) || std::isinf(b)) return 0;
  return rel_tol * std::max(std::abs(a), std::abs(b)) + 0.1 * rel_tol * row_max;
}

}  // namespace

std::string judge_selection(const SelectionRow& row, const std::vector<int>& set, double rel_tol,
                            const int* key_class) {
  if (!row.valid) return "";
  std::ostringstream why;
  if (static_cast<int>(set.size()) != row.size) {
    why << "selected " << set.size() << " keys, expected |S| = " << row.size << " (n = " << row.n << ")";
    return why.str();
  }
  std::vector<char> in(row.n, 0);
  for (size_t t = 0; t < set.size(); ++t) {
    const int i = set[t];
    if (i < 0 || i >= row.n) {
      why << "index " << i << " outside the visible keys [0, " << row.n << ")";
      return why.str();
    }
    if (in[i]) {
      why << "index " << i << " selected twice";
      return why.str();
    }
    in[i] = 1;
  }
  for (int i = 0; i < row.n; ++i)
    if (row.forced(i) && !in[i]) {
      why << "forced key " << i << " (sink < " << row.sink_end << ", local >= " << row.local_begin << ") not selected";
      return why.str();
    }
  if (key_class) {  // bitwise-identical key rows: the lower index must win, whatever the tolerance
    std::vector<char> passed_over(row.n, 0);
    for (int i = 0; i < row.n; ++i) {
      if (row.forced(i)) continue;
      const int c = key_class[i];
      if (c < 0 || c >= row.n) continue;
      if (!in[i])
        passed_over[c] = 1;
      else if (passed_over[c]) {
        why << "tie rule: key " << i << " selected while an identical lower key (class of " << c << ") was left out";
        return why.str();
      }
    }
  }
  if (set == row.selected) return "";
  std::vector<int> extra, missing;
  std::set_difference(set.begin(), set.end(), row.selected.begin(), row.selected.end(), std::back_inserter(extra));
  std::set_difference(row.selected.begin(), row.selected.end(), set.begin(), set.end(), std::back_inserter(missing));
  if (rel_tol == 0) {
    why << "differs from the exact selection: extra " << list_ints(extra) << " (score " << row.key[extra[0]]
        << "), missing " << list_ints(missing) << " (score " << row.key[missing[0]] << ")";
    return why.str();
  }
  // The binding pair: the lowest-ranked selected non-forced key against the highest-ranked
  // unselected one.
  int worst = -1, best = -1;
  for (int i = 0; i < row.n; ++i) {
    if (row.forced(i)) continue;
    if (in[i]) {
      if (worst < 0 || ranks_before(row.key[worst], worst, row.key[i], i)) worst = i;
    } else if (best < 0 || ranks_before(row.key[i], i, row.key[best], best)) {
      best = i;
    }
  }
  if (worst < 0 || best < 0) return "";
  const double ws = row.key[worst], bs = row.key[best];
  const bool wn = std::isnan(ws), bn = std::isnan(bs);
  if (wn && !bn) {
    why << "selected NaN-score key " << worst << " while key " << best << " (score " << bs << ") was left out";
    return why.str();
  }
  if (wn && bn) {
    if (worst > best) {
      why << "tie rule among NaN scores: key " << worst << " selected, lower key " << best << " left out";
      return why.str();
    }
    return "";
  }
  if (std::isinf(ws) && ws == bs && worst > best) {
    why << "tie rule among infinite scores: key " << worst << " selected, lower key " << best << " left out";
    return why.str();
  }
  if (!bn && ws < bs - pair_tol(ws, bs, rel_tol, row_abs_max(row))) {
    why << "order: selected key " << worst << " (score " << ws << ") ranks below unselected key " << best << " (score "
        << bs << ") beyond the fp32 tolerance; extra " << list_ints(extra) << ", missing " << list_ints(missing);
    return why.str();
  }
  return "";
}

bool near_tie_alternatives(const SelectionRow& row, double rel_tol, size_t limit,
                           std::vector<std::vector<int>>* alternatives) {
  alternatives->clear();
  if (!row.valid || rel_tol == 0) return true;
  std::vector<int> forced, chosen, rest;
  std::vector<char> in(row.n, 0);
  for (int i : row.selected) in[i] = 1;
  for (int i = 0; i < row.n; ++i) (row.forced(i) ? forced : in[i] ? chosen : rest).push_back(i);
  if (chosen.empty() || rest.empty()) return true;
  auto by_rank = [&](int a, int b) { return ranks_before(row.key[a], a, row.key[b], b); };
  const int last = *std::max_element(chosen.begin(), chosen.end(), by_rank);  // ranks lowest
  const int next = *std::min_element(rest.begin(), rest.end(), by_rank);      // ranks highest
  const double hi = row.key[last], lo = row.key[next];
  // NaN keys are ordered exactly by index, infinite ones exactly by value, then index.
  if (!std::isfinite(hi) || !std::isfinite(lo)) return true;
  const double tol = pair_tol(hi, lo, rel_tol, row_abs_max(row));
  if (hi - lo > tol) return true;
  std::vector<int> sure, window;
  for (int i : chosen) (row.key[i] > hi + tol ? sure : window).push_back(i);
  for (int i : rest)
    if (!std::isnan(row.key[i]) && row.key[i] >= lo - tol) window.push_back(i);
  const size_t slots = chosen.size() - sure.size();
  double combos = 1;  // C(window, slots), as a double to see overflow coming
  for (size_t t = 0; t < slots; ++t) combos = combos * static_cast<double>(window.size() - t) / (t + 1);
  if (combos > static_cast<double>(limit)) return false;
  std::vector<char> pick(window.size(), 0);
  std::fill(pick.begin(), pick.begin() + static_cast<std::ptrdiff_t>(slots), 1);
  std::sort(pick.begin(), pick.end());  // ascending permutation order for next_permutation
  do {
    std::vector<int> set = forced;
    set.insert(set.end(), sure.begin(), sure.end());
    for (size_t t = 0; t < window.size(); ++t)
      if (pick[t]) set.push_back(window[t]);
    std::sort(set.begin(), set.end());
    if (set != row.selected) alternatives->push_back(std::move(set));
  } while (std::next_permutation(pick.begin(), pick.end()));
  return true;
}

}  // namespace topkattn_ref
