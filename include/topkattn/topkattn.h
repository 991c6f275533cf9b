/*
 * topkattn: run-time generated CUDA kernels for top-k sparse attention.
 *
 * The whole public interface. Valid C99 and C++. Plan once, run many times:
 *
 *   tka_runtime* rt;   tka_runtime_create(NULL, &rt);             // device 0, default cache
 *   tka_op_desc desc;  tka_op_desc_init(&desc, TKA_OP_TOPK_DECODE);
 *   desc.decode.num_q_heads = 32; ... ;
 *   tka_plan* plan;    tka_plan_create(rt, &desc, &plan);         // JIT or disk-cache hit
 *   size_t ws;         tka_plan_workspace_size(plan, &ws);
 *   tka_plan_run(plan, &tensors, workspace, stream);              // every decode step
 *
 * Every entry point returns a tka_status; on failure tka_last_error() (thread-local) names the
 * bad field or the failed step. Nothing is printed unless the log level asks for it.
 * Tensors are DLPack DLTensors; every field is checked against the plan before anything runs.
 */
#ifndef TOPKATTN_TOPKATTN_H_
#define TOPKATTN_TOPKATTN_H_

#include <stddef.h>
#include <stdint.h>

#include <dlpack/dlpack.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define TKA_API __declspec(dllexport)
#else
#define TKA_API __attribute__((visibility("default")))
#endif

#define TKA_VERSION_MAJOR 0
#define TKA_VERSION_MINOR 1
#define TKA_VERSION_PATCH 0

/* A CUDA stream (the Driver API's CUstream and the runtime's cudaStream_t are this type).
 * NULL is the legacy default stream. */
typedef struct CUstream_st* tka_stream;

typedef enum tka_status {
  TKA_SUCCESS = 0,
  TKA_ERROR_INVALID_ARGUMENT = 1,   /* a descriptor or option field is out of range */
  TKA_ERROR_NULL_POINTER = 2,       /* a required pointer argument or tensor is NULL */
  TKA_ERROR_UNSUPPORTED = 3,        /* valid, but not implemented (e.g. head_dim 96) */
  TKA_ERROR_NO_DEVICE = 4,          /* no CUDA driver or no GPU; or a compile-only runtime */
  TKA_ERROR_NVRTC_UNAVAILABLE = 5,  /* libnvrtc could not be loaded */
  TKA_ERROR_COMPILE = 6,            /* NVRTC rejected the kernel; the log is in tka_last_error */
  TKA_ERROR_CUDA = 7,               /* a CUDA driver call failed */
  TKA_ERROR_CACHE_MISS = 8,         /* TOPKATTN_OFFLINE=1 and the kernel is not in the cache */
  TKA_ERROR_TENSOR_DTYPE = 9,       /* a tensor's dtype does not match the plan */
  TKA_ERROR_TENSOR_SHAPE = 10,      /* a tensor's ndim or shape does not match the plan */
  TKA_ERROR_TENSOR_STRIDE = 11,     /* a tensor's innermost dimension is not contiguous */
  TKA_ERROR_TENSOR_ALIGNMENT = 12,  /* a data pointer or stride is not 16-byte aligned */
  TKA_ERROR_TENSOR_DEVICE = 13,     /* a tensor is not on the plan's CUDA device */
  TKA_ERROR_WORKSPACE = 14,         /* workspace is NULL or misaligned while one is needed */
  TKA_ERROR_OUT_OF_MEMORY = 15,
  TKA_ERROR_INTERNAL = 16
} tka_status;

typedef enum tka_log_level {
  TKA_LOG_OFF = 0,
  TKA_LOG_ERROR = 1,
  TKA_LOG_WARN = 2,  /* default: e.g. an unwritable cache directory */
  TKA_LOG_INFO = 3,  /* one line per compile / cache hit */
  TKA_LOG_DEBUG = 4
} tka_log_level;

typedef enum tka_dtype {
  TKA_DTYPE_BF16 = 1,
  TKA_DTYPE_FP16 = 2
} tka_dtype;

typedef enum tka_op_kind {
  TKA_OP_TOPK_DECODE = 1 /* exact top-k decode (design section 2.1) */
} tka_op_kind;

typedef enum tka_kv_layout {
  TKA_KV_CONTIGUOUS = 0, /* k/v: [batch, kv_heads, capacity, head_dim], any outer strides */
  TKA_KV_PAGED = 1       /* k/v: [num_pages, page_size, kv_heads, head_dim] + block_table */
} tka_kv_layout;

typedef enum tka_select_mode {
  TKA_SELECT_PER_HEAD = 0, /* each query head picks its own k keys */
  TKA_SELECT_PER_GROUP = 1 /* one set per KV head: key score = max over the group's heads */
} tka_select_mode;

typedef struct tka_runtime_options {
  int device_ordinal;       /* CUDA device; default 0 */
  const char* cache_dir;    /* NULL: $TOPKATTN_CACHE_DIR, $XDG_CACHE_HOME/topkattn, ~/.cache/topkattn */
  tka_log_level log_level;  /* default: $TOPKATTN_LOG_LEVEL, else TKA_LOG_WARN (to stderr) */
  int compile_only_sm;      /* 0: use the GPU. e.g. 90: no GPU needed; plans compile for sm_90
                               into the cache and cannot run (prewarm) */
  const char* tuning_db;    /* NULL: $TOPKATTN_TUNING_DB; "": none. The JSON file `topkattn tune`
                               writes; plans take their launch configuration from it */
  int tune;                 /* 1: a plan whose shape the database lacks is tuned at creation (on the
                               GPU, seconds) and the result added to tuning_db. 0: only if
                               $TOPKATTN_TUNE=1 (GPU runtimes) */
} tka_runtime_options;

