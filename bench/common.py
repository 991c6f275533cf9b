"""Shared benchmark helpers: timing with CUDA events, the copy-bandwidth ceiling, tables."""
import functools
import statistics
import sys
import time

import torch


def copy_bandwidth_gbs(nbytes=1 << 30, repeats=10):
    """Device-to-device copy bandwidth in GB/s, counting bytes read plus bytes written."""
    buffers = [torch.empty(nbytes, dtype=torch.uint8, device="cuda").fill_(1) for _ in range(2)]
    times_us = time_calls([lambda: buffers[1].copy_(buffers[0])], repeats=repeats, warmup=3, raw=True)
    buffers.clear()
    torch.cuda.empty_cache()
    return 2 * nbytes / (statistics.median(times_us) * 1e-6) / 1e9


@functools.cache
def _sleep_us_per_cycle():
    """torch.cuda._sleep's µs per cycle on this GPU, measured once."""
    cycles = 1 << 20
    torch.cuda._sleep(cycles)  # the first call loads the kernel
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    torch.cuda._sleep(cycles)
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1e3 / cycles


def gpu_wait(us):
    """Keeps the current stream busy for about `us` µs (torch.cuda._sleep, a spin on the SM clock)."""
    torch.cuda._sleep(max(1, int(us / _sleep_us_per_cycle())))


def time_calls(fns, repeats=30, warmup=5, raw=False, host=False):
    """Median time in µs of one call, each call bracketed by CUDA events on the current stream.

    Calls rotate over `fns` (one per input copy) so that no call finds the previous call's
    inputs in L2. Every timed call is enqueued behind a GPU wait before the first one starts, so
    the times are the GPU's: a call whose host side (Python, launches) takes longer than its
    kernels would otherwise be timed from its start event to its last kernel's end, host time
    included, and vary with the host's speed (bench/NOTES.md, 2026-12-07). The wait grows until
    it outlasts the host's enqueueing. host=True: also the host's µs per call, (time, host_us).
    """
    for i in range(warmup):
        fns[i % len(fns)]()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    waited = torch.cuda.Event()
    wait_us = 2000.0
    for _ in range(4):
        gpu_wait(wait_us)
        waited.record()
        t0 = time.perf_counter()
        for i in range(repeats):
            starts[i].record()
            fns[i % len(fns)]()
            ends[i].record()
        host_us = (time.perf_counter() - t0) * 1e6 / repeats
        ahead = not waited.query()  # the GPU still waits: every call was enqueued before it ran
        torch.cuda.synchronize()
        if ahead:
            break
        wait_us = 2 * max(wait_us, host_us * repeats)
    else:  # a full launch queue blocks the host until the GPU drains it: busy anyway
        print(f"  time_calls: the host did not get ahead of the GPU ({host_us:.1f} µs a call)", file=sys.stderr)
    times = [s.elapsed_time(e) * 1e3 for s, e in zip(starts, ends)]
    result = times if raw else statistics.median(times)
    return (result, host_us) if host else result


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
