"""``nrsfm-kit nrsfm fit``: fit one NRSfM method to a .mat sequence or a synthetic spec and report metrics.

Examples::

    nrsfm-kit nrsfm fit --method em-ppca --data $NRSFM_KIT_DATA/nrsfm/pickup.mat
    nrsfm-kit nrsfm fit --method dnrsfm --data synthetic:skeleton,frames=256,noise=0.05 --epochs 50 --json out.json
    nrsfm-kit nrsfm fit --method prrrn --data yoga.mat --out runs/yoga   # checkpoints, resumes
    torchrun --nproc_per_node 2 -m nrsfm_kit.cli nrsfm fit --method dnrsfm --data yoga.mat --out runs/yoga
                                                            # data-parallel, 2 processes (rank 0 writes)

A synthetic spec is ``synthetic:<kind>[,key=value...]`` with keys ``frames``, ``points``, ``motion``,
``camera``, ``noise``, ``missing``, ``seed``, ``rank`` (see :func:`nrsfm_kit.data.synthetic_nrsfm`).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TYPE_CHECKING

from nrsfm_kit.cli import HelpFormatter, check_input_file, check_output_dir, check_output_file
from nrsfm_kit.nrsfm.registry import method_names  # the method names, without importing the methods (torch)

if TYPE_CHECKING:  # the package (torch) is imported only when a command runs: `nrsfm-kit --help` stays fast
    from nrsfm_kit.data.types import NRSfMSequence

_SPEC_KEYS = {
    "frames": ("num_frames", int),
    "points": ("num_points", int),
    "motion": ("motion", str),
    "camera": ("camera", str),
    "noise": ("noise_ratio", float),
    "missing": ("missing_ratio", float),
    "seed": ("seed", int),
    "rank": ("rank", int),
}
# the built-in methods: what --epochs means (None: not iterative) and its smallest value; learned ones train
_METHODS = {
    "tk": ("Tomasi-Kanade rigid factorisation (baseline, no iterations)", None, None),
    "em-ppca": ("EM-PPCA, Torresani et al. 2008 (3 deformation modes)", "EM iterations (default 100)", 1),
    "dnrsfm": ("Deep NRSfM, Kong & Lucey 2019 (learned, trained on the sequence)",
               "training epochs (default: the data-scaled budget)", 0),
    "prrrn": ("PR-RRN, Zeng et al. 2021 (learned, trained on the sequence)",
              "training epochs (default: the data-scaled budget)", 0),
}
_LEARNED = ("dnrsfm", "prrrn")
# metric: (what it measures, its unit; {unit} = the units of the sequence)
_METRICS = {
    "e3d": ("relative 3D error ||S - S*||_F / ||S*||_F per frame after per-frame Procrustes, 0 = exact",
            "unit-free"),
    "e3d_seq": ("the same with one alignment for the whole sequence", "unit-free"),
    "mpjpe": ("mean per-point 3D error after per-frame Procrustes", "{unit}"),
    "stress": ("EDM stress-1 of the inter-point distances, alignment-free", "unit-free"),
    "reproj": ("mean 2D reprojection error over the visible points", "{unit}"),
    "coherence": ("Deep NRSfM dictionary coherence, lower = better conditioned", "unit-free"),
}
_METRIC_LINES = "\n".join(f"  {k:<9} {d} ({u.format(unit='units of W: metres for skeleton / category')})"
                          for k, (d, u) in _METRICS.items())
_EPILOG = f"""\
methods:
{chr(10).join(f"  {n:<9} {d}" for n, (d, _, _) in _METHODS.items())}

--data synthetic:<kind>[,key=value...]  (orthographic, exact 3D ground truth; see nrsfm-kit data synth --help)
  kind       skeleton (31 joints, metres) | lowrank (surface patch ~1 unit across) | category (12 car keypoints, m)
  frames=F   number of frames (default 200, >= 2)
  points=P   points per frame (lowrank only, default 40; skeleton has 31, category 12)
  motion=M   walking | waving | bending (default walking; the tempo for lowrank; ignored for category)
  camera=C   random (a uniform rotation per frame) | smooth (an orbit) (default random)
  noise=R    Gaussian noise on W, ||noise||_F / ||W||_F = R (default 0)
  missing=R  fraction of (frame, point) observations missing, in [0, 1) (default 0)
  seed=S     random seed (default 0)
  rank=K     lowrank only: shape-basis rank, 1 <= K < P (default 3)
  e.g. synthetic:skeleton,frames=256,noise=0.05 or synthetic:lowrank,frames=40,points=12,rank=2

metrics (printed, and written by --json with their units under "units"):
{_METRIC_LINES}
  reproj alone is reported when the sequence has no 3D ground truth.

