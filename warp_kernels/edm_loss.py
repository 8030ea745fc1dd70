"""Warp kernels of the sampled-pair ARAP EDM loss (Takmaz et al., eq. 6/8).

For S sampled pixel pairs s = (i_s, j_s) with 3D points x^k (view k) and x^l (the corresponding points
in view l) and optional 3-channel motion embeddings m (view k):

    e^k_s = ||x^k_i - x^k_j||^2,  mu_k = mean_s e^k_s,  r_s = e^k_s / mu_k - e^l_s / mu_l   (per-set norm.)
    (mode 1, "log": r_s = log e^k_s - log e^l_s - c,  c = mean of log e^k - log e^l over the kept pairs)
    w_s   = clamp(((1 - tanh ||m_i - m_j||) + tau) / (1 + tau), 0, 1)                     (tau-offset)
    L     = sum_s q_s w_s |r_s| / (sum_s q_s w_s + eps)  +  beta (1 - sum_s w_s / S)      (alpha norm., ||w||_1)

with q_s in {0, 1} the trimming mask (1 for every pair without trimming; the bridge computes it from |r|).

Every kernel runs over the S pairs (memory O(S), never O(n^2)); reductions use atomics. The kernels are
generic in the scalar type, with float32 / float64 overloads declared at the end of the module by
:func:`warp_kernels.types.declare_float_overloads`; points and embeddings are ``vec3`` arrays, the pair
indices ``pi`` / ``pj`` are :data:`warp_kernels.types.INDEX` (int64, in [0, n): no padding). The adjoints
are hand-written (no generated backward). No torch code here: the autograd bridge is
:mod:`nrsfm_kit.kernels.edm_loss`.
"""

from __future__ import annotations

from typing import Any

import warp as wp

from warp_kernels.types import INDEX, FloatTypes, declare_float_overloads

# adjoints are hand-written below: skip Warp's auto-generated backward code
wp.set_module_options({"enable_backward": False})


@wp.kernel
def pair_sq_sums(
    xk: wp.array(dtype=Any),
    xl: wp.array(dtype=Any),
    pi: wp.array(dtype=INDEX),
    pj: wp.array(dtype=INDEX),
    sums: wp.array(dtype=Any),
):
    """sums[0] += ||xk_i - xk_j||^2, sums[1] += ||xl_i - xl_j||^2 over the pairs."""
    s = wp.tid()
    i = pi[s]
    j = pj[s]
    dk = xk[i] - xk[j]
    dl = xl[i] - xl[j]
    wp.atomic_add(sums, 0, wp.dot(dk, dk))
    wp.atomic_add(sums, 1, wp.dot(dl, dl))


@wp.func
def pair_residual(ek: Any, el: Any, mu: wp.array(dtype=Any), mode: int):
    """r_s of one pair: ek / mu[0] - el / mu[1] (mode 0) or log ek - log el - mu[0] (mode 1, the bridge passes
    mu[0] = 0 and subtracts the offset c itself, as c is a mean over the pairs the trimming keeps)."""
    if mode == 1:
        return wp.log(ek) - wp.log(el) - mu[0]
    return ek / mu[0] - el / mu[1]


@wp.func
def pair_weight(mi: Any, mj: Any, tau: Any, use_embed: int):
    """(w_s after the tau-offset and clamp, derivative factor dw/drho, rho = ||m_i - m_j||)."""
    one = type(tau)(1.0)
    zero = type(tau)(0.0)
    if use_embed == 0:
        return one, zero, zero
    d = mi - mj
    rho = wp.length(d)
    t = wp.tanh(rho)
    v = ((one - t) + tau) / (one + tau)
    dv = zero
    if v > zero and v < one:
        dv = -(one - t * t) / (one + tau)
    v = wp.clamp(v, zero, one)
    return v, dv, rho


@wp.kernel
def pair_forward(
    xk: wp.array(dtype=Any),
    xl: wp.array(dtype=Any),
    emb: wp.array(dtype=Any),
    pi: wp.array(dtype=INDEX),
    pj: wp.array(dtype=INDEX),
    mu: wp.array(dtype=Any),
    tau: Any,
    use_embed: int,
    mode: int,
    r_out: wp.array(dtype=Any),
    w_out: wp.array(dtype=Any),
    sums: wp.array(dtype=Any),
):
    """Residuals r_s, weights w_s; sums[0] += w_s |r_s|, sums[1] += w_s."""
    s = wp.tid()
    i = pi[s]
    j = pj[s]
    dk = xk[i] - xk[j]
    dl = xl[i] - xl[j]
    r = pair_residual(wp.dot(dk, dk), wp.dot(dl, dl), mu, mode)
    mi = emb[0]
    mj = emb[0]
    if use_embed != 0:
        mi = emb[i]
        mj = emb[j]
    w, dw, rho = pair_weight(mi, mj, tau, use_embed)
    r_out[s] = r
    w_out[s] = w
    wp.atomic_add(sums, 0, w * wp.abs(r))
    wp.atomic_add(sums, 1, w)


@wp.kernel
def pair_backward_reduce(
    xk: wp.array(dtype=Any),
    xl: wp.array(dtype=Any),
    pi: wp.array(dtype=INDEX),
    pj: wp.array(dtype=INDEX),
    mu: wp.array(dtype=Any),
    r: wp.array(dtype=Any),
    w: wp.array(dtype=Any),
    keep: wp.array(dtype=Any),
    inv_den: Any,
    mode: int,
    sums: wp.array(dtype=Any),
):
    """With g_s = q_s w_s sign(r_s) / (sum q w + eps): sums[0] += g_s e^k_s / mu_k, sums[1] += g_s e^l_s / mu_l
    (mode 0), or sums[0] += g_s, sums[1] += g_s (mode 1, log)."""
    s = wp.tid()
    i = pi[s]
    j = pj[s]
    dk = xk[i] - xk[j]
    dl = xl[i] - xl[j]
    g = keep[s] * w[s] * wp.sign(r[s]) * inv_den
    if mode == 1:
        wp.atomic_add(sums, 0, g)
        wp.atomic_add(sums, 1, g)
    else:
        wp.atomic_add(sums, 0, g * wp.dot(dk, dk) / mu[0])
        wp.atomic_add(sums, 1, g * wp.dot(dl, dl) / mu[1])


