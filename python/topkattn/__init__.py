"""topkattn: top-k sparse attention kernels, a thin ctypes binding over the C API.

    import torch, topkattn
    rt = topkattn.Runtime()                                   # device 0
    plan = rt.plan_decode(32, 8, 128, top_k=2048, max_batch=8, max_seq_len=32768)
    plan.run(q, k_cache, v_cache, seq_lens, out)              # on torch's current stream

    values, indices = rt.topk(scores, 2048)                   # like torch.topk(scores, 2048)
    topkattn.analyze(q, k, 2048, indices=idx)                 # recall, retained mass, entropy

Tensors are passed through DLPack (any object with __dlpack__; torch tensors work); shapes are
those of include/topkattn/topkattn.h:
    q [B, q_len, Hq, d], k/v [B, Hkv, capacity, d] (paged: [pages, page_size, Hkv, d]),
    seq_lens [B] int32 on the device, out [B, q_len, Hq, d],
    block_table [B, max_pages] int32 (paged), lse [B, q_len, Hq] float32,
    indices [B, q_len, Hq or Hkv, plan.max_k] int32.
Top-k selection: input [R, n] float32/bf16/fp16 (any row stride), lengths [R] int32 (optional),
values [R, k] (input's dtype), indices [R, k] int32; ties to the lower index, NaN lowest.
The shared library is $TOPKATTN_LIBRARY, else build/libtopkattn.so of this checkout, else
libtopkattn.so on the loader's path.
"""
import ctypes
import os
import threading
import weakref

from . import _capi
from ._capi import STATUS_NAMES

__all__ = ["Error", "Runtime", "DecodePlan", "SelectPlan", "SparsePlan", "IndexerPlan",
           "FidelityPlan", "analyze", "counters", "version"]

try:  # optional: only for default streams and owned workspaces
    import torch as _torch
except ImportError:  # pragma: no cover
    _torch = None


class Error(RuntimeError):
    """A failed topkattn call: .code (tka_status), .name ("TKA_ERROR_..."), .message
    (tka_last_error())."""

    def __init__(self, code, message, where=""):
        self.code = int(code)
        self.name = STATUS_NAMES.get(self.code, f"TKA_STATUS_{self.code}")
        self.message = message
        super().__init__(f"{where + ': ' if where else ''}{self.name} ({self.code}): {message}")


def _check(status, where):
    if status != 0:
        raise Error(status, (_capi.lib().tka_last_error() or b"").decode(errors="replace"), where)


def version():
    """The library's version string, e.g. "0.2.0"."""
    return _capi.lib().tka_version().decode()


def counters():
    """Process-wide compile and cache counters, as a dict."""
    c = _capi.tka_counters()
    _check(_capi.lib().tka_get_counters(ctypes.byref(c)), "tka_get_counters")
    return {name: getattr(c, name) for name, _ in c._fields_}


def _dtype_code(dtype, allow_fp32=False):
    name = str(dtype).lower().replace("torch.", "")
    if name in ("bf16", "bfloat16"):
        return _capi.TKA_DTYPE_BF16
    if name in ("fp16", "float16", "half"):
        return _capi.TKA_DTYPE_FP16
    if allow_fp32 and name in ("fp32", "float32", "float"):
        return _capi.TKA_DTYPE_FP32
    allowed = "torch.float32/'fp32', " if allow_fp32 else ""
    raise ValueError(f"unsupported dtype {dtype!r}: use {allowed}torch.bfloat16/'bf16' or torch.float16/'fp16'")


def _select_code(select):
    codes = {"head": _capi.TKA_SELECT_PER_HEAD, "per_head": _capi.TKA_SELECT_PER_HEAD,
             "group": _capi.TKA_SELECT_PER_GROUP, "per_group": _capi.TKA_SELECT_PER_GROUP}
    if select not in codes:
        raise ValueError(f"select must be 'head' or 'group', not {select!r}")
    return codes[select]


