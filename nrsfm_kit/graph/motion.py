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
    w = w.to(nodes.dtype)
    R, _, _ = procrustes(X, Y, weights=w)
    # a neighbourhood on a line (e.g. one neighbour) fixes no rotation about that line: Procrustes returns an
    # arbitrary member of the family (a large rotation for zero motion). Take the smallest rotation of the family
    # there: the one turning the line's direction onto its moved direction (identity for a pure translation).
    wn = w / w.sum(1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
    Xc = X - (wn[..., None] * X).sum(1, keepdim=True)
    Yc = Y - (wn[..., None] * Y).sum(1, keepdim=True)
    sx = torch.linalg.svdvals(Xc * wn[..., None].sqrt())  # (N, 3), descending
    line = sx[:, 1] <= 1e-6 * sx[:, 0].clamp_min(torch.finfo(w.dtype).tiny)
    if bool(line.any()):
        H = (Xc[line] * wn[line][..., None]).transpose(1, 2) @ Yc[line]
        U, S, Vh = torch.linalg.svd(H)
        a, b = U[:, :, 0], Vh[:, 0, :]  # H = S0 a b^T + ...: the line's direction and its moved direction
        R[line] = _smallest_rotation(a, b)
    return R


def _smallest_rotation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(M, 3, 3) rotations of smallest angle taking the unit vectors ``a`` onto ``b`` (Rodrigues); for b = -a any
    half-turn about an axis perpendicular to a."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    c = (a * b).sum(-1).clamp(-1.0, 1.0)
    axis = torch.linalg.cross(a, b)
    s = axis.norm(dim=-1)
    anti = s < 1e-12
    if bool(anti.any()):  # antiparallel (or equal): a perpendicular axis
        e = torch.eye(3, dtype=a.dtype, device=a.device)[a[anti].abs().argmin(-1)]
        perp = torch.linalg.cross(a[anti], e)
        axis = axis.clone()
        axis[anti] = perp
        s = axis.norm(dim=-1)
    k = axis / s[:, None].clamp_min(torch.finfo(a.dtype).tiny)
    theta = torch.atan2(torch.where(anti, torch.zeros_like(s), s), c)
    Kx = torch.zeros(len(a), 3, 3, dtype=a.dtype, device=a.device)
    Kx[:, 0, 1], Kx[:, 0, 2], Kx[:, 1, 2] = -k[:, 2], k[:, 1], -k[:, 0]
    Kx = Kx - Kx.transpose(1, 2)
    eye = torch.eye(3, dtype=a.dtype, device=a.device).expand_as(Kx)
    st, ct = theta.sin()[:, None, None], theta.cos()[:, None, None]
    return eye + st * Kx + (1 - ct) * (Kx @ Kx)


def sample_at_nodes(image: torch.Tensor, vertex_pixels: torch.Tensor) -> torch.Tensor:
    """Values of an (H, W, C) image at node pixels (u, v) given as (N, 2) int: (N, C)."""
    check_shape("vertex_pixels", vertex_pixels, ("N", 2))
    u, v = vertex_pixels[:, 0].long(), vertex_pixels[:, 1].long()
    H, W = image.shape[:2]
    if len(u) and (u.min() < 0 or v.min() < 0 or u.max() >= W or v.max() >= H):
        raise ValueError(f"vertex_pixels: expected (u, v) inside the {W}x{H} image, found out-of-range pixels")
    return image[v, u]
