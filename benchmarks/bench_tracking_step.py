"""Whole tracking step of Neural Non-Rigid Tracking per pair: Phi + Psi + Gauss-Newton (3 iterations).

Rows (median of ``--reps`` after one warm-up; on CUDA also the max allocated memory; per-network peak memory on the
CPU is measured in isolated workers by ``bench_tracking.py``, not here, since one process's RSS peak is monotonic):

- ``infer``: ``NeuralTracker.track`` under ``torch.no_grad`` with all valid correspondences (evaluation);
- ``train``: the same in training mode with 10k sampled correspondences, plus the backward of
  L_graph + L_warp through the solver into Phi and Psi (one optimisation step without the update);
- split into its parts: Phi forward, Psi forward, the solve (forward) — side by side in the same run.

Input: the real DeepDeform pair under ``$NRSFM_KIT_DATA`` (cropped to 448 x 640) when available, else a synthetic
448 x 640 pair. ``--quick``: width 0.25 at 128 x 192, 2 repetitions (for the test).

    .venv/bin/python benchmarks/bench_tracking_step.py [--reps 5] [--widths 1.0 0.25] [--json build/bench_tracking_step.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAPER_MS = {"phi": 21.6, "psi": 5.5, "keyframe": 27.0}  # the paper's GPU figures (sec. 5.3)


def _sample(quick: bool):
    from nrsfm_kit.config import data_root
    from nrsfm_kit.tracking.data import deepdeform_samples, synthetic_tracking_pairs

    if quick:
        return synthetic_tracking_pairs("test", 1, 128, 192, progress=False)[0], "synthetic 128x192"
    root = data_root()
    if root is not None and (root / "deepdeform" / "train").is_dir():
        return deepdeform_samples(root / "deepdeform", "train")[0], "DeepDeform seq258 448x640"
    return synthetic_tracking_pairs("test", 1, 448, 640, progress=False)[0], "synthetic 448x640"


def _time(fn, reps: int, device: str) -> tuple[float, float]:
    fn()
    times = []
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(reps):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    mem = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
    return 1e3 * statistics.median(times), mem


def rows_for(width: float, sample, reps: int, device: str) -> list[dict]:
    from nrsfm_kit.tracking.losses import graph_loss, warp_loss
    from nrsfm_kit.tracking.model import NeuralTracker, TrackerConfig

    tracker = NeuralTracker(TrackerConfig(width=width)).to(device)
    s = sample.to(device)
    out = []

    def infer():
        with torch.no_grad():
            tracker.eval().track([s])

    def train():
        tracker.train()
        tracker.zero_grad(set_to_none=True)
        _, (r,) = tracker.track([s])
        sf = s.scene_flow.reshape(-1, 3)[r.pixels]
        ok = torch.isfinite(sf).all(-1)
        loss = graph_loss(r.translations[None], s.node_translations[None], r.node_valid[None]) + \
            warp_loss(r.warped[None], r.source_points[None], torch.nan_to_num(sf)[None], ok[None])
        loss.backward()

    sc, tc = s.source_color[None], s.target_color[None]

    def phi():
        with torch.no_grad():
            tracker.phi(sc, tc)

    with torch.no_grad():
        batch = tracker.eval().correspond(sc, tc, s.target_depth[None], s.intrinsics[None], s.source_depth[None],
                                          weights=False)
        feat = tracker.phi(sc, tc)["feature"]

    def psi():
        with torch.no_grad():
            tracker.psi(feat, sc, torch.zeros_like(sc), tc, torch.zeros_like(sc))

    def solve():
        with torch.no_grad():
            tracker.solve(s, batch["correspondences"][0], batch["valid"][0], batch["weights"][0])

    for name, fn in (("phi forward", phi), ("psi forward", psi), ("solve (3 LM iterations)", solve),
                     ("track, inference (all correspondences)", infer),
                     ("track, training fwd+bwd (10k sampled)", train)):
        ms, mem = _time(fn, reps, device)
        out.append({"width": width, "device": device, "row": name, "median_ms": ms, "peak_mib": mem})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--widths", type=float, nargs="+", default=[1.0, 0.25])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    reps = 2 if args.quick else args.reps
    widths = [0.25] if args.quick else args.widths
    sample, what = _sample(args.quick)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for dev in devices:
        for w in widths:
            rows.extend(rows_for(w, sample, reps, dev))
    info = {"machine": platform.processor() or platform.machine(), "cpus": len(os.sched_getaffinity(0)),
            "load_average": os.getloadavg(),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "input": what, "reps": reps,
            "paper_gpu_ms": PAPER_MS}
    print(f"input: {what}; torch {torch.__version__}, {torch.get_num_threads()} threads; median of {reps}")
    print(f"{'device':<6} {'width':>5}  {'row':<42} {'ms':>10} {'CUDA peak MiB':>13}")
    for r in rows:
        mem = "" if r["peak_mib"] is None else f"{r['peak_mib']:.1f}"
        print(f"{r['device']:<6} {r['width']:>5}  {r['row']:<42} {r['median_ms']:>10.1f} {mem:>13}")
    print(f"paper (GPU): Phi {PAPER_MS['phi']} ms, Psi {PAPER_MS['psi']} ms, {PAPER_MS['keyframe']} ms per keyframe")
    if args.json:
        from nrsfm_kit.utils.io import atomic_write_json

        atomic_write_json(args.json, {"info": info, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
