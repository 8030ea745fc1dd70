"""Reconstructing surfaces by EDM optimisation (teaching examples for the priors of Table 1).

Given the rays u of n tracked points in F views (known correspondences), depths lambda^f are found by
minimising the sampled EDM loss between view 0 and every other view under a prior: the rigid prior (all
pairs) for a rigidly moving surface, the isometric prior (only pairs of neighbours on the surface) for a
bending sheet. Depth is recovered up to one global scale per view (the loss normalises each view).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from nrsfm_kit.kernels.edm_loss import edm_pair_loss, edm_pair_loss_reference
from nrsfm_kit.utils.checks import check_tensor


@dataclass
class SurfaceViews:
    """F views of n surface points: points (F, n, 3) camera frame (metres), rays (F, n, 3) = K^-1 p,
    depth (F, n), grid (n, 2) surface (material) coordinates, and the neighbour pairs (i, j) on the grid."""

    points: torch.Tensor
    rays: torch.Tensor
    depth: torch.Tensor
    grid: torch.Tensor
    i_local: torch.Tensor
    j_local: torch.Tensor
    kind: str


def _grid(side: int, dtype) -> torch.Tensor:
    a = torch.linspace(-0.5, 0.5, side, dtype=dtype)
    A, B = torch.meshgrid(a, a, indexing="ij")
    return torch.stack([A.reshape(-1), B.reshape(-1)], -1)


def surface_views(kind: str = "rigid", side: int = 12, frames: int = 3, seed: int = 0,
                  dtype=torch.float64) -> SurfaceViews:
    """Synthetic views of a rigid bumpy patch or of an isometrically bending sheet (1 m wide, ~2 m away).

    "rigid": z = 0.15 sin(3a) cos(2b) moved rigidly (rotations up to ~25 degrees, translations ~0.3 m).
    "isometric": the flat sheet rolled onto a cylinder of a per-frame radius (an isometry: geodesic
    distances are preserved, Euclidean ones only locally), then moved rigidly.
    """
    if kind not in ("rigid", "isometric"):
        raise ValueError(f"kind: expected 'rigid' or 'isometric', found {kind!r}")
    if int(side) < 3 or int(frames) < 2:
        raise ValueError(f"side, frames: expected side >= 3 and frames >= 2, found {side}, {frames}")
    g = torch.Generator().manual_seed(seed)
    uv = _grid(int(side), dtype)
    pts = []
    for f in range(int(frames)):
        a, b = uv[:, 0], uv[:, 1]
        if kind == "rigid":
            X = torch.stack([a, b, 0.15 * torch.sin(3 * a) * torch.cos(2 * b)], -1)
        else:
            R = 0.35 + 0.6 * torch.rand((), generator=g, dtype=dtype)  # bending radius (m)
            X = torch.stack([R * torch.sin(a / R), b, R * (1 - torch.cos(a / R))], -1)
        X = X - X.mean(0)
        if f > 0:
            w = 0.45 * (torch.rand(3, generator=g, dtype=dtype) - 0.5)
            Rm = torch.linalg.matrix_exp(torch.tensor([[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]], dtype=dtype))
            X = X @ Rm.T + 0.3 * (torch.rand(3, generator=g, dtype=dtype) - 0.5)
        pts.append(X + torch.tensor([0.0, 0.0, 2.0], dtype=dtype))
    P = torch.stack(pts)
    depth = P[..., 2]
    rays = P / depth[..., None]
    d = torch.cdist(uv, uv)
    step = 1.0 / (int(side) - 1)
    i, j = torch.nonzero((d > 0) & (d <= 2.01 * step), as_tuple=True)
    return SurfaceViews(P, rays, depth, uv, i, j, kind)


def all_pairs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every unordered pair (i < j) of n points: (n(n-1)/2,) each."""
    i, j = torch.triu_indices(n, n, offset=1)
    return i, j


def reconstruct_depths(
    rays: torch.Tensor,
    i: torch.Tensor,
    j: torch.Tensor,
    *,
    steps: int = 300,
    lr: float = 0.05,
    backend: str = "warp",
    progress: bool = False,
    seed: int = 0,
) -> tuple[torch.Tensor, list[float]]:
    """Depths of F views minimising sum_f L_EDM(view 0, view f) over the pairs (i, j) (rigid weights).

    Args:
        rays: (F, n, 3) rays u = K^{-1} p of the tracked points (z = 1).
        i, j: (S,) point pairs the prior constrains (all pairs: rigid; neighbours: isometric).
        steps, lr: Adam on log-depth (initialised at a fronto-parallel plane plus small noise).
        backend: "warp" or "torch".

    Returns:
        (depth (F, n) with mean 1 per view, loss history).
    """
    check_tensor("rays", rays, ("F", "n", 3))
    if rays.shape[0] < 2:
        raise ValueError(f"rays: expected at least 2 views, found {rays.shape[0]}")
    fn = edm_pair_loss if backend == "warp" else edm_pair_loss_reference
    g = torch.Generator().manual_seed(seed)
    logd = (0.01 * torch.randn(rays.shape[:2], generator=g, dtype=rays.dtype)).requires_grad_()
    opt = torch.optim.Adam([logd], lr=lr)
    hist = []
    for _ in tqdm(range(int(steps)), desc="EDM reconstruction", disable=not progress):
        opt.zero_grad()
        X = logd.exp()[..., None] * rays
        loss = sum(fn(X[0], X[f], i, j) for f in range(1, rays.shape[0]))
        loss.backward()
        opt.step()
        with torch.no_grad():
            logd -= logd.mean(dim=1, keepdim=True)  # gauge: the loss is scale-invariant per view
        hist.append(float(loss.detach()))
        if not math.isfinite(hist[-1]):
            raise FloatingPointError("EDM reconstruction diverged (non-finite loss)")
    return logd.detach().exp(), hist


def relative_depth_error(depth: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-view mean |s d - d*| / d* after the best median scale s: (F, n) each -> (F,)."""
    s = gt.median(dim=1, keepdim=True).values / depth.median(dim=1, keepdim=True).values
    return ((s * depth - gt).abs() / gt).mean(dim=1)
