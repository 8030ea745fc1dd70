"""``nrsfm-kit depth fit --sequence DIR|synthetic [--out DIR] [--json OUT]``: test-time training on one sequence
(a folder of frames, a DeepDeform sequence, an MPI-Sintel scene under the paper's protocol, or the synthetic
video)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from nrsfm_kit.cli import (
    HelpFormatter,
    add_amp_arg,
    check_float_arg,
    check_int_arg,
    check_output_dir,
    check_output_file,
)
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

--sequence <root>/training/final/<scene>   or   --sequence <root> --sintel-seq <scene>:
  an MPI-Sintel scene (recognised by its layout: a folder of frame_%04d.png under a 'final' or 'clean' folder,
  or a root holding training/ with --sintel-seq), run under the paper's Sintel protocol (Takmaz et al., sec. 5
  and supplement): the final render pass (a clean/<scene> folder is refused); a centre crop --crop HxW of the
  436x1024 frames (default 384x1024, the paper's: rows 26..409), then, for teaching-size runs, a downscale to
  --height x --width (default the crop itself [smoke: height 48]; give one of the two and the other follows
  the crop's aspect ratio, e.g. --height 96 -> 96x256; at most the crop); the ground-truth optical flow
  <root>/training/flow/<scene>/frame_%04d.flo as the correspondences instead of DIS flow (vectors unchanged
  by the crop, pixels shifted; correspondences leaving the crop, occluded (occlusions/<scene>, when present)
  or unknown are dropped); camera intrinsics from camdata_left/<scene>/frame_%04d.cam of the first frame (cy
  minus the crop's top offset, scaled with the downscale); evaluation only where the ground-truth depth
  depth/<scene>/frame_%04d.dpt is < 50 m, each image median-scaled over those pixels. Frames: the first
  --frames of the scene. depth/ and camdata_left/ come from the separate MPI-Sintel depth download: merged
  into the same root, or in its own root given with --sintel-depth ROOT (holding training/depth/<scene> and
  training/camdata_left/<scene>). Every folder and file the requested frames need, and the crop, are
  checked before any training (and before --out is created); the report gains a 'protocol' section. At
  384x1024 a run is far beyond a CPU's teaching budget: downscale (--height 96) or use a GPU.

--out DIR writes, for each variant V:
  DIR/V/depth/<frame>.png           predicted depth, uint16 millimetres (median-scaled per frame to the ground
                                    truth when there is one; otherwise the network's scale, which monocular depth
                                    cannot fix)
  DIR/V/depth_preview/<frame>.png   colourised inverse depth (turbo: near = red), one scale for the sequence
  DIR/embeddings/embeddings.npy     (T-1, 3, H, W) float32 motion embeddings of frames 0..T-2 (variant embeddings)
  DIR/embeddings/embedding_preview/<frame>.png   the embeddings as colours (each channel stretched to 0..255)
  DIR/report.json                   the report printed on stdout

metrics: abs_rel, sq_rel (metres), rmse (metres), rmse_log, a1..a3 (fraction with max(d/d*, d*/d) < 1.25^k),
per region (all; static / dynamic / rigid / nonrigid for the synthetic video), after per-frame median scaling
(ground truth below 80 m; Sintel: below 50 m);
segmentation (synthetic video, variant embeddings): acc, iou at the threshold, ROC auc of the motion scores.
"""


