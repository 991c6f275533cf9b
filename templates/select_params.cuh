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

}  // namespace tka