def _log_level_code(level):
    if isinstance(level, str):
        if level.lower() not in _capi.LOG_LEVELS:
            raise ValueError(f"log_level must be one of {sorted(_capi.LOG_LEVELS)}, not {level!r}")
        return _capi.LOG_LEVELS[level.lower()]
    return int(level)


def _device_ordinal(device):
    index = getattr(device, "index", device)  # torch.device("cuda:1") or an int
    if isinstance(index, str):  # "cuda:1"
        index = index.rpartition(":")[2] or 0
    return int(index or 0)


class Runtime:
    """One CUDA device (or, with compile_only_sm=90, no device: plans compile into the cache and
    cannot run). Plans keep their runtime alive."""

    def __init__(self, device=0, cache_dir=None, log_level=None, compile_only_sm=0, tuning_db=None, tune=False):
        lib = _capi.lib()
        opts = _capi.tka_runtime_options()
        lib.tka_runtime_options_init(ctypes.byref(opts))
        opts.device_ordinal = self.device = _device_ordinal(device)
        self._cache_dir = None if cache_dir is None else os.fsencode(cache_dir)
        if self._cache_dir is not None:
            opts.cache_dir = self._cache_dir
        if log_level is not None:
            opts.log_level = _log_level_code(log_level)
        opts.compile_only_sm = int(compile_only_sm)
        # tuning_db: the file `topkattn tune` writes (None: $TOPKATTN_TUNING_DB); tune=True tunes
        # shapes the database lacks when a plan is created, and adds them to it.
        self._tuning_db = None if tuning_db is None else os.fsencode(tuning_db)
        if self._tuning_db is not None:
            opts.tuning_db = self._tuning_db
        opts.tune = 1 if tune else 0
        handle = ctypes.c_void_p()
        _check(lib.tka_runtime_create(ctypes.byref(opts), ctypes.byref(handle)), "tka_runtime_create")
        self._handle = handle
        self._plans = weakref.WeakSet()
        self._topk_plans = {}

    @property
    def cache_dir(self):
        """The versioned cache directory in use, or "" when memory-only."""
        return _capi.lib().tka_runtime_cache_dir(self._handle).decode()

    def plan_decode(self, num_q_heads, num_kv_heads, head_dim, *, top_k=0, top_k_ratio=0.0,
                    dtype="bf16", q_len=1, n_sink=0, n_local=0, select="head", paged=False,
                    page_size=0, max_batch, max_seq_len, scale=0.0, head_dim_v=0):
        """Plan exact top-k decode (JIT compile or cache hit). See tka_decode_desc."""
        desc = _new_desc(_capi.TKA_OP_TOPK_DECODE)
        d = desc.decode
        d.dtype = _dtype_code(dtype)
        d.num_q_heads, d.num_kv_heads = num_q_heads, num_kv_heads
        d.head_dim, d.head_dim_v, d.q_len = head_dim, head_dim_v, q_len
        d.top_k, d.top_k_ratio = top_k, top_k_ratio
        d.n_sink, d.n_local = n_sink, n_local
        d.select = _select_code(select)
        d.kv_layout = _capi.TKA_KV_PAGED if paged else _capi.TKA_KV_CONTIGUOUS
        d.page_size = page_size
        d.max_batch, d.max_seq_len = max_batch, max_seq_len
        d.scale = scale
        return self._create(desc, DecodePlan)

    def plan_select(self, top_k, *, max_rows, max_n, dtype="fp32", sorted=True, pad=False):
        """Plan top-k selection over rows of up to max_n values. See tka_select_desc."""
        desc = _new_desc(_capi.TKA_OP_TOPK_SELECT)
        d = desc.select
        d.dtype = _dtype_code(dtype, allow_fp32=True)
        d.top_k, d.max_rows, d.max_n = top_k, max_rows, max_n
        d.sorted, d.pad = int(bool(sorted)), int(bool(pad))
        return self._create(desc, SelectPlan)

    def topk(self, x, k, *, sorted=True, lengths=None, pad=False):
        """(values, indices) of the k largest entries of each row of a 2-D torch CUDA tensor,
        like torch.topk(x, k) but with ties to the lower index, NaN lowest and int32 indices.
        Plans are made once per (dtype, k, shape, sorted, pad) and kept."""
        if _torch is None:
            raise ValueError("Runtime.topk needs torch; use plan_select and SelectPlan.run")
        rows, n = x.shape
        key = (x.dtype, k, rows, n, bool(sorted), bool(pad))
        plan = self._topk_plans.get(key)
        if plan is None:
            plan = self._topk_plans[key] = self.plan_select(
                k, max_rows=max(rows, 1), max_n=max(n, 1), dtype=x.dtype, sorted=sorted, pad=pad)
        values = _torch.empty((rows, k), dtype=x.dtype, device=x.device)
        indices = _torch.empty((rows, k), dtype=_torch.int32, device=x.device)
        plan.run(x, values, indices, lengths=lengths)
        return values, indices

    def plan_sparse(self, num_q_heads, num_kv_heads, head_dim, index_width, *, max_batch,
                    dtype="bf16", head_dim_v=0, shared_kv=False, q_len=1, select="head",
                    paged=False, page_size=0, scale=0.0):
        """Plan sparse attention over given indices. See tka_sparse_desc (MLA: head_dim=576,
        head_dim_v=512, shared_kv=True, select="group")."""
        desc = _new_desc(_capi.TKA_OP_SPARSE_ATTENTION)
        d = desc.sparse
        d.dtype = _dtype_code(dtype)
        d.num_q_heads, d.num_kv_heads, d.head_dim, d.head_dim_v = num_q_heads, num_kv_heads, head_dim, head_dim_v
        d.shared_kv, d.q_len, d.index_width = int(bool(shared_kv)), q_len, index_width
        d.select = _select_code(select)
        d.kv_layout = _capi.TKA_KV_PAGED if paged else _capi.TKA_KV_CONTIGUOUS
        d.page_size, d.max_batch, d.scale = page_size, max_batch, scale
        return self._create(desc, SparsePlan)

    def plan_indexer(self, num_index_heads, *, max_batch, key_dtype="fp8", q_len=1, paged=False,
                     page_size=0, index_head_dim=128, top_k=0, max_seq_len=0, attention=None):
        """Plan the Lightning Indexer. Without top_k: its scores (IndexerPlan.scores). With
        top_k, max_seq_len and attention (a dict of plan_sparse's arguments: num_q_heads,
        num_kv_heads, head_dim, and for MLA head_dim_v=512, shared_kv=True): the fused decode
        (IndexerPlan.decode). See tka_indexer_desc."""
        fused = top_k > 0
        desc = _new_desc(_capi.TKA_OP_INDEXER_DECODE if fused else _capi.TKA_OP_INDEXER_SCORES)
        d = desc.indexer
        key = str(key_dtype).lower().replace("torch.", "")
        d.key_dtype = _capi.TKA_DTYPE_FP8_E4M3 if key.startswith(("fp8", "float8", "uint8")) else _dtype_code(key)
        d.num_index_heads, d.index_head_dim, d.q_len = num_index_heads, index_head_dim, q_len
        d.kv_layout = _capi.TKA_KV_PAGED if paged else _capi.TKA_KV_CONTIGUOUS
        d.page_size, d.max_batch, d.max_seq_len, d.top_k = page_size, max_batch, max_seq_len, top_k
        if fused:
            a = dict(attention or {})
            d.attention.dtype = _dtype_code(a.pop("dtype", "bf16"))
            d.attention.num_q_heads = a.pop("num_q_heads")
            d.attention.num_kv_heads = a.pop("num_kv_heads")
            d.attention.head_dim = a.pop("head_dim")
            d.attention.head_dim_v = a.pop("head_dim_v", 0)
            d.attention.shared_kv = int(bool(a.pop("shared_kv", False)))
            d.attention.scale = a.pop("scale", 0.0)
            if a:
                raise ValueError(f"unknown attention arguments: {sorted(a)}")
        return self._create(desc, IndexerPlan)

    def plan_fidelity(self, num_q_heads, num_kv_heads, head_dim, top_k, *, max_batch, max_seq_len,
                      dtype="bf16", scale=0.0):
        """Plan fidelity diagnostics on the GPU. See tka_fidelity_desc."""
        desc = _new_desc(_capi.TKA_OP_FIDELITY)
        desc.fidelity = _fidelity_desc(dtype, num_q_heads, num_kv_heads, head_dim, top_k, max_batch,
                                       max_seq_len, scale)
        return self._create(desc, FidelityPlan)

    def _create(self, desc, cls):
        handle = ctypes.c_void_p()
        _check(_capi.lib().tka_plan_create(self._handle, ctypes.byref(desc), ctypes.byref(handle)),
               "tka_plan_create")
        plan = cls(self, handle)
        self._plans.add(plan)
        return plan

    def close(self):
        """Destroy the runtime now, after its plans (which then refuse to run)."""
        for plan in list(getattr(self, "_plans", ())):
            plan.close()
        _destroy(self, "tka_runtime_destroy")

    __del__ = close

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Plan:
    """What every plan has: workspace_size (bytes), max_k (width of the indices output), spec
    (the canonical kernel spec text), and a workspace it owns when the caller passes none (one
    per thread, made on that thread's first run that needs it)."""

    def __init__(self, runtime, handle):
        lib = _capi.lib()
        self.runtime = runtime  # a reference: the runtime outlives its plans
        self._handle = handle
        size, max_k = ctypes.c_size_t(), ctypes.c_int()
        _check(lib.tka_plan_workspace_size(handle, ctypes.byref(size)), "tka_plan_workspace_size")
        _check(lib.tka_plan_max_k(handle, ctypes.byref(max_k)), "tka_plan_max_k")
        self.workspace_size = size.value
        self.max_k = max_k.value
        self.spec = lib.tka_plan_spec(handle).decode()
        self._slots = _RunSlots()  # per thread: argument structs, and the owned workspace

    def __repr__(self):
        return f"{type(self).__name__}({self.spec!r}, workspace_size={self.workspace_size}, max_k={self.max_k})"

    def _run(self, first, tensors, workspace, stream):
        """Launch on `stream` (default: torch's current stream for torch CUDA tensors, else the
        legacy default stream). Only launches: no sync, no allocation after the first call, so it
        can be captured in a CUDA graph."""
        slots = self._slots
        t = slots.tensors
        keep = []  # tensors and capsules of the slow path, alive until the call returns
        try:
            for name, x in tensors.items():
                setattr(t, name, None if x is None else slots.pointer(name, x, keep))
            status = _capi.lib().tka_plan_run(self._handle, ctypes.byref(t),
                                              self._workspace_ptr(workspace, first),
                                              _stream_handle(stream, first))
        finally:
            # Methods of one plan name different tensors (IndexerPlan.scores and .decode): the
            # next call must not find this one's, nor pointers into capsules freed on return.
            for name in tensors:
                setattr(t, name, None)
        _check(status, "tka_plan_run")

    def _workspace_ptr(self, workspace, q):
        if workspace is not None:
            if isinstance(workspace, int):
                return workspace or None
            nbytes = workspace.numel() * workspace.element_size()
            if nbytes < self.workspace_size:
                raise ValueError(f"workspace has {nbytes} bytes, the plan needs {self.workspace_size}")
            return workspace.data_ptr()
        if self.workspace_size == 0:
            return None
        slots = self._slots
        if slots.workspace is None:
            if _torch is None:
                raise ValueError("without torch, pass workspace= (a device pointer of "
                                 f"{self.workspace_size} bytes, 256-byte aligned)")
            device = q.device if _is_torch_cuda(q) else _torch.device("cuda", self.runtime.device)
            # The caching allocator returns 512-byte aligned blocks.
            slots.workspace = _torch.empty(self.workspace_size, dtype=_torch.uint8, device=device)
        return slots.workspace.data_ptr()

    def close(self):
        _destroy(self, "tka_plan_destroy")
        self._slots = _RunSlots()  # drops every thread's owned workspace

    __del__ = close