def register(subparsers) -> None:
    """Add the ``depth`` command (sub-command ``fit``) to the ``nrsfm-kit`` parser."""
    depth = subparsers.add_parser("depth", help="unsupervised monocular depth of non-rigid scenes (EDM priors)",
                                  description="Unsupervised monocular depth of non-rigid scenes with EDM priors "
                                  "(Takmaz et al.): test-time training on one video.")
    sub = depth.add_subparsers(dest="depth_command", required=True, metavar="{fit,pretrain}")
    fit = sub.add_parser("fit", help="two-stage test-time training on one sequence, then its metrics",
                         description="Two-stage test-time training of the depth and motion-embedding networks on "
                         "one sequence (stage 1 joint, stage 2 with frozen embeddings; the rigid variant without "
                         "embeddings), then the depth metrics when there is ground truth.",
                         epilog=_EPILOG, formatter_class=HelpFormatter)
    fit.add_argument("--sequence", required=True, metavar="DIR|synthetic",
                     help="a folder of RGB frames, a DeepDeform sequence folder, an MPI-Sintel scene folder "
                          "<root>/training/final/<scene> (or a Sintel root with --sintel-seq), or 'synthetic' "
                          "(see below)")
    fit.add_argument("--sintel-seq", default=None, metavar="SCENE",
                     help="with --sequence ROOT, an MPI-Sintel root holding training/: the scene to run, e.g. "
                          "alley_1 (default: --sequence is the scene folder itself)")
    fit.add_argument("--sintel-depth", default=None, metavar="ROOT",
                     help="Sintel: root of the separate depth download (training/depth/<scene>, "
                          "training/camdata_left/<scene>) when it is not merged into the Sintel root (default: "
                          "the same root)")
    fit.add_argument("--crop", default=None, metavar="HxW",
                     help="Sintel: centre crop of the frames before any downscale (default 384x1024, the paper's)")
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
    fit.add_argument("--init", default=None, metavar="FILE",
                     help="start every depth net from this pretrained_depth.pt of 'nrsfm-kit depth pretrain' (its net "
                          "width unless --net-width; default: from scratch)")
    fit.add_argument("--seed", type=int, default=0, help="random seed of the networks and pair sampling (default 0)")
    fit.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                     help="with --out: optimiser steps between checkpoints of each stage (default 50; >= 1)")
    add_amp_arg(fit, "the depth and motion nets")
    _add_loss_args(fit, FIT_LOSS, "with --trim 0.2 chosen on the corpus' tune videos, benchmarks/RESULTS.md")
    fit.add_argument("--scale-anchor", type=float, default=None, metavar="W",
                     help="weight of the scale anchor (mean log-depth held at the centre of the depth range; the EDM "
                     "loss leaves the scale free) in every stage (default 0: off; >= 0)")
    fit.add_argument("--smoke", action="store_true", help="tiny sizes (also NRSFM_KIT_SMOKE=1; default off)")
    fit.add_argument("--quiet", action="store_true", help="no progress bars (default: tqdm bars on stderr)")
    fit.set_defaults(func=_fit, param_flags={"num_pairs": "--pairs", "steps_stage1": "--steps",
                                             "steps_stage2": "--steps", "num_frames": "--frames",
                                             "path": "--sequence", "scene": "--sintel-seq",
                                             "depth_root": "--sintel-depth", "size": "--height/--width",
                                             "init_from": "--init"})
    _register_pretrain(sub)


_PRETRAIN_EPILOG = """\
sizes (--smoke / NRSFM_KIT_SMOKE=1 in brackets): --frames 4 [3], --height 48 [32], --width 64 [48], --steps 200 [6],
--net-width 16 [8], --pairs 20000 [2000], --view-pairs 2 (view pairs per step).

The corpus: video i of the 'pretrain' split is the synthetic non-rigid video (nrsfm_kit.data.synthetic_monocular_video,
2 fps) with generator seed 100000 + i (textures, object phases, camera path), a scene (cluttered / room), a
camera-path scale in [0.6, 1.4] and a set of movers drawn from that seed; the 'heldout' split starts at seed 900000
(nrsfm_kit.edm.pretrain.CORPUS_SPLITS), so no held-out video is ever trained on. Training uses the stage-1 losses of
'depth fit' (the rigid warm-up EDM loss; --joint: the joint loss with the motion-embedding net), no ground truth.

--out DIR writes:
  DIR/checkpoints/           the loop's checkpoints (the same command resumes an interrupted run)
  DIR/pretrained_depth.pt    depth encoder + decoder (+ motion net with --joint) and their configs
  DIR/pretrain.json          config, corpus, loss history
  DIR/report.json            the report printed on stdout
--eval-videos M: held-out AbsRel (median scaling per frame, one forward pass per frame) of the pretrained net and of
an untrained net of the same architecture, on the first M videos of the 'heldout' split.
Use the result with: nrsfm-kit depth fit --init DIR/pretrained_depth.pt ...

Data-parallel (one process per GPU, or several on CPU; each process trains on its share of the view pairs of a
step, rank 0 writes DIR and the report):
  torchrun --nproc_per_node 2 -m nrsfm_kit.cli depth pretrain --corpus synthetic --videos 64 --view-pairs 4 --out DIR
"""


