"""EDMs from depth and the table of EDM priors (Takmaz et al., eq. 1 and Table 1).

A pixel p_i with homogeneous normalised coordinates u_i = K^{-1} (x_i, y_i, 1)^T and depth lambda_i is the
3D point X_i = lambda_i u_i, i.e. X = U Lambda with U = [u_1 ... u_n] and Lambda = diag(lambda). Its EDM
(eq. 1) is

    E(Lambda) = diag(Lambda U^T U Lambda) 1^T + 1 diag(Lambda U^T U Lambda)^T - 2 Lambda U^T U Lambda,

and a prior on how a scene may move between views k and l is a weighting W of the EDM change:
W (.) (E(Lambda^k) - E(Lambda^l)) = 0. Table 1 of the paper as code:

=================  ==========================================================
prior              W_ij
=================  ==========================================================
rigid              1 for every pair
isometric (local)  1 when ||p_i - p_j|| <= radius (a neighbourhood), else 0
piecewise rigid    1 when i and j carry the same part label, else 0
ARAP               s_i s_j with learned rigidity scores s in [0, 1]
scene motion       1 - tanh ||m_i - m_j|| from motion embeddings m
=================  ==========================================================

Dense n x n matrices are for teaching on small n; training uses the sampled-pair vector form
(:func:`sampled_edm`, :mod:`nrsfm_kit.edm.loss`) whose memory is O(S).

Low-rank proposition (verified numerically in tests and notebook 11). Write G = X^T X (Gram) so that
E = diag(G) 1^T + 1 diag(G)^T - 2 G. For two views,

    D^kl = E^k - E^l = delta 1^T + 1 delta^T - 2 (G^k - G^l),  delta = diag(G^k - G^l),

hence rank(D^kl) <= rank(G^k - G^l) + 2 = b + 2, where b = rank(G^k - G^l) is the rank of the deformation
(b = 0 for a rigid motion up to the choice of origin; b = number of non-unit singular values of A for a
linear deformation X^k = A X^l; b <= 6 always since both Gram matrices have rank <= 3), so
rank(D^kl) <= min(8, b + 2). For F views of a low-rank (affine) shape model X^f = B_0 + sum_{m=1}^b c^f_m B_m,
every E^f is a quadratic form in (1, c^f_1, ..., c^f_b), so the n^2 x F matrix D = [vec E^1 ... vec E^F]
has rank(D) <= (b + 1)(b + 2) / 2.
"""

from __future__ import annotations

import torch

from nrsfm_kit.geometry import as_intrinsics, edm, pixel_grid
from nrsfm_kit.utils.checks import check_tensor

PRIORS = ("rigid", "isometric", "piecewise_rigid", "arap", "scene_motion")


def normalized_rays(pixels: torch.Tensor, intrinsics) -> torch.Tensor:
    """Homogeneous normalised pixel coordinates u = K^{-1} (x, y, 1): (..., 2) pixels -> (..., 3), z = 1."""
    check_tensor("pixels", pixels, ("...", 2))
    fx, fy, cx, cy = as_intrinsics(intrinsics, dtype=pixels.dtype, device=pixels.device).unbind(-1)
    x, y = pixels.unbind(-1)
    return torch.stack([(x - cx) / fx, (y - cy) / fy, torch.ones_like(x)], dim=-1)


def image_rays(height: int, width: int, intrinsics, dtype=torch.float32, device=None) -> torch.Tensor:
    """Rays u of every pixel of an H x W image, row-major: (H * W, 3)."""
    return normalized_rays(pixel_grid(height, width, dtype=dtype, device=device).reshape(-1, 2), intrinsics)


def points_from_depth(depth: torch.Tensor, rays: torch.Tensor) -> torch.Tensor:
    """X = U Lambda as rows: depth (..., n) (metres) and rays (n, 3) -> (..., n, 3) metres."""
    dims: dict = {}
    check_tensor("depth", depth, ("...", "n"), dims=dims)
    check_tensor("rays", rays, ("n", 3), dims=dims)
    return depth[..., None] * rays


