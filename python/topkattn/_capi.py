"""ctypes mirror of include/topkattn/topkattn.h and of DLPack 0.6, plus the library loader.

Every struct here must match the C header field for field; C enums are int-sized (c_int).
"""
import ctypes
import os
from ctypes import (POINTER, Structure, c_char_p, c_double, c_float, c_int, c_int32, c_int64,
                    c_size_t, c_uint8, c_uint16, c_uint64, c_void_p)

# ---- DLPack 0.6 -----------------------------------------------------------------------------

KDL_CPU, KDL_CUDA = 1, 2


class DLDevice(Structure):
    _fields_ = [("device_type", c_int32), ("device_id", c_int32)]


class DLDataType(Structure):
    _fields_ = [("code", c_uint8), ("bits", c_uint8), ("lanes", c_uint16)]


class DLTensor(Structure):
    _fields_ = [
        ("data", c_void_p),
        ("device", DLDevice),
        ("ndim", c_int32),
        ("dtype", DLDataType),
        ("shape", POINTER(c_int64)),
        ("strides", POINTER(c_int64)),
        ("byte_offset", c_uint64),
    ]


# ---- topkattn.h ---------------------------------------------------------------------------

ABI_VERSION = 2  # TKA_ABI_VERSION of the header these structs mirror

TKA_OP_TOPK_DECODE, TKA_OP_TOPK_SELECT, TKA_OP_FIDELITY, TKA_OP_SPARSE_ATTENTION = 1, 2, 3, 4
TKA_OP_INDEXER_SCORES, TKA_OP_INDEXER_DECODE = 5, 6
TKA_DTYPE_BF16, TKA_DTYPE_FP16, TKA_DTYPE_FP32, TKA_DTYPE_FP8_E4M3 = 1, 2, 3, 4
TKA_KV_CONTIGUOUS, TKA_KV_PAGED = 0, 1
TKA_SELECT_PER_HEAD, TKA_SELECT_PER_GROUP = 0, 1

STATUS_NAMES = {
    0: "TKA_SUCCESS",
    1: "TKA_ERROR_INVALID_ARGUMENT",
    2: "TKA_ERROR_NULL_POINTER",
    3: "TKA_ERROR_UNSUPPORTED",
    4: "TKA_ERROR_NO_DEVICE",
    5: "TKA_ERROR_NVRTC_UNAVAILABLE",
    6: "TKA_ERROR_COMPILE",
    7: "TKA_ERROR_CUDA",
    8: "TKA_ERROR_CACHE_MISS",
    9: "TKA_ERROR_TENSOR_DTYPE",
    10: "TKA_ERROR_TENSOR_SHAPE",
    11: "TKA_ERROR_TENSOR_STRIDE",
    12: "TKA_ERROR_TENSOR_ALIGNMENT",
    13: "TKA_ERROR_TENSOR_DEVICE",
    14: "TKA_ERROR_WORKSPACE",
    15: "TKA_ERROR_OUT_OF_MEMORY",
    16: "TKA_ERROR_INTERNAL",
}

LOG_LEVELS = {"off": 0, "error": 1, "warn": 2, "warning": 2, "info": 3, "debug": 4}


class tka_runtime_options(Structure):
    _fields_ = [
        ("device_ordinal", c_int),
        ("cache_dir", c_char_p),
        ("log_level", c_int),
        ("compile_only_sm", c_int),
        ("tuning_db", c_char_p),
        ("tune", c_int),
    ]


class tka_decode_desc(Structure):
    _fields_ = [
        ("dtype", c_int),
        ("num_q_heads", c_int),
        ("num_kv_heads", c_int),
        ("head_dim", c_int),
        ("head_dim_v", c_int),
        ("q_len", c_int),
        ("top_k", c_int),
        ("top_k_ratio", c_double),
        ("n_sink", c_int),
        ("n_local", c_int),
        ("select", c_int),
        ("kv_layout", c_int),
        ("page_size", c_int),
        ("max_batch", c_int),
        ("max_seq_len", c_int),
        ("scale", c_float),
    ]


class tka_select_desc(Structure):
    _fields_ = [
        ("dtype", c_int),
        ("top_k", c_int),
        ("max_rows", c_int),
        ("max_n", c_int),
        ("pad", c_int),
        ("sorted", c_int),
    ]


class tka_fidelity_desc(Structure):
    _fields_ = [
        ("dtype", c_int),
        ("num_q_heads", c_int),
        ("num_kv_heads", c_int),
        ("head_dim", c_int),
        ("top_k", c_int),
        ("max_batch", c_int),
        ("max_seq_len", c_int),
        ("scale", c_float),
    ]


class tka_sparse_desc(Structure):
    _fields_ = [
        ("dtype", c_int),
        ("num_q_heads", c_int),
        ("num_kv_heads", c_int),
        ("head_dim", c_int),
        ("head_dim_v", c_int),
        ("shared_kv", c_int),
        ("q_len", c_int),
        ("index_width", c_int),
        ("select", c_int),
        ("kv_layout", c_int),
        ("page_size", c_int),
        ("max_batch", c_int),
        ("scale", c_float),
    ]


class tka_indexer_desc(Structure):
    _fields_ = [
        ("key_dtype", c_int),
        ("num_index_heads", c_int),
        ("index_head_dim", c_int),
        ("q_len", c_int),
        ("kv_layout", c_int),
        ("page_size", c_int),
        ("max_batch", c_int),
        ("max_seq_len", c_int),
        ("top_k", c_int),
        ("attention", tka_sparse_desc),
    ]


