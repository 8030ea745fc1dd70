"""``nrsfm-kit track``: train, evaluate and run the learned non-rigid tracker (Neural Non-Rigid Tracking).

Examples::

    nrsfm-kit track train --stage all --data synthetic --preset teaching --out build/track
    nrsfm-kit track eval --data synthetic --checkpoint build/track/tracker.pt --json build/track/eval.json
    nrsfm-kit track eval --data $NRSFM_KIT_DATA/deepdeform --correspondences dis --json dd.json
    nrsfm-kit track pair --source-color S.jpg --source-depth S.png --target-color T.jpg --target-depth T.png \\
        --intrinsics intrinsics.txt --mask M.png --correspondences dis --out build/pair
    nrsfm-kit track ablation --preset teaching --out build/ablation --json build/ablation/table1.json
"""

from __future__ import annotations

import json
from pathlib import Path

_STAGE_CHOICES = ("pretrain", "flow", "solver", "mask", "refine", "supervised", "all")


def register(subparsers) -> None:
    p = subparsers.add_parser("track", help="Neural Non-Rigid Tracking: train / eval / track a pair / Table 1",
                              description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="track_command", required=True)

    t = sub.add_parser("train", help="train the tracker's stages (resumes from --out)")
    t.add_argument("--stage", choices=_STAGE_CHOICES, default="all",
                   help="stage to train (default all: pretrain unless the preset ships pre-trained Phi weights, then "
                        "the four stages)")
    t.add_argument("--data", default="synthetic", help="'synthetic' or a DeepDeform root (<root>/train/<seq>/...)")
    t.add_argument("--preset", default="teaching", help="teaching (CPU) | paper (GPU) | smoke")
    t.add_argument("--out", required=True, help="output folder (checkpoints per stage, tracker.pt)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--steps", type=int, default=None, help="override the preset's steps of every trained stage")
    t.add_argument("--pwcnet", default=None, help="a pretrained PWC-Net checkpoint (port layout) to start Phi from")
    t.add_argument("--checkpoint-every", type=int, default=50, metavar="N",
                   help="optimiser steps between checkpoints of each stage (default 50; >= 1)")
    t.set_defaults(func=_train)

    e = sub.add_parser("eval", help="EPE 3D and Graph Error 3D (mm, pooled over pairs)")
    e.add_argument("--data", default="synthetic", help="'synthetic' (test split of --preset) or a DeepDeform root")
    e.add_argument("--split", default=None, help="DeepDeform split folder (default: val, else train)")
    e.add_argument("--checkpoint", default=None, help="tracker.pt (needed for learned correspondences)")
    e.add_argument("--correspondences", choices=("learned", "dis", "gt"), default="learned")
    e.add_argument("--preset", default="teaching", help="sizes of the synthetic test split")
    e.add_argument("--filter-occluded", action="store_true", help="drop pairs > 30%% occluded (sec. 5.2)")
    e.add_argument("--json", default=None, help="write the metrics here")
    e.set_defaults(func=_eval)

    q = sub.add_parser("pair", help="track one RGB-D pair and write deformed.ply, .sflow/.oflow, npz, json")
    for name in ("source-color", "source-depth", "target-color", "target-depth", "intrinsics"):
        q.add_argument(f"--{name}", required=True)
    q.add_argument("--mask", default=None, help="source object mask PNG (non-zero = object)")
    q.add_argument("--graph", default=None, help="graph folder in the reference layout (graph_nodes/, ...)")
    q.add_argument("--graph-name", default=None, help="file stem in the graph folder (default: the only one)")
    q.add_argument("--correspondences", choices=("learned", "dis"), default="learned")
    q.add_argument("--checkpoint", default=None, help="tracker.pt (for learned correspondences)")
    q.add_argument("--depth-scale", type=float, default=1000.0, help="depth units per metre (default 1000)")
    q.add_argument("--out", required=True)
    q.set_defaults(func=_pair)

    a = sub.add_parser("ablation", help="Table 1 on synthetic pairs (seeds, mean and std)")
    a.add_argument("--preset", default="teaching")
    a.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    a.add_argument("--out", required=True)
    a.add_argument("--json", default=None)
    a.set_defaults(func=_ablation)


