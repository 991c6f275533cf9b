#!/usr/bin/env python3
"""Runs one decode plan a few times at one shape, for per-kernel timings under ncu:

    ncu --metrics gpu__time_duration.sum python3 bench/profile_decode.py --batch 1 --seq-len 131072
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import topkattn  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--batch", type=int, default=1)
p.add_argument("--seq-len", type=int, default=131072)
p.add_argument("--head-dim", type=int, default=128)
p.add_argument("--top-k", type=int, default=2048)
p.add_argument("--runs", type=int, default=3)
a = p.parse_args()
B, N, d = a.batch, a.seq_len, a.head_dim
q = torch.randn(B, 1, 32, d, device="cuda", dtype=torch.bfloat16)
k = torch.randn(B, 8, N, d, device="cuda", dtype=torch.bfloat16)
v = torch.randn_like(k)
lens = torch.full((B,), N, dtype=torch.int32, device="cuda")
out = torch.empty(B, 1, 32, d, device="cuda", dtype=torch.bfloat16)
plan = topkattn.Runtime().plan_decode(32, 8, d, top_k=a.top_k, max_batch=B, max_seq_len=N)
for _ in range(a.runs):
    plan.run(q, k, v, lens, out)
torch.cuda.synchronize()
print(plan.spec)
