"""``nrsfm-kit data``: write synthetic samples in the real formats, and inspect dataset files.

    nrsfm-kit data synth rgbd-pair OUT [--size 240x320] [--seed 0] [--kinect]   DeepDeform layout
    nrsfm-kit data synth nrsfm OUT.mat [--kind skeleton] [--frames 200]          classic X (3, P, F)
    nrsfm-kit data synth mocap OUT_DIR [--motion walking] [--frames 120]         CMU .asf + .amc
    nrsfm-kit data synth video OUT_DIR [--frames 8] [--size 96x128]              Sintel layout
    nrsfm-kit data info PATH                                                      summary of a file/folder
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 240x320, found {text!r}") from None
    return h, w


def _synth(args: argparse.Namespace) -> int:
    out = Path(args.out)

    def n_frames(default: int) -> int:  # 0 / negative values go on to the generators' checks (exit 2)
        return default if args.frames is None else args.frames
    if args.what == "rgbd-pair":
        from nrsfm_kit.data.deepdeform import save_deepdeform_pair
        from nrsfm_kit.data.rgbd import synthetic_rgbd_pair

        h, w = args.size or (240, 320)
        pair = synthetic_rgbd_pair(h, w, seed=args.seed, kinect_noise=args.kinect)
        save_deepdeform_pair(pair, out, 0, 1, "synthetic")
    elif args.what == "nrsfm":
        import torch

        from nrsfm_kit.data.nrsfm import save_nrsfm_mat, synthetic_nrsfm

        seq = synthetic_nrsfm(args.kind, n_frames(200), motion=args.motion, seed=args.seed, dtype=torch.float64)
        save_nrsfm_mat(out, seq, layout="X")
    elif args.what == "mocap":
        import numpy as np

        from nrsfm_kit.data.mocap import write_amc, write_asf
        from nrsfm_kit.data.skeleton import cmu_skeleton, procedural_motion

        sk = cmu_skeleton()
        root, vals = procedural_motion(sk, args.motion, n_frames(120), np.random.default_rng(args.seed))
        write_asf(out / "synthetic.asf", sk)
        write_amc(out / f"synthetic_{args.motion}.amc", sk, root, vals)
    else:  # video -> Sintel layout
        from nrsfm_kit.data.imageio import write_color, write_mask
        from nrsfm_kit.data.sintel import write_cam, write_dpt, write_flo
        from nrsfm_kit.data.video import synthetic_monocular_video
        from nrsfm_kit.geometry import intrinsics_matrix

        h, w = args.size or (96, 128)
        v = synthetic_monocular_video(n_frames(8), h, w, seed=args.seed)
        base, scene = out / "training", "synthetic"
        K = intrinsics_matrix(v.intrinsics.double())
        for t in range(v.frames.shape[0]):
            n = f"frame_{t + 1:04d}"
            write_color(base / "clean" / scene / f"{n}.png", v.frames[t])
            write_dpt(base / "depth" / scene / f"{n}.dpt", v.depth[t])
            write_cam(base / "camdata_left" / scene / f"{n}.cam", K, v.poses[t, :3].double())
            if t + 1 < v.frames.shape[0]:
                write_flo(base / "flow" / scene / f"{n}.flo", v.flow[t])
                write_mask(base / "occlusions" / scene / f"{n}.png", ~v.flow_visibility[t], value=255)
    print(f"wrote {args.what} sample to {out}")
    return 0


def _info(args: argparse.Namespace) -> int:
    p = Path(args.path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: not found")
    if p.suffix == ".mat":
        from nrsfm_kit.data.nrsfm import load_nrsfm_mat

        s = load_nrsfm_mat(p)
        print(f"{p}: NRSfM sequence, {s.num_frames} frames x {s.num_points} points, "
              f"visible {s.visibility.float().mean():.3f}, 3D ground truth: {s.S is not None}")  # fmt: skip
    elif p.suffix in (".oflow", ".sflow", ".flo"):
        from nrsfm_kit.data.deepdeform import read_flow_binary
        from nrsfm_kit.data.sintel import read_flo

        f, v = read_flo(p) if p.suffix == ".flo" else read_flow_binary(p)
        mag = f[v].norm(dim=-1)
        print(f"{p}: {tuple(f.shape)} flow, valid {v.float().mean():.3f}, "
              f"|flow| mean {mag.mean():.4g} max {mag.max():.4g}")  # fmt: skip
    elif p.is_dir() and (p / "intrinsics.txt").exists() and (p / "color").is_dir():
        from nrsfm_kit.data.deepdeform import _FLOW_NAME

        frames = sorted(f.stem for f in (p / "color").glob("*.jpg"))
        flows = [f.name for f in (p / "optical_flow").glob("*.oflow") if _FLOW_NAME.match(f.name)]
        print(f"{p}: DeepDeform sequence, {len(frames)} colour frames, flow pairs: {flows}")
    else:
        raise ValueError(f"{p}: expected a .mat, .oflow, .sflow or .flo file or a DeepDeform sequence folder")
    return 0


def register(subparsers) -> None:
    """Add the ``data`` subcommand to the ``nrsfm-kit`` parser."""
    p = subparsers.add_parser("data", help="write synthetic samples in the real formats, inspect dataset files")
    sub = p.add_subparsers(dest="data_command", required=True)
    s = sub.add_parser("synth", help="write a synthetic sample in a real dataset layout")
    s.add_argument("what", choices=["rgbd-pair", "nrsfm", "mocap", "video"])
    s.add_argument("out", help="output folder (a .mat path for nrsfm)")
    s.add_argument("--size", type=_size, help="HEIGHTxWIDTH for images")
    s.add_argument("--frames", type=int, help="number of frames")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--kind", default="skeleton", choices=["skeleton", "lowrank", "category"])
    s.add_argument("--motion", default="walking", choices=["walking", "waving", "bending"])
    s.add_argument("--kinect", action="store_true", help="Kinect-like depth noise and holes")
    s.set_defaults(func=_synth)
    i = sub.add_parser("info", help="summarise a dataset file or folder")
    i.add_argument("path")
    i.set_defaults(func=_info)
