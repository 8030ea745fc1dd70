"""Node motion helpers: from sparse node translations (e.g. scene flow at the nodes) to full node motions.

The reference implementation stores ground-truth node motion as translations only
(``graph_node_deformations``: the scene flow at each node's vertex). The embedded deformation also
has a rotation per node; :func:`node_rotations_from_translations` estimates it as the rotation that
best maps the node's edge neighbourhood onto its displaced neighbourhood (weighted Procrustes, Kabsch),
which is the local rigid motion the ARAP term (eq. 11) asks for.
"""

from __future__ import annotations

import torch

from nrsfm_kit.utils.checks import check_shape, check_tensor

__all__ = ["node_rotations_from_translations", "sample_at_nodes"]


def node_rotations_from_translations(
    nodes: torch.Tensor, edges: torch.Tensor, edge_weights: torch.Tensor, translations: torch.Tensor
) -> torch.Tensor:
    """Per-node rotation from the translations of the node and its graph neighbours.

    Args:
        nodes: (N, 3) metres. edges: (N, K) int, -1 padding. edge_weights: (N, K).
        translations: (N, 3) metres, node displacements t_i.

    Returns:
        (N, 3, 3) rotations R_i minimising sum_j w_ij |R_i (v_j - v_i) - (v_j + t_j - v_i - t_i)|^2
        over the node and its neighbours (identity-like for a node without neighbours).
    """
    from nrsfm_kit.geometry import procrustes

    dims: dict = {}
    check_tensor("nodes", nodes, ("N", 3), dims=dims)
    check_tensor("translations", translations, ("N", 3), dims=dims)
    check_tensor("edge_weights", edge_weights, ("N", "K"), dims=dims)
    check_shape("edges", edges, ("N", "K"), dims)
    valid = edges >= 0
    j = torch.cat([torch.arange(len(nodes), device=nodes.device)[:, None], edges.clamp(min=0)], 1)  # (N, K+1)
    w = torch.cat([torch.ones_like(edge_weights[:, :1]), torch.where(valid, edge_weights, 0.0)], 1)
    X = nodes[j]
    Y = X + translations[j]
    R, _, _ = procrustes(X, Y, weights=w.to(nodes.dtype))
    return R


def sample_at_nodes(image: torch.Tensor, vertex_pixels: torch.Tensor) -> torch.Tensor:
    """Values of an (H, W, C) image at node pixels (u, v) given as (N, 2) int: (N, C)."""
    check_shape("vertex_pixels", vertex_pixels, ("N", 2))
    u, v = vertex_pixels[:, 0].long(), vertex_pixels[:, 1].long()
    H, W = image.shape[:2]
    if len(u) and (u.min() < 0 or v.min() < 0 or u.max() >= W or v.max() >= H):
        raise ValueError(f"vertex_pixels: expected (u, v) inside the {W}x{H} image, found out-of-range pixels")
    return image[v, u]
