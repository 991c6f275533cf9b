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
 * Tensors are DLPack DLTensors; every field is checked against the plan before anything runs:
 * device, dtype, shape (extents below 2^31), strides (none negative, the innermost 1; the
 * elements of a tensor the plan writes must not overlap), data (NULL only for an empty tensor),
 * alignment. A tensor an operation does not read must be NULL (a block table for a contiguous
 * cache included).
 */
#ifndef TOPKATTN_TOPKATTN_H_
#define TOPKATTN_TOPKATTN_H_

#include <dlpack/dlpack.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define TKA_API __declspec(dllexport)
#else
#define TKA_API __attribute__((visibility("default")))
#endif

#define TKA_VERSION_MAJOR 0
#define TKA_VERSION_MINOR 3
#define TKA_VERSION_PATCH 0
/* Changes whenever a struct of this header changes layout. A program (or a binding that mirrors
 * the structs, like the Python one) compares it with tka_abi_version() of the library it loaded. */
#define TKA_ABI_VERSION 2

/* A CUDA stream (the Driver API's CUstream and the runtime's cudaStream_t are this type).
 * NULL is the legacy default stream. */
typedef struct CUstream_st* tka_stream;

typedef enum tka_status {
  TKA_SUCCESS = 0,
  TKA_ERROR_INVALID_ARGUMENT = 1,  /* a descriptor or option field is out of range */
  TKA_ERROR_NULL_POINTER = 2,      /* a required pointer argument or tensor is NULL */
  TKA_ERROR_UNSUPPORTED = 3,       /* valid, but not implemented (e.g. head_dim 96) */
  TKA_ERROR_NO_DEVICE = 4,         /* no CUDA driver or no GPU; or a compile-only runtime */
  TKA_ERROR_NVRTC_UNAVAILABLE = 5, /* libnvrtc could not be loaded */
  TKA_ERROR_COMPILE = 6,           /* NVRTC rejected the kernel; the log is in tka_last_error */
  TKA_ERROR_CUDA = 7,              /* a CUDA driver call failed */
  TKA_ERROR_CACHE_MISS = 8,        /* TOPKATTN_OFFLINE=1 and the kernel is not in the cache */
  TKA_ERROR_TENSOR_DTYPE = 9,      /* a tensor's dtype does not match the plan */
  TKA_ERROR_TENSOR_SHAPE = 10,     /* a tensor's ndim or shape does not match the plan */
  TKA_ERROR_TENSOR_STRIDE = 11,    /* a tensor's innermost dimension is not contiguous */
  TKA_ERROR_TENSOR_ALIGNMENT = 12, /* a data pointer or stride is not 16-byte aligned */
  TKA_ERROR_TENSOR_DEVICE = 13,    /* a tensor is not on the plan's CUDA device */
  TKA_ERROR_WORKSPACE = 14,        /* workspace is NULL or misaligned while one is needed */
  TKA_ERROR_OUT_OF_MEMORY = 15,
  TKA_ERROR_INTERNAL = 16
} tka_status;

typedef enum tka_log_level {
  TKA_LOG_OFF = 0,
  TKA_LOG_ERROR = 1,
  TKA_LOG_WARN = 2, /* default: e.g. an unwritable cache directory */
  TKA_LOG_INFO = 3, /* one line per compile / cache hit */
  TKA_LOG_DEBUG = 4
} tka_log_level;

typedef enum tka_dtype {
  TKA_DTYPE_BF16 = 1,
  TKA_DTYPE_FP16 = 2,
  TKA_DTYPE_FP32 = 3,    /* top-k selection input */
  TKA_DTYPE_FP8_E4M3 = 4 /* indexer keys (bytes: DLPack uint8, or float8_e4m3fn) */
} tka_dtype;

