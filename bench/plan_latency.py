#!/usr/bin/env python3
"""Plan creation after `topkattn prewarm`: every plan of a model preset, in a fresh process.

    build/topkattn prewarm --model llama-3.1-8b --arch sm_90 --cache-dir DIR [--db FILE]
    python3 bench/plan_latency.py --model llama-3.1-8b --cache-dir DIR [--db FILE] [--out FILE]

For each descriptor of the preset (per-head and per-group selection; contiguous KV and pages of
16 and 64) it times the first tka_plan_create in this process (kernels read from the disk cache)
and then repeated creations (kernels already loaded), and reads the library's counters: after a
prewarm, nothing may be compiled.
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

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
import topkattn  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="llama-3.1-8b")
    p.add_argument("--cache-dir", required=True)
    p.add_argument("--db", default="", help="tuning database the plans read")
    p.add_argument("--cli", default="build/topkattn")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=32768)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--out")
    args = p.parse_args()
    presets = json.loads(subprocess.check_output([args.cli, "models", "--json"]))
    m = next(x for x in presets if x["name"] == args.model)
    rt = topkattn.Runtime(cache_dir=args.cache_dir, tuning_db=args.db)
    before = topkattn.counters()
    rows, firsts, all_ms = [], [], []
    for select in ("head", "group"):
        for page in (0, 16, 64):
            kw = dict(top_k=m["top_k"], select=select, paged=page > 0, page_size=page,
                      max_batch=args.batch, max_seq_len=args.seq_len)
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                plan = rt.plan_decode(m["num_q_heads"], m["num_kv_heads"], m["head_dim"], **kw)
                times.append((time.perf_counter() - t0) * 1e3)
                plan.close()
            firsts.append(times[0])
            all_ms += times
            rows.append(f"| {select} | {page or 'contiguous'} | {times[0]:.2f} | {statistics.median(times[1:]):.3f} |")
    after = topkattn.counters()
    delta = {k: after[k] - before[k] for k in ("nvrtc_compiles", "disk_hits", "memory_hits", "tuned_plans", "default_plans")}
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    import torch  # only for the device name
    lines = [f"# topkattn: plan creation after prewarm ({args.model})", "",
             f"- GPU: {torch.cuda.get_device_name()}", f"- date: {now}",
             f"- command: `python3 {shlex.join(sys.argv)}`",
             f"- B={args.batch}, N={args.seq_len}, {args.repeats} creations per descriptor; "
             "first = first creation in this process (disk cache), then median of the rest", "",
             "| selection | KV pages | first ms | repeat ms |", "| --- | --- | --- | --- |"] + rows + [
             "", f"- median first creation: {statistics.median(firsts):.2f} ms (max {max(firsts):.2f} ms); "
             f"median of all creations: {statistics.median(all_ms):.3f} ms",
             f"- counters over the run: {json.dumps(delta)}"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0 if delta["nvrtc_compiles"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