class DecodePlan(_Plan):
    """A planned exact top-k decode (tka_decode_desc)."""

    def run(self, q, k_cache, v_cache, seq_lens, out, block_table=None, lse=None, indices=None,
            workspace=None, stream=None):
        """One decode step; see _Plan._run for streams and graphs. Returns `out`."""
        self._run(q, dict(q=q, k_cache=k_cache, v_cache=v_cache, seq_lens=seq_lens,
                          block_table=block_table, out=out, lse=lse, indices=indices),
                  workspace, stream)
        return out

    __call__ = run


class SelectPlan(_Plan):
    """A planned top-k selection (tka_select_desc)."""

    def run(self, input, values, indices, lengths=None, workspace=None, stream=None):
        """Selects into `values` and `indices`; see _Plan._run for streams and graphs.
        Returns (values, indices)."""
        self._run(input, dict(input=input, lengths=lengths, values=values, indices=indices),
                  workspace, stream)
        return values, indices

    __call__ = run


class SparsePlan(_Plan):
    """Planned sparse attention over given indices (tka_sparse_desc)."""

    def run(self, q, k_cache, v_cache, seq_lens, indices, out, block_table=None, lse=None,
            workspace=None, stream=None):
        """v_cache is None with shared_kv; see _Plan._run for streams and graphs. Returns out."""
        self._run(q, dict(q=q, k_cache=k_cache, v_cache=v_cache, seq_lens=seq_lens,
                          block_table=block_table, indices=indices, out=out, lse=lse),
                  workspace, stream)
        return out

    __call__ = run