typedef enum tka_op_kind {
  TKA_OP_TOPK_DECODE = 1,      /* exact top-k decode */
  TKA_OP_TOPK_SELECT = 2,      /* top-k selection over rows of values */
  TKA_OP_FIDELITY = 3,         /* fidelity diagnostics of a selection */
  TKA_OP_SPARSE_ATTENTION = 4, /* attention over caller-given indices */
  TKA_OP_INDEXER_SCORES = 5,   /* Lightning Indexer scores */
  TKA_OP_INDEXER_DECODE = 6    /* indexer scores, top-k, sparse attention: one plan */
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
  int device_ordinal;      /* CUDA device; default 0 */
  const char* cache_dir;   /* NULL: $TOPKATTN_CACHE_DIR, $XDG_CACHE_HOME/topkattn, ~/.cache/topkattn */
  tka_log_level log_level; /* default: $TOPKATTN_LOG_LEVEL, else TKA_LOG_WARN (to stderr) */
  int compile_only_sm;     /* 0: use the GPU. e.g. 90: no GPU needed; plans compile for sm_90
                              into the cache and cannot run (prewarm). One of 80, 86, 87, 88,
                              89, 90, 100, 101, 103, 110, 120, 121 */
  const char* tuning_db;   /* NULL: $TOPKATTN_TUNING_DB; "": none. The JSON file `topkattn tune`
                              writes; plans take their launch configuration from it */
  int tune;                /* 1: a plan whose shape the database lacks is tuned at creation (on the
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
  int num_q_heads;    /* 1..1024 */
  int num_kv_heads;   /* divides num_q_heads; group = num_q_heads / num_kv_heads <= 16 */
  int head_dim;       /* 64, 128 or 256 */
  int head_dim_v;     /* 0: same as head_dim (must equal it for now) */
  int q_len;          /* new tokens per sequence, 1..16 */
  int top_k;          /* > 0: k as a count (1..8192) */
  double top_k_ratio; /* used when top_k == 0: k = max(1, ceil(ratio * visible)) in double, 0 < ratio <= 1 */
  int n_sink;         /* first n_sink visible keys are always selected (count toward k) */
  int n_local;        /* last n_local visible keys are always selected (count toward k) */
  tka_select_mode select;
  tka_kv_layout kv_layout;
  int page_size;   /* paged only: 16..256 */
  int max_batch;   /* sizes the workspace; 1..65535 */
  int max_seq_len; /* sizes the workspace; longer sequences give NaN output */
  float scale;     /* 0: 1/sqrt(head_dim) */
} tka_decode_desc;

/* Top-k selection: for each row, the top_k largest values and their column indices. Ties go to
 * the lower index; NaN ranks below every number (-inf included); -0 equals +0. Tensors:
 *   input    [R, n] dtype, R <= max_rows, n <= max_n (any row stride; rows need not be aligned)
 *   lengths  optional [R] int32 on the device: row r uses its first min(max(lengths[r], 0), n)
 *            columns (read by the kernels, so graph replays see new values)
 *   values   [R, top_k] dtype: the selected values
 *   indices  [R, top_k] int32: their column indices
 * A row with fewer than top_k usable columns fills the rest with index -1 and value -inf. */
typedef struct tka_select_desc {
  tka_dtype dtype; /* TKA_DTYPE_FP32, TKA_DTYPE_BF16 or TKA_DTYPE_FP16 */
  int top_k;       /* 1..8192 */
  int max_rows;    /* sizes the workspace */
  int max_n;       /* most columns per row, < 2^30 */
  int pad;         /* 0: top_k > max_n is an error; 1: allowed (those slots padded as above) */
  int sorted;      /* 1: each row's output by descending value, ties by ascending index;
                      0: an unspecified but deterministic order (one pass less) */
} tka_select_desc;

/* Fidelity diagnostics: how well a selection of keys stands for full attention. Per (b, h),
 * with scores s_i = scale * q_h . k_i over the n_b keys of h's KV head, p = softmax(s) over all
 * of them, E the exact top-k (min(top_k, n_b) keys, ties to the lower index) and C the
 * candidate's distinct valid indices (0 <= i < n_b; -1 and out-of-range entries are ignored):
 *   recall        |C ∩ E| / |E|                       (only with a candidate)
 *   retained_mass sum of p_i over C (with a candidate), else over E
 *   entropy       -sum p_i ln p_i over all keys, in nats
 * All three are NaN for a sequence with no keys. A NaN score ranks below every number in E (so
 * recall stays defined) and makes p, so retained_mass and entropy, NaN for its head. Tensors:
 *   q             [B, num_q_heads, head_dim] dtype
 *   k_cache       [>=B, num_kv_heads, N, head_dim] dtype, N >= every n_b
 *   seq_lens      optional [B] int32: n_b (default: N for every sequence); a length outside 0..N
 *                 gives NaN statistics for its sequence (tka_fidelity_host: an error, nothing written)
 *   indices       optional candidate [B, num_q_heads, width] int32 or int64, -1 padded (width 0:
 *                 an empty candidate, which keeps no mass and recalls nothing)
 *   recall, retained_mass, entropy: [B, num_q_heads] float32 outputs; recall only with indices
 * tka_plan_run takes CUDA tensors; tka_fidelity_host computes the same in fp64 on host tensors. */
