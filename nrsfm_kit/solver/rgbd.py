"""Solver inputs from an RGB-D frame pair (:class:`nrsfm_kit.data.types.RGBDPair`) and its evaluation.

The graph itself comes from :func:`nrsfm_kit.graph.build_graph` (not imported here: the solver core does
not depend on graph construction).
"""

from __future__ import annotations

import torch

from nrsfm_kit.geometry import depth_to_points, pixel_grid
from nrsfm_kit.kernels.warp_field import warp_points_torch

__all__ = ["flow_correspondences", "scene_flow_error"]


def flow_correspondences(pair) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source point image and dense correspondences c_u = u + optical flow (image layout of the solver).

    Returns (source_points (H, W, 3) metres, correspondences (H, W, 2) pixels, NaN where the flow is
    invalid or the source mask is off (masked by the solver), weights (H, W) ones).
    """
    if pair.optical_flow is None:
        raise ValueError(f"pair.optical_flow: expected an (H, W, 2) flow image, found None ({pair.name})")
    H, W = pair.source_depth.shape
    pts, valid = depth_to_points(pair.source_depth, pair.intrinsics)
    ok = valid & (pair.flow_valid if pair.flow_valid is not None else torch.ones_like(valid))
    if pair.source_mask is not None:
        ok = ok & pair.source_mask
    uv = pixel_grid(H, W, dtype=pair.source_depth.dtype) + pair.optical_flow
    corr = torch.where(ok.unsqueeze(-1), uv, torch.full_like(uv, float("nan")))
    return pts, corr, torch.ones(H, W, dtype=pair.source_depth.dtype)


def scene_flow_error(pair, graph, T, mask: torch.Tensor | None = None) -> tuple[float, float, int]:
    """Mean end-point error (metres) of the warped source points against source + ground-truth scene flow.

    Returns (error with T, error of the identity motion, number of evaluated pixels) over pixels with
    valid depth, valid scene flow, valid anchors (and ``mask``).
    """
    if pair.scene_flow is None:
        raise ValueError(f"pair.scene_flow: expected an (H, W, 3) scene flow image, found None ({pair.name})")
    pts, valid = depth_to_points(pair.source_depth, pair.intrinsics)
    ok = valid & (graph.pixel_anchors >= 0).any(-1)
    if pair.flow_valid is not None:
        ok = ok & pair.flow_valid
    if mask is not None:
        ok = ok & mask
    p = pts[ok]
    q = warp_points_torch(p, graph.pixel_anchors[ok], graph.pixel_weights[ok].to(p.dtype), graph.nodes.to(p.dtype),
                          T.rotations.to(p.dtype), T.translations.to(p.dtype))
    gt = p + pair.scene_flow[ok]
    return float((q - gt).norm(dim=-1).mean()), float((p - gt).norm(dim=-1).mean()), int(ok.sum())
