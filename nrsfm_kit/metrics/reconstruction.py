"""Non-rigid reconstruction metrics of the DeepDeform benchmark (Bozic et al., CVPR 2020, Table 2).

A method reconstructs a mesh per frame, in that frame's camera frame (metres). Two errors are measured:

- **Geometry error** (:func:`geometry_error`): for every pixel of the object mask eroded
  :data:`GEOMETRY_EROSION` = 5 times with valid depth, the distance from its back-projected point to the
  nearest vertex of the frame's mesh.
- **Deformation error** (:func:`deformation_error`): annotated sparse matches between a source and a target
  frame; the source point (back-projected, inside the source mask eroded :data:`DEFORMATION_EROSION` = 2
  times) is carried to the target by the motion of the 5 nearest source-mesh vertices
  (:data:`CARRY_NEIGHBOURS`, weights ``(1 - d / d_6)^2``, normalised) onto the same-index vertices of the
  target mesh; the error is its distance to the back-projected target point.

A missing mesh counts :data:`MISSING_MESH_M` = 0.30 m for every evaluated element. Per-frame means are grouped
into consecutive segments of :data:`SEGMENT_LENGTH` = 100 frames, each segment's mean capped at
:data:`SEGMENT_CAP_M` = 0.30 m (:func:`segment_scores`); the benchmark score is the mean over the segments of a
sequence, then over sequences, in centimetres (:func:`benchmark_score`).

Submissions are one binary PLY mesh per evaluated frame (:func:`submission_name`, :func:`write_mesh_ply`,
:func:`read_mesh_ply`).

Conventions: camera frame x right, y down, z forward (metres); pixel (x, y) = (column, row) with integer
coordinates at pixel centres; intrinsics (fx, fy, cx, cy) in pixels.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from nrsfm_kit.geometry.pinhole import as_intrinsics, backproject, depth_to_points
from nrsfm_kit.utils.checks import check_finite, check_shape, check_tensor
from nrsfm_kit.utils.io import atomic_write_bytes

__all__ = [
    "CARRY_NEIGHBOURS", "DEFORMATION_EROSION", "DEPTH_WINDOW", "GEOMETRY_EROSION", "MISSING_MESH_M",
    "SEGMENT_CAP_M", "SEGMENT_LENGTH", "DeformationErrors", "ReconstructionReport", "benchmark_score",
    "carry_points", "carry_weights", "deformation_error", "erode_mask", "geometry_error", "read_mesh_ply",
    "segment_scores", "submission_name", "write_mesh_ply",
]

MISSING_MESH_M = 0.30  # m: error of every element of a frame whose mesh is missing (DeepDeform benchmark)
SEGMENT_CAP_M = 0.30  # m: each segment's mean error is capped at this value
SEGMENT_LENGTH = 100  # frames per evaluation segment
GEOMETRY_EROSION = 5  # erosion iterations of the object mask for the geometry error
DEFORMATION_EROSION = 2  # erosion iterations of the masks for the deformation error
DEPTH_WINDOW = 7  # px: side of the window searched for the nearest valid depth of a match
CARRY_NEIGHBOURS = 5  # mesh vertices that carry a source point to the target


# ==================================================================================================
# argument helpers


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, found {value!r}")
    return int(value)


def _check_mask(name: str, mask, shape: tuple[int, int]) -> np.ndarray:
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, found {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise ValueError(f"{name}: expected a bool tensor, found dtype {mask.dtype}")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)} like the depth, found {tuple(mask.shape)}")
    return mask.detach().cpu().numpy()


def _check_vertices(name: str, vertices) -> np.ndarray | None:
    if vertices is None:
        return None
    check_tensor(name, vertices, ("V", 3))
    if vertices.shape[0] < 1:
        raise ValueError(f"{name}: expected at least one vertex, found shape {tuple(vertices.shape)}")
    return vertices.detach().cpu().double().numpy()


def _check_depth(name: str, depth) -> torch.Tensor:
    check_tensor(name, depth, ("H", "W"), finite=False)  # non-finite depth = invalid pixel (masked)
    return depth


def erode_mask(mask: np.ndarray, iterations: int) -> np.ndarray:
    """``scipy.ndimage.binary_erosion`` with the default 3x3 cross, ``iterations`` times (0 = unchanged).

    Pixels outside the image count as background, so the border pixels of a mask touching the image edge are
    eroded too. (scipy's own ``iterations=0`` means "until nothing changes"; here 0 means no erosion.)
    """
    from scipy.ndimage import binary_erosion

    mask = np.asarray(mask, dtype=bool)
    if iterations <= 0:
        return mask.copy()
    return binary_erosion(mask, iterations=int(iterations))


# ==================================================================================================
# geometry error


def geometry_error(
    depth: torch.Tensor,
    mask: torch.Tensor,
    intrinsics,
    vertices: torch.Tensor | None,
    *,
    erosion: int = GEOMETRY_EROSION,
) -> torch.Tensor:
    """Per-pixel distance (m) from the observed surface to the nearest vertex of the reconstructed mesh.

    Args:
        depth: (H, W) metres; pixels with non-finite or non-positive depth are not evaluated.
        mask: (H, W) bool object mask; eroded ``erosion`` times (3x3 cross, :func:`erode_mask`).
        intrinsics: (4,) fx, fy, cx, cy (or a 3x3 / 4x4 matrix).
        vertices: (V, 3) mesh vertices of this frame in its camera frame (metres), or None for a missing mesh.
        erosion: erosion iterations (default :data:`GEOMETRY_EROSION` = 5).

    Returns:
        (M,) distances in metres (dtype/device of ``depth``), one per evaluated pixel in row-major order;
        every entry is :data:`MISSING_MESH_M` when ``vertices`` is None. M may be 0.
    """
    _check_depth("depth", depth)
    H, W = depth.shape
    m = _check_mask("mask", mask, (H, W))
    intr = as_intrinsics(intrinsics, dtype=torch.float64)
    check_shape("intrinsics", intr, (4,))
    erosion = _check_int("erosion", erosion, 0)
    verts = _check_vertices("vertices", vertices)
    pts, valid = depth_to_points(depth.detach().cpu().double(), intr)
    sel = torch.from_numpy(erode_mask(m, erosion)) & valid
    p = pts[sel].numpy()
    if verts is None:
        return torch.full((p.shape[0],), MISSING_MESH_M, dtype=depth.dtype, device=depth.device)
    from scipy.spatial import cKDTree

    d, _ = cKDTree(verts).query(p, k=1) if p.shape[0] else (np.zeros(0), None)
    return torch.as_tensor(np.asarray(d, dtype=np.float64), dtype=depth.dtype, device=depth.device)


# ==================================================================================================
# deformation error


class DeformationErrors(NamedTuple):
    """Result of :func:`deformation_error`: ``errors`` (K_kept,) metres of the kept matches (in match order),
    ``kept`` (K,) bool, which annotated matches were evaluated."""

    errors: torch.Tensor
    kept: torch.Tensor


def carry_weights(
    points: torch.Tensor, vertices: torch.Tensor, neighbours: int = CARRY_NEIGHBOURS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices and weights of the ``neighbours`` nearest vertices of each point.

    w_k = (1 - d_k / d_{n+1})^2, normalised to sum 1, with d_k the distance to the k-th nearest vertex and
    d_{n+1} the distance to the (neighbours + 1)-th (``scipy.spatial.cKDTree``). When all weights vanish
    (the n + 1 nearest vertices are equidistant, or the point sits on n + 1 coincident vertices) the weights
    are uniform.

    Args:
        points: (K, 3) metres. vertices: (V, 3) metres with V >= neighbours + 1. neighbours: n >= 1.
    Returns:
        (indices (K, n) int64, weights (K, n) float64), on the CPU.
    """
    check_tensor("points", points, ("K", 3))
    verts = _check_vertices("vertices", vertices)
    n = _check_int("neighbours", neighbours, 1)
    if verts.shape[0] < n + 1:
        raise ValueError(f"vertices: expected at least neighbours + 1 = {n + 1} vertices, found {verts.shape[0]}")
    p = points.detach().cpu().double().numpy()
    if p.shape[0] == 0:
        return torch.zeros(0, n, dtype=torch.int64), torch.zeros(0, n, dtype=torch.float64)
    from scipy.spatial import cKDTree

    d, idx = cKDTree(verts).query(p, k=n + 1)
    d = d.reshape(-1, n + 1)
    idx = idx.reshape(-1, n + 1)
    dn = d[:, -1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(dn > 0, (1.0 - d[:, :n] / np.where(dn > 0, dn, 1.0)) ** 2, 0.0)
    s = w.sum(1, keepdims=True)
    w = np.where(s > 0, w / np.where(s > 0, s, 1.0), 1.0 / n)
    return torch.from_numpy(idx[:, :n].astype(np.int64)), torch.from_numpy(w)


def carry_points(
    points: torch.Tensor,
    source_vertices: torch.Tensor,
    target_vertices: torch.Tensor,
    neighbours: int = CARRY_NEIGHBOURS,
) -> torch.Tensor:
    """Move source points with the weighted displacement of their nearest source-mesh vertices.

    p' = sum_k w_k (p + (target_vertices[i_k] - source_vertices[i_k])), with (i_k, w_k) from
    :func:`carry_weights` on ``source_vertices``.

    Args:
        points: (K, 3) metres in the source camera frame.
        source_vertices, target_vertices: (V, 3) the reconstructed mesh at the source and the target frame
            (same vertex order), each in its own camera frame.
    Returns:
        (K, 3) carried points in the target camera frame (dtype/device of ``points``).
    """
    check_tensor("points", points, ("K", 3))
    check_tensor("source_vertices", source_vertices, ("V", 3))
    check_tensor("target_vertices", target_vertices, ("V", 3), finite=False)
    if source_vertices.shape != target_vertices.shape:
        raise ValueError(
            f"target_vertices: expected the shape of source_vertices {tuple(source_vertices.shape)} (same-index "
            f"vertices), found {tuple(target_vertices.shape)}"
        )
    check_finite("target_vertices", target_vertices)
    idx, w = carry_weights(points, source_vertices, neighbours)
    sv = source_vertices.detach().cpu().double()
    tv = target_vertices.detach().cpu().double()
    disp = (tv[idx] - sv[idx]) * w.unsqueeze(-1)  # (K, n, 3)
    out = points.detach().cpu().double() + disp.sum(1)
    return out.to(dtype=points.dtype, device=points.device)


def _round_px(px: np.ndarray) -> np.ndarray:
    """Nearest pixel centre (x, y) -> integer (column, row), halves rounded up (floor(x + 0.5))."""
    return np.floor(px + 0.5).astype(np.int64)


def _window_depth(depth: np.ndarray, pix: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Nearest valid depth (pixel distance, first in row-major order among ties) in a window x window square
    around integer pixels ``pix`` (K, 2) (x, y). Returns (depth (K,), found (K,) bool)."""
    H, W = depth.shape
    r = window // 2
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    dy, dx = dy.ravel(), dx.ravel()
    order = np.argsort(dx * dx + dy * dy, kind="stable")
    dx, dy = dx[order], dy[order]
    xs = pix[:, :1] + dx[None]
    ys = pix[:, 1:] + dy[None]
    inside = (xs >= 0) & (xs < W) & (ys >= 0) & (ys < H)
    z = depth[np.clip(ys, 0, H - 1), np.clip(xs, 0, W - 1)]
    ok = inside & np.isfinite(z) & (z > 0)
    found = ok.any(1)
    first = np.argmax(ok, axis=1)
    return np.where(found, z[np.arange(len(pix)), first], 0.0), found


def _check_px(name: str, px, dims: dict) -> np.ndarray:
    check_tensor(name, px, ("K", 2), dims=dims)
    return px.detach().cpu().double().numpy()


def deformation_error(
    source_px: torch.Tensor,
    target_px: torch.Tensor,
    source_depth: torch.Tensor,
    target_depth: torch.Tensor,
    source_mask: torch.Tensor,
    target_mask: torch.Tensor,
    intrinsics,
    source_vertices: torch.Tensor | None,
    target_vertices: torch.Tensor | None,
    *,
    erosion: int = DEFORMATION_EROSION,
    window: int = DEPTH_WINDOW,
    neighbours: int = CARRY_NEIGHBOURS,
) -> DeformationErrors:
    """3D error of annotated sparse matches after carrying the source points with the reconstructed motion.

    A match is kept when its source pixel (rounded to the nearest pixel centre) lies inside the image and the
    source mask eroded ``erosion`` times, its target pixel likewise for the target mask, and both points have a
    valid depth (> 0, finite) in the ``window`` x ``window`` square around the rounded pixel (the nearest valid
    pixel in pixel distance, ties in row-major order). Each point is back-projected at its annotated (sub-pixel)
    coordinates with that depth. The source point is carried to the target by :func:`carry_points`
    (``neighbours`` nearest source-mesh vertices, weights (1 - d / d_{n+1})^2); the error is the distance to the
    target point.

    Args:
        source_px, target_px: (K, 2) annotated pixels (x = column, y = row).
        source_depth, target_depth: (H, W) metres (0 / non-finite = no depth).
        source_mask, target_mask: (H, W) bool object masks.
        intrinsics: (4,) fx, fy, cx, cy (or a 3x3 / 4x4 matrix), shared by both frames.
        source_vertices, target_vertices: (V, 3) the reconstructed mesh at the source and the target frame
            (same vertex order, each in its camera frame), or None for a missing mesh.
        erosion, window, neighbours: DeepDeform's 2 iterations, 7 px (odd) and 5 vertices.

    Returns:
        :class:`DeformationErrors` (errors (K_kept,) metres, dtype/device of ``source_depth``; kept (K,) bool).
        Every kept match counts :data:`MISSING_MESH_M` when either mesh is None.
    """
    dims: dict = {}
    sp = _check_px("source_px", source_px, dims)
    tp = _check_px("target_px", target_px, dims)
    _check_depth("source_depth", source_depth)
    H, W = source_depth.shape
    _check_depth("target_depth", target_depth)
    if tuple(target_depth.shape) != (H, W):
        raise ValueError(f"target_depth: expected shape {(H, W)} like source_depth, found {tuple(target_depth.shape)}")
    sm = _check_mask("source_mask", source_mask, (H, W))
    tm = _check_mask("target_mask", target_mask, (H, W))
    intr = as_intrinsics(intrinsics, dtype=torch.float64)
    check_shape("intrinsics", intr, (4,))
    erosion = _check_int("erosion", erosion, 0)
    window = _check_int("window", window, 1)
    if window % 2 != 1:
        raise ValueError(f"window: expected an odd window side in pixels, found {window}")
    neighbours = _check_int("neighbours", neighbours, 1)
    sv = _check_vertices("source_vertices", source_vertices)
    tv = _check_vertices("target_vertices", target_vertices)
    if sv is not None and tv is not None and sv.shape != tv.shape:
        raise ValueError(
            f"source_vertices, target_vertices: expected the same shape (same-index vertices), found "
            f"{tuple(source_vertices.shape)} and {tuple(target_vertices.shape)}"
        )

    out_dtype, out_device = source_depth.dtype, source_depth.device
    sd = source_depth.detach().cpu().double().numpy()
    td = target_depth.detach().cpu().double().numpy()
    keep = np.ones(len(sp), dtype=bool)
    zs: list[np.ndarray] = []
    for px, mask, depth in ((sp, sm, sd), (tp, tm, td)):
        pix = _round_px(px)
        inside = (pix[:, 0] >= 0) & (pix[:, 0] < W) & (pix[:, 1] >= 0) & (pix[:, 1] < H)
        er = erode_mask(mask, erosion)
        pc = np.clip(pix, 0, [W - 1, H - 1])
        keep &= inside & er[pc[:, 1], pc[:, 0]]
        z, found = _window_depth(depth, pc, window)
        keep &= found
        zs.append(z)
    kept = torch.from_numpy(keep)
    k = int(keep.sum())
    if sv is None or tv is None:
        return DeformationErrors(torch.full((k,), MISSING_MESH_M, dtype=out_dtype, device=out_device), kept)
    if sv.shape[0] < neighbours + 1:
        raise ValueError(
            f"source_vertices: expected at least neighbours + 1 = {neighbours + 1} vertices, found {sv.shape[0]}"
        )
    ps = backproject(torch.from_numpy(sp[keep]), torch.from_numpy(zs[0][keep]), intr)
    pt = backproject(torch.from_numpy(tp[keep]), torch.from_numpy(zs[1][keep]), intr)
    moved = carry_points(ps, torch.from_numpy(sv), torch.from_numpy(tv), neighbours)
    err = (moved - pt).norm(dim=-1)
    return DeformationErrors(err.to(dtype=out_dtype, device=out_device), kept)


# ==================================================================================================
# aggregation


def _frame_value(name: str, frame, value) -> float:
    if value is None:
        return MISSING_MESH_M
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: frame {frame}: expected a number or None, found {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(
            f"{name}: frame {frame}: expected a finite error >= 0 m (None = missing mesh; leave out frames with "
            f"nothing to evaluate), found {value!r}"
        )
    return v


def segment_scores(errors_per_frame: dict[int, float | None], segment_length: int = SEGMENT_LENGTH) -> list[float]:
    """Capped mean error (m) of each segment of a sequence.

    Args:
        errors_per_frame: frame index (>= 0) -> the frame's mean error in metres, None for a missing mesh
            (counts :data:`MISSING_MESH_M`). Frames with nothing to evaluate should be left out.
        segment_length: frames per segment; frame f belongs to segment f // segment_length.

    Returns:
        One value per non-empty segment, in segment order: min(mean of its frames, :data:`SEGMENT_CAP_M`).
    """
    if not isinstance(errors_per_frame, dict):
        raise ValueError(f"errors_per_frame: expected a dict frame -> error, found {type(errors_per_frame).__name__}")
    segment_length = _check_int("segment_length", segment_length, 1)
    groups: dict[int, list[float]] = {}
    for f, v in errors_per_frame.items():
        f = _check_int("errors_per_frame (frame index)", f, 0)
        groups.setdefault(f // segment_length, []).append(_frame_value("errors_per_frame", f, v))
    return [min(float(np.mean(groups[s])), SEGMENT_CAP_M) for s in sorted(groups)]


def benchmark_score(per_sequence: dict[str, list[float]]) -> float:
    """Benchmark score in CENTIMETRES: mean of the segment scores (m) within each sequence, then over sequences."""
    if not isinstance(per_sequence, dict) or not per_sequence:
        raise ValueError(f"per_sequence: expected a non-empty dict sequence -> segment scores, found {per_sequence!r}")
    means = []
    for seq, scores in per_sequence.items():
        vals = np.asarray(list(scores), dtype=np.float64) if scores is not None else np.zeros(0)
        if vals.ndim != 1 or vals.size == 0:
            raise ValueError(f"per_sequence[{seq!r}]: expected a non-empty list of segment scores, found {scores!r}")
        if not np.isfinite(vals).all() or (vals < 0).any():
            raise ValueError(f"per_sequence[{seq!r}]: expected finite scores >= 0 m, found {scores!r}")
        means.append(vals.mean())
    return float(np.mean(means) * 100.0)


def _json_float(v):
    v = float(v)
    return v if math.isfinite(v) else None


@dataclass
class ReconstructionReport:
    """Per-frame mean errors and the two benchmark scores of a reconstruction run.

    Attributes:
        geometry_per_frame, deformation_per_frame: sequence -> frame index -> mean error in metres
            (:data:`MISSING_MESH_M` for a missing mesh, NaN for a frame with nothing to evaluate, which the
            scores leave out).
        geometry_cm, deformation_cm: :func:`benchmark_score` of each (centimetres), NaN when no frame counts.
        segment_length: frames per segment used for the scores.
    """

    geometry_per_frame: dict[str, dict[int, float]] = field(default_factory=dict)
    deformation_per_frame: dict[str, dict[int, float]] = field(default_factory=dict)
    geometry_cm: float = float("nan")
    deformation_cm: float = float("nan")
    segment_length: int = SEGMENT_LENGTH

    @staticmethod
    def _score(per_frame: dict[str, dict[int, float]], segment_length: int) -> float:
        segs = {}
        for seq, frames in per_frame.items():
            counted = {f: v for f, v in frames.items() if not (v is not None and math.isnan(float(v)))}
            if counted:
                segs[seq] = segment_scores(counted, segment_length)
        return benchmark_score(segs) if segs else float("nan")

    @classmethod
    def from_frames(
        cls,
        geometry: dict[str, dict[int, float | None]],
        deformation: dict[str, dict[int, float | None]],
        *,
        segment_length: int = SEGMENT_LENGTH,
    ) -> ReconstructionReport:
        """Build the report from per-frame mean errors (metres; None = missing mesh, NaN = nothing evaluated)."""
        segment_length = _check_int("segment_length", segment_length, 1)

        def value(name, f, v) -> float:
            if isinstance(v, (float, np.floating)) and math.isnan(float(v)):
                return float("nan")  # nothing evaluated in this frame: kept in the report, left out of the scores
            return _frame_value(name, f, v)

        def clean(name, d) -> dict[str, dict[int, float]]:
            if not isinstance(d, dict):
                raise ValueError(f"{name}: expected a dict sequence -> frame -> error, found {type(d).__name__}")
            out = {}
            for seq, frames in d.items():
                if not isinstance(frames, dict):
                    raise ValueError(f"{name}[{seq!r}]: expected a dict frame -> error, found {type(frames).__name__}")
                out[str(seq)] = {_check_int(f"{name}[{seq!r}] (frame index)", f, 0): value(name, f, v)
                                 for f, v in frames.items()}  # fmt: skip
            return out

        g, d = clean("geometry", geometry), clean("deformation", deformation)
        return cls(g, d, cls._score(g, segment_length), cls._score(d, segment_length), segment_length)

    def to_dict(self) -> dict:
        """JSON-safe dict (frame keys as strings, NaN -> None)."""

        def frames(d):
            return {s: {str(f): _json_float(v) for f, v in sorted(fr.items())} for s, fr in d.items()}

        return {
            "geometry_cm": _json_float(self.geometry_cm),
            "deformation_cm": _json_float(self.deformation_cm),
            "segment_length": int(self.segment_length),
            "geometry_per_frame_m": frames(self.geometry_per_frame),
            "deformation_per_frame_m": frames(self.deformation_per_frame),
        }


# ==================================================================================================
# submission files


def submission_name(seq: str, segment_end: int, frame: int) -> str:
    """File name of one submitted mesh: ``f"{seq}_{segment_end:06d}_{frame:06d}.ply"``.

    ``segment_end`` is the last frame of the evaluated segment, ``frame`` the frame the mesh reconstructs. The
    6-digit zero padding is our choice, matching DeepDeform's 6-digit frame ids (``color/000042.jpg``).
    """
    if not isinstance(seq, str) or not seq or re.search(r"[\\/\s]", seq):
        raise ValueError(f"seq: expected a non-empty sequence id without slashes or spaces, found {seq!r}")
    segment_end = _check_int("segment_end", segment_end, 0)
    frame = _check_int("frame", frame, 0)
    return f"{seq}_{segment_end:06d}_{frame:06d}.ply"


def _as_array(name: str, x, dtype=None) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x) if dtype is None else np.asarray(x, dtype=dtype)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected an array of numbers, found {type(x).__name__}") from None


def write_mesh_ply(path: str | os.PathLike, vertices, faces, colors=None) -> Path:
    """Write a triangle mesh as a binary little-endian PLY, atomically.

    Args:
        path: output file.
        vertices: (V, 3) finite metres (tensor or array), stored as float32 ``x, y, z``.
        faces: (F, 3) integer vertex indices in [0, V), stored as ``list uchar int vertex_indices``.
        colors: (V, 3) RGB in [0, 1] stored as uchar ``red, green, blue`` (round(255 c)), or None.
    Returns:
        The path.
    """
    v = _as_array("vertices", vertices, np.float64)
    check_shape("vertices", v, ("V", 3))
    check_finite("vertices", v)
    big = np.abs(v) > np.finfo(np.float32).max
    if big.any():  # stored as float32: these would be written as inf, which read_mesh_ply refuses
        raise ValueError(f"vertices: expected values within float32 range (|x| <= {np.finfo(np.float32).max:.3g}), "
                         f"found {int(big.any(axis=1).sum())} vertices beyond it (max |x| {np.abs(v).max():.3g})")
    f = _as_array("faces", faces)
    if f.size == 0:
        f = f.reshape(0, 3).astype(np.int64)
    check_shape("faces", f, ("F", 3))
    if not np.issubdtype(f.dtype, np.integer):
        raise ValueError(f"faces: expected integer vertex indices, found dtype {f.dtype}")
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise ValueError(f"faces: expected vertex indices in [0, {len(v)}), found range [{f.min()}, {f.max()}]")
    props = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    header = ["ply", "format binary_little_endian 1.0", "comment written by nrsfm_kit", f"element vertex {len(v)}",
              "property float x", "property float y", "property float z"]  # fmt: skip
    if colors is not None:
        c = _as_array("colors", colors, np.float64)
        check_shape("colors", c, (len(v), 3))
        check_finite("colors", c)
        if c.size and (c.min() < 0 or c.max() > 1):
            raise ValueError(f"colors: expected values in [0, 1], found range [{c.min()}, {c.max()}]")
        props += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    header += [f"element face {len(f)}", "property list uchar int vertex_indices", "end_header"]
    vrec = np.zeros(len(v), dtype=props)
    for k, a in enumerate("xyz"):
        vrec[a] = v[:, k]
    if colors is not None:
        c8 = np.round(c * 255.0).astype(np.uint8)
        for k, a in enumerate(("red", "green", "blue")):
            vrec[a] = c8[:, k]
    frec = np.zeros(len(f), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    frec["n"] = 3
    frec["i"] = f
    data = ("\n".join(header) + "\n").encode("ascii") + vrec.tobytes() + frec.tobytes()
    return atomic_write_bytes(path, data)


_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2", "ushort": "u2",
    "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4", "float": "f4", "float32": "f4",
    "double": "f8", "float64": "f8",
}  # fmt: skip


def _parse_ply_header(p: Path, raw: bytes):
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise ValueError(f"{p}: not a PLY file (expected 'ply' ... 'end_header')")
    nl = raw.find(b"\n", end)
    if nl < 0:
        raise ValueError(f"{p}: truncated PLY header (no newline after end_header)")
    try:
        lines = raw[:end].decode("ascii").splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"{p}: PLY header is not ASCII") from None
    fmt, elements = None, []
    for line in lines[1:]:
        t = line.split()
        if not t or t[0] in ("comment", "obj_info"):
            continue
        if t[0] == "format" and len(t) >= 2:
            fmt = t[1]
        elif t[0] == "element" and len(t) == 3 and t[2].isdigit():
            elements.append((t[1], int(t[2]), []))
        elif t[0] == "property" and elements:
            if len(t) == 5 and t[1] == "list" and t[2] in _PLY_TYPES and t[3] in _PLY_TYPES:
                elements[-1][2].append((t[4], "list", _PLY_TYPES[t[2]], _PLY_TYPES[t[3]]))
            elif len(t) == 3 and t[1] in _PLY_TYPES:
                elements[-1][2].append((t[2], "scalar", _PLY_TYPES[t[1]], None))
            else:
                raise ValueError(f"{p}: unsupported PLY property line {line!r}")
        else:
            raise ValueError(f"{p}: unexpected PLY header line {line!r}")
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise ValueError(f"{p}: expected format ascii / binary_little_endian / binary_big_endian, found {fmt!r}")
    return fmt, elements, nl + 1


def _read_binary(p: Path, raw: bytes, offset: int, elements, endian: str) -> dict:
    out = {}
    for name, count, props in elements:
        fields = []
        for pname, kind, t, it in props:
            if kind == "scalar":
                fields.append((pname, endian + t))
            else:  # fixed-size read, assuming triangles; checked below
                fields.append((pname + "#n", endian + t))
                fields.append((pname, endian + it, (3,)))
        dt = np.dtype(fields)
        size = dt.itemsize * count
        if offset + size > len(raw):
            raise ValueError(f"{p}: truncated PLY data: element {name!r} needs {size} bytes at offset {offset}, "
                             f"file has {len(raw)} bytes")  # fmt: skip
        rec = np.frombuffer(raw, dtype=dt, count=count, offset=offset)
        for pname, kind, _, _ in props:
            if kind == "list" and count and (rec[pname + "#n"] != 3).any():
                raise ValueError(f"{p}: element {name!r}: only triangle faces are supported (list sizes != 3)")
        out[name] = rec
        offset += size
    return out


def _read_ascii(p: Path, raw: bytes, offset: int, elements) -> dict:
    lines = [ln.split() for ln in raw[offset:].decode("ascii", errors="replace").splitlines() if ln.strip()]
    out, row = {}, 0
    for name, count, props in elements:
        if row + count > len(lines):
            raise ValueError(f"{p}: truncated PLY data: element {name!r} needs {count} lines")
        cols: dict[str, list] = {pn: [] for pn, *_ in props}
        for ln in lines[row : row + count]:
            k, ok = 0, True
            for pname, kind, _, _ in props:
                try:
                    if kind == "scalar":
                        cols[pname].append(float(ln[k]))
                        k += 1
                        continue
                    n = int(ln[k])
                    idx = [int(x) for x in ln[k + 1 : k + 1 + n]]
                except (IndexError, ValueError):
                    ok = False
                    break
                if n != 3 or len(idx) != 3:
                    raise ValueError(f"{p}: element {name!r}: only triangle faces are supported (found a list of {n})")
                cols[pname].append(idx)
                k += 1 + n
            if not ok or k != len(ln):
                raise ValueError(f"{p}: element {name!r}: malformed line {' '.join(ln)!r}")
        out[name] = {k: np.asarray(v) for k, v in cols.items()}
        row += count
    return out


def read_mesh_ply(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Read a triangle mesh PLY (binary little/big endian or ASCII), e.g. one written by :func:`write_mesh_ply`.

    Returns:
        vertices (V, 3) float32 metres, faces (F, 3) int64 (0 rows without a face element), colors (V, 3)
        float32 in [0, 1] (uchar / 255; float colours as stored) or None without ``red, green, blue``.
    Raises:
        FileNotFoundError for a missing file; ValueError naming the path for anything else (not a PLY,
        truncated data, non-triangle faces, missing x/y/z, indices out of range, non-finite vertices).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: PLY mesh file not found")
    raw = p.read_bytes()
    fmt, elements, offset = _parse_ply_header(p, raw)
    if fmt == "ascii":
        data = _read_ascii(p, raw, offset, elements)
    else:
        data = _read_binary(p, raw, offset, elements, "<" if fmt == "binary_little_endian" else ">")
    if "vertex" not in data:
        raise ValueError(f"{p}: no 'vertex' element in the PLY header")
    vert = data["vertex"]
    names = vert.dtype.names if isinstance(vert, np.ndarray) else tuple(vert)
    if not all(a in names for a in "xyz"):
        raise ValueError(f"{p}: expected vertex properties x, y, z, found {names}")
    v = np.stack([np.asarray(vert[a], dtype=np.float64) for a in "xyz"], 1).reshape(-1, 3)
    if not np.isfinite(v).all():
        raise ValueError(f"{p}: expected finite vertex coordinates, found {int((~np.isfinite(v)).sum())} non-finite")
    colors = None
    if all(a in names for a in ("red", "green", "blue")):
        c = np.stack([np.asarray(vert[a]) for a in ("red", "green", "blue")], 1).reshape(-1, 3)
        types = {pn: t for pn, _, t, _ in next(e for e in elements if e[0] == "vertex")[2]}
        is_float = types["red"].startswith("f")
        colors = torch.from_numpy((c if is_float else c / 255.0).astype(np.float32))
    faces = np.zeros((0, 3), dtype=np.int64)
    if "face" in data:
        fe = data["face"]
        fnames = fe.dtype.names if isinstance(fe, np.ndarray) else tuple(fe)
        key = next((k for k in ("vertex_indices", "vertex_index") if k in fnames), None)
        if key is None:
            raise ValueError(f"{p}: expected a face property vertex_indices, found {fnames}")
        faces = np.asarray(fe[key], dtype=np.int64).reshape(-1, 3)
        if faces.size and (faces.min() < 0 or faces.max() >= len(v)):
            raise ValueError(f"{p}: face indices out of range [0, {len(v)}): found [{faces.min()}, {faces.max()}]")
    return torch.from_numpy(v.astype(np.float32)), torch.from_numpy(faces), colors
