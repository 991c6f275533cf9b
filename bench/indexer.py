#!/usr/bin/env python3
"""Lightning Indexer decode (DeepSeek Sparse Attention): topkattn's fused plan against its bytes
floor, the PyTorch composition and SDPA full-attention decode of the same model shape; and
sparse attention over given indices in the MLA layout. One run, one copy-bandwidth measurement.

    python3 bench/indexer.py [--out bench/results/indexer-h100.md] [--shapes 16x128K 1x128K ...]

Indexer: H_I=64, d_I=128, FP8 E4M3 keys with a per-token fp32 scale (or --bf16-keys), k=2048;
main attention Hq=32, Hkv=8, d=128, bf16, contiguous caches, every sequence at full length N.
"""
import stdlib_first  # noqa: F401  (first: the standard library's select, not ./select.py)
import argparse
import datetime
import os
import shlex
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, HERE)
import topkattn  # noqa: E402
from common import (copy_bandwidth_gbs, count_label, fmt_ratio, fmt_us, free_cuda_memory,  # noqa: E402
                    markdown_table, parse_count, time_calls, try_time)

HI, DI, HQ, HKV, D = 64, 128, 32, 8, 128
DEFAULT_SHAPES = ["16x128K", "1x128K", "4x64K", "64x8K"]
COLUMNS = ["B x N", "ours µs", "ours-graph µs", "scores µs", "floor µs", "ours/floor", "composition µs",
           "composition/ours", "SDPA full µs", "SDPA/ours", "recall vs composition", "rel err"]
MLA_COLUMNS = ["B x N", "heads", "k", "ours µs", "selected bytes", "GB/s", "GB/s / copy bandwidth", "rel err"]


def parse_shape(text):
    b, n = text.lower().split("x")
    return int(b), parse_count(n)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", nargs="+", type=parse_shape, default=[parse_shape(s) for s in DEFAULT_SHAPES])
    p.add_argument("--top-k", type=int, default=2048)
    p.add_argument("--bf16-keys", action="store_true", help="indexer keys in bf16 instead of FP8")
    p.add_argument("--mla", nargs="+", type=parse_shape, default=[parse_shape(s) for s in ("64x32K", "8x32K")],
                   help="B x N of the MLA sparse-attention rows")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--out")
    return p.parse_args()


def label(b, n):
    return f"{b} x {count_label(n)}"


def make_inputs(b, n, fp8):
    x = {}
    x["iq"] = torch.randn(b, 1, HI, DI, device="cuda", dtype=torch.bfloat16)
    x["iw"] = torch.randn(b, 1, HI, device="cuda") * HI ** -0.5
    kf = torch.randn(b, n, DI, device="cuda") * 16
    if fp8:
        x["ik"] = kf.to(torch.float8_e4m3fn).view(torch.uint8)
        x["iscale"] = torch.rand(b, n, device="cuda") * 0.1 + 0.01
    else:
        x["ik"] = kf.to(torch.bfloat16)
        x["iscale"] = None
    del kf
    x["q"] = torch.randn(b, 1, HQ, D, device="cuda", dtype=torch.bfloat16)
    x["k"] = torch.randn(b, HKV, n, D, device="cuda", dtype=torch.bfloat16)
    x["v"] = torch.randn(b, HKV, n, D, device="cuda", dtype=torch.bfloat16)
    x["lens"] = torch.full((b,), n, dtype=torch.int32, device="cuda")
    return x


def composition(x, k, fp8):
    """The PyTorch composition: dequantize, matmul, ReLU, weighted sum, topk, gather, SDPA."""
    keys = x["ik"].view(torch.float8_e4m3fn).to(torch.bfloat16) if fp8 else x["ik"]
    logits = torch.einsum("bhd,bnd->bhn", x["iq"][:, 0], keys).float()
    if x["iscale"] is not None:
        logits = logits * x["iscale"][:, None, :]
    scores = (torch.relu(logits) * x["iw"][:, 0, :, None]).sum(1)
    idx = scores.topk(k, dim=-1).indices  # [B, k]
    gather = idx[:, None, :, None].expand(-1, HKV, -1, D)
    ks, vs = x["k"].gather(2, gather), x["v"].gather(2, gather)
    out = F.scaled_dot_product_attention(x["q"].transpose(1, 2), ks, vs, enable_gqa=True)
    return out.transpose(1, 2), idx


