"""Synthetic surfaces and smooth deformations with exact ground truth, to test and teach the graph.

- :func:`synthetic_depth`: a depth map (metres) of a smooth surface seen by a pinhole camera, with an
  object mask: ``"wave"`` (a sinusoidal sheet), ``"sphere"`` (a sphere cap facing the camera) or
  ``"step"`` (two flat sheets with a depth step: two separate surfaces that are close in 3D).
- :func:`bend_field`: an analytic non-rigid deformation f (rotation about the y axis whose angle grows
  linearly with x, plus a translation) and :func:`node_motion_from_field`, the node rotations /
  translations that make the embedded deformation reproduce f exactly at the nodes.
"""

from __future__ import annotations

import numpy as np
import torch

from nrsfm_kit.utils.checks import check_positive, check_tensor

__all__ = ["synthetic_depth", "bend_field", "node_motion_from_field"]


def synthetic_depth(
    height: int = 120, width: int = 160, kind: str = "wave", extent: float = 0.4, depth: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Depth map of a synthetic surface.

    Args:
        height, width: image size, pixels.
        kind: ``"wave"``, ``"sphere"`` or ``"step"``.
        extent: width of the field of view at ``depth``, metres (sets the focal length
            ``width * depth / extent``; 0.4 m at 160 px gives 2.5 mm pixels, as a Kinect at ~1.4 m).
        depth: mean distance of the surface to the camera, metres.

    Returns:
        depth (H, W) float32 metres (0 outside the object), mask (H, W) bool, intrinsics (4,) float64
        (fx, fy, cx, cy) pixels.
    """
    if int(height) < 4 or int(width) < 4:
        raise ValueError(f"height, width: expected >= 4 pixels, found ({height}, {width})")
    check_positive("depth", depth)
    check_positive("extent", extent)
    H, W = int(height), int(width)
    f = W * depth / extent
    intr = np.array([f, f, (W - 1) / 2.0, (H - 1) / 2.0])
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    x, y = (u - intr[2]) / f, (v - intr[3]) / f  # normalised image coordinates
    half_w, half_h = 0.5 * W / f, 0.5 * H / f  # half field of view (tan)
    if kind == "wave":
        z = depth + 0.03 * np.sin(2.5 * np.pi * x / half_w) * np.cos(1.5 * np.pi * y / half_h)
        mask = (np.abs(x) < 0.8 * half_w) & (np.abs(y) < 0.8 * half_h)
    elif kind == "sphere":
        r = 0.8 * min(half_w, half_h) * depth  # sphere radius, metres: the cap's front is at ``depth``
        centre = depth + r
        # ray (x, y, 1) s hits |s (x, y, 1) - (0, 0, c)| = r at the nearest root
        a = x**2 + y**2 + 1.0
        disc = centre**2 - a * (centre**2 - r**2)
        mask = disc > 0.05 * r**2  # drop the grazing rim
        z = np.where(mask, (centre - np.sqrt(np.maximum(disc, 0))) / a, 0.0)
    elif kind == "step":
        z = np.where(x < 0.3 * half_w, depth, depth + 0.08)  # two sheets of unequal size
        mask = (np.abs(x) < 0.8 * half_w) & (np.abs(y) < 0.8 * half_h)
    else:
        raise ValueError(f"kind: expected 'wave', 'sphere' or 'step', found {kind!r}")
    z = np.where(mask, z, 0.0).astype(np.float32)
    return z, mask, intr


def _rot_y(theta: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(theta), torch.sin(theta)
    o, one = torch.zeros_like(c), torch.ones_like(c)
    return torch.stack([c, o, s, o, one, o, -s, o, c], -1).reshape(*theta.shape, 3, 3)


def bend_field(points: torch.Tensor, centre: torch.Tensor, curvature: float, shift=(0.0, 0.0, 0.0)) -> torch.Tensor:
    """Smooth non-rigid deformation f(p) = R_y(kappa (p_x - c_x)) (p - c) + c + shift.

    Args:
        points: (..., 3) metres. centre: (3,) metres, the bending pivot c. curvature: kappa, radians
            per metre. shift: (3,) metres.

    Returns:
        (..., 3) deformed points, metres.
    """
    check_tensor("points", points, ("...", 3))
    c = torch.as_tensor(centre, dtype=points.dtype, device=points.device)
    s = torch.as_tensor(shift, dtype=points.dtype, device=points.device)
    R = _rot_y(curvature * (points[..., 0] - c[0]))
    return torch.einsum("...ij,...j->...i", R, points - c) + c + s


def node_motion_from_field(nodes: torch.Tensor, field) -> tuple[torch.Tensor, torch.Tensor]:
    """Node rotations and translations from a smooth field f: t_i = f(v_i) - v_i, R_i = polar(J_f(v_i)).

    ``R_i`` is the closest rotation to the Jacobian of f at the node (SVD polar factor), so the warp
    field Q is exact at the nodes and first-order accurate around them.

    Returns:
        rotations (N, 3, 3), translations (N, 3) metres.
    """
    check_tensor("nodes", nodes, ("N", 3))
    x = nodes.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        y = field(x)  # pointwise field: row i of J at every node from one backward pass per coordinate
        J = torch.stack([torch.autograd.grad(y[:, i].sum(), x, retain_graph=i < 2)[0] for i in range(3)], 1)
    U, _, Vh = torch.linalg.svd(J)
    d = torch.sign(torch.linalg.det(U @ Vh))
    D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    return U @ D @ Vh, y.detach() - nodes
