#!/usr/bin/env python3
"""Programmatic dependent launch off, on, and on with an early release (TOPKATTN_PDL, the
TKA_PDL_EARLY kernel define): the same plans timed in child processes that differ only in those
variables, alternating, on the same inputs.

    python3 bench/launch_overlap.py [--out bench/results/launch-overlap-h200.md] [--rounds 2]

Cases: exact top-k decode (Hq=32, Hkv=8, d=128, k=2048, bf16) at batch 1 and 8, and the fused
Lightning Indexer decode at batch 1 and 16. Per case and setting: CUDA-graph replay and eager
times (median of --repeats calls, each bracketed by CUDA events, rotating over input copies that
exceed 4x the L2), the host time of one eager call (submission only: 20 calls back to back,
no sync, divided by 20), and whether the output matches the fp64 reference (decode) or the
setting's own eager run (graph).
"""
import stdlib_first  # noqa: F401  (first: the standard library's select, not ./select.py)
import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, HERE)
import topkattn  # noqa: E402
from common import markdown_table, time_calls  # noqa: E402

DECODE_CASES = [(1, 32768), (1, 131072), (8, 32768)]
INDEXER_CASES = [(1, 131072), (16, 131072)]
# name -> environment of the child: off, on (the next kernel launches as this one ends), and on
# with the next kernel released as soon as every CTA of this one has started (TKA_PDL_EARLY).
SETTINGS = {"off": {"TOPKATTN_PDL": "0"}, "on": {"TOPKATTN_PDL": "1"},
            "early": {"TOPKATTN_PDL": "1", "TOPKATTN_KERNEL_DEFINES": "TKA_PDL_EARLY"}}
COLUMNS = ["case", "graph µs, off", "graph µs, on", "graph µs, early", "off/on", "off/early", "eager µs, off",
           "eager µs, on", "eager µs, early", "host µs per call, off", "host µs per call, on", "checks"]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="write the markdown table here")
    p.add_argument("--rounds", type=int, default=2, help="child processes per setting, alternating")
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--child", choices=list(SETTINGS), help=argparse.SUPPRESS)
    return p.parse_args()


def host_us(fn, calls=20):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    t1 = time.perf_counter()
    torch.cuda.synchronize()
    return (t1 - t0) / calls * 1e6


def graph_of(fn):
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, stream=torch.cuda.Stream()):
        fn()
    return g


def decode_case(rt, b, n, repeats):
    import decode  # the decode benchmark's inputs, reference and call
    shape = decode.Shape(batch=b, seq_len=n, head_dim=128, page_size=0)
    copies = decode.make_copies(shape)
    plan = decode.plan_for(rt, shape, argparse.Namespace(top_k=2048))
    err = decode.check_ours(plan, copies[0], shape, 2048)
    graphs = [graph_of(lambda c=c: decode.run_ours(plan, c)) for c in copies]
    graph_ok = decode.graph_matches_eager(plan, graphs[0], copies[0])
    fns = [lambda c=c: decode.run_ours(plan, c) for c in copies]
    r = {"graph": time_calls([g.replay for g in graphs], repeats),
         "eager": time_calls(fns, repeats),
         "host": statistics.median(host_us(fns[0]) for _ in range(5)),
         "ok": bool(err < decode.TOLERANCE and graph_ok), "err": err}
    plan.close()
    return r


