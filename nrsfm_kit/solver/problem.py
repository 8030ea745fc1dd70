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

import math
from dataclasses import dataclass, fields
from typing import NamedTuple

import torch

from nrsfm_kit.geometry import as_intrinsics, backproject
from nrsfm_kit.graph.types import DeformationGraph
from nrsfm_kit.utils.checks import check_shape, check_tensor

from .config import EnergyTerms

__all__ = ["SparseMatches", "Problem", "prepare_problem", "sample_depth_bilinear"]


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
    """Batched solver inputs. B frame pairs, P points (dense + sparse), N nodes, K edges per node."""

    points: torch.Tensor  # (B, P, 3)
    anchors: torch.Tensor  # (P, A) int64, -1 padding
    anchor_weights: torch.Tensor  # (P, A)
    nodes: torch.Tensor  # (N, 3)
    edges: torch.Tensor  # (N, K) int64
    arap_scale: torch.Tensor  # (N, K) sqrt(lambda_arap * w_ij), 0 on padding
    corr: torch.Tensor  # (B, P, 2) pixels, 0 where invalid
    target_z: torch.Tensor  # (B, P) metres, 0 where invalid
    target_points: torch.Tensor  # (B, P, 3)
    normals: torch.Tensor  # (B, P, 3)
    wt: torch.Tensor  # (B, P, 4) row weights sqrt(lambda) w (0 = off)
    intrinsics: torch.Tensor  # (B, 4)
    valid_points: torch.Tensor  # (B, P) bool, after cluster filtering (compacted points)
    valid_points_full: torch.Tensor  # (B, P_in) bool, in the caller's point layout (dense, then sparse)
    valid_nodes: torch.Tensor  # (B, N) bool
    cluster_correspondences: torch.Tensor  # (B, C) int64
    batched: bool
    num_dense: int  # number of dense correspondences in the caller's layout (sparse matches follow)

    @property
    def num_nodes(self) -> int:
        return int(self.nodes.shape[0])

    def detached(self) -> Problem:
        return Problem(**{f.name: (getattr(self, f.name).detach() if isinstance(getattr(self, f.name), torch.Tensor)
                                   else getattr(self, f.name)) for f in fields(self)})