def edm_from_depth(depth: torch.Tensor, rays: torch.Tensor) -> torch.Tensor:
    """Eq. 1: E(Lambda) from depths (..., n) and rays (n, 3) -> (..., n, n) squared metres.

    Written literally: Lambda U^T U Lambda = (lambda lambda^T) (.) (U^T U), then the EDM of that Gram matrix.
    """
    dims: dict = {}
    check_tensor("depth", depth, ("...", "n"), dims=dims)
    check_tensor("rays", rays, ("n", 3), dims=dims)
    G = (depth[..., :, None] * depth[..., None, :]) * (rays @ rays.T)
    g = torch.diagonal(G, dim1=-2, dim2=-1)
    return g[..., :, None] + g[..., None, :] - 2 * G


def sampled_edm(depth: torch.Tensor, rays: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """Vector form of eq. 1 on S sampled pairs: e_s = ||lambda_i u_i - lambda_j u_j||^2 -> (..., S).

    depth (..., n), rays (n, 3), i, j (S,) int. Memory O(S).
    """
    X = points_from_depth(depth, rays)
    for name, idx in (("i", i), ("j", j)):
        if not isinstance(idx, torch.Tensor) or idx.dtype not in (torch.int32, torch.int64) or idx.dim() != 1:
            raise ValueError(f"{name}: expected a 1-D integer tensor, found {idx!r:.60}")
        n = rays.shape[0]
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
            raise ValueError(f"{name}: expected indices in [0, {n}), found [{int(idx.min())}, {int(idx.max())}]")
    d = X[..., i.long(), :] - X[..., j.long(), :]
    return (d * d).sum(-1)


# ----------------------------------------------------------------------------------- the priors (Table 1)
def rigid_weights(n: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """Rigid prior: every distance is preserved, W = 1 1^T: (n, n)."""
    if int(n) < 1:
        raise ValueError(f"n: expected >= 1 points, found {n}")
    return torch.ones(int(n), int(n), dtype=dtype, device=device)


def isometric_weights(pixels: torch.Tensor, radius: float) -> torch.Tensor:
    """Isometric (local) prior: W_ij = 1 when ||p_i - p_j|| <= radius (pixels), else 0: (n, 2) -> (n, n).

    Geodesic distances on a surface are preserved by isometric deformations; for neighbouring points
    the geodesic is close to the Euclidean distance, so only local pairs are constrained.
    """
    check_tensor("pixels", pixels, ("n", 2))
    if not float(radius) > 0:
        raise ValueError(f"radius: expected > 0 pixels, found {radius!r}")
    return (torch.cdist(pixels, pixels) <= float(radius)).to(pixels.dtype)


def piecewise_rigid_weights(labels: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """Piecewise-rigid prior: W_ij = [label_i == label_j]: labels (n,) int -> (n, n)."""
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.is_floating_point():
        raise ValueError(f"labels: expected a 1-D integer tensor, found {labels!r:.60}")
    return (labels[:, None] == labels[None, :]).to(dtype)


def arap_weights(scores: torch.Tensor) -> torch.Tensor:
    """ARAP prior with learned rigidity scores s in [0, 1]: W_ij = s_i s_j: (n,) -> (n, n)."""
    check_tensor("scores", scores, ("n",))
    if float(scores.min()) < 0 or float(scores.max()) > 1:
        raise ValueError(
            f"scores: expected values in [0, 1], found [{float(scores.min()):.3g}, {float(scores.max()):.3g}]"
        )
    return scores[:, None] * scores[None, :]


def scene_motion_weights(embeddings: torch.Tensor, tau: float = 0.0) -> torch.Tensor:
    """Scene-motion prior from motion embeddings: W_ij = clamp((1 - tanh||m_i - m_j|| + tau)/(1 + tau), 0, 1).

    embeddings (n, C) -> (n, n). Points moving alike (close embeddings) keep their distances.
    """
    check_tensor("embeddings", embeddings, ("n", None))
    if not float(tau) > -1:
        raise ValueError(f"tau: expected > -1, found {tau!r}")
    w = 1 - torch.tanh(torch.cdist(embeddings, embeddings))
    return ((w + tau) / (1 + tau)).clamp(0, 1)


def prior_residual(W: torch.Tensor, E_k: torch.Tensor, E_l: torch.Tensor) -> torch.Tensor:
    """W (.) (E(Lambda^k) - E(Lambda^l)): the quantity every prior of Table 1 drives to zero. (n, n) each."""
    dims: dict = {}
    check_tensor("W", W, ("n", "n"), dims=dims)
    check_tensor("E_k", E_k, ("...", "n", "n"), dims=dims)
    check_tensor("E_l", E_l, ("...", "n", "n"), dims=dims)
    return W * (E_k - E_l)


# --------------------------------------------------------------------------------- the rank proposition
def numerical_rank(M: torch.Tensor, rtol: float = 1e-9, ref: float | None = None) -> int:
    """Number of singular values above ``rtol * ref`` (``ref`` defaults to sigma_max; use float64).

    Pass the scale of the matrices M was computed from as ``ref`` when M may be zero up to round-off.
    """
    check_tensor("M", M, (None, None))
    s = torch.linalg.svdvals(M)
    scale = float(s[0]) if ref is None else float(ref)
    if scale == 0:
        return 0
    return int((s > rtol * scale).sum())


def edm_difference(X_k: torch.Tensor, X_l: torch.Tensor) -> torch.Tensor:
    """D^kl = E(X^k) - E(X^l) for two views of the same n points: (n, 3) each -> (n, n).

    For its rank use ``numerical_rank(D, ref=edm(X_l).norm())`` (D vanishes for rigid motions).
    """
    dims: dict = {}
    check_tensor("X_k", X_k, ("n", 3), dims=dims)
    check_tensor("X_l", X_l, ("n", 3), dims=dims)
    return edm(X_k) - edm(X_l)


def gram_change_rank(X_k: torch.Tensor, X_l: torch.Tensor, rtol: float = 1e-9) -> int:
    """b = rank(G^k - G^l), the rank of the deformation between two views (points as rows)."""
    G_l = X_l @ X_l.T
    return numerical_rank(X_k @ X_k.T - G_l, rtol, ref=float(torch.linalg.matrix_norm(G_l, ord=2)))


def stacked_edms(shapes: torch.Tensor) -> torch.Tensor:
    """D = [vec E^1 ... vec E^F]: shapes (F, n, 3) -> (n * n, F)."""
    check_tensor("shapes", shapes, ("F", "n", 3))
    return edm(shapes).reshape(shapes.shape[0], -1).T


def rank_bounds(b: int) -> tuple[int, int]:
    """(bound on rank(D^kl), bound on rank(D)) = (min(8, b + 2), (b + 1)(b + 2) / 2) for deformation rank b."""
    if int(b) < 0:
        raise ValueError(f"b: expected >= 0, found {b}")
    b = int(b)
    return min(8, b + 2), (b + 1) * (b + 2) // 2


def linear_deformation(n: int, b: int, generator: torch.Generator | None = None, dtype=torch.float64):
    """Random points X^l (n, 3) and X^k = X^l A^T with A having exactly b non-unit singular values (b <= 3).

    Returns (X_k, X_l): the Gram change X^l (A^T A - I) X^l^T has rank b.
    """
    if not 0 <= int(b) <= 3:
        raise ValueError(f"b: expected 0 <= b <= 3 for a linear deformation, found {b}")
    X = torch.randn(n, 3, generator=generator, dtype=dtype)
    U = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=dtype))[0]
    V = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=dtype))[0]
    s = torch.ones(3, dtype=dtype)
    s[: int(b)] = 1.5 + torch.rand(int(b), generator=generator, dtype=dtype)
    A = U @ torch.diag(s) @ V.T
    return X @ A.T, X


def low_rank_shapes(n: int, b: int, frames: int, generator: torch.Generator | None = None, dtype=torch.float64):
    """F shapes of the affine low-rank model X^f = B_0 + sum_m c^f_m B_m with b random bases: (F, n, 3)."""
    if int(b) < 0 or int(frames) < 1 or int(n) < 1:
        raise ValueError(f"n, b, frames: expected n >= 1, b >= 0, frames >= 1, found {n}, {b}, {frames}")
    B = torch.randn(int(b) + 1, n, 3, generator=generator, dtype=dtype)
    c = torch.randn(int(frames), int(b), generator=generator, dtype=dtype)
    return B[0] + torch.einsum("fm,mnd->fnd", c, B[1:])
