/* A C host program: create a runtime and an exact top-k decode plan, run it on random inputs,
 * check a few heads against a double-precision reference, and time it.
 *   build/decode_example [batch] [seq_len] [top_k]
 */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <topkattn/topkattn.h>

#define HQ 32
#define HKV 8
#define D 128

#define CHECK_TKA(call)                                                                    \
  do {                                                                                     \
    tka_status s_ = (call);                                                                \
    if (s_ != TKA_SUCCESS) {                                                               \
      fprintf(stderr, "%s: %s: %s\n", #call, tka_status_string(s_), tka_last_error());     \
      return 1;                                                                            \
    }                                                                                      \
  } while (0)
#define CHECK_CUDA(call)                                                                   \
  do {                                                                                     \
    cudaError_t e_ = (call);                                                               \
    if (e_ != cudaSuccess) {                                                               \
      fprintf(stderr, "%s: %s\n", #call, cudaGetErrorString(e_));                          \
      return 1;                                                                            \
    }                                                                                      \
  } while (0)

static uint32_t rng_state = 2463534242u;
static float next_normalish(void) { /* sum of uniforms: cheap, never all zeros */
  float s = 0.f;
  int i;
  for (i = 0; i < 4; ++i) {
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 17, rng_state ^= rng_state << 5;
    s += (float)(rng_state & 0xffffff) / 16777216.f - 0.5f;
  }
  return s * 1.7f;
}
static uint16_t to_bf16(float f) { /* round to nearest even */
  uint32_t u;
  memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
static double from_bf16(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static DLTensor make_tensor(void* data, DLDataType dt, int ndim, int64_t* shape) {
  DLTensor t;
  memset(&t, 0, sizeof t);
  t.data = data;
  t.device.device_type = kDLCUDA;
  t.device.device_id = 0;
  t.ndim = ndim;
  t.dtype = dt;
  t.shape = shape;
  return t;
}

/* Exact top-k decode of one query head in double: scores, top-k (score desc, index asc), softmax. */
static void reference_head(const uint16_t* q, const uint16_t* k, const uint16_t* v, int n, int top_k,
                           double* out) {
  double* s = malloc(sizeof(double) * n);
  char* taken = calloc(n, 1);
  double m = -INFINITY, l = 0;
  int i, c, t, sel = top_k < n ? top_k : n;
  for (i = 0; i < n; ++i) {
    double acc = 0;
    for (c = 0; c < D; ++c) acc += from_bf16(q[c]) * from_bf16(k[(size_t)i * D + c]);
    s[i] = acc / sqrt((double)D);
  }
  for (c = 0; c < D; ++c) out[c] = 0;
  for (t = 0; t < sel; ++t) { /* selection by repeated max: fine for an example */
    int best = -1;
    for (i = 0; i < n; ++i)
      if (!taken[i] && (best < 0 || s[i] > s[best])) best = i;
    taken[best] = 1;
    if (s[best] > m) m = s[best];
  }
  for (i = 0; i < n; ++i) {
    if (!taken[i]) continue;
    l += exp(s[i] - m);
    for (c = 0; c < D; ++c) out[c] += exp(s[i] - m) * from_bf16(v[(size_t)i * D + c]);
  }
  for (c = 0; c < D; ++c) out[c] /= l;
  free(s);
  free(taken);
}

int main(int argc, char** argv) {
  const int B = argc > 1 ? atoi(argv[1]) : 2, N = argc > 2 ? atoi(argv[2]) : 8192;
  const int K = argc > 3 ? atoi(argv[3]) : 2048;
  tka_runtime* rt = NULL;
  tka_op_desc desc;
  tka_plan* plan = NULL;
  size_t ws_bytes = 0, nq = (size_t)B * HQ * D, nkv = (size_t)B * HKV * N * D, i;
  uint16_t *hq, *hk, *hv, *ho;
  void *dq, *dk, *dv, *dout, *dws;
  int32_t* lens;
  void* dlens;
  int64_t q_shape[4], kv_shape[4], len_shape[1];
  DLDataType bf16 = {kDLBfloat, 16, 1}, i32 = {kDLInt, 32, 1};
  DLTensor tq, tk, tv, tl, to;
  tka_tensors tensors;
  cudaEvent_t e0, e1;
  float ms = 0;
  double worst = 0;
  int b, h, c, reps = 50;

  tka_status st = tka_runtime_create(NULL, &rt);
  if (st == TKA_ERROR_NO_DEVICE) {
    printf("no GPU found: %s\n", tka_last_error());
    return 0;
  }
  CHECK_TKA(st);
  tka_op_desc_init(&desc, TKA_OP_TOPK_DECODE);
  desc.decode.dtype = TKA_DTYPE_BF16;
  desc.decode.num_q_heads = HQ;
  desc.decode.num_kv_heads = HKV;
  desc.decode.head_dim = D;
  desc.decode.top_k = K;
  desc.decode.max_batch = B;
  desc.decode.max_seq_len = N;
  CHECK_TKA(tka_plan_create(rt, &desc, &plan));
  CHECK_TKA(tka_plan_workspace_size(plan, &ws_bytes));
  printf("plan: %s, workspace %.1f MiB\n", tka_plan_spec(plan), ws_bytes / 1048576.0);

  hq = malloc(nq * 2), hk = malloc(nkv * 2), hv = malloc(nkv * 2), ho = malloc(nq * 2);
  lens = malloc(sizeof(int32_t) * B);
  for (i = 0; i < nq; ++i) hq[i] = to_bf16(next_normalish());
  for (i = 0; i < nkv; ++i) hk[i] = to_bf16(next_normalish()), hv[i] = to_bf16(next_normalish());
  for (b = 0; b < B; ++b) lens[b] = N;
  CHECK_CUDA(cudaMalloc(&dq, nq * 2));
  CHECK_CUDA(cudaMalloc(&dk, nkv * 2));
  CHECK_CUDA(cudaMalloc(&dv, nkv * 2));
  CHECK_CUDA(cudaMalloc(&dout, nq * 2));
  CHECK_CUDA(cudaMalloc(&dlens, sizeof(int32_t) * B));
  CHECK_CUDA(cudaMalloc(&dws, ws_bytes));
  CHECK_CUDA(cudaMemcpy(dq, hq, nq * 2, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(dk, hk, nkv * 2, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(dv, hv, nkv * 2, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(dlens, lens, sizeof(int32_t) * B, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemset(dout, 0xff, nq * 2)); /* poison: NaN in bf16 */

  q_shape[0] = B, q_shape[1] = 1, q_shape[2] = HQ, q_shape[3] = D;
  kv_shape[0] = B, kv_shape[1] = HKV, kv_shape[2] = N, kv_shape[3] = D;
  len_shape[0] = B;
  tq = make_tensor(dq, bf16, 4, q_shape), tk = make_tensor(dk, bf16, 4, kv_shape);
  tv = make_tensor(dv, bf16, 4, kv_shape), tl = make_tensor(dlens, i32, 1, len_shape);
  to = make_tensor(dout, bf16, 4, q_shape);
  memset(&tensors, 0, sizeof tensors);
  tensors.q = &tq, tensors.k_cache = &tk, tensors.v_cache = &tv, tensors.seq_lens = &tl, tensors.out = &to;

  CHECK_TKA(tka_plan_run(plan, &tensors, dws, NULL));
  CHECK_CUDA(cudaMemcpy(ho, dout, nq * 2, cudaMemcpyDeviceToHost));
  for (b = 0; b < B; ++b) {
    for (h = 0; h < HQ; h += 7) { /* a few heads of every sequence */
      double ref[D], num = 0, den = 0;
      const size_t kv = ((size_t)b * HKV + h / (HQ / HKV)) * N * D;
      reference_head(hq + ((size_t)b * HQ + h) * D, hk + kv, hv + kv, lens[b], K, ref);
      for (c = 0; c < D; ++c) {
        double g = from_bf16(ho[((size_t)b * HQ + h) * D + c]);
        num += (g - ref[c]) * (g - ref[c]), den += ref[c] * ref[c];
      }
      if (!(sqrt(num / den) <= worst)) worst = sqrt(num / den);
    }
  }
  printf("check: worst relative L2 error %.2e %s\n", worst, worst < 1e-2 ? "PASS" : "FAIL");

  CHECK_CUDA(cudaEventCreate(&e0));
  CHECK_CUDA(cudaEventCreate(&e1));
  CHECK_CUDA(cudaEventRecord(e0, 0));
  for (i = 0; i < (size_t)reps; ++i) CHECK_TKA(tka_plan_run(plan, &tensors, dws, NULL));
  CHECK_CUDA(cudaEventRecord(e1, 0));
  CHECK_CUDA(cudaEventSynchronize(e1));
  CHECK_CUDA(cudaEventElapsedTime(&ms, e0, e1));
  {
    const double us = ms * 1e3 / reps;
    const double bytes = (double)B * HKV * N * D * 2 + (double)B * HQ * (K < N ? K : N) * D * 2;
    printf("time: %.1f us per decode step, %.0f GB/s over the K + selected V bytes\n", us, bytes / us / 1e3);
  }
  tka_plan_destroy(plan);
  tka_runtime_destroy(rt);
  cudaFree(dq), cudaFree(dk), cudaFree(dv), cudaFree(dout), cudaFree(dlens), cudaFree(dws);
  free(hq), free(hk), free(hv), free(ho), free(lens);
  return worst < 1e-2 ? 0 : 1;
}
