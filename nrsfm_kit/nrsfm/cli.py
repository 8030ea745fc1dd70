"""``nrsfm-kit nrsfm fit``: fit one NRSfM method to a .mat sequence or a synthetic spec and report metrics.

Examples::

    nrsfm-kit nrsfm fit --method em-ppca --data $NRSFM_KIT_DATA/nrsfm/pickup.mat
    nrsfm-kit nrsfm fit --method dnrsfm --data synthetic:skeleton,frames=256,noise=0.05 --epochs 50 --json out.json
    nrsfm-kit nrsfm fit --method prrrn --data yoga.mat --out runs/yoga   # checkpoints, resumes

A synthetic spec is ``synthetic:<kind>[,key=value...]`` with keys ``frames``, ``points``, ``motion``,
``camera``, ``noise``, ``missing``, ``seed``, ``rank`` (see :func:`nrsfm_kit.data.synthetic_nrsfm`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

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


def load_sequence(data: str) -> NRSfMSequence:
    """A sequence from a path to a .mat file or a ``synthetic:<kind>[,key=value...]`` spec."""
    from nrsfm_kit.data import load_nrsfm_mat, synthetic_nrsfm

    if data.startswith("synthetic:"):
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
        return synthetic_nrsfm(**kwargs)
    path = Path(data)
    if not path.exists():
        raise FileNotFoundError(f"--data: {path} does not exist")
    return load_nrsfm_mat(path)


def _fit(args: argparse.Namespace) -> int:
    from nrsfm_kit.nrsfm.fit import LearnedFitConfig, fit_nrsfm
    from nrsfm_kit.utils.io import atomic_write_json

    seq = load_sequence(args.data)
    if args.epochs is not None and args.epochs < 0:
        raise ValueError(f"--epochs: expected >= 0, found {args.epochs}")
    if args.restarts < 1:
        raise ValueError(f"--restarts: expected >= 1, found {args.restarts}")
    cfg = LearnedFitConfig(seed=args.seed, progress=not args.quiet, restarts=args.restarts)
    _, metrics = fit_nrsfm(seq, args.method, epochs=args.epochs, config=cfg, out_dir=args.out)
    width = max(len(k) for k in metrics)
    for k, v in metrics.items():
        print(f"{k:<{width}}  {v:.6g}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    if args.json:
        atomic_write_json(Path(args.json), metrics)
        print(f"wrote {args.json}")
    return 0


def register(subparsers) -> None:
    """Add ``nrsfm fit`` to the ``nrsfm-kit`` command."""
    p = subparsers.add_parser("nrsfm", help="non-rigid structure from motion (TK, EM-PPCA, Deep NRSfM, PR-RRN)")
    sub = p.add_subparsers(dest="nrsfm_command", required=True)
    f = sub.add_parser("fit", help="fit a method to a sequence and report e3D and the other metrics")
    f.add_argument("--method", required=True, choices=method_names())
    f.add_argument("--data", required=True, help="FILE.mat (X (3,P,F) or W (2F,P)[+S]) or synthetic:<kind>[,k=v...]")
    f.add_argument("--epochs", type=int, default=None, help="training epochs (learned) / EM iterations (em-ppca)")
    f.add_argument("--json", default=None, help="write the metrics as JSON here (atomically)")
    f.add_argument("--out", default=None, help="checkpoint folder for the learned methods (resumes)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--restarts", type=int, default=1,
                   help="learned methods: train N times (seeds seed..seed+N-1), keep the lowest reprojection error")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.set_defaults(func=_fit)
