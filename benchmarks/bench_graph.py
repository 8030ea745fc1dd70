"""Benchmark of the deformation graph (issue 4).

1. ``build_graph`` on a 640x480 frame (the real DeepDeform seq258 frame when ``NRSFM_KIT_DATA`` is set,
   else a synthetic 640x480 wave): geodesic and Euclidean, median wall time, peak Python memory
   (tracemalloc: numpy / scipy allocations).
2. The warp field Q on a 640x480 point image with 4 anchors per pixel, forward and forward+backward,
   Warp kernels vs the pure-torch reference, side by side in one run: median over repetitions, ratio of
   medians, peak memory (CUDA: ``torch.cuda.max_memory_allocated``; CPU: peak RSS growth of a fresh
   child process running only that implementation, over its inputs).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_graph.py`` (prints markdown tables).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from nrsfm_kit.config import data_root  # noqa: E402
from nrsfm_kit.graph import build_graph  # noqa: E402
from nrsfm_kit.graph.synthetic import synthetic_depth  # noqa: E402
from nrsfm_kit.utils.bench import peak_rss_mib, timings, traced_peak_mib  # noqa: E402


def _frame():
    root = data_root()
    if root is not None:
        import cv2

        seq = root / "deepdeform" / "train" / "seq258"
        depth = cv2.imread(str(seq / "depth" / "000000.png"), cv2.IMREAD_UNCHANGED).astype(np.float32) / 1000
        mask = cv2.imread(str(seq / "mask" / "000000_shirt.png"), cv2.IMREAD_UNCHANGED) > 0
        return depth, mask, np.loadtxt(seq / "intrinsics.txt"), "DeepDeform seq258 000000 (shirt)"
    depth, mask, intr = synthetic_depth(480, 640, "wave", extent=1.0, depth=1.3)
    return depth, mask, intr, "synthetic 640x480 wave"


def bench_build(reps: int) -> list[str]:
    depth, mask, intr, name = _frame()
    rows = [f"Frame: {name}, {int(mask.sum())} mask pixels.", "",
            "| edges / anchors | nodes | median wall time (s) | median CPU time (s) | peak Python memory (MB) |",
            "|---|---|---|---|---|"]
    for geodesic in (True, False):
        def build(geo=geodesic):
            return build_graph(depth, mask, intr, geodesic=geo)

        g = build()  # also the warm-up of the timing below
        tm = timings(build, reps, warmup=0)
        t, t_cpu = tm["wall"], tm["cpu"]
        peak = traced_peak_mib(build)
        rows.append(f"| {'geodesic' if geodesic else 'Euclidean'} | {g.num_nodes} | {t:.3f} | {t_cpu:.3f} | {peak:.0f} |")
    return rows


def _warp_problem(device: str, H: int = 480, W: int = 640, N: int = 200, A: int = 4):
    g = torch.Generator().manual_seed(0)
    from nrsfm_kit.geometry import random_rotation

    pts = torch.rand(H, W, 3, generator=g)
    nodes = torch.rand(N, 3, generator=g)
    R = random_rotation(N, generator=g)
    t = 0.01 * torch.randn(N, 3, generator=g)
    anchors = torch.randint(0, N, (H, W, A), generator=g)
    w = torch.rand(H, W, A, generator=g)
    w = w / w.sum(-1, keepdim=True)
    return [x.to(device) for x in (pts, anchors, w, nodes, R, t)]


def _warp_fn(impl: str):
    from nrsfm_kit.kernels.warp_field import warp_point_image, warp_point_image_torch

    return warp_point_image if impl == "warp" else warp_point_image_torch


def _run_warp(impl: str, device: str, backward: bool, H: int = 480, W: int = 640):
    pts, anchors, w, nodes, R, t = _warp_problem(device, H, W)
    leaves = [x.requires_grad_(backward) for x in (pts, w, nodes, R, t)]
    fn = _warp_fn(impl)

    def step():
        out = fn(leaves[0], anchors, leaves[1], leaves[2], leaves[3], leaves[4])
        if backward:
            out.backward(torch.ones_like(out))
            for x in leaves:
                x.grad = None
        if device == "cuda":
            torch.cuda.synchronize()

    return step


def _child(impl: str, backward: bool) -> None:
    """Run one implementation in a fresh process; print its peak RSS growth (MB) over its inputs."""
    _run_warp(impl, "cpu", backward, 8, 8)()  # load the kernels / warm up on a tiny problem
    step = _run_warp(impl, "cpu", backward)
    base = peak_rss_mib()  # after the inputs exist
    for _ in range(2):
        step()
    print(json.dumps({"peak_mb": peak_rss_mib() - base}))


def _child_peak(impl: str, backward: bool) -> float:
    cmd = [sys.executable, __file__, "--child", impl] + (["--backward"] if backward else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ})
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]


def bench_warp(reps: int) -> list[str]:
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = ["Q on a 640x480 point image, 4 anchors per pixel, 200 nodes, float32. Wall and CPU (process) time "
            "medians; on a shared machine the CPU-time ratio is the steadier one.", "",
            "| device | pass | Warp wall (ms) | torch wall (ms) | torch / Warp (wall) | Warp CPU (ms) | torch CPU (ms) "
            "| torch / Warp (CPU) | Warp peak (MB) | torch peak (MB) |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for device in devices:
        for backward in (False, True):
            med, cpu, peak = {}, {}, {}
            for impl in ("warp", "torch"):
                step = _run_warp(impl, device, backward)
                tm = timings(step, reps)
                med[impl], cpu[impl] = tm["wall"], tm["cpu"]
                if device == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                    step()
                    peak[impl] = torch.cuda.max_memory_allocated() / 2**20
                else:
                    peak[impl] = _child_peak(impl, backward)
            rows.append(
                f"| {device} | {'forward+backward' if backward else 'forward'} | {1e3 * med['warp']:.1f} | "
                f"{1e3 * med['torch']:.1f} | {med['torch'] / med['warp']:.2f}x | {1e3 * cpu['warp']:.1f} | "
                f"{1e3 * cpu['torch']:.1f} | {cpu['torch'] / cpu['warp']:.2f}x | {peak['warp']:.0f} | {peak['torch']:.0f} |"
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--child", choices=["warp", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--backward", action="store_true", help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args(argv)  # tolerate run_all.py's own arguments
    if args.child:
        _child(args.child, args.backward)
        return
    print(f"## graph\n\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"CUDA {'yes' if torch.cuda.is_available() else 'no'}; {time.strftime('%Y-%m-%d', time.gmtime())}\n")
    print("### build_graph (640x480)\n")
    print("\n".join(bench_build(args.reps)))
    print("\n### warp field Q: Warp vs torch reference\n")
    print("\n".join(bench_warp(args.reps)))


if __name__ == "__main__":
    main()
