"""GPU tests of the Python binding: exact top-k decode against an fp64 PyTorch reference.

Run on a machine with a GPU:  python3 python/tests/test_decode_gpu.py
"""
import math
import os
import sys
import threading

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import topkattn  # noqa: E402


def select_order(scores, forced):
    """Indices of a 1-D fp64 score row by (forced first, NaN last, score desc, index asc)."""
    neg = torch.where(torch.isnan(scores), torch.full_like(scores, math.inf), -scores)
    order = torch.sort(neg, stable=True).indices
    order = order[torch.sort(torch.isnan(scores[order]).to(torch.int8), stable=True).indices]
    return order[torch.sort((~forced[order]).to(torch.int8), stable=True).indices]


def reference(q, K, V, seq_lens, *, top_k, ratio, n_sink, n_local, per_group, scale):
    """q [B,Q,Hq,d], K/V [B,Hkv,N,d] (contiguous, fp64) -> out [B,Q,Hq,d], lse, sets."""
    B, Q, Hq, d = q.shape
    Hkv = K.shape[1]
    G = Hq // Hkv
    out = torch.zeros(B, Q, Hq, V.shape[-1], dtype=torch.float64)
    lse = torch.full((B, Q, Hq), -math.inf, dtype=torch.float64)
    sets = {}
    for b in range(B):
        for j in range(Q):
            n = max(0, int(seq_lens[b]) - Q + j + 1)
            if n == 0:
                for h in range(Hq):
                    sets[(b, j, h)] = set()
                continue
            s = torch.einsum("hd,hnd->hn", q[b, j], K[b].repeat_interleave(G, 0)[:, :n]) * scale
            forced = torch.zeros(n, dtype=torch.bool)
            forced[: min(n_sink, n)] = True
            forced[max(0, n - n_local):] = True
            k_row = top_k if top_k > 0 else max(1, math.ceil(ratio * n))
            size = min(n, max(k_row, int(forced.sum())))
            for h in range(Hq):
                if per_group:
                    g = s[(h // G) * G:(h // G + 1) * G]
                    key = torch.where(torch.isnan(g), torch.full_like(g, -math.inf), g).amax(0)
                    key = torch.where(torch.isnan(g).all(0), torch.full_like(key, math.nan), key)
                else:
                    key = s[h]
                sel = select_order(key, forced)[:size]
                sets[(b, j, h)] = set(sel.tolist())
                w = torch.softmax(s[h, sel], 0)
                out[b, j, h] = w @ V[b, h // G, sel].double()
                lse[b, j, h] = torch.logsumexp(s[h, sel], 0)
    return out, lse, sets


def run_case(name, *, B=2, Q=1, Hq=8, Hkv=2, d=128, N=1000, lens=None, top_k=64, ratio=0.0,
             n_sink=0, n_local=0, per_group=False, page_size=0, dtype=torch.bfloat16, seed=0):
    torch.manual_seed(seed)
    dev = "cuda"
    lens = lens or [N] * B
    q = torch.randn(B, Q, Hq, d, device=dev).to(dtype)
    K = torch.randn(B, Hkv, N, d, device=dev).to(dtype)
    V = torch.randn(B, Hkv, N, d, device=dev).to(dtype)
    seq = torch.tensor(lens, dtype=torch.int32, device=dev)
    rt = run_case.rt
    plan = rt.plan_decode(Hq, Hkv, d, top_k=top_k, top_k_ratio=ratio, dtype=dtype, q_len=Q,
                          n_sink=n_sink, n_local=n_local, select="group" if per_group else "head",
                          paged=page_size > 0, page_size=page_size, max_batch=B, max_seq_len=N)
    out = torch.full((B, Q, Hq, d), float("nan"), device=dev, dtype=dtype)
    lse = torch.full((B, Q, Hq), 12345.0, device=dev)
    idx = torch.full((B, Q, Hkv if per_group else Hq, plan.max_k), -7, dtype=torch.int32, device=dev)
    if page_size:
        pages_per = (N + page_size - 1) // page_size
        perm = torch.randperm(B * pages_per, device=dev).int()
        table = perm.view(B, pages_per)
        kp = torch.zeros(B * pages_per, page_size, Hkv, d, device=dev, dtype=dtype)
        vp = torch.zeros_like(kp)
        pad = pages_per * page_size - N
        Kt = torch.nn.functional.pad(K, (0, 0, 0, pad)).permute(0, 2, 1, 3).reshape(B, pages_per, page_size, Hkv, d)
        Vt = torch.nn.functional.pad(V, (0, 0, 0, pad)).permute(0, 2, 1, 3).reshape(B, pages_per, page_size, Hkv, d)
        kp[table.long()] = Kt
        vp[table.long()] = Vt
        plan.run(q, kp, vp, seq, out, block_table=table, lse=lse, indices=idx)
    else:
        plan.run(q, K, V, seq, out, lse=lse, indices=idx)
    torch.cuda.synchronize()
    ro, rl, sets = reference(q.cpu().double(), K.cpu().double(), V.cpu().double(), lens,
                             top_k=top_k, ratio=ratio, n_sink=n_sink, n_local=n_local,
                             per_group=per_group, scale=1 / math.sqrt(d))
    o = out.cpu().double()
    err = ((o - ro).norm() / ro.norm().clamp_min(1e-30)).item()
    lerr = (lse.cpu().double() - rl).abs()
    lerr = lerr[torch.isfinite(rl)].max().item() if torch.isfinite(rl).any() else 0.0
    linf_ok = bool(((lse.cpu() == -math.inf) == (rl == -math.inf)).all())
    mism = 0
    ic = idx.cpu()
    for (b, j, h), s in sets.items():
        hs = h // (Hq // Hkv) if per_group else h
        got = ic[b, j, hs]
        gs = set(got[got >= 0].tolist())
        mism += len(s ^ gs)
        assert (got[len(s):] == -1).all(), f"{name}: indices not padded with -1"
    ok = err < 1e-2 and lerr < 1e-2 and linf_ok and not torch.isnan(o).any()
    print(f"{'ok  ' if ok else 'FAIL'} {name:40s} rel_err={err:.2e} lse_err={lerr:.1e} set_diff={mism}")
    return ok


CASES = [
    dict(name="basic bf16 d128 g4", ),
    dict(name="fp16 d64 g1", dtype=torch.float16, d=64, Hq=4, Hkv=4),
    dict(name="d256 g8", d=256, Hq=16, Hkv=2),
    dict(name="ragged lens 0,1,37,4099", B=4, N=4099, lens=[0, 1, 37, 4099], top_k=100),
    dict(name="k=1", top_k=1),
    dict(name="k=N", N=300, top_k=300),
    dict(name="k>N", N=300, top_k=1000),
    dict(name="k=8192 N=20000", N=20000, top_k=8192, B=1),
    dict(name="ratio 0.1", ratio=0.1, top_k=0, N=5000),
    dict(name="sink+local", n_sink=4, n_local=16, top_k=64),
    dict(name="per group g4", per_group=True),
    dict(name="q_len 4", Q=4, lens=[1000, 2]),
    dict(name="q_len 16 g16", Q=16, Hq=16, Hkv=1, N=600, top_k=50),
    dict(name="paged 16", page_size=16, N=777),
    dict(name="paged 256 group", page_size=256, N=3000, per_group=True),
    dict(name="long 128K b1", B=1, N=131072, top_k=2048, Hq=32, Hkv=8),
]


def threads_share_a_plan(rt):
    """One plan run from four threads at once, each on its own stream, inputs and batch size: the
    binding keeps its argument structs and its owned workspace per thread, so every output must
    equal that input's output from a lone run (and a run with fewer rows must not see another's
    shapes)."""
    torch.manual_seed(1)
    Hq, Hkv, d, N = 8, 2, 128, 3000
    plan = rt.plan_decode(Hq, Hkv, d, top_k=64, max_batch=4, max_seq_len=N)
    work = []
    for t in range(4):
        B = 4 - t % 3
        q = torch.randn(B, 1, Hq, d, device="cuda").bfloat16()
        K = torch.randn(B, Hkv, N, d, device="cuda").bfloat16()
        V = torch.randn(B, Hkv, N, d, device="cuda").bfloat16()
        seq = torch.randint(1, N + 1, (B,), dtype=torch.int32, device="cuda")
        ws = torch.empty(plan.workspace_size, dtype=torch.uint8, device="cuda")
        work.append((q, K, V, seq, ws))
    expected = []
    for q, K, V, seq, ws in work:
        out = torch.empty_like(q)
        plan.run(q, K, V, seq, out, workspace=ws)
        expected.append(out)
    torch.cuda.synchronize()
    got = [None] * len(work)

    def run(i):
        q, K, V, seq, ws = work[i]
        stream = torch.cuda.Stream()
        with torch.cuda.stream(stream):
            for _ in range(50):
                out = torch.full_like(q, float("nan"))
                # Threads 0 and 1 use the workspace the plan owns for each thread.
                plan.run(q, K, V, seq, out, workspace=ws if i >= 2 else None)
            stream.synchronize()
        got[i] = out

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(work))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = all(g is not None and torch.equal(g, e) for g, e in zip(got, expected))
    print(f"{'ok  ' if ok else 'FAIL'} {'four threads, one plan, batches 4/3/2/4':40s}")
    return ok


def main():
    run_case.rt = topkattn.Runtime()
    results = [run_case(**c) for c in CASES] + [threads_share_a_plan(run_case.rt)]
    print(f"{sum(results)}/{len(results)} passed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