/* Exact top-k decode. Tensors of tka_plan_run, with B <= max_batch:
 *   q          [B, q_len, num_q_heads, head_dim]           dtype
 *   k_cache    contiguous: [>=B, num_kv_heads, capacity, head_dim]; paged: [pages, page_size,
 *              num_kv_heads, head_dim]                       dtype
 *   v_cache    as k_cache with head_dim_v                   dtype
 *   seq_lens   [B] int32, on the device (read by the kernels, so graph replays see new values)
 *   block_table [B, max_pages] int32 (paged only)
 *   out        [B, q_len, num_q_heads, head_dim_v]         dtype
 *   lse        optional [B, q_len, num_q_heads] float32 (natural log over the selected keys)
 *   indices    optional int32 [B, q_len, num_q_heads, max_k] (per head) or
 *              [B, q_len, num_kv_heads, max_k] (per group), -1 padded; see tka_plan_max_k.
 * Query token j of sequence b sees keys i < seq_lens[b] - q_len + j + 1. */
typedef struct tka_decode_desc {
  tka_dtype dtype;
  int num_q_heads;
  int num_kv_heads;     /* divides num_q_heads; group = num_q_heads / num_kv_heads <= 16 */
  int head_dim;         /* 64, 128 or 256 */
  int head_dim_v;       /* 0: same as head_dim (must equal it for now) */
  int q_len;            /* new tokens per sequence, 1..16 */
  int top_k;            /* > 0: k as a count (1..8192) */
  double top_k_ratio;   /* used when top_k == 0: k = max(1, ceil(ratio * visible)) in double, 0 < ratio <= 1 */
  int n_sink;           /* first n_sink visible keys are always selected (count toward k) */
  int n_local;          /* last n_local visible keys are always selected (count toward k) */
  tka_select_mode select;
  tka_kv_layout kv_layout;
  int page_size;        /* paged only: 16..256 */
  int max_batch;        /* sizes the workspace */
  int max_seq_len;      /* sizes the workspace; longer sequences give NaN output */
  float scale;          /* 0: 1/sqrt(head_dim) */
} tka_decode_desc;

typedef struct tka_op_desc {
  tka_op_kind op;
  tka_decode_desc decode; /* op == TKA_OP_TOPK_DECODE */
} tka_op_desc;

typedef struct tka_tensors {
  const DLTensor* q;
  const DLTensor* k_cache;
  const DLTensor* v_cache;
  const DLTensor* seq_lens;
  const DLTensor* block_table;
  const DLTensor* out;
  const DLTensor* lse;     /* optional */
  const DLTensor* indices; /* optional */
} tka_tensors;

typedef struct tka_counters {
  uint64_t nvrtc_compiles;  /* kernels compiled by NVRTC in this process */
  uint64_t disk_hits;       /* kernels read from the disk cache */
  uint64_t memory_hits;     /* kernels found already loaded in this process */
  uint64_t corrupt_entries; /* bad cache files found (and rebuilt) */
  double compile_ms;        /* total NVRTC time */
  uint64_t tuned_plans;     /* plans configured from the tuning database */
  uint64_t default_plans;   /* plans on the heuristic default (no database entry) */
  uint64_t online_tunings;  /* shapes tuned at plan creation (options.tune) */
} tka_counters;

typedef struct tka_runtime tka_runtime;
typedef struct tka_plan tka_plan;

TKA_API const char* tka_version(void);
TKA_API const char* tka_status_string(tka_status status);
/* The detailed message of this thread's last failed call ("" if none). */
TKA_API const char* tka_last_error(void);

TKA_API void tka_runtime_options_init(tka_runtime_options* options);
TKA_API tka_status tka_runtime_create(const tka_runtime_options* options, tka_runtime** runtime);
TKA_API tka_status tka_runtime_destroy(tka_runtime* runtime);
/* Process-wide compile and cache counters. */
TKA_API tka_status tka_get_counters(tka_counters* counters);
/* The cache directory in use (versioned root), or "" when memory-only. */
TKA_API const char* tka_runtime_cache_dir(const tka_runtime* runtime);

TKA_API void tka_op_desc_init(tka_op_desc* desc, tka_op_kind op);
TKA_API tka_status tka_plan_create(tka_runtime* runtime, const tka_op_desc* desc, tka_plan** plan);
TKA_API tka_status tka_plan_destroy(tka_plan* plan);
TKA_API tka_status tka_plan_workspace_size(const tka_plan* plan, size_t* bytes);
/* Width of the indices output: top_k, or ceil(ratio * max_seq_len) in ratio mode. */
TKA_API tka_status tka_plan_max_k(const tka_plan* plan, int* max_k);
/* The canonical spec text of the plan's kernels ("op=decode;dtype=bf16;..."). */
TKA_API const char* tka_plan_spec(const tka_plan* plan);
/* Launches only: no allocation, no synchronization; CUDA-graph capturable. The workspace must be
 * device memory of at least tka_plan_workspace_size bytes, 256-byte aligned. */
TKA_API tka_status tka_plan_run(const tka_plan* plan, const tka_tensors* tensors, void* workspace,
                                tka_stream stream);

#ifdef __cplusplus
}
#endif
#endif /* TOPKATTN_TOPKATTN_H_ */