def _preset(name: str, steps: int | None = None):
    from dataclasses import replace

    from .training import preset

    p = preset(name)
    if steps is not None:
        if steps < 0:
            raise ValueError(f"--steps: expected >= 0, found {steps}")
        p.stages = {k: replace(s, steps=steps) for k, s in p.stages.items()}
    return p


def deepdeform_split(root: str, split: str | None) -> tuple[Path, str]:
    """``--data`` / ``--split`` of the topic CLIs: the DeepDeform root and its split (default: val, test, else
    train); FileNotFoundError naming ``--data`` when the folder or every split is missing."""
    r = Path(root)
    if not r.is_dir():
        raise FileNotFoundError(f"--data: expected 'synthetic' or a DeepDeform root folder, found no folder {r}")
    if split is None:
        split = next((s for s in ("val", "test", "train") if (r / s).is_dir()), None)
        if split is None:
            raise FileNotFoundError(f"--data {r}: expected a split folder (val/, test/ or train/), found none")
    return r, split


def _deepdeform(root: str, split: str | None):
    from .data import deepdeform_samples

    return deepdeform_samples(*deepdeform_split(root, split))


def _train(args) -> int:
    from nrsfm_kit.train import distributed as dd

    return dd.joined(_train_run, args)  # under torchrun: in the process group (data-parallel training)


def _train_run(args) -> int:
    from nrsfm_kit.train import distributed as dd
    from nrsfm_kit.train import seeded

    from .training import STAGES, load_tracker, save_tracker, train_tracker

    p = _preset(args.preset, args.steps)
    from nrsfm_kit.cli import check_output_dir

    out = check_output_dir("--out", args.out)  # unusable: refused before any data is built
    if args.checkpoint_every < 1:
        raise ValueError(f"--checkpoint-every: expected an integer >= 1, found {args.checkpoint_every}")
    if args.stage == "all":
        stages = STAGES if (p.pretrained_phi is not None or args.pwcnet is not None) else ("pretrain", *STAGES)
        if "pretrain" in stages and p.stages["pretrain"].steps == 0 and dd.is_main():
            print("note: no pre-trained PWC-Net (--pwcnet) and this preset has no pretrain steps: Phi starts from "
                  "random weights (the paper starts from a PWC-Net trained on FlyingChairs + Things)")
    else:
        stages = (args.stage,)
    def data():
        if args.data != "synthetic":
            return _deepdeform(args.data, "train"), None
        from .data import flow_pretraining_pairs, synthetic_tracking_pairs

        return (synthetic_tracking_pairs("train", p.train_pairs, p.height, p.width, seed=args.seed,
                                         cache_dir=out / "cache"),
                flow_pretraining_pairs(p.flow_pairs, p.height, p.width, seed=args.seed, cache_dir=out / "cache")
                if "pretrain" in stages else None)

    train, flow = dd.main_first(data)  # several processes: rank 0 builds (and caches) the pairs, the others read them
    tracker = None
    order = ("pretrain", "flow", "solver", "mask", "refine")
    if args.stage == "flow" or (args.stage == "all" and stages[0] == "flow"):
        prev = out / "pretrain" / "tracker.pt"
        if prev.is_file():
            tracker = load_tracker(prev, p.tracker)
        elif p.pretrained_phi is not None and args.pwcnet is None:
            from nrsfm_kit.models.pwcnet import load_pwcnet_state_dict

            from .model import NeuralTracker

            with seeded(args.seed):
                tracker = NeuralTracker(p.tracker)
            load_pwcnet_state_dict(tracker.phi, p.pretrained_phi)
    elif args.stage in order[2:]:
        prev = out / order[order.index(args.stage) - 1] / "tracker.pt"
        if prev.is_file():
            tracker = load_tracker(prev, p.tracker)
    elif args.stage == "supervised" and (out / "flow" / "tracker.pt").is_file():
        tracker = load_tracker(out / "flow" / "tracker.pt", p.tracker)
    if args.pwcnet is not None:
        from nrsfm_kit.models.pwcnet import load_pwcnet_state_dict

        from .model import NeuralTracker

        if tracker is None:
            with seeded(args.seed):
                tracker = NeuralTracker(p.tracker)
        load_pwcnet_state_dict(tracker.phi, args.pwcnet)
    tracker, results = train_tracker(p, train, stages=stages, out_dir=out, seed=args.seed, flow_samples=flow,
                                     tracker=tracker, checkpoint_every=args.checkpoint_every)
    if not dd.is_main():  # (data-parallel: rank 0 writes and reports, every rank holds the same tracker)
        return 0
    save_tracker(out / "tracker.pt", tracker, stages=list(stages), preset=args.preset)
    for stage, r in results.items():
        last = "already trained" if r is None else {k: v for k, v in r.history[-1].items()} if r.history else {}
        print(f"{stage}: {last}")
    print(f"wrote {out / 'tracker.pt'}")
    return 0


