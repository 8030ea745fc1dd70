"""Gram matrices and Euclidean distance matrices (EDMs) of point sets.

For rows x_i of X (N x D): G = X X^T and the squared-distance EDM
E = diag(G) 1^T - 2 G + 1 diag(G)^T, E_ij = ||x_i - x_j||^2. Conversely, with the centring matrix
J = I - 11^T / N, -1/2 J E J is the Gram matrix of the centred points (classical MDS).
"""

from __future__ import annotations

import torch

from nrsfm_kit.utils.checks import check_tensor


def gram(X: torch.Tensor) -> torch.Tensor:
    """G = X X^T: (..., N, D) -> (..., N, N)."""
    check_tensor("X", X, ("...", "N", "D"))
    return X @ X.transpose(-1, -2)


def edm_from_gram(G: torch.Tensor) -> torch.Tensor:
    """E = diag(G) 1^T - 2 G + 1 diag(G)^T, clamped at 0 against round-off: (..., N, N) -> (..., N, N)."""
    check_tensor("G", G, ("...", "N", "N"))
    g = torch.diagonal(G, dim1=-2, dim2=-1)
    return (g[..., :, None] - 2 * G + g[..., None, :]).clamp_min(0)


def edm(X: torch.Tensor) -> torch.Tensor:
    """Squared-distance EDM of the rows of X: (..., N, D) -> (..., N, N)."""
    return edm_from_gram(gram(X))


def gram_from_edm(E: torch.Tensor) -> torch.Tensor:
    """Gram matrix of the centred points, -1/2 J E J with J = I - 11^T/N: (..., N, N) -> (..., N, N)."""
    check_tensor("E", E, ("...", "N", "N"))
    n = E.shape[-1]
    J = torch.eye(n, dtype=E.dtype, device=E.device) - 1.0 / n
    return -0.5 * J @ E @ J


def pair_sq_distances(X: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """||x_i - x_j||^2 for sampled index pairs: X (..., N, D), i, j (S,) int -> (..., S). O(S) memory."""
    check_tensor("X", X, ("...", "N", "D"))
    n = X.shape[-2]
    for name, idx in (("i", i), ("j", j)):
        if not isinstance(idx, torch.Tensor) or idx.dtype not in (torch.int32, torch.int64) or idx.dim() != 1:
            raise ValueError(f"{name}: expected a 1-D integer tensor of point indices, found {idx!r:.60}")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
            raise ValueError(f"{name}: expected indices in [0, {n}), found range [{int(idx.min())}, {int(idx.max())}]")
    if i.shape != j.shape:
        raise ValueError(f"j: expected shape {tuple(i.shape)} matching i, found {tuple(j.shape)}")
    d = X[..., i.long(), :] - X[..., j.long(), :]
    return (d * d).sum(-1)
