"""Orthogonal and similarity Procrustes alignment of point sets (Umeyama), batched.

Finds R (orthogonal), t and s minimising sum_i w_i || s R x_i + t - y_i ||^2 for rows x_i, y_i.
With ``allow_reflection=True`` R may have det -1: the orthographic depth-flip ambiguity of NRSfM
(a shape and its mirror image z -> -z project identically) is then absorbed by the alignment.
"""

from __future__ import annotations

import torch

from nrsfm_kit.utils.checks import check_tensor


def procrustes(
    X: torch.Tensor,
    Y: torch.Tensor,
    *,
    scale: bool = False,
    allow_reflection: bool = False,
    weights: torch.Tensor | None = None,
):
    """Align X onto Y.

    Args:
        X, Y: (..., N, D) point sets (rows), N >= 1.
        scale: also estimate a similarity scale s (else s = 1).
        allow_reflection: allow det(R) = -1.
        weights: optional (..., N) non-negative point weights (e.g. a visibility mask).

    Returns:
        R (..., D, D), t (..., D), s (...) with s R x + t ~= y.
    """
    dims: dict = {}
    check_tensor("X", X, ("...", "N", "D"), dims=dims)
    check_tensor("Y", Y, ("...", "N", "D"), dims=dims)
    if X.shape[-2] < 1:
        raise ValueError(f"X: expected at least 1 point, found shape {tuple(X.shape)}")
    if weights is None:
        w = torch.ones(X.shape[:-1], dtype=X.dtype, device=X.device)
    else:
        w = check_tensor("weights", weights.to(X.dtype), ("...", dims["N"]))
        if (w < 0).any():
            raise ValueError("weights: expected non-negative values, found negative ones")
    wsum = w.sum(-1, keepdim=True)
    if (wsum <= 0).any():
        raise ValueError("weights: expected a positive total weight per point set, found 0")
    wn = (w / wsum)[..., None]
    mx = (wn * X).sum(-2)
    my = (wn * Y).sum(-2)
    Xc, Yc = X - mx[..., None, :], Y - my[..., None, :]
    H = (Yc * wn).transpose(-1, -2) @ Xc  # (..., D, D) = sum_i w_i y_i x_i^T
    U, S, Vh = torch.linalg.svd(H)
    D = X.shape[-1]
    d = torch.ones(*H.shape[:-2], D, dtype=X.dtype, device=X.device)
    if not allow_reflection:
        sign = torch.sign(torch.linalg.det(U @ Vh))
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        d = torch.cat([d[..., :-1], sign[..., None]], dim=-1)
    R = (U * d[..., None, :]) @ Vh
    if scale:
        var = (wn * Xc * Xc).sum((-1, -2))
        if (var.detach() <= 1e-20).any():
            raise ValueError("X: expected a non-degenerate point set for similarity alignment, found all points equal")
        s = (S * d).sum(-1) / var
    else:
        s = torch.ones(H.shape[:-2], dtype=X.dtype, device=X.device)
    t = my - s[..., None] * (R @ mx[..., None]).squeeze(-1)
    return R, t, s


def procrustes_align(X: torch.Tensor, Y: torch.Tensor, **kwargs) -> torch.Tensor:
    """X aligned onto Y: s R x + t for every row of X, (..., N, D). Keyword arguments as :func:`procrustes`."""
    R, t, s = procrustes(X, Y, **kwargs)
    return s[..., None, None] * (X @ R.transpose(-1, -2)) + t[..., None, :]


def ransac_procrustes(
    X: torch.Tensor,
    Y: torch.Tensor,
    *,
    iterations: int = 256,
    threshold: float = 0.01,
    generator: torch.Generator | None = None,
):
    """Robust rigid alignment of X onto Y: RANSAC over minimal 3-point Procrustes fits, then Procrustes on the
    largest inlier set (``||R x + t - y|| <= threshold``), as DeepDeform sec. 6.4 estimates the rigid part of a
    pair's sparse matches.

    Args:
        X, Y: (N, 3) corresponding points (metres), N >= 3.
        iterations: RANSAC hypotheses. threshold: inlier distance (metres).
        generator: torch RNG for the minimal samples (deterministic results for a seeded generator).

    Returns:
        R (3, 3), t (3,), inliers (N,) bool.
    """
    check_tensor("X", X, ("N", 3))
    check_tensor("Y", Y, (X.shape[0], 3))
    N = X.shape[0]
    if N < 3:
        raise ValueError(f"X: expected at least 3 correspondences for a rigid fit, found {N}")
    if int(iterations) < 1:
        raise ValueError(f"iterations: expected >= 1, found {iterations}")
    if not threshold > 0:
        raise ValueError(f"threshold: expected > 0 metres, found {threshold}")
    idx = torch.stack([torch.randperm(N, generator=generator)[:3] for _ in range(int(iterations))])  # (I, 3)
    Xs, Ys = X[idx], Y[idx]  # (I, 3, 3)
    R, t, _ = procrustes(Xs, Ys)
    res = (torch.einsum("iab,nb->ina", R, X) + t[:, None] - Y).norm(dim=-1)  # (I, N)
    inl = res <= threshold
    best = int(inl.sum(1).argmax())
    mask = inl[best]
    if int(mask.sum()) < 3:
        mask = torch.ones(N, dtype=torch.bool, device=X.device)
    R, t, _ = procrustes(X[mask], Y[mask])
    # one refinement with the inliers of the refit
    mask2 = (X @ R.T + t - Y).norm(dim=-1) <= threshold
    if int(mask2.sum()) >= 3:
        R, t, _ = procrustes(X[mask2], Y[mask2])
        mask = mask2
    return R, t, mask
