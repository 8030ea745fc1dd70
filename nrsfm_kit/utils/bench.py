"""Measurement helpers shared by ``benchmarks/`` (and usable in notebooks): median times, peak memory.

Benchmarks report ratios of medians measured side by side in one run and peak memory (see
``benchmarks/RESULTS.md``); these helpers are the one implementation of those measurements.
"""

from __future__ import annotations

import resource
import statistics
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path


def _check_reps(reps: int, warmup: int) -> None:
    if int(reps) < 1:
        raise ValueError(f"reps: expected >= 1, found {reps}")
    if int(warmup) < 0:
        raise ValueError(f"warmup: expected >= 0, found {warmup}")


def timings(fn: Callable[[], object], reps: int, warmup: int = 1, sync: Callable[[], object] | None = None) -> dict:
    """Run ``fn`` ``warmup`` times untimed, then ``reps`` times timed.

    ``sync`` (e.g. ``torch.cuda.synchronize``) is called after each call, inside the timed region, so that
    asynchronous device work is counted. Returns ``{"wall": median wall s, "cpu": median process-CPU s,
    "times": [wall s of each rep]}``. CPU time is reported because shared machines inflate wall time.
    """
    _check_reps(reps, warmup)
    for _ in range(int(warmup)):
        fn()
        if sync is not None:
            sync()
    walls, cpus = [], []
    for _ in range(int(reps)):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        if sync is not None:
            sync()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return {"wall": statistics.median(walls), "cpu": statistics.median(cpus), "times": walls}


def median_time(fn: Callable[[], object], reps: int, warmup: int = 1, sync: Callable[[], object] | None = None) -> float:
    """Median wall-clock seconds of ``reps`` calls after ``warmup`` untimed ones (see :func:`timings`)."""
    return timings(fn, reps, warmup, sync)["wall"]


def peak_rss_mib() -> float:
    """This process's peak resident set size in MiB.

    VmHWM from /proc (per address space, so not inherited through fork/exec as ``ru_maxrss`` can be), else
    ``ru_maxrss`` (KiB on Linux).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024
    except (OSError, IndexError, ValueError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def traced_peak_mib(fn: Callable[[], object]) -> float:
    """Peak Python-heap allocation (MiB, tracemalloc: Python objects, numpy and scipy buffers; NOT torch's
    CPU allocator) during one call of ``fn``."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return max(0.0, (peak - base) / 2**20)
