"""nrsfm-kit match: train and evaluate DeepDeform's matcher, match / track a pair, make dense labels.

Examples::

    nrsfm-kit match train --preset teaching --out build/match
    nrsfm-kit match eval --checkpoint build/match/matcher.pt --json build/match/table1.json
    nrsfm-kit match eval --data $NRSFM_KIT_DATA/deepdeform --scale 0.3 --json dd.json
    nrsfm-kit match pair --source-color S.jpg --source-depth S.png --target-color T.jpg --target-depth T.png \\
        --intrinsics intrinsics.txt --mask M.png --track --out build/match-pair
    nrsfm-kit match dense --seq $NRSFM_KIT_DATA/deepdeform/train/seq258 --object shirt --source 0 --target 110 \\
        --out build/dense
"""

from __future__ import annotations

import json
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("match", help="DeepDeform: matcher train / eval (Table 1) / pair / dense labels",
                              description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="match_command", required=True)
    t = sub.add_parser("train", help="train the Siamese heatmap matcher (resumes from --out)")
    t.add_argument("--preset", default="teaching", help="teaching (CPU) | paper (GPU) | smoke (default teaching)")
    t.add_argument("--data", default="synthetic", help="'synthetic' or a DeepDeform root with sparse / dense labels (default synthetic)")
    t.add_argument("--out", required=True, help="output folder (a checkpoint per stage, matcher.pt; no default)")
    t.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    t.add_argument("--steps", type=int, default=None, help="override every stage's steps (default: the preset's)")
    t.add_argument("--device", default=None, help="torch device to train on (default: cuda when available, else cpu)")
    t.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                   help="optimiser steps between checkpoints of each stage (default: max(100, the preset's log interval))")
    from nrsfm_kit.cli import add_amp_arg

    add_amp_arg(t, "the matcher")
    t.set_defaults(func=_train)
    e = sub.add_parser("eval", help="the matching table (Table 1) against SIFT / ORB / AKAZE / FPFH / DIS")
    e.add_argument("--data", default="synthetic", help="'synthetic' (test split) or a DeepDeform root (default synthetic)")
    e.add_argument("--split", default=None, help="DeepDeform split folder (default: val, test, else train)")
    e.add_argument("--checkpoint", default=None, help="matcher.pt (default: the shipped teaching matcher)")
    e.add_argument("--preset", default="teaching", help="sizes of the synthetic test split (default teaching)")
    e.add_argument("--points", type=int, default=None, help="points per pair (default: the preset's)")
    e.add_argument("--scale", type=float, default=1.0, help="resize the pairs by this factor first (default 1)")
    e.add_argument("--json", default=None, help="write the table here (default: not written)")
    e.set_defaults(func=_eval)
    q = sub.add_parser("pair", help="match one RGB-D pair (matches.json); --track also deforms the source")
    for name in ("source-color", "source-depth", "target-color", "target-depth", "intrinsics"):
        q.add_argument(f"--{name}", required=True, help=f"{name.replace('-', ' ')} file (no default)")
    q.add_argument("--mask", default=None, help="source object mask PNG, non-zero = object (default: none)")
    q.add_argument("--graph", default=None, help="graph folder in the reference layout (default: built on the source)")
    q.add_argument("--graph-name", default=None, help="file stem in the graph folder (default: the only one)")
    q.add_argument("--checkpoint", default=None, help="matcher.pt (default: the shipped teaching matcher)")
    q.add_argument("--points", type=int, default=None, help="match this many mask pixels instead of the nodes (default: the nodes)")
    q.add_argument("--track", action="store_true", help="also run the DeepDeform tracker and write its outputs (default off)")
    q.add_argument("--depth-scale", type=float, default=1000.0, help="depth units per metre (default 1000)")
    q.add_argument("--out", required=True, help="output folder (no default)")
    q.set_defaults(func=_pair)
    d = sub.add_parser("dense", help="semi-supervised dense alignment (App. D): .oflow / .sflow labels of a pair")
    d.add_argument("--seq", required=True, help="DeepDeform sequence folder (color/, depth/, mask/, ...; no default)")
    d.add_argument("--object", required=True, help="object id of the mask (mask/<frame>_<object>.png; no default)")
    d.add_argument("--source", type=int, required=True, help="source frame number (no default)")
    d.add_argument("--target", type=int, required=True, help="target frame number (no default)")
    d.add_argument("--matches", type=int, default=30, help="sparse matches simulated from the released flow (default 30)")
    d.add_argument("--seed", type=int, default=0, help="seed of the simulated matches (default 0)")
    d.add_argument("--out", required=True, help="sequence-like output folder (optical_flow/, scene_flow/; no default)")
    d.set_defaults(func=_dense)


