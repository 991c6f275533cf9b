// Launch parameters of the top-k selection kernels (select.cuh), passed by value. Plain C++ so
// that the host (runtime/) fills the very same struct that the kernels read. Strides in elements.
#pragma once
#include "split_select_params.cuh"

namespace tka {

struct SelectParams {
  const void* input;  // [rows, n]
  long long input_stride;
  const int* lengths;  // optional [rows]
  void* values;        // [rows, k]; nullptr: indices only
  long long values_stride;
  int* indices;  // [rows, k]
  long long indices_stride;
  int rows;
  int n;  // columns of the input
  int k;
  int sort_size;  // power of two >= k: the sort buffer (dynamic shared memory)
  int sort_rows;  // select_rows sorts each row's output in its dynamic shared memory

  SplitSelectParams split;  // rows split over CTAs, used when split.chunk > 0
  CoopSelectParams coop;    // rows split over one cooperative grid (select_rows_coop)
};

// With TKA_CLUSTER_DEEP_RING, the steps of its slice that select_rows_cluster keeps in flight (a
// step is 8 elements a thread): as many as fit 176 KB, so that a slice of up to that size (a third
// of a 128K fp32 row is 171 KB: 11 steps at 512 threads) is asked for before the CTA draws its
// sample, and lands meanwhile; at least the config's stages, at most 16. With the 41 KB of the
// kernel's static shared memory at 512 threads that is 217 KB of sm_90's 227. The host gives the
// launch that ring where it fits (else the kernel reads without one).
constexpr int cluster_deep_stages(int stages, int threads, int elem_bytes) {
  const int deep = 176 * 1024 / (8 * threads * elem_bytes);
  return deep < stages ? stages : deep > 16 ? 16 : deep;
}

}  // namespace tka
