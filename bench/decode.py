#!/usr/bin/env python3
"""Exact top-k decode: topkattn against its bytes floor, full-attention SDPA and plain PyTorch.

    python3 bench/decode.py [--out bench/results/decode-h100.md] [--shapes 1x32K 8x32K:d64 ...]

A shape is BxN[:dD][:pagedP]: batch B, sequence length N (K/M suffixes), head dim D (default
128), paged KV with page size P (block table = a random permutation of the pages).
Everything runs in one process so that every number shares one GPU state and one copy-bandwidth
measurement. Before timing, our output is checked against an fp64 reference on the same inputs.
"""
import stdlib_first  # noqa: F401  (first: the standard library's select, not ./select.py)
import argparse
import datetime
import math
import os
import shlex
import sys
from dataclasses import dataclass

import torch
import torch._dynamo
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, HERE)
import topkattn  # noqa: E402
from common import (capture_graph, copy_bandwidth_gbs, count_label, fmt_ratio, fmt_us,  # noqa: E402
                    free_cuda_memory, markdown_table, parse_count, time_calls, time_graphs, to_paged, try_time)

HQ, HKV, DTYPE, ELEM = 32, 8, torch.bfloat16, 2
DEFAULT_SHAPES = ["1x32K", "1x128K", "8x32K", "16x128K", "64x8K",
                  "8x32K:d64", "8x32K:d256", "8x32K:paged64"]
TOLERANCE = 1e-2
COLUMNS = ["shape", "ours µs", "ours-graph µs", "floor µs", "ours/floor", "SDPA µs", "SDPA-graph µs",
           "SDPA/ours", "naive µs", "compile µs", "compile/ours", "rel err"]


def columns(args):
    if not args.tuning_db:
        return COLUMNS
    return COLUMNS[:-1] + ["default-graph µs", "default/ours-graph"] + COLUMNS[-1:]


@dataclass
class Shape:
    batch: int
    seq_len: int
    head_dim: int = 128
    page_size: int = 0  # 0: contiguous KV

    @property
    def label(self):
        n = self.seq_len
        paged = f" paged{self.page_size}" if self.page_size else ""
        return f"B={self.batch} N={count_label(n)} d={self.head_dim}{paged}"


