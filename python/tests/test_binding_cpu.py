"""The Python binding's descriptors against the C library, no GPU needed (CTest runs it): a
compile-only runtime plans every operation, and the spec text each plan reports shows that
every descriptor field arrived where the C header puts it.

Run:  python3 python/tests/test_binding_cpu.py
"""
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import topkattn  # noqa: E402


def stale_arguments_are_cleared(rt):
    """A plan reuses its argument structs from call to call: a method that names other tensors
    than the last call's (IndexerPlan.scores, then .decode) must not find that call's left in
    them. Host arrays on a compile-only runtime: both calls fail, each for its own reasons."""
    import numpy as np
    p = rt.plan_indexer(64, max_batch=2, key_dtype="bf16", top_k=64, max_seq_len=4096,
                        attention=dict(num_q_heads=32, num_kv_heads=8, head_dim=128))
    x = np.zeros((2, 1, 8), dtype=np.float32)
    try:
        p.scores(x, x, x, x, x)  # a fused plan reads no scores tensor
    except topkattn.Error as e:
        assert "tensors.scores" in e.message, e
    else:
        raise AssertionError("scores were accepted by a fused plan")
    try:
        p.decode(x, x, x, x, x, x, x, x, workspace=256)  # any aligned address: nothing runs
    except topkattn.Error as e:
        assert "tensors.scores" not in e.message, e
    else:
        raise AssertionError("host arrays were accepted")


def main():
    from topkattn import _capi
    assert _capi.lib().tka_abi_version() == _capi.ABI_VERSION
    with tempfile.TemporaryDirectory() as cache:
        rt = topkattn.Runtime(compile_only_sm=90, cache_dir=cache, log_level="error")
        p = rt.plan_decode(32, 8, 128, top_k=2048, max_batch=4, max_seq_len=8192, select="group", q_len=2,
                           paged=True, page_size=64, dtype="fp16")
        assert p.spec.startswith("op=decode;dtype=fp16;d=128;g=4;q=2;sel=group;kv=paged;page=64;"), p.spec
        assert p.max_k == 2048 and p.workspace_size > 0
        p = rt.plan_select(1000, max_rows=8, max_n=5000, dtype="bf16", sorted=False)
        assert p.spec.startswith("op=select;dtype=bf16;") and ";k=1000;sorted=0;" in p.spec, p.spec
        p = rt.plan_sparse(128, 1, 576, 2048, max_batch=64, head_dim_v=512, shared_kv=True, select="group",
                           paged=True, page_size=64)
        assert p.spec.startswith("op=sparse;dtype=bf16;d=576;dv=512;shared=1;g=128;q=1;sel=group;kv=paged;page=64;"), p.spec
        assert p.max_k == 2048
        p = rt.plan_indexer(64, max_batch=16, key_dtype="fp8", top_k=2048, max_seq_len=65536, paged=True, page_size=64,
                            attention=dict(num_q_heads=32, num_kv_heads=8, head_dim=128))
        assert p.spec.startswith("op=indexer;heads=64;d=128;q=1;key=fp8e4m3;kv=paged;page=64;"), p.spec
        assert "op=sparse;dtype=bf16;d=128;dv=128;shared=0;g=4;" in p.spec, p.spec
        assert p.workspace_size > 16 * 65536 * 4
        p = rt.plan_indexer(32, max_batch=2, key_dtype="bf16", q_len=3)
        assert p.spec.startswith("op=indexer;heads=32;d=128;q=3;key=bf16;kv=contig;"), p.spec
        p = rt.plan_fidelity(16, 4, 256, 100, max_batch=2, max_seq_len=1000, dtype="fp16")
        assert p.spec.startswith("op=fidelity;dtype=fp16;d=256;") and p.spec.endswith(";k=100"), p.spec
        try:
            rt.plan_sparse(32, 8, 96, 64, max_batch=1)
        except topkattn.Error as e:
            assert e.name == "TKA_ERROR_UNSUPPORTED" and "sparse.head_dim" in e.message, e
        else:
            raise AssertionError("head_dim 96 was accepted")
        stale_arguments_are_cleared(rt)
        counters = topkattn.counters()
        assert counters["nvrtc_compiles"] + counters["disk_hits"] >= 7, counters
    print("binding (cpu): ok")


if __name__ == "__main__":
    main()
