r"""Classical NRSfM baselines: Tomasi-Kanade rigid factorisation and EM-PPCA (Torresani et al.).

Notation (rows are points): frame f observes W_f (P x 2) = S_f M_f^T + 1 t_f^T with an orthographic
camera M_f (2 x 3, orthonormal rows). Stacking frames gives the 2F x P measurement matrix
W = [W_1^T; ...; W_F^T] = M S^T for a rigid shape (rank 3 after centring).

Tomasi & Kanade (IJCV 1992): rank-3 SVD W ~= U3 D3 V3^T, affine M_hat = U3 D3^{1/2}, S_hat^T = D3^{1/2} V3^T,
then the metric upgrade: find Q (3x3) with M = M_hat Q orthographic, i.e. L = Q Q^T (symmetric, 6
unknowns) solving m_a L m_a^T = m_b L m_b^T = 1, m_a L m_b^T = 0 for the two rows of every frame
(linear least squares), Q = L^{1/2}. Missing entries are filled by alternating rank-3 projections.

EM-PPCA (Torresani, Hertzmann & Bregler, PAMI 2008): shapes are Gaussian around a mean,
S_f = S_bar + sum_k z_fk V_k with z_f ~ N(0, I), observed with isotropic noise sigma^2:
w_f = G_f (s_bar + V z_f) + t_f + n,  G_f = I_P (x) M_f. EM alternates the posterior of z_f (E-step)
with closed-form updates of (S_bar, V), t_f, sigma^2, and a monotone (majorise-minimise) polar update of
each camera M_f (M-step). Missing points drop out of every sum.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from tqdm.auto import tqdm

from nrsfm_kit.geometry import orthonormalize
from nrsfm_kit.nrsfm.common import (
    NRSfMResult,
    complete_rotation,
    measurement_matrix,
    normalize_observations,
    to_camera_frame,
    validate_observations,
    validate_sequence,
)
from nrsfm_kit.nrsfm.registry import NRSfMMethod


def _lowrank_fill(W2: torch.Tensor, mask: torch.Tensor, rank: int, iters: int) -> torch.Tensor:
    """Fill the missing entries of a (2F, P) matrix by alternating projections onto {rank-``rank`` + row offsets}.

    The row offsets are the per-frame translations (unknown when points are missing).
    """
    X = W2.clone()
    if bool(mask.all()):
        return X
    rowmean = (W2 * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp_min(1)
    X = torch.where(mask, W2, rowmean.expand_as(W2))
    for _ in range(iters):
        mean = X.mean(1, keepdim=True)
        U, s, Vh = torch.linalg.svd(X - mean, full_matrices=False)
        L = (U[:, :rank] * s[:rank]) @ Vh[:rank] + mean
        X = torch.where(mask, W2, L)
    return X


def metric_upgrade(M_hat: torch.Tensor) -> torch.Tensor:
    """Metric upgrade of an affine motion matrix (TK 1992): (F, 2, 3) -> Q (3, 3) with M_hat Q orthographic.

    Solves the 3F linear equations in the 6 entries of the symmetric L = Q Q^T by least squares and
    takes Q = L^{1/2} (eigenvalues clamped to be positive).
    """
    a, b = M_hat[:, 0], M_hat[:, 1]  # (F, 3)

    def row(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # coefficients of x^T L y in (l11, l12, l13, l22, l23, l33)
        return torch.stack(
            [
                x[:, 0] * y[:, 0],
                x[:, 0] * y[:, 1] + x[:, 1] * y[:, 0],
                x[:, 0] * y[:, 2] + x[:, 2] * y[:, 0],
                x[:, 1] * y[:, 1],
                x[:, 1] * y[:, 2] + x[:, 2] * y[:, 1],
                x[:, 2] * y[:, 2],
            ],
            dim=-1,
        )

    A = torch.cat([row(a, a), row(b, b), row(a, b)], dim=0)
    F = M_hat.shape[0]
    rhs = torch.cat([torch.ones(2 * F, dtype=M_hat.dtype), torch.zeros(F, dtype=M_hat.dtype)])[:, None]
    sol = torch.linalg.lstsq(A, rhs).solution[:, 0]
    l11, l12, l13, l22, l23, l33 = sol
    L = torch.stack([torch.stack([l11, l12, l13]), torch.stack([l12, l22, l23]), torch.stack([l13, l23, l33])])
    evals, evecs = torch.linalg.eigh(L)
    evals = evals.clamp_min(1e-6 * evals.abs().max().clamp_min(1e-12))
    return evecs @ torch.diag(evals.sqrt()) @ evecs.T


@dataclass
class TomasiKanadeConfig:
    fill_iters: int = 200  # alternating low-rank projections to impute missing points
    fill_rank: int = 3  # rank used for the imputation (3 = rigid; EM-PPCA's init uses 3 (K + 1))


def tomasi_kanade(
    W: torch.Tensor, visibility: torch.Tensor | None = None, config: TomasiKanadeConfig | None = None
) -> NRSfMResult:
    """Rigid factorisation with metric upgrade (Tomasi & Kanade 1992).

    Args:
        W: (F, P, 2) observations (any unit), visibility: (F, P) bool or None.

    Returns:
        :class:`NRSfMResult`: one rigid shape for all frames (``shapes`` repeats it), per-frame
        orthographic cameras, ``S`` the shape in each camera frame (units of W).
    """
    cfg = config or TomasiKanadeConfig()
    W, vis = validate_observations(W, visibility)
    dtype = W.dtype
    Wn, norm = normalize_observations(W.double(), vis)
    F, P, _ = Wn.shape
    W2 = measurement_matrix(Wn, center=False)  # (2F, P), already centred
    mask = vis[:, None, :].expand(F, 2, P).reshape(2 * F, P)
    W2 = _lowrank_fill(W2, mask, max(3, min(int(cfg.fill_rank), min(2 * F, P) - 1)), cfg.fill_iters)
    W2 = W2 - W2.mean(1, keepdim=True)
    U, s, Vh = torch.linalg.svd(W2, full_matrices=False)
    M_hat = (U[:, :3] * s[:3].sqrt()).reshape(F, 2, 3)
    S_hat = (Vh[:3].T * s[:3].sqrt())  # (P, 3)
    Q = metric_upgrade(M_hat)
    cams = orthonormalize(M_hat @ Q)
    shape = S_hat @ torch.linalg.inv(Q).T  # W ~= S_hat M_hat^T = (S_hat Q^-T)(M_hat Q)^T
    shapes = shape[None].expand(F, P, 3) * norm.scale
    cams_out = cams.to(dtype)
    return NRSfMResult(
        S=to_camera_frame(shapes, cams).to(dtype), cameras=cams_out, shapes=shapes.to(dtype), method="tk"
    )


def _signed_permutations() -> torch.Tensor:
    """The 48 signed 3x3 permutation matrices (float64)."""
    import itertools

    mats = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            Q = torch.zeros(3, 3, dtype=torch.float64)
            for r, (c, sg) in enumerate(zip(perm, signs)):
                Q[r, c] = sg
            mats.append(Q)
    return torch.stack(mats)


_CUBE = _signed_permutations()


@dataclass
class EMPPCAConfig:
    num_bases: int = 3  # K deformation modes; Torresani et al. evaluate K = 1..5 per sequence
    iters: int = 100  # EM iterations (Torresani's code runs to a 1e-4 relative tolerance, at most ~100s)
    camera_mm_steps: int = 3  # majorise-minimise polar updates of each camera per M-step
    tol: float = 1e-6  # stop when the relative change of the expected loss falls below it
    init_scale: float = 0.1  # initial deformation modes: residual PCA of the rigid fit, scaled
    camera_search: bool = True  # per-frame search over the 48 signed axis permutations before the MM steps
    progress: bool = False


def em_ppca(
    W: torch.Tensor, visibility: torch.Tensor | None = None, config: EMPPCAConfig | None = None
) -> NRSfMResult:
    """EM-PPCA low-rank NRSfM (Torresani et al. 2008), orthographic cameras, missing points masked.

    Args:
        W: (F, P, 2) observations, visibility: (F, P) bool or None.

    Returns:
        :class:`NRSfMResult` with per-frame shapes E[S_f | W] (posterior mean), cameras, and in
        ``extra``: ``mean_shape`` (P, 3), ``bases`` (K, P, 3), ``z`` (F, K), ``sigma2`` and the
        per-iteration expected reprojection ``losses``.
    """
    cfg = config or EMPPCAConfig()
    if int(cfg.num_bases) < 1:
        raise ValueError(f"num_bases: expected >= 1, found {cfg.num_bases}")
    if int(cfg.iters) < 1:
        raise ValueError(f"iters: expected >= 1 EM iteration, found {cfg.iters}")
    W, vis = validate_observations(W, visibility)
    dtype = W.dtype
    Wn, norm = normalize_observations(W.double(), vis)
    F, P, _ = Wn.shape
    K = int(cfg.num_bases)
    v = vis.double()  # (F, P)
    nvis = v.sum()

    # --- initialisation: rigid TK, then deformation modes from the residual (per-point depth-free PCA)
    tk = tomasi_kanade(Wn, vis, TomasiKanadeConfig(fill_rank=3 * (K + 1)))
    M = tk.cameras.double()  # (F, 2, 3)
    Sbar = tk.shapes[0].double() / 1.0  # (P, 3) normalised units (Wn was already normalised)
    Sbar = Sbar - Sbar.mean(0)
    t = torch.zeros(F, 2, dtype=torch.float64)
    # residual back-projected through the cameras gives in-plane deformation directions
    R = (Wn - Sbar @ M.transpose(-1, -2)) * v[..., None]
    D = R @ M  # (F, P, 3) lifts the 2D residual into the frame's image plane
    U, s, Vh = torch.linalg.svd(D.reshape(F, 3 * P), full_matrices=False)
    gen = torch.Generator().manual_seed(0)
    V = Vh[:K].reshape(K, P, 3) * (s[:K, None, None] / F**0.5) * cfg.init_scale
    V = V + 1e-3 * torch.randn(K, P, 3, generator=gen, dtype=torch.float64)
    sigma2 = float((R**2).sum() / (2 * nvis)) + 1e-6

    losses: list[float] = []
    bar = tqdm(range(int(cfg.iters)), desc="em-ppca", disable=not cfg.progress)
    for _ in bar:
        # ---- E-step: posterior of z_f given the cameras: Sigma = (I + A^T A / s2)^-1, mu = Sigma A^T r / s2
        A = torch.einsum("fij,kpj->fpik", M, V) * v[..., None, None]  # (F, P, 2, K) = G_f V per point
        r = (Wn - t[:, None] - Sbar @ M.transpose(-1, -2)) * v[..., None]  # (F, P, 2)
        AtA = torch.einsum("fpik,fpil->fkl", A, A)
        Atr = torch.einsum("fpik,fpi->fk", A, r)
        eye = torch.eye(K, dtype=torch.float64)
        Sig = torch.linalg.inv(eye + AtA / sigma2)
        mu = (Sig @ Atr[..., None]).squeeze(-1) / sigma2  # (F, K)
        Ezz = Sig + mu[:, :, None] * mu[:, None, :]
        # augmented z~ = [1, z]: E[z~] and E[z~ z~^T]
        mut = torch.cat([torch.ones(F, 1, dtype=torch.float64), mu], 1)  # (F, K+1)
        E = torch.zeros(F, K + 1, K + 1, dtype=torch.float64)
        E[:, 0, 0] = 1
        E[:, 0, 1:] = mu
        E[:, 1:, 0] = mu
        E[:, 1:, 1:] = Ezz

        # ---- M-step (a): shape bases B_p = [s_bar_p, V_p] (3 x (K+1)) per point, linear in vec(B_p)
        MtM = M.transpose(-1, -2) @ M  # (F, 3, 3)
        kron = torch.einsum("fab,fcd->facbd", MtM, E).reshape(F, 3 * (K + 1), 3 * (K + 1))
        lhs = torch.einsum("fp,fxy->pxy", v, kron)
        wt = (Wn - t[:, None]) * v[..., None]
        rhs = torch.einsum("fij,fpi,fc->pjc", M, wt, mut).reshape(P, 3 * (K + 1))
        lhs = lhs + 1e-9 * torch.eye(3 * (K + 1), dtype=torch.float64)
        Bp = torch.linalg.solve(lhs, rhs).reshape(P, 3, K + 1)
        Sbar, V = Bp[..., 0], Bp[..., 1:].permute(2, 0, 1)  # (P, 3), (K, P, 3)

        # ---- M-step (b): cameras, majorise-minimise of tr(M C M^T) - 2 tr(M^T D) over orthonormal rows
        X = torch.einsum("pjc,fc->fpj", Bp, mut)  # E[S_f] (F, P, 3)
        C = torch.einsum("fp,pja,fab,pkb->fjk", v, Bp, E, Bp)  # sum_p E[x x^T] (F, 3, 3)
        Dm = torch.einsum("fpi,fpj->fij", (Wn - t[:, None]) * v[..., None], X)  # (F, 2, 3)
        lam = torch.linalg.eigvalsh(C)[:, -1]
        if cfg.camera_search:
            # escape local minima: try M Q for the 48 signed permutations Q (cube group with
            # reflections, all keep M orthonormal) and keep the best candidate of each frame
            cand = torch.einsum("fij,qjk->fqik", M, _CUBE)  # (F, 48, 2, 3)
            obj = torch.einsum("fqij,fjk,fqik->fq", cand, C, cand) - 2 * torch.einsum("fqij,fij->fq", cand, Dm)
            M = cand[torch.arange(F), obj.argmin(1)]
        for _ in range(int(cfg.camera_mm_steps)):
            G = Dm + M @ (lam[:, None, None] * torch.eye(3, dtype=torch.float64) - C)
            U2, _, Vh2 = torch.linalg.svd(G, full_matrices=False)
            M = U2 @ Vh2
        # ---- M-step (c): translations and noise variance
        proj = X @ M.transpose(-1, -2)
        t = ((Wn - proj) * v[..., None]).sum(1) / v.sum(1)[:, None]
        r = (Wn - t[:, None]) * v[..., None]
        quad = torch.einsum("fij,fjk,fik->f", M, C, M)  # sum_p tr(M E[x x^T] M^T)
        cross = torch.einsum("fpi,fpi->f", r, proj * v[..., None])
        loss = float(((r**2).sum((1, 2)) - 2 * cross + quad).sum())
        sigma2 = max(loss / (2 * float(nvis)), 1e-10)
        losses.append(loss)
        if len(losses) > 1 and abs(losses[-2] - losses[-1]) <= cfg.tol * max(abs(losses[-2]), 1e-30):
            break

    shapes = X * norm.scale
    Rfull = complete_rotation(M)
    return NRSfMResult(
        S=(shapes @ Rfull.transpose(-1, -2)).to(dtype),
        cameras=M.to(dtype),
        shapes=shapes.to(dtype),
        method="em-ppca",
        extra={
            "mean_shape": (Sbar * norm.scale).to(dtype),
            "bases": (V * norm.scale).to(dtype),
            "z": mu.to(dtype),
            "sigma2": sigma2 * norm.scale**2,
            "losses": losses,
        },
    )


class TomasiKanadeMethod(NRSfMMethod):
    """``"tk"``: :func:`tomasi_kanade` (``model_config``: :class:`TomasiKanadeConfig`; no training)."""

    name = "tk"

    def fit(self, seq, *, epochs=None, model_config=None, config=None, out_dir=None, resume=True) -> NRSfMResult:
        W, vis = validate_sequence(seq)
        return tomasi_kanade(W, vis, model_config or TomasiKanadeConfig())


class EMPPCAMethod(NRSfMMethod):
    """``"em-ppca"``: :func:`em_ppca` (``model_config``: :class:`EMPPCAConfig`; ``epochs``: EM iterations)."""

    name = "em-ppca"

    def fit(self, seq, *, epochs=None, model_config=None, config=None, out_dir=None, resume=True) -> NRSfMResult:
        W, vis = validate_sequence(seq)
        mc = model_config or EMPPCAConfig()
        if epochs is not None:
            if int(epochs) < 1:
                raise ValueError(f"epochs: expected >= 1 EM iteration for em-ppca, found {epochs}")
            mc = replace(mc, iters=int(epochs))
        return em_ppca(W, vis, mc)
