"""Warp kernels of the embedded-deformation warp field and of the ARAP edge residuals.

Maths (Neural Non-Rigid Tracking, Bozic et al. 2020, eq. 2 / eq. 17 and eq. 11; Sumner et al. 2007):

    Q(p) = sum_a alpha_a ( R_k (p - v_k) + v_k + t_k ),   k = anchor a of p   (padding k = -1 skipped)
    r_ij = R_i (v_j - v_i) + v_i + t_i - (v_j + t_j),      j = edges[i, e]    (padding j = -1 gives 0)

Every kernel here is *generic* (``typing.Any``) with two overloads declared at the end of the module by
:func:`warp_kernels.types.declare_float_overloads`: float32 (``vec3`` / ``mat33``) for speed and float64
(``vec3d`` / ``mat33d``) for gradchecks, so the module compiles once whatever dtype runs first.
Index arrays are :data:`warp_kernels.types.INDEX` (int64, -1 padding; the
:class:`nrsfm_kit.graph.types.DeformationGraph` convention).

Adjoints are written by hand (no ``wp.Tape``): with ``g = dL/dQ(p)`` and ``d = p - v_k``

    dL/dp        += alpha_a R_k^T g
    dL/dalpha_a   = g . (R_k d + v_k + t_k)
    dL/dR_k      += alpha_a g d^T                (atomic: many points share a node)
    dL/dt_k      += alpha_a g                    (atomic)
    dL/dv_k      += alpha_a (g - R_k^T g)        (atomic)

and for the ARAP residual with ``g = dL/dr_ij``, ``e = v_j - v_i``

    dL/dR_i += g e^T,  dL/dt_i += g,  dL/dt_j -= g,  dL/dv_i += g - R_i^T g,  dL/dv_j += R_i^T g - g.

Scatter-adds use ``wp.atomic_add``; on CUDA their summation order is not deterministic (float
round-off differs from run to run at the 1e-7 relative level); on CPU kernels run serially.
No torch import in this module: the torch bridge lives in :mod:`nrsfm_kit.kernels.warp_field`.
"""

from __future__ import annotations

from typing import Any

import warp as wp

from warp_kernels.types import INDEX, FloatTypes, declare_float_overloads

# adjoints are hand-written below: skip Warp's auto-generated backward code (halves compile time)
wp.set_module_options({"enable_backward": False})

# --------------------------------------------------------------------------------------------------
# shared per-anchor helpers
# --------------------------------------------------------------------------------------------------


@wp.func
def node_transform(p: Any, v: Any, R: Any, t: Any):
    """One node's rigid motion applied to ``p`` about the node: ``R (p - v) + v + t``."""
    return R @ (p - v) + v + t


@wp.func
def anchor_adjoint(
    p: Any,
    k: INDEX,
    w: Any,
    g: Any,
    nodes: wp.array(dtype=Any),
    rotations: wp.array(dtype=Any),
    translations: wp.array(dtype=Any),
    grad_nodes: wp.array(dtype=Any),
    grad_rotations: wp.array(dtype=Any),
    grad_translations: wp.array(dtype=Any),
):
    """Scatter the node gradients of one (point, anchor) pair; return (dL/dp part, dL/dalpha)."""
    v = nodes[k]
    R = rotations[k]
    d = p - v
    Rtg = wp.transpose(R) @ g
    wp.atomic_add(grad_rotations, k, wp.outer(g, d) * w)
    wp.atomic_add(grad_translations, k, g * w)
    wp.atomic_add(grad_nodes, k, (g - Rtg) * w)
    return Rtg * w, wp.dot(g, R @ d + v + translations[k])


# --------------------------------------------------------------------------------------------------
# warp field on a point list: points (P,), anchors/weights (P, A)
# --------------------------------------------------------------------------------------------------