class IndexerPlan(_Plan):
    """A planned Lightning Indexer (tka_indexer_desc). FP8 keys are passed as uint8 tensors
    (e.g. k_fp8.view(torch.uint8))."""

    def scores(self, index_q, index_weights, index_k, seq_lens, scores, index_scale=None,
               block_table=None, stream=None):
        """Writes the indexer scores [B, q_len, N] (float32). Returns scores."""
        self._run(index_q, dict(index_q=index_q, index_weights=index_weights, index_k=index_k,
                                index_scale=index_scale, seq_lens=seq_lens,
                                block_table=block_table, scores=scores), 0, stream)
        return scores

    def decode(self, q, k_cache, v_cache, seq_lens, out, index_q, index_weights, index_k,
               index_scale=None, block_table=None, lse=None, indices=None, workspace=None,
               stream=None):
        """Indexer scores, top-k, sparse attention: one step. Returns out."""
        self._run(q, dict(q=q, k_cache=k_cache, v_cache=v_cache, seq_lens=seq_lens,
                          block_table=block_table, out=out, lse=lse, indices=indices,
                          index_q=index_q, index_weights=index_weights, index_k=index_k,
                          index_scale=index_scale), workspace, stream)
        return out


class FidelityPlan(_Plan):
    """Planned fidelity diagnostics (tka_fidelity_desc) on the GPU."""

    def run(self, q, k_cache, retained_mass, entropy, seq_lens=None, indices=None, recall=None,
            workspace=None, stream=None):
        """Fills the [B, Hq] float32 outputs; see _Plan._run for streams and graphs."""
        self._run(q, dict(q=q, k_cache=k_cache, seq_lens=seq_lens, indices=indices, recall=recall,
                          retained_mass=retained_mass, entropy=entropy), workspace, stream)

    __call__ = run