def sample_depth_bilinear(depth: torch.Tensor, uv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear depth at pixel positions, differentiable w.r.t. both (eq. 10's D_t(c_u)).

    Args:
        depth: (B, H, W) metres; <= 0 or non-finite = invalid. uv: (B, P, 2) pixels (u = column, v = row,
            pixel centres at integers), finite.

    Returns:
        (values (B, P) metres, 0 where invalid; valid (B, P) bool: inside the image and all 4 neighbours valid).
    """
    B, H, W = depth.shape
    ok_px = torch.isfinite(depth) & (depth > 0)
    d = torch.where(ok_px, depth, torch.zeros_like(depth))
    u, v = uv[..., 0], uv[..., 1]
    inside = (u >= 0) & (u <= W - 1) & (v >= 0) & (v <= H - 1)
    uc = u.clamp(0, W - 1)
    vc = v.clamp(0, H - 1)
    u0 = uc.detach().floor().clamp(max=max(W - 2, 0)).long()
    v0 = vc.detach().floor().clamp(max=max(H - 2, 0)).long()
    u1 = (u0 + 1).clamp(max=W - 1)
    v1 = (v0 + 1).clamp(max=H - 1)
    fu = uc - u0.to(uc.dtype)
    fv = vc - v0.to(vc.dtype)
    flat = d.reshape(B, -1)
    okf = ok_px.reshape(B, -1)

    def g(vv, uu):
        idx = vv * W + uu
        return flat.gather(1, idx), okf.gather(1, idx)

    d00, o00 = g(v0, u0)
    d01, o01 = g(v0, u1)
    d10, o10 = g(v1, u0)
    d11, o11 = g(v1, u1)
    val = (1 - fv) * ((1 - fu) * d00 + fu * d01) + fv * ((1 - fu) * d10 + fu * d11)
    valid = inside & o00 & o01 & o10 & o11
    return torch.where(valid, val, torch.zeros_like(val)), valid


def _batch(x: torch.Tensor, B: int, name: str, core: int) -> torch.Tensor:
    """Give x (core dims) or (B, core dims) a batch dimension of size B."""
    if x.dim() == core:
        return x.unsqueeze(0).expand(B, *x.shape)
    if x.dim() == core + 1 and x.shape[0] in (1, B):
        return x.expand(B, *x.shape[1:])
    raise ValueError(f"{name}: expected {core} dims or a leading batch of {B}, found shape {tuple(x.shape)}")


def prepare_problem(graph: DeformationGraph, source_points: torch.Tensor, correspondences: torch.Tensor,
                    weights: torch.Tensor | None, target_depth: torch.Tensor, intrinsics, *, terms: EnergyTerms,
                    anchors: torch.Tensor | None = None, anchor_weights: torch.Tensor | None = None,
                    target_points: torch.Tensor | None = None, target_normals: torch.Tensor | None = None,
                    sparse: SparseMatches | None = None, min_cluster_correspondences: int = 2000) -> Problem:
    """Validate and batch the inputs of :func:`nrsfm_kit.solver.solve_deformation` (see there)."""
    if not isinstance(graph, DeformationGraph):
        raise ValueError(f"graph: expected a DeformationGraph, found {type(graph).__name__}")
    if not isinstance(terms, EnergyTerms):
        raise ValueError(f"terms: expected an EnergyTerms, found {type(terms).__name__}")
    nodes = check_tensor("graph.nodes", graph.nodes, ("N", 3))
    dt, dev = nodes.dtype, nodes.device
    N = nodes.shape[0]
    if N == 0:
        raise ValueError("graph.nodes: expected at least one node, found 0")
    check_shape("graph.edges", graph.edges, (N, None))
    check_tensor("correspondences", correspondences, ("...", 2), finite=False)
    if correspondences.dtype != dt:
        raise ValueError(f"correspondences: expected dtype {dt} (that of graph.nodes), found {correspondences.dtype}")

    # ---- dense correspondences: list mode (anchors given) or image mode (graph.pixel_anchors) ----
    if anchors is None:
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
        for name in ("target_points", "target_normals"):
            val = locals()[name]
            if isinstance(val, torch.Tensor) and val.dim() >= 3 and tuple(val.shape[-3:-1]) == (H, W):
                val = val.reshape(*val.shape[:-3], H * W, 3)
                if name == "target_points":
                    target_points = val
                else:
                    target_normals = val
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
    intr = as_intrinsics(intrinsics, dtype=dt, device=dev)
    intr = _batch(intr, B, "intrinsics", 1)

    # ---- validity and sanitising ----
    src_ok = torch.isfinite(points).all(-1) & (points[..., 2] > 0)
    points = torch.where(src_ok.unsqueeze(-1), points, torch.zeros_like(points))
    corr_ok = torch.isfinite(corr).all(-1)
    corr = torch.where(corr_ok.unsqueeze(-1), corr, torch.zeros_like(corr))
    anchors = anchors.long()
    has_anchor = ((anchors >= 0) & (anchor_weights != 0)).any(-1)  # (P,)
    base = src_ok & corr_ok & has_anchor.unsqueeze(0) & (w != 0)
    tz, z_ok = sample_depth_bilinear(depth, corr)

    if target_points is None:
        tp = backproject(corr, tz, intr.unsqueeze(1))
        tp_ok = z_ok
    else:
        tp = _batch(check_tensor("target_points", target_points, ("...", P, 3), finite=False).to(dt), B,
                    "target_points", 2)
        tp_ok = torch.isfinite(tp).all(-1)
        tp = torch.where(tp_ok.unsqueeze(-1), tp, torch.zeros_like(tp))
    if target_normals is None:
        if terms.lambda_plane > 0:
            raise ValueError("target_normals: expected a (..., P, 3) tensor when terms.lambda_plane > 0, found None")
        nrm = torch.zeros_like(tp)
        nrm_ok = torch.zeros_like(tp_ok)
    else:
        nrm = _batch(check_tensor("target_normals", target_normals, ("...", P, 3), finite=False).to(dt), B,
                     "target_normals", 2)
        nrm_ok = torch.isfinite(nrm).all(-1)
        nrm = torch.where(nrm_ok.unsqueeze(-1), nrm, torch.zeros_like(nrm))

    num_dense = P
    ones = torch.ones_like(w)
    sel = [torch.zeros_like(w)] * 4  # per-row switches before cluster filtering
    sel = [ones, z_ok.to(dt), tp_ok.to(dt), (tp_ok & nrm_ok).to(dt)]
    lam = [terms.lambda_2d, terms.lambda_depth, terms.lambda_point, terms.lambda_plane]

    # ---- sparse matches appended as point-to-point rows ----
    if sparse is not None:
        if not isinstance(sparse, SparseMatches):
            raise ValueError(f"sparse: expected SparseMatches, found {type(sparse).__name__}")
        S = sparse.source_points.shape[0] if sparse.source_points.dim() >= 2 else -1
        check_tensor("sparse.source_points", sparse.source_points, (S, 3))
        check_shape("sparse.anchors", sparse.anchors, (S, None))
        check_tensor("sparse.anchor_weights", sparse.anchor_weights, (S, sparse.anchors.shape[1]))
        sp_t = _batch(check_tensor("sparse.target_points", sparse.target_points, ("...", S, 3)).to(dt), B,
                      "sparse.target_points", 2)
        sw = torch.ones(B, S, dtype=dt, device=dev) if sparse.weights is None else _batch(
            check_tensor("sparse.weights", sparse.weights, ("...", S)).to(dt), B, "sparse.weights", 1)
        A = max(anchors.shape[1], sparse.anchors.shape[1])
        anchors = _pad(anchors, A, -1)
        anchor_weights = _pad(anchor_weights.to(dt), A, 0.0)
        anchors = torch.cat([anchors, _pad(sparse.anchors.long(), A, -1)], 0)
        anchor_weights = torch.cat([anchor_weights, _pad(sparse.anchor_weights.to(dt), A, 0.0)], 0)
        points = torch.cat([points, sparse.source_points.to(dt).unsqueeze(0).expand(B, S, 3)], 1)
        zS = torch.zeros(B, S, dtype=dt, device=dev)
        corr = torch.cat([corr, zS.unsqueeze(-1).expand(B, S, 2)], 1)
        tz = torch.cat([tz, zS], 1)
        tp = torch.cat([tp, sp_t], 1)
        nrm = torch.cat([nrm, torch.zeros_like(sp_t)], 1)
        w = torch.cat([w, sw], 1)
        sp_has = ((sparse.anchors >= 0) & (sparse.anchor_weights != 0)).any(-1)
        base = torch.cat([base, (sp_has.unsqueeze(0) & (sw != 0)).expand(B, S)], 1)
        sel = [torch.cat([s, zS], 1) for s in sel[:2]] + [torch.cat([sel[2], zS], 1), torch.cat([sel[3], zS], 1)]
        sp_sel = torch.cat([torch.zeros(B, num_dense, dtype=dt, device=dev), torch.ones(B, S, dtype=dt, device=dev)], 1)
        sel[2] = sel[2] + sp_sel  # point-to-point row of the sparse matches, weighted by lambda_sparse
        lam_point = torch.where(sp_sel > 0, torch.full_like(sp_sel, terms.lambda_sparse),
                                torch.full_like(sp_sel, terms.lambda_point))
    else:
        lam_point = torch.full_like(w, terms.lambda_point)

    # ---- clusters with too few correspondences are frozen ----
    clusters = graph.clusters.to(dev).long()
    check_shape("graph.clusters", clusters, (N,))
    C = int(clusters.max()) + 1 if clusters.numel() else 1
    a_ok = (anchors >= 0) & (anchor_weights != 0)
    a_cl = torch.where(a_ok, clusters[anchors.clamp(min=0)], torch.full_like(anchors, -1))  # (P, A)
    member = torch.zeros(a_cl.shape[0], C + 1, dtype=dt, device=dev)
    member.scatter_(1, (a_cl + 1).clamp(min=0), 1.0)
    member = member[:, 1:]  # (P, C): point touches cluster c
    counts = torch.einsum("bp,pc->bc", base.to(dt), member).round().long()
    cl_ok = counts >= min_cluster_correspondences  # (B, C)
    valid_nodes = cl_ok.gather(1, clusters.unsqueeze(0).expand(B, N))
    node_ok_at_anchor = torch.where(a_ok.unsqueeze(0), valid_nodes[:, anchors.clamp(min=0)],
                                    torch.ones(B, *anchors.shape, dtype=torch.bool, device=dev))
    valid_points = base & node_ok_at_anchor.all(-1)

    vp = valid_points.to(dt)
    wt = torch.stack([
        math.sqrt(lam[0]) * w * vp * sel[0],
        math.sqrt(lam[1]) * w * vp * sel[1],
        torch.sqrt(lam_point) * w * vp * sel[2].clamp(max=1),
        math.sqrt(lam[3]) * w * vp * sel[3],
    ], -1)

    # points without any active row in any pair are dropped before the kernels (e.g. invalid pixels of
    # a 640x480 point image); ``valid_points`` keeps the caller's layout
    valid_full = valid_points
    keep = valid_points.any(0)
    if not bool(keep.all()):
        idx = keep.nonzero().squeeze(1)
        anchors, anchor_weights = anchors[idx], anchor_weights[idx]
        points, corr, tz, tp, nrm, wt, valid_points = (x[:, idx] for x in (points, corr, tz, tp, nrm, wt, valid_points))

    edges = graph.edges.to(dev).long()
    e_ok = edges >= 0
    ew = graph.edge_weights.to(dt) if terms.use_edge_weights else torch.ones(edges.shape, dtype=dt, device=dev)
    arap_scale = torch.where(e_ok, torch.sqrt(terms.lambda_arap * ew.clamp(min=0)), torch.zeros_like(ew))
    return Problem(points=points, anchors=anchors, anchor_weights=anchor_weights.to(dt), nodes=nodes, edges=edges,
                   arap_scale=arap_scale, corr=corr, target_z=tz, target_points=tp, normals=nrm, wt=wt,
                   intrinsics=intr, valid_points=valid_points, valid_points_full=valid_full, valid_nodes=valid_nodes,
                   cluster_correspondences=counts, batched=batched, num_dense=num_dense)


def _pad(x: torch.Tensor, A: int, value) -> torch.Tensor:
    if x.shape[1] == A:
        return x
    return torch.cat([x, x.new_full((x.shape[0], A - x.shape[1]), value)], 1)
