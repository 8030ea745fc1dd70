"""``nrsfm-kit graph``: build the deformation graph of one RGB-D frame and write the reference binary files.

Example (the frame the reference's ``create_graph_data.py`` uses)::

    nrsfm-kit graph --depth $NRSFM_KIT_DATA/deepdeform/train/seq258/depth/000000.png \\
        --mask $NRSFM_KIT_DATA/deepdeform/train/seq258/mask/000000_shirt.png \\
        --intrinsics $NRSFM_KIT_DATA/deepdeform/train/seq258/intrinsics.txt \\
        --out build/graph --name shirt_000000_geodesic_0.05
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

from nrsfm_kit.cli import HelpFormatter, check_float_arg, check_input_file, check_output_dir

_DEFAULTS = "defaults of the reference create_graph_data.py"
_EPILOG = """\
writes <out>/graph_nodes/<name>.bin (N x 3 float32, metres), graph_edges/ (N x 8 int32, -1 = none),
graph_edges_weights/, graph_clusters/, pixel_anchors/ (H x W x 4 int32) and pixel_weights/; describe them
with `nrsfm-kit data info <out>`.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "graph", help="build the embedded deformation graph of an RGB-D frame and write its binary files",
        description=f"Build the embedded deformation graph of one RGB-D frame and write the reference binary "
        f"files ({_DEFAULTS}: sigma 0.05 m, 10 erosion iterations, 8 geodesic neighbours, 4 anchors).",
        epilog=_EPILOG, formatter_class=HelpFormatter,
    )
    p.add_argument("--depth", required=True, metavar="PNG",
                   help="depth image: single-channel uint16 PNG, 0 = invalid (units: see --depth-scale)")
    p.add_argument("--mask", required=True, metavar="PNG",
                   help="object mask PNG of the same size (any bit depth, non-zero = object)")
    p.add_argument("--intrinsics", required=True, metavar="TXT",
                   help="text file: a 3x3 / 4x4 camera matrix or the 4 numbers fx fy cx cy, pixels")
    p.add_argument("--out", required=True, metavar="DIR", help="output root: <out>/graph_nodes/<name>.bin, ...")
    p.add_argument("--name", default=None,
                   help="file stem (default <depth stem>_<geodesic|euclidean>_<sigma>, e.g. 000000_geodesic_0.05)")
    p.add_argument("--depth-scale", type=float, default=1000.0, metavar="UNITS",
                   help="depth PNG units per metre (default 1000: millimetres, as DeepDeform)")
    p.add_argument("--node-coverage", type=float, default=0.05, metavar="SIGMA",
                   help="node spacing and weight width sigma, metres (default 0.05)")
    p.add_argument("--euclidean", action="store_true",
                   help="Euclidean K-NN edges and anchors instead of geodesic ones (default geodesic)")
    p.set_defaults(func=_run)


def _read_png(flag: str, path: Path, what: str):
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"{flag}: expected a readable {what} image, found an unreadable file {path}")
    return img


def _check_args(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """Every argument checked before any file is read (messages name the flag and the path)."""
    check_float_arg("--depth-scale", args.depth_scale)
    check_float_arg("--node-coverage", args.node_coverage)
    depth = check_input_file("--depth", args.depth, "a depth PNG")
    mask = check_input_file("--mask", args.mask, "a mask PNG")
    intr = check_input_file("--intrinsics", args.intrinsics, "an intrinsics text file")
    check_output_dir("--out", args.out)
    if args.name is not None and (not args.name or re.search(r"[/\\]", args.name)):
        raise ValueError(f"--name: expected a file stem without folders, found {args.name!r}")
    return depth, mask, intr


def _run(args: argparse.Namespace) -> int:
    depth_path, mask_path, intr_path = _check_args(args)
    import numpy as np
    import torch

    from nrsfm_kit.data.imageio import read_intrinsics_txt
    from nrsfm_kit.graph import build_graph
    from nrsfm_kit.graph.io import save_graph

    try:
        intr = read_intrinsics_txt(intr_path, dtype=torch.float64).numpy()
    except ValueError as exc:  # the message starts with the file's path
        raise ValueError(f"--intrinsics {exc}") from None
    raw = _read_png("--depth", depth_path, "depth")
    if raw.ndim != 2 or raw.dtype != np.uint16:
        raise ValueError(f"--depth {depth_path}: expected a single-channel uint16 depth PNG, found {raw.dtype} "
                         f"with shape {raw.shape}")
    depth = raw.astype(np.float32) / float(args.depth_scale)
    if depth.max() > 100.0:  # build_graph expects metres
        raise ValueError(f"--depth-scale {args.depth_scale:g}: expected depths <= 100 m, found up to {depth.max():.4g} "
                         f"m in {depth_path} (millimetre PNGs such as DeepDeform's need --depth-scale 1000)")
    mask = _read_png("--mask", mask_path, "mask")
    if mask.ndim == 3:
        mask = mask.max(-1)
    if mask.shape != depth.shape:
        raise ValueError(f"--mask {mask_path}: expected the size of --depth {depth_path} ({depth.shape[1]}x"
                         f"{depth.shape[0]} pixels), found {mask.shape[1]}x{mask.shape[0]}")
    if not (mask > 0).any():
        raise ValueError(f"--mask {mask_path}: expected at least one object pixel (non-zero), found none")
    t0 = time.perf_counter()
    graph = build_graph(depth, mask > 0, intr, node_coverage=args.node_coverage, geodesic=not args.euclidean)
    seconds = time.perf_counter() - t0
    kind = "euclidean" if args.euclidean else "geodesic"
    name = args.name or f"{depth_path.stem}_{kind}_{args.node_coverage:.2f}"
    paths = save_graph(args.out, name, graph)
    print(f"{graph.num_nodes} nodes, clusters {graph.cluster_sizes.tolist()}, "
          f"{int((graph.pixel_anchors >= 0).any(-1).sum())} anchored pixels, built in {seconds:.2f} s")
    for key, path in paths.items():
        print(f"  {key:14s} {path}")
    return 0
