"""``nrsfm-kit graph``: build the deformation graph of one RGB-D frame and write the reference binary files.

Example (the frame the reference's ``create_graph_data.py`` uses)::

    nrsfm-kit graph --depth $NRSFM_KIT_DATA/deepdeform/train/seq258/depth/000000.png \\
        --mask $NRSFM_KIT_DATA/deepdeform/train/seq258/mask/000000_shirt.png \\
        --intrinsics $NRSFM_KIT_DATA/deepdeform/train/seq258/intrinsics.txt \\
        --out build/graph --name shirt_000000_geodesic_0.05
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

_DEFAULTS = "defaults of the reference create_graph_data.py"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "graph", help="build the embedded deformation graph of an RGB-D frame and write its binary files",
        description=f"Build the embedded deformation graph of one RGB-D frame and write the reference binary "
        f"files ({_DEFAULTS}: sigma 0.05 m, 10 erosion iterations, 8 geodesic neighbours, 4 anchors).",
    )
    p.add_argument("--depth", required=True, help="depth PNG (uint16, millimetres; see --depth-scale)")
    p.add_argument("--mask", required=True, help="object mask PNG (non-zero = object)")
    p.add_argument("--intrinsics", required=True, help="text file with a 3x3 / 4x4 matrix or fx fy cx cy")
    p.add_argument("--out", required=True, help="output root: <out>/graph_nodes/<name>.bin, ...")
    p.add_argument("--name", default=None, help="file stem (default <depth stem>_geodesic_<sigma>)")
    p.add_argument("--depth-scale", type=float, default=1000.0, help="depth units per metre (default 1000)")
    p.add_argument("--node-coverage", type=float, default=0.05, help="sigma in metres (default 0.05)")
    p.add_argument("--euclidean", action="store_true", help="Euclidean instead of geodesic edges/anchors")
    p.set_defaults(func=_run)


def _read_png(path: Path, what: str):
    import cv2

    if not path.is_file():
        raise FileNotFoundError(f"{path}: expected a {what} image, found none")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"{path}: expected a readable {what} image, found unreadable data")
    return img


def _read_intrinsics(path: Path):
    import numpy as np

    if not path.is_file():
        raise FileNotFoundError(f"{path}: expected an intrinsics text file, found none")
    try:
        return np.loadtxt(path)
    except ValueError:
        raise ValueError(f"{path}: expected numbers (a 3x3 / 4x4 matrix or fx fy cx cy), found other text") from None


def _run(args: argparse.Namespace) -> int:
    import numpy as np

    from nrsfm_kit.graph import build_graph
    from nrsfm_kit.graph.io import save_graph
    from nrsfm_kit.utils.checks import check_positive

    check_positive("--depth-scale", args.depth_scale)
    depth = _read_png(Path(args.depth), "depth").astype(np.float32) / float(args.depth_scale)
    mask = _read_png(Path(args.mask), "mask")
    if mask.ndim == 3:
        mask = mask.max(-1)
    intr = _read_intrinsics(Path(args.intrinsics))
    t0 = time.perf_counter()
    graph = build_graph(depth, mask > 0, intr, node_coverage=args.node_coverage, geodesic=not args.euclidean)
    seconds = time.perf_counter() - t0
    kind = "euclidean" if args.euclidean else "geodesic"
    name = args.name or f"{Path(args.depth).stem}_{kind}_{args.node_coverage:.2f}"
    paths = save_graph(args.out, name, graph)
    print(f"{graph.num_nodes} nodes, clusters {graph.cluster_sizes.tolist()}, "
          f"{int((graph.pixel_anchors >= 0).any(-1).sum())} anchored pixels, built in {seconds:.2f} s")
    for key, path in paths.items():
        print(f"  {key:14s} {path}")
    return 0
