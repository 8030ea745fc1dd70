r"""Minimal singular-value ratio (PR-RRN, Zeng et al. ICCV 2021, eq. 9): a rigidity measure of two views.

Two orthographic views W_i, W_j (P x 2, centred) of one RIGID shape S stack into the 4 x P matrix
A = [W_i^T; W_j^T] = [M_i; M_j] S^T of rank <= 3. For a deforming shape the rank is 4. Hence

    msr(W_i, W_j) = sigma_4^2 / sum_{l=1}^4 sigma_l^2            (eq. 9)

is 0 for a rigid pair and grows with the non-rigid deformation between the frames (scale-free).

Closed form: the sigma_l^2 are the eigenvalues of the 4x4 Gram matrix G = A A^T, so
msr = lambda_min(G) / trace(G). G is assembled from masked sums over points, which for a batch
against a memory bank are all (B, P) x (P, N) matrix products (the visibility mask of a pair is the
product of the two frames' masks), followed by a batched 4x4 symmetric eigen-solve. No SVD of the
4 x P matrices is ever formed; :func:`msr_svd` is that reference formulation, kept for tests and the
benchmark.

Missing points: a point enters a pair's A only when visible in both frames; each row of A is centred
on the mean over those common points.
"""

from __future__ import annotations

import torch

from nrsfm_kit.utils.checks import check_tensor


def _vis(name: str, vis: torch.Tensor | None, W: torch.Tensor) -> torch.Tensor:
    if vis is None:
        return torch.ones(W.shape[:-1], dtype=W.dtype, device=W.device)
    check_tensor(name, vis, tuple(W.shape[:-1]), floating=False, finite=False)
    return vis.to(W.dtype)


def _lambda_min_ratio(G: torch.Tensor) -> torch.Tensor:
    """lambda_min(G) / trace(G) for symmetric PSD (..., 4, 4); 0 where the trace vanishes."""
    G = 0.5 * (G + G.transpose(-1, -2))
    tr = G.diagonal(dim1=-2, dim2=-1).sum(-1)
    lam = torch.linalg.eigvalsh(G)[..., 0].clamp_min(0.0)
    safe = tr > 0
    return torch.where(safe, lam / torch.where(safe, tr, torch.ones_like(tr)), torch.zeros_like(tr))


def msr_gram_pairwise(
    Wa: torch.Tensor, Wb: torch.Tensor, vis_a: torch.Tensor | None = None, vis_b: torch.Tensor | None = None
) -> torch.Tensor:
    """4x4 Gram matrices A A^T of all pairs (a, b): (B, P, 2) x (N, P, 2) -> (B, N, 4, 4).

    The pair mask m_abp = vis_a[a,p] vis_b[b,p] factorises, so the counts, the masked first and second
    moments of each frame and the cross moments are entries of matrix products over the points. The bank
    side (large N) is touched by three elementwise passes in its native (P, 2) layout; the small batch side
    is expanded (u (x) e_k) so that each product contracts over (point, axis) directly. Each row of A is
    then centred on the common visible points:
    G = sum m x x^T - (sum m x)(sum m x)^T / sum m.
    """
    dims: dict = {}
    check_tensor("Wa", Wa, ("B", "P", 2), dims=dims)
    check_tensor("Wb", Wb, ("N", "P", 2), dims=dims)
    dtype = torch.promote_types(Wa.dtype, Wb.dtype)
    Wa, Wb = Wa.to(dtype), Wb.to(dtype)
    va, vb = _vis("vis_a", vis_a, Wa).to(dtype), _vis("vis_b", vis_b, Wb).to(dtype)
    B, N, P = Wa.shape[0], Wb.shape[0], Wa.shape[1]
    eye2 = torch.eye(2, dtype=dtype, device=Wa.device)

    # Bank side (large N): a few elementwise passes in the native interleaved (P, 2) layout, no transposed copies.
    mWb = Wb * vb[..., None]  # (N, P, 2): m x, m y
    sqb = Wb * mWb  # (N, P, 2): m x^2, m y^2
    xyb = mWb[..., 0] * Wb[..., 1]  # (N, P): m x y
    # Batch side (small B): the left factors are expanded so that one product contracts over (p, axis) pairs:
    # rows u (x) e_k with k the bank axis, so (u (x) e_k) . (bank row over (P, 2)) = sum_p u_p bank_pk.
    mWa = Wa * va[..., None]
    left = torch.stack([va, mWa[..., 0], mWa[..., 1]], 0)  # (3, B, P): m, m x, m y of frame a
    left2 = (left[..., None, :, None] * eye2[:, None, :]).reshape(3 * B * 2, 2 * P)  # rows (r, b, k)
    Z = (left2 @ mWb.reshape(N, 2 * P).T).reshape(3, B, 2, N)  # sum m_a u_a m_b w_b,k
    sb = Z[0].permute(0, 2, 1)  # (B, N, 2): sum m w_b
    ab = Z[1:].permute(1, 3, 0, 2)  # (B, N, 2, 2): sum m w_a,i w_b,k
    Q = (left2[: 2 * B] @ sqb.reshape(N, 2 * P).T).reshape(B, 2, N).permute(0, 2, 1)  # sum m x_b^2, m y_b^2
    # the products with m_b alone: n, sa and the batch's second moments
    lefta = torch.cat([left.reshape(3 * B, P), mWa[..., 0] * Wa[..., 0], mWa[..., 0] * Wa[..., 1],
                       mWa[..., 1] * Wa[..., 1]], 0)  # (6B, P): m, m x, m y, m x^2, m x y, m y^2
    Y = (lefta @ vb.T).reshape(6, B, N)
    n = Y[0]
    sa = Y[1:3].permute(1, 2, 0)  # (B, N, 2)
    aa = torch.stack([Y[3], Y[4], Y[4], Y[5]], -1).reshape(B, N, 2, 2)
    bxy = va @ xyb.T  # (B, N)
    bb = torch.stack([Q[..., 0], bxy, bxy, Q[..., 1]], -1).reshape(B, N, 2, 2)
    inv = torch.where(n > 0, 1.0 / n.clamp_min(1.0), torch.zeros_like(n))[..., None, None]
    Gaa = aa - sa[..., :, None] * sa[..., None, :] * inv
    Gbb = bb - sb[..., :, None] * sb[..., None, :] * inv
    Gab = ab - sa[..., :, None] * sb[..., None, :] * inv
    top = torch.cat([Gaa, Gab], dim=-1)
    bot = torch.cat([Gab.transpose(-1, -2), Gbb], dim=-1)
    return torch.cat([top, bot], dim=-2)


