#!/usr/bin/env python3
"""Top-k selection: topkattn against torch.topk and the read-once floor, in one run.

    python3 bench/select.py [--out bench/results/select-h100.md] [--shapes 32x128K 2048x128K ...]

A shape is RxN: R rows of N float32 values (K/M suffixes). k = 2048 unless --top-k. Inputs are
random normal, rotated over copies that together exceed 4x the L2. Before timing, our output is
checked against torch.topk on the same input (values must match exactly; indices where the
values are distinct).
"""
import stdlib_first  # noqa: F401  (first: the standard library's select, not ./select.py)
import argparse
import datetime
import shlex
import sys
import os

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, HERE)
import topkattn  # noqa: E402
from common import (copy_bandwidth_gbs, count_label, fmt_ratio, fmt_us, free_cuda_memory,  # noqa: E402
                    markdown_table, parse_count, time_calls, try_time)

DEFAULT_SHAPES = ["1x128K", "32x128K", "256x128K", "2048x128K", "32x32K", "1024x8K"]
COLUMNS = ["rows x N", "ours µs", "ours-graph µs", "unsorted µs", "floor µs", "ours/floor",
           "topk µs", "topk/ours", "topk unsorted µs", "GB/s (ours)", "host µs a call (ours)"]


def parse_shape(text):
    rows, n = text.lower().split("x")
    return int(rows), parse_count(n)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", nargs="+", type=parse_shape, default=[parse_shape(s) for s in DEFAULT_SHAPES])
    p.add_argument("--top-k", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--out", help="also write the table (markdown, with header lines) here")
    return p.parse_args()


def label(rows, n):
    return f"{rows} x {count_label(n)}"


def check(rt, x, k):
    values, indices = rt.topk(x, k)
    tv, ti = torch.topk(x, k)
    if not torch.equal(values, tv):
        return False
    distinct = tv[:, 1:] != tv[:, :-1]
    same = indices.long()[:, 1:] == ti[:, 1:]
    return bool((same | ~distinct).all())


def bench_shape(rt, rows, n, args, bandwidth):
    k = args.top_k
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    copies = max(1, min(16, -(-4 * l2 // (rows * n * 4))))
    xs = [torch.randn(rows, n, device="cuda") for _ in range(copies)]
    ok = check(rt, xs[0], k)
    plan = rt.plan_select(k, max_rows=rows, max_n=n)
    plan_unsorted = rt.plan_select(k, max_rows=rows, max_n=n, sorted=False)
    values = torch.empty(rows, k, device="cuda")
    indices = torch.empty(rows, k, dtype=torch.int32, device="cuda")
    ours, host = time_calls([lambda x=x: plan.run(x, values, indices) for x in xs], repeats=args.repeats, host=True)
    unsorted = time_calls([lambda x=x: plan_unsorted.run(x, values, indices) for x in xs], repeats=args.repeats)

    def graph_time():
        graphs = []
        stream = torch.cuda.Stream()
        with torch.cuda.stream(stream):
            plan.run(xs[0], values, indices)  # the workspace exists before capture
        torch.cuda.synchronize()
        for x in xs:
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g, stream=stream):
                plan.run(x, values, indices)
            graphs.append(g)
        return time_calls([g.replay for g in graphs], repeats=args.repeats)

    graph = try_time("graph", graph_time)
    topk = try_time("torch.topk", lambda: time_calls([lambda x=x: torch.topk(x, k) for x in xs], repeats=args.repeats))
    topk_unsorted = try_time("torch.topk unsorted", lambda: time_calls(
        [lambda x=x: torch.topk(x, k, sorted=False) for x in xs], repeats=args.repeats))
    floor = (rows * n * 4 + rows * k * 8) / (bandwidth * 1e9) * 1e6
    gbs = rows * n * 4 / (ours * 1e-6) / 1e9
    cells = [label(rows, n), fmt_us(ours), fmt_us(graph), fmt_us(unsorted), fmt_us(floor), fmt_ratio(ours, floor),
             fmt_us(topk), fmt_ratio(topk, ours), fmt_us(topk_unsorted), f"{gbs:.0f}", fmt_us(host)]
    return cells, plan.spec, ok


def main():
    args = parse_args()
    torch.manual_seed(0)
    bandwidth = copy_bandwidth_gbs()
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    header = [
        "# topkattn: top-k selection",
        "",
        f"- GPU: {torch.cuda.get_device_name()}",
        f"- date: {now}",
        f"- command: `python3 {shlex.join(sys.argv)}`",
        f"- torch {torch.__version__} (CUDA {torch.version.cuda}), topkattn {topkattn.version()}",
        f"- copy bandwidth: {bandwidth:.0f} GB/s (1 GiB device-to-device copy, read + write, median)",
        f"- k={args.top_k}, float32 rows, random normal, rotated over copies that exceed 4x the L2; "
        "ours = sorted output (like torch.topk), unsorted = the same selection without the sort",
        "- floor = (input read once + values and indices written) / copy bandwidth; GB/s = input "
        "bytes over our time; host µs a call: plan.run's time on the host (Python, checks, launch)",
        f"- each time: median of {args.repeats} calls, each bracketed by CUDA events, all enqueued behind a GPU wait "
        "before the first runs (the GPU's time; the host's launch time hidden, as when an engine runs ahead)",
        "",
    ]
    print("\n".join(header), flush=True)
    rt = topkattn.Runtime()
    rows_out, specs, all_ok = [], [], True
    for rows, n in args.shapes:
        print(f"[{label(rows, n)}]", file=sys.stderr, flush=True)
        cells, spec, ok = bench_shape(rt, rows, n, args, bandwidth)
        free_cuda_memory()
        if not ok:
            cells[0] += " (MISMATCH)"
        all_ok &= ok
        print("  " + " | ".join(cells), file=sys.stderr, flush=True)
        rows_out.append(cells)
        specs.append(spec)
        text = "\n".join(header + [markdown_table(COLUMNS, rows_out), "", f"Plan: `{specs[0]}`", ""])
        if args.out:
            with open(args.out, "w") as f:
                f.write(text)
    print(markdown_table(COLUMNS, rows_out))
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