def attention_over(x, idx):
    gather = idx.long()[:, None, :, None].expand(-1, HKV, -1, D)
    ks, vs = x["k"].gather(2, gather).float(), x["v"].gather(2, gather).float()
    q = x["q"].transpose(1, 2).float()
    out = F.scaled_dot_product_attention(q, ks, vs, enable_gqa=True)
    return out.transpose(1, 2)


def bench_shape(rt, b, n, args, bandwidth):
    fp8 = not args.bf16_keys
    k = args.top_k
    x = make_inputs(b, n, fp8)
    attention = dict(num_q_heads=HQ, num_kv_heads=HKV, head_dim=D)
    plan = rt.plan_indexer(HI, max_batch=b, key_dtype="fp8" if fp8 else "bf16", top_k=k, max_seq_len=n,
                           attention=attention)
    scores_plan = rt.plan_indexer(HI, max_batch=b, key_dtype="fp8" if fp8 else "bf16")
    out = torch.empty(b, 1, HQ, D, device="cuda", dtype=torch.bfloat16)
    sel = torch.empty(b, 1, k, dtype=torch.int32, device="cuda")
    scores = torch.empty(b, 1, n, device="cuda")

    def run():
        plan.decode(x["q"], x["k"], x["v"], x["lens"], out, x["iq"], x["iw"], x["ik"],
                    index_scale=x["iscale"], indices=sel)

    run()
    torch.cuda.synchronize()
    ref_out = attention_over(x, sel[:, 0])
    err = ((out.float() - ref_out).norm() / ref_out.norm()).item()
    comp_out, comp_idx = composition(x, k, fp8)
    recall = sum(len(set(sel[i, 0].tolist()) & set(comp_idx[i].tolist())) for i in range(b)) / (b * k)
    del comp_out, comp_idx
    ours = time_calls([run], repeats=args.repeats)

    def graph_time():
        g = torch.cuda.CUDAGraph()
        stream = torch.cuda.Stream()
        with torch.cuda.graph(g, stream=stream):
            run()
        return time_calls([g.replay], repeats=args.repeats)

    graph = try_time("graph", graph_time)
    score_t = time_calls([lambda: scores_plan.scores(x["iq"], x["iw"], x["ik"], x["lens"], scores,
                                                     index_scale=x["iscale"])], repeats=args.repeats)
    comp = try_time("composition", lambda: time_calls([lambda: composition(x, k, fp8)], repeats=args.repeats))
    free_cuda_memory()
    q4 = x["q"].transpose(1, 2)
    sdpa = try_time("sdpa", lambda: time_calls(
        [lambda: F.scaled_dot_product_attention(q4, x["k"], x["v"], enable_gqa=True)], repeats=args.repeats))
    key_bytes = b * n * (DI * (1 if fp8 else 2) + (4 if fp8 else 0))
    floor_bytes = key_bytes + b * HKV * k * D * 2 * 2 + b * HQ * D * 2 * 2 + b * HI * (DI * 2 + 4)
    floor = floor_bytes / (bandwidth * 1e9) * 1e6
    best = graph if graph is not None else ours
    cells = [label(b, n), fmt_us(ours), fmt_us(graph), fmt_us(score_t), fmt_us(floor), fmt_ratio(best, floor),
             fmt_us(comp), fmt_ratio(comp, best), fmt_us(sdpa), fmt_ratio(sdpa, best), f"{recall:.3f}", f"{err:.1e}"]
    ok = err < 1e-2
    del x
    return cells, plan.spec, ok