def msr_pairwise(
    Wa: torch.Tensor, Wb: torch.Tensor, vis_a: torch.Tensor | None = None, vis_b: torch.Tensor | None = None
) -> torch.Tensor:
    """msr (eq. 9) between every frame of a batch and every entry of a memory bank.

    Args:
        Wa: (B, P, 2) 2D shapes of the batch; Wb: (N, P, 2) of the bank (same point order).
        vis_a, vis_b: optional (B, P), (N, P) visibility masks (bool or 0/1).

    Returns:
        (B, N) msr in [0, 0.25] (0 = the two views are consistent with one rigid shape); pairs with
        fewer than 4 common points get 0 only if their Gram matrix vanishes, so mask them by counts
        (see :func:`common_counts`) when that matters.
    """
    return _lambda_min_ratio(msr_gram_pairwise(Wa, Wb, vis_a, vis_b))


def msr(
    Wi: torch.Tensor, Wj: torch.Tensor, vis_i: torch.Tensor | None = None, vis_j: torch.Tensor | None = None
) -> torch.Tensor:
    """msr of matched pairs: (..., P, 2) and (..., P, 2) (same batch shape) -> (...).

    Closed form lambda_min / trace of the 4x4 A A^T; differentiable (gradcheck-tested) away from
    repeated smallest eigenvalues.
    """
    dims: dict = {}
    check_tensor("Wi", Wi, ("...", "P", 2), dims=dims)
    check_tensor("Wj", Wj, ("...", "P", 2), dims=dims)
    if Wi.shape != Wj.shape:
        raise ValueError(f"Wj: expected the shape of Wi {tuple(Wi.shape)}, found {tuple(Wj.shape)}")
    dtype = torch.promote_types(Wi.dtype, Wj.dtype)
    vi, vj = _vis("vis_i", vis_i, Wi).to(dtype), _vis("vis_j", vis_j, Wj).to(dtype)
    m = (vi * vj)[..., None]
    cnt = m.sum(-2, keepdim=True).clamp_min(1.0)
    A = torch.cat([Wi.to(dtype), Wj.to(dtype)], dim=-1)  # (..., P, 4): the columns are A's rows
    A = (A - (m * A).sum(-2, keepdim=True) / cnt) * m
    return _lambda_min_ratio(A.transpose(-1, -2) @ A)


def common_counts(vis_a: torch.Tensor, vis_b: torch.Tensor) -> torch.Tensor:
    """Number of points visible in both frames for all pairs: (B, P), (N, P) -> (B, N)."""
    return vis_a.float() @ vis_b.float().T


def msr_pairwise_masked(Wa: torch.Tensor, Wb: torch.Tensor, vis_a: torch.Tensor, vis_b: torch.Tensor,
                        min_common: int = 4) -> torch.Tensor:
    """:func:`msr_pairwise` with NaN for the pairs sharing fewer than ``min_common`` visible points (B, N)."""
    m = msr_pairwise(Wa, Wb, vis_a, vis_b)
    return m.masked_fill(common_counts(vis_a, vis_b) < min_common, float("nan"))


def msr_svd(
    Wa: torch.Tensor, Wb: torch.Tensor, vis_a: torch.Tensor | None = None, vis_b: torch.Tensor | None = None
) -> torch.Tensor:
    """Reference formulation: builds each pair's 4 x P matrix and takes its SVD. (B, P, 2) x (N, P, 2) -> (B, N).

    Memory O(B N P): use for checks and the benchmark only.
    """
    dtype = torch.promote_types(Wa.dtype, Wb.dtype)
    va, vb = _vis("vis_a", vis_a, Wa).to(dtype), _vis("vis_b", vis_b, Wb).to(dtype)
    B, N = Wa.shape[0], Wb.shape[0]
    m = (va[:, None, :] * vb[None, :, :])[..., None]  # (B, N, P, 1)
    A = torch.cat([Wa.to(dtype)[:, None].expand(B, N, -1, -1), Wb.to(dtype)[None].expand(B, N, -1, -1)], -1)
    cnt = m.sum(-2, keepdim=True).clamp_min(1.0)
    A = ((A - (m * A).sum(-2, keepdim=True) / cnt) * m).transpose(-1, -2)  # (B, N, 4, P)
    s = torch.linalg.svdvals(A)
    s2 = s * s
    tot = s2.sum(-1)
    return torch.where(tot > 0, s2[..., -1] / tot.clamp_min(1e-300), torch.zeros_like(tot))