def _load(checkpoint):
    from .training import load_matcher

    return load_matcher(checkpoint)


def _deepdeform_pairs(root: str, split: str | None):
    from nrsfm_kit.data.deepdeform import DeepDeformPairs
    from nrsfm_kit.data.types import RGBDPair
    from nrsfm_kit.tracking.cli import deepdeform_split

    ds = DeepDeformPairs(*deepdeform_split(root, split))
    return [RGBDPair(**ds[i]) for i in range(len(ds))]


def _train(args) -> int:
    from nrsfm_kit.train import distributed as dd

    return dd.joined(_train_run, args)  # under torchrun: in the process group (data-parallel training)


def _train_run(args) -> int:
    from nrsfm_kit.train import distributed as dd

    from .data import synthetic_matching_pairs
    from .training import matcher_preset, save_matcher, train_matcher

    p = matcher_preset(args.preset)
    from nrsfm_kit.cli import check_output_dir

    out = check_output_dir("--out", args.out)  # unusable: refused before any data is built
    if args.steps is not None and args.steps < 0:
        raise ValueError(f"--steps: expected >= 0, found {args.steps}")
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise ValueError(f"--checkpoint-every: expected an integer >= 1, found {args.checkpoint_every}")
    def data():
        if args.data == "synthetic":
            return (synthetic_matching_pairs("train", p.train_pairs, p.height, p.width, seed=args.seed,
                                             cache_dir=out / "cache"),
                    synthetic_matching_pairs("val", p.val_pairs, p.height, p.width, seed=args.seed,
                                             cache_dir=out / "cache"))
        from .data import deepdeform_training_pairs

        root = Path(args.data)
        if (root / "train_matches.json").is_file():  # the dataset's sparse match labels (what the paper trains on)
            return (deepdeform_training_pairs(root, "train", config=p.sampling),
                    deepdeform_training_pairs(root, "val", config=p.sampling)
                    if (root / "val_matches.json").is_file() else None)
        return _deepdeform_pairs(args.data, "train"), None  # pairs with dense flows only

    train, val = dd.main_first(data)  # several processes: rank 0 builds (and caches) the pairs, the others read them
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    m, res = train_matcher(p, train, val_pairs=val, out_dir=out, seed=args.seed, steps=args.steps, device=device,
                           checkpoint_every=args.checkpoint_every, amp=args.amp)
    m = m.cpu()
    if not dd.is_main():  # (data-parallel: rank 0 writes and reports, every rank holds the same matcher)
        return 0
    save_matcher(out / "matcher.pt", m, preset=args.preset, seed=args.seed, data=args.data)
    for stage, r in res.items():
        if r.resumed_from is not None and r.resumed_from >= r.step:
            print(f"{stage}: already trained ({r.step} steps)")
        else:
            print(f"{stage}: {r.history[-1] if r.history else r.step}")
    print(f"wrote {out / 'matcher.pt'}")
    return 0


