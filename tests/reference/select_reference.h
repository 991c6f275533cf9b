// fp64-free reference for top-k selection (no arithmetic, only order): the contract of
// tka_select_desc (include/topkattn/topkattn.h) written as plainly as possible, to compare the GPU
// kernels against.
#ifndef TOPKATTN_TESTS_REFERENCE_SELECT_REFERENCE_H_
#define TOPKATTN_TESTS_REFERENCE_SELECT_REFERENCE_H_

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace topkattn_ref {

// a ranks above b: larger value first (NaN below every number, -0 == +0), then lower index.
inline bool select_before(float va, int ia, float vb, int ib) {
  const bool na = std::isnan(va), nb = std::isnan(vb);
  if (na != nb) return nb;
  if (!na && va != vb) return va > vb;
  return ia < ib;
}

// The indices of the min(k, n) top entries of row[0, n), best first.
inline std::vector<int> select_topk(const float* row, int n, int k) {
  std::vector<int> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  const int s = std::min(k, n);
  std::partial_sort(idx.begin(), idx.begin() + s, idx.end(),
                    [&](int a, int b) { return select_before(row[a], a, row[b], b); });
  idx.resize(static_cast<size_t>(s));
  return idx;
}

}  // namespace topkattn_ref

#endif  // TOPKATTN_TESTS_REFERENCE_SELECT_REFERENCE_H_
