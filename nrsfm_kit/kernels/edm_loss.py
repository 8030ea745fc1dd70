"""Sampled-pair ARAP EDM loss (Takmaz et al., eq. 6/8): Warp forward/backward and a torch reference.

Given n 3D points ``xk`` of view k, their correspondences ``xl`` in view l (row p of ``xl`` is the point of
view l that pixel p of view k maps to), S sampled pairs ``(i, j)`` and optional motion embeddings ``emb``
(3 channels, view k):

.. math::

    e^k_s = \\|x^k_{i_s} - x^k_{j_s}\\|^2, \\quad \\hat e^k_s = e^k_s / \\mathrm{mean}_s(e^k_s)
    \\quad \\text{(per-set normalisation, removes the monocular scale)}

    w_s = \\mathrm{clamp}\\Big(\\frac{1 - \\tanh\\|m_{i_s} - m_{j_s}\\| + \\tau}{1 + \\tau}, 0, 1\\Big)
    \\quad \\text{(embedding weights with the tau-offset)}

    L = \\frac{1}{\\alpha} \\sum_s w_s |\\hat e^k_s - \\hat e^l_s| + \\beta (1 - \\|w\\|_1 / S),
    \\quad \\alpha = \\sum_s w_s + \\epsilon

``normalization="median"`` divides each set by its median squared distance instead of the mean (our
robust variant, not in the paper: with the mean, a network can push a few pixels far away so that the mean
is dominated by them and every other normalised distance vanishes in both views, a degenerate minimum we
observe on non-rigid videos; the median is insensitive to those few pixels).

``normalization="log"`` (ours) compares the squared distances in log space, the scale-invariant log error
of each EDM entry:

.. math::

    r_s = \\log e^k_s - \\log e^l_s - c, \\quad c = \\mathrm{mean}_{s \\text{ kept}}(\\log e^k_s - \\log e^l_s)

A global scale of either view only moves ``c``, and a pair's residual depends on that pair and ``c`` alone:
making some distances large cannot shrink the others' residuals, so the degenerate minimum of the mean is gone.
``c`` is the mean over the pairs the trimming keeps (all pairs without it), so the movers' pairs do not shift
it either; with the log normalisation the pairs are ranked for trimming by their distance to the median log
ratio.

``trim`` = q (ours, a least-trimmed-sum estimator) drops the ``floor(q S)`` pairs with the largest ``|r_s|``
from the data term (a detached choice; the regulariser still counts every pair):

.. math::

    L = \\frac{\\sum_s q_s w_s |r_s|}{\\sum_s q_s w_s + \\epsilon} + \\beta (1 - \\|w\\|_1 / S),
    \\quad q_s = [\\,|r_s| \\text{ is not among the } \\lfloor q S \\rfloor \\text{ largest}\\,]

Under the rigid prior the pairs across independently moving parts are outliers: with ``trim`` they stop
pulling the whole depth map (measured on the tune videos, benchmarks/RESULTS.md, edm).

The regulariser ``beta (1 - ||w||_1 / S)`` rewards large weights (it is the paper's ``-beta ||w||_1`` up to a
constant and the 1/S scale), so the embeddings cannot switch every pair off. Without embeddings every
``w_s = 1`` (the rigid prior of Table 1). Memory is O(n + S); no n x n matrix is ever formed.
"""

from __future__ import annotations

import math

import torch
import warp as wp

import warp_kernels.edm_loss as wk
from nrsfm_kit.kernels._bridge import contiguous, index_tensor, launch, wview
from nrsfm_kit.utils.checks import check_shape, check_tensor
from warp_kernels.types import float_types

__all__ = ["NORMALIZATIONS", "check_trim", "trim_mask", "edm_pair_loss", "edm_pair_loss_reference", "edm_pair_terms_reference"]

# Warp scalar / vec3 types of each supported torch dtype
_FT = {torch.float32: float_types(wp.float32), torch.float64: float_types(wp.float64)}

NORMALIZATIONS = ("mean", "median", "log")


def _pair_index(name: str, idx, n: int, dims: dict) -> torch.Tensor:
    """(S,) pair indices in [0, n) as contiguous int64 (the kernels' index type)."""
    # pairs have no -1 padding, so the range is [0, n), checked here before index_tensor's [-1, n)
    if isinstance(idx, torch.Tensor) and idx.dtype in (torch.int32, torch.int64) and idx.numel():
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= n:
            raise ValueError(f"{name}: expected indices in [0, {n}), found range [{lo}, {hi}]")
    idx = index_tensor(name, idx, n)
    check_shape(name, idx, ("S",), dims)
    return idx