def _new_desc(op):
    desc = _capi.tka_op_desc()
    _capi.lib().tka_op_desc_init(ctypes.byref(desc), op)
    return desc


def _fidelity_desc(dtype, hq, hkv, d, top_k, max_batch, max_seq_len, scale):
    desc = _capi.tka_fidelity_desc()
    desc.dtype = _dtype_code(dtype, allow_fp32=True)
    desc.num_q_heads, desc.num_kv_heads, desc.head_dim = hq, hkv, d
    desc.top_k, desc.max_batch, desc.max_seq_len, desc.scale = top_k, max_batch, max_seq_len, scale
    return desc


def analyze(q, k, top_k, indices=None, seq_lens=None, scale=0.0, runtime=None):
    """Fidelity of a selection: q [B, Hq, d], k [B, Hkv, N, d] (torch tensors, or NumPy arrays
    for the CPU), indices [B, Hq, w]
    int32/int64 (optional, -1 padded), seq_lens [B] int32 (optional). Returns a dict of [B, Hq]
    float32 tensors: retained_mass, entropy, and recall when indices are given. CUDA tensors run
    on the GPU (runtime: a Runtime, default one for the tensors' device), host tensors on the CPU
    in fp64."""
    B, Hq, d = q.shape
    Hkv, N = k.shape[1], k.shape[2]
    names = ("retained_mass", "entropy") + (("recall",) if indices is not None else ())
    if _torch is not None and isinstance(q, _torch.Tensor):
        out = {name: _torch.full((B, Hq), float("nan"), dtype=_torch.float32, device=q.device)
               for name in names}
    else:  # NumPy arrays (host only)
        import numpy as np
        out = {name: np.full((B, Hq), np.nan, dtype=np.float32) for name in names}
    if getattr(q, "is_cuda", False):
        rt = runtime or Runtime(q.device)
        plan = rt.plan_fidelity(Hq, Hkv, d, top_k, max_batch=max(B, 1), max_seq_len=max(N, 1),
                                dtype=q.dtype, scale=scale)
        plan.run(q, k, out["retained_mass"], out["entropy"], seq_lens=seq_lens, indices=indices,
                 recall=out.get("recall"))
        return out
    desc = _fidelity_desc(str(q.dtype), Hq, Hkv, d, top_k, max(B, 1), max(N, 1), scale)
    keep = []
    t = _capi.tka_tensors()
    for name, x in dict(q=q, k_cache=k, seq_lens=seq_lens, indices=indices, **out).items():
        if x is not None:
            setattr(t, name, _dltensor(x, keep))
    _check(_capi.lib().tka_fidelity_host(ctypes.byref(desc), ctypes.byref(t)), "tka_fidelity_host")
    return out


