"""Dataset generators and loaders: speed and peak memory, side by side.

Targets (issue 3): a 320x240 synthetic RGB-D pair with ground-truth flow in < 1 s; 10k NRSfM frames in
< 2 s, on a 2-core CPU. Prints markdown tables: median wall time over repetitions, the ratio of medians
to the first row of each table, and the peak Python-heap allocation (tracemalloc, numpy included).

    .venv/bin/python benchmarks/bench_data.py [--reps 5]
"""

from __future__ import annotations

import argparse
import os
import platform

import torch

from nrsfm_kit.utils.bench import timings, traced_peak_mib


def measure(fn, reps: int) -> tuple[float, float, float]:
    """(median wall s, median process CPU s over ``reps`` runs, peak traced MiB of one extra run).

    CPU time is reported beside wall time because this machine is shared: under load the wall time of a
    single-threaded step is inflated while its CPU time is not. The warm-up run covers imports and the
    Open3D/Embree initialisation.
    """
    t = timings(fn, reps, warmup=1)
    return t["wall"], t["cpu"], traced_peak_mib(fn)


def table(title: str, rows: list[tuple[str, float, float, float]], target: str) -> str:
    base = rows[0][1]
    out = [f"### {title}", "", f"Target: {target}", "",
           "| case | median wall (s) | median CPU (s) | wall ratio to first | peak traced (MiB) |",
           "|---|---:|---:|---:|---:|"]  # fmt: skip
    for name, t, c, mem in rows:
        out.append(f"| {name} | {t:.3f} | {c:.3f} | {t / base:.2f} | {mem:.0f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    from nrsfm_kit.config import data_root
    from nrsfm_kit.data import (
        load_nrsfm_mat,
        synthetic_monocular_video,
        synthetic_nrsfm,
        synthetic_rgbd_pair,
        synthetic_rgbd_sequence,
    )
    from nrsfm_kit.data.scenes import build_scene

    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"python {platform.python_version()}, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")  # fmt: skip

    rgbd = [
        ("pair 320x240, exact flow + scene flow + visibility", lambda: synthetic_rgbd_pair(240, 320)),
        ("pair 320x240 + Kinect noise/holes", lambda: synthetic_rgbd_pair(240, 320, kinect_noise=True)),
        ("  of which: scene + textures only", lambda: build_scene(height=240, width=320)),
        ("pair 640x480", lambda: synthetic_rgbd_pair(480, 640)),
        ("sequence 8 x 320x240 (frames only)", lambda: synthetic_rgbd_sequence(8, 240, 320)),
        ("monocular video 8 x 96x128 (depth, flow, seg.)", lambda: synthetic_monocular_video()),
    ]
    rows = [(name, *measure(fn, args.reps)) for name, fn in rgbd]
    print(table("Synthetic RGB-D / video (Open3D RaycastingScene)", rows, "pair 320x240 with flow < 1 s"))

    from nrsfm_kit.data.render import raycast_reference

    small = build_scene(height=24, width=32, seed=0)
    rays = [
        # clear the scene cache so the BVH build is timed too (the reference has none to build)
        ("Open3D RaycastingScene (Embree) + shading", lambda: (small._scenes.clear(), small.render(0.3))),
        ("torch Moller-Trumbore reference (brute force)", lambda: raycast_reference(small, 0.3)),
    ]
    rows = [(name, *measure(fn, max(1, args.reps // 2))) for name, fn in rays]
    print()
    print(table("Ray casting one 32x24 frame of the full scene (~5.3k triangles)", rows,
                "the reference exists for checking, not speed"))  # fmt: skip

    nr = [
        ("skeleton, random cameras, 5 % noise, 10 % missing",
         lambda: synthetic_nrsfm("skeleton", 10000, noise_ratio=0.05, missing_ratio=0.1)),
        ("skeleton, smooth cameras", lambda: synthetic_nrsfm("skeleton", 10000, camera="smooth")),
        ("low-rank (K = 3, P = 40)", lambda: synthetic_nrsfm("lowrank", 10000)),
        ("category (cars, P = 12)", lambda: synthetic_nrsfm("category", 10000)),
    ]  # fmt: skip
    root = data_root()
    if root is not None and (root / "nrsfm" / "walking.mat").exists():
        nr.append(("load walking.mat (real, 260 frames)", lambda: load_nrsfm_mat(root / "nrsfm" / "walking.mat")))
    rows = [(name, *measure(fn, args.reps)) for name, fn in nr]
    print()
    print(table("Synthetic NRSfM, 10 000 frames", rows, "10k frames < 2 s"))


if __name__ == "__main__":
    main()