def bench_mla(rt, b, n, args, bandwidth):
    heads, k = 128, args.top_k
    q = torch.randn(b, 1, heads, 576, device="cuda", dtype=torch.bfloat16)
    kv = torch.randn(b, 1, n, 576, device="cuda", dtype=torch.bfloat16)
    lens = torch.full((b,), n, dtype=torch.int32, device="cuda")
    idx = torch.stack([torch.randperm(n, device="cuda")[:k] for _ in range(b)]).view(b, 1, 1, k).to(torch.int32)
    plan = rt.plan_sparse(heads, 1, 576, k, max_batch=b, head_dim_v=512, shared_kv=True, select="group")
    out = torch.empty(b, 1, heads, 512, device="cuda", dtype=torch.bfloat16)
    plan.run(q, kv, None, lens, idx, out)
    torch.cuda.synchronize()
    sel = kv[torch.arange(b, device="cuda")[:, None], 0, idx[:, 0, 0].long()].float()  # [b, k, 576]
    s = torch.einsum("bhd,bkd->bhk", q[:, 0].float(), sel) * 576 ** -0.5
    ref = torch.einsum("bhk,bkd->bhd", torch.softmax(s, -1), sel[..., :512])
    err = ((out[:, 0].float() - ref).norm() / ref.norm()).item()
    t = time_calls([lambda: plan.run(q, kv, None, lens, idx, out)], repeats=args.repeats)
    nbytes = b * k * 576 * 2 + b * heads * (576 + 512) * 2 + b * k * 4
    gbs = nbytes / (t * 1e-6) / 1e9
    cells = [label(b, n), str(heads), str(k), fmt_us(t), f"{nbytes / 2**20:.0f} MiB", f"{gbs:.0f}",
             f"{gbs / bandwidth:.2f}", f"{err:.1e}"]
    return cells, plan.spec, err < 1e-2


def main():
    args = parse_args()
    torch.manual_seed(0)
    bandwidth = copy_bandwidth_gbs()
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    keys = "bf16" if args.bf16_keys else "FP8 E4M3 + fp32 scale per token"
    header = [
        "# topkattn: Lightning Indexer decode and MLA sparse attention",
        "",
        f"- GPU: {torch.cuda.get_device_name()}",
        f"- date: {now}",
        f"- command: `python3 {shlex.join(sys.argv)}`",
        f"- torch {torch.__version__} (CUDA {torch.version.cuda}), topkattn {topkattn.version()}",
        f"- copy bandwidth: {bandwidth:.0f} GB/s (1 GiB device-to-device copy, read + write, median)",
        f"- indexer H_I={HI}, d_I={DI}, keys {keys}, k={args.top_k}; attention Hq={HQ}, Hkv={HKV}, d={D}, "
        "bf16, contiguous, q_len=1, every sequence at full length N",
        "- floor = (indexer keys and scales + the selected K and V rows + q, out, indexer q and weights) / copy "
        "bandwidth; ours/floor uses the graph time; composition = dequantize + matmul + ReLU + weighted sum + "
        "topk + gather + SDPA in PyTorch; SDPA full = full-attention decode of the same shape",
        "- recall vs composition: overlap of our selection with the composition's (bf16 logits there, fp32 "
        "on tensor cores here); rel err: ours against fp32 attention over our own selection",
        f"- each time: median of {args.repeats} calls, each bracketed by CUDA events, all enqueued behind a GPU wait "
        "before the first runs (the GPU's time; the host's launch time hidden, as when an engine runs ahead)",
        "",
    ]
    print("\n".join(header), flush=True)
    rt = topkattn.Runtime()
    rows, specs, all_ok = [], [], True

    def write():
        text = "\n".join(header + [markdown_table(COLUMNS, rows), ""] + [f"- `{s}`" for s in specs] + [""])
        if args.out:
            with open(args.out, "w") as f:
                f.write(text)
        return text

    for b, n in args.shapes:
        print(f"[{label(b, n)}]", file=sys.stderr, flush=True)
        cells, spec, ok = bench_shape(rt, b, n, args, bandwidth)
        free_cuda_memory()
        all_ok &= ok
        print("  " + " | ".join(cells), file=sys.stderr, flush=True)
        rows.append(cells)
        specs.append(spec)
        write()
    mla_rows, mla_specs = [], []
    for b, n in args.mla:
        print(f"[MLA {label(b, n)}]", file=sys.stderr, flush=True)
        cells, spec, ok = bench_mla(rt, b, n, args, bandwidth)
        free_cuda_memory()
        all_ok &= ok
        mla_rows.append(cells)
        mla_specs.append(spec)
    text = write() + "\n".join(["", "## Sparse attention over given indices, MLA layout (576/512, shared KV)",
                                "", markdown_table(MLA_COLUMNS, mla_rows), ""] + [f"- `{s}`" for s in mla_specs] + [""])
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