@wp.kernel
def warp_points_forward(
    points: wp.array(dtype=Any),
    anchors: wp.array2d(dtype=INDEX),
    weights: wp.array2d(dtype=Any),
    nodes: wp.array(dtype=Any),
    rotations: wp.array(dtype=Any),
    translations: wp.array(dtype=Any),
    out: wp.array(dtype=Any),
):
    """out[i] = Q(points[i]); launch with dim = P."""
    i = wp.tid()
    p = points[i]
    acc = type(p)()
    for a in range(anchors.shape[1]):
        k = anchors[i, a]
        if k >= INDEX(0):
            acc = acc + weights[i, a] * node_transform(p, nodes[k], rotations[k], translations[k])
    out[i] = acc


@wp.kernel
def warp_points_backward(
    points: wp.array(dtype=Any),
    anchors: wp.array2d(dtype=INDEX),
    weights: wp.array2d(dtype=Any),
    nodes: wp.array(dtype=Any),
    rotations: wp.array(dtype=Any),
    translations: wp.array(dtype=Any),
    grad_out: wp.array(dtype=Any),
    grad_points: wp.array(dtype=Any),
    grad_weights: wp.array2d(dtype=Any),
    grad_nodes: wp.array(dtype=Any),
    grad_rotations: wp.array(dtype=Any),
    grad_translations: wp.array(dtype=Any),
):
    """Adjoint of :func:`warp_points_forward`; node gradients must be zero-initialised (scatter-add)."""
    i = wp.tid()
    p = points[i]
    g = grad_out[i]
    gp = type(p)()
    for a in range(anchors.shape[1]):
        k = anchors[i, a]
        if k >= INDEX(0):
            dp, dw = anchor_adjoint(
                p, k, weights[i, a], g, nodes, rotations, translations,
                grad_nodes, grad_rotations, grad_translations,
            )
            gp = gp + dp
            grad_weights[i, a] = dw
        else:
            grad_weights[i, a] = weights.dtype(0.0)
    grad_points[i] = gp


# --------------------------------------------------------------------------------------------------
# warp field on a point image: points (H, W), anchors/weights (H, W, A); 2D launch
# --------------------------------------------------------------------------------------------------


@wp.kernel
def warp_image_forward(
    points: wp.array2d(dtype=Any),
    anchors: wp.array3d(dtype=INDEX),
    weights: wp.array3d(dtype=Any),
    nodes: wp.array(dtype=Any),
    rotations: wp.array(dtype=Any),
    translations: wp.array(dtype=Any),
    out: wp.array2d(dtype=Any),
):
    """out[y, x] = Q(points[y, x]); launch with dim = (H, W)."""
    y, x = wp.tid()
    p = points[y, x]
    acc = type(p)()
    for a in range(anchors.shape[2]):
        k = anchors[y, x, a]
        if k >= INDEX(0):
            acc = acc + weights[y, x, a] * node_transform(p, nodes[k], rotations[k], translations[k])
    out[y, x] = acc


@wp.kernel
def warp_image_backward(
    points: wp.array2d(dtype=Any),
    anchors: wp.array3d(dtype=INDEX),
    weights: wp.array3d(dtype=Any),
    nodes: wp.array(dtype=Any),
    rotations: wp.array(dtype=Any),
    translations: wp.array(dtype=Any),
    grad_out: wp.array2d(dtype=Any),
    grad_points: wp.array2d(dtype=Any),
    grad_weights: wp.array3d(dtype=Any),
    grad_nodes: wp.array(dtype=Any),
    grad_rotations: wp.array(dtype=Any),
    grad_translations: wp.array(dtype=Any),
):
    """Adjoint of :func:`warp_image_forward`; node gradients must be zero-initialised."""
    y, x = wp.tid()
    p = points[y, x]
    g = grad_out[y, x]
    gp = type(p)()
    for a in range(anchors.shape[2]):
        k = anchors[y, x, a]
        if k >= INDEX(0):
            dp, dw = anchor_adjoint(
                p, k, weights[y, x, a], g, nodes, rotations, translations,
                grad_nodes, grad_rotations, grad_translations,
            )
            gp = gp + dp
            grad_weights[y, x, a] = dw
        else:
            grad_weights[y, x, a] = weights.dtype(0.0)
    grad_points[y, x] = gp


# --------------------------------------------------------------------------------------------------
# ARAP edge residuals: nodes (N,), edges (N, K)
# --------------------------------------------------------------------------------------------------


