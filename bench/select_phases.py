#!/usr/bin/env python3
"""Where one row's time goes in select_rows: per-phase clocks of its CTAs.

    python3 bench/select_phases.py [--shapes 32x128K 256x128K 2048x128K] [--top-k 2048] [--out FILE]

Each shape runs in a child process whose kernels are compiled with TKA_PHASE_CLOCKS added to
TOPKATTN_KERNEL_DEFINES (templates/common/phase_clock.cuh): thread 0 of a CTA stamps the SM clock at the
end of each phase and prints the ticks (every CTA of grids up to 512, else every 16th), its SM
and its start time, from which the table also says how many CTAs ran at once on one SM and how
long after the first CTA the last one started (a second wave shows there). The second of two runs is read (the first one compiles and
warms up). Ticks become µs through each CTA's own globaltimer span, so the SM clock need not be
known. The clocks cost a few instructions per phase; the rows still run with everything else that
shares their SM, so a phase's time includes waiting for it.

Phases of the one-read (sampled) path, radix_select_sampled.cuh; rows that are not on it (short
rows) show their selection under the phase that follows it. A row whose estimate missed shows its
second sample and pass as "retry" and everything after them (and a two-pass select, when the
retry missed too) as "after retry".

Configs ending in "o" (t512s4o) run the cooperative grid instead (radix_select_coop.cuh): each CTA
a chunk of a row, its phases COOP_PHASES, every CTA of the grid a line; they get a table of their
own. The sort of a sorted plan is a kernel after the grid there: use --unsorted.
"""
import stdlib_first  # noqa: F401  (first: the standard library's select, not ./select.py)
import argparse
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PHASES = ["sample", "sample threshold", "candidates pass", "pack lists", "exact threshold", "tie cut-off",
          "emit", "sort", "write + pad", "retry", "after retry"]
# Marks of select_rows_coop (radix_select_coop.cuh): 1-6 and 8; "-" slots are never marked.
COOP_PHASES = ["zero + load chunk", "level 0", "level 1", "level 2", "counts + barrier", "emit", "-",
               "pad", "-", "-", "-"]
