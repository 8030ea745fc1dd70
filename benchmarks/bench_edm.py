"""Benchmark: the ARAP EDM loss, forward + backward with 100k sampled pairs, Warp vs the torch reference;
and the issue's depth targets at teaching size (``--only depth``).

Run: ``.venv/bin/python benchmarks/bench_edm.py [--only loss|depth] [--seeds 0 1]`` (prints markdown tables). Both implementations run on
the same inputs in one process; median wall time over repetitions, ratio of medians, peak memory
(CPU: growth of the peak resident set size (VmHWM) of one forward+backward in a fresh
process, since torch's CPU allocations are invisible to tracemalloc; CUDA: torch.cuda.max_memory_allocated).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import torch

from nrsfm_kit.kernels.edm_loss import edm_pair_loss, edm_pair_loss_reference
from nrsfm_kit.utils.bench import median_time


def _inputs(n: int, S: int, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    xk = torch.randn(n, 3, generator=g).to(device).requires_grad_()
    xl = (xk.detach() + 0.1 * torch.randn(n, 3, generator=g).to(device)).requires_grad_()
    m = torch.rand(n, 3, generator=g).to(device).requires_grad_()
    i = torch.randint(0, n, (S,), generator=g).to(device)
    j = torch.randint(0, n, (S,), generator=g).to(device)
    return xk, xl, m, i, j


_CHILD = """
import sys
sys.path.insert(0, {root!r})
from nrsfm_kit.utils.bench import peak_rss_mib
from bench_edm import _inputs
from nrsfm_kit.kernels.edm_loss import edm_pair_loss, edm_pair_loss_reference
import nrsfm_kit.warp_setup as ws
ws.init()
fn = edm_pair_loss if {warp} else edm_pair_loss_reference
small = _inputs(64, 128, "cpu")
fn(small[0], small[1], small[3], small[4], small[2]).backward()   # load kernels / lazy init on a tiny input
xk, xl, m, i, j = _inputs({n}, {S}, "cpu")
base = peak_rss_mib()  # VmHWM of this address space, MiB
fn(xk, xl, i, j, m, tau=-0.2, beta=0.1).backward()
print(peak_rss_mib() - base)
"""


def _peak_cpu_mib(fn, n: int, S: int) -> float:
    """Peak RSS growth (MiB) of one forward+backward in a fresh Python process (clean allocator state)."""
    import subprocess
    from pathlib import Path

    code = _CHILD.format(root=str(Path(__file__).resolve().parent), warp=fn is edm_pair_loss, n=n, S=S)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=True)
    return float(out.stdout.strip().splitlines()[-1])


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
    t = median_time(once, reps, warmup=0)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else _peak_cpu_mib(fn, xk.shape[0], i.numel())
    return t, peak


def loss_table(reps: int = 7) -> None:
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print("| device | n points | S pairs | torch ref (ms) | Warp (ms) | ratio ref/Warp | peak mem ref (MiB) | peak mem Warp (MiB) |")
    print("|---|---|---|---|---|---|---|---|")
    for device in devices:
        for n, S in ((12_288, 100_000), (49_152, 100_000)):
            args = _inputs(n, S, device)
            tw, mw = _run(edm_pair_loss, args, reps, device)
            tr, mr = _run(edm_pair_loss_reference, args, reps, device)
            print(f"| {device} | {n} | {S} | {tr * 1e3:.1f} | {tw * 1e3:.1f} | {tr / tw:.2f} | {mr:.1f} | {mw:.1f} |")


def depth_table(seeds=(0,)) -> None:
    """The issue's targets on the synthetic non-rigid video at teaching size (``preset_config(False)``, the
    cluttered scene, 4 frames 48x64): AbsRel (median scaling) of the rigid and embedding variants and of a
    constant depth map over all / static / dynamic / non-rigid pixels, motion segmentation from the
    embeddings (ACC, IoU at the configured threshold, ROC AUC, IoU at the best threshold for this ground
    truth: an upper bound), training wall and CPU time. One row per
    variant and training seed (network initialisation and pair sampling; the video is the same)."""
    import dataclasses

    from nrsfm_kit.edm.loss import EDMLossConfig
    from nrsfm_kit.edm.segmentation import best_threshold, motion_scores
    from nrsfm_kit.edm.training import (
        constant_baseline,
        fit_sequence,
        label_embeddings,
        preset_config,
        synthetic_video,
    )

    cfg, size = preset_config(False)
    video = synthetic_video(size["frames"], size["height"], size["width"])
    print(f"video: {size['frames']} frames {size['height']}x{size['width']}, moving pixels "
          f"{float((video.segmentation > 0).float().mean()):.3f}; config: {cfg}")
    print()
    regions = ("all", "static", "dynamic", "nonrigid")
    print("| method | seed | " + " | ".join(f"AbsRel {r}" for r in regions)
          + " | d<1.25 all | seg ACC | seg IoU | seg AUC | seg IoU best thr | train wall (s) | train CPU (s) |")
    print("|---|---|" + "---:|" * (len(regions) + 7))

    def row(name, seed, m, seg=None, wall=None, cpu=None):
        seg = seg or {}
        cells = [f"{m[r]['abs_rel']:.3f}" for r in regions] + [f"{m['all']['a1']:.3f}"]
        cells += [f"{seg[k]:.3f}" if k in seg else "-" for k in ("acc", "iou", "auc", "best_iou")]
        cells += ["-" if wall is None else f"{wall:.0f}", "-" if cpu is None else f"{cpu:.0f}"]
        print(f"| {name} | {seed} | " + " | ".join(cells) + " |", flush=True)

    gt_moving = video.segmentation[:-1] > 0

    def seg_of(res, c):  # the result's scores plus the IoU at the oracle threshold (an upper bound)
        if res.embeddings is None:
            return None
        return {**res.segmentation, "best_iou": best_threshold(motion_scores(res.embeddings, c.border), gt_moving)[1]}

    def run(name, seed, c, variant="embeddings", segmentation=True, **kw):  # train, print the row and times
        t0, c0 = time.perf_counter(), time.process_time()
        res = fit_sequence(video, variant, c, **kw)
        row(name, seed, res.metrics, seg_of(res, c) if segmentation else None, time.perf_counter() - t0,
            time.process_time() - c0)

    row("constant depth", "-", constant_baseline(video))
    for seed in seeds:
        c = dataclasses.replace(cfg, seed=int(seed), progress=False)
        for variant in ("rigid", "embeddings"):
            run(variant, seed, c, variant=variant)
        # diagnostics (upper bounds): stage 1 against the exact depth (only the motion net trains) with the
        # preset, with Table 7's embedding range (0, 1)^3 and with the bilinear depth lookup; then stage 2
        # with the exact weights of the labels
        bilinear = EDMLossConfig(**{**dataclasses.asdict(cfg.loss), "lookup": "bilinear"})
        for name, over in (("embeddings, exact depth in stage 1", {}),
                           ("embeddings, exact depth in stage 1, range (0, 1)^3",
                            {"embedding_scale": 1.0, "seg_threshold": 0.3}),
                           ("embeddings, exact depth in stage 1, bilinear lookup", {"loss": bilinear})):
            run(name, seed, dataclasses.replace(c, **over), stage1_depth=video.depth)
        labels = label_embeddings(video.segmentation)
        for tau in (cfg.tau, 0.0):
            run(f"stage 2 with exact weights (labels), tau {tau:g}", seed, dataclasses.replace(c, tau=tau),
                segmentation=False, frozen_embeddings=labels)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("loss", "depth"), action="append")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = ap.parse_args(argv)
    only = set(args.only or ("loss", "depth"))
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, python {sys.version.split()[0]}")
    print()
    if "loss" in only:
        loss_table(args.reps)
        print()
    if "depth" in only:
        depth_table(args.seeds)


if __name__ == "__main__":
    main()