def _register_pretrain(sub) -> None:
    pre = sub.add_parser("pretrain", help="self-supervised pre-training of the depth net on a synthetic video corpus",
                         description="Self-supervised pre-training of the depth network with the stage-1 EDM losses "
                         "on a corpus of generated synthetic videos.", epilog=_PRETRAIN_EPILOG,
                         formatter_class=HelpFormatter)
    pre.add_argument("--corpus", required=True, choices=("synthetic",), help="the corpus: 'synthetic' (generated)")
    pre.add_argument("--videos", required=True, type=int, metavar="N", help="number of corpus videos (>= 1)")
    pre.add_argument("--out", required=True, metavar="DIR", help="output folder (see below)")
    pre.add_argument("--steps", type=int, default=None, metavar="S", help="optimiser steps (default 200, smoke 6; >= 0)")
    pre.add_argument("--seed", type=int, default=0, help="seed of the nets and the sample draws (default 0)")
    pre.add_argument("--frames", type=int, default=None, metavar="T", help="frames per video (default 4; >= 2)")
    pre.add_argument("--height", type=int, default=None, metavar="PX", help="image height (default 48; >= 16)")
    pre.add_argument("--width", type=int, default=None, metavar="PX", help="image width (default 64; >= 16)")
    pre.add_argument("--net-width", type=int, default=None, metavar="C", help="ResNet-18 base width (default 16)")
    pre.add_argument("--pairs", type=int, default=None, metavar="S", help="pixel pairs per view pair (default 20000)")
    pre.add_argument("--joint", action="store_true", help="the joint stage-1 loss with the motion net (default off)")
    pre.add_argument("--view-pairs", type=int, default=None, metavar="K",
                     help="view pairs per optimiser step, the global batch (default 2; >= 1; under torchrun a "
                     "multiple of the number of processes)")
    pre.add_argument("--eval-videos", type=int, default=None, metavar="M",
                     help="evaluate on M held-out videos, pretrained vs untrained (default: no evaluation; >= 1)")
    pre.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                     help="optimiser steps between checkpoints (default 50; >= 1)")
    pre.add_argument("--json", default=None, metavar="FILE", help="write the report here too, atomically (default: only DIR/report.json)")
    add_amp_arg(pre, "the depth (and motion) net")
    _add_loss_args(pre, ("mean", 0.0), "the paper's")
    pre.add_argument("--scale-anchor", type=float, default=None, metavar="W",
                     help="weight of the scale anchor (mean log-depth held at the centre of the depth range; without "
                     "it the scale drifts to a depth bound) (default 0.1; 0 = off)")
    pre.add_argument("--smoke", action="store_true", help="tiny sizes (also NRSFM_KIT_SMOKE=1; default: off)")
    pre.add_argument("--quiet", action="store_true", help="no progress bars (default: shown)")
    pre.set_defaults(func=_pretrain, param_flags={"num_videos": "--videos", "net_width": "--net-width",
                                                  "num_pairs": "--pairs", "pairs_per_step": "--view-pairs"})


def pretrain_preset(tiny: bool):
    """The :class:`~nrsfm_kit.edm.pretrain.PretrainConfig` of ``depth pretrain`` (``tiny``: smoke sizes)."""
    from nrsfm_kit.edm.loss import EDMLossConfig
    from nrsfm_kit.edm.pretrain import PretrainConfig

    if tiny:
        return PretrainConfig(frames=3, height=32, width=48, steps=6, net_width=8, log_every=1,
                              loss=EDMLossConfig(num_pairs=2000, beta=0.3, beta_scale="residual", lookup="edge"))
    return PretrainConfig()


