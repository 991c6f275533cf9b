#!/usr/bin/env python3
"""Runs one plan a few times at one shape, for per-kernel timings under ncu:

    ncu --metrics gpu__time_duration.sum python3 bench/kernel_times.py decode --batch 1 --seq-len 131072
    ncu --metrics gpu__time_duration.sum python3 bench/kernel_times.py select --batch 2048 --seq-len 131072
    ncu --metrics gpu__time_duration.sum python3 bench/kernel_times.py indexer --batch 16 --seq-len 131072
    ncu --metrics gpu__time_duration.sum python3 bench/kernel_times.py mla --batch 64 --seq-len 32768

decode: Hq=32, Hkv=8 (Llama-3.1-8B); indexer: 64 index heads of 128, FP8 keys, then attention
with Hq=32, Hkv=8, d=128; select: --batch rows of --seq-len fp32 values; mla: sparse attention over
--top-k given indices in DeepSeek's MLA layout (128 heads, keys 576, values their first 512).
"""
import stdlib_first  # noqa: F401  (first: the standard library's select, not ./select.py)
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import topkattn  # noqa: E402
from common import to_paged  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("op", choices=["decode", "select", "indexer", "mla"])
p.add_argument("--batch", type=int, default=1)
p.add_argument("--seq-len", type=int, default=131072)
p.add_argument("--head-dim", type=int, default=128)
p.add_argument("--top-k", type=int, default=2048)
p.add_argument("--unsorted", action="store_true", help="select: unsorted output")
p.add_argument("--page-size", type=int, default=0, help="decode: paged KV with this page size (random block table)")
p.add_argument("--runs", type=int, default=3)
a = p.parse_args()
B, N, d, k = a.batch, a.seq_len, a.head_dim, a.top_k
rt = topkattn.Runtime()
lens = torch.full((B,), N, dtype=torch.int32, device="cuda")
if a.op == "select":
    x = torch.randn(B, N, device="cuda")
    values = torch.empty(B, k, device="cuda")
    indices = torch.empty(B, k, dtype=torch.int32, device="cuda")
    plan = rt.plan_select(k, max_rows=B, max_n=N, sorted=not a.unsorted)
    run = lambda: plan.run(x, values, indices)  # noqa: E731
elif a.op == "mla":
    q = torch.randn(B, 1, 128, 576, device="cuda", dtype=torch.bfloat16)
    kv = torch.randn(B, 1, N, 576, device="cuda", dtype=torch.bfloat16)
    idx = torch.stack([torch.randperm(N, device="cuda")[:k] for _ in range(B)]).view(B, 1, 1, k).to(torch.int32)
    out = torch.empty(B, 1, 128, 512, device="cuda", dtype=torch.bfloat16)
    plan = rt.plan_sparse(128, 1, 576, k, max_batch=B, head_dim_v=512, shared_kv=True, select="group")
    run = lambda: plan.run(q, kv, None, lens, idx, out)  # noqa: E731
else:
    q = torch.randn(B, 1, 32, d, device="cuda", dtype=torch.bfloat16)
    kc = torch.randn(B, 8, N, d, device="cuda", dtype=torch.bfloat16)
    vc = torch.randn_like(kc)
    out = torch.empty(B, 1, 32, d, device="cuda", dtype=torch.bfloat16)
    if a.op == "decode" and a.page_size:
        P = a.page_size
        perm = torch.randperm(B * N // P, device="cuda")
        kp, vp = to_paged(kc, P, perm), to_paged(vc, P, perm)
        table = perm.view(B, -1).to(torch.int32)
        plan = rt.plan_decode(32, 8, d, top_k=k, max_batch=B, max_seq_len=N, paged=True, page_size=P)
        run = lambda: plan.run(q, kp, vp, lens, out, block_table=table)  # noqa: E731
    elif a.op == "decode":
        plan = rt.plan_decode(32, 8, d, top_k=k, max_batch=B, max_seq_len=N)
        run = lambda: plan.run(q, kc, vc, lens, out)  # noqa: E731
    else:
        iq = torch.randn(B, 1, 64, 128, device="cuda", dtype=torch.bfloat16)
        iw = torch.randn(B, 1, 64, device="cuda") * 0.125
        ik = (torch.randn(B, N, 128, device="cuda") * 16).to(torch.float8_e4m3fn).view(torch.uint8)
        isc = torch.rand(B, N, device="cuda") * 0.1 + 0.01
        plan = rt.plan_indexer(64, max_batch=B, key_dtype="fp8", top_k=k, max_seq_len=N,
                               attention=dict(num_q_heads=32, num_kv_heads=8, head_dim=d))
        run = lambda: plan.decode(q, kc, vc, lens, out, iq, iw, ik, index_scale=isc)  # noqa: E731
for _ in range(a.runs):
    run()
torch.cuda.synchronize()
print(plan.spec)