def parse_shape(text):
    head, *options = text.split(":")
    batch, seq_len = head.lower().split("x")
    shape = Shape(int(batch), parse_count(seq_len))
    for opt in options:
        if opt.startswith("paged"):
            shape.page_size = int(opt[5:] or 64)
        elif opt.startswith("d"):
            shape.head_dim = int(opt[1:])
        else:
            raise argparse.ArgumentTypeError(f"bad shape option {opt!r} in {text!r}")
    if shape.page_size and shape.seq_len % shape.page_size:
        raise argparse.ArgumentTypeError(f"{text}: N must be a multiple of the page size")
    return shape


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", help="also write the table (markdown, with header lines) here")
    p.add_argument("--shapes", nargs="+", type=parse_shape,
                   default=[parse_shape(s) for s in DEFAULT_SHAPES])
    p.add_argument("--top-k", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile column")
    p.add_argument("--tuning-db", help="plans read this tuning database; adds the heuristic default's "
                   "time (same run, same inputs) and default/ours columns")
    return p.parse_args()


# ---- inputs -------------------------------------------------------------------------------

def make_copy(shape):
    b, n, d = shape.batch, shape.seq_len, shape.head_dim
    randn = lambda *size: torch.randn(*size, dtype=DTYPE, device="cuda")  # noqa: E731
    c = {"q": randn(b, 1, HQ, d), "k": randn(b, HKV, n, d), "v": randn(b, HKV, n, d),
         "seq_lens": torch.full((b,), n, dtype=torch.int32, device="cuda"),
         "out": torch.empty(b, 1, HQ, d, dtype=DTYPE, device="cuda")}
    if shape.page_size:
        perm = torch.randperm(b * n // shape.page_size, device="cuda")
        c["k_paged"] = to_paged(c["k"], shape.page_size, perm)
        c["v_paged"] = to_paged(c["v"], shape.page_size, perm)
        c["block_table"] = perm.view(b, -1).to(torch.int32)
    return c


def make_copies(shape):
    """Enough input copies that rotating over them touches more than 4x the L2 cache."""
    l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 50 << 20)
    first = make_copy(shape)
    nbytes = sum(t.numel() * t.element_size() for t in first.values())
    return [first] + [make_copy(shape) for _ in range(math.ceil(4 * l2 / nbytes) - 1)]


def floor_bytes(shape, top_k):
    b, n, d = shape.batch, shape.seq_len, shape.head_dim
    k_bytes = b * HKV * n * d * ELEM
    v_selected = b * HQ * min(top_k, n) * d * ELEM
    q_out = 2 * b * HQ * d * ELEM
    return k_bytes + v_selected + q_out


# ---- the contenders -----------------------------------------------------------------------

def run_ours(plan, c):
    if "block_table" in c:
        return plan.run(c["q"], c["k_paged"], c["v_paged"], c["seq_lens"], c["out"],
                        block_table=c["block_table"])
    return plan.run(c["q"], c["k"], c["v"], c["seq_lens"], c["out"])


def sdpa_decode(q, k, v):
    """Full attention over all N keys: q [B, 1, Hq, d] -> [B, Hq, 1, d]."""
    return F.scaled_dot_product_attention(q.transpose(1, 2), k, v, enable_gqa=True)


def bmm_fp32_supported():
    a = torch.randn(1, 2, 8, dtype=DTYPE, device="cuda")
    try:
        return torch.bmm(a, a.transpose(1, 2), out_dtype=torch.float32).dtype == torch.float32
    except (TypeError, RuntimeError):
        return False


def make_naive(top_k, scale, fp32_scores):
    """Exact top-k decode as a PyTorch user would write it: scores, topk, gather, softmax, sum."""

    def naive(q, k, v):
        b, _, hq, d = q.shape
        hkv, n = k.shape[1], k.shape[2]
        g, kk = hq // hkv, min(top_k, n)
        qg = q.reshape(b * hkv, g, d)                       # heads of one KV group together
        kt = k.reshape(b * hkv, n, d).transpose(1, 2)
        s = torch.bmm(qg, kt, out_dtype=torch.float32) if fp32_scores else torch.bmm(qg, kt).float()
        vals, idx = torch.topk(s * scale, kk, dim=-1)      # [b*hkv, g, kk]
        p = torch.softmax(vals, dim=-1)
        rows = idx.reshape(b * hkv, g * kk, 1).expand(-1, -1, d)
        v_sel = torch.gather(v.reshape(b * hkv, n, d), 1, rows)
        o = torch.bmm(p.reshape(b * hq, 1, kk).to(v.dtype), v_sel.reshape(b * hq, kk, d))
        return o.reshape(b, 1, hq, d)

    return naive


def reference_f64(q, k, v, top_k, scale):
    """Exact top-k decode in float64, one sequence at a time (bounded memory)."""
    b, _, hq, d = q.shape
    hkv, n = k.shape[1], k.shape[2]
    g, kk = hq // hkv, min(top_k, n)
    heads = torch.arange(hkv, device=q.device).view(hkv, 1, 1)
    out = torch.empty(b, 1, hq, d, dtype=torch.float64, device=q.device)
    for i in range(b):
        s = torch.matmul(q[i, 0].double().view(hkv, g, d), k[i].double().transpose(1, 2)) * scale
        vals, idx = torch.topk(s, kk, dim=-1)              # [hkv, g, kk]
        p = torch.softmax(vals, dim=-1)
        v_sel = v[i][heads, idx].double()                  # [hkv, g, kk, d]
        out[i, 0] = torch.matmul(p.unsqueeze(-2), v_sel).view(hq, d)
    return out


def rel_l2(x, ref):
    return ((x.double() - ref).norm() / ref.norm()).item()


# ---- one shape ----------------------------------------------------------------------------

def check_ours(plan, c, shape, top_k):
    """Relative L2 error of ours (output poisoned first) against the fp64 reference."""
    c["out"].fill_(float("nan"))
    run_ours(plan, c)
    torch.cuda.synchronize()
    ref = reference_f64(c["q"], c["k"], c["v"], top_k, 1.0 / math.sqrt(shape.head_dim))
    err = rel_l2(c["out"], ref)
    del ref
    return err


def capture_graphs(plan, copies):
    return [capture_graph(lambda c=c: run_ours(plan, c)) for c in copies]


def graph_matches_eager(plan, graph, c):
    run_ours(plan, c)
    expected = c["out"].clone()
    c["out"].fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    return torch.equal(c["out"], expected)


def plan_for(rt, shape, args):
    return rt.plan_decode(HQ, HKV, shape.head_dim, top_k=args.top_k, dtype=DTYPE,
                          paged=bool(shape.page_size), page_size=shape.page_size,
                          max_batch=shape.batch, max_seq_len=shape.seq_len)


def bench_shape(rt, shape, args, bandwidth, fp32_scores, rt_default=None):
    """One table row (cells), the plan spec, and whether the row passed."""
    copies = make_copies(shape)
    scale = 1.0 / math.sqrt(shape.head_dim)
    floor_us = floor_bytes(shape, args.top_k) / (bandwidth * 1e9) * 1e6
    try:
        plan = plan_for(rt, shape, args)
        err = check_ours(plan, copies[0], shape, args.top_k)
    except topkattn.Error as e:
        print(f"  ours: {e}", file=sys.stderr)
        return [shape.label, "error"] + ["n/a"] * (len(columns(args)) - 3) + [e.name], "", False
    ok = err < TOLERANCE  # False for NaN too
    t = lambda fn: time_calls(fn, args.repeats, args.warmup)  # noqa: E731
    ours = try_time("ours", lambda: t([lambda c=c: run_ours(plan, c) for c in copies]))

    graphs = try_time("graph capture", lambda: capture_graphs(plan, copies))
    graph_note = ""
    ours_graph = None
    if graphs:
        if not try_time("graph check", lambda: graph_matches_eager(plan, graphs[0], copies[0])):
            graph_note, ok = " graph≠eager", False
        ours_graph = try_time("ours-graph", lambda: t([g.replay for g in graphs]))
    graphs = None  # frees the graphs before the baselines run
    default = None
    if rt_default is not None:  # the heuristic default on the same inputs, in the same run
        # Graph replay on both sides: at small shapes the eager Python call costs more than the GPU.
        default_plan = plan_for(rt_default, shape, args)
        default_graphs = try_time("default graph capture", lambda: capture_graphs(default_plan, copies))
        if default_graphs:
            default = try_time("default-graph", lambda: t([g.replay for g in default_graphs]))
        default_graphs = None
        default_plan.close()

    args3 = [(c["q"], c["k"], c["v"]) for c in copies]
    sdpa = try_time("SDPA", lambda: t([lambda a=a: sdpa_decode(*a) for a in args3]))
    sdpa_graph = try_time("SDPA-graph", lambda: time_graphs([lambda a=a: sdpa_decode(*a) for a in args3],
                                                              args.repeats, args.warmup))
    naive_fn = make_naive(args.top_k, scale, fp32_scores)
    naive = try_time("naive", lambda: t([lambda a=a: naive_fn(*a) for a in args3]))
    compiled = None
    if not args.no_compile:
        torch._dynamo.reset()  # a fresh compile per shape, no recompile limits
        compiled_fn = torch.compile(naive_fn, dynamic=False)
        compiled = try_time("compile", lambda: t([lambda a=a: compiled_fn(*a) for a in args3]))
        torch._dynamo.reset()

    spec = f"{plan.spec} (workspace {plan.workspace_size / 2**20:.1f} MiB)"
    plan.close()
    # The floor and SDPA ratios compare graph replays (an engine replays its decode step; eager
    # calls at batch 1 measure the host as much as the GPU), eager times where a capture failed.
    vs_sdpa = fmt_ratio(sdpa_graph, ours_graph) if sdpa_graph and ours_graph else fmt_ratio(sdpa, ours)
    cells = [shape.label, fmt_us(ours), fmt_us(ours_graph), fmt_us(floor_us),
             fmt_ratio(ours_graph or ours, floor_us), fmt_us(sdpa), fmt_us(sdpa_graph), vs_sdpa, fmt_us(naive),
             fmt_us(compiled), fmt_ratio(compiled, ours),
             f"{err:.1e}" + ("" if err < TOLERANCE else " FAIL") + graph_note]
    if rt_default is not None:
        cells[-1:-1] = [fmt_us(default), fmt_ratio(default, ours_graph)]
    return cells, spec, ok


# ---- report -------------------------------------------------------------------------------

def header_lines(args, bandwidth, fp32_scores):
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    scores = "fp32 (bmm out_dtype)" if fp32_scores else "bf16 matmul, then fp32"
    return [
        "# topkattn: exact top-k decode",
        "",
        f"- GPU: {torch.cuda.get_device_name()}",
        f"- date: {now}",
        f"- command: `python3 {shlex.join(sys.argv)}`",
        f"- torch {torch.__version__} (CUDA {torch.version.cuda}), topkattn {topkattn.version()}",
        f"- copy bandwidth: {bandwidth:.0f} GB/s (1 GiB device-to-device copy, read + write, median)",
        f"- Hq={HQ}, Hkv={HKV}, k={args.top_k}, bf16, per-head selection, q_len=1, every sequence "
        "at full length N; inputs random normal, rotated over copies that exceed 4x the L2",
        "- floor = (all K + the selected V rows B·Hq·k·d + q + out) bytes / copy bandwidth; "
        "ours = eager plan.run from Python; ours-graph = CUDA graph replay of it; ours/floor and "
        "SDPA/ours compare graph replays, compile/ours eager calls",
        *([f"- plans configured from the tuning database `{args.tuning_db}`; default = the heuristic "
           "config (no database) on the same inputs in the same run, both under CUDA graph replay"]
          if args.tuning_db else []),
        f"- each time: median of {args.repeats} calls, each bracketed by CUDA events, all enqueued behind a GPU wait "
        "before the first runs (the GPU's time; the host's launch time hidden, as when an engine runs ahead); "
        f"naive scores: {scores}; rel err: relative L2 error of ours against fp64",
        "",
    ]


def report(header, rows, specs, cols=COLUMNS):
    lines = header + [markdown_table(cols, rows), "", "Plans:", ""]
    return "\n".join(lines + [f"- {label}: `{spec}`" for label, spec in specs if spec]) + "\n"


def main():
    args = parse_args()
    torch.manual_seed(0)
    bandwidth = copy_bandwidth_gbs()
    fp32_scores = bmm_fp32_supported()
    header = header_lines(args, bandwidth, fp32_scores)
    print("\n".join(header), flush=True)
    rt = topkattn.Runtime(tuning_db=args.tuning_db) if args.tuning_db else topkattn.Runtime()
    rt_default = topkattn.Runtime(tuning_db="") if args.tuning_db else None
    rows, specs, all_ok = [], [], True
    for shape in args.shapes:
        print(f"[{shape.label}]", file=sys.stderr, flush=True)
        cells, spec, ok = bench_shape(rt, shape, args, bandwidth, fp32_scores, rt_default)
        free_cuda_memory()
        print("  " + " | ".join(cells), file=sys.stderr, flush=True)
        rows.append(cells)
        specs.append((shape.label, spec))
        all_ok &= ok
        if args.out:  # rewritten after every row: a run cut short still leaves its rows
            with open(args.out, "w") as f:
                f.write(report(header, rows, specs, columns(args)))
    print(report([], rows, specs, columns(args)))
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