def _print_table(table: dict) -> None:
    from .evaluate import METHOD_LABELS

    print(f"{'method':<36} {'2D err px':>9} {'3D err m':>9} {'2D acc':>7} {'3D acc':>7} {'<=20px':>7} {'cover':>6}")
    for k, v in table.items():
        if k == "settings":
            continue
        print(f"{METHOD_LABELS.get(k, k):<36} {v['mean_2d_px']:9.2f} {v['mean_3d_m']:9.4f} {v['acc_2d']:7.3f} "
              f"{v['acc_3d']:7.3f} {v['flow_acc_20px']:7.3f} {v['coverage']:6.2f}")


def _eval(args) -> int:
    from nrsfm_kit.utils.io import atomic_write_json

    from .data import resize_pair, synthetic_matching_pairs
    from .evaluate import beats_baselines, finite_or_none, matching_table
    from .training import matcher_preset

    p = matcher_preset(args.preset)
    if args.data == "synthetic":
        pairs = synthetic_matching_pairs("test", p.test_pairs, p.height, p.width)
    else:
        pairs = _deepdeform_pairs(args.data, args.split)
    if args.scale != 1.0:
        pairs = [resize_pair(q, args.scale) for q in pairs]
    points = args.points if args.points is not None else p.eval_points
    if points < 1:
        raise ValueError(f"--points: expected >= 1, found {points}")
    table = matching_table(pairs, matcher=_load(args.checkpoint), num_points=points)
    _print_table(table)
    wins = beats_baselines(table)
    for k, ok in wins.items():
        print(f"{'met' if ok else 'NOT met'}: learned beats every baseline on {k}")
    table["beats_baselines"] = wins
    table["settings"].update(data=args.data, scale=args.scale, checkpoint=args.checkpoint)
    if args.json:
        atomic_write_json(args.json, finite_or_none(table))
    return 0


def _pair(args) -> int:
    from nrsfm_kit.tracking.pair import read_rgbd_pair

    from .pair import match_pair

    pair = read_rgbd_pair(args.source_color, args.source_depth, args.target_color, args.target_depth,
                          args.intrinsics, args.mask, depth_scale=args.depth_scale)
    s = match_pair(pair, args.out, matcher=_load(args.checkpoint), graph_dir=args.graph, graph_name=args.graph_name,
                   num_points=args.points, track=args.track)
    print(json.dumps({k: s[k] for k in ("points", "accepted")}))
    print(f"wrote {', '.join(s['files'].values())}")
    return 0


def _dense(args) -> int:
    from nrsfm_kit.data.deepdeform import load_deepdeform_pair

    from .alignment import (
        dense_alignment,
        flow_endpoint_errors,
        simulate_sparse_matches,
        write_dense_alignment,
    )

    pair = load_deepdeform_pair(args.seq, args.source, args.target, args.object)
    if pair.source_mask is None:
        raise FileNotFoundError(f"--seq {args.seq}: expected mask/{args.source:06d}_{args.object}.png, found none")
    if pair.optical_flow is None:
        raise FileNotFoundError(f"--seq {args.seq}: expected a released optical flow to simulate the sparse matches "
                                f"from (optical_flow/{args.object}_{args.source:06d}_{args.target:06d}.oflow)")
    from nrsfm_kit.graph import build_graph

    if args.matches < 1:
        raise ValueError(f"--matches: expected >= 1, found {args.matches}")
    graph = build_graph(pair.source_depth, pair.source_mask, pair.intrinsics)
    sm = simulate_sparse_matches(pair, args.matches, seed=args.seed, graph=graph)  # on the object's graph
    res = dense_alignment(pair, sm.source_px, sm.target_px, pair.source_mask, graph=graph)
    paths = write_dense_alignment(res, args.out, args.object, args.source, args.target)
    err = flow_endpoint_errors(res.optical_flow, pair.optical_flow, pair.flow_valid & pair.source_mask & res.valid)
    print(json.dumps({"median_epe_px": err["median"], "p90_epe_px": err["p90"], "seconds": res.seconds}))
    print(f"wrote {', '.join(str(v) for v in paths)}")
    return 0