def _training_flags(cfg, args: argparse.Namespace) -> None:
    """``--amp``, ``--scale-anchor``, ``--normalization`` and ``--trim`` (both commands) into ``cfg``, checked."""
    cfg.amp = args.amp
    if args.scale_anchor is not None:
        cfg.scale_anchor = check_float_arg("--scale-anchor", args.scale_anchor, 0.0, strict=False)
    if args.normalization is not None:
        cfg.loss.normalization = args.normalization
    if args.trim is not None:
        check_float_arg("--trim", args.trim, 0.0, strict=False)
        if not args.trim < 1:
            raise ValueError(f"--trim: expected a fraction of pairs in [0, 1), found {args.trim}")
        cfg.loss.trim = float(args.trim)
    cfg.loss.__post_init__()
    cfg.__post_init__()


# nrsfm_kit.kernels.edm_loss.NORMALIZATIONS, spelt out: building the parser must not import torch (a test
# checks that the two agree)
LOSS_NORMALIZATIONS = ("mean", "median", "log")
# the EDM loss of `depth fit` (normalisation, trimmed fraction): chosen on the "tune" videos of the corpus by
# benchmarks/edm_heldout.py loss (rigid AbsRel, 6 videos: mean 0.175 vs 0.966 for the paper's "mean" / 0), then
# checked on the held-out videos (benchmarks/RESULTS.md); the teaching preset of notebook 12 keeps the paper's loss
FIT_LOSS = ("log", 0.2)


def _add_loss_args(p: argparse.ArgumentParser, default: tuple[str, float], why: str) -> None:
    p.add_argument("--normalization", choices=LOSS_NORMALIZATIONS, default=None,
                   help="per-view normalisation of the EDM loss: 'mean' (the paper), 'median', or 'log' (scale-"
                        "invariant log residual of each pair; see nrsfm_kit.kernels.edm_loss) "
                        f"(default {default[0]}: {why})")
    p.add_argument("--trim", type=float, default=None, metavar="Q",
                   help="leave the fraction Q in [0, 1) of the sampled pairs with the largest residuals out of the EDM "
                        f"loss (robust to independently moving parts under the rigid prior; default {default[1]:g}; "
                        "0 is the paper's loss)")


def _pretrain(args: argparse.Namespace) -> int:
    from nrsfm_kit.train import distributed as dd

    return dd.joined(_pretrain_run, args)  # under torchrun: in the process group (data-parallel training)


