"""Inputs and outputs of the Neural Non-Rigid Tracking pair tracker (``nrsfm-kit track pair``).

Bozic, Palafox et al., "Neural Non-Rigid Tracking", NeurIPS 2020; reference implementation
DeformableFriends/NeuralTracking.

Inputs
    - :func:`center_crop_offsets`, :func:`crop_intrinsics`, :func:`center_crop_pair`: the network needs
      image sides divisible by 64 (six 2x pyramid levels of PWC-Net), so the reference centre-crops the
      480 x 640 DeepDeform frames to 448 x 640 (its ``StaticCenterCrop``: rows ``(H - h) // 2`` to
      ``(H + h) // 2``). A crop is an integer shift of the pixel grid, so the principal point moves by
      exactly the offset: ``cx' = cx - x0``, ``cy' = cy - y0``. The reference's
      ``modify_intrinsics_due_to_cropping`` computes the width change as ``(w / original_w) / 2`` (a
      ``/`` typed for ``-``), which adds 0.5 px to ``cx`` for a 640-wide crop; we do not reproduce that.
    - :func:`dis_flow`: dense optical flow by DIS (Kroeger et al. 2016, OpenCV
      ``cv2.DISOpticalFlow_create``), the classical correspondence baseline that needs no trained model.
    - :func:`object_mask_from_nodes`: the reference's object region when no mask is given: the valid
      pixels whose point lies within 2 sigma (the graph's maximum influence) of a node.
    - :func:`read_graph_folder`: a graph stored in the reference binary layout (``graph_nodes/``,
      ``graph_edges/``, ``graph_edges_weights/``, ``graph_clusters/`` and optionally ``pixel_anchors/``,
      ``pixel_weights/``, one ``<name>.bin`` in each, see :mod:`nrsfm_kit.graph.io`). Without the pixel
      files the anchors are computed from the source point image (Euclidean 4-NN, Gaussian weights).

Outputs (:func:`write_tracking_outputs`, every file written atomically: temp file + rename)
    - ``deformed.ply``: the warped source points (:func:`write_ply`, binary little-endian PLY).
    - ``scene_flow.sflow`` / ``optical_flow.oflow``: DeepDeform binary flow images (-inf where not
      tracked, :func:`nrsfm_kit.data.deepdeform.write_flow_binary`).
    - ``graph_motion.npz``: node rotations, translations and validity.
    - ``result.json``: the tracker's summary (numpy / torch values converted to JSON numbers and lists).
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from nrsfm_kit.data.deepdeform import write_flow_binary
from nrsfm_kit.data.types import RGBDPair
from nrsfm_kit.geometry import as_intrinsics, project_with_mask
from nrsfm_kit.graph import io as gio
from nrsfm_kit.graph.build import euclidean_anchors
from nrsfm_kit.graph.types import DeformationGraph
from nrsfm_kit.utils.checks import check_finite, check_positive, check_shape
from nrsfm_kit.utils.io import atomic_write_bytes, atomic_write_json

__all__ = [
    "CROP_SIZE", "DIS_PRESETS", "OUTPUT_FILES", "center_crop_offsets", "crop_intrinsics", "center_crop_pair",
    "dis_flow", "object_mask_from_nodes", "read_graph_folder", "write_ply", "write_tracking_outputs",
]

CROP_SIZE = (448, 640)  # (height, width) of the reference (options.py image_height / image_width)
_DIVISOR = 64  # 2^6: six pyramid levels of the flow network

# DIS presets of OpenCV by name (cv2 constants are looked up when the flow is computed)
DIS_PRESETS = {
    "ultrafast": "DISOPTICAL_FLOW_PRESET_ULTRAFAST",
    "fast": "DISOPTICAL_FLOW_PRESET_FAST",
    "medium": "DISOPTICAL_FLOW_PRESET_MEDIUM",
}

# file of each output of write_tracking_outputs
OUTPUT_FILES = {
    "deformed": "deformed.ply",
    "scene_flow": "scene_flow.sflow",
    "optical_flow": "optical_flow.oflow",
    "graph_motion": "graph_motion.npz",
    "result": "result.json",
}


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


# ==================================================================================================
# cropping
# ==================================================================================================


def _check_size(size) -> tuple[int, int]:
    try:
        h, w = (int(s) for s in size)
        ok = (h, w) == tuple(size)
    except (TypeError, ValueError):
        ok = False
    if not ok or h < 1 or w < 1 or h % _DIVISOR or w % _DIVISOR:
        raise ValueError(
            f"size: expected (height, width) positive integers divisible by {_DIVISOR} "
            f"(the network's pyramid), found {size!r}"
        )
    return h, w


def center_crop_offsets(height: int, width: int, size: Sequence[int] = CROP_SIZE) -> tuple[int, int]:
    """Top-left corner of the centred ``size`` crop of a ``height`` x ``width`` image.

    Args:
        height, width: image size, pixels.
        size: (h, w) crop size, pixels, each divisible by 64; the reference's (448, 640) by default.

    Returns:
        (y0, x0) = ((height - h) // 2, (width - w) // 2), pixels (the reference's ``StaticCenterCrop``).

    Raises:
        ValueError: ``size`` not divisible by 64, or larger than the image.
    """
    h, w = _check_size(size)
    if int(height) != height or int(width) != width or height < 1 or width < 1:
        raise ValueError(f"height, width: expected positive integers, found ({height!r}, {width!r})")
    if h > height or w > width:
        raise ValueError(f"size: expected a crop no larger than the image ({height}, {width}), found ({h}, {w})")
    return (int(height) - h) // 2, (int(width) - w) // 2


def crop_intrinsics(intrinsics, y0: int, x0: int):
    """Intrinsics of the crop whose top-left corner is pixel (row ``y0``, column ``x0``).

    Args:
        intrinsics: (4,) (fx, fy, cx, cy), a (3, 3) or a (4, 4) calibration matrix, pixels; torch tensor
            or numpy array (anything else is read as a float64 numpy array).
        y0, x0: crop offsets, pixels (integers).

    Returns:
        the same type, shape and (floating) dtype with ``cx - x0`` and ``cy - y0`` exactly (no +0.5 as in
        the reference, see the module docstring); focal lengths unchanged.
    """
    if int(y0) != y0 or int(x0) != x0:
        raise ValueError(f"y0, x0: expected integer pixel offsets, found ({y0!r}, {x0!r})")
    as_intrinsics(intrinsics)  # validates shape, finiteness and focal lengths
    if isinstance(intrinsics, torch.Tensor):
        out = intrinsics.clone() if intrinsics.is_floating_point() else intrinsics.double()
    else:
        a = np.asarray(intrinsics)
        out = a.copy() if a.dtype.kind == "f" else a.astype(np.float64)
    if out.shape == (4,):
        out[2] -= int(x0)
        out[3] -= int(y0)
    elif out.shape in ((3, 3), (4, 4)):
        out[0, 2] -= int(x0)
        out[1, 2] -= int(y0)
    else:
        raise ValueError(f"intrinsics: expected shape (4,), (3, 3) or (4, 4), found {tuple(out.shape)}")
    return out


# layout of every image field of RGBDPair: "chw" (channels first), "hw", "hwc" (channels last)
_PAIR_LAYOUT = {
    "source_color": "chw", "target_color": "chw", "source_depth": "hw", "target_depth": "hw",
    "optical_flow": "hwc", "scene_flow": "hwc", "flow_valid": "hw", "visibility": "hw",
    "source_mask": "hw", "target_mask": "hw", "segmentation": "hw",
}


def _image_size(name: str, x, layout: str) -> tuple[int, int]:
    want = {"chw": "(C, H, W)", "hw": "(H, W)", "hwc": "(H, W, C)"}[layout]
    if x.dim() != len(layout):
        raise ValueError(f"pair.{name}: expected shape {want}, found {tuple(x.shape)}")
    return tuple(x.shape[-2:]) if layout == "chw" else tuple(x.shape[:2])


def center_crop_pair(pair: RGBDPair, size: Sequence[int] = CROP_SIZE) -> RGBDPair:
    """Centre-crop every image of an RGB-D pair to ``size`` and shift the principal point.

    Colors (3, H, W), depths / masks / validity / segmentation (H, W) and flows (H, W, C) are cropped
    to the same window (copies, not views). Flows are displacements between frames cropped by the same
    offset, so their values are unchanged; ``visibility`` (source pixel visible in the target, inside the
    image) additionally becomes False where the ground-truth optical flow (when given, at
    ``flow_valid`` pixels) now lands outside the cropped target image.

    Args:
        pair: an :class:`RGBDPair` (or an instance of a dataclass subclass: only the RGBDPair fields are
            kept).
        size: (h, w) crop, pixels, divisible by 64; (448, 640) by default (the reference's input size).

    Returns:
        a plain :class:`RGBDPair` of size ``size`` with intrinsics from :func:`crop_intrinsics`.

    Raises:
        ValueError: ``size`` not divisible by 64 or larger than the image; an image field whose size
            differs from ``pair.source_color``'s.
    """
    if not isinstance(pair, RGBDPair):
        raise ValueError(f"pair: expected an RGBDPair, found {type(pair).__name__}")
    _check_size(size)
    base = RGBDPair(**{f.name: getattr(pair, f.name) for f in dataclasses.fields(RGBDPair)})
    if not isinstance(pair.source_color, torch.Tensor):
        raise ValueError(f"pair.source_color: expected a torch.Tensor, found {type(pair.source_color).__name__}")
    H, W = _image_size("source_color", pair.source_color, "chw")
    for name, layout in _PAIR_LAYOUT.items():
        x = getattr(base, name)
        if x is None:
            continue
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"pair.{name}: expected a torch.Tensor or None, found {type(x).__name__}")
        hw = _image_size(name, x, layout)
        if hw != (H, W):
            raise ValueError(
                f"pair.{name}: expected the image size (H, W) = ({H}, {W}) of pair.source_color, found {hw}"
            )
    y0, x0 = center_crop_offsets(H, W, size)
    h, w = int(size[0]), int(size[1])
    changes = {}
    for name, layout in _PAIR_LAYOUT.items():
        x = getattr(base, name)
        if x is None:
            continue
        if layout == "chw":
            changes[name] = x[:, y0:y0 + h, x0:x0 + w].clone()
        else:
            changes[name] = x[y0:y0 + h, x0:x0 + w].clone()
    flow, vis = changes.get("optical_flow"), changes.get("visibility")
    if flow is not None and vis is not None:
        grid_v, grid_u = torch.meshgrid(
            torch.arange(h, dtype=flow.dtype, device=flow.device),
            torch.arange(w, dtype=flow.dtype, device=flow.device), indexing="ij",
        )
        u, v = grid_u + flow[..., 0], grid_v + flow[..., 1]
        inside = (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)
        known = changes["flow_valid"].bool() if "flow_valid" in changes else torch.ones_like(inside)
        changes["visibility"] = (vis.bool() & (inside | ~known)).to(vis.dtype)
    changes["intrinsics"] = crop_intrinsics(base.intrinsics, y0, x0)
    return dataclasses.replace(base, **changes)


# ==================================================================================================
# DIS optical flow
# ==================================================================================================


def _gray_u8(name: str, image, dims: dict) -> np.ndarray:
    a = _np(image)
    check_shape(name, a, (3, "H", "W"), dims)
    if a.dtype.kind not in "fiu":
        raise ValueError(f"{name}: expected real RGB values in [0, 1], found dtype {a.dtype}")
    check_finite(name, a)
    if a.size and (a.min() < 0 or a.max() > 1):
        raise ValueError(f"{name}: expected RGB values in [0, 1], found range [{a.min():.4g}, {a.max():.4g}]")
    import cv2

    rgb = np.ascontiguousarray(np.round(np.moveaxis(a.astype(np.float64), 0, -1) * 255.0).astype(np.uint8))
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def dis_flow(source_color, target_color, preset: str = "medium") -> torch.Tensor:
    """Dense source -> target optical flow by DIS (OpenCV), on 8-bit grayscale versions of the images.

    Args:
        source_color, target_color: (3, H, W) RGB in [0, 1] (torch tensors or numpy arrays).
        preset: ``"ultrafast"``, ``"fast"`` or ``"medium"`` (OpenCV's DIS presets).

    Returns:
        (H, W, 2) float32 flow (u, v) in pixels: source pixel (u0, v0) matches target (u0 + u, v0 + v).
        On ``source_color``'s device when it is a tensor, on the CPU otherwise.

    Raises:
        ValueError: wrong shapes (or different sizes), non-finite values, values outside [0, 1], an
            unknown preset, or an image smaller than 16 x 16 (DIS's patches).
    """
    if not isinstance(preset, str) or preset not in DIS_PRESETS:
        raise ValueError(f"preset: expected one of {sorted(DIS_PRESETS)}, found {preset!r}")
    dims: dict = {}
    src = _gray_u8("source_color", source_color, dims)
    tgt = _gray_u8("target_color", target_color, dims)
    if dims["H"] < 16 or dims["W"] < 16:
        raise ValueError(f"source_color: expected an image of at least 16 x 16 pixels, found {src.shape}")
    import cv2

    dis = cv2.DISOpticalFlow_create(getattr(cv2, DIS_PRESETS[preset]))
    flow = dis.calc(src, tgt, None)
    if not np.isfinite(flow).all():  # pragma: no cover - DIS returns finite flow
        raise ValueError("dis_flow: DIS returned non-finite flow")
    device = source_color.device if isinstance(source_color, torch.Tensor) else None
    return torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32)).to(device)


# ==================================================================================================
# object mask from the graph nodes
# ==================================================================================================


def object_mask_from_nodes(points, valid, nodes, node_coverage: float = 0.05) -> torch.Tensor:
    """Valid pixels within ``2 * node_coverage`` (Euclidean, <=) of a graph node.

    Args:
        points: (H, W, 3) camera-frame point image, metres (only read at ``valid`` pixels).
        valid: (H, W) bool, pixels carrying a point (depth > 0).
        nodes: (N, 3) node positions, metres.
        node_coverage: sigma, metres (the graph's maximum influence is 2 sigma).

    Returns:
        (H, W) bool torch tensor (CPU).

    Raises:
        ValueError: wrong shapes, non-finite points at valid pixels or nodes, sigma <= 0, no node, no valid
            pixel.
    """
    from scipy.spatial import cKDTree

    dims: dict = {}
    p = _np(points)
    v = _np(valid)
    n = _np(nodes)
    check_shape("points", p, ("H", "W", 3), dims)
    check_shape("valid", v, ("H", "W"), dims)
    check_shape("nodes", n, ("N", 3), dims)
    sigma = check_positive("node_coverage", node_coverage)
    v = v.astype(bool)
    if len(n) == 0:
        raise ValueError("nodes: expected at least one node, found shape (0, 3)")
    if not v.any():
        raise ValueError(f"valid: expected at least one valid pixel, found none of {v.size}")
    check_finite("nodes", n)
    pv = p[v].astype(np.float64)
    if not np.isfinite(pv).all():
        raise ValueError(f"points: expected finite values at valid pixels, found {int((~np.isfinite(pv)).any(-1).sum())} non-finite")
    dist, _ = cKDTree(n.astype(np.float64)).query(pv, k=1, distance_upper_bound=2.0 * sigma * (1 + 1e-12))
    out = np.zeros(v.shape, dtype=bool)
    out[v] = dist <= 2.0 * sigma
    return torch.from_numpy(out)


# ==================================================================================================
# graph folders
# ==================================================================================================

_REQUIRED = ("nodes", "edges", "edge_weights", "clusters")


def _find_stem(root: Path, name: str | None) -> str:
    folder = root / gio.FOLDERS["nodes"]
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: expected a folder of graph node files (<name>.bin), found none")
    if name is not None:
        if not isinstance(name, str) or not name or "/" in name or "\\" in name:
            raise ValueError(f"name: expected a file stem without folders, found {name!r}")
        return name
    stems = sorted(p.stem for p in folder.glob("*.bin"))
    if not stems:
        raise FileNotFoundError(f"{folder}: expected one graph file <name>.bin, found none")
    if len(stems) > 1:
        raise ValueError(f"name: expected one graph in {folder} when name is None, found stems {stems}; pass name=")
    return stems[0]


def read_graph_folder(
    root: str | os.PathLike,
    name: str | None = None,
    *,
    source_points=None,
    node_coverage: float = 0.05,
    num_anchors: int = 4,
) -> DeformationGraph:
    """Read a deformation graph stored in the reference binary layout.

    Args:
        root: folder holding ``graph_nodes/``, ``graph_edges/``, ``graph_edges_weights/``,
            ``graph_clusters/`` and optionally ``pixel_anchors/`` + ``pixel_weights/``.
        name: file stem (``<root>/graph_nodes/<name>.bin``); None: the only stem in ``graph_nodes/``.
        source_points: (H, W, 3) source point image, metres (0 / non-finite / z <= 0 = invalid). Required
            when the pixel files are absent (the anchors are then computed from it); when the files are
            present their image size is checked against it.
        node_coverage: sigma, metres (skinning weights exp(-d^2 / (2 sigma^2)); stored in the graph).
        num_anchors: anchors per pixel when they are computed (4, the reference's GRAPH_K).

    Returns:
        :class:`DeformationGraph` (nodes (N, 3), edges / edge_weights (N, K), clusters (N,), pixel anchors
        / weights (H, W, A) with -1 / 0 at pixels without a valid point).

    Raises:
        FileNotFoundError: a required folder or file is missing (or only one of the two pixel files).
        ValueError: several stems and no ``name``; truncated or mutually inconsistent files (the message
            names the file); pixel files absent and no ``source_points``; ``source_points`` of the
            wrong shape or of another image size than the pixel anchors.
    """
    root = Path(root)
    stem = _find_stem(root, name)
    sigma = check_positive("node_coverage", node_coverage)
    paths = {key: root / folder / f"{stem}.bin" for key, folder in gio.FOLDERS.items()}
    for key in _REQUIRED:
        folder = paths[key].parent
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: expected a folder of graph files (<name>.bin), found none")
        if not paths[key].is_file():
            raise FileNotFoundError(f"{paths[key]}: expected the {key} file of graph {stem!r}, found none")
    have = {key: paths[key].is_file() for key in ("pixel_anchors", "pixel_weights")}
    if have["pixel_anchors"] != have["pixel_weights"]:
        missing = "pixel_weights" if have["pixel_anchors"] else "pixel_anchors"
        present = "pixel_anchors" if have["pixel_anchors"] else "pixel_weights"
        raise FileNotFoundError(f"{paths[missing]}: expected it beside {paths[present]}, found none")

    pts = None
    if source_points is not None:
        pts = _np(source_points)
        check_shape("source_points", pts, ("H", "W", 3))
        if pts.dtype.kind not in "fiu":
            raise ValueError(f"source_points: expected real numbers (metres), found dtype {pts.dtype}")

    if have["pixel_anchors"]:
        graph = gio.load_graph(root, stem, node_coverage=sigma)
        if pts is not None and tuple(graph.pixel_anchors.shape[:2]) != pts.shape[:2]:
            raise ValueError(
                f"source_points: expected the image size {tuple(graph.pixel_anchors.shape[:2])} of "
                f"{paths['pixel_anchors']}, found {pts.shape[:2]}"
            )
        return graph

    if pts is None:
        raise ValueError(
            f"source_points: expected an (H, W, 3) point image to compute the anchors ({paths['pixel_anchors']} "
            "is absent), found None"
        )
    nodes, edges, weights, clusters = gio.read_graph_core(paths)

    H, W = pts.shape[:2]
    p = pts.astype(np.float64)
    valid = np.isfinite(p).all(-1) & (np.where(np.isfinite(p[..., 2]), p[..., 2], 0.0) > 0)
    pa, pw = euclidean_anchors(p[valid], nodes.astype(np.float64), num_anchors, sigma)
    A = pa.shape[1]
    anchors = np.full((H, W, A), -1, dtype=np.int64)
    pweights = np.zeros((H, W, A), dtype=np.float32)
    anchors[valid] = pa
    pweights[valid] = pw
    return gio.graph_from_arrays(nodes, edges, weights, clusters, anchors, pweights, sigma)


# ==================================================================================================
# outputs
# ==================================================================================================


def write_ply(path: str | os.PathLike, points, colors=None) -> Path:
    """Write a point cloud as a binary little-endian PLY file, atomically.

    Args:
        path: output file.
        points: (P, 3) positions, metres (stored as float32 x, y, z).
        colors: (P, 3) RGB in [0, 1] (stored as uchar red, green, blue, rounded), or None (no colour).

    Returns:
        the path written.

    Raises:
        ValueError: wrong shapes, non-finite values, colours outside [0, 1].
    """
    dims: dict = {}
    p = _np(points)
    check_shape("points", p, ("P", 3), dims)
    if p.dtype.kind not in "fiu":
        raise ValueError(f"points: expected real numbers (metres), found dtype {p.dtype}")
    check_finite("points", p)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    c = None
    if colors is not None:
        c = _np(colors)
        check_shape("colors", c, ("P", 3), dims)
        if c.dtype.kind not in "fiu":
            raise ValueError(f"colors: expected real RGB values in [0, 1], found dtype {c.dtype}")
        check_finite("colors", c)
        if c.size and (c.min() < 0 or c.max() > 1):
            raise ValueError(f"colors: expected RGB values in [0, 1], found range [{c.min():.4g}, {c.max():.4g}]")
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    P = p.shape[0]
    rec = np.zeros(P, dtype=np.dtype(fields))
    for i, k in enumerate("xyz"):
        rec[k] = p[:, i]
    if c is not None:
        c8 = np.round(c.astype(np.float64) * 255.0).astype(np.uint8)
        for i, k in enumerate(("red", "green", "blue")):
            rec[k] = c8[:, i]
    props = "".join(f"property {'float' if t == '<f4' else 'uchar'} {k}\n" for k, t in fields)
    header = f"ply\nformat binary_little_endian 1.0\nelement vertex {P}\n{props}end_header\n"
    return atomic_write_bytes(path, header.encode("ascii") + rec.tobytes())


def _jsonable(x, where: str):
    """``x`` with numpy / torch values as JSON numbers / lists; ValueError naming ``where`` otherwise."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist(), where)
    if isinstance(x, np.generic):
        x = x.item()
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        if not math.isfinite(x):
            raise ValueError(f"{where}: expected a finite number (JSON), found {x}")
        return float(x)
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    if isinstance(x, Mapping):
        return {str(_jsonable(k, where) if not isinstance(k, str) else k): _jsonable(v, f"{where}[{k!r}]")
                for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(x)]
    raise ValueError(f"{where}: expected JSON-serialisable values (numbers, strings, lists, dicts, arrays), "
                     f"found {type(x).__name__}")


def _float_input(name: str, x, spec, dims: dict) -> torch.Tensor:
    t = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    check_shape(name, t, spec, dims)
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{name}: expected real numbers, found dtype {t.dtype}")
    t = t if t.is_floating_point() else t.double()
    check_finite(name, t)
    return t


def write_tracking_outputs(
    out_dir: str | os.PathLike,
    *,
    warped_points,
    colors,
    pixel_index,
    image_size: Sequence[int],
    source_points,
    intrinsics,
    rotations,
    translations,
    node_valid,
    result: Mapping,
) -> dict[str, Path]:
    """Write the results of tracking one source frame into a target frame (files: ``OUTPUT_FILES``).

    Args:
        out_dir: output folder (created).
        warped_points: (P, 3) tracked source points after the warp, target camera frame, metres.
        colors: (P, 3) RGB in [0, 1] of those points, or None.
        pixel_index: (P,) integer flat index ``row * W + col`` into the H x W source image of every tracked
            pixel (distinct).
        image_size: (H, W) of the source image, pixels.
        source_points: (P, 3) the tracked points before the warp, source camera frame, metres.
        intrinsics: (4,) (fx, fy, cx, cy) or a 3x3 / 4x4 matrix, pixels (of the target camera).
        rotations: (N, 3, 3) node rotations; translations: (N, 3) node translations, metres.
        node_valid: (N,) bool, nodes whose motion was estimated.
        result: the summary to store as JSON (numpy / torch scalars and arrays are converted; keys become
            strings; non-finite numbers raise).

    Returns:
        {"deformed", "scene_flow", "optical_flow", "graph_motion", "result"} -> path written:

        - ``deformed.ply``: warped points (binary PLY, with colours when given).
        - ``scene_flow.sflow``: (H, W, 3) warped - source, metres, at the tracked pixels, -inf elsewhere.
        - ``optical_flow.oflow``: (H, W, 2) pi(warped) - (u, v), pixels, with u = column, v = row of the
          tracked pixel; -inf elsewhere and where the warped point has z <= 1e-6 m (no projection).
        - ``graph_motion.npz``: ``rotations`` (N, 3, 3), ``translations`` (N, 3), ``valid`` (N,) bool.
        - ``result.json``: ``result``.

    Every input is validated before anything is written (a bad input leaves ``out_dir`` untouched); each
    file is written atomically. Tensors may live on any device (they are copied to the CPU).
    """
    try:
        H, W = (int(s) for s in image_size)
        ok = (H, W) == tuple(image_size) and H >= 1 and W >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"image_size: expected (H, W) positive integers, found {image_size!r}")
    dims: dict = {}
    warped = _float_input("warped_points", warped_points, ("P", 3), dims)
    src = _float_input("source_points", source_points, ("P", 3), dims)
    cols = None if colors is None else _float_input("colors", colors, ("P", 3), dims)
    idx = pixel_index.detach().cpu() if isinstance(pixel_index, torch.Tensor) else torch.as_tensor(np.asarray(pixel_index))
    check_shape("pixel_index", idx, ("P",), dims)
    if idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool:
        raise ValueError(f"pixel_index: expected integer flat pixel indices, found dtype {idx.dtype}")
    idx = idx.long()
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= H * W):
        raise ValueError(
            f"pixel_index: expected indices in [0, {H * W - 1}] (H * W = {H} * {W}), "
            f"found range [{int(idx.min())}, {int(idx.max())}]"
        )
    if torch.unique(idx).numel() != idx.numel():
        raise ValueError(f"pixel_index: expected distinct pixels, found {idx.numel() - torch.unique(idx).numel()} repeats")
    intr = as_intrinsics(intrinsics, dtype=torch.float64, device="cpu")
    if intr.shape != (4,):
        raise ValueError(f"intrinsics: expected one camera (4,), 3x3 or 4x4, found {tuple(intr.shape)}")
    R = _float_input("rotations", rotations, ("N", 3, 3), dims)
    t = _float_input("translations", translations, ("N", 3), dims)
    nv = node_valid.detach().cpu() if isinstance(node_valid, torch.Tensor) else torch.as_tensor(np.asarray(node_valid))
    check_shape("node_valid", nv, ("N",), dims)
    if nv.dtype != torch.bool:
        raise ValueError(f"node_valid: expected a bool mask, found dtype {nv.dtype}")
    if not isinstance(result, Mapping):
        raise ValueError(f"result: expected a dict, found {type(result).__name__}")
    summary = _jsonable(result, "result")
    if cols is not None and cols.numel() and (float(cols.min()) < 0 or float(cols.max()) > 1):
        raise ValueError(f"colors: expected RGB values in [0, 1], found range [{float(cols.min()):.4g}, {float(cols.max()):.4g}]")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {key: out / fname for key, fname in OUTPUT_FILES.items()}
    write_ply(paths["deformed"], warped, cols)

    rows, cols_px = idx // W, idx % W
    sflow = torch.zeros(H * W, 3, dtype=torch.float32)
    svalid = torch.zeros(H * W, dtype=torch.bool)
    sflow[idx] = (warped.double() - src.double()).float()
    svalid[idx] = True
    write_flow_binary(paths["scene_flow"], sflow.view(H, W, 3), svalid.view(H, W))

    uv, proj_ok = project_with_mask(warped.double(), intr)
    pix = torch.stack([cols_px, rows], -1).double()
    oflow = torch.zeros(H * W, 2, dtype=torch.float32)
    ovalid = torch.zeros(H * W, dtype=torch.bool)
    oflow[idx] = (uv - pix).float()
    ovalid[idx] = proj_ok
    write_flow_binary(paths["optical_flow"], oflow.view(H, W, 2), ovalid.view(H, W))

    buf = io.BytesIO()
    np.savez(buf, rotations=R.numpy(), translations=t.numpy(), valid=nv.numpy())
    atomic_write_bytes(paths["graph_motion"], buf.getvalue())  # temp file in out_dir + os.replace

    atomic_write_json(paths["result"], summary)
    return paths
