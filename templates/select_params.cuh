// Launch parameters of the top-k selection kernels (select.cuh), passed by value. Plain C++ so
// that the host (runtime/) fills the very same struct that the kernels read. Strides in elements.
#pragma once

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

  // Split selection (radix_select_split.cuh), used when chunk > 0: per row
  unsigned* hist;      // [rows, 2048], zeroed before each run
  int* counts;         // [rows, 2 * chunks]
  unsigned* stage_key;  // [rows, chunks, stage]: each chunk's staged keys
  int* stage_idx;       // the same for their indices
  int stage;            // slots per chunk
  int stage_sure;       // of which the first hold the keys above the threshold bin
  int chunk;            // columns per CTA, a multiple of 4
  int chunks;           // CTAs per row
};

}  // namespace tka
