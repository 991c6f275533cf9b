/*
 * topkattn example: one exact top-k decode step, shaped like Llama-3.1-8B (32 query heads,
 * 8 KV heads, head dim 128, k = 2048, bf16, contiguous KV cache), checked element by element
 * against a double-precision CPU reference, then timed.
 *
 *   decode_example [--batch 4] [--seq-len 16384] [--top-k 2048]
 *
 * Sequences are ragged (sequence b holds fewer keys than sequence 0) to show per-sequence
 * lengths. Without a GPU it prints why, compiles the kernel for sm_90 into the cache, and exits 0.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* CUDA 13's driver_types.h has an anonymous union, which -std=c99 -pedantic rejects. */
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
#endif
#include <cuda_runtime_api.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#include <topkattn/topkattn.h>

#define HQ 32
#define HKV 8
#define HEAD_DIM 128
#define GROUP (HQ / HKV)
#define TIMED_RUNS 100
#define TOLERANCE 1e-2
#define TWO_PI 6.283185307179586

#define CHECK_CUDA(call)                                                                       \
  do {                                                                                         \
    cudaError_t err_ = (call);                                                                 \
    if (err_ != cudaSuccess) {                                                                 \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(err_)); \
      exit(1);                                                                                 \
    }                                                                                          \
  } while (0)

#define CHECK_TKA(call)                                                                                            \
  do {                                                                                                             \
    tka_status st_ = (call);                                                                                       \
    if (st_ != TKA_SUCCESS) {                                                                                      \
      fprintf(stderr, "%s:%d: %s: %s: %s\n", __FILE__, __LINE__, #call, tka_status_string(st_), tka_last_error()); \
      exit(1);                                                                                                     \
    }                                                                                                              \
  } while (0)

typedef struct config {
  int batch;
  int seq_len; /* capacity of the cache and length of sequence 0 */
  int top_k;
} config;

/* ---- inputs: xorshift64* normals, rounded to bf16 by hand --------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static double uniform01(void) { /* in (0, 1) */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return ((double)((rng_state * 0x2545F4914F6CDD1Dull) >> 11) + 0.5) / 9007199254740992.0;
}

static double normal(void) { /* Box-Muller */
  double u = uniform01(), v = uniform01();
  return sqrt(-2.0 * log(u)) * cos(TWO_PI * v);
}

