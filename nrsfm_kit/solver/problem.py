"""From user inputs to the solver's batched, validated, masked problem (no NaN ever reaches a kernel).

Masking rules (documented behaviour for bad input):

- correspondences with a non-finite coordinate, source points with non-finite values or z <= 0, and
  points without a valid anchor carry zero weight;
- the depth term of a point is off when the target depth cannot be sampled at c_u (outside the image,
  or one of the 4 bilinear neighbours invalid: <= 0 or non-finite);
- clusters with fewer than ``min_cluster_correspondences`` valid correspondences are frozen (their
  nodes keep the identity motion, the node mask reports them invalid) and their points carry zero weight;
- 2D residuals of points warped behind the camera (z <= min_depth) are zero (in the kernel).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import NamedTuple

import torch

from nrsfm_kit.geometry import as_intrinsics, backproject
from nrsfm_kit.graph.types import DeformationGraph
from nrsfm_kit.utils.checks import check_shape, check_tensor

from .config import EnergyTerms

__all__ = ["SparseMatches", "Problem", "prepare_problem", "sample_depth_bilinear", "sample_bilinear", "dense_correspondences",
           "sparse_matches", "cluster_filter", "DenseInputs", "SparseInputs"]


class SparseMatches(NamedTuple):
    """Sparse 3D feature matches (DeepDeform sparse term), point-to-point.

    source_points (S, 3) metres; anchors (S, A) int, -1 padding; anchor_weights (S, A);
    target_points (S, 3) or (B, S, 3) metres; weights (S,) or (B, S) or None (ones).
    """

    source_points: torch.Tensor
    anchors: torch.Tensor
    anchor_weights: torch.Tensor
    target_points: torch.Tensor
    weights: torch.Tensor | None = None


@dataclass
class Problem:
    """A prepared solve: the residual terms over B frame pairs and N nodes, plus what the caller needs back.

    ``terms`` is the energy (a list of :class:`~nrsfm_kit.solver.terms.ResidualTerm`); the other fields
    describe the dense correspondences it was built from (compacted: points without any active row in
    any pair are dropped) and the masks reported to the caller.
    """

    nodes: torch.Tensor  # (N, 3)
    edges: torch.Tensor  # (N, K) int64
    terms: list  # [ResidualTerm]
    valid_nodes: torch.Tensor  # (B, N) bool
    points: torch.Tensor  # (B, P, 3) dense source points (compacted)
    anchors: torch.Tensor  # (P, 4) int64, -1 padding
    anchor_weights: torch.Tensor  # (P, 4)
    corr: torch.Tensor  # (B, P, 2) pixels, 0 where invalid
    target_z: torch.Tensor  # (B, P) metres, 0 where invalid
    target_points: torch.Tensor  # (B, P, 3)
    normals: torch.Tensor  # (B, P, 3)
    intrinsics: torch.Tensor  # (B, 4)
    valid_points: torch.Tensor  # (B, P) bool, after cluster filtering (compacted points)
    valid_points_full: torch.Tensor  # (B, P_in) bool, in the caller's point layout (dense, then sparse)
    cluster_correspondences: torch.Tensor  # (B, C) int64
    batched: bool
    num_dense: int  # number of dense correspondences in the caller's layout (sparse matches follow)

    @property
    def num_nodes(self) -> int:
        return int(self.nodes.shape[0])

    @property
    def batch(self) -> int:
        return int(self.valid_nodes.shape[0])

    def term(self, name: str):
        """The term called ``name`` (ValueError naming the available ones otherwise)."""
        for t in self.terms:
            if t.name == name:
                return t
        raise ValueError(f"name: expected one of {[t.name for t in self.terms]}, found {name!r}")

    def with_terms(self, extra: Sequence) -> Problem:
        """A copy with ``extra`` terms appended to the energy (validated)."""
        from .terms import ResidualTerm

        extra = list(extra)
        for k, t in enumerate(extra):
            if not isinstance(t, ResidualTerm):
                raise ValueError(f"extra_terms[{k}]: expected a ResidualTerm, found {type(t).__name__}")
        return replace(self, terms=list(self.terms) + extra)

    def detached(self) -> Problem:
        out = {f.name: (getattr(self, f.name).detach() if isinstance(getattr(self, f.name), torch.Tensor)
                        else getattr(self, f.name)) for f in fields(self)}
        out["terms"] = [t.detached() for t in self.terms]
        return Problem(**out)


def sample_bilinear(image: torch.Tensor, valid: torch.Tensor, uv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear samples of a (multi-channel) image at pixel positions, differentiable w.r.t. both.

    Args:
        image: (B, H, W, C). valid: (B, H, W) bool, pixels that may be used. uv: (B, P, 2) pixels (u = column,
            v = row, pixel centres at integers), finite.

    Returns:
        (values (B, P, C), 0 where invalid; ok (B, P) bool: inside the image and all 4 neighbours valid).
    """
    B, H, W, C = image.shape
    img = torch.where(valid.unsqueeze(-1), image, torch.zeros_like(image))
    u, v = uv[..., 0], uv[..., 1]
    inside = (u >= 0) & (u <= W - 1) & (v >= 0) & (v <= H - 1)
    uc = u.clamp(0, W - 1)
    vc = v.clamp(0, H - 1)
    u0 = uc.detach().floor().clamp(max=max(W - 2, 0)).long()
    v0 = vc.detach().floor().clamp(max=max(H - 2, 0)).long()
    u1 = (u0 + 1).clamp(max=W - 1)
    v1 = (v0 + 1).clamp(max=H - 1)
    fu = (uc - u0.to(uc.dtype)).unsqueeze(-1)
    fv = (vc - v0.to(vc.dtype)).unsqueeze(-1)
    flat = img.reshape(B, H * W, C)
    okf = valid.reshape(B, -1)

    def g(vv, uu):
        idx = vv * W + uu
        return flat.gather(1, idx.unsqueeze(-1).expand(*idx.shape, C)), okf.gather(1, idx)

    d00, o00 = g(v0, u0)
    d01, o01 = g(v0, u1)
    d10, o10 = g(v1, u0)
    d11, o11 = g(v1, u1)
    val = (1 - fv) * ((1 - fu) * d00 + fu * d01) + fv * ((1 - fu) * d10 + fu * d11)
    ok = inside & o00 & o01 & o10 & o11
    return torch.where(ok.unsqueeze(-1), val, torch.zeros_like(val)), ok