class tka_op_desc(Structure):
    _fields_ = [("op", c_int), ("decode", tka_decode_desc), ("select", tka_select_desc),
                ("fidelity", tka_fidelity_desc), ("sparse", tka_sparse_desc),
                ("indexer", tka_indexer_desc)]


TENSOR_FIELDS = ("q", "k_cache", "v_cache", "seq_lens", "block_table", "out", "lse", "indices",
                 "input", "lengths", "values", "recall", "retained_mass", "entropy",
                 "index_q", "index_weights", "index_k", "index_scale", "scores")


class tka_tensors(Structure):
    _fields_ = [(name, POINTER(DLTensor)) for name in TENSOR_FIELDS]


class tka_counters(Structure):
    _fields_ = [
        ("nvrtc_compiles", c_uint64),
        ("disk_hits", c_uint64),
        ("memory_hits", c_uint64),
        ("corrupt_entries", c_uint64),
        ("compile_ms", c_double),
        ("tuned_plans", c_uint64),
        ("default_plans", c_uint64),
        ("online_tunings", c_uint64),
    ]


_SIGNATURES = {
    # name: (restype, argtypes)
    "tka_version": (c_char_p, []),
    "tka_abi_version": (c_int, []),
    "tka_status_string": (c_char_p, [c_int]),
    "tka_last_error": (c_char_p, []),
    "tka_runtime_options_init": (None, [POINTER(tka_runtime_options)]),
    "tka_runtime_create": (c_int, [POINTER(tka_runtime_options), POINTER(c_void_p)]),
    "tka_runtime_destroy": (c_int, [c_void_p]),
    "tka_get_counters": (c_int, [POINTER(tka_counters)]),
    "tka_runtime_cache_dir": (c_char_p, [c_void_p]),
    "tka_op_desc_init": (None, [POINTER(tka_op_desc), c_int]),
    "tka_tensors_init": (None, [POINTER(tka_tensors)]),
    "tka_plan_create": (c_int, [c_void_p, POINTER(tka_op_desc), POINTER(c_void_p)]),
    "tka_plan_destroy": (c_int, [c_void_p]),
    "tka_plan_workspace_size": (c_int, [c_void_p, POINTER(c_size_t)]),
    "tka_plan_max_k": (c_int, [c_void_p, POINTER(c_int)]),
    "tka_plan_spec": (c_char_p, [c_void_p]),
    "tka_plan_run": (c_int, [c_void_p, POINTER(tka_tensors), c_void_p, c_void_p]),
    "tka_fidelity_host": (c_int, [POINTER(tka_fidelity_desc), POINTER(tka_tensors)]),
}

_lib = None


def _candidates():
    env = os.environ.get("TOPKATTN_LIBRARY")
    if env:
        return [env]  # an explicit choice is never silently replaced by another library
    here = os.path.dirname(os.path.abspath(__file__))
    build = os.path.normpath(os.path.join(here, "..", "..", "build", "libtopkattn.so"))
    return [build, "libtopkattn.so", "libtopkattn.so.0"]


def lib():
    """The loaded shared library (loaded on first use, so `import topkattn` never fails)."""
    global _lib
    if _lib is not None:
        return _lib
    tried = []
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            tried.append(f"{path} (no such file)")
            continue
        try:
            handle = ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"{path} ({e})")
            continue
        for name, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(handle, name, None)
            if fn is None:
                raise OSError(f"topkattn: {path} lacks {name}: a library older than this binding")
            fn.restype, fn.argtypes = restype, argtypes
        abi = handle.tka_abi_version()
        if abi != ABI_VERSION:
            raise OSError(f"topkattn: {path} has ABI version {abi}, this binding mirrors version "
                          f"{ABI_VERSION}: use the binding and the library of one build")
        _lib = handle
        return _lib
    raise OSError("topkattn: cannot load libtopkattn.so; set $TOPKATTN_LIBRARY. Tried: "
                  + "; ".join(tried))


# ---- DLPack capsules ------------------------------------------------------------------------

_capsule_is_valid = ctypes.pythonapi.PyCapsule_IsValid
_capsule_is_valid.restype, _capsule_is_valid.argtypes = c_int, [ctypes.py_object, c_char_p]
_capsule_get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_get_pointer.restype, _capsule_get_pointer.argtypes = c_void_p, [ctypes.py_object, c_char_p]

# DLManagedTensorVersioned (DLPack >= 1.0): {uint32 major, minor; void* ctx; deleter; uint64 flags;
# DLTensor dl_tensor}. Only used if a producer hands one back unasked.
_VERSIONED_DLTENSOR_OFFSET = 8 + 8 + 8 + 8


def dltensor_of(capsule):
    """Pointer to the DLTensor inside an unconsumed DLPack capsule.

    The capsule is read, never renamed to "used_dltensor": when it is garbage collected its own
    destructor calls the producer's deleter. The caller keeps it alive while the pointer is used.
    """
    if _capsule_is_valid(capsule, b"dltensor"):
        # DLManagedTensor's first field is the DLTensor.
        return ctypes.cast(_capsule_get_pointer(capsule, b"dltensor"), POINTER(DLTensor))
    if _capsule_is_valid(capsule, b"dltensor_versioned"):
        base = _capsule_get_pointer(capsule, b"dltensor_versioned")
        return ctypes.cast(base + _VERSIONED_DLTENSOR_OFFSET, POINTER(DLTensor))
    raise TypeError("expected an unconsumed DLPack capsule named 'dltensor'")