@wp.kernel
def arap_forward(
    nodes: wp.array(dtype=Any),
    edges: wp.array2d(dtype=INDEX),
    rotations: wp.array(dtype=Any),
    translations: wp.array(dtype=Any),
    out: wp.array2d(dtype=Any),
):
    """out[i, e] = R_i (v_j - v_i) + v_i + t_i - (v_j + t_j), j = edges[i, e]; zero on padding. dim = N."""
    i = wp.tid()
    vi = nodes[i]
    Ri = rotations[i]
    ti = translations[i]
    for e in range(edges.shape[1]):
        j = edges[i, e]
        if j >= INDEX(0):
            vj = nodes[j]
            out[i, e] = node_transform(vj, vi, Ri, ti) - (vj + translations[j])
        else:
            out[i, e] = type(vi)()


@wp.kernel
def arap_backward(
    nodes: wp.array(dtype=Any),
    edges: wp.array2d(dtype=INDEX),
    rotations: wp.array(dtype=Any),
    grad_out: wp.array2d(dtype=Any),
    grad_nodes: wp.array(dtype=Any),
    grad_rotations: wp.array(dtype=Any),
    grad_translations: wp.array(dtype=Any),
):
    """Adjoint of :func:`arap_forward`; grad_nodes / grad_translations zero-initialised (j-terms scatter)."""
    i = wp.tid()
    vi = nodes[i]
    Ri = rotations[i]
    RiT = wp.transpose(Ri)
    gR = type(Ri)()
    gt = type(vi)()
    gv = type(vi)()
    for e in range(edges.shape[1]):
        j = edges[i, e]
        if j >= INDEX(0):
            g = grad_out[i, e]
            Rtg = RiT @ g
            gR = gR + wp.outer(g, nodes[j] - vi)
            gt = gt + g
            gv = gv + g - Rtg
            wp.atomic_sub(grad_translations, j, g)
            wp.atomic_add(grad_nodes, j, Rtg - g)
    grad_rotations[i] = gR  # only thread i writes row i
    wp.atomic_add(grad_translations, i, gt)
    wp.atomic_add(grad_nodes, i, gv)


# --------------------------------------------------------------------------------------------------
# float32 / float64 overloads (vector / matrix arrays, so each kernel states its own signature)
# --------------------------------------------------------------------------------------------------


def _vec(ft: FloatTypes, ndim: int = 1):
    return wp.array(dtype=ft.vec3, ndim=ndim)


def _mat(ft: FloatTypes):
    return wp.array(dtype=ft.mat33)


def _scal(ft: FloatTypes, ndim: int):
    return wp.array(dtype=ft.scalar, ndim=ndim)


def _motion(ft: FloatTypes) -> list:
    """(nodes, rotations, translations), or their gradients: (N,) vec3, mat33, vec3."""
    return [_vec(ft), _mat(ft), _vec(ft)]


_I2, _I3 = wp.array2d(dtype=INDEX), wp.array3d(dtype=INDEX)

declare_float_overloads(
    warp_points_forward, signature=lambda ft: [_vec(ft), _I2, _scal(ft, 2), *_motion(ft), _vec(ft)]
)
declare_float_overloads(
    warp_points_backward,
    signature=lambda ft: [_vec(ft), _I2, _scal(ft, 2), *_motion(ft), _vec(ft),
                          _vec(ft), _scal(ft, 2), *_motion(ft)],
)
declare_float_overloads(
    warp_image_forward, signature=lambda ft: [_vec(ft, 2), _I3, _scal(ft, 3), *_motion(ft), _vec(ft, 2)]
)
declare_float_overloads(
    warp_image_backward,
    signature=lambda ft: [_vec(ft, 2), _I3, _scal(ft, 3), *_motion(ft), _vec(ft, 2),
                          _vec(ft, 2), _scal(ft, 3), *_motion(ft)],
)
declare_float_overloads(arap_forward, signature=lambda ft: [_vec(ft), _I2, _mat(ft), _vec(ft), _vec(ft, 2)])
declare_float_overloads(
    arap_backward, signature=lambda ft: [_vec(ft), _I2, _mat(ft), _vec(ft, 2), *_motion(ft)]
)
