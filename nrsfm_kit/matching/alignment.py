"""Non-rigid RGB-D alignment with projective re-association, and DeepDeform's semi-supervised dense alignment.

DeepDeform (Bozic, Zollhoefer, Theobalt, Niessner, CVPR 2020) uses one non-rigid alignment loop twice:

- **tracking** (sec. 5, App. B): the embedded deformation graph of the source frame is aligned to the target
  RGB-D frame by Gauss-Newton (10 GN steps, 20 data-parallel PCG iterations each), with the dense data term
  E_data = point-to-point + point-to-plane on *projective* associations (re-found at every GN step), the ARAP
  regulariser, and the learned sparse (heatmap) matches as an extra term;
- **dataset labels** (App. D, "semi-supervised dense alignment"): the same loop on one annotated frame pair,
  with E = E_data + lambda_photo E_photo + lambda_silh E_silh + lambda_sparse E_sparse + lambda_reg E_reg, the
  20-50 sparse matches clicked by annotators, and the annotated target mask; the converged motion gives the
  dense optical / scene flow the dataset releases (``.oflow`` / ``.sflow``).

Projective association (per GN step, for every source point p with valid depth, a graph anchor, in the mask):

    q = Q(p; T)                      warped point (eq. 2 of Neural Non-Rigid Tracking)
    c = round(pi(q)) (or bilinear)   pixel of the target image
    y = pi^-1(c, D_t(c)), n = N_t(c) target point and its normal (normals of the target depth, computed once)
    keep (p, y, n) iff D_t(c) valid, ||q - y|| <= max_correspondence_distance and
        angle(R(p) n_s(p), n) <= max_normal_angle  (n_s: source normal, R(p): its skinning-blended rotation)
    E_point = sum ||q - y||^2,  E_plane = sum (n . (q - y))^2           (metres^2)

Each step is ONE Gauss-Newton step of :func:`nrsfm_kit.solver.gauss_newton.solve_problem` (``max_iter=1``, PCG
with ``pcg_iterations``) on the terms of :mod:`nrsfm_kit.solver.terms` (Warp kernels by default), starting
from the identity motion (or ``init``). Everything runs under ``torch.no_grad`` (no autograd needed).

Public API: :class:`AlignmentConfig`, :class:`AlignmentResult`, :class:`PixelMatches`, :func:`align`,
:func:`dense_alignment`, :func:`write_dense_alignment`, :func:`flow_endpoint_errors`,
:func:`simulate_sparse_matches`, :func:`depth_normals`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from nrsfm_kit.data.types import RGBDPair
from nrsfm_kit.geometry import as_intrinsics, backproject, depth_to_points, pixel_grid, project_with_mask
from nrsfm_kit.graph.types import DeformationGraph
from nrsfm_kit.kernels.warp_field import warp_points, warp_points_torch
from nrsfm_kit.solver.config import SolverConfig
from nrsfm_kit.solver.gauss_newton import GraphMotion, solve_problem
from nrsfm_kit.solver.problem import Problem, cluster_filter, sample_bilinear, sample_depth_bilinear
from nrsfm_kit.solver.terms import (
    Arap,
    Photometric,
    PointSet,
    PointToPlane,
    PointToPoint,
    ResidualTerm,
    Silhouette,
)
from nrsfm_kit.utils.checks import check_positive, check_shape, check_tensor

__all__ = [
    "AlignmentConfig",
    "AlignmentResult",
    "PixelMatches",
    "align",
    "dense_alignment",
    "write_dense_alignment",
    "flow_endpoint_errors",
    "simulate_sparse_matches",
    "depth_normals",
]

_METHODS = ("gn", "lm")
_SOLVERS = ("pcg", "dense")
_BACKENDS = ("warp", "torch")
_SAMPLINGS = ("nearest", "bilinear")
_COLOURS = ("gray", "rgb")
_GRAY = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma weights


# ==================================================================================================
# configuration and result
# ==================================================================================================


@dataclass
class AlignmentConfig:
    """Settings of :func:`align` / :func:`dense_alignment`, with DeepDeform's defaults where it states them.

    Residual units: point, plane, sparse and ARAP residuals are metres; photometric residuals are colour
    differences in [0, 1]; silhouette residuals are pixels (distance transform of the target mask). The
    lambdas of the last two convert them to "metre-equivalents", so that one unit of each term weighs like
    the data term at a typical error (see the comments on each default).
    """

    gn_iterations: int = 10  # DeepDeform App. B: 10 Gauss-Newton steps (projective re-association each)
    pcg_iterations: int = 20  # DeepDeform App. B: 20 iterations of the data-parallel PCG solver per step
    lambda_point: float = 1.0  # E_data = dense point-to-point + point-to-plane (DeepDeform sec. 5 / App. D)
    lambda_plane: float = 1.0
    lambda_reg: float = 1.0  # ARAP, as the data term weight (Neural Non-Rigid Tracking's lambda_reg = 1 too)
    # App. D weights (DeepDeform does not print numbers; ours, from the residual units):
    # photometric: a colour error of 0.1 (of [0, 1]) costs like ~3 mm of point distance: (3e-3 / 0.1)^2 ~ 1e-3
    lambda_photo: float = 0.001
    # silhouette: 1 px outside the target mask costs like ~3 mm (a Kinect pixel at 1.3 m, f = 575 px, is
    # 2.3 mm): (3e-3)^2 ~ 1e-5
    lambda_silh: float = 1e-5
    # sparse matches: 20-50 matches against 1e3-1e5 dense points need a large weight; measured with 30
    # matches (tests/matching/test_alignment.py): 10 is too weak on the synthetic pairs (0.37-0.45 px median
    # EPE against 0.29-0.30 px), 1000 no better there nor on DeepDeform seq258
    lambda_sparse: float = 100.0
    max_correspondence_distance: float = 0.05  # metres: projective associations farther apart are rejected
    max_normal_angle: float = 30.0  # degrees, normal compatibility (KinectFusion-style test; our choice)
    # central-difference half baseline of the depth normals, pixels: Kinect depth makes 1-pixel normals noisy
    # (seq258: median angle between neighbouring normals 19 degrees at 1 px, 12 at 2 px)
    normal_radius: int = 2
    method: str = "gn"  # "gn" (DeepDeform) or "lm" (diagonal damping ``damping``)
    damping: float = 0.1  # LM only: added to the diagonal of J^T J (NeuralTracking gn_lm_factor = 0.1)
    linear_solver: str = "pcg"  # "pcg" (DeepDeform's data-parallel PCG) or "dense" (Cholesky, for tests)
    backend: str = "warp"  # "warp" kernels or their pure-torch "torch" references (same maths)
    sampling: str = "nearest"  # target lookup at the projection: "nearest" pixel or "bilinear"
    colour: str = "gray"  # photometric term on "gray" (BT.601 luma) or "rgb" colours
    # solve on every ``source_stride``-th source pixel in u and v (the target stays at full resolution, the
    # result is evaluated on every pixel): the same graph and anchors, fewer residuals
    source_stride: int = 1
    min_cluster_correspondences: int = 3  # graph clusters with fewer constrained points are frozen for a step

    def __post_init__(self) -> None:
        for name in ("gn_iterations", "pcg_iterations", "source_stride", "normal_radius"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < (0 if name == "gn_iterations" else 1):
                lo = 0 if name == "gn_iterations" else 1
                raise ValueError(f"{name}: expected an int >= {lo}, found {v!r}")
        v = self.min_cluster_correspondences
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"min_cluster_correspondences: expected an int >= 0, found {v!r}")
        for name in ("lambda_point", "lambda_plane", "lambda_reg", "lambda_photo", "lambda_silh", "lambda_sparse",
                     "damping"):
            check_positive(name, getattr(self, name), strict=False)
        check_positive("max_correspondence_distance", self.max_correspondence_distance)
        a = check_positive("max_normal_angle", self.max_normal_angle)
        if a > 180:
            raise ValueError(f"max_normal_angle: expected degrees in (0, 180], found {self.max_normal_angle!r}")
        for name, allowed in (("method", _METHODS), ("linear_solver", _SOLVERS), ("backend", _BACKENDS),
                              ("sampling", _SAMPLINGS), ("colour", _COLOURS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: expected one of {list(allowed)}, found {getattr(self, name)!r}")


@dataclass
class AlignmentResult:
    """Output of :func:`align` / :func:`dense_alignment`.

    Attributes:
        motion: node motions T (rotations (N, 3, 3), translations (N, 3) metres).
        warped: (H, W, 3) warped source points Q(p) in the (target) camera frame, metres; NaN where not evaluated.
        optical_flow: (H, W, 2) pi(Q(p)) - p_pixel, pixels; NaN where not ``valid``.
        scene_flow: (H, W, 3) Q(p) - p, metres; NaN where not ``valid``.
        valid: (H, W) bool: source pixel with valid depth, a graph anchor, inside the mask, warped in front of
            the camera.
        history: one dict per GN step: ``iteration``, ``associations`` (accepted projective pairs), the energy
            of every term at the linearisation point (keys = term names, ``total``) and ``total_after`` (the
            energy after the step, same associations).
        seconds: wall time of the call.
        graph: the deformation graph the motion acts on.
        notes: what was skipped or dropped (e.g. the silhouette term without a target mask).
    """

    motion: GraphMotion
    warped: torch.Tensor
    optical_flow: torch.Tensor
    scene_flow: torch.Tensor
    valid: torch.Tensor
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    graph: DeformationGraph | None = field(default=None, repr=False)
    notes: list[str] = field(default_factory=list)


class PixelMatches(NamedTuple):
    """Sparse 2D matches: source pixels (K, 2) -> target pixels (K, 2), (u = column, v = row), pixels."""

    source_px: torch.Tensor
    target_px: torch.Tensor


# ==================================================================================================
# helpers
# ==================================================================================================


def depth_normals(depth: torch.Tensor, intrinsics, radius: int = 1,
                  max_depth_jump: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit normals of a depth map by central differences, oriented towards the camera.

    n(u, v) = normalise((P(u+r, v) - P(u-r, v)) x (P(u, v+r) - P(u, v-r))), flipped so that n . P < 0.

    Args:
        depth: (H, W) metres, <= 0 or non-finite = invalid. intrinsics: (4,), 3x3 or 4x4.
        radius: r, the half baseline of the differences in pixels (larger = smoother normals on noisy depth).
        max_depth_jump: metres; a normal is invalid when one of its 4 neighbours is invalid or differs in depth
            from the pixel by more (a depth discontinuity).

    Returns:
        (normals (H, W, 3), 0 where invalid; valid (H, W) bool).
    """
    check_tensor("depth", depth, ("H", "W"), finite=False)
    if not isinstance(radius, int) or isinstance(radius, bool) or radius < 1:
        raise ValueError(f"radius: expected an int >= 1 (pixels), found {radius!r}")
    check_positive("max_depth_jump", max_depth_jump)
    pts, ok = depth_to_points(depth, intrinsics)
    H, W = depth.shape
    r = radius
    n = torch.zeros_like(pts)
    valid = torch.zeros_like(ok)
    if H <= 2 * r or W <= 2 * r:
        return n, valid
    z = torch.where(ok, depth, torch.zeros_like(depth))
    inner = (slice(r, H - r), slice(r, W - r))
    right, left = (slice(r, H - r), slice(2 * r, W)), (slice(r, H - r), slice(0, W - 2 * r))
    down, up = (slice(2 * r, H), slice(r, W - r)), (slice(0, H - 2 * r), slice(r, W - r))
    c = torch.linalg.cross(pts[right] - pts[left], pts[down] - pts[up])
    norm = c.norm(dim=-1, keepdim=True)
    nb = ok[inner] & (norm[..., 0] > 0)
    for sl in (right, left, down, up):
        nb = nb & ok[sl] & ((z[sl] - z[inner]).abs() <= max_depth_jump)
    c = c / norm.clamp_min(torch.finfo(c.dtype).tiny)
    c = torch.where((c * pts[inner]).sum(-1, keepdim=True) > 0, -c, c)
    n[inner] = torch.where(nb.unsqueeze(-1), c, torch.zeros_like(c))
    valid[inner] = nb
    return n, valid


