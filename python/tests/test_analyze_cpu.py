"""The Python binding's host path, no GPU needed (CTest runs it): topkattn.analyze on NumPy
arrays against a NumPy fp64 reference written from the contract.

Run:  python3 python/tests/test_analyze_cpu.py
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import topkattn  # noqa: E402


def reference(q, k, top_k, idx, seq_lens):
    B, Hq, d = q.shape
    G = Hq // k.shape[1]
    scale = np.float64(np.float32(1.0) / np.sqrt(np.float32(d)))
    out = {n: np.full((B, Hq), np.nan) for n in ("recall", "retained_mass", "entropy")}
    for b in range(B):
        n = int(seq_lens[b])
        for h in range(Hq):
            if n == 0:
                continue
            s = (k[b, h // G, :n].astype(np.float64) @ q[b, h].astype(np.float64)) * scale
            p = np.exp(s - s.max())
            p /= p.sum()
            exact = set(np.argsort(-s, kind="stable")[:min(top_k, n)].tolist())
            cand = {int(i) for i in idx[b, h] if 0 <= i < n}
            out["recall"][b, h] = len(cand & exact) / min(top_k, n)
            out["retained_mass"][b, h] = p[sorted(cand)].sum()
            nz = p[p > 0]
            out["entropy"][b, h] = -(nz * np.log(nz)).sum()
    return out


def main():
    rng = np.random.default_rng(3)
    B, Hq, Hkv, N, d, k_top = 3, 8, 2, 500, 64, 32
    q = rng.standard_normal((B, Hq, d)).astype(np.float32)
    k = rng.standard_normal((B, Hkv, N, d)).astype(np.float32)
    idx = rng.integers(-2, N + 2, size=(B, Hq, 48)).astype(np.int64)
    seq_lens = np.array([N, 0, 137], dtype=np.int32)
    got = topkattn.analyze(q, k, k_top, indices=idx, seq_lens=seq_lens)
    want = reference(q, k, k_top, idx, seq_lens)
    for name in ("recall", "retained_mass", "entropy"):
        assert got[name].shape == (B, Hq), name
        assert np.array_equal(np.isnan(got[name]), np.isnan(want[name])), name
        ok = ~np.isnan(want[name])
        assert np.allclose(got[name][ok], want[name][ok], rtol=1e-5, atol=1e-6), (name, got[name], want[name])
    # Without a candidate: no recall, and the mass is exact top-k's.
    got = topkattn.analyze(q, k, k_top)
    assert "recall" not in got
    assert (got["retained_mass"] > 0).all() and (got["retained_mass"] <= 1.0 + 1e-6).all()
    # Errors carry the status and the field.
    try:
        topkattn.analyze(q, k, 0)
    except topkattn.Error as e:
        assert e.name == "TKA_ERROR_INVALID_ARGUMENT" and "top_k" in e.message, e
    else:
        raise AssertionError("top_k = 0 was accepted")
    print("analyze (cpu): ok")


if __name__ == "__main__":
    main()