def indexer_case(rt, b, n, repeats):
    import indexer
    x = indexer.make_inputs(b, n, True)
    plan = rt.plan_indexer(indexer.HI, max_batch=b, key_dtype="fp8", top_k=2048, max_seq_len=n,
                           attention=dict(num_q_heads=indexer.HQ, num_kv_heads=indexer.HKV, head_dim=indexer.D))
    out = torch.empty(b, 1, indexer.HQ, indexer.D, device="cuda", dtype=torch.bfloat16)
    sel = torch.empty(b, 1, 2048, dtype=torch.int32, device="cuda")

    def run():
        plan.decode(x["q"], x["k"], x["v"], x["lens"], out, x["iq"], x["iw"], x["ik"],
                    index_scale=x["iscale"], indices=sel)

    run()
    torch.cuda.synchronize()
    ref = indexer.attention_over(x, sel[:, 0])
    err = ((out.float() - ref).norm() / ref.norm()).item()
    expected = out.clone()
    g = graph_of(run)
    out.fill_(float("nan"))
    g.replay()
    torch.cuda.synchronize()
    graph_ok = torch.equal(out, expected)
    r = {"graph": time_calls([g.replay], repeats), "eager": time_calls([run], repeats),
         "host": statistics.median(host_us(run) for _ in range(5)), "ok": bool(err < 1e-2 and graph_ok), "err": err}
    plan.close()
    return r


def child(args):
    torch.manual_seed(0)
    rt = topkattn.Runtime()
    results = {}
    for b, n in DECODE_CASES:
        results[f"decode B={b} N={n // 1024}K"] = decode_case(rt, b, n, args.repeats)
        torch.cuda.empty_cache()
    for b, n in INDEXER_CASES:
        results[f"indexer decode B={b} N={n // 1024}K"] = indexer_case(rt, b, n, args.repeats)
        torch.cuda.empty_cache()
    print(json.dumps(results))


def run_child(setting, args):
    env = dict(os.environ, **SETTINGS[setting])
    cmd = [sys.executable, os.path.abspath(__file__), "--child", setting, "--repeats", str(args.repeats)]
    done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, check=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    args = parse_args()
    if args.child is not None:
        return child(args)
    runs = {s: [] for s in SETTINGS}
    for _ in range(args.rounds):
        for setting in SETTINGS:
            runs[setting].append(run_child(setting, args))
    med = lambda s, case, key: statistics.median(r[case][key] for r in runs[s])  # noqa: E731
    rows = []
    for case in runs["off"][0]:
        graph = {s: med(s, case, "graph") for s in SETTINGS}
        eager = {s: med(s, case, "eager") for s in SETTINGS}
        ok = all(r[case]["ok"] for s in runs for r in runs[s])
        errs = max(r[case]["err"] for s in runs for r in runs[s])
        rows.append([case] + [f"{graph[s]:.1f}" for s in SETTINGS] +
                    [f"{graph['off'] / graph['on']:.2f}x", f"{graph['off'] / graph['early']:.2f}x"] +
                    [f"{eager[s]:.1f}" for s in SETTINGS] +
                    [f"{med('off', case, 'host'):.1f}", f"{med('on', case, 'host'):.1f}",
                     f"{'ok' if ok else 'FAIL'} (rel err <= {errs:.1e})"])
    props = torch.cuda.get_device_properties(0)
    text = "\n".join([
        "# topkattn: programmatic dependent launch off, on, and on with an early release",
        "",
        f"- GPU: {props.name}",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}",
        f"- command: `{' '.join(shlex.quote(a) for a in ['python3'] + sys.argv)}`",
        "- off: TOPKATTN_PDL=0; on: the default (each kernel may launch while the previous one ends, "
        "and waits for it in begin_grid()); early: TOPKATTN_KERNEL_DEFINES=TKA_PDL_EARLY, every CTA "
        "releases the next kernel as it starts",
        "- host µs per call: 20 eager calls back to back without a sync, divided by 20 (Python binding "
        "included); noisy",
        f"- torch {torch.__version__}, topkattn {topkattn.version()}; {args.rounds} child processes per "
        "setting, alternating; each cell the median over them of a median of "
        f"{args.repeats} calls",
        "- decode: Hq=32, Hkv=8, d=128, k=2048, bf16, contiguous; indexer: H_I=64, FP8 keys, k=2048, "
        "attention Hq=32, Hkv=8, d=128",
        "",
        markdown_table(COLUMNS, rows), ""])
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0 if all(r[-1].startswith("ok") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