def _pretrain_run(args: argparse.Namespace) -> int:
    from nrsfm_kit.edm.pretrain import check_num_videos, evaluate_corpus, pretrain_corpus, untrained_depth_net
    from nrsfm_kit.train import distributed as dd
    from nrsfm_kit.utils.io import atomic_write_json

    check_num_videos(args.videos, "--videos")  # before any work
    for flag, v, lo in (("--steps", args.steps, 0), ("--frames", args.frames, 2), ("--height", args.height, 16),
                        ("--width", args.width, 16), ("--net-width", args.net_width, 1), ("--pairs", args.pairs, 1),
                        ("--seed", args.seed, 0), ("--eval-videos", args.eval_videos, 1),
                        ("--checkpoint-every", args.checkpoint_every, 1), ("--view-pairs", args.view_pairs, 1)):
        check_int_arg(flag, v, lo)
    if args.view_pairs is not None:
        dd.shard(args.view_pairs, "--view-pairs")  # torchrun: the view pairs of a step must split evenly
    if args.eval_videos is not None:
        check_num_videos(args.eval_videos, "--eval-videos")
    if args.json:
        check_output_file("--json", args.json)
    check_output_dir("--out", args.out)
    cfg = pretrain_preset(args.smoke or smoke())
    for name, v in (("frames", args.frames), ("height", args.height), ("width", args.width),
                    ("net_width", args.net_width), ("checkpoint_every", args.checkpoint_every),
                    ("pairs_per_step", args.view_pairs)):
        if v is not None:
            setattr(cfg, name, v)
    if args.pairs is not None:
        cfg.loss.num_pairs = args.pairs
        cfg.loss.__post_init__()
    cfg.joint = bool(args.joint)
    _training_flags(cfg, args)
    res = pretrain_corpus(args.videos, cfg, Path(args.out), seed=args.seed, steps=args.steps,
                          progress=not args.quiet)
    report = {"corpus": "synthetic", "videos": args.videos, "corpus_seeds": [s["seed"] for s in res.corpus],
              "checkpoint": str(res.checkpoint), "steps": cfg.steps if args.steps is None else args.steps,
              "resumed_from": res.resumed_from,
              "first_loss": res.history[0]["loss"] if res.history else None,
              "final_loss": res.history[-1]["loss"] if res.history else None,
              "processes": dd.world()[1]}
    if not dd.is_main():  # (data-parallel: rank 0 evaluates and reports, every rank holds the same model)
        return 0
    if args.eval_videos is not None:
        from nrsfm_kit.edm.pretrain import load_pretrained

        ck = load_pretrained(res.checkpoint)
        pre = evaluate_corpus(ck, args.eval_videos)
        base = evaluate_corpus(untrained_depth_net(ck, args.seed), args.eval_videos, frames=pre["size"][0],
                               height=pre["size"][1], width=pre["size"][2])
        report["heldout"] = {"pretrained": pre, "untrained": base}
    report = _clean(report)
    print(json.dumps(report, indent=2))
    atomic_write_json(Path(args.out) / "report.json", report)
    if args.json:
        atomic_write_json(args.json, report)
    return 0


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


def _write_outputs(out: Path, var: str, res, names: list[str], gt, max_depth: float | None = None) -> dict:
    """Depth maps (median-scaled to ``gt`` when given, over gt in (0, ``max_depth``)), previews and (variant
    embeddings) the embeddings."""
    from nrsfm_kit.edm.video_io import write_depth_maps, write_embeddings
    from nrsfm_kit.metrics.depth import median_scale

    depth = res.depth.detach()
    if gt is not None:
        mask = (gt > 0) if max_depth is None else (gt > 0) & (gt < max_depth)
        depth = depth * median_scale(depth, gt.to(depth.dtype), mask)[:, None, None]
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


def _check_init(args: argparse.Namespace) -> None:
    """--init: a pretrained depth checkpoint (errors name the file), exclusive with --encoder-weights."""
    if getattr(args, "init", None) is None:
        return
    if args.encoder_weights is not None:
        raise ValueError(f"--init: expected no --encoder-weights with it (both initialise the depth net), found "
                         f"--encoder-weights {args.encoder_weights}")
    from nrsfm_kit.edm.pretrain import load_pretrained

    ck = load_pretrained(args.init)
    found = ck["depth_config"].get("width")
    if args.net_width is not None and args.net_width != found:
        raise ValueError(f"--net-width: expected {found} (the net width of --init {args.init}) or unset, found "
                         f"{args.net_width}")


def _fit(args: argparse.Namespace) -> int:
    _check_encoder_weights(args)  # before any work (and before the lock creates --out)
    _check_init(args)
    prep = _prepare(args)  # every flag checked and the sequence read: bad inputs never create --out
    if not args.out:
        return _fit_run(args, prep)
    from nrsfm_kit.utils.io import folder_lock

    check_output_dir("--out", args.out)
    with folder_lock(args.out, "--out"):  # one run per output folder
        return _fit_run(args, prep)