LINE = re.compile(r"^tka-phase cta=(\d+) sm=(\d+) start=(\d+) ns=(\d+) ticks=([-\d,]+)$")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", nargs="+", default=["32x128K", "256x128K", "2048x128K"])
    p.add_argument("--top-k", type=int, default=2048)
    p.add_argument("--unsorted", action="store_true", help="the unsorted plan (no sort phase)")
    p.add_argument("--sample-shift", type=float, default=0.0,
                   help="add this to the values where the one-read path samples (its blocks of 128): "
                        "+0.3 makes the first threshold let too few keys through, -0.3 too many (retries)")
    p.add_argument("--configs", nargs="+", default=[(512, 4, 0, 0)], type=parse_config,
                   help="launch configs to compare, as tTHREADSsSTAGES[cCLUSTER][o] (e.g. t512s4 t512s8 t512s4c8 "
                        "t512s4o): one CTA per row, or with cCLUSTER at most that many CTAs per row in a cluster "
                        "(sm_90; the CTAs of a row then count as rows here), or with o the cooperative grid (its "
                        "CTAs count too); never the split path (no clocks there); given to the plans through a "
                        "tuning database; default: t512s4")
    p.add_argument("--out", help="also write the table (markdown) here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p.parse_args()


def parse_config(text):
    m = re.fullmatch(r"t(\d+)s(\d+)(?:c(\d+))?(o?)", text)
    if not m:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected tTHREADSsSTAGES[cCLUSTER][o], e.g. t512s4, t512s4c8 or t512s4o")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0), int(m.group(4) == "o")


def bucket(x):
    return 1 << max(0, (x - 1).bit_length())


def write_db(path, config, shapes, k):
    """A tuning database that gives `config` to every shape (select, fp32, this GPU)."""
    import json
    import torch
    sys.path.insert(0, os.path.join(HERE, "..", "python"))
    import topkattn
    from common import parse_count
    props = torch.cuda.get_device_properties(0)
    threads, stages, cluster, coop = config
    entries = []
    for shape in shapes:
        rows, n = (parse_count(x) for x in shape.lower().split("x"))
        entries.append({
            "batch_bucket": bucket(rows), "seq_bucket": bucket(n), "top_k": k, "dtype": "fp32", "op": "select",
            "group": 0, "head_dim": 0, "page_size": 0, "q_len": 0, "select": "head",
            # The cooperative grid's buffers are part of the split path's workspace.
            "config": {"threads": threads, "capacity": 4096, "stages": stages, "split": coop, "cluster": cluster,
                       "coop": coop},
            "time_us": 1.0, "default_time_us": 1.0, "version": topkattn.version(),
            "device": {"name": props.name, "sm": props.major * 10 + props.minor, "sm_count": props.multi_processor_count},
        })
    with open(path, "w") as f:
        json.dump({"format": 2, "entries": entries}, f)


def sample_columns(n):
    """Columns of the one-read path's sample: blocks of 128 (64 of them from n = 64K, else 32) at
    b * (n - 128) / (blocks - 1), rounded down to a multiple of 4."""
    blocks = 64 if n >= 65536 else 32
    cols = []
    for b in range(blocks):
        start = (b * (n - 128) // (blocks - 1)) & ~3
        cols.extend(range(start, start + 128))
    return sorted(set(cols))


def child(shape, k, sort, shift):
    """Runs one plan twice; prints a marker between the runs (kernel printf goes to stdout)."""
    import torch
    sys.path.insert(0, os.path.join(HERE, "..", "python"))
    sys.path.insert(0, HERE)
    import topkattn
    from common import parse_count
    rows, n = (parse_count(x) for x in shape.lower().split("x"))
    torch.manual_seed(0)
    x = torch.randn(rows, n, device="cuda")
    if shift:
        x[:, torch.tensor(sample_columns(n), device="cuda")] += shift
    rt = topkattn.Runtime()
    plan = rt.plan_select(k, max_rows=rows, max_n=n, sorted=sort)
    values = torch.empty(rows, k, device="cuda")
    indices = torch.empty(rows, k, dtype=torch.int32, device="cuda")
    plan.run(x, values, indices)
    torch.cuda.synchronize()
    print(f"== measured run: {plan.spec}", flush=True)
    plan.run(x, values, indices)
    torch.cuda.synchronize()
    print("== done", flush=True)
    return 0


def measure(shape, k, sort, shift, db=None, names=PHASES):
    # With the caller's macros, if any (a macro-gated change's phases).
    defines = [d for d in os.environ.get("TOPKATTN_KERNEL_DEFINES", "").split(",") if d]
    env = dict(os.environ, TOPKATTN_KERNEL_DEFINES=",".join(defines + ["TKA_PHASE_CLOCKS"]))
    if db:
        env["TOPKATTN_TUNING_DB"] = db
    cmd = [sys.executable, os.path.abspath(__file__), "--child", shape, "--top-k", str(k), "--sample-shift", str(shift)]
    if not sort:
        cmd.append("--unsorted")
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{shape}: child exited {r.returncode}: {r.stderr[-2000:]}")
    text = r.stdout.split("== measured run: ", 1)[1]
    spec = text.splitlines()[0]
    for line in r.stderr.splitlines():  # the library's warnings (a tuning database it skipped...)
        if "warn" in line.lower():
            print(f"  {shape}: {line}", file=sys.stderr)
    ctas = []  # (sm, start ns, span ns, ticks)
    for line in text.splitlines():
        m = LINE.match(line.strip())
        if m:
            ctas.append((int(m.group(2)), int(m.group(3)), int(m.group(4)), [int(t) for t in m.group(5).split(",")]))
    if not ctas:
        raise RuntimeError(f"{shape}: no phase lines (a split plan? {spec})")
    us = []  # per CTA: µs of each phase, and the total
    for _, _, ns, ticks in ctas:
        total = sum(ticks)
        scale = ns / 1e3 / total if total > 0 else 0.0
        us.append(([t * scale for t in ticks], ns / 1e3))
    phases = [statistics.median(u[0][i] for u in us) for i in range(len(names))]
    total = statistics.median(u[1] for u in us)
    # The most CTAs seen running at once on one SM, and the last start after the first.
    events = {}
    for sm, start, ns, _ in ctas:
        events.setdefault(sm, []).extend([(start, 1), (start + ns, -1)])
    at_once = 0
    for ev in events.values():
        running = 0
        for _, d in sorted(ev, key=lambda e: (e[0], e[1])):
            running += d
            at_once = max(at_once, running)
    starts = [c[1] for c in ctas]
    extra = {
        "per SM at once": str(at_once),
        "last start µs": f"{(max(starts) - min(starts)) / 1e3:.1f}",
        "slowest row µs": f"{max(u[1] for u in us):.1f}",
        "first start to last end µs": f"{(max(c[1] + c[2] for c in ctas) - min(starts)) / 1e3:.1f}",
    }
    if "retry" in names:
        extra["retried rows"] = str(sum(1 for _, _, _, t in ctas if t[names.index("retry")] > 0))
    return spec, len(ctas), phases, total, extra


def main():
    args = parse_args()
    if args.child:
        return child(args.child, args.top_k, not args.unsorted, args.sample_shift)
    tables = {}  # phase names -> (header, rows): one table per kind of path
    specs = set()
    for config in args.configs:
        db = f"/tmp/select-phases-t{config[0]}s{config[1]}c{config[2]}o{config[3]}.json"
        write_db(db, config, args.shapes, args.top_k)
        names = COOP_PHASES if config[3] else PHASES
        for shape in args.shapes:
            spec, count, phases, total, extra = measure(shape, args.top_k, not args.unsorted, args.sample_shift, db,
                                                        names)
            specs.add(spec)
            name = f"{shape} t{config[0]} st{config[1]}" + (f" cluster {config[2]}" if config[2] else "")
            name += " cooperative" if config[3] else ""
            header = ["shape", "CTAs read"] + names + ["CTA total" if config[3] else "row total"] + list(extra)
            rows = tables.setdefault(tuple(names), (header, []))[1]
            rows.append([name, str(count)] + [f"{p:.1f}" for p in phases] + [f"{total:.1f}"] + list(extra.values()))
            print("  " + " | ".join(rows[-1]), file=sys.stderr, flush=True)
    sys.path.insert(0, HERE)
    from common import markdown_table
    lines = [f"Per-phase medians in µs over the CTAs read, k={args.top_k}, "
             f"{'unsorted' if args.unsorted else 'sorted'}, sample shift {args.sample_shift}; "
             f"plans: {', '.join(sorted(specs))}"]
    for header, rows in tables.values():
        lines += ["", markdown_table(header, rows)]
    print("\n".join(lines))
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