def sample_depth_bilinear(depth: torch.Tensor, uv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear depth at pixel positions, differentiable w.r.t. both (eq. 10's D_t(c_u)).

    Args:
        depth: (B, H, W) metres; <= 0 or non-finite = invalid. uv: (B, P, 2) pixels (u = column, v = row,
            pixel centres at integers), finite.

    Returns:
        (values (B, P) metres, 0 where invalid; valid (B, P) bool: inside the image and all 4 neighbours valid).
    """
    ok_px = torch.isfinite(depth) & (depth > 0)
    val, ok = sample_bilinear(depth.unsqueeze(-1), ok_px, uv)
    return val[..., 0], ok


def _batch(x: torch.Tensor, B: int, name: str, core: int) -> torch.Tensor:
    """Give x (core dims) or (B, core dims) a batch dimension of size B."""
    if x.dim() == core:
        return x.unsqueeze(0).expand(B, *x.shape)
    if x.dim() == core + 1 and x.shape[0] in (1, B):
        return x.expand(B, *x.shape[1:])
    raise ValueError(f"{name}: expected {core} dims or a leading batch of {B}, found shape {tuple(x.shape)}")


class DenseInputs(NamedTuple):
    """Dense correspondences in list layout, batched and sanitised (step 1 of :func:`prepare_problem`)."""

    points: torch.Tensor  # (B, P, 3), 0 where invalid
    anchors: torch.Tensor  # (P, A) int64
    anchor_weights: torch.Tensor  # (P, A)
    corr: torch.Tensor  # (B, P, 2), 0 where invalid
    weights: torch.Tensor  # (B, P)
    target_z: torch.Tensor  # (B, P) sampled target depth, 0 where invalid
    target_points: torch.Tensor  # (B, P, 3)
    normals: torch.Tensor  # (B, P, 3)
    intrinsics: torch.Tensor  # (B, 4)
    base: torch.Tensor  # (B, P) bool: finite source point (z > 0), finite c_u, a valid anchor, w != 0
    depth_ok: torch.Tensor  # (B, P) bool: target depth sampled at c_u
    target_ok: torch.Tensor  # (B, P) bool: target point available
    normal_ok: torch.Tensor  # (B, P) bool: target normal available
    batched: bool


def dense_correspondences(graph: DeformationGraph, source_points: torch.Tensor, correspondences: torch.Tensor,
                          weights: torch.Tensor | None, target_depth: torch.Tensor, intrinsics, *,
                          anchors: torch.Tensor | None = None, anchor_weights: torch.Tensor | None = None,
                          target_points: torch.Tensor | None = None, target_normals: torch.Tensor | None = None,
                          need_normals: bool = False) -> DenseInputs:
    """Validate, batch and sanitise the dense correspondences (list or image layout, see
    :func:`nrsfm_kit.solver.solve_deformation`); sample the target depth at c_u (eq. 10)."""
    nodes = check_tensor("graph.nodes", graph.nodes, ("N", 3))
    dt, dev = nodes.dtype, nodes.device
    N = nodes.shape[0]
    check_tensor("correspondences", correspondences, ("...", 2), finite=False)
    if correspondences.dtype != dt:
        raise ValueError(f"correspondences: expected dtype {dt} (that of graph.nodes), found {correspondences.dtype}")

    if anchors is None:  # image mode: anchors from graph.pixel_anchors
        pa = graph.pixel_anchors
        H, W, A = pa.shape
        check_tensor("source_points", source_points, ("...", H, W, 3), finite=False)
        batched = correspondences.dim() == 4
        check_shape("correspondences", correspondences, ("B", H, W, 2) if batched else (H, W, 2))
        anchors = pa.reshape(H * W, A)
        anchor_weights = graph.pixel_weights.reshape(H * W, A).to(dt)
        source_points = source_points.reshape(*source_points.shape[:-3], H * W, 3)
        correspondences = correspondences.reshape(*correspondences.shape[:-3], H * W, 2)
        if isinstance(weights, torch.Tensor) and weights.dim() >= 2 and tuple(weights.shape[-2:]) == (H, W):
            weights = weights.reshape(*weights.shape[:-2], H * W)

        def flat_image(val):
            if isinstance(val, torch.Tensor) and val.dim() >= 3 and tuple(val.shape[-3:-1]) == (H, W):
                return val.reshape(*val.shape[:-3], H * W, 3)
            return val

        target_points, target_normals = flat_image(target_points), flat_image(target_normals)
    else:
        batched = correspondences.dim() == 3
        if anchor_weights is None:
            raise ValueError("anchor_weights: expected a (P, A) tensor with anchors, found None")
        check_shape("anchors", anchors, ("P", "A"))
        check_shape("correspondences", correspondences, ("B", anchors.shape[0], 2) if batched else (anchors.shape[0], 2))
    check_shape("correspondences", correspondences, ("B", "P", 2) if batched else ("P", 2))
    B = correspondences.shape[0] if batched else 1
    corr = correspondences if batched else correspondences.unsqueeze(0)
    P = corr.shape[1]
    check_shape("anchors", anchors, (P, "A"))
    if anchors.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"anchors: expected an integer tensor, found dtype {anchors.dtype}")
    if anchors.numel() and (int(anchors.max()) >= N or int(anchors.min()) < -1):
        raise ValueError(f"anchors: expected ids in [-1, {N}), found range [{int(anchors.min())}, {int(anchors.max())}]")
    check_tensor("anchor_weights", anchor_weights, (P, anchors.shape[1]))
    check_tensor("source_points", source_points, ("...", P, 3), finite=False)
    points = _batch(source_points.to(dt), B, "source_points", 2)
    if weights is None:
        weights = torch.ones(B, P, dtype=dt, device=dev)
    check_tensor("weights", weights, ("...", P))
    w = _batch(weights.to(dt), B, "weights", 1)
    check_tensor("target_depth", target_depth, ("...", None, None), finite=False)
    depth = _batch(target_depth.to(dt), B, "target_depth", 2)
    intr = _batch(as_intrinsics(intrinsics, dtype=dt, device=dev), B, "intrinsics", 1)

    src_ok = torch.isfinite(points).all(-1) & (points[..., 2] > 0)
    points = torch.where(src_ok.unsqueeze(-1), points, torch.zeros_like(points))
    corr_ok = torch.isfinite(corr).all(-1)
    corr = torch.where(corr_ok.unsqueeze(-1), corr, torch.zeros_like(corr))
    anchors = anchors.long()
    anchor_weights = anchor_weights.to(dt)
    has_anchor = ((anchors >= 0) & (anchor_weights != 0)).any(-1)  # (P,)
    base = src_ok & corr_ok & has_anchor.unsqueeze(0) & (w != 0)
    tz, z_ok = sample_depth_bilinear(depth, corr)
    if target_points is None:
        tp, tp_ok = backproject(corr, tz, intr.unsqueeze(1)), z_ok
    else:
        tp, tp_ok = _optional_points("target_points", target_points, B, P, dt)
    if target_normals is None:
        if need_normals:
            raise ValueError("target_normals: expected a (..., P, 3) tensor when terms.lambda_plane > 0, found None")
        nrm, nrm_ok = torch.zeros_like(tp), torch.zeros_like(tp_ok)
    else:
        nrm, nrm_ok = _optional_points("target_normals", target_normals, B, P, dt)
    return DenseInputs(points, anchors, anchor_weights, corr, w, tz, tp, nrm, intr, base, z_ok, tp_ok,
                       tp_ok & nrm_ok, batched)


def _optional_points(name: str, x: torch.Tensor, B: int, P: int, dt) -> tuple[torch.Tensor, torch.Tensor]:
    x = _batch(check_tensor(name, x, ("...", P, 3), finite=False).to(dt), B, name, 2)
    ok = torch.isfinite(x).all(-1)
    return torch.where(ok.unsqueeze(-1), x, torch.zeros_like(x)), ok


class SparseInputs(NamedTuple):
    """Validated sparse matches, batched (step 2 of :func:`prepare_problem`)."""

    points: torch.Tensor  # (B, S, 3)
    anchors: torch.Tensor  # (S, A) int64
    anchor_weights: torch.Tensor  # (S, A)
    target_points: torch.Tensor  # (B, S, 3)
    weights: torch.Tensor  # (B, S)
    base: torch.Tensor  # (B, S) bool


def sparse_matches(sparse: SparseMatches, B: int, dtype: torch.dtype, num_nodes: int) -> SparseInputs:
    """Validate and batch :class:`SparseMatches` (DeepDeform's sparse point-to-point term)."""
    if not isinstance(sparse, SparseMatches):
        raise ValueError(f"sparse: expected SparseMatches, found {type(sparse).__name__}")
    S = sparse.source_points.shape[0] if sparse.source_points.dim() >= 2 else -1
    check_tensor("sparse.source_points", sparse.source_points, (S, 3))
    check_shape("sparse.anchors", sparse.anchors, (S, None))
    if sparse.anchors.numel() and (int(sparse.anchors.max()) >= num_nodes or int(sparse.anchors.min()) < -1):
        raise ValueError(f"sparse.anchors: expected ids in [-1, {num_nodes}), found range "
                         f"[{int(sparse.anchors.min())}, {int(sparse.anchors.max())}]")
    check_tensor("sparse.anchor_weights", sparse.anchor_weights, (S, sparse.anchors.shape[1]))
    tp = _batch(check_tensor("sparse.target_points", sparse.target_points, ("...", S, 3)).to(dtype), B,
                "sparse.target_points", 2)
    dev = tp.device
    sw = torch.ones(B, S, dtype=dtype, device=dev) if sparse.weights is None else _batch(
        check_tensor("sparse.weights", sparse.weights, ("...", S)).to(dtype), B, "sparse.weights", 1)
    anchors = sparse.anchors.long()
    aw = sparse.anchor_weights.to(dtype)
    has = ((anchors >= 0) & (aw != 0)).any(-1)
    return SparseInputs(sparse.source_points.to(dtype).unsqueeze(0).expand(B, S, 3), anchors, aw, tp, sw,
                        has.unsqueeze(0) & (sw != 0))


def cluster_filter(clusters: torch.Tensor, anchors: torch.Tensor, anchor_weights: torch.Tensor,
                   base: torch.Tensor, min_correspondences: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Freeze node clusters with fewer than ``min_correspondences`` valid correspondences (step 3).

    Args:
        clusters: (N,) cluster id per node. anchors / anchor_weights: (P, A) of all points (dense, then
            sparse). base: (B, P) bool, the valid correspondences.

    Returns:
        (valid_nodes (B, N), valid_points (B, P): base and every anchor on a valid node, counts (B, C)).
    """
    clusters = clusters.long()
    dt, dev = anchor_weights.dtype, anchor_weights.device
    B, N = base.shape[0], clusters.shape[0]
    C = int(clusters.max()) + 1 if clusters.numel() else 1
    a_ok = (anchors >= 0) & (anchor_weights != 0)
    a_cl = torch.where(a_ok, clusters[anchors.clamp(min=0)], torch.full_like(anchors, -1))  # (P, A)
    member = torch.zeros(a_cl.shape[0], C + 1, dtype=dt, device=dev)
    member.scatter_(1, (a_cl + 1).clamp(min=0), 1.0)
    member = member[:, 1:]  # (P, C): point touches cluster c
    counts = torch.einsum("bp,pc->bc", base.to(dt), member).round().long()
    valid_nodes = (counts >= min_correspondences).gather(1, clusters.unsqueeze(0).expand(B, N))
    node_ok = torch.where(a_ok.unsqueeze(0), valid_nodes[:, anchors.clamp(min=0)],
                          torch.ones(B, *anchors.shape, dtype=torch.bool, device=dev))
    return valid_nodes, base & node_ok.all(-1), counts


def prepare_problem(graph: DeformationGraph, source_points: torch.Tensor, correspondences: torch.Tensor,
                    weights: torch.Tensor | None, target_depth: torch.Tensor, intrinsics, *, terms: EnergyTerms,
                    anchors: torch.Tensor | None = None, anchor_weights: torch.Tensor | None = None,
                    target_points: torch.Tensor | None = None, target_normals: torch.Tensor | None = None,
                    sparse: SparseMatches | None = None, min_cluster_correspondences: int = 2000,
                    min_depth: float = 1e-3, extra_terms: Sequence = ()) -> Problem:
    """Validate the inputs of :func:`nrsfm_kit.solver.solve_deformation` (see there) and build its terms.

    Steps: :func:`dense_correspondences` -> :func:`sparse_matches` -> :func:`cluster_filter` -> the
    residual terms of ``terms`` with lambda > 0 (:mod:`nrsfm_kit.solver.terms`: 2D, depth, point,
    plane on the dense correspondences, point-to-point "sparse" on the sparse matches, ARAP), followed by
    ``extra_terms``.
    """
    from .terms import Arap, Depth, PointSet, PointToPlane, PointToPoint, Reprojection2D

    if not isinstance(graph, DeformationGraph):
        raise ValueError(f"graph: expected a DeformationGraph, found {type(graph).__name__}")
    if not isinstance(terms, EnergyTerms):
        raise ValueError(f"terms: expected an EnergyTerms, found {type(terms).__name__}")
    nodes = check_tensor("graph.nodes", graph.nodes, ("N", 3))
    N = nodes.shape[0]
    if N == 0:
        raise ValueError("graph.nodes: expected at least one node, found 0")
    check_shape("graph.edges", graph.edges, (N, None))
    d = dense_correspondences(graph, source_points, correspondences, weights, target_depth, intrinsics,
                              anchors=anchors, anchor_weights=anchor_weights, target_points=target_points,
                              target_normals=target_normals, need_normals=terms.lambda_plane > 0)
    B, P = d.weights.shape
    dt = d.points.dtype
    sp = None if sparse is None else sparse_matches(sparse, B, dt, N)

    clusters = graph.clusters.to(nodes.device).long()
    check_shape("graph.clusters", clusters, (N,))
    if sp is None:
        all_anchors, all_weights, base = d.anchors, d.anchor_weights, d.base
    else:
        A = max(d.anchors.shape[1], sp.anchors.shape[1])
        all_anchors = torch.cat([_pad(d.anchors, A, -1), _pad(sp.anchors, A, -1)], 0)
        all_weights = torch.cat([_pad(d.anchor_weights, A, 0.0), _pad(sp.anchor_weights, A, 0.0)], 0)
        base = torch.cat([d.base, sp.base], 1)
    valid_nodes, valid_full, counts = cluster_filter(clusters, all_anchors, all_weights, base,
                                                     min_cluster_correspondences)
    vd = valid_full[:, :P]

    # dense points without any active row in any pair are dropped (e.g. invalid pixels of a 640x480 image)
    active = {"2d": torch.ones_like(vd), "depth": d.depth_ok, "point": d.target_ok, "plane": d.normal_ok}
    lam = {"2d": terms.lambda_2d, "depth": terms.lambda_depth, "point": terms.lambda_point,
           "plane": terms.lambda_plane}
    keep = vd.any(0)
    idx = keep.nonzero().squeeze(1) if not bool(keep.all()) else None

    def take(x, dim=1):
        return x if idx is None else x.index_select(dim, idx)

    ps = PointSet.make(take(d.points), take(d.anchors, 0), take(d.anchor_weights, 0))
    wv = take(d.weights * vd.to(dt))
    mask = {k: take(v.to(dt)) for k, v in active.items()}
    corr, tz, tp, nrm = take(d.corr), take(d.target_z), take(d.target_points), take(d.normals)
    built = []
    if lam["2d"] > 0:
        built.append(Reprojection2D(ps, corr, d.intrinsics, weight=lam["2d"], w=wv * mask["2d"], min_depth=min_depth))
    if lam["depth"] > 0:
        built.append(Depth(ps, tz, weight=lam["depth"], w=wv * mask["depth"]))
    if lam["point"] > 0:
        built.append(PointToPoint(ps, tp, weight=lam["point"], w=wv * mask["point"]))
    if lam["plane"] > 0:
        built.append(PointToPlane(ps, tp, nrm, weight=lam["plane"], w=wv * mask["plane"]))
    if sp is not None and terms.lambda_sparse > 0 and sp.points.shape[1] > 0:
        vs = valid_full[:, P:]
        ss = PointSet.make(sp.points, sp.anchors, sp.anchor_weights)
        built.append(PointToPoint(ss, sp.target_points, weight=terms.lambda_sparse, w=sp.weights * vs.to(dt),
                                  name="sparse"))
    if terms.lambda_arap > 0:
        ew = graph.edge_weights.to(dt) if terms.use_edge_weights else None
        built.append(Arap(graph.edges.to(nodes.device), weight=terms.lambda_arap, edge_weights=ew, dtype=dt))
    prob = Problem(nodes=nodes, edges=graph.edges.to(nodes.device).long(), terms=built, valid_nodes=valid_nodes,
                   points=ps.points, anchors=ps.anchors, anchor_weights=ps.anchor_weights, corr=corr, target_z=tz,
                   target_points=tp, normals=nrm, intrinsics=d.intrinsics, valid_points=take(vd),
                   valid_points_full=valid_full, cluster_correspondences=counts, batched=d.batched, num_dense=P)
    return prob.with_terms(extra_terms) if extra_terms else prob


def _pad(x: torch.Tensor, A: int, value) -> torch.Tensor:
    if x.shape[1] == A:
        return x
    return torch.cat([x, x.new_full((x.shape[0], A - x.shape[1]), value)], 1)