def _destroy(obj, fn_name):
    handle, obj._handle = getattr(obj, "_handle", None), None
    lib = getattr(_capi, "_lib", None) if _capi is not None else None  # None at interpreter exit
    if handle and lib is not None:
        getattr(lib, fn_name)(handle)


def _is_torch_cuda(x):
    return _torch is not None and isinstance(x, _torch.Tensor) and x.is_cuda


# DLPack (code, bits) of the torch dtypes the C API takes: a CUDA tensor's DLTensor is filled
# from its attributes, without __dlpack__ (which costs more than the kernels of a decode step).
_TORCH_DL = {}
if _torch is not None:
    _TORCH_DL = {_torch.float32: (2, 32), _torch.float16: (2, 16), _torch.bfloat16: (4, 16),
                 _torch.int32: (0, 32), _torch.int64: (0, 64), _torch.uint8: (1, 8)}
    if hasattr(_torch, "float8_e4m3fn"):
        _TORCH_DL[_torch.float8_e4m3fn] = (10, 8)


_MAX_NDIM = 8  # tensors of more dimensions take the allocating path


class _DLSlot:
    """One DLTensor whose shape and strides arrays are its own: refilled on every run."""

    def __init__(self):
        self.shape = (ctypes.c_int64 * _MAX_NDIM)()
        self.strides = (ctypes.c_int64 * _MAX_NDIM)()
        self.dl = _capi.DLTensor()
        self.dl.device = _capi.DLDevice(_capi.KDL_CUDA, 0)
        self.dl.dtype = _capi.DLDataType(0, 0, 1)
        self.dl.shape = ctypes.cast(self.shape, ctypes.POINTER(ctypes.c_int64))
        self.dl.strides = ctypes.cast(self.strides, ctypes.POINTER(ctypes.c_int64))
        self.pointer = ctypes.pointer(self.dl)

    def fill(self, x, code_bits):
        dl, shape, strides = self.dl, self.shape, self.strides
        for i, v in enumerate(x.shape):
            shape[i] = v
        for i, v in enumerate(x.stride()):
            strides[i] = v
        dl.data = x.data_ptr() or None
        dl.device.device_id = x.get_device()
        dl.ndim = x.dim()
        dl.dtype.code, dl.dtype.bits = code_bits
        return self.pointer


