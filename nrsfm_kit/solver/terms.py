"""Residual terms of the non-rigid energy as extensible units (in the spirit of Theseus' CostFunction).

The solver minimises E(T) = sum_terms E_term(T) over node motions T = {(R_i, t_i)}; each term is one
:class:`ResidualTerm` object: a ``name``, a ``weight`` (its lambda, already folded into the residuals
as sqrt(lambda)), :meth:`ResidualTerm.linearize` -> :class:`ResidualBlock` (residuals, Jacobian blocks
w.r.t. the node increments x_i = (eps_i, t_i), node ids), :meth:`ResidualTerm.energy`, and
:meth:`ResidualTerm.values` (the residuals alone in plain torch, which the autograd reference
:mod:`nrsfm_kit.solver.reference` differentiates to check every analytic Jacobian).

**Point terms** (:class:`PointTerm`) depend on warped points Q(p) (eq. 2) only: a subclass writes
:meth:`PointTerm.residual` ``(Q, backend) -> (r (B, P, m), dr/dQ (B, P, m, 3))``; the warp
linearisation and the chain rule to the node increments are shared (one Warp kernel each, cached per
point set and iteration). Adding a term is one class (plus its Warp kernel and torch reference for the
residual), nothing else: the solver, the assembly, the energies and the reports take any list of terms.

Built in: :class:`Reprojection2D` (eq. 9), :class:`Depth` (eq. 10), :class:`PointToPoint` (dense
DynamicFusion term and DeepDeform's sparse matches), :class:`PointToPlane`, :class:`ImageSampled` and
its instances :class:`Photometric`, :class:`Silhouette` (DeepDeform App. D) and :class:`Heatmap`
(DeepDeform sec. 4.2), :class:`Arap` (eq. 11). Robust losses wrap any term: :mod:`.robust`.
"""

from __future__ import annotations

import copy
import math
from typing import NamedTuple

import numpy as np
import torch

from nrsfm_kit.kernels import gauss_newton as gk
from nrsfm_kit.kernels.gauss_newton import ResidualBlock
from nrsfm_kit.utils.checks import check_positive, check_shape, check_tensor

__all__ = [
    "ResidualBlock",
    "ResidualTerm",
    "PointSet",
    "PointTerm",
    "Reprojection2D",
    "Depth",
    "PointToPoint",
    "PointToPlane",
    "ImageSampled",
    "Photometric",
    "Silhouette",
    "Heatmap",
    "Arap",
    "Linearization",
    "distance_transform",
]


class PointSet(NamedTuple):
    """Source points of point terms: points (B, P, 3) metres, anchors (P, 4) int64 (-1 padding),
    anchor_weights (P, 4). Several terms sharing one point set share its warp linearisation."""

    points: torch.Tensor
    anchors: torch.Tensor
    anchor_weights: torch.Tensor

    @staticmethod
    def make(points: torch.Tensor, anchors: torch.Tensor, anchor_weights: torch.Tensor) -> PointSet:
        """Validate (points (B, P, 3); anchors / weights (P, A), A <= 4) and pad the anchors to 4."""
        dims: dict = {}
        check_tensor("points", points, ("B", "P", 3), dims=dims)
        check_shape("anchors", anchors, ("P", "A"), dims)
        check_tensor("anchor_weights", anchor_weights, ("P", "A"), dims=dims)
        return PointSet(points, *gk.pad_anchors(anchors, anchor_weights))


class Linearization:
    """One linearisation point T = (R (B, N, 3, 3), t (B, N, 3)) of a problem, with a cache shared by
    the terms (warped points of each point set are computed once per iteration)."""

    def __init__(self, nodes: torch.Tensor, R: torch.Tensor, t: torch.Tensor, backend: str = "warp"):
        if backend not in ("warp", "torch"):
            raise ValueError(f"backend: expected 'warp' or 'torch', found {backend!r}")
        self.nodes, self.R, self.t, self.backend = nodes, R, t, backend
        self._warp: dict = {}

    def warp(self, ps: PointSet) -> tuple[torch.Tensor, torch.Tensor]:
        """(Q (B, P, 3), d (B, P, 4, 3)) of a point set at this T (cached)."""
        key = id(ps.points)
        if key not in self._warp:
            fn = gk.warp_linearize if self.backend == "warp" else gk.warp_linearize_torch
            self._warp[key] = (fn(ps.points, ps.anchors, ps.anchor_weights, self.nodes, self.R, self.t), ps)
        return self._warp[key][0]


