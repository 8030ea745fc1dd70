"""``nrsfm-kit depth fit --sequence DIR|synthetic [--out DIR] [--json OUT]``: test-time training on one sequence."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from nrsfm_kit.cli import HelpFormatter, check_int_arg, check_output_dir, check_output_file
from nrsfm_kit.config import smoke

_EPILOG = """\
sizes (--smoke / NRSFM_KIT_SMOKE=1 in brackets): --frames 4 [3], --height 48 [48], --width 64 [64], --steps:
stage 1 = 300 rigid warm-up + 100 joint steps [3 + 4], stage 2 = 250 steps [6], --net-width 16 [8] (64 with
--encoder-weights), --pairs 20000 [10000]. One step is one Adam update over all frames; a teaching-size run takes
minutes on a CPU.

--encoder-weights FILE:
  torchvision's ImageNet ResNet-18 weights (resnet18-f37072fd.pth, a state dict in torchvision's layout, or a
  checkpoint with one under 'state_dict' / 'model'), loaded into the encoders of the depth and the motion network
  whenever they are built (stage 1, and the re-initialised depth net of stage 2 / rigid), as in the paper. The
  motion net's 6-channel first conv gets the RGB filters repeated for the two frames and halved (Monodepth2), and
  both encoders standardise their input with ImageNet's mean and std. The networks are then the real ResNet-18
  (--net-width 64). The file is checked (keys, shapes) before any work.