learned methods, budget: without --epochs a run gets 2400 * sqrt(F / 300) optimiser steps (F frames; the
  method's batch) and stops early once the reprojection loss over the whole sequence has converged; --epochs N
  trains exactly N epochs instead. These defaults were chosen leave-one-sequence-out (benchmarks/RESULTS.md).

learned methods, --restarts N: one training can land on a wrong-depth solution that reprojects as well as a good
  one. --restarts 3 --selection shape_rank keeps, among the runs within 2x the lowest reprojection error, the one
  whose deformation is the most compact (the energy outside 3 shape modes, no 3D used). Measured on 12 sequences x
  2 methods, rule chosen leave-one-sequence-out: within 10 % of the best of the three on 18 of 24, mean e3D 0.076
  against 0.090 for one run (benchmarks/RESULTS.md).

--out DIR (learned methods): DIR/checkpoint.pt (and checkpoint.prev.pt, the one before), metrics.json and
  settings.json (method, model, seed and the sequence's fingerprint); the same command resumes from DIR exactly
  where it stopped, even after a kill (with a larger --epochs it trains further); a DIR written for another
  method, sequence or seed is refused (exit 2), so is a DIR another run is using. With --restarts N:
  DIR/restart_<k>/ per run.

learned methods on several processes (GPUs, machines), data-parallel:
  torchrun --nproc_per_node N -m nrsfm_kit.cli nrsfm fit --method dnrsfm|prrrn ...
  every process draws the same mini-batch of the method's batch size (32 for dnrsfm, 64 for prrrn, capped at F)
  and trains on its 1/N of it, gradients averaged: the same training as one process, up to float round-off. The
  batch must split evenly (exit 2 otherwise). Rank 0 alone prints, writes --json and --out (only its machine needs
  the folder); the same torchrun command resumes a killed run.
"""


def _spec_error(data: str, exc: ValueError) -> ValueError:
    """A synthetic_nrsfm error about ``num_frames`` etc. restated with the spec's key and --data."""
    names = {v[0]: k for k, v in _SPEC_KEYS.items()} | {"kind": "kind"}
    msg = str(exc)
    m = re.match(r"^(\w+): (.*)$", msg, re.S)
    if m and m.group(1) in names:
        return ValueError(f"--data: {names[m.group(1)]} in {data!r}: {m.group(2)}")
    return ValueError(f"--data {data!r}: {msg}")


def load_sequence(data: str) -> NRSfMSequence:
    """A sequence from a path to a .mat file or a ``synthetic:<kind>[,key=value...]`` spec."""
    if data.startswith("synthetic:"):
        from nrsfm_kit.data import synthetic_nrsfm

        parts = [p for p in data[len("synthetic:"):].split(",") if p]
        if not parts:
            raise ValueError(f"--data: expected synthetic:<kind>[,key=value...], found {data!r}")
        kwargs: dict = {"kind": parts[0]}
        for item in parts[1:]:
            if "=" not in item:
                raise ValueError(f"--data: expected key=value in the synthetic spec, found {item!r}")
            key, value = item.split("=", 1)
            if key not in _SPEC_KEYS:
                raise ValueError(f"--data: expected a key among {sorted(_SPEC_KEYS)}, found {key!r}")
            name, typ = _SPEC_KEYS[key]
            try:
                kwargs[name] = typ(value)
            except ValueError:
                raise ValueError(f"--data: expected {typ.__name__} for {key}, found {value!r}") from None
        try:
            return synthetic_nrsfm(**kwargs)
        except ValueError as exc:
            raise _spec_error(data, exc) from None
    from nrsfm_kit.data import load_nrsfm_mat

    return load_nrsfm_mat(check_input_file("--data", data, "an NRSfM .mat file or synthetic:<kind>[,k=v...]"))


def _units(data: str) -> str:
    if data.startswith("synthetic:"):
        kind = data[len("synthetic:"):].split(",")[0]
        return "metres" if kind in ("skeleton", "category") else "units of W"
    return f"units of W in {Path(data).name}"


def _check_args(args: argparse.Namespace) -> None:
    """Every flag checked before the sequence is loaded or anything trains."""
    method = args.method
    _, epochs_meaning, epochs_min = _METHODS.get(method, (None, "epochs", 0))
    if args.epochs is not None:
        if epochs_meaning is None:
            raise ValueError(f"--epochs: expected no value for {method} (it has no iterations), found {args.epochs}")
        if args.epochs < epochs_min:
            raise ValueError(f"--epochs: expected >= {epochs_min} ({epochs_meaning.split(' (')[0]} of {method}), "
                             f"found {args.epochs}")
    if args.restarts < 1:
        raise ValueError(f"--restarts: expected >= 1, found {args.restarts}")
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise ValueError(f"--checkpoint-every: expected an integer >= 1, found {args.checkpoint_every}")
    if args.seed < 0:
        raise ValueError(f"--seed: expected an integer >= 0, found {args.seed}")
    if method in _METHODS and method not in _LEARNED:
        for flag, given in (("--out", args.out is not None), ("--restarts", args.restarts != 1),
                            ("--selection", args.selection != "shape_rank"),
                            ("--checkpoint-every", args.checkpoint_every is not None), ("--amp", args.amp is not None)):
            if given:
                raise ValueError(f"{flag}: expected only with the learned methods {_LEARNED}, found it with {method}")
    if args.json is not None:
        check_output_file("--json", args.json)
    if args.out is not None:
        check_output_dir("--out", args.out)
    if not args.data.startswith("synthetic:"):
        check_input_file("--data", args.data, "an NRSfM .mat file or synthetic:<kind>[,k=v...]")


def _fit(args: argparse.Namespace) -> int:
    from nrsfm_kit.train import distributed as dd

    return dd.joined(_fit_run, args)  # under torchrun: in the process group (data-parallel training)


def _fit_run(args: argparse.Namespace) -> int:
    _check_args(args)
    from dataclasses import replace

    from nrsfm_kit.nrsfm.fit import LearnedFitConfig, fit_nrsfm
    from nrsfm_kit.nrsfm.learned import LearnedMethod, check_out_dir
    from nrsfm_kit.nrsfm.registry import get_method
    from nrsfm_kit.train import distributed as dd
    from nrsfm_kit.utils.io import atomic_write_json

    seq = load_sequence(args.data)
    cfg = LearnedFitConfig(seed=args.seed, progress=not args.quiet, restarts=args.restarts, amp=args.amp,
                           selection=args.selection)
    if args.checkpoint_every is not None:
        cfg = replace(cfg, checkpoint_every=args.checkpoint_every)
    if args.out is not None and isinstance(get_method(args.method), LearnedMethod):
        # settings.json in --out (method, model, seed, sequence) must match: checked before training
        run_cfg = cfg if args.epochs is None else replace(cfg, epochs=args.epochs)
        dd.main_only(check_out_dir, seq, args.method, args.out, config=run_cfg)
    _, metrics = fit_nrsfm(seq, args.method, epochs=args.epochs, config=cfg, out_dir=args.out)
    if not dd.is_main():  # (data-parallel: rank 0 reports, every rank holds the same model)
        return 0
    unit = _units(args.data)
    units = {k: u.format(unit=unit) for k, (_, u) in _METRICS.items() if k in metrics}
    width = max(len(k) for k in metrics)
    for k, v in metrics.items():
        shown = f"{v:.6g}" if isinstance(v, float) else str(v)
        print(f"{k:<{width}}  {shown:<12}  {units[k]}" if k in units else f"{k:<{width}}  {shown}")
    if args.json:
        atomic_write_json(Path(args.json), {**metrics, "units": units})
        print(f"wrote {args.json}")
    return 0


def register(subparsers) -> None:
    """Add ``nrsfm fit`` to the ``nrsfm-kit`` command."""
    p = subparsers.add_parser("nrsfm", help="non-rigid structure from motion (TK, EM-PPCA, Deep NRSfM, PR-RRN)",
                              description="Non-rigid structure from motion: 3D shapes of every frame from 2D tracks.")
    sub = p.add_subparsers(dest="nrsfm_command", required=True, metavar="{fit}")
    f = sub.add_parser("fit", help="fit a method to a sequence and report e3D and the other metrics",
                       description="Fit one method to one sequence (orthographic cameras) and report its metrics.",
                       epilog=_EPILOG, formatter_class=HelpFormatter)
    f.add_argument("--method", required=True, choices=method_names(), help="the method (see below)")
    f.add_argument("--data", required=True, metavar="FILE.mat|synthetic:<kind>[,k=v...]",
                   help="a .mat file (X (3, P, F) in the camera frame, or W (2F, P) [+ S (3F, P)]; NaN = missing) "
                        "or a synthetic spec (keys below)")
    f.add_argument("--epochs", type=int, default=None, metavar="N",
                   help="dnrsfm / prrrn: training epochs (>= 0; default: the data-scaled budget with convergence "
                        "stopping, see below); em-ppca: EM iterations (default 100, >= 1); not for tk")
    f.add_argument("--json", default=None, metavar="FILE",
                   help="write the metrics (and their units) as JSON here, atomically (default: print only)")
    f.add_argument("--out", default=None, metavar="DIR",
                   help="learned methods: checkpoint folder, resumed by the same command (default: none; see below)")
    f.add_argument("--seed", type=int, default=0,
                   help="learned methods: random seed of the initialisation and minibatches (default 0)")
    f.add_argument("--restarts", type=int, default=1, metavar="N",
                   help="learned methods: train N times (seeds seed..seed+N-1) and keep the run --selection "
                        "picks, no 3D used (default 1; 3 is worth it, see below)")
    f.add_argument("--selection", choices=("shape_rank", "method", "reprojection"), default="shape_rank",
                   help="with --restarts: among the runs within 2x the lowest reprojection error, the most "
                        "compact deformation (shape_rank, default), the method's own measure (method), or just "
                        "the lowest reprojection error (reprojection)")
    f.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                   help="learned methods with --out: optimiser steps between checkpoints (default 500; >= 1)")
    from nrsfm_kit.cli import add_amp_arg

    add_amp_arg(f, "the learned methods' network")
    f.add_argument("--quiet", action="store_true", help="no progress bar (default: a tqdm bar on stderr)")
    f.set_defaults(func=_fit, param_flags={"out_dir": "--out", "epochs": "--epochs", "restarts": "--restarts",
                                           "checkpoint_every": "--checkpoint-every"})