@wp.kernel
def pair_backward(
    xk: wp.array(dtype=Any),
    xl: wp.array(dtype=Any),
    emb: wp.array(dtype=Any),
    pi: wp.array(dtype=INDEX),
    pj: wp.array(dtype=INDEX),
    mu: wp.array(dtype=Any),
    r: wp.array(dtype=Any),
    w: wp.array(dtype=Any),
    keep: wp.array(dtype=Any),
    consts: wp.array(dtype=Any),
    tau: Any,
    use_embed: int,
    mode: int,
    grad_xk: wp.array(dtype=Any),
    grad_xl: wp.array(dtype=Any),
    grad_emb: wp.array(dtype=Any),
):
    """Adjoint of the loss, scattered by atomics into the point and embedding gradients.

    consts = [1 / (sum q w + eps), loss_data, c_k / S, c_l / S, grad_out, beta / S] (c = the sums of
    pair_backward_reduce; for mode 1 the bridge passes sum_s g_s / K, K the number of kept pairs). Mode 0:
    dL/de^k_t = (g_t - c_k / S) / mu_k; mode 1 (log): dL/de^k_t = (g_t - q_t sum_s g_s / K) / e^k_t, and the
    same with the opposite sign for view l.
    """
    s = wp.tid()
    i = pi[s]
    j = pj[s]
    inv_den = consts[0]
    go = consts[4]
    two = type(inv_den)(2.0)
    dk = xk[i] - xk[j]
    dl = xl[i] - xl[j]
    q = keep[s]
    g = q * w[s] * wp.sign(r[s]) * inv_den
    sk = mu[0]
    sl = mu[1]
    ck = consts[2]
    cl = consts[3]
    if mode == 1:
        sk = wp.dot(dk, dk)
        sl = wp.dot(dl, dl)
        ck = q * ck
        cl = q * cl
    dek = (g - ck) / sk * go * two
    de_l = (cl - g) / sl * go * two
    wp.atomic_add(grad_xk, i, dek * dk)
    wp.atomic_sub(grad_xk, j, dek * dk)
    wp.atomic_add(grad_xl, i, de_l * dl)
    wp.atomic_sub(grad_xl, j, de_l * dl)
    if use_embed != 0:
        mi = emb[i]
        mj = emb[j]
        wv, dwdrho, rho = pair_weight(mi, mj, tau, use_embed)
        # dL/dw_s = q_s (|r_s| - loss_data) / den - beta / S
        dldw = q * (wp.abs(r[s]) - consts[1]) * inv_den - consts[5]
        if rho > type(inv_den)(0.0):
            gm = (go * dldw * dwdrho / rho) * (mi - mj)
            wp.atomic_add(grad_emb, i, gm)
            wp.atomic_sub(grad_emb, j, gm)


@wp.kernel
def pair_sq_dists(
    xk: wp.array(dtype=Any),
    xl: wp.array(dtype=Any),
    pi: wp.array(dtype=INDEX),
    pj: wp.array(dtype=INDEX),
    ek: wp.array(dtype=Any),
    el: wp.array(dtype=Any),
):
    """Per-pair squared distances e^k_s, e^l_s (for the median normalisation), O(S) memory."""
    s = wp.tid()
    dk = xk[pi[s]] - xk[pj[s]]
    dl = xl[pi[s]] - xl[pj[s]]
    ek[s] = wp.dot(dk, dk)
    el[s] = wp.dot(dl, dl)


# --------------------------------------------------------------------------------------------------
# float32 / float64 overloads: vec3 arrays for points / embeddings, scalar arrays for the rest
# --------------------------------------------------------------------------------------------------

_IDX = wp.array(dtype=INDEX)


def _vec(ft: FloatTypes):
    return wp.array(dtype=ft.vec3)


def _scal(ft: FloatTypes):
    return wp.array(dtype=ft.scalar)


declare_float_overloads(pair_sq_sums, signature=lambda ft: [_vec(ft), _vec(ft), _IDX, _IDX, _scal(ft)])
declare_float_overloads(
    pair_forward,
    signature=lambda ft: [_vec(ft), _vec(ft), _vec(ft), _IDX, _IDX, _scal(ft), ft.scalar, int, int,
                          _scal(ft), _scal(ft), _scal(ft)],
)
declare_float_overloads(
    pair_backward_reduce,
    signature=lambda ft: [_vec(ft), _vec(ft), _IDX, _IDX, _scal(ft), _scal(ft), _scal(ft), _scal(ft), ft.scalar, int,
                          _scal(ft)],
)
declare_float_overloads(
    pair_backward,
    signature=lambda ft: [_vec(ft), _vec(ft), _vec(ft), _IDX, _IDX, _scal(ft), _scal(ft), _scal(ft), _scal(ft),
                          _scal(ft), ft.scalar, int, int, _vec(ft), _vec(ft), _vec(ft)],
)
declare_float_overloads(
    pair_sq_dists, signature=lambda ft: [_vec(ft), _vec(ft), _IDX, _IDX, _scal(ft), _scal(ft)]
)
