"""``nrsfm-kit data``: write synthetic samples in the real formats, and inspect dataset files.

    nrsfm-kit data synth rgbd-pair OUT [--size 240x320] [--seed 0] [--kinect]   DeepDeform layout
    nrsfm-kit data synth nrsfm OUT.mat [--kind skeleton] [--frames 200]          classic X (3, P, F)
    nrsfm-kit data synth mocap OUT_DIR [--motion walking] [--frames 120]         CMU .asf + .amc
    nrsfm-kit data synth video OUT_DIR [--frames 8] [--size 96x128]              Sintel layout
    nrsfm-kit data info PATH                                                      summary of a file/folder
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nrsfm_kit.cli import HelpFormatter, check_output_dir, check_output_file

# per sample: (default frames, default size), None where the option does not apply
_DEFAULTS = {
    "rgbd-pair": (None, (240, 320)),
    "nrsfm": (200, None),
    "mocap": (120, None),
    "video": (8, (96, 128)),
}
_SYNTH_EPILOG = """\
samples:
  rgbd-pair OUT      a deforming RGB-D frame pair in the DeepDeform layout (OUT/color/000000.jpg, depth/*.png in
                     mm, mask/, optical_flow/*.oflow in pixels, scene_flow/*.sflow in metres, intrinsics.txt);
                     --size (default 240x320), --seed, --kinect
  nrsfm OUT.mat      an orthographic NRSfM sequence, variable X (3, P, F) in the camera frame;
                     --kind, --motion (skeleton, lowrank), --frames (default 200), --seed
  mocap OUT_DIR      CMU motion capture: OUT_DIR/synthetic.asf + synthetic_<motion>.amc (30 frames per second);
                     --motion, --frames (default 120), --seed
  video OUT_DIR      a monocular video in the MPI Sintel layout (OUT_DIR/training/clean, depth .dpt in metres,
                     flow .flo in pixels, camdata_left .cam, occlusions); --size (default 96x128),
                     --frames (default 8), --seed
kinds (nrsfm --kind):
  skeleton   31-joint CMU-like skeleton (metres) walking / waving / bending
  lowrank    40-point surface patch (about 1 unit across) deforming in a rank-3 shape basis; --motion sets its tempo
  category   a different rigid car per frame, 12 PASCAL3D+ keypoints (metres); --motion is ignored
"""
_INFO_EPILOG = """\
PATH may be:
  FILE.mat                 an NRSfM sequence (frames, points, visibility, 3D ground truth)
  FILE.oflow / .sflow      a DeepDeform flow image (size, valid pixels, |flow| in pixels / metres)
  FILE.flo                 a Sintel / Middlebury flow file (pixels)
  SEQ/                     a DeepDeform sequence folder (color/, depth/, mask/, optical_flow/, scene_flow/,
                           intrinsics.txt; labels from <root>/<split>_<kind>.json): counts of each
  GRAPH/                   a graph folder written by `nrsfm-kit graph` (graph_nodes/, graph_edges/, ...):
                           nodes, edges, clusters, pixel anchors per graph; or one of its .bin files
"""


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 240x320, found {text!r}") from None
    return h, w


_APPLIES = {"--size": ("rgbd-pair", "video"), "--frames": ("nrsfm", "mocap", "video"), "--kind": ("nrsfm",),
            "--motion": ("nrsfm", "mocap"), "--kinect": ("rgbd-pair",)}


def _check_synth_args(args: argparse.Namespace) -> None:
    """Checked before anything is generated; options that do not apply to the sample are refused, not ignored."""
    given = {"--size": args.size is not None, "--frames": args.frames is not None, "--kind": args.kind is not None,
             "--motion": args.motion is not None, "--kinect": bool(args.kinect)}
    for flag, samples in _APPLIES.items():
        if given[flag] and args.what not in samples:
            raise ValueError(f"{flag}: expected only with {' / '.join(samples)}, found it with {args.what}")
    if args.seed < 0:
        raise ValueError(f"--seed: expected an integer >= 0, found {args.seed}")
    if args.what == "nrsfm":
        check_output_file("OUT", args.out)
    else:
        check_output_dir("OUT", args.out)


def _synth(args: argparse.Namespace) -> int:
    _check_synth_args(args)
    out = Path(args.out)
    frames_default, size_default = _DEFAULTS[args.what]
    n_frames = frames_default if args.frames is None else args.frames  # bad values: the generators' checks
    motion = args.motion or "walking"
    if args.what == "rgbd-pair":
        from nrsfm_kit.data.deepdeform import save_deepdeform_pair
        from nrsfm_kit.data.rgbd import synthetic_rgbd_pair

        h, w = args.size or size_default
        pair = synthetic_rgbd_pair(h, w, seed=args.seed, kinect_noise=args.kinect)
        save_deepdeform_pair(pair, out, 0, 1, "synthetic")
    elif args.what == "nrsfm":
        import torch

        from nrsfm_kit.data.nrsfm import save_nrsfm_mat, synthetic_nrsfm

        seq = synthetic_nrsfm(args.kind or "skeleton", n_frames, motion=motion, seed=args.seed, dtype=torch.float64)
        save_nrsfm_mat(out, seq, layout="X")
    elif args.what == "mocap":
        import numpy as np

        from nrsfm_kit.data.mocap import write_amc, write_asf
        from nrsfm_kit.data.skeleton import cmu_skeleton, procedural_motion

        sk = cmu_skeleton()
        root, vals = procedural_motion(sk, motion, n_frames, np.random.default_rng(args.seed))
        write_asf(out / "synthetic.asf", sk)
        write_amc(out / f"synthetic_{motion}.amc", sk, root, vals)
    else:  # video -> Sintel layout
        from nrsfm_kit.data.imageio import write_color, write_mask
        from nrsfm_kit.data.sintel import write_cam, write_dpt, write_flo
        from nrsfm_kit.data.video import synthetic_monocular_video
        from nrsfm_kit.geometry import intrinsics_matrix

        h, w = args.size or size_default
        v = synthetic_monocular_video(n_frames, h, w, seed=args.seed)
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


# ----------------------------------------------------------------------------------------------------------
# data info


def _count_label_records(seq: Path) -> dict[str, int | str]:
    """{label file name: records of this sequence} for the ``<root>/<split>_<kind>.json`` files beside the split."""
    from nrsfm_kit.data.deepdeform import LABEL_KINDS

    split, root = seq.parent.name, seq.parent.parent
    out: dict[str, int | str] = {}
    for kind in LABEL_KINDS:
        f = root / f"{split}_{kind}.json"
        if not f.is_file():
            continue
        try:
            records = json.loads(f.read_text())
        except (OSError, ValueError) as exc:
            out[f.name] = f"unreadable ({type(exc).__name__})"
            continue
        if not isinstance(records, list):
            out[f.name] = "unreadable (not a JSON list)"
            continue
        out[f.name] = sum(1 for r in records if isinstance(r, dict) and str(r.get("seq_id")) == seq.name)
    return out


def _range(names: list[str]) -> str:
    if not names:
        return ""
    return names[0] if len(names) == 1 else f"{names[0]} .. {names[-1]}"


def describe_deepdeform_sequence(seq: Path) -> str:
    """Lines describing a DeepDeform sequence folder: frames, depth, masks, flows, labels with counts."""
    import cv2

    from nrsfm_kit.data.deepdeform import _FLOW_NAME

    color = sorted(f.stem for f in (seq / "color").glob("*.jpg")) if (seq / "color").is_dir() else []
    depth = sorted(f.stem for f in (seq / "depth").glob("*.png")) if (seq / "depth").is_dir() else []
    size = ""
    if color:
        img = cv2.imread(str(seq / "color" / f"{color[0]}.jpg"), cv2.IMREAD_UNCHANGED)
        size = f", {img.shape[1]}x{img.shape[0]} pixels" if img is not None else ", first frame unreadable"
    lines = [f"{seq}: DeepDeform sequence, {len(color)} colour frames{size}"]
    if (seq / "intrinsics.txt").is_file():
        from nrsfm_kit.data.imageio import read_intrinsics_txt

        try:
            fx, fy, cx, cy = (float(v) for v in read_intrinsics_txt(seq / "intrinsics.txt"))
            lines.append(f"  intrinsics     fx {fx:.1f} fy {fy:.1f} cx {cx:.1f} cy {cy:.1f} pixels")
        except ValueError as exc:
            lines.append(f"  intrinsics     unreadable: {exc}")
    else:
        lines.append("  intrinsics     missing (intrinsics.txt)")
    lines.append(f"  colour frames  {len(color):>5}  {_range(color)}")
    no_depth = sorted(set(color) - set(depth))
    lines.append(f"  depth frames   {len(depth):>5}  {_range(depth)} (uint16 PNG, mm)"
                 + (f"; missing for {len(no_depth)} colour frames" if no_depth else ""))
    masks = sorted(f.stem for f in (seq / "mask").glob("*.png")) if (seq / "mask").is_dir() else []
    objects = sorted({m.split("_", 1)[1] for m in masks if "_" in m})
    lines.append(f"  masks          {len(masks):>5}" + (f"  objects: {', '.join(objects)}" if objects else ""))
    for folder, ext, unit in (("optical_flow", "oflow", "pixels"), ("scene_flow", "sflow", "metres")):
        pairs = []
        for f in sorted((seq / folder).glob(f"*.{ext}")) if (seq / folder).is_dir() else []:
            m = _FLOW_NAME.match(f.name)
            if m:
                pairs.append(f"{m['object']} {m['source']}->{m['target']}")
        shown = ", ".join(pairs[:6]) + (f", ... ({len(pairs) - 6} more)" if len(pairs) > 6 else "")
        lines.append(f"  {folder.replace('_', ' '):<14} {len(pairs):>5}" + (f"  ({unit}) {shown}" if pairs else ""))
    labels = _count_label_records(seq)
    if labels:
        for name, n in labels.items():
            lines.append(f"  labels         {n:>5}  records of {seq.name} in {seq.parent.parent / name}"
                         if isinstance(n, int) else f"  labels         {seq.parent.parent / name}: {n}")
    else:
        lines.append(f"  labels             0  (no {seq.parent.name}_<kind>.json in {seq.parent.parent}; "
                     "kinds: matches, dense, selfsupervised, masks, occlusions)")
    return "\n".join(lines)


def _graph_names(root: Path) -> list[str]:
    return sorted(f.stem for f in (root / "graph_nodes").glob("*.bin"))


def describe_graph(root: Path, names: list[str] | None = None) -> str:
    """Lines describing the graphs of a folder written by ``nrsfm-kit graph`` (reference binary layout)."""
    from nrsfm_kit.graph.io import FOLDERS, load_graph, read_node_deformations

    names = _graph_names(root) if names is None else names
    if not names:
        raise ValueError(f"{root}: expected graph_nodes/<name>.bin files, found none")
    lines = [f"{root}: deformation graph folder, {len(names)} graph{'s' if len(names) != 1 else ''}"]
    for name in names:
        g = load_graph(root, name)
        n, k = g.edges.shape
        valid = int((g.edges >= 0).sum())
        sizes = g.cluster_sizes.tolist()
        H, W, A = g.pixel_anchors.shape
        anchored = int((g.pixel_anchors >= 0).any(-1).sum())
        shown = sizes[:8] + (["..."] if len(sizes) > 8 else [])
        lines += [
            f"  {name}",
            f"    nodes          {n:>7}  (metres, camera frame)",
            f"    edges          {valid:>7}  ({k} neighbours per node, {n * k - valid} empty slots)",
            f"    clusters       {len(sizes):>7}  sizes {shown}",
            f"    pixel anchors  {W}x{H} pixels, {A} anchors per pixel, {anchored} anchored pixels",
        ]
        d = root / FOLDERS["node_deformations"] / f"{name}.bin"
        if d.is_file():
            lines.append(f"    node deformations  {read_node_deformations(d).shape[0]} (metres)")
    return "\n".join(lines)


def _info(args: argparse.Namespace) -> int:
    p = Path(args.path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: not found (no such file or folder)")
    if p.suffix == ".mat" and p.is_file():
        from nrsfm_kit.data.nrsfm import load_nrsfm_mat

        s = load_nrsfm_mat(p)
        print(f"{p}: NRSfM sequence, {s.num_frames} frames x {s.num_points} points, "
              f"visible {s.visibility.float().mean():.3f}, 3D ground truth: {s.S is not None}")  # fmt: skip
    elif p.suffix in (".oflow", ".sflow", ".flo") and p.is_file():
        from nrsfm_kit.data.deepdeform import read_flow_binary
        from nrsfm_kit.data.sintel import read_flo

        f, v = read_flo(p) if p.suffix == ".flo" else read_flow_binary(p)
        mag = f[v].norm(dim=-1)
        unit = "metres" if p.suffix == ".sflow" else "pixels"
        print(f"{p}: {tuple(f.shape)} flow, valid {v.float().mean():.3f}, "
              f"|flow| mean {mag.mean():.4g} max {mag.max():.4g} {unit}")  # fmt: skip
    elif p.is_file() and p.suffix == ".bin" and (p.parent.parent / "graph_nodes" / p.name).is_file():
        print(describe_graph(p.parent.parent, [p.stem]))
    elif p.is_dir() and (p / "graph_nodes").is_dir():
        print(describe_graph(p))
    elif p.is_dir() and (p / "color").is_dir():
        print(describe_deepdeform_sequence(p))
    else:
        kind = "folder" if p.is_dir() else "file"
        raise ValueError(f"{p}: expected a .mat, .oflow, .sflow or .flo file, a DeepDeform sequence folder (with "
                         f"color/) or a graph folder (with graph_nodes/), found another {kind}")
    return 0


def register(subparsers) -> None:
    """Add the ``data`` subcommand to the ``nrsfm-kit`` parser."""
    p = subparsers.add_parser("data", help="write synthetic samples in the real formats, inspect dataset files",
                              description="Write synthetic samples (exact ground truth) in the layouts of the real "
                              "datasets, and summarise dataset files and folders.")
    sub = p.add_subparsers(dest="data_command", required=True, metavar="{synth,info}")
    s = sub.add_parser("synth", help="write a synthetic sample in a real dataset layout",
                       description="Write a synthetic sample with exact ground truth in a real dataset's layout.",
                       epilog=_SYNTH_EPILOG, formatter_class=HelpFormatter)
    s.add_argument("what", choices=list(_DEFAULTS), help="the sample to write (see below)")
    s.add_argument("out", metavar="OUT", help="output folder (a .mat file path for nrsfm)")
    s.add_argument("--size", type=_size, metavar="HxW",
                   help="image height x width in pixels (rgbd-pair: default 240x320; video: default 96x128)")
    s.add_argument("--frames", type=int, metavar="N",
                   help="number of frames (nrsfm: default 200; mocap: default 120; video: default 8)")
    s.add_argument("--seed", type=int, default=0,
                   help="random seed (>= 0, default 0): the same seed writes the same sample")
    s.add_argument("--kind", choices=["skeleton", "lowrank", "category"],
                   help="nrsfm only: the deforming object (default skeleton; see below)")
    s.add_argument("--motion", choices=["walking", "waving", "bending"],
                   help="nrsfm (skeleton, lowrank) and mocap: the motion (default walking)")
    s.add_argument("--kinect", action="store_true",
                   help="rgbd-pair only: Kinect-like depth noise and holes (default off: exact depth)")
    s.set_defaults(func=_synth, param_flags={"num_frames": "--frames", "height": "--size (height)",
                                             "width": "--size (width)", "seed": "--seed"})
    i = sub.add_parser("info", help="summarise a dataset file or folder", epilog=_INFO_EPILOG,
                       description="Summarise a dataset file or folder.",
                       formatter_class=HelpFormatter)
    i.add_argument("path", metavar="PATH", help="the file or folder to describe (see below)")
    i.set_defaults(func=_info)