def _sintel_scene(args: argparse.Namespace, frames: int):
    """The Sintel scene of --sequence (+ --sintel-seq / --sintel-depth), or None for another kind of sequence;
    --crop / --sintel-* with a non-Sintel sequence are refused."""
    from nrsfm_kit.data.sintel import find_sintel_scene, sintel_scene_path, sintel_split_folder

    seq = args.sequence
    is_sintel = args.sintel_seq is not None or (seq != "synthetic" and (
        sintel_scene_path(seq) is not None or sintel_split_folder(seq) is not None))
    if not is_sintel:
        for flag, v in (("--crop", args.crop), ("--sintel-depth", args.sintel_depth)):
            if v is not None:
                raise ValueError(f"{flag}: expected only with an MPI-Sintel sequence (<root>/training/final/<scene>,"
                                 f" or a Sintel root with --sintel-seq), found --sequence {seq}")
        return None
    if seq == "synthetic":
        raise ValueError("--sintel-seq: expected an MPI-Sintel root as --sequence, found 'synthetic'")
    if args.sintel_depth is not None:
        from nrsfm_kit.cli import check_input_dir

        check_input_dir("--sintel-depth", args.sintel_depth, "the MPI-Sintel depth download's root folder")
    return find_sintel_scene(seq, args.sintel_seq, depth_root=args.sintel_depth, max_frames=frames)


def _sintel_size(args: argparse.Namespace, crop: tuple[int, int], tiny: bool, preset_height: int) -> tuple[int, int]:
    """Working (H, W) of a Sintel run: the flags, the other side following the crop's aspect ratio; default the
    crop (smoke: height min(48, crop height)). At least 16x16, at most the crop."""
    ch, cw = crop
    H, W = args.height, args.width
    if H is None and W is None:
        H = min(preset_height, ch) if tiny else ch
    if W is None:
        W = max(1, round(H * cw / ch))
    if H is None:
        H = max(1, round(W * ch / cw))
    for flag, v, c in (("--height", H, ch), ("--width", W, cw)):
        if v > c:
            raise ValueError(f"{flag}: expected at most the crop's {flag[2:]} {c} (--crop {ch}x{cw}: the frames are "
                             f"downscaled after cropping, never enlarged), found {v}")
    if min(H, W) < 16:
        given = "--width" if args.height is None else "--height"
        raise ValueError(f"{given}: expected a working size of at least 16x16, found {H}x{W} (the other side follows "
                         f"the crop's aspect ratio {ch}x{cw}; give both --height and --width)")
    return H, W


