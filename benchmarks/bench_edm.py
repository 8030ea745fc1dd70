"""Benchmark: the ARAP EDM loss, forward + backward with 100k sampled pairs, Warp vs the torch reference.

Run: ``.venv/bin/python benchmarks/bench_edm.py`` (prints a markdown table). Both implementations run on
the same inputs in one process; median wall time over repetitions, ratio of medians, peak memory
(CPU: growth of the peak resident set size, resource.getrusage, of one forward+backward in a forked
child, since torch's CPU allocations are invisible to tracemalloc; CUDA: torch.cuda.max_memory_allocated).
"""

from __future__ import annotations

import platform
import resource
import statistics
import sys
import time

import torch

from nrsfm_kit.kernels.edm_loss import edm_pair_loss, edm_pair_loss_reference


def _inputs(n: int, S: int, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    xk = torch.randn(n, 3, generator=g).to(device).requires_grad_()
    xl = (xk.detach() + 0.1 * torch.randn(n, 3, generator=g).to(device)).requires_grad_()
    m = torch.rand(n, 3, generator=g).to(device).requires_grad_()
    i = torch.randint(0, n, (S,), generator=g).to(device)
    j = torch.randint(0, n, (S,), generator=g).to(device)
    return xk, xl, m, i, j


def _peak_cpu_mib(fn, n: int, S: int) -> float:
    """Peak RSS growth (MiB) of one forward+backward, measured in a forked child (clean high-water mark)."""
    import multiprocessing as mp

    def child(q):
        args = _inputs(n, S, "cpu")
        fn(*args[:2], args[3], args[4], args[2]).backward()  # warm-up outside the measurement
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        args = _inputs(n, S, "cpu", seed=1)
        fn(*args[:2], args[3], args[4], args[2], tau=-0.2, beta=0.1).backward()
        q.put((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)

    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=child, args=(q,))
    p.start()
    out = q.get(timeout=600)
    p.join()
    return out


def _run(fn, args, reps: int, device: str):
    xk, xl, m, i, j = args

    def once():
        for t in (xk, xl, m):
            t.grad = None
        loss = fn(xk, xl, i, j, m, tau=-0.2, beta=0.1)
        loss.backward()
        if device == "cuda":
            torch.cuda.synchronize()

    once()  # warm-up (Warp kernel compilation / cache load)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else _peak_cpu_mib(fn, xk.shape[0], i.numel())
    return statistics.median(times), peak


def main(reps: int = 7) -> None:
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, python {sys.version.split()[0]}")
    print()
    print("| device | n points | S pairs | torch ref (ms) | Warp (ms) | ratio ref/Warp | peak mem ref (MiB) | peak mem Warp (MiB) |")
    print("|---|---|---|---|---|---|---|---|")
    for device in devices:
        for n, S in ((12_288, 100_000), (49_152, 100_000)):
            args = _inputs(n, S, device)
            tw, mw = _run(edm_pair_loss, args, reps, device)
            tr, mr = _run(edm_pair_loss_reference, args, reps, device)
            print(f"| {device} | {n} | {S} | {tr * 1e3:.1f} | {tw * 1e3:.1f} | {tr / tw:.2f} | {mr:.1f} | {mw:.1f} |")


if __name__ == "__main__":
    main()
