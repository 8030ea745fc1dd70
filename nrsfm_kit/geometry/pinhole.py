"""Pinhole camera: intrinsics, projection pi, back-projection pi^-1 and the Jacobian of pi.

Conventions: camera frame x right, y down, z forward (metres); pixel (u, v) = (column, row);
intrinsics as a (..., 4) tensor (fx, fy, cx, cy) in pixels.
"""

from __future__ import annotations

import numpy as np
import torch

from nrsfm_kit.utils.checks import check_finite, check_tensor


def as_intrinsics(K, dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
    """(fx, fy, cx, cy) from a 4-vector, a 3x3 matrix or a 4x4 matrix (batched allowed).

    Accepts a tensor, an array or a nested list. Returns (..., 4); raises ValueError for another shape,
    non-finite values or non-positive focal lengths.
    """
    if not isinstance(K, torch.Tensor):
        try:
            K = torch.as_tensor(np.asarray(K, dtype=np.float64))
        except (TypeError, ValueError):
            raise ValueError(f"intrinsics: expected numbers, found {type(K).__name__}") from None
    if not K.is_floating_point():
        K = K.double()
    if dtype is None:
        dtype = K.dtype if K.dtype in (torch.float32, torch.float64) else torch.float32
    K = K.to(dtype=dtype, device=device)
    if K.shape[-1:] == (4,) and not (K.dim() >= 2 and K.shape[-2] == 4):
        intr = K
    elif K.dim() >= 2 and K.shape[-2:] in ((3, 3), (4, 4)):
        intr = torch.stack([K[..., 0, 0], K[..., 1, 1], K[..., 0, 2], K[..., 1, 2]], dim=-1)
    else:
        raise ValueError(
            f"intrinsics: expected shape (..., 4) (fx, fy, cx, cy), (..., 3, 3) or (..., 4, 4), "
            f"found {tuple(K.shape)}"
        )
    check_finite("intrinsics", intr)
    if (intr[..., :2] <= 0).any():
        raise ValueError(f"intrinsics: expected focal lengths fx, fy > 0, found {intr[..., :2].tolist()}")
    return intr


def intrinsics_matrix(intrinsics) -> torch.Tensor:
    """3x3 calibration matrix [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] from any accepted form: (..., 3, 3)."""
    intr = as_intrinsics(intrinsics)
    fx, fy, cx, cy = intr.unbind(-1)
    o, one = torch.zeros_like(fx), torch.ones_like(fx)
    return torch.stack([fx, o, cx, o, fy, cy, o, o, one], dim=-1).reshape(*intr.shape[:-1], 3, 3)


def _split(intrinsics, like: torch.Tensor):
    intr = as_intrinsics(intrinsics, dtype=like.dtype, device=like.device)
    return intr.unbind(-1)


def project_with_mask(points: torch.Tensor, intrinsics, min_depth: float = 1e-6):
    """Project (..., 3) camera-frame points to pixels, masking points with z <= min_depth.

    Returns (uv (..., 2), valid (...,) bool). Invalid points get uv = 0 and zero gradient.
    ``intrinsics`` broadcasts against the leading dimensions of ``points`` (use (..., 1, 4) for
    per-batch intrinsics with (..., N, 3) points).
    """
    check_tensor("points", points, ("...", 3), finite=False)
    fx, fy, cx, cy = _split(intrinsics, points)
    x, y, z = points.unbind(-1)
    valid = torch.isfinite(points).all(-1) & (z > min_depth)
    zs = torch.where(valid, z, torch.ones_like(z))
    xs = torch.where(valid, x, torch.zeros_like(x))
    ys = torch.where(valid, y, torch.zeros_like(y))
    u = torch.where(valid, fx * xs / zs + cx, torch.zeros_like(x))
    v = torch.where(valid, fy * ys / zs + cy, torch.zeros_like(y))
    return torch.stack([u, v], dim=-1), valid


def project(points: torch.Tensor, intrinsics) -> torch.Tensor:
    """pi(p) = (fx x / z + cx, fy y / z + cy): (..., 3) metres -> (..., 2) pixels.

    Raises ValueError when a point is non-finite or has z <= 0 (use :func:`project_with_mask` to mask).
    """
    check_tensor("points", points, ("...", 3))
    bad = int((points[..., 2] <= 0).sum())
    if bad:
        raise ValueError(f"points: expected depth z > 0 for projection, found {bad} points with z <= 0")
    uv, _ = project_with_mask(points, intrinsics, min_depth=0.0)
    return uv


def project_jacobian(points: torch.Tensor, intrinsics) -> torch.Tensor:
    """Jacobian d pi / d p = [[fx/z, 0, -fx x/z^2], [0, fy/z, -fy y/z^2]]: (..., 3) -> (..., 2, 3)."""
    check_tensor("points", points, ("...", 3))
    if (points[..., 2] <= 0).any():
        raise ValueError("points: expected depth z > 0 for the projection Jacobian, found z <= 0")
    fx, fy, _, _ = _split(intrinsics, points)
    x, y, z = points.unbind(-1)
    o = torch.zeros_like(z)
    J = torch.stack([fx / z, o, -fx * x / (z * z), o, fy / z, -fy * y / (z * z)], dim=-1)
    return J.reshape(*points.shape[:-1], 2, 3)


def backproject(uv: torch.Tensor, depth: torch.Tensor, intrinsics) -> torch.Tensor:
    """pi^-1(u, v, d) = (d (u - cx)/fx, d (v - cy)/fy, d): uv (..., 2), depth (...) -> (..., 3)."""
    check_tensor("uv", uv, ("...", 2))
    check_tensor("depth", depth)
    if depth.shape != uv.shape[:-1]:
        raise ValueError(f"depth: expected shape {tuple(uv.shape[:-1])} matching uv, found {tuple(depth.shape)}")
    fx, fy, cx, cy = _split(intrinsics, uv)
    u, v = uv.unbind(-1)
    return torch.stack([depth * (u - cx) / fx, depth * (v - cy) / fy, depth], dim=-1)


def pixel_grid(height: int, width: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """(H, W, 2) pixel coordinates, [..., 0] = u (column), [..., 1] = v (row)."""
    if int(height) < 1 or int(width) < 1:
        raise ValueError(f"image size: expected height, width >= 1, found ({height}, {width})")
    v, u = torch.meshgrid(
        torch.arange(int(height), dtype=dtype, device=device),
        torch.arange(int(width), dtype=dtype, device=device),
        indexing="ij",
    )
    return torch.stack([u, v], dim=-1)


def depth_to_points(depth: torch.Tensor, intrinsics):
    """Back-project a whole depth image: (..., H, W) metres -> (points (..., H, W, 3), valid (..., H, W)).

    Pixels with non-finite or non-positive depth are invalid: their points are 0 (masked, documented),
    so nothing non-finite flows on. ``intrinsics``: (4,) or (..., 4) matching the batch dimensions.
    """
    check_tensor("depth", depth, ("...", "H", "W"), finite=False)
    H, W = depth.shape[-2:]
    valid = torch.isfinite(depth) & (depth > 0)
    d = torch.where(valid, depth, torch.zeros_like(depth))
    intr = as_intrinsics(intrinsics, dtype=depth.dtype, device=depth.device)
    intr = intr.reshape(*intr.shape[:-1], *([1] * 2), 4) if intr.dim() > 1 else intr
    grid = pixel_grid(H, W, dtype=depth.dtype, device=depth.device)
    pts = backproject(grid.expand(*d.shape, 2), d, intr)
    return pts, valid