--sequence DIR:
  a folder of RGB frames (*.png, *.jpg, sorted by name) with an optional intrinsics.txt (fx fy cx cy, or a 3x3 /
  4x4 matrix, pixels of the frames; without it a 60 degree horizontal field of view is assumed); or a DeepDeform
  sequence <seq> (or <seq>/color): frames in color/, <seq>/intrinsics.txt, and the ground truth <seq>/depth/*.png
  (uint16 mm, 0 = invalid): the depth metrics are then computed against it (median scaling per frame).
  Correspondences come from DIS optical flow (OpenCV). 'synthetic' renders the non-rigid synthetic video.

--out DIR writes, for each variant V:
  DIR/V/depth/<frame>.png           predicted depth, uint16 millimetres (median-scaled per frame to the ground
                                    truth when there is one; otherwise the network's scale, which monocular depth
                                    cannot fix)
  DIR/V/depth_preview/<frame>.png   colourised inverse depth (turbo: near = red), one scale for the sequence
  DIR/embeddings/embeddings.npy     (T-1, 3, H, W) float32 motion embeddings of frames 0..T-2 (variant embeddings)
  DIR/embeddings/embedding_preview/<frame>.png   the embeddings as colours (each channel stretched to 0..255)
  DIR/report.json                   the report printed on stdout

metrics: abs_rel, sq_rel (metres), rmse (metres), rmse_log, a1..a3 (fraction with max(d/d*, d*/d) < 1.25^k),
per region (all; static / dynamic / rigid / nonrigid for the synthetic video), after per-frame median scaling;
segmentation (synthetic video, variant embeddings): acc, iou at the threshold, ROC auc of the motion scores.
"""


def register(subparsers) -> None:
    """Add the ``depth`` command (sub-command ``fit``) to the ``nrsfm-kit`` parser."""
    depth = subparsers.add_parser("depth", help="unsupervised monocular depth of non-rigid scenes (EDM priors)",
                                  description="Unsupervised monocular depth of non-rigid scenes with EDM priors "
                                  "(Takmaz et al.): test-time training on one video.")
    sub = depth.add_subparsers(dest="depth_command", required=True, metavar="{fit}")
    fit = sub.add_parser("fit", help="two-stage test-time training on one sequence, then its metrics",
                         description="Two-stage test-time training of the depth and motion-embedding networks on "
                         "one sequence (stage 1 joint, stage 2 with frozen embeddings; the rigid variant without "
                         "embeddings), then the depth metrics when there is ground truth.",
                         epilog=_EPILOG, formatter_class=HelpFormatter)
    fit.add_argument("--sequence", required=True, metavar="DIR|synthetic",
                     help="a folder of RGB frames or a DeepDeform sequence folder, or 'synthetic' (see below)")
    fit.add_argument("--out", default=None, metavar="DIR",
                     help="write the depth maps (16-bit PNG, mm), previews, embeddings and the stages' checkpoints "
                          "(OUT/checkpoints/<variant>/, resumed by the same command) here (default: none)")
    fit.add_argument("--json", default=None, metavar="FILE",
                     help="write the report to this JSON file, atomically (default: print only)")
    fit.add_argument("--variant", choices=("embeddings", "rigid", "both"), default="both",
                     help="embeddings (two stages with motion embeddings), rigid (all pair weights 1) or both "
                          "(default both)")
    fit.add_argument("--steps", type=int, default=None, metavar="N",
                     help="optimiser steps of stage 1 (joint) and of stage 2 / rigid, each (default: the preset's, see "
                          "below; the stage-1 warm-up keeps its own; >= 0)")
    fit.add_argument("--height", type=int, default=None, metavar="PX",
                     help="working image height, pixels (default 48; >= 16)")
    fit.add_argument("--width", type=int, default=None, metavar="PX",
                     help="working image width, pixels (default 64; >= 16)")
    fit.add_argument("--frames", type=int, default=None, metavar="T",
                     help="number of frames: the first T of the folder (default 4, smoke 3; >= 2)")
    fit.add_argument("--net-width", type=int, default=None, metavar="C",
                     help="ResNet-18 base width, channels (64 = the paper's network; default 16, smoke 8)")
    fit.add_argument("--pairs", type=int, default=None, metavar="S",
                     help="sampled pixel pairs per view pair of the EDM loss (paper 100000; default 20000, "
                          "smoke 10000)")
    fit.add_argument("--encoder-weights", default=None, metavar="FILE",
                     help="initialise both encoders from torchvision's ImageNet ResNet-18 weights in this torch file "
                          "(net width 64, ImageNet input standardisation; see below; default: from scratch)")
    fit.add_argument("--seed", type=int, default=0, help="random seed of the networks and pair sampling (default 0)")
    fit.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                     help="with --out: optimiser steps between checkpoints of each stage (default 50; >= 1)")
    fit.add_argument("--smoke", action="store_true", help="tiny sizes (also NRSFM_KIT_SMOKE=1; default off)")
    fit.add_argument("--quiet", action="store_true", help="no progress bars (default: tqdm bars on stderr)")
    fit.set_defaults(func=_fit, param_flags={"num_pairs": "--pairs", "steps_stage1": "--steps",
                                             "steps_stage2": "--steps", "num_frames": "--frames"})


def _clean(x):
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return x


def _check_encoder_weights(args: argparse.Namespace) -> None:
    """--encoder-weights: an existing file with a ResNet-18 state dict, and a net width of 64 (before any work)."""
    if args.encoder_weights is None:
        return
    from nrsfm_kit.cli import check_input_file

    check_input_file("--encoder-weights", args.encoder_weights, "a torch file with torchvision ResNet-18 weights")
    if args.net_width is not None and args.net_width != 64:
        raise ValueError(f"--net-width: expected 64 (the ResNet-18 of --encoder-weights) or unset, found "
                         f"{args.net_width}")
    from nrsfm_kit.models import check_resnet18_weights

    check_resnet18_weights(args.encoder_weights, in_channels=6)  # errors name the file


def _check_args(args: argparse.Namespace, size: dict) -> tuple[int, int, int]:
    """Every flag checked before any frame is read or any network trains; returns (T, H, W)."""
    H = args.height or size["height"]
    W = args.width or size["width"]
    T = args.frames or size["frames"]
    for flag, v in (("--height", args.height), ("--width", args.width)):
        check_int_arg(flag, v, 16)
    check_int_arg("--frames", args.frames, 2)
    check_int_arg("--steps", args.steps, 0)
    check_int_arg("--net-width", args.net_width, 1)
    check_int_arg("--pairs", args.pairs, 1)
    check_int_arg("--seed", args.seed, 0)
    check_int_arg("--checkpoint-every", args.checkpoint_every, 1)
    if args.json:
        check_output_file("--json", args.json)
    if args.out:
        check_output_dir("--out", args.out)
    return T, H, W


def _write_outputs(out: Path, var: str, res, names: list[str], gt) -> dict:
    """Depth maps (median-scaled to ``gt`` when given), previews and (variant embeddings) the embeddings."""
    from nrsfm_kit.edm.video_io import write_depth_maps, write_embeddings
    from nrsfm_kit.metrics.depth import median_scale

    depth = res.depth.detach()
    if gt is not None:
        depth = depth * median_scale(depth, gt.to(depth.dtype), gt > 0)[:, None, None]
    files = write_depth_maps(out / var, depth, names)
    written = {"depth": str(out / var / "depth"), "depth_preview": str(out / var / "depth_preview"),
               "depth_scale": "median-scaled per frame to the ground truth" if gt is not None
               else "network scale (arbitrary: monocular depth has no absolute scale)",
               "depth_files": len(files["depth"])}
    if res.embeddings is not None:
        emb = write_embeddings(out / "embeddings", res.embeddings, names[: res.embeddings.shape[0]])
        written["embeddings"] = str(emb["npy"])
        written["embedding_preview"] = str(out / "embeddings" / "embedding_preview")
    return written


def _fit(args: argparse.Namespace) -> int:
    _check_encoder_weights(args)  # before any work (and before the lock creates --out)
    if not args.out:
        return _fit_run(args)
    from nrsfm_kit.utils.io import folder_lock

    check_output_dir("--out", args.out)
    with folder_lock(args.out, "--out"):  # one run per output folder
        return _fit_run(args)


def _fit_run(args: argparse.Namespace) -> int:
    from nrsfm_kit.edm.training import preset_config

    tiny = args.smoke or smoke()
    cfg, size = preset_config(tiny)
    T, H, W = _check_args(args, size)
    names = None
    if args.sequence != "synthetic":
        from nrsfm_kit.edm.video_io import find_frames

        layout = find_frames(args.sequence, max_frames=T)  # the folder checked before any work
        names = layout.names
        if not args.quiet:
            gt = f", ground-truth depth from {layout.root / 'depth'}" if layout.depth is not None else ""
            print(f"reading {len(names)} frames of {layout.frames[0].parent} at {H}x{W}, DIS optical flow{gt}",
                  file=sys.stderr, flush=True)
    from nrsfm_kit.edm.training import constant_baseline, fit_sequence, synthetic_video
    from nrsfm_kit.edm.video_io import load_frame_folder
    from nrsfm_kit.utils.io import atomic_write_json

    if args.steps is not None:
        cfg.steps_stage1 = cfg.steps_stage2 = args.steps
    if args.net_width is not None:
        cfg.width = args.net_width
    if args.encoder_weights is not None:
        cfg.encoder_weights = str(args.encoder_weights)
        cfg.width = 64  # the pretrained network
    if args.pairs is not None:
        cfg.loss.num_pairs = args.pairs
        cfg.loss.__post_init__()
    cfg.seed = args.seed
    cfg.progress = not args.quiet
    if args.checkpoint_every is not None:
        cfg.checkpoint_every = args.checkpoint_every
    if args.sequence == "synthetic":
        video = synthetic_video(T, H, W, seed=cfg.seed)
        names = [f"{t:06d}" for t in range(video.frames.shape[0])]
    else:
        video = load_frame_folder(args.sequence, H, W, max_frames=T)
    variants = ("embeddings", "rigid") if args.variant == "both" else (args.variant,)
    report = {"sequence": args.sequence, "frames": int(video.frames.shape[0]), "size": [H, W],
              "ground_truth_depth": video.depth is not None, "encoder_weights": cfg.encoder_weights, "results": {}}
    if video.depth is not None:
        report["constant_baseline"] = constant_baseline(video)
    if cfg.encoder_weights is not None and not args.quiet:
        print(f"encoders (width 64) initialised from {cfg.encoder_weights}, ImageNet input standardisation",
              file=sys.stderr, flush=True)
    for k, var in enumerate(variants):
        stages = (f"stage 1: {cfg.warmup_stage1} warm-up + {cfg.steps_stage1} joint steps, "
                  f"stage 2: {cfg.steps_stage2} steps") if var == "embeddings" else f"{cfg.steps_stage2} steps"
        if not args.quiet:
            print(f"[{k + 1}/{len(variants)}] variant {var} on {report['frames']} frames {H}x{W} ({stages})",
                  file=sys.stderr, flush=True)
        # with --out, each variant's stages checkpoint under OUT/checkpoints/<variant>/: the same command resumes
        res = fit_sequence(video, var, cfg, out_dir=Path(args.out) / "checkpoints" / var if args.out else None)
        report["results"][var] = {
            "depth_metrics": res.metrics,
            "segmentation": res.segmentation,
            "final_loss": res.history[-1]["loss"] if res.history else None,
            "depth_range": [float(res.depth.min()), float(res.depth.max())],
        }
        if args.out:
            report["results"][var]["outputs"] = _write_outputs(Path(args.out), var, res, names, video.depth)
    report = _clean(report)
    print(json.dumps(report, indent=2))
    if args.out:
        atomic_write_json(Path(args.out) / "report.json", report)
    if args.json:
        atomic_write_json(args.json, report)
    return 0