def _detach_value(v):
    if isinstance(v, torch.Tensor):
        return v.detach()
    if isinstance(v, PointSet):
        return PointSet(*(x.detach() for x in v))
    if isinstance(v, ResidualTerm):
        return v.detached()
    return v


class ResidualTerm:
    """One residual family of the energy. Subclasses implement :meth:`linearize` and :meth:`values`.

    Attributes:
        name: key of the term in the solver's reports (``info["energy_terms"][name]``).
        weight: lambda of the term (its residuals carry sqrt(lambda)).
    """

    name: str = "term"
    weight: float = 1.0

    @property
    def cols(self) -> torch.Tensor:
        """(G, nb) int64 node ids of the groups (-1 unused); fixed for the whole solve."""
        raise NotImplementedError

    def linearize(self, nodes: torch.Tensor, R: torch.Tensor, t: torch.Tensor, *, backend: str = "warp",
                  cache: Linearization | None = None) -> ResidualBlock:
        """Residuals and their Jacobian blocks w.r.t. the node increments at T = (R, t).

        Args:
            nodes: (N, 3) node positions, metres. R: (B, N, 3, 3). t: (B, N, 3) metres.
            backend: "warp" kernels or the pure-torch "torch" references (same maths).
            cache: a shared :class:`Linearization` of this T (the solver passes one per iteration).
        """
        raise NotImplementedError

    def values(self, nodes: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Residuals r (B, G, g) at T in plain torch, without any analytic derivative."""
        raise NotImplementedError

    def energy(self, block: ResidualBlock) -> torch.Tensor:
        """E_term (B,) of a block from :meth:`linearize`: sum of squares (robust terms: sum rho)."""
        return block.energy if block.energy is not None else (block.r**2).sum((-1, -2))

    def detached(self) -> ResidualTerm:
        """A copy whose tensors are detached from autograd."""
        out = copy.copy(self)
        out.__dict__.update({k: _detach_value(v) for k, v in self.__dict__.items()})
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, weight={self.weight})"


def _row_weight(name: str, weight: float, w: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    lam = check_positive(f"{name}.weight", weight, strict=False)
    B, P = like.shape[:2]
    if w is None:
        w = torch.ones(B, P, dtype=like.dtype, device=like.device)
    check_tensor(f"{name}.w", w, (B, P))
    return math.sqrt(lam) * w


class PointTerm(ResidualTerm):
    """A term whose residual rows depend on one warped point each (one group per point, 4 anchors).

    Subclasses implement :meth:`residual`; ``w`` (B, P) per-point weights (0 = off) are multiplied by
    sqrt(weight) into ``self.row_weight``.
    """

    def __init__(self, points: PointSet, weight: float, w: torch.Tensor | None, name: str):
        if not isinstance(points, PointSet):
            raise ValueError(f"points: expected a PointSet, found {type(points).__name__}")
        self.points, self.weight, self.name = points, float(weight), name
        self.row_weight = _row_weight(name, weight, w, points.points)

    @property
    def cols(self) -> torch.Tensor:
        return self.points.anchors

    def residual(self, q: torch.Tensor, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Residual rows r (B, P, m) of the warped points q (B, P, 3) and dr/dq (B, P, m, 3)."""
        raise NotImplementedError

    def linearize(self, nodes, R, t, *, backend="warp", cache=None) -> ResidualBlock:
        cache = cache if cache is not None else Linearization(nodes, R, t, backend)
        q, d = cache.warp(self.points)
        r, g = self.residual(q, cache.backend)
        chain = gk.point_jacobian if cache.backend == "warp" else gk.point_jacobian_torch
        return ResidualBlock(chain(g, d, self.points.anchors, self.points.anchor_weights), r, self.points.anchors)

    def values(self, nodes, R, t) -> torch.Tensor:
        q, _ = gk.warp_linearize_torch(self.points.points, self.points.anchors, self.points.anchor_weights, nodes,
                                       R, t)
        return self.residual(q, "torch")[0]


class Reprojection2D(PointTerm):
    """2D reprojection (eq. 9): sqrt(lambda_2D) w_u (pi(Q(p_u)) - c_u), pixels; zero rows for points
    warped behind ``min_depth`` (metres). corr (B, P, 2) target pixels, intrinsics (B, 4)."""

    def __init__(self, points: PointSet, corr: torch.Tensor, intrinsics: torch.Tensor, *, weight: float = 0.001,
                 w: torch.Tensor | None = None, min_depth: float = 1e-3, name: str = "2d"):
        super().__init__(points, weight, w, name)
        B, P = points.points.shape[:2]
        self.corr = check_tensor(f"{name}.corr", corr, (B, P, 2))
        self.intrinsics = check_tensor(f"{name}.intrinsics", intrinsics, (B, 4))
        self.min_depth = check_positive(f"{name}.min_depth", min_depth)

    def residual(self, q, backend):
        fn = gk.reprojection_residual if backend == "warp" else gk.reprojection_residual_torch
        return fn(q, self.corr, self.row_weight, self.intrinsics, self.min_depth)


class Depth(PointTerm):
    """Depth (eq. 10): sqrt(lambda_depth) w_u (Q_z - D_t(c_u)), metres; target_z (B, P)."""

    def __init__(self, points: PointSet, target_z: torch.Tensor, *, weight: float = 1.0,
                 w: torch.Tensor | None = None, name: str = "depth"):
        super().__init__(points, weight, w, name)
        self.target_z = check_tensor(f"{name}.target_z", target_z, tuple(points.points.shape[:2]))

    def residual(self, q, backend):
        fn = gk.depth_residual if backend == "warp" else gk.depth_residual_torch
        return fn(q, self.target_z, self.row_weight)


class PointToPoint(PointTerm):
    """Point-to-point sqrt(lambda) w (Q(p) - y), metres; target (B, P, 3). The dense DynamicFusion /
    DeepDeform term, and DeepDeform's sparse feature matches (``name="sparse"``)."""

    def __init__(self, points: PointSet, target: torch.Tensor, *, weight: float = 1.0,
                 w: torch.Tensor | None = None, name: str = "point"):
        super().__init__(points, weight, w, name)
        self.target = check_tensor(f"{name}.target", target, (*points.points.shape[:2], 3))

    def residual(self, q, backend):
        fn = gk.point_residual if backend == "warp" else gk.point_residual_torch
        return fn(q, self.target, self.row_weight)


class PointToPlane(PointTerm):
    """Point-to-plane sqrt(lambda) w n . (Q(p) - y), metres; target, normals (B, P, 3)."""

    def __init__(self, points: PointSet, target: torch.Tensor, normals: torch.Tensor, *, weight: float = 1.0,
                 w: torch.Tensor | None = None, name: str = "plane"):
        super().__init__(points, weight, w, name)
        shape = (*points.points.shape[:2], 3)
        self.target = check_tensor(f"{name}.target", target, shape)
        self.normals = check_tensor(f"{name}.normals", normals, shape)

    def residual(self, q, backend):
        fn = gk.plane_residual if backend == "warp" else gk.plane_residual_torch
        return fn(q, self.target, self.normals, self.row_weight)


class ImageSampled(PointTerm):
    """Any differentiable 2D map sampled at the projected warped point: sqrt(lambda) w (I_m(pi(Q) - o) - c).

    Args:
        points: the source points. image: (B, M, H, W, C) maps, channels last (or (B, H, W, C): M = 1).
        target: (B, P, C) values c. intrinsics: (B, 4).
        map_index: (P,) int, the map of each point (default 0). offset: (B, P, 2) pixel of each map's
            pixel (0, 0) in the image (patch corners; default 0).
        outside: value of the maps beyond their pixels (rows then constant, no gradient); None (default):
            rows off for points projecting outside or behind the camera.
        weight, w, min_depth, name: as the other point terms.
    """

    def __init__(self, points: PointSet, image: torch.Tensor, target: torch.Tensor, intrinsics: torch.Tensor, *,
                 map_index: torch.Tensor | None = None, offset: torch.Tensor | None = None, weight: float = 1.0,
                 w: torch.Tensor | None = None, min_depth: float = 1e-3, outside: float | None = None,
                 name: str = "image"):
        super().__init__(points, weight, w, name)
        self.outside = outside
        B, P = points.points.shape[:2]
        check_tensor(f"{name}.image", image, None)
        if image.dim() == 4:
            image = image.unsqueeze(1)
        check_tensor(f"{name}.image", image, (B, "M", "H", "W", "C"))
        self.image = image
        C = image.shape[-1]
        self.target = check_tensor(f"{name}.target", target, (B, P, C))
        self.intrinsics = check_tensor(f"{name}.intrinsics", intrinsics, (B, 4))
        dev = image.device
        self.map_index = torch.zeros(P, dtype=torch.int64, device=dev) if map_index is None else map_index
        check_shape(f"{name}.map_index", self.map_index, (P,))
        self.offset = (torch.zeros(B, P, 2, dtype=image.dtype, device=dev) if offset is None
                       else check_tensor(f"{name}.offset", offset, (B, P, 2)))
        self.min_depth = check_positive(f"{name}.min_depth", min_depth)

    def residual(self, q, backend):
        fn = gk.image_residual if backend == "warp" else gk.image_residual_torch
        return fn(q, self.image, self.map_index, self.offset, self.target, self.row_weight, self.intrinsics,
                  self.min_depth, self.outside)


class Photometric(ImageSampled):
    """Photometric term: colour of the warped source point sampled bilinearly in the target image,
    minus the source colour: sqrt(lambda) w (I_t(pi(Q(p))) - I_s(p)). target_image (B, H, W, C) (e.g.
    RGB in [0, 1]), source_colors (B, P, C)."""

    def __init__(self, points: PointSet, target_image: torch.Tensor, source_colors: torch.Tensor,
                 intrinsics: torch.Tensor, *, weight: float = 1.0, w: torch.Tensor | None = None,
                 min_depth: float = 1e-3, name: str = "photometric"):
        super().__init__(points, target_image, source_colors, intrinsics, weight=weight, w=w, min_depth=min_depth,
                         name=name)


def distance_transform(mask: torch.Tensor) -> torch.Tensor:
    """Euclidean distance (pixels) of every pixel to the nearest foreground pixel of ``mask`` (..., H, W)
    (0 inside the mask), by ``scipy.ndimage.distance_transform_edt``; not differentiable in the mask."""
    from scipy import ndimage

    m = mask.detach().cpu().numpy().astype(bool)
    if m.ndim < 2:
        raise ValueError(f"mask: expected shape (..., H, W), found {tuple(mask.shape)}")
    flat = m.reshape(-1, *m.shape[-2:])
    out = np.stack([ndimage.distance_transform_edt(~f) if f.any() else np.full(f.shape, float(max(f.shape)))
                    for f in flat]).reshape(m.shape)
    return torch.as_tensor(out)


class Silhouette(ImageSampled):
    """Silhouette term (DeepDeform App. D): the distance transform of the target mask sampled at the
    projected warped point, residual sqrt(lambda) w DT(pi(Q(p))) (pixels), pulling points into the mask.
    target_mask (B, H, W) bool; the DT is computed once here (``distance_transform``)."""

    def __init__(self, points: PointSet, target_mask: torch.Tensor, intrinsics: torch.Tensor, *,
                 weight: float = 1.0, w: torch.Tensor | None = None, min_depth: float = 1e-3,
                 name: str = "silhouette"):
        B, P = points.points.shape[:2]
        check_shape(f"{name}.target_mask", target_mask, (B, None, None))
        like = points.points
        dt = distance_transform(target_mask).to(dtype=like.dtype, device=like.device).unsqueeze(-1)
        super().__init__(points, dt, torch.zeros(B, P, 1, dtype=like.dtype, device=like.device), intrinsics,
                         weight=weight, w=w, min_depth=min_depth, name=name)


class Heatmap(ImageSampled):
    """Heatmap term of DeepDeform sec. 4.2: residual 1 - H_k(pi(Q(p_k))) per match k, with H_k the
    matcher's heatmap over a target patch (written as H - 1: same energy and step).

    heatmaps (B, M, h, w) probability maps; map_index (P,) which heatmap each point uses (default
    k -> k); offset (B, P, 2) patch corners in the target image (pixels). Outside its patch a heatmap is 0
    (residual -1, no gradient), so leaving the patch never lowers the energy."""

    def __init__(self, points: PointSet, heatmaps: torch.Tensor, intrinsics: torch.Tensor, *,
                 map_index: torch.Tensor | None = None, offset: torch.Tensor | None = None, weight: float = 1.0,
                 w: torch.Tensor | None = None, min_depth: float = 1e-3, name: str = "heatmap"):
        B, P = points.points.shape[:2]
        check_tensor(f"{name}.heatmaps", heatmaps, (B, "M", None, None))
        if map_index is None:
            if heatmaps.shape[1] != P:
                raise ValueError(f"{name}.map_index: expected one heatmap per point (M = {P}) when map_index is "
                                 f"None, found M = {heatmaps.shape[1]}")
            map_index = torch.arange(P, device=heatmaps.device)
        like = points.points
        super().__init__(points, heatmaps.unsqueeze(-1), torch.ones(B, P, 1, dtype=like.dtype, device=like.device),
                         intrinsics, map_index=map_index, offset=offset, weight=weight, w=w, min_depth=min_depth,
                         outside=0.0, name=name)


class Arap(ResidualTerm):
    """ARAP regulariser (eq. 11): s_ij (R_i (v_j - v_i) + v_i + t_i - v_j - t_j), s_ij = sqrt(lambda w_ij).

    Args:
        edges: (N, K) int, -1 padding. weight: lambda_reg. edge_weights: (N, K) w_ij (default 1).
        dtype: of the scales; cast to the nodes' dtype at first use when they differ.
    """

    def __init__(self, edges: torch.Tensor, *, weight: float = 1.0, edge_weights: torch.Tensor | None = None,
                 dtype: torch.dtype = torch.float32, name: str = "arap"):
        check_shape("edges", edges, ("N", "K"))
        lam = check_positive(f"{name}.weight", weight, strict=False)
        self.edges, self.weight, self.name = edges.long(), float(weight), name
        e_ok = self.edges >= 0
        ew = (torch.ones(edges.shape, dtype=dtype, device=edges.device) if edge_weights is None
              else check_tensor(f"{name}.edge_weights", edge_weights, tuple(edges.shape)))
        self.scale = torch.where(e_ok, torch.sqrt(lam * ew.clamp(min=0)), torch.zeros_like(ew))
        N, K = edges.shape
        i = torch.arange(N, device=edges.device).repeat_interleave(K)
        j = self.edges.reshape(-1)
        ok = j >= 0
        self._cols = torch.stack([torch.where(ok, i, -1), torch.where(ok, j, -1)], 1)

    @property
    def cols(self) -> torch.Tensor:
        return self._cols

    def linearize(self, nodes, R, t, *, backend="warp", cache=None) -> ResidualBlock:
        backend = cache.backend if cache is not None else backend
        fn = gk.arap_terms if backend == "warp" else gk.arap_terms_torch
        r, J = fn(nodes, self.edges, self._scale(nodes), R, t)
        return ResidualBlock(J, r, self._cols)

    def values(self, nodes, R, t) -> torch.Tensor:
        from nrsfm_kit.kernels.warp_field import arap_residuals_torch

        r = torch.stack([arap_residuals_torch(nodes, self.edges, R[b], t[b]) for b in range(R.shape[0])])
        return (r * self._scale(nodes).unsqueeze(-1)).reshape(R.shape[0], -1, 3)

    def _scale(self, nodes: torch.Tensor) -> torch.Tensor:
        """s_ij in the dtype / device of the nodes (a term built without ``dtype=`` still works in float64)."""
        if self.scale.dtype != nodes.dtype or self.scale.device != nodes.device:
            self.scale = self.scale.to(dtype=nodes.dtype, device=nodes.device)
        return self.scale
