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


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask), else the machine's count."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def rss_mib() -> float:
    """Current resident set size (MiB, VmRSS); the peak (:func:`peak_rss_mib`) when /proc is unavailable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return float(line.split()[1]) / 1024
    except (OSError, IndexError, ValueError):
        pass
    return peak_rss_mib()


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux ``clear_refs`` 5), so that :func:`peak_rss_mib`
    measures what comes after; False where not possible (the peak then may include earlier work)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def machine_info(threads: int) -> dict:
    """What a benchmark row was measured on: CPU model, architecture, CPUs available, torch threads, torch / Warp /
    Python versions, the GPU (None without CUDA) and the 1-minute load average."""
    import contextlib
    import os
    import platform

    import torch

    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        import warp as wp

        warp_version = wp.config.version
    except Exception:
        warp_version = None
    return {"cpu": model, "arch": platform.machine(), "cpus_available": available_cpus(),
            "torch_threads": threads, "torch": torch.__version__, "warp": warp_version,
            "python": platform.python_version(), "gpu": torch.cuda.get_device_name() if torch.cuda.is_available()
            else None, "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


def _spawned_measure(script: str, spec: dict, queue) -> None:
    import importlib.util
    import sys

    try:
        name = f"_bench_{Path(script).stem}"
        mod_spec = importlib.util.spec_from_file_location(name, script)
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[name] = module  # dataclasses look their module up there
        mod_spec.loader.exec_module(module)
        queue.put(module.measure(spec))
    except Exception as exc:  # reported in the row, the run goes on
        queue.put(dict(spec, error=f"{type(exc).__name__}: {exc}"))


def run_spawned(script: str, spec: dict) -> dict:
    """``measure(spec)`` of the benchmark file ``script`` in a fresh spawned process, so that the row's peak
    memory is its own; an exception or a dead worker gives the row an ``error`` entry instead."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_spawned_measure, args=(str(script), spec, q))
    p.start()
    row = None
    while p.is_alive() or not q.empty():
        try:
            row = q.get(timeout=1.0)
            break
        except Exception:
            continue
    p.join()
    return row if row is not None else dict(spec, error=f"worker exit code {p.exitcode}")


def run_in_process(measure: Callable[[dict], dict], spec: dict) -> dict:
    """``measure(spec)`` in this process; an exception gives the row an ``error`` entry instead."""
    try:
        return measure(spec)
    except Exception as exc:
        return dict(spec, error=f"{type(exc).__name__}: {exc}")


def device_sync(device: str) -> Callable[[], object] | None:
    """``torch.cuda.synchronize`` for ``"cuda"`` (timings must wait for the GPU), None on the CPU."""
    if device == "cuda":
        import torch

        return torch.cuda.synchronize
    return None


def measure_row(spec: dict, build: Callable[[dict], tuple[Callable[[], object], Callable[[dict], dict]]], *,
                warmup: int = 1) -> dict:
    """One benchmark row: ``build(spec) -> (once, extra)``, ``once`` timed (:func:`timings`, ``spec["reps"]``
    repetitions after ``warmup``) with the peak memory of the row.

    ``spec`` needs ``threads``, ``device`` (``"cpu"`` / ``"cuda"``) and ``reps``; imports and runtime set-up the
    row should not be charged for happen before the call. Peak memory: on CUDA ``torch.cuda.max_memory_allocated``
    after a reset (torch's allocator only), on the CPU the growth of the peak RSS over the RSS before the row (the
    peak is reset through ``/proc/self/clear_refs`` first where the kernel allows; 0 when pages freed after the
    reset bring the new high-water mark below that base). Returns ``spec`` plus ``median_ms``, ``cpu_ms``,
    ``times_ms``, ``peak_mib``, ``peak_rss_mib``, ``peak_kind``, ``peak_reset`` and ``extra(timings)``.
    """
    import gc

    import torch

    torch.set_num_threads(int(spec["threads"]))
    torch.manual_seed(0)
    cuda = spec["device"] == "cuda"
    gc.collect()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    base = rss_mib()
    reset = reset_peak_rss()
    once, extra = build(spec)
    t = timings(once, int(spec["reps"]), warmup=warmup, sync=device_sync(spec["device"]))
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else max(peak_rss_mib() - base, 0.0)
    row = dict(spec, median_ms=t["wall"] * 1e3, cpu_ms=t["cpu"] * 1e3, times_ms=[x * 1e3 for x in t["times"]],
               peak_mib=peak, peak_rss_mib=peak_rss_mib(),
               peak_kind="cuda max_memory_allocated" if cuda else "peak RSS above the post-import RSS",
               peak_reset=reset)
    row.update(extra(t))
    return row