def _check_inputs(xk, xl, i, j, emb, tau, beta, eps, normalization="mean", trim=0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate the public arguments; return the pair indices ``(i, j)`` as int64."""
    check_trim(trim)
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization: expected one of {NORMALIZATIONS}, found {normalization!r}")
    dims: dict = {}
    check_tensor("xk", xk, ("n", 3), dims=dims)
    check_tensor("xl", xl, ("n", 3), dims=dims)
    if xl.dtype != xk.dtype or xl.device != xk.device:
        raise ValueError(f"xl: expected dtype {xk.dtype} on {xk.device} like xk, found {xl.dtype} on {xl.device}")
    if emb is not None:
        check_tensor("emb", emb, ("n", 3), dims=dims)
        if emb.dtype != xk.dtype or emb.device != xk.device:
            raise ValueError(f"emb: expected dtype {xk.dtype} on {xk.device}, found {emb.dtype} on {emb.device}")
    i = _pair_index("i", i, dims["n"], dims)
    j = _pair_index("j", j, dims["n"], dims)
    if i.numel() == 0:
        raise ValueError("i: expected at least one sampled pair, found 0 valid pairs")
    if not (math.isfinite(float(tau)) and float(tau) > -1.0):
        raise ValueError(f"tau: expected a finite value > -1, found {tau!r}")
    beta_ok = math.isfinite(float(beta)) and float(beta) >= 0.0
    if not beta_ok or not (math.isfinite(float(eps)) and float(eps) > 0.0):
        raise ValueError(f"beta, eps: expected finite beta >= 0 and eps > 0, found beta={beta!r}, eps={eps!r}")
    return i, j


def _set_scales(ek: torch.Tensor, el: torch.Tensor, normalization: str) -> tuple[torch.Tensor, torch.Tensor]:
    if normalization == "median":
        return ek.median(), el.median()
    return ek.mean(), el.mean()


def check_trim(trim) -> None:
    """ValueError unless ``trim`` is a number in [0, 1) (the fraction of pairs left out of the data term)."""
    if not (isinstance(trim, (int, float)) and 0.0 <= float(trim) < 1.0):
        raise ValueError(f"trim: expected a fraction of pairs in [0, 1), found {trim!r}")


def trim_mask(r: torch.Tensor, trim: float) -> torch.Tensor:
    """(S,) 0/1 mask (dtype of ``r``, detached) dropping the ``floor(trim S)`` pairs with the largest ``|r|``."""
    keep = torch.ones_like(r).detach()
    drop = int(math.floor(float(trim) * r.numel()))
    if drop > 0:
        keep[torch.topk(r.detach().abs(), drop, sorted=False).indices] = 0
    return keep


def _check_log(lr: torch.Tensor) -> None:
    if not bool(torch.isfinite(lr).all()):
        raise ValueError("xk, xl: expected sampled pairs with non-zero distances for the log normalisation, found "
                         f"{int((~torch.isfinite(lr)).sum())} pairs with a zero (or non-finite) distance")


def _log_offset(lr: torch.Tensor, trim: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(r = lr - c, keep): the log residuals with c the mean log ratio over the kept pairs (ranked by their
    distance to the median log ratio, a detached choice)."""
    keep = trim_mask(lr - lr.detach().median(), trim)
    c = (keep * lr).sum() / keep.sum()
    return lr - c, keep


def _terms(xk, xl, i, j, emb, tau, normalization, trim):
    """(r, w, keep) of the sampled pairs (the reference maths)."""
    i, j = i.long(), j.long()
    ek = ((xk[i] - xk[j]) ** 2).sum(-1)
    el = ((xl[i] - xl[j]) ** 2).sum(-1)
    if normalization == "log":
        lr = ek.log() - el.log()
        _check_log(lr)
        r, keep = _log_offset(lr, trim)
    else:
        mk, ml = _set_scales(ek, el, normalization)
        r = ek / mk - el / ml
        keep = trim_mask(r, trim)
    if emb is None:
        w = torch.ones_like(r)
    else:
        d = emb[i] - emb[j]
        # safe norm: zero gradient at coincident embeddings (matches the kernel)
        sq = (d * d).sum(-1)
        rho = torch.where(sq > 0, sq.clamp_min(torch.finfo(sq.dtype).tiny).sqrt(), torch.zeros_like(sq))
        w = ((1 - torch.tanh(rho) + tau) / (1 + tau)).clamp(0, 1)
    return r, w, keep


def edm_pair_terms_reference(
    xk: torch.Tensor,
    xl: torch.Tensor,
    i: torch.Tensor,
    j: torch.Tensor,
    emb: torch.Tensor | None = None,
    *,
    tau: float = 0.0,
    normalization: str = "mean",
    trim: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pure-torch residuals and weights of the sampled pairs.

    Returns ``(r, w)``, both (S,): ``r_s = e^k_s / mean(e^k) - e^l_s / mean(e^l)`` (unitless; median with
    ``normalization="median"``, the log residual with ``"log"``, whose offset depends on ``trim``) and the
    weights ``w_s`` in [0, 1] after the tau-offset (all ones without embeddings).
    """
    r, w, _ = _terms(xk, xl, i, j, emb, tau, normalization, trim)
    return r, w


def edm_pair_loss_reference(
    xk: torch.Tensor,
    xl: torch.Tensor,
    i: torch.Tensor,
    j: torch.Tensor,
    emb: torch.Tensor | None = None,
    *,
    tau: float = 0.0,
    beta: float = 0.0,
    eps: float = 1e-8,
    normalization: str = "mean",
    trim: float = 0.0,
) -> torch.Tensor:
    """Pure-torch reference of :func:`edm_pair_loss` (same maths, autograd backward). Returns a scalar."""
    i, j = _check_inputs(xk, xl, i, j, emb, tau, beta, eps, normalization, trim)
    r, w, keep = _terms(xk, xl, i, j, emb, tau, normalization, trim)
    qw = keep * w
    return (qw * r.abs()).sum() / (qw.sum() + eps) + beta * (1 - w.sum() / r.numel())


class _EDMPairLoss(torch.autograd.Function):
    """Forward and adjoint in Warp; inputs validated by :func:`edm_pair_loss` (``i``, ``j`` int64, contiguous)."""

    @staticmethod
    def forward(ctx, xk, xl, emb, i, j, tau, beta, eps, normalization, trim):
        use_embed = 0 if emb is None else 1
        xk, xl = contiguous(xk.detach()), contiguous(xl.detach())
        dt, dev = xk.dtype, xk.device
        ft = _FT[dt]
        vec, scal = ft.vec3, ft.scalar
        e = contiguous(emb.detach()) if emb is not None else torch.zeros(1, 3, dtype=dt, device=dev)
        S = i.numel()
        wxk, wxl, we = wview(xk, vec), wview(xl, vec), wview(e, vec)
        wi, wj = wview(i), wview(j)
        med = None
        mode = 1 if normalization == "log" else 0
        if normalization == "log":
            mu = torch.zeros(2, dtype=dt, device=dev)  # the kernel returns lr = log e^k - log e^l; c below
        elif normalization == "median":
            ek = torch.empty(S, dtype=dt, device=dev)
            el = torch.empty(S, dtype=dt, device=dev)
            launch(wk.pair_sq_dists, S, [wxk, wxl, wi, wj], [wview(ek), wview(el)], like=xk)
            mk, ik = ek.median(dim=0)
            ml, il = el.median(dim=0)
            mu = torch.stack([mk, ml]).contiguous()
            med = torch.stack([ik, il])
        else:
            sums = torch.zeros(2, dtype=dt, device=dev)
            launch(wk.pair_sq_sums, S, [wxk, wxl, wi, wj, wview(sums)], like=xk)
            mu = sums / S
        if mode == 0 and not bool((mu > 0).all()):
            raise ValueError(
                f"xk, xl: expected sampled pairs with non-zero distances, found mean squared distances {mu.tolist()}"
            )
        r = torch.empty(S, dtype=dt, device=dev)
        w = torch.empty(S, dtype=dt, device=dev)
        sums2 = torch.zeros(2, dtype=dt, device=dev)
        launch(
            wk.pair_forward,
            S,
            [wxk, wxl, we, wi, wj, wview(mu), scal(tau), use_embed, mode],
            [wview(r), wview(w), wview(sums2)],
            like=xk,
        )
        if mode == 1:
            _check_log(r)
            r, keep = _log_offset(r, trim)
        else:
            keep = trim_mask(r, trim)
        if trim > 0 or mode == 1:
            kw = keep * w
            den = kw.sum() + eps
            data = (kw * r.abs()).sum() / den
        else:
            den = sums2[1] + eps
            data = sums2[0] / den
        loss = data + beta * (1 - sums2[1] / S)
        ctx.save_for_backward(xk, xl, e, i, j, mu, r, w, keep, den, data)
        ctx.cfg = (tau, beta, use_embed, S, med, mode)
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        xk, xl, e, i, j, mu, r, w, keep, den, data = ctx.saved_tensors
        tau, beta, use_embed, S, med, mode = ctx.cfg
        dt, dev = xk.dtype, xk.device
        ft = _FT[dt]
        vec, scal = ft.vec3, ft.scalar
        wxk, wxl, we = wview(xk, vec), wview(xl, vec), wview(e, vec)
        wi, wj = wview(i), wview(j)
        inv_den = 1.0 / den
        red = torch.zeros(2, dtype=dt, device=dev)
        launch(
            wk.pair_backward_reduce,
            S,
            [wxk, wxl, wi, wj, wview(mu), wview(r), wview(w), wview(keep), scal(float(inv_den)), mode],
            [wview(red)],
            like=xk,
        )
        # mean: d mu / d e_t = 1 / S for every pair (folded into the kernel); median: only the median pair
        # log: d c / d lr_t = q_t / K over the K kept pairs (the kernel multiplies by q_t)
        share = red / (keep.sum() if mode == 1 else S) if med is None else torch.zeros_like(red)
        consts = torch.stack(
            [
                inv_den,
                data,
                share[0],
                share[1],
                grad_out.reshape(()).to(dt),
                torch.tensor(beta / S, dtype=dt, device=dev),
            ]
        ).contiguous()
        gxk = torch.zeros_like(xk)
        gxl = torch.zeros_like(xl)
        ge = torch.zeros_like(e)
        launch(
            wk.pair_backward,
            S,
            [wxk, wxl, we, wi, wj, wview(mu), wview(r), wview(w), wview(keep), wview(consts), scal(tau), use_embed,
             mode],
            [wview(gxk, vec), wview(gxl, vec), wview(ge, vec)],
            like=xk,
        )
        if med is not None:
            # d L / d e_t* = -c_k / mu_k (view k) and +c_l / mu_l (view l) for the median pair t* of each set
            # (c = red, see pair_backward_reduce)
            go = grad_out.reshape(()).to(dt)
            for X, G, t, c, sgn in ((xk, gxk, med[0], red[0] / mu[0], -1.0), (xl, gxl, med[1], red[1] / mu[1], 1.0)):
                a, b = i[t], j[t]
                dvec = 2 * (X[a] - X[b]) * (sgn * c) * go
                G[a] += dvec
                G[b] -= dvec
        return gxk, gxl, (ge if use_embed else None), None, None, None, None, None, None, None


def edm_pair_loss(
    xk: torch.Tensor,
    xl: torch.Tensor,
    i: torch.Tensor,
    j: torch.Tensor,
    emb: torch.Tensor | None = None,
    *,
    tau: float = 0.0,
    beta: float = 0.0,
    eps: float = 1e-8,
    normalization: str = "mean",
    trim: float = 0.0,
) -> torch.Tensor:
    """ARAP EDM loss over sampled pairs, forward and backward in Warp (device follows ``xk``).

    Args:
        xk: (n, 3) 3D points of view k (any length unit; the loss is scale-invariant per view).
        xl: (n, 3) corresponding 3D points of view l.
        i, j: (S,) int64 indices into the n points (the sampled pairs), in [0, n); int32 accepted,
            converted.
        emb: optional (n, 3) motion embeddings of view k; None = rigid prior (all weights 1).
        tau: weight offset, w <- clamp((w + tau) / (1 + tau), 0, 1), tau > -1 (0 = no offset).
        beta: weight of the ||w||_1 regulariser (>= 0).
        eps: added to alpha = sum w against division by zero.
        normalization: "mean" (the paper's per-set normalisation), "median" or "log" (ours, see the module doc).
        trim: fraction in [0, 1) of the pairs with the largest |r| left out of the data term (0 = none).

    Returns:
        scalar tensor (unitless), differentiable w.r.t. ``xk``, ``xl`` and ``emb``.
    """
    i, j = _check_inputs(xk, xl, i, j, emb, tau, beta, eps, normalization, trim)
    if xk.dtype not in _FT:
        raise ValueError(f"xk: expected dtype float32 or float64, found {xk.dtype}")
    if i.device != xk.device or j.device != xk.device:
        raise ValueError(f"i, j: expected device {xk.device} like xk, found {i.device} and {j.device}")
    return _EDMPairLoss.apply(xk, xl, emb, i, j, float(tau), float(beta), float(eps), normalization, float(trim))