class _RunSlots(threading.local):
    """A plan's argument structs and owned workspace, per thread (the C call releases the GIL,
    and threads run on their own streams: two threads running one plan must share neither). A
    CUDA torch tensor of our dtypes fills its slot in place: building the ctypes structs anew
    cost ~34 µs of host time per five-tensor call, against ~10."""

    def __init__(self):
        self.tensors = _capi.tka_tensors()
        self.slots = {}
        self.workspace = None

    def pointer(self, name, x, keep):
        code_bits = _slot_dtype(x)
        if code_bits is None:
            return _dltensor(x, keep)
        slot = self.slots.get(name)
        if slot is None:
            slot = self.slots[name] = _DLSlot()
        return slot.fill(x, code_bits)


def _slot_dtype(x):
    """The DLPack (code, bits) of a CUDA torch tensor that a _DLSlot can describe, else None."""
    if _torch is not None and isinstance(x, _torch.Tensor) and x.is_cuda and x.dim() <= _MAX_NDIM:
        return _TORCH_DL.get(x.dtype)
    return None


def _dltensor(x, keep):
    code_bits = _slot_dtype(x)
    if code_bits is not None:
        slot = _DLSlot()  # filled from the tensor's attributes, as a plan's run does
        keep.extend((x, slot))
        return slot.fill(x, code_bits)
    if _torch is not None and isinstance(x, _torch.Tensor):
        x = x.detach()  # __dlpack__ refuses tensors that require grad
    device_type = x.__dlpack_device__()[0] if hasattr(x, "__dlpack_device__") else _capi.KDL_CUDA
    if device_type != _capi.KDL_CUDA:
        capsule = x.__dlpack__()  # host memory: no stream to speak of (NumPy refuses one)
    else:
        try:
            # stream=-1: no cross-stream synchronization by the producer. Torch would otherwise
            # make its default stream wait on the current one, which breaks CUDA graph capture.
            # Ordering is the caller's, as for any op on the stream we launch on.
            capsule = x.__dlpack__(stream=-1)
        except TypeError:
            capsule = x.__dlpack__()
    keep.append(capsule)
    return _capi.dltensor_of(capsule)


def _current_stream(device_index):
    """torch's current stream on the device, as a raw handle (torch's private accessor where it
    has one: the public one builds a Stream object, a few microseconds a call)."""
    raw = getattr(_torch._C, "_cuda_getCurrentRawStream", None)
    if raw is not None:
        return raw(device_index)
    return _torch.cuda.current_stream(device_index).cuda_stream


def _stream_handle(stream, q):
    if stream is None:
        if _is_torch_cuda(q):
            return _current_stream(q.get_device()) or None
        return None
    handle = getattr(stream, "cuda_stream", stream)  # torch.cuda.Stream, cupy Stream.ptr, or int
    handle = getattr(handle, "ptr", handle)
    return int(handle) or None