def _prepare(args: argparse.Namespace) -> dict:
    """Flags checked and the sequence read (nothing written): {"tiny", "cfg", "T", "H", "W", "video", "names",
    "protocol" (Sintel) or None, "max_depth"}."""
    from nrsfm_kit.edm.training import preset_config

    tiny = args.smoke or smoke()
    cfg, size = preset_config(tiny)
    cfg.loss.normalization, cfg.loss.trim = FIT_LOSS  # unless --normalization / --trim say otherwise
    _training_flags(cfg, args)
    T, H, W = _check_args(args, size)
    prep = {"tiny": tiny, "cfg": cfg, "T": T, "protocol": None, "max_depth": None}
    if args.sequence == "synthetic" and args.sintel_seq is None:
        if args.crop is not None or args.sintel_depth is not None:
            _sintel_scene(args, T)  # raises: Sintel flags without a Sintel sequence
        from nrsfm_kit.edm.training import synthetic_video

        video = synthetic_video(T, H, W, seed=args.seed)
        return {**prep, "H": H, "W": W, "video": video, "names": [f"{t:06d}" for t in range(video.frames.shape[0])]}
    scene = _sintel_scene(args, T)
    if scene is not None:
        from nrsfm_kit.data.sintel import SINTEL_CROP, center_crop_box, load_sintel_protocol, parse_size
        from nrsfm_kit.metrics.depth import SINTEL_MAX_DEPTH

        crop = SINTEL_CROP if args.crop is None else parse_size(args.crop, "--crop")
        center_crop_box(scene.size, crop)  # crop: ... both sizes, before anything is read
        H, W = _sintel_size(args, crop, tiny, size["height"])
        if not args.quiet:
            print(f"reading MPI-Sintel {scene.scene} ({scene.pass_name} pass, frames {scene.frames[0]}.."
                  f"{scene.frames[-1]} of {scene.image_dir}), centre crop {crop[0]}x{crop[1]} of "
                  f"{scene.size[0]}x{scene.size[1]}, working size {H}x{W}, ground-truth flow as correspondences, "
                  f"evaluation where the ground-truth depth < {SINTEL_MAX_DEPTH:g} m", file=sys.stderr, flush=True)
        video, info = load_sintel_protocol(scene, crop, (H, W))
        if info["intrinsics_max_rel_change"] > 1e-6 and not args.quiet:
            print(f"note: the intrinsics change by up to {100 * info['intrinsics_max_rel_change']:.2g} % over the "
                  f"frames' .cam files; the EDM loss uses the first frame's", file=sys.stderr, flush=True)
        protocol = {"dataset": "MPI-Sintel", **info, "correspondences": "ground-truth optical flow (flow/<scene>), "
                    "occluded / unknown / leaving the crop dropped", "max_depth": SINTEL_MAX_DEPTH,
                    "median_scaling": "per image, over the evaluated pixels"}
        return {**prep, "H": H, "W": W, "video": video, "names": info["frames"], "protocol": protocol,
                "max_depth": SINTEL_MAX_DEPTH}
    from nrsfm_kit.edm.video_io import find_frames, load_frame_folder

    layout = find_frames(args.sequence, max_frames=T)  # the folder checked before any work
    if not args.quiet:
        gt = f", ground-truth depth from {layout.root / 'depth'}" if layout.depth is not None else ""
        print(f"reading {len(layout.names)} frames of {layout.frames[0].parent} at {H}x{W}, DIS optical flow{gt}",
              file=sys.stderr, flush=True)
    video = load_frame_folder(args.sequence, H, W, max_frames=T)
    return {**prep, "H": H, "W": W, "video": video, "names": layout.names}


def _fit_run(args: argparse.Namespace, prep: dict) -> int:
    from nrsfm_kit.edm.training import constant_baseline, fit_sequence
    from nrsfm_kit.utils.io import atomic_write_json

    cfg, H, W, video, names = prep["cfg"], prep["H"], prep["W"], prep["video"], prep["names"]
    max_depth = prep["max_depth"]
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
    if getattr(args, "init", None) is not None:
        from nrsfm_kit.edm.pretrain import load_pretrained

        cfg.init_from = str(args.init)
        cfg.width = int(load_pretrained(args.init)["depth_config"]["width"])
    cfg.seed = args.seed
    cfg.progress = not args.quiet
    if args.checkpoint_every is not None:
        cfg.checkpoint_every = args.checkpoint_every
    variants = ("embeddings", "rigid") if args.variant == "both" else (args.variant,)
    report = {"sequence": args.sequence, "frames": int(video.frames.shape[0]), "size": [H, W],
              **({} if prep["protocol"] is None else {"protocol": prep["protocol"]}),
              "ground_truth_depth": video.depth is not None, "encoder_weights": cfg.encoder_weights,
              **({"init": cfg.init_from} if cfg.init_from is not None else {}), "results": {}}
    if video.depth is not None:
        report["constant_baseline"] = constant_baseline(video, max_depth)
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
        res = fit_sequence(video, var, cfg, out_dir=Path(args.out) / "checkpoints" / var if args.out else None,
                           eval_max_depth=max_depth)
        report["results"][var] = {
            "depth_metrics": res.metrics,
            "segmentation": res.segmentation,
            "final_loss": res.history[-1]["loss"] if res.history else None,
            "depth_range": [float(res.depth.min()), float(res.depth.max())],
        }
        if args.out:
            report["results"][var]["outputs"] = _write_outputs(Path(args.out), var, res, names, video.depth,
                                                               max_depth)
    report = _clean(report)
    print(json.dumps(report, indent=2))
    if args.out:
        atomic_write_json(Path(args.out) / "report.json", report)
    if args.json:
        atomic_write_json(args.json, report)
    return 0