static uint16_t float_to_bf16(float f) { /* round to nearest, ties to even */
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FC0; /* NaN stays NaN */
  u += 0x7FFFu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

static float bf16_to_float(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static uint16_t* random_bf16(size_t count) {
  size_t i;
  uint16_t* x = (uint16_t*)malloc(count * sizeof *x);
  if (!x) {
    fprintf(stderr, "out of host memory (%zu bf16 values)\n", count);
    exit(1);
  }
  for (i = 0; i < count; ++i) x[i] = float_to_bf16((float)normal());
  return x;
}

/* ---- CPU reference: exact top-k decode in double precision ------------------------------- */

typedef struct scored {
  double score;
  int index;
} scored;

static int by_score_desc_index_asc(const void* a, const void* b) {
  const scored* x = (const scored*)a;
  const scored* y = (const scored*)b;
  if (x->score != y->score) return x->score > y->score ? -1 : 1;
  return (x->index > y->index) - (x->index < y->index);
}

/* q [B, 1, HQ, D], k/v [B, HKV, cap, D], out [B, HQ, D] (double). */
static void reference_decode(const config* cfg, const int* seq_lens, const uint16_t* q, const uint16_t* k,
                             const uint16_t* v, double* out) {
  const size_t cap = (size_t)cfg->seq_len;
  const double scale = 1.0 / sqrt((double)HEAD_DIM);
  scored* rows[GROUP];
  int b, kvh, g, i, j, dd;
  for (g = 0; g < GROUP; ++g) {
    rows[g] = (scored*)malloc(cap * sizeof(scored));
    if (!rows[g]) {
      fprintf(stderr, "out of host memory\n");
      exit(1);
    }
  }
  for (b = 0; b < cfg->batch; ++b) {
    const int n = seq_lens[b];
    const int kk = cfg->top_k < n ? cfg->top_k : n;
    for (kvh = 0; kvh < HKV; ++kvh) {
      const uint16_t* kb = k + ((size_t)b * HKV + kvh) * cap * HEAD_DIM;
      const uint16_t* vb = v + ((size_t)b * HKV + kvh) * cap * HEAD_DIM;
      double qf[GROUP][HEAD_DIM];
      for (g = 0; g < GROUP; ++g)
        for (dd = 0; dd < HEAD_DIM; ++dd)
          qf[g][dd] = bf16_to_float(q[((size_t)b * HQ + kvh * GROUP + g) * HEAD_DIM + dd]);
      for (i = 0; i < n; ++i) { /* one read of key i serves the whole group */
        double kf[HEAD_DIM];
        for (dd = 0; dd < HEAD_DIM; ++dd) kf[dd] = bf16_to_float(kb[(size_t)i * HEAD_DIM + dd]);
        for (g = 0; g < GROUP; ++g) {
          double dot = 0.0;
          for (dd = 0; dd < HEAD_DIM; ++dd) dot += qf[g][dd] * kf[dd];
          rows[g][i].score = scale * dot;
          rows[g][i].index = i;
        }
      }
      for (g = 0; g < GROUP; ++g) {
        double* o = out + ((size_t)b * HQ + kvh * GROUP + g) * HEAD_DIM;
        double max_score, sum = 0.0;
        qsort(rows[g], (size_t)n, sizeof(scored), by_score_desc_index_asc);
        max_score = rows[g][0].score;
        for (dd = 0; dd < HEAD_DIM; ++dd) o[dd] = 0.0;
        for (j = 0; j < kk; ++j) {
          const double p = exp(rows[g][j].score - max_score);
          const uint16_t* vrow = vb + (size_t)rows[g][j].index * HEAD_DIM;
          sum += p;
          for (dd = 0; dd < HEAD_DIM; ++dd) o[dd] += p * bf16_to_float(vrow[dd]);
        }
        for (dd = 0; dd < HEAD_DIM; ++dd) o[dd] /= sum;
      }
    }
  }
  for (g = 0; g < GROUP; ++g) free(rows[g]);
}

/* Compares every element; returns 1 on PASS. */
static int compare(const uint16_t* got, const double* ref, size_t count) {
  double err2 = 0.0, ref2 = 0.0, max_abs = 0.0, max_rel = 0.0, ref_max = 0.0;
  size_t i, bad = 0;
  for (i = 0; i < count; ++i)
    if (fabs(ref[i]) > ref_max) ref_max = fabs(ref[i]);
  for (i = 0; i < count; ++i) {
    const double x = bf16_to_float(got[i]), d = fabs(x - ref[i]);
    /* relative to |ref|, floored at 1% of the largest |ref| so near-zero outputs don't dominate */
    const double rel = d / fmax(fabs(ref[i]), 1e-2 * ref_max);
    if (!isfinite(x)) {
      ++bad;
      continue;
    }
    err2 += d * d;
    ref2 += ref[i] * ref[i];
    if (d > max_abs) max_abs = d;
    if (rel > max_rel) max_rel = rel;
  }
  {
    const double rel_l2 = sqrt(err2 / ref2);
    const int pass = bad == 0 && rel_l2 < TOLERANCE;
    printf(
        "checked %zu outputs: %zu not finite, max abs err %.3e, max rel err %.3e, "
        "rel L2 err %.3e -> %s\n",
        count, bad, max_abs, max_rel, rel_l2, pass ? "PASS" : "FAIL");
    return pass;
  }
}

/* ---- the plan --------------------------------------------------------------------------- */

static void describe(const config* cfg, tka_op_desc* desc) {
  tka_op_desc_init(desc, TKA_OP_TOPK_DECODE);
  desc->decode.dtype = TKA_DTYPE_BF16;
  desc->decode.num_q_heads = HQ;
  desc->decode.num_kv_heads = HKV;
  desc->decode.head_dim = HEAD_DIM;
  desc->decode.q_len = 1;
  desc->decode.top_k = cfg->top_k;
  desc->decode.select = TKA_SELECT_PER_HEAD;
  desc->decode.kv_layout = TKA_KV_CONTIGUOUS;
  desc->decode.max_batch = cfg->batch;
  desc->decode.max_seq_len = cfg->seq_len;
}

/* No GPU: still compile the kernel for sm_90 into the cache, so a later run starts warm. */
static int prewarm_without_gpu(const config* cfg) {
  tka_runtime_options opts;
  tka_runtime* rt = NULL;
  tka_plan* plan = NULL;
  tka_op_desc desc;
  tka_status st;
  tka_runtime_options_init(&opts);
  opts.compile_only_sm = 90;
  describe(cfg, &desc);
  st = tka_runtime_create(&opts, &rt);
  if (st == TKA_SUCCESS) st = tka_plan_create(rt, &desc, &plan);
  if (st != TKA_SUCCESS) {
    printf("compile-only prewarm for sm_90 failed: %s: %s\n", tka_status_string(st), tka_last_error());
    if (rt) tka_runtime_destroy(rt);
    return st == TKA_ERROR_NVRTC_UNAVAILABLE ? 0 : 1; /* no NVRTC here is not a bug */
  }
  printf("compiled for sm_90 into the cache (%s): %s\n", tka_runtime_cache_dir(rt), tka_plan_spec(plan));
  CHECK_TKA(tka_plan_destroy(plan));
  CHECK_TKA(tka_runtime_destroy(rt));
  return 0;
}

static DLTensor device_tensor(void* data, DLDataType dtype, int ndim, int64_t* shape) {
  DLTensor t;
  memset(&t, 0, sizeof t);
  t.data = data;
  t.device.device_type = kDLCUDA;
  t.device.device_id = 0;
  t.ndim = ndim;
  t.dtype = dtype;
  t.shape = shape;
  t.strides = NULL; /* compact, row-major */
  t.byte_offset = 0;
  return t;
}

static void* device_copy(const void* host, size_t bytes) {
  void* dev = NULL;
  CHECK_CUDA(cudaMalloc(&dev, bytes));
  if (host) CHECK_CUDA(cudaMemcpy(dev, host, bytes, cudaMemcpyHostToDevice));
  return dev;
}

static int parse_args(int argc, char** argv, config* cfg) {
  int i;
  for (i = 1; i < argc; ++i) {
    int* field = NULL;
    if (strcmp(argv[i], "--batch") == 0)
      field = &cfg->batch;
    else if (strcmp(argv[i], "--seq-len") == 0)
      field = &cfg->seq_len;
    else if (strcmp(argv[i], "--top-k") == 0)
      field = &cfg->top_k;
    if (!field || i + 1 >= argc || (*field = atoi(argv[++i])) <= 0) {
      fprintf(stderr, "usage: %s [--batch N] [--seq-len N] [--top-k N]\n", argv[0]);
      return 0;
    }
  }
  return 1;
}

int main(int argc, char** argv) {
  config cfg = {4, 16384, 2048};
  tka_runtime* rt = NULL;
  tka_plan* plan = NULL;
  tka_op_desc desc;
  tka_status st;
  size_t ws_bytes = 0, q_count, kv_count, out_count;
  double floor_bytes = 0.0, *ref;
  int b, r, max_k = 0, pass, *seq_lens;
  uint16_t *hq, *hk, *hv, *hout;
  void *dq, *dk, *dv, *dlens, *dout, *dws = NULL;
  int64_t q_shape[4], kv_shape[4], lens_shape[1];
  const DLDataType bf16 = {kDLBfloat, 16, 1}, i32 = {kDLInt, 32, 1};
  DLTensor tq, tk, tv, tlens, tout;
  tka_tensors tensors;
  cudaStream_t stream;
  cudaEvent_t start, stop;
  float ms = 0.0f;

  if (!parse_args(argc, argv, &cfg)) return 2;
  st = tka_runtime_create(NULL, &rt); /* device 0, default cache */
  if (st == TKA_ERROR_NO_DEVICE) {
    printf("no GPU found: %s\n", tka_last_error());
    return prewarm_without_gpu(&cfg);
  }
  CHECK_TKA(st);
  describe(&cfg, &desc);
  CHECK_TKA(tka_plan_create(rt, &desc, &plan));
  CHECK_TKA(tka_plan_workspace_size(plan, &ws_bytes));
  CHECK_TKA(tka_plan_max_k(plan, &max_k));
  printf("topkattn %s, plan %s, workspace %zu bytes, max_k %d\n", tka_version(), tka_plan_spec(plan), ws_bytes, max_k);

  /* Host inputs. Sequence b holds N - (b mod 8)*N/8 keys. */
  q_count = (size_t)cfg.batch * HQ * HEAD_DIM;
  kv_count = (size_t)cfg.batch * HKV * cfg.seq_len * HEAD_DIM;
  out_count = q_count;
  seq_lens = (int*)malloc((size_t)cfg.batch * sizeof *seq_lens);
  hout = (uint16_t*)malloc(out_count * sizeof *hout);
  ref = (double*)malloc(out_count * sizeof *ref);
  if (!seq_lens || !hout || !ref) {
    fprintf(stderr, "out of host memory\n");
    return 1;
  }
  for (b = 0; b < cfg.batch; ++b) {
    const int n = cfg.seq_len - (int)((long)(b % 8) * cfg.seq_len / 8); /* >= N/8, >= 1 */
    const int kk = cfg.top_k < n ? cfg.top_k : n;
    seq_lens[b] = n;
    floor_bytes += 2.0 * HKV * n * HEAD_DIM + 2.0 * HQ * kk * HEAD_DIM; /* bf16: 2 bytes */
  }
  hq = random_bf16(q_count);
  hk = random_bf16(kv_count);
  hv = random_bf16(kv_count);

  /* Device tensors; the output is poisoned (0xFFFF is a bf16 NaN) so unwritten rows show. */
  CHECK_CUDA(cudaSetDevice(0));
  CHECK_CUDA(cudaStreamCreate(&stream));
  dq = device_copy(hq, q_count * 2);
  dk = device_copy(hk, kv_count * 2);
  dv = device_copy(hv, kv_count * 2);
  dlens = device_copy(seq_lens, (size_t)cfg.batch * sizeof(int));
  dout = device_copy(NULL, out_count * 2);
  CHECK_CUDA(cudaMemset(dout, 0xFF, out_count * 2));
  if (ws_bytes > 0) CHECK_CUDA(cudaMalloc(&dws, ws_bytes)); /* 256-byte aligned */

  q_shape[0] = cfg.batch, q_shape[1] = 1, q_shape[2] = HQ, q_shape[3] = HEAD_DIM;
  kv_shape[0] = cfg.batch, kv_shape[1] = HKV, kv_shape[2] = cfg.seq_len, kv_shape[3] = HEAD_DIM;
  lens_shape[0] = cfg.batch;
  tq = device_tensor(dq, bf16, 4, q_shape);
  tk = device_tensor(dk, bf16, 4, kv_shape);
  tv = device_tensor(dv, bf16, 4, kv_shape);
  tlens = device_tensor(dlens, i32, 1, lens_shape);
  tout = device_tensor(dout, bf16, 4, q_shape); /* out has q's shape: head_dim_v == head_dim */
  memset(&tensors, 0, sizeof tensors);          /* block_table, lse, indices: not used */
  tensors.q = &tq;
  tensors.k_cache = &tk;
  tensors.v_cache = &tv;
  tensors.seq_lens = &tlens;
  tensors.out = &tout;

  /* One step, checked against the CPU. */
  CHECK_TKA(tka_plan_run(plan, &tensors, dws, stream));
  CHECK_CUDA(cudaStreamSynchronize(stream));
  CHECK_CUDA(cudaMemcpy(hout, dout, out_count * 2, cudaMemcpyDeviceToHost));
  printf("B=%d N=%d (ragged down to %d) Hq=%d Hkv=%d d=%d k=%d: computing the CPU reference...\n", cfg.batch,
         cfg.seq_len, seq_lens[cfg.batch - 1], HQ, HKV, HEAD_DIM, cfg.top_k);
  fflush(stdout);
  reference_decode(&cfg, seq_lens, hq, hk, hv, ref);
  pass = compare(hout, ref, out_count);

  /* Timing: warm up, then TIMED_RUNS steps back to back between two events. */
  CHECK_CUDA(cudaEventCreate(&start));
  CHECK_CUDA(cudaEventCreate(&stop));
  for (r = 0; r < 10; ++r) CHECK_TKA(tka_plan_run(plan, &tensors, dws, stream));
  CHECK_CUDA(cudaEventRecord(start, stream));
  for (r = 0; r < TIMED_RUNS; ++r) CHECK_TKA(tka_plan_run(plan, &tensors, dws, stream));
  CHECK_CUDA(cudaEventRecord(stop, stream));
  CHECK_CUDA(cudaEventSynchronize(stop));
  CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
  {
    const double us = 1000.0 * ms / TIMED_RUNS;
    printf(
        "%.1f us per step, %.0f GB/s over the bytes floor (%.1f MB: all visible K + the "
        "selected V rows)\n",
        us, floor_bytes / (us * 1e-6) / 1e9, floor_bytes / 1e6);
  }

  CHECK_CUDA(cudaEventDestroy(start));
  CHECK_CUDA(cudaEventDestroy(stop));
  CHECK_CUDA(cudaFree(dq));
  CHECK_CUDA(cudaFree(dk));
  CHECK_CUDA(cudaFree(dv));
  CHECK_CUDA(cudaFree(dlens));
  CHECK_CUDA(cudaFree(dout));
  if (dws) CHECK_CUDA(cudaFree(dws));
  CHECK_CUDA(cudaStreamDestroy(stream));
  CHECK_TKA(tka_plan_destroy(plan));
  CHECK_TKA(tka_runtime_destroy(rt));
  free(hq);
  free(hk);
  free(hv);
  free(hout);
  free(ref);
  free(seq_lens);
  return pass ? 0 : 1;
}
