"""Benchmark of the PWC-Net cost volume (issue 13): the Warp kernel vs the torch reference, side by side.

Sizes of PWC-Net's decoder levels on a 448x640 input (d = 4, 81 channels): level 2 (112x160, 32 channels) to
level 6 (7x10, 196 channels), batch 1, float32; forward alone and forward + backward. Median over repetitions,
ratio of medians; the peak RSS of the process at the end (both implementations allocate only the
(B, 81, H, W) output and the input gradients). On a GPU the same rows run on CUDA.
Usage: ``python benchmarks/bench_correlation.py [--quick] [--reps N]``.
"""

from __future__ import annotations

import argparse
import platform

import torch

from nrsfm_kit.kernels.correlation import correlation, correlation_torch
from nrsfm_kit.utils.bench import median_time, peak_rss_mib

# (level, channels, H, W) of the PWC-DC decoder at 448x640
LEVELS = [(2, 32, 112, 160), (3, 64, 56, 80), (4, 96, 28, 40), (5, 128, 14, 20), (6, 196, 7, 10)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="levels 4-6 only, 2 repetitions")
    ap.add_argument("--reps", type=int, default=5)
    args, _ = ap.parse_known_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    reps = 2 if args.quick else args.reps
    levels = LEVELS[2:] if args.quick else LEVELS
    machine = f"{platform.machine()}, {torch.get_num_threads()} torch threads" + (
        f", {torch.cuda.get_device_name()}" if device == "cuda" else ", no GPU")
    print(f"# bench_correlation ({device}; {machine}; torch {torch.__version__})\n")
    print("| level | C x H x W | Warp fwd ms | torch fwd ms | torch / Warp | Warp fwd+bwd ms | torch fwd+bwd ms "
          "| torch / Warp |")
    print("|---|---|---|---|---|---|---|---|")
    sync = torch.cuda.synchronize if device == "cuda" else None
    for level, C, H, W in levels:
        g = torch.Generator().manual_seed(level)
        f1 = torch.randn(1, C, H, W, generator=g).to(device).requires_grad_()
        f2 = torch.randn(1, C, H, W, generator=g).to(device).requires_grad_()
        row = []
        for backward in (False, True):
            for fn in (correlation, correlation_torch):
                def once(fn=fn, backward=backward, f1=f1, f2=f2):
                    cv = fn(f1, f2, 4)
                    if backward:
                        cv.backward(torch.ones_like(cv))
                row.append(median_time(once, reps, warmup=1, sync=sync) * 1e3)
        print(f"| {level} | {C} x {H} x {W} | {row[0]:.2f} | {row[1]:.2f} | {row[1] / row[0]:.2f} | {row[2]:.2f} | "
              f"{row[3]:.2f} | {row[3] / row[2]:.2f} |", flush=True)
    print(f"\npeak RSS of the process: {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
