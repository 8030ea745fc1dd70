"""``nrsfm-kit depth fit --sequence DIR|synthetic [--json OUT]``: test-time training on one sequence."""

from __future__ import annotations

import argparse
import json
import math

from nrsfm_kit.config import smoke


def register(subparsers) -> None:
    """Add the ``depth`` command (sub-command ``fit``) to the ``nrsfm-kit`` parser."""
    depth = subparsers.add_parser("depth", help="unsupervised monocular depth of non-rigid scenes (EDM priors)")
    sub = depth.add_subparsers(dest="depth_command", required=True)
    fit = sub.add_parser("fit", help="two-stage test-time training on one sequence, then its metrics")
    fit.add_argument("--sequence", required=True, help="folder of RGB frames (png/jpg), or 'synthetic'")
    fit.add_argument("--json", default=None, help="write the results to this JSON file (atomically)")
    fit.add_argument("--variant", choices=("embeddings", "rigid", "both"), default="both")
    fit.add_argument("--steps", type=int, default=None, help="optimiser steps per stage")
    fit.add_argument("--height", type=int, default=None, help="working image height (pixels)")
    fit.add_argument("--width", type=int, default=None, help="working image width (pixels)")
    fit.add_argument("--frames", type=int, default=None, help="number of frames")
    fit.add_argument("--net-width", type=int, default=None, help="ResNet-18 base width (64 = full)")
    fit.add_argument("--pairs", type=int, default=None, help="sampled pixel pairs per view pair")
    fit.add_argument("--smoke", action="store_true", help="tiny sizes (also NRSFM_KIT_SMOKE=1)")
    fit.set_defaults(func=_fit)


def _clean(x):
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return x


def _fit(args: argparse.Namespace) -> int:
    from nrsfm_kit.edm.training import constant_baseline, fit_sequence, preset_config, synthetic_video
    from nrsfm_kit.edm.video_io import load_frame_folder
    from nrsfm_kit.utils.io import atomic_write_json

    tiny = args.smoke or smoke()
    cfg, size = preset_config(tiny)
    H = args.height or size["height"]
    W = args.width or size["width"]
    T = args.frames or size["frames"]
    for name, v in (("--height", H), ("--width", W), ("--frames", T)):
        if v < 2 or (name != "--frames" and v < 16):
            raise ValueError(f"{name}: expected >= {2 if name == '--frames' else 16}, found {v}")
    if args.steps is not None:
        if args.steps < 0:
            raise ValueError(f"--steps: expected >= 0, found {args.steps}")
        cfg.steps_stage1 = cfg.steps_stage2 = args.steps
    if args.net_width is not None:
        cfg.width = args.net_width
    if args.pairs is not None:
        cfg.loss.num_pairs = args.pairs
        cfg.loss.__post_init__()
    if args.sequence == "synthetic":
        video = synthetic_video(T, H, W, seed=cfg.seed)
    else:
        video = load_frame_folder(args.sequence, H, W, max_frames=T)
    variants = ("embeddings", "rigid") if args.variant == "both" else (args.variant,)
    report = {"sequence": args.sequence, "frames": int(video.frames.shape[0]), "size": [H, W], "results": {}}
    if video.depth is not None:
        report["constant_baseline"] = constant_baseline(video)
    for var in variants:
        res = fit_sequence(video, var, cfg)
        report["results"][var] = {
            "depth_metrics": res.metrics,
            "segmentation": res.segmentation,
            "final_loss": res.history[-1]["loss"] if res.history else None,
            "depth_range": [float(res.depth.min()), float(res.depth.max())],
        }
    report = _clean(report)
    print(json.dumps(report, indent=2))
    if args.json:
        atomic_write_json(args.json, report)
    return 0