typedef struct tka_fidelity_desc {
  tka_dtype dtype;  /* of q and k_cache: TKA_DTYPE_FP32, TKA_DTYPE_BF16 or TKA_DTYPE_FP16 */
  int num_q_heads;  /* 1..1024 */
  int num_kv_heads; /* divides num_q_heads */
  int head_dim;     /* 64, 128 or 256 (tka_fidelity_host: 1..1024) */
  int top_k;        /* 1..8192 */
  int max_batch;    /* sizes the workspace; 1..65535 */
  int max_seq_len;  /* sizes the workspace */
  float scale;      /* 0: 1/sqrt(head_dim) */
} tka_fidelity_desc;

/* Sparse attention over given indices: for each query head, softmax over the scores
 * scale * q . k_i of the listed keys i and the weighted sum of their value rows. Tensors:
 *   q           [B, q_len, num_q_heads, head_dim]                       dtype
 *   k_cache     as tka_decode_desc (contiguous or paged)                 dtype
 *   v_cache     as k_cache with head_dim_v; NULL when shared_kv          dtype
 *   seq_lens    [B] int32 on the device; token j of sequence b sees keys i < seq_lens[b] - q_len + j + 1
 *   block_table [B, max_pages] int32 (paged only)
 *   indices     [B, q_len, num_q_heads (per head) or num_kv_heads (per group), index_width] int32;
 *               -1 padding and indices outside the visible keys are skipped; each other entry
 *               counts once per occurrence (pass distinct indices)
 *   out         [B, q_len, num_q_heads, head_dim_v]                      dtype
 *   lse         optional [B, q_len, num_q_heads] float32, natural log (merge partial results with it)
 * A head with no valid index gets 0 and lse -inf. A sequence whose length exceeds the cache gets
 * NaN, and so does a head that lists a key whose block-table entry is outside the page pool
 * (nothing outside the pool is read). */
typedef struct tka_sparse_desc {
  tka_dtype dtype;        /* TKA_DTYPE_BF16 or TKA_DTYPE_FP16 */
  int num_q_heads;        /* 1..1024 */
  int num_kv_heads;       /* divides num_q_heads; group = num_q_heads / num_kv_heads <= 128 */
  int head_dim;           /* 64, 128, 256, or 576 with shared_kv (DeepSeek MLA) */
  int head_dim_v;         /* 0: head_dim; 512 with head_dim 576 and shared_kv */
  int shared_kv;          /* 1: the values are the first head_dim_v elements of each key row
                             (MLA's latent cache); v_cache must be NULL */
  int q_len;              /* 1..16 */
  int index_width;        /* indices per row, 1..8192 */
  tka_select_mode select; /* per head: one list per query head; per group: one per KV head */
  tka_kv_layout kv_layout;
  int page_size; /* paged only: 16..256 */
  int max_batch; /* sizes the workspace; 1..65535 */
  float scale;   /* 0: 1/sqrt(head_dim) */
} tka_sparse_desc;

/* Lightning Indexer (DeepSeek Sparse Attention). For query token j of sequence b and cached token
 * s < visible length: I = sum over heads h < num_index_heads of w[b, j, h] * ReLU(scale_s * q_h . k_s).
 * TKA_OP_INDEXER_SCORES writes I; TKA_OP_INDEXER_DECODE selects the top_k tokens of I (ties to
 * the lower index), shared by every query head of the token, then runs sparse attention
 * (tka_sparse_desc `attention`) over them. Tensors:
 *   index_q       [B, q_len, num_index_heads, index_head_dim] bf16
 *   index_weights [B, q_len, num_index_heads] float32
 *   index_k       contiguous [>=B, N, index_head_dim]; paged [pages, page_size, index_head_dim];
 *                 bf16, or FP8 E4M3 bytes (uint8)
 *   index_scale   float32 per token: contiguous [>=B, N]; paged [pages, page_size]; required
 *                 with FP8 keys, optional (1) with bf16
 *   seq_lens      [B] int32; block_table [B, max_pages] int32 (paged only; the fused op uses it
 *                 for both caches, which share the page size)
 *   scores        (scores op) [B, q_len, N'] float32 with N' >= the longest visible length;
 *                 -inf past a row's visible length, NaN for tokens in pages outside the pool,
 *                 NaN throughout for a sequence longer than the cache or than N'. NaN in the
 *                 inputs gives NaN scores (never selected: NaN ranks lowest)
 *   decode op: q, k_cache, v_cache, out, lse as tka_sparse_desc, and optionally indices
 *                 [B, q_len, top_k] int32: the selected tokens (-1 padded). */
