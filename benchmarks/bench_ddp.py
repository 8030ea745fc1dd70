"""Benchmark: corpus pre-training throughput (frames per second), one process vs 2-process data-parallel (torchrun).

Both configurations run in this one invocation, side by side, on the same corpus and global batch (``--view-pairs``
view pairs per step, 2 frames each): each repetition launches ``torchrun --nproc_per_node N`` on this script's
``worker``, which renders the corpus, then times ``--steps`` optimiser steps of :func:`nrsfm_kit.edm.pretrain.
pretrain_corpus` (the rendering and a warm-up run are timed apart and not counted). Reported: median wall time of
the steps over ``--reps``, frames per second, the ratio of medians, and each process's peak resident memory.

Run: ``python benchmarks/bench_ddp.py [--steps 30] [--view-pairs 4] [--reps 3]`` (needs 2 free cores; gloo on CPU,
NCCL with CUDA).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(steps: int, view_pairs: int, videos: int, out: Path) -> None:
    from nrsfm_kit.edm.pretrain import PretrainConfig, make_corpus, pretrain_corpus
    from nrsfm_kit.train import distributed as dd

    dd.init_from_env()
    torch.set_num_threads(1)
    cfg = PretrainConfig(pairs_per_step=view_pairs, progress=False, log_every=max(steps, 1))
    pretrain_corpus(videos, cfg, steps=2)  # warm-up: imports, kernels, allocator
    t0 = time.perf_counter()
    make_corpus(videos, cfg.frames, cfg.height, cfg.width)
    render = time.perf_counter() - t0
    dd.barrier()
    t0 = time.perf_counter()
    pretrain_corpus(videos, cfg, steps=steps)
    total = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)
    rows = dd.gather_objects({"train_s": total - render, "render_s": render, "peak_rss_mib": rss})
    if dd.is_main():
        out.write_text(json.dumps(rows))
    dd.destroy()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd")
    w = sub.add_parser("worker")
    for a in (ap, w):
        a.add_argument("--steps", type=int, default=30)
        a.add_argument("--view-pairs", type=int, default=4)
        a.add_argument("--videos", type=int, default=8)
    w.add_argument("--out", type=Path, required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.cmd == "worker":
        worker(args.steps, args.view_pairs, args.videos, args.out)
        return
    torchrun = Path(sys.executable).with_name("torchrun")
    results: dict = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            for n in (1, 2):  # interleaved, so a load change hits both alike
                out = Path(tmp) / f"{n}_{rep}.json"
                cmd = [str(torchrun), "--nproc_per_node", str(n), "--master_addr", "127.0.0.1", "--master_port",
                       str(_free_port()), str(Path(__file__).resolve()), "worker", "--steps", str(args.steps),
                       "--view-pairs", str(args.view_pairs), "--videos", str(args.videos), "--out", str(out)]
                subprocess.run(cmd, cwd=ROOT, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
                results[n].append(json.loads(out.read_text()))
    frames = args.steps * args.view_pairs * 2
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"1 thread per process; {args.videos} corpus videos 4x48x64, width-16 ResNet-18 depth net, "
          f"{args.view_pairs} view pairs per step (global), {args.steps} steps, {args.reps} repetitions")
    print()
    print("| processes | median train s | frames / s | speed-up (ratio of medians) | peak RSS per process (MiB) |")
    print("|---:|---:|---:|---:|---:|")
    med = {n: statistics.median(max(r["train_s"] for r in rows) for rows in results[n]) for n in (1, 2)}
    summary = {}
    for n in (1, 2):
        rss = max(r["peak_rss_mib"] for rows in results[n] for r in rows)
        print(f"| {n} | {med[n]:.2f} | {frames / med[n]:.1f} | {med[1] / med[n]:.2f} | {rss:.0f} |")
        summary[n] = {"median_train_s": med[n], "frames_per_s": frames / med[n], "peak_rss_mib": rss,
                      "runs": results[n]}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