def _print_metrics(m: dict) -> None:
    print(f"EPE 3D        {m['epe_3d_mm']:.2f} mm   ({m['points']} points)")
    print(f"Graph Error 3D {m['graph_error_3d_mm']:.2f} mm   ({m['nodes']} nodes)")
    print(f"pairs {m['pairs']} (solved {m['solved_pairs']}, skipped {m['skipped_pairs']})")


def _eval(args) -> int:
    from nrsfm_kit.utils.io import atomic_write_json

    from .evaluate import evaluate
    from .model import NeuralTracker, TrackerConfig
    from .training import load_tracker

    p = _preset(args.preset)
    if args.correspondences == "learned" and args.checkpoint is None:
        raise ValueError("--checkpoint: expected a tracker.pt for learned correspondences, found none "
                         "(or use --correspondences dis / gt)")
    tracker = load_tracker(args.checkpoint) if args.checkpoint else NeuralTracker(TrackerConfig(width=0.0625,
                                                                                               use_weights=False))
    if args.data == "synthetic":
        from .data import synthetic_tracking_pairs

        samples = synthetic_tracking_pairs("test", p.test_pairs, p.height, p.width)
    else:
        samples = _deepdeform(args.data, args.split)
    m = evaluate(tracker, samples, correspondences=args.correspondences, filter_occluded=args.filter_occluded,
                 progress=True)
    m.update(data=args.data, correspondences=args.correspondences, checkpoint=args.checkpoint)
    _print_metrics(m)
    if args.json:
        atomic_write_json(args.json, m)
    return 0


def _pair(args) -> int:
    from .pair import read_rgbd_pair, track_pair
    from .training import load_tracker

    pair = read_rgbd_pair(args.source_color, args.source_depth, args.target_color, args.target_depth,
                          args.intrinsics, args.mask, depth_scale=args.depth_scale)
    tracker = None
    if args.correspondences == "learned":
        if args.checkpoint is None:
            raise ValueError("--checkpoint: expected a tracker.pt for learned correspondences, found none "
                             "(use --correspondences dis to track without a trained model)")
        tracker = load_tracker(args.checkpoint)
    s = track_pair(pair, args.out, tracker=tracker, correspondences=args.correspondences, graph_dir=args.graph,
                   graph_name=args.graph_name)
    print(json.dumps({k: s[k] for k in ("nodes", "valid_nodes", "tracked_points", "solved", "mean_translation_m")}))
    print(f"wrote {', '.join(s['files'].values())}")
    return 0


def _ablation(args) -> int:
    from .evaluate import ABLATION_ROWS, ablation

    p = _preset(args.preset)
    out = Path(args.out)
    r = ablation(p, seeds=tuple(args.seeds), out_dir=out, data_cache=out / "cache",
                 json_path=args.json or out / "table1.json")
    for row in ABLATION_ROWS:
        s = r["summary"][row]
        print(f"{s['label']:<36} EPE 3D {s['epe_3d_mm'][0]:8.2f} +- {s['epe_3d_mm'][1]:6.2f} mm   "
              f"Graph {s['graph_error_3d_mm'][0]:8.2f} +- {s['graph_error_3d_mm'][1]:6.2f} mm")
    for k, ok in r["ordering"].items():
        print(f"{'met' if ok else 'NOT met'}: {k}")
    return 0