typedef struct tka_indexer_desc {
  tka_dtype key_dtype; /* TKA_DTYPE_BF16 or TKA_DTYPE_FP8_E4M3 */
  int num_index_heads; /* 1..64 */
  int index_head_dim;  /* 128 */
  int q_len;           /* 1..16 */
  tka_kv_layout kv_layout;
  int page_size;             /* paged only: 16..256 */
  int max_batch;             /* sizes the workspace; max_batch * q_len <= 65535 */
  int max_seq_len;           /* decode op: sizes the workspace; longer sequences give NaN */
  int top_k;                 /* decode op: 1..8192 */
  tka_sparse_desc attention; /* decode op: index_width, select, q_len, kv_layout, page_size and
                                max_batch are taken from the fields above */
} tka_indexer_desc;

typedef struct tka_op_desc {
  tka_op_kind op;
  tka_decode_desc decode;     /* op == TKA_OP_TOPK_DECODE */
  tka_select_desc select;     /* op == TKA_OP_TOPK_SELECT */
  tka_fidelity_desc fidelity; /* op == TKA_OP_FIDELITY */
  tka_sparse_desc sparse;     /* op == TKA_OP_SPARSE_ATTENTION */
  tka_indexer_desc indexer;   /* op == TKA_OP_INDEXER_SCORES, TKA_OP_INDEXER_DECODE */
} tka_op_desc;

/* The tensors of one run, by role; each operation reads the fields its descriptor documents and
 * requires the others to be NULL. Zero the struct (or use tka_tensors_init) before filling it. */
typedef struct tka_tensors {
  const DLTensor* q;
  const DLTensor* k_cache;
  const DLTensor* v_cache;
  const DLTensor* seq_lens;
  const DLTensor* block_table;
  const DLTensor* out;
  const DLTensor* lse;     /* optional */
  const DLTensor* indices; /* decode, indexer decode: optional output; select: output;
                              fidelity: optional input; sparse attention: input */
  const DLTensor* input;   /* select */
  const DLTensor* lengths; /* select: optional */
  const DLTensor* values;  /* select: output */
  const DLTensor* recall;  /* fidelity outputs */
  const DLTensor* retained_mass;
  const DLTensor* entropy;
  const DLTensor* index_q; /* indexer */
  const DLTensor* index_weights;
  const DLTensor* index_k;
  const DLTensor* index_scale;
  const DLTensor* scores; /* indexer scores output */
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
/* TKA_ABI_VERSION of the library (not of the header the caller was compiled with). */
TKA_API int tka_abi_version(void);
TKA_API const char* tka_status_string(tka_status status);
/* The detailed message of this thread's last failed call ("" if none). The pointer stays valid
 * until the next failing tka_* call on this thread; copy the text to keep it longer. */
TKA_API const char* tka_last_error(void);

TKA_API void tka_runtime_options_init(tka_runtime_options* options);
TKA_API tka_status tka_runtime_create(const tka_runtime_options* options, tka_runtime** runtime);
TKA_API tka_status tka_runtime_destroy(tka_runtime* runtime);
/* Process-wide compile and cache counters. */
TKA_API tka_status tka_get_counters(tka_counters* counters);
/* The cache directory in use (versioned root), or "" when memory-only. */
TKA_API const char* tka_runtime_cache_dir(const tka_runtime* runtime);

/* Zeroes the descriptor and sets the defaults of `op` (dtype bf16, or fp32 for selection;
 * q_len 1; max_batch / max_rows 1; sorted selection). */
TKA_API void tka_op_desc_init(tka_op_desc* desc, tka_op_kind op);
TKA_API void tka_tensors_init(tka_tensors* tensors);
TKA_API tka_status tka_plan_create(tka_runtime* runtime, const tka_op_desc* desc, tka_plan** plan);
TKA_API tka_status tka_plan_destroy(tka_plan* plan);
TKA_API tka_status tka_plan_workspace_size(const tka_plan* plan, size_t* bytes);
/* Width of the indices output: top_k, or ceil(ratio * max_seq_len) in decode's ratio mode. */
TKA_API tka_status tka_plan_max_k(const tka_plan* plan, int* max_k);
/* The canonical spec text of the plan's kernels ("op=decode;dtype=bf16;..."). */
TKA_API const char* tka_plan_spec(const tka_plan* plan);
/* Launches only: no allocation, no synchronization; CUDA-graph capturable. The workspace must be
 * device memory of at least tka_plan_workspace_size bytes, 256-byte aligned. */
TKA_API tka_status tka_plan_run(const tka_plan* plan, const tka_tensors* tensors, void* workspace, tka_stream stream);

/* Fidelity diagnostics on the CPU (fp64), no runtime or GPU needed: every tensor of
 * tka_fidelity_desc's list on the host (kDLCPU), q and k_cache also as float32. Blocking. */
TKA_API tka_status tka_fidelity_host(const tka_fidelity_desc* desc, const tka_tensors* tensors);

#ifdef __cplusplus
}
#endif
#endif /* TOPKATTN_TOPKATTN_H_ */
