"""Shared benchmark helpers: timing with CUDA events, the copy-bandwidth ceiling, tables."""
import statistics
import sys

import torch


def copy_bandwidth_gbs(nbytes=1 << 30, repeats=10):
    """Device-to-device copy bandwidth in GB/s, counting bytes read plus bytes written."""
    buffers = [torch.empty(nbytes, dtype=torch.uint8, device="cuda").fill_(1) for _ in range(2)]
    times_us = time_calls([lambda: buffers[1].copy_(buffers[0])], repeats=repeats, warmup=3, raw=True)
    buffers.clear()
    torch.cuda.empty_cache()
    return 2 * nbytes / (statistics.median(times_us) * 1e-6) / 1e9


def time_calls(fns, repeats=30, warmup=5, raw=False):
    """Median time in µs of one call, each call bracketed by CUDA events on the current stream.

    Calls rotate over `fns` (one per input copy) so that no call finds the previous call's
    inputs in L2.
    """
    for i in range(warmup):
        fns[i % len(fns)]()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    for i in range(repeats):
        starts[i].record()
        fns[i % len(fns)]()
        ends[i].record()
    torch.cuda.synchronize()
    times = [s.elapsed_time(e) * 1e3 for s, e in zip(starts, ends)]
    return times if raw else statistics.median(times)


def capture_graph(fn):
    """fn captured in a CUDA graph, after one call on a side stream (lazy setup stays out of it)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph


def time_graphs(fns, repeats=30, warmup=5):
    """time_calls over CUDA graph replays of `fns`: the GPU's time without the host's launches,
    as an engine that replays its decode step sees it."""
    graphs = [capture_graph(fn) for fn in fns]
    return time_calls([g.replay for g in graphs], repeats, warmup)


def try_time(what, fn):
    """fn() or None, printing why it failed (a failed baseline must not stop the run)."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - any failure becomes "n/a" in the table
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"  {what}: n/a ({type(e).__name__}: {first[:200]})", file=sys.stderr)
        return None


def fmt_us(t):
    return "n/a" if t is None else f"{t:.1f}"


def fmt_ratio(a, b):
    return "n/a" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def free_cuda_memory():
    import gc
    gc.collect()
    torch.cuda.empty_cache()


def parse_count(text):
    """"32K" -> 32768, "1M" -> 1048576, "300" -> 300 (shape arguments of the benchmarks)."""
    scale = {"k": 1 << 10, "m": 1 << 20}.get(text[-1].lower(), 1)
    return int(text[:-1] if scale > 1 else text) * scale


def count_label(n):
    """32768 -> "32K", 300 -> "300"."""
    return f"{n >> 10}K" if n % 1024 == 0 else str(n)


def to_paged(x, page_size, perm):
    """[B, Hkv, N, d] -> [B*N/page_size, page_size, Hkv, d]; logical page L lands at perm[L]."""
    b, h, n, d = x.shape
    pages = x.view(b, h, n // page_size, page_size, d).permute(0, 2, 3, 1, 4).reshape(-1, page_size, h, d)
    paged = torch.empty_like(pages)
    paged[perm] = pages
    return paged
