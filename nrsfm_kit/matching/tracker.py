"""DeepDeform's non-rigid tracker with the learned matching term (Bozic et al., CVPR 2020, sec. 4.2, App. B).

Every graph node g_i (camera frame of the source, metres) is projected to a source pixel and matched by the
Siamese matcher (:func:`~nrsfm_kit.matching.inference.match_points`): a heatmap H_i over its target patch, the
heatmap maximum back-projected at the target depth there, p_i, and a visibility. Nodes whose match is rejected
(visibility < 0.5 or |depth - target depth| > 0.15 m) get no learned term. The learned term (sec. 4.2) is

    E_learned(T) = sum_i (1 - H_i(pi(g_i + t_i)))^2 + lambda_point sum_i ||g_i + t_i - p_i||^2,  lambda_point = 10,

with each H_i normalised to a maximum of 1 (:class:`~nrsfm_kit.solver.terms.Heatmap`: H sampled bilinearly with its
image-gradient Jacobian; :class:`~nrsfm_kit.solver.terms.PointToPoint` on the node itself, whose warp is g_i + t_i).
The energy

    E_total = E_data (dense point-to-point + point-to-plane) + lambda_learned E_learned + lambda_reg E_reg,

lambda_learned = lambda_reg = 1, is minimised by 10 Gauss-Newton steps of 20 PCG iterations with projective data
association re-done every step (App. B; :func:`~nrsfm_kit.matching.alignment.align`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from nrsfm_kit.data.types import RGBDPair
from nrsfm_kit.geometry import project_with_mask
from nrsfm_kit.graph.types import DeformationGraph
from nrsfm_kit.solver.terms import Heatmap, PointSet, PointToPoint, ResidualTerm
from nrsfm_kit.utils.checks import check_positive, check_tensor

from .alignment import AlignmentConfig, AlignmentResult, align
from .inference import MAX_DEPTH_DIFFERENCE, MIN_VISIBILITY, Matches, match_points

__all__ = ["DeepDeformTrackerConfig", "DeepDeformTrack", "node_matches", "learned_terms", "track_deepdeform"]


@dataclass
class DeepDeformTrackerConfig:
    """Weights of the DeepDeform tracker (sec. 4.2) and its solver (App. B, :class:`AlignmentConfig`)."""

    lambda_learned: float = 1.0  # sec. 4.2
    lambda_point: float = 10.0  # sec. 4.2, the point part of E_learned
    min_visibility: float = MIN_VISIBILITY
    max_depth_difference: float = MAX_DEPTH_DIFFERENCE
    # E_data + E_reg of App. B: no photometric / silhouette / sparse term in the tracker
    alignment: AlignmentConfig = field(default_factory=lambda: AlignmentConfig(lambda_photo=0.0, lambda_silh=0.0))

    def __post_init__(self) -> None:
        check_positive("lambda_learned", self.lambda_learned, strict=False)
        check_positive("lambda_point", self.lambda_point, strict=False)
        if not 0.0 <= float(self.min_visibility) <= 1.0:
            raise ValueError(f"min_visibility: expected a value in [0, 1], found {self.min_visibility!r}")
        check_positive("max_depth_difference", self.max_depth_difference)


class DeepDeformTrack(NamedTuple):
    """Result of :func:`track_deepdeform`: the alignment (motion, warped points, flows), the node matches (None
    without a matcher) and the ids (M,) of the nodes whose matches entered the learned term."""

    alignment: AlignmentResult
    matches: Matches | None
    node_ids: torch.Tensor


def node_matches(matcher, pair: RGBDPair, graph: DeformationGraph, *, batch_size: int = 32,
                 min_visibility: float = MIN_VISIBILITY, max_depth_difference: float = MAX_DEPTH_DIFFERENCE):
    """Match every graph node that projects inside the source image onto valid depth. Returns (Matches with the
    heatmaps, node ids (M,) of those nodes)."""
    nodes = graph.nodes.to(pair.source_depth.dtype)
    uv, ok = project_with_mask(nodes, pair.intrinsics.to(nodes.dtype))
    H, W = pair.source_depth.shape
    inside = ok & (uv[:, 0] >= 0) & (uv[:, 1] >= 0) & (uv[:, 0] <= W - 1) & (uv[:, 1] <= H - 1)
    ui = uv[:, 0].round().long().clamp(0, W - 1)
    vi = uv[:, 1].round().long().clamp(0, H - 1)
    inside = inside & (pair.source_depth[vi, ui] > 0)
    ids = torch.nonzero(inside).squeeze(1)
    if len(ids) == 0:
        raise ValueError("graph.nodes: expected nodes projecting into the source image onto valid depth, found none")
    m = match_points(matcher, pair, uv[ids], batch_size=batch_size, min_visibility=min_visibility,
                     max_depth_difference=max_depth_difference, return_heatmaps=True)
    return m, ids


def learned_terms(nodes: torch.Tensor, node_ids: torch.Tensor, matches: Matches, intrinsics: torch.Tensor, *,
                  lambda_learned: float = 1.0, lambda_point: float = 10.0) -> list[ResidualTerm]:
    """The two residual terms of E_learned (sec. 4.2) for the accepted matches of nodes ``node_ids`` (M,):
    heatmap (1 - H_i(pi(g_i + t_i))), H_i normalised to max 1, weight lambda_learned, and point
    (g_i + t_i - p_i), weight lambda_learned * lambda_point. Empty when no match is accepted."""
    check_tensor("nodes", nodes, ("N", 3))
    if matches.heatmaps is None:
        raise ValueError("matches.heatmaps: expected the heatmaps (match_points(..., return_heatmaps=True)), "
                         "found None")
    if node_ids.shape != matches.accepted.shape:
        raise ValueError(f"node_ids: expected shape {tuple(matches.accepted.shape)} (one per match), found "
                         f"{tuple(node_ids.shape)}")
    keep = matches.accepted
    if not bool(keep.any()):
        return []
    ids = node_ids[keep]
    dt = nodes.dtype
    pts = nodes[ids].unsqueeze(0)
    ps = PointSet.make(pts, ids[:, None], torch.ones(len(ids), 1, dtype=dt, device=nodes.device))
    H = matches.heatmaps[keep].to(dt)
    H = H / H.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
    K = intrinsics.to(dt).reshape(1, 4)
    terms: list[ResidualTerm] = [
        Heatmap(ps, H.unsqueeze(0), K, offset=matches.offsets[keep].to(dt).unsqueeze(0), weight=lambda_learned,
                name="heatmap"),
        PointToPoint(ps, matches.target_xyz[keep].to(dt).unsqueeze(0), weight=lambda_learned * lambda_point,
                     name="learned_point"),
    ]
    return terms


def track_deepdeform(pair: RGBDPair, graph: DeformationGraph, *, matcher=None,
                     config: DeepDeformTrackerConfig | None = None, matches: tuple[Matches, torch.Tensor] | None = None,
                     source_mask: torch.Tensor | None = None, progress: bool = False) -> DeepDeformTrack:
    """Track ``pair`` with E_data + lambda_learned E_learned + lambda_reg E_reg (without ``matcher`` and ``matches``:
    E_data + E_reg only, the hand-crafted baseline). ``matches``: precomputed (:func:`node_matches`) output."""
    cfg = config or DeepDeformTrackerConfig()
    terms: list[ResidualTerm] = []
    m, ids = (None, torch.zeros(0, dtype=torch.long))
    if matches is not None:
        m, ids = matches
    elif matcher is not None:
        m, ids = node_matches(matcher, pair, graph, min_visibility=cfg.min_visibility,
                              max_depth_difference=cfg.max_depth_difference)
    if m is not None and cfg.lambda_learned > 0:
        terms = learned_terms(graph.nodes.to(pair.source_depth.dtype), ids, m, pair.intrinsics,
                              lambda_learned=cfg.lambda_learned, lambda_point=cfg.lambda_point)
    res = align(pair, graph, config=cfg.alignment, extra_terms=terms, source_mask=source_mask, progress=progress)
    used = ids[m.accepted] if m is not None else ids
    return DeepDeformTrack(res, m, used)