def _as_mask(name: str, mask, H: int, W: int, device) -> torch.Tensor:
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(mask)
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"{name}: expected an (H, W) = ({H}, {W}) bool tensor, found {type(mask).__name__}")
    check_shape(name, mask, (H, W))
    if mask.is_floating_point():
        check_tensor(name, mask, (H, W))
    return (mask != 0).to(device)


def _colour_image(name: str, img: torch.Tensor, H: int, W: int, colour: str, dtype) -> torch.Tensor:
    """(3, H, W) RGB in [0, 1] -> (H, W, C) channels last, C = 1 (gray) or 3."""
    check_tensor(name, img, (3, H, W))
    img = img.to(dtype)
    if colour == "gray":
        w = torch.tensor(_GRAY, dtype=dtype, device=img.device)
        return torch.einsum("chw,c->hw", img, w).unsqueeze(-1)
    return img.permute(1, 2, 0)


def _pixel_index(px: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest pixel (row, column) of (..., 2) (u, v) positions, int64."""
    r = px.round().long()
    return r[..., 1], r[..., 0]


def _check_matches(matches, H: int, W: int, dtype, device) -> PixelMatches:
    if isinstance(matches, PixelMatches):
        src, tgt = matches
    elif isinstance(matches, (tuple, list)) and len(matches) == 2:
        src, tgt = matches
    else:
        raise ValueError(f"sparse_matches: expected (sparse_source_px (K, 2), sparse_target_px (K, 2)), found "
                         f"{type(matches).__name__}")
    out = []
    for name, x in (("sparse_source_px", src), ("sparse_target_px", tgt)):
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name}: expected a (K, 2) tensor of pixels, found {type(x).__name__}")
        if not (x.is_floating_point() or x.dtype in (torch.int32, torch.int64)):
            raise ValueError(f"{name}: expected real pixel coordinates, found dtype {x.dtype}")
        x = x.to(dtype=dtype, device=device)
        check_tensor(name, x, (None, 2))
        out.append(x)
    src, tgt = out
    if src.shape[0] != tgt.shape[0]:
        raise ValueError(f"sparse_target_px: expected one target pixel per source pixel (K = {src.shape[0]}), "
                         f"found {tgt.shape[0]}")
    if src.shape[0] == 0:
        raise ValueError("sparse_source_px: expected at least one match (DeepDeform annotates 20-50), found 0")
    for name, x in (("sparse_source_px", src), ("sparse_target_px", tgt)):
        r, c = _pixel_index(x)
        bad = (r < 0) | (r >= H) | (c < 0) | (c >= W)
        if bool(bad.any()):
            k = int(bad.nonzero()[0, 0])
            raise ValueError(f"{name}: expected pixels inside the {W}x{H} image (u in [-0.5, {W - 0.5}), v in "
                             f"[-0.5, {H - 0.5})), found {int(bad.sum())} outside, e.g. match {k} at "
                             f"{x[k].tolist()}")
    return PixelMatches(src, tgt)


def _match_points(name: str, px: torch.Tensor, depth: torch.Tensor, intr: torch.Tensor) -> torch.Tensor:
    """3D points of pixels: the depth of the nearest pixel, back-projected at the sub-pixel position."""
    r, c = _pixel_index(px)
    z = depth[r, c]
    bad = ~(torch.isfinite(z) & (z > 0))
    if bool(bad.any()):
        k = int(bad.nonzero()[0, 0])
        raise ValueError(f"{name}: expected pixels on valid depth (> 0), found {int(bad.sum())} on invalid depth, "
                         f"e.g. match {k} at {px[k].tolist()} (depth {float(z[k])})")
    return backproject(px, z, intr)


def _warp(points, anchors, weights, nodes, R, t, backend: str) -> torch.Tensor:
    fn = warp_points if backend == "warp" else warp_points_torch
    return fn(points, anchors, weights, nodes, R, t)


def _blend_rotate(normals: torch.Tensor, anchors: torch.Tensor, weights: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """Skinning-blended rotation of normals: normalise(sum_a w_a R_{k_a} n), (P, 3)."""
    ok = anchors >= 0
    w = torch.where(ok, weights, torch.zeros_like(weights))
    Rn = torch.einsum("paij,pj->pai", R[anchors.clamp(min=0)], normals)
    m = (w.unsqueeze(-1) * Rn).sum(1)
    return m / m.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(m.dtype).tiny)


class _Target(NamedTuple):
    depth: torch.Tensor  # (1, H, W)
    points: torch.Tensor  # (H, W, 3)
    normals: torch.Tensor  # (H, W, 3)
    point_ok: torch.Tensor  # (H, W)
    normal_ok: torch.Tensor  # (H, W)


def _associate(q: torch.Tensor, n_src: torch.Tensor, n_src_ok: torch.Tensor, tg: _Target, intr: torch.Tensor,
               cfg: AlignmentConfig, min_depth: float):
    """Projective association of warped points q (P, 3): (target points y (P, 3), normals (P, 3), pixels (P, 2),
    accepted (P,) bool)."""
    H, W = tg.point_ok.shape
    uv, in_front = project_with_mask(q, intr, min_depth=min_depth)
    if cfg.sampling == "nearest":
        r, c = _pixel_index(uv)
        inside = in_front & (r >= 0) & (r < H) & (c >= 0) & (c < W)
        r, c = r.clamp(0, H - 1), c.clamp(0, W - 1)
        y, n = tg.points[r, c], tg.normals[r, c]
        ok = inside & tg.point_ok[r, c] & tg.normal_ok[r, c]
    else:
        z, z_ok = sample_depth_bilinear(tg.depth, uv.unsqueeze(0))
        y = backproject(uv, z[0], intr)
        n, n_ok = sample_bilinear(tg.normals.unsqueeze(0), tg.normal_ok.unsqueeze(0), uv.unsqueeze(0))
        n = n[0]
        nn = n.norm(dim=-1, keepdim=True)
        ok = in_front & z_ok[0] & n_ok[0] & (nn[..., 0] > 0.5)  # opposite normals average out: reject
        n = n / nn.clamp_min(torch.finfo(n.dtype).tiny)
    dist_ok = (q - y).norm(dim=-1) <= cfg.max_correspondence_distance
    cos = (n_src * n).sum(-1)
    angle_ok = (cos >= math.cos(math.radians(cfg.max_normal_angle))) | ~n_src_ok
    ok = ok & dist_ok & angle_ok
    zero = torch.zeros_like(y)
    return torch.where(ok.unsqueeze(-1), y, zero), torch.where(ok.unsqueeze(-1), n, zero), uv, ok


def _energies(hist: dict, k: int, names: set[str]) -> dict[str, float]:
    """Energies of the active terms (and ``total``) at entry k of a :func:`solve_problem` history."""
    return {name: float(v[k][0]) for name, v in hist.items() if name in names or name == "total"}


# ==================================================================================================
# the alignment loop
# ==================================================================================================


def align(
    pair: RGBDPair,
    graph: DeformationGraph,
    *,
    config: AlignmentConfig | None = None,
    extra_terms: Sequence[ResidualTerm] = (),
    sparse_matches: PixelMatches | tuple[torch.Tensor, torch.Tensor] | None = None,
    source_mask: torch.Tensor | None = None,
    init: GraphMotion | None = None,
    progress: bool = False,
) -> AlignmentResult:
    """Non-rigid alignment of the source frame of ``pair`` to its target frame (DeepDeform App. B / D).

    Source points: the back-projected source pixels with valid depth, a valid graph anchor and inside the mask
    (``source_mask``, else ``pair.source_mask``, else every pixel); every ``config.source_stride``-th pixel is
    used in the solve. Each of the ``config.gn_iterations`` steps warps them with the current motion, projects
    them into the target frame, re-associates them with the target depth (distance / normal-angle rejection,
    module docstring) and takes ONE Gauss-Newton step (PCG, ``config.pcg_iterations``) on

        lambda_point E_point + lambda_plane E_plane + lambda_reg E_arap            (always)
        + lambda_sparse E_sparse        when ``sparse_matches`` are given (source 3D point -> target 3D point)
        + lambda_photo E_photo          when lambda_photo > 0 (target colour at pi(Q(p)) vs source colour)
        + lambda_silh E_silh            when lambda_silh > 0 and ``pair.target_mask`` exists (else a note)
        + ``extra_terms``               fixed terms built by the caller (e.g. a learned heatmap term)

    Args:
        pair: source / target colour (3, H, W) in [0, 1] (used by the photometric term only), depth (H, W)
            metres (0 = invalid), shared intrinsics (4,). float32 (default) or float64: the computation dtype.
        graph: deformation graph of the source frame; ``pixel_anchors`` (H, W, A) of the same size.
        config: :class:`AlignmentConfig` (DeepDeform's defaults).
        extra_terms: further :class:`~nrsfm_kit.solver.terms.ResidualTerm` objects, unchanged across steps.
        sparse_matches: (source pixels (K, 2), target pixels (K, 2)), (u, v) pixels; each end takes the depth
            of its nearest pixel. Matches whose source pixel has no graph anchor are dropped (``notes``).
        source_mask: (H, W) bool object mask of the source frame.
        init: initial motion (rotations (N, 3, 3), translations (N, 3)); identity by default.
        progress: show a tqdm bar over the GN steps.

    Returns:
        :class:`AlignmentResult` (flows evaluated on every masked source pixel, not only the strided ones).

    Raises:
        ValueError: shapes / sizes that disagree, non-finite inputs, sparse pixels outside the image or on invalid
            depth, a mask without a single usable source point, bad settings. Messages name the argument, the
            expected and the found value.
    """
    t_start = time.perf_counter()
    cfg = AlignmentConfig() if config is None else config
    if not isinstance(cfg, AlignmentConfig):
        raise ValueError(f"config: expected an AlignmentConfig, found {type(cfg).__name__}")
    if not isinstance(pair, RGBDPair):
        raise ValueError(f"pair: expected an RGBDPair, found {type(pair).__name__}")
    if not isinstance(graph, DeformationGraph):
        raise ValueError(f"graph: expected a DeformationGraph, found {type(graph).__name__}")
    extra = list(extra_terms)
    for k, term in enumerate(extra):
        if not isinstance(term, ResidualTerm):
            raise ValueError(f"extra_terms[{k}]: expected a ResidualTerm, found {type(term).__name__}")

    dims: dict = {}
    check_tensor("pair.source_depth", pair.source_depth, ("H", "W"), dims=dims, finite=False)
    check_tensor("pair.target_depth", pair.target_depth, ("H", "W"), dims=dims, finite=False)
    H, W = dims["H"], dims["W"]
    dt, dev = pair.source_depth.dtype, pair.source_depth.device
    if dt not in (torch.float32, torch.float64):
        raise ValueError(f"pair.source_depth: expected float32 or float64, found {dt}")
    intr = as_intrinsics(pair.intrinsics, dtype=dt, device=dev)
    check_shape("pair.intrinsics", intr, (4,))
    graph.validate()
    check_shape("graph.pixel_anchors", graph.pixel_anchors, (H, W, None))
    g = graph.to(device=dev, dtype=dt)
    nodes, N = g.nodes, g.num_nodes
    notes: list[str] = []

    mask = source_mask if source_mask is not None else pair.source_mask
    mask = torch.ones(H, W, dtype=torch.bool, device=dev) if mask is None else _as_mask(
        "source_mask" if source_mask is not None else "pair.source_mask", mask, H, W, dev)

    with torch.no_grad():
        src_pts, src_ok = depth_to_points(pair.source_depth.to(dt), intr)
        has_anchor = ((g.pixel_anchors >= 0) & (g.pixel_weights > 0)).any(-1)
        sel_full = src_ok & has_anchor & mask
        if not bool(sel_full.any()):
            raise ValueError(f"source_mask: expected pixels with valid source depth and a graph anchor inside the "
                             f"mask, found none ({int(mask.sum())} mask pixels, {int(src_ok.sum())} with depth, "
                             f"{int(has_anchor.sum())} with anchors)")
        s = cfg.source_stride
        grid = torch.zeros(H, W, dtype=torch.bool, device=dev)
        grid[::s, ::s] = True
        sel = sel_full & grid
        if not bool(sel.any()):
            raise ValueError(f"source_stride: expected a stride leaving source points, found none at {s}")
        rows, cols = sel.nonzero(as_tuple=True)
        P = rows.numel()
        ps = PointSet.make(src_pts[rows, cols].unsqueeze(0), g.pixel_anchors[rows, cols],
                           g.pixel_weights[rows, cols])
        src_n_img, src_n_ok_img = depth_normals(pair.source_depth.to(dt), intr, cfg.normal_radius)
        src_n, src_n_ok = src_n_img[rows, cols], src_n_ok_img[rows, cols]

        tdepth = pair.target_depth.to(dt)
        t_pts, t_ok = depth_to_points(tdepth, intr)
        t_n, t_n_ok = depth_normals(tdepth, intr, cfg.normal_radius)
        target = _Target(tdepth.unsqueeze(0), t_pts, t_n, t_ok, t_n_ok)

        fixed: list[ResidualTerm] = []
        # sparse matches: source 3D point -> target 3D point, point-to-point with lambda_sparse
        sparse_base = None
        if sparse_matches is not None:
            m = _check_matches(sparse_matches, H, W, dt, dev)
            sp_src = _match_points("sparse_source_px", m.source_px, pair.source_depth.to(dt), intr)
            sp_tgt = _match_points("sparse_target_px", m.target_px, tdepth, intr)
            r, c = _pixel_index(m.source_px)
            sa, sw = g.pixel_anchors[r, c], g.pixel_weights[r, c]
            keep = ((sa >= 0) & (sw > 0)).any(-1)
            if not bool(keep.all()):
                notes.append(f"sparse: {int((~keep).sum())} of {keep.numel()} matches dropped (source pixel "
                             f"without a graph anchor)")
            if bool(keep.any()) and cfg.lambda_sparse > 0:
                sps = PointSet.make(sp_src[keep].unsqueeze(0), sa[keep], sw[keep])
                fixed.append(PointToPoint(sps, sp_tgt[keep].unsqueeze(0), weight=cfg.lambda_sparse, name="sparse"))
                sparse_base = (sps.anchors, sps.anchor_weights)
        if cfg.lambda_photo > 0:
            tgt_img = _colour_image("pair.target_color", pair.target_color, H, W, cfg.colour, dt)
            src_img = _colour_image("pair.source_color", pair.source_color, H, W, cfg.colour, dt)
            fixed.append(Photometric(ps, tgt_img.unsqueeze(0), src_img[rows, cols].unsqueeze(0), intr.unsqueeze(0),
                                     weight=cfg.lambda_photo))
        if cfg.lambda_silh > 0:
            if pair.target_mask is None:
                notes.append("silhouette: skipped (pair.target_mask is None; DeepDeform's E_silh needs the "
                             "annotated target mask)")
            else:
                tmask = _as_mask("pair.target_mask", pair.target_mask, H, W, dev)
                fixed.append(Silhouette(ps, tmask.unsqueeze(0), intr.unsqueeze(0), weight=cfg.lambda_silh))
        arap = Arap(g.edges, weight=cfg.lambda_reg, dtype=dt) if cfg.lambda_reg > 0 else None
        fixed_dense = any(isinstance(term, (Photometric, Silhouette)) for term in fixed)

        if init is None:
            R = torch.eye(3, dtype=dt, device=dev).expand(N, 3, 3).contiguous()
            t = torch.zeros(N, 3, dtype=dt, device=dev)
        else:
            if not isinstance(init, GraphMotion):
                init = GraphMotion(*init)
            R = check_tensor("init.rotations", init.rotations, (N, 3, 3)).to(dt).clone()
            t = check_tensor("init.translations", init.translations, (N, 3)).to(dt).clone()

        scfg = SolverConfig(method=cfg.method, max_iter=1, damping=cfg.damping, linear_solver=cfg.linear_solver,
                            cg_max_iter=cfg.pcg_iterations, backend=cfg.backend, min_cluster_correspondences=0)
        clusters = g.clusters.long()
        history: list[dict] = []
        steps = range(cfg.gn_iterations)
        if progress:
            from tqdm.auto import tqdm

            steps = tqdm(steps, desc="non-rigid alignment", leave=False)
        for it in steps:
            q = _warp(ps.points[0], ps.anchors, ps.anchor_weights, nodes, R, t, cfg.backend)
            n_warped = _blend_rotate(src_n, ps.anchors, ps.anchor_weights, R)
            y, n, uv, ok = _associate(q, n_warped, src_n_ok, target, intr, cfg, scfg.min_depth)
            idx = ok.nonzero().squeeze(1)
            terms: list[ResidualTerm] = []
            if idx.numel():
                dps = PointSet(ps.points[:, idx], ps.anchors[idx], ps.anchor_weights[idx])
                if cfg.lambda_point > 0:
                    terms.append(PointToPoint(dps, y[idx].unsqueeze(0), weight=cfg.lambda_point))
                if cfg.lambda_plane > 0:
                    terms.append(PointToPlane(dps, y[idx].unsqueeze(0), n[idx].unsqueeze(0), weight=cfg.lambda_plane))
            terms += fixed
            if arap is not None:
                terms.append(arap)
            terms += extra
            if not terms:
                raise ValueError("config: expected at least one active term, found none (every lambda is 0 and no "
                                 "association, sparse match or extra term)")
            # clusters without constrained points are frozen for this step (their motion kept)
            anc, aw = [ps.anchors[idx]], [ps.anchor_weights[idx]]
            if fixed_dense:
                anc, aw = [ps.anchors], [ps.anchor_weights]
            if sparse_base is not None:
                anc.append(sparse_base[0])
                aw.append(sparse_base[1])
            all_a, all_w = torch.cat(anc), torch.cat(aw)
            base = torch.ones(1, all_a.shape[0], dtype=torch.bool, device=dev)
            valid_nodes, valid_full, counts = cluster_filter(clusters, all_a, all_w, base,
                                                             cfg.min_cluster_correspondences)
            if extra:  # caller terms may constrain any node
                valid_nodes = torch.ones_like(valid_nodes)
            prob = Problem(nodes=nodes, edges=g.edges.long(), terms=terms, valid_nodes=valid_nodes,
                           points=ps.points[:, idx], anchors=ps.anchors[idx], anchor_weights=ps.anchor_weights[idx],
                           corr=uv[idx].unsqueeze(0), target_z=y[idx, 2].unsqueeze(0),
                           target_points=y[idx].unsqueeze(0), normals=n[idx].unsqueeze(0),
                           intrinsics=intr.unsqueeze(0), valid_points=ok[idx].unsqueeze(0),
                           valid_points_full=valid_full, cluster_correspondences=counts, batched=False,
                           num_dense=int(idx.numel()))
            motion, hist = solve_problem(prob, scfg, init=GraphMotion(R.unsqueeze(0), t.unsqueeze(0)))
            R, t = motion.rotations[0].contiguous(), motion.translations[0].contiguous()
            names = {term.name for term in terms}
            history.append({"iteration": it, "associations": int(idx.numel()), "points": P,
                            **_energies(hist, 0, names), "total_after": float(hist["total"][-1][0])})

        # evaluate on every usable source pixel (full resolution)
        fr, fc = sel_full.nonzero(as_tuple=True)
        q = _warp(src_pts[fr, fc], g.pixel_anchors[fr, fc], g.pixel_weights[fr, fc], nodes, R, t, cfg.backend)
        uv, front = project_with_mask(q, intr, min_depth=scfg.min_depth)
        nan = float("nan")
        warped = torch.full((H, W, 3), nan, dtype=dt, device=dev)
        flow = torch.full((H, W, 2), nan, dtype=dt, device=dev)
        sflow = torch.full((H, W, 3), nan, dtype=dt, device=dev)
        valid = torch.zeros(H, W, dtype=torch.bool, device=dev)
        warped[fr, fc] = q
        px = pixel_grid(H, W, dtype=dt, device=dev)[fr, fc]
        flow[fr, fc] = torch.where(front.unsqueeze(-1), uv - px, torch.full_like(uv, nan))
        sflow[fr, fc] = torch.where(front.unsqueeze(-1), q - src_pts[fr, fc], torch.full_like(q, nan))
        valid[fr, fc] = front
    return AlignmentResult(GraphMotion(R, t), warped, flow, sflow, valid, history, time.perf_counter() - t_start,
                           graph, notes)


# ==================================================================================================
# DeepDeform App. D: semi-supervised dense alignment
# ==================================================================================================


def dense_alignment(
    pair: RGBDPair,
    sparse_source_px: torch.Tensor,
    sparse_target_px: torch.Tensor,
    source_mask: torch.Tensor,
    *,
    graph: DeformationGraph | None = None,
    config: AlignmentConfig | None = None,
    warmup_iterations: int = 5,
    progress: bool = False,
) -> AlignmentResult:
    """DeepDeform's semi-supervised dense alignment (App. D) of one annotated frame pair.

    E = E_data + lambda_photo E_photo + lambda_silh E_silh + lambda_sparse E_sparse + lambda_reg E_reg over the
    deformation graph of the masked source depth (:func:`nrsfm_kit.graph.build_graph`: pixel-triangle mesh of
    the masked depth, erosion, node sampling), solved by :func:`align`. E_photo compares the source colour of
    every point with the target image at its projection (gray or RGB, ``config.colour``); E_silh is the
    distance transform of the annotated TARGET mask (``pair.target_mask``) at the projection. Without a target
    mask the silhouette term is skipped and ``result.notes`` says so (deriving a mask from 20-50 matches would
    invent the label the term is meant to add).

    Sparse-to-dense: the annotated pairs move a lot (seq258 0 -> 110: 0.24 m, 107 px median), so projective
    associations at the identity are wrong and pull the solve into a bad minimum (measured on seq258 with 30
    matches: 33 px median EPE after 10 steps without the warm-up, 1.0 px with it). The solve therefore first takes ``warmup_iterations`` GN steps on
    lambda_sparse E_sparse + lambda_reg E_reg alone (what the annotations are for), then
    ``config.gn_iterations`` steps on the full energy from there. ``history`` entries carry ``phase``
    ("sparse" / "full").

    Args:
        pair: the RGB-D frame pair (see :func:`align`).
        sparse_source_px, sparse_target_px: (K, 2) annotated matches, (u, v) pixels, K >= 1 (DeepDeform: 20-50).
        source_mask: (H, W) bool object mask of the source frame.
        graph: the deformation graph (default: built on the masked source depth with the reference defaults).
        config: :class:`AlignmentConfig`; for a 640x480 pair ``source_stride=2`` solves on a quarter of the pixels
            (the flow is still evaluated on every pixel).
        warmup_iterations: GN steps of the sparse + regulariser warm-up (0: none).
        progress: tqdm bar over the GN steps.

    Returns:
        :class:`AlignmentResult` with the dense optical flow (H, W, 2) px and scene flow (H, W, 3) m.

    Raises:
        ValueError: as :func:`align` (mismatched or empty matches, pixels outside the image or on invalid depth,
            a mask of another size, non-finite values).
    """
    if not isinstance(pair, RGBDPair):
        raise ValueError(f"pair: expected an RGBDPair, found {type(pair).__name__}")
    dims: dict = {}
    check_tensor("pair.source_depth", pair.source_depth, ("H", "W"), dims=dims, finite=False)
    H, W = dims["H"], dims["W"]
    dev = pair.source_depth.device
    mask = _as_mask("source_mask", source_mask, H, W, dev)
    matches = _check_matches((sparse_source_px, sparse_target_px), H, W, pair.source_depth.dtype, dev)
    cfg = AlignmentConfig() if config is None else config
    if not isinstance(cfg, AlignmentConfig):
        raise ValueError(f"config: expected an AlignmentConfig, found {type(cfg).__name__}")
    if not isinstance(warmup_iterations, int) or isinstance(warmup_iterations, bool) or warmup_iterations < 0:
        raise ValueError(f"warmup_iterations: expected an int >= 0, found {warmup_iterations!r}")
    t0 = time.perf_counter()
    if graph is None:
        from nrsfm_kit.graph.build import build_graph

        graph = build_graph(pair.source_depth, mask, pair.intrinsics)
    init, history, notes = None, [], []
    if warmup_iterations > 0 and cfg.lambda_sparse > 0:
        warm_cfg = replace(cfg, gn_iterations=warmup_iterations, lambda_point=0.0, lambda_plane=0.0,
                           lambda_photo=0.0, lambda_silh=0.0)
        warm = align(pair, graph, config=warm_cfg, sparse_matches=matches, source_mask=mask, progress=progress)
        init, notes = warm.motion, list(warm.notes)
        history = [{"phase": "sparse", **h} for h in warm.history]
    res = align(pair, graph, config=cfg, sparse_matches=matches, source_mask=mask, init=init, progress=progress)
    res.history = history + [{"phase": "full", **h} for h in res.history]
    res.notes = notes + [n for n in res.notes if n not in notes]
    res.seconds = time.perf_counter() - t0
    return res


def _frame_id(name: str, x) -> str:
    try:
        v = int(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a frame number (e.g. 0 or '000000'), found {x!r}") from None
    if v < 0:
        raise ValueError(f"{name}: expected a frame number >= 0, found {x!r}")
    return f"{v:06d}"


def write_dense_alignment(result: AlignmentResult, seq_dir: str | Path, object_id: str, source_id: int | str,
                          target_id: int | str) -> tuple[Path, Path]:
    """Write a dense alignment as DeepDeform flow images, atomically.

    Files: ``<seq_dir>/optical_flow/<object>_<src>_<tgt>.oflow`` (C = 2, pixels) and
    ``<seq_dir>/scene_flow/<object>_<src>_<tgt>.sflow`` (C = 3, metres), frame ids as 6 digits, -inf where
    ``result.valid`` is False (:func:`nrsfm_kit.data.deepdeform.write_flow_binary`). Returns the two paths.
    """
    from nrsfm_kit.data.deepdeform import write_flow_binary

    if not isinstance(result, AlignmentResult):
        raise ValueError(f"result: expected an AlignmentResult, found {type(result).__name__}")
    if not isinstance(object_id, str) or not object_id or "/" in object_id:
        raise ValueError(f"object_id: expected a non-empty name without '/', found {object_id!r}")
    s, t = _frame_id("source_id", source_id), _frame_id("target_id", target_id)
    seq = Path(seq_dir)
    stem = f"{object_id}_{s}_{t}"
    of = write_flow_binary(seq / "optical_flow" / f"{stem}.oflow", result.optical_flow, result.valid)
    sf = write_flow_binary(seq / "scene_flow" / f"{stem}.sflow", result.scene_flow, result.valid)
    return of, sf


# ==================================================================================================
# evaluation and simulated annotations
# ==================================================================================================


def flow_endpoint_errors(pred_flow: torch.Tensor, gt_flow: torch.Tensor, valid: torch.Tensor) -> dict:
    """End-point errors ||pred - gt|| over the ``valid`` pixels: optical flow (C = 2, pixels) or scene flow
    (C = 3, metres; the per-pixel counterpart of :mod:`nrsfm_kit.metrics.tracking`'s EPE 3D).

    Args:
        pred_flow, gt_flow: (H, W, C). valid: (H, W) bool; pixels where either flow is non-finite are excluded too.

    Returns:
        {"median", "p90", "mean", "count"} in the unit of the flows (NaN statistics when count is 0).
    """
    dims: dict = {}
    check_tensor("pred_flow", pred_flow, ("H", "W", "C"), dims=dims, finite=False)
    check_tensor("gt_flow", gt_flow, ("H", "W", "C"), dims=dims, finite=False)
    check_shape("valid", valid, (dims["H"], dims["W"]))
    ok = valid.bool() & torch.isfinite(pred_flow).all(-1) & torch.isfinite(gt_flow).all(-1)
    err = (pred_flow[ok].double() - gt_flow[ok].double()).norm(dim=-1)
    n = int(err.numel())
    if n == 0:
        nan = float("nan")
        return {"median": nan, "p90": nan, "mean": nan, "count": 0}
    return {"median": float(err.median()), "p90": float(torch.quantile(err, 0.9)), "mean": float(err.mean()),
            "count": n}


def simulate_sparse_matches(pair: RGBDPair, num_matches: int = 30, seed: int = 0, *,
                            graph: DeformationGraph | None = None,
                            source_mask: torch.Tensor | None = None) -> PixelMatches:
    """K annotator-like sparse matches from a pair's dense ground-truth flow (DeepDeform: 20-50 per pair).

    Source pixels are drawn uniformly without replacement (``numpy.random.default_rng(seed)``) among the pixels
    inside the mask (``source_mask``, else ``pair.source_mask``, else all) with valid flow (``pair.flow_valid``),
    valid source depth, a target pixel (source + optical flow) inside the image on valid target depth and, when
    ``graph`` is given, a graph anchor. Target = source + flow. Deterministic for a seed.

    Returns:
        :class:`PixelMatches` (source_px (K, 2), target_px (K, 2)), (u, v) pixels, dtype of the pair.
    """
    if not isinstance(pair, RGBDPair):
        raise ValueError(f"pair: expected an RGBDPair, found {type(pair).__name__}")
    if pair.optical_flow is None:
        raise ValueError(f"pair.optical_flow: expected an (H, W, 2) flow image to simulate matches, found None "
                         f"({pair.name})")
    if not isinstance(num_matches, int) or isinstance(num_matches, bool) or num_matches < 1:
        raise ValueError(f"num_matches: expected an int >= 1, found {num_matches!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed: expected an int >= 0, found {seed!r}")
    dims: dict = {}
    check_tensor("pair.source_depth", pair.source_depth, ("H", "W"), dims=dims, finite=False)
    H, W = dims["H"], dims["W"]
    check_tensor("pair.optical_flow", pair.optical_flow, (H, W, 2), finite=False)
    dev, dt = pair.source_depth.device, pair.source_depth.dtype
    ok = torch.isfinite(pair.source_depth) & (pair.source_depth > 0) & torch.isfinite(pair.optical_flow).all(-1)
    if pair.flow_valid is not None:
        ok = ok & _as_mask("pair.flow_valid", pair.flow_valid, H, W, dev)
    mask = source_mask if source_mask is not None else pair.source_mask
    if mask is not None:
        ok = ok & _as_mask("source_mask" if source_mask is not None else "pair.source_mask", mask, H, W, dev)
    if graph is not None:
        check_shape("graph.pixel_anchors", graph.pixel_anchors, (H, W, None))
        ok = ok & ((graph.pixel_anchors >= 0) & (graph.pixel_weights > 0)).any(-1).to(dev)
    px = pixel_grid(H, W, dtype=dt, device=dev)
    tgt = px + torch.where(torch.isfinite(pair.optical_flow), pair.optical_flow, torch.zeros_like(pair.optical_flow))
    r, c = _pixel_index(tgt)
    inside = (r >= 0) & (r < H) & (c >= 0) & (c < W)
    td = pair.target_depth[r.clamp(0, H - 1), c.clamp(0, W - 1)]
    ok = ok & inside & torch.isfinite(td) & (td > 0)
    cand = ok.reshape(-1).nonzero().squeeze(1).cpu().numpy()
    if cand.size < num_matches:
        raise ValueError(f"num_matches: expected at most the {cand.size} pixels with valid flow, depth and target "
                         f"in the mask, found {num_matches}")
    rng = np.random.default_rng(seed)
    pick = torch.as_tensor(np.sort(rng.choice(cand, size=num_matches, replace=False)), device=dev)
    src = px.reshape(-1, 2)[pick]
    return PixelMatches(src, tgt.reshape(-1, 2)[pick])
