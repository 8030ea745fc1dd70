"""Residuals, analytic Jacobians and normal equations of the non-rigid Gauss-Newton solver.

Warp kernels (:mod:`warp_kernels.gauss_newton`) bridged to torch autograd, each with a pure-torch
reference (``*_torch``) of the same maths. Maths: Neural Non-Rigid Tracking (Bozic, Palafox et al.,
NeurIPS 2020) eq. 8-11 and App. B.1.

Unknowns per node i: x_i = (eps_i, t_i), a rotation increment applied on top of the current rotation
(R_i <- exp(eps_i^) R_i, radians) and a translation update (metres). The warp of a point p with anchors
a = 1..A and skinning weights alpha_a is Q(p) = sum_a alpha_a (R_a (p - v_a) + v_a + t_a) (eq. 2), so

    dQ / d eps_a = -alpha_a [R_a (p - v_a)]^ ,      dQ / d t_a = alpha_a I            (App. B.1)

and a residual row with d r / d Q = g has the blocks (alpha_a (R_a (p - v_a)) x g, alpha_a g).

Data rows per point (weights ``wt`` = sqrt(lambda_term) * w_u, so w_u enters the energy squared):

    0, 1  2D:      w2 (pi(Q) - c_u)          pi(x) = (fx x/z + cx, fy y/z + cy)   (eq. 9)
    2     depth:   wd (Q_z - D_t(c_u))        target depth bilinearly sampled    (eq. 10)
    3..5  point:   wp (Q - y)                 DynamicFusion / DeepDeform point-to-point
    6     plane:   wn n . (Q - y)             point-to-plane with target normal n

ARAP rows per edge (eq. 11): s_ij (R_i (v_j - v_i) + v_i + t_i - v_j - t_j), s_ij = sqrt(lambda_reg w_ij).

Block-sparse layout shared by all functions: ``J`` (B, G, g, nb*6), ``r`` (B, G, g), ``cols`` (G, nb)
int32 node ids, -1 unused (see :mod:`warp_kernels.gauss_newton`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import warp as wp

import warp_kernels.gauss_newton as wk
from nrsfm_kit.kernels._bridge import contiguous, launch, wview
from nrsfm_kit.utils.checks import check_shape, check_tensor

__all__ = [
    "ResidualBlock",
    "data_terms",
    "data_terms_torch",
    "arap_terms",
    "arap_terms_torch",
    "normal_equations",
    "normal_equations_torch",
    "block_diagonal",
    "block_diagonal_torch",
    "jac_vec",
    "jac_vec_torch",
    "jac_t_vec",
    "jac_t_vec_torch",
    "solve_adjoint_jacobian",
    "solve_adjoint_jacobian_torch",
    "DATA_ROWS",
]

DATA_ROWS = wk.DATA_ROWS


class ResidualBlock(NamedTuple):
    """One residual family in block-sparse form: J (B, G, g, nb*6), r (B, G, g), cols (G, nb) int32."""

    J: torch.Tensor
    r: torch.Tensor
    cols: torch.Tensor


def _scalar(x: float, like: torch.Tensor):
    return wp.float64(x) if like.dtype == torch.float64 else wp.float32(x)


def _rd(anchors, points, nodes, R):
    """R_a (p - v_a) for every anchor: (B, P, A, 3), and the validity mask (P, A)."""
    valid = anchors >= 0
    idx = anchors.clamp(min=0).long()
    d = points.unsqueeze(-2) - nodes[idx]  # (B, P, A, 3)
    Ra = R[:, idx]  # (B, P, A, 3, 3)
    return torch.einsum("bpaij,bpaj->bpai", Ra, d), valid, idx


# ==================================================================================================
# pure-torch references
# ==================================================================================================


def data_terms_torch(points: torch.Tensor, anchors: torch.Tensor, anchor_weights: torch.Tensor, nodes: torch.Tensor, rotations: torch.Tensor, translations: torch.Tensor, corr: torch.Tensor,
                     target_z: torch.Tensor, target_points: torch.Tensor, normals: torch.Tensor, wt: torch.Tensor, intrinsics: torch.Tensor,
                     min_depth: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Pure-torch data residuals and analytic Jacobians (reference of :func:`data_terms`).

    Args: see :func:`data_terms`. Returns (r (B, P, 7), J (B, P, 7, A*6)).
    """
    rd, valid, idx = _rd(anchors, points, nodes, rotations)
    B, P, A = rd.shape[:3]
    alpha = torch.where(valid, anchor_weights, torch.zeros_like(anchor_weights))  # (P, A)
    moved = rd + nodes[idx] + translations[:, idx]
    q = (alpha.unsqueeze(-1) * moved).sum(-2)  # (B, P, 3)
    fx, fy, cx, cy = (intrinsics[:, k, None] for k in range(4))
    z = q[..., 2]
    ok = z > min_depth
    zs = torch.where(ok, z, torch.ones_like(z))
    iz = 1.0 / zs
    w2, wd, wpt, wpl = wt.unbind(-1)
    zero = torch.zeros_like(z)
    okf = ok.to(q.dtype)
    w2m = w2 * okf
    r0 = w2m * (fx * q[..., 0] * iz + cx - corr[..., 0])
    r1 = w2m * (fy * q[..., 1] * iz + cy - corr[..., 1])
    g0 = torch.stack([w2m * fx * iz, zero, -w2m * fx * q[..., 0] * iz * iz], -1)
    g1 = torch.stack([zero, w2m * fy * iz, -w2m * fy * q[..., 1] * iz * iz], -1)
    g2 = torch.stack([zero, zero, wd], -1)
    eye = torch.eye(3, dtype=q.dtype, device=q.device)
    g345 = wpt[..., None, None] * eye  # (B, P, 3, 3)
    dq = q - target_points
    g6 = wpl.unsqueeze(-1) * normals
    r = torch.stack(
        [r0, r1, wd * (z - target_z), *(wpt.unsqueeze(-1) * dq).unbind(-1), wpl * (normals * dq).sum(-1)], -1
    )
    g = torch.cat([g0.unsqueeze(-2), g1.unsqueeze(-2), g2.unsqueeze(-2), g345, g6.unsqueeze(-2)], -2)  # (B,P,7,3)
    rot = torch.cross(rd.unsqueeze(2).expand(B, P, 7, A, 3), g.unsqueeze(3).expand(B, P, 7, A, 3), dim=-1)
    al = alpha.view(1, P, 1, A, 1)
    J = torch.cat([al * rot, al * g.unsqueeze(3).expand(B, P, 7, A, 3)], -1)  # (B, P, 7, A, 6)
    return r, J.reshape(B, P, 7, A * 6)


def arap_terms_torch(nodes: torch.Tensor, edges: torch.Tensor, scale: torch.Tensor, rotations: torch.Tensor, translations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pure-torch ARAP residuals and Jacobians (reference of :func:`arap_terms`).

    Returns (r (B, N*K, 3), J (B, N*K, 3, 12)) with columns (eps_i, t_i, eps_j, t_j).
    """
    B, N = rotations.shape[:2]
    K = edges.shape[1]
    valid = edges >= 0
    j = edges.clamp(min=0).long()
    d = nodes[j] - nodes.unsqueeze(1)  # (N, K, 3)
    a = torch.einsum("bnij,nkj->bnki", rotations, d)  # (B, N, K, 3)
    s = torch.where(valid, scale, torch.zeros_like(scale)).view(1, N, K, 1)
    r = s * (a - d + translations.unsqueeze(2) - translations[:, j])
    zero = torch.zeros_like(a[..., 0])
    a0, a1, a2 = a.unbind(-1)
    neg_hat = torch.stack([zero, a2, -a1, -a2, zero, a0, a1, -a0, zero], -1).view(B, N, K, 3, 3)
    eye = torch.eye(3, dtype=a.dtype, device=a.device).expand(B, N, K, 3, 3)
    J = torch.cat([neg_hat, eye, torch.zeros_like(eye), -eye], -1) * s.unsqueeze(-1)
    return r.reshape(B, N * K, 3), J.reshape(B, N * K, 3, 12)


def _cols6(cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(G, nb) node ids -> (G, nb*6) column ids (clamped) and their validity."""
    valid = (cols >= 0).repeat_interleave(6, dim=1)
    c6 = (cols.clamp(min=0).long().unsqueeze(-1) * 6 + torch.arange(6, device=cols.device)).reshape(
        cols.shape[0], cols.shape[1] * 6
    )  # explicit width: a family with zero residual rows (G = 0) must work too
    return c6, valid


def normal_equations_torch(J: torch.Tensor, r: torch.Tensor, cols: torch.Tensor, num_nodes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pure-torch A = J^T J (B, 6N, 6N) and b = J^T r (B, 6N) from a block-sparse residual family."""
    B = J.shape[0]
    n = 6 * num_nodes
    c6, valid = _cols6(cols)
    vm = valid.to(J.dtype)
    Jm = J * vm.view(1, -1, 1, vm.shape[1])
    blocks = torch.einsum("bgrk,bgrl->bgkl", Jm, Jm)  # (B, G, nb6, nb6)
    flat = (c6.unsqueeze(-1) * n + c6.unsqueeze(-2)).reshape(-1)
    A = torch.zeros(B, n * n, dtype=J.dtype, device=J.device).index_add(1, flat, blocks.reshape(B, -1))
    bv = torch.einsum("bgrk,bgr->bgk", Jm, r)
    b = torch.zeros(B, n, dtype=J.dtype, device=J.device).index_add(1, c6.reshape(-1), bv.reshape(B, -1))
    return A.view(B, n, n), b


def block_diagonal_torch(J: torch.Tensor, cols: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Pure-torch diagonal 6x6 blocks of J^T J: (B, N, 6, 6)."""
    B, G, g, nb6 = J.shape
    nb = nb6 // 6
    Jb = J.view(B, G, g, nb, 6)
    D = torch.zeros(B, num_nodes, 6, 6, dtype=J.dtype, device=J.device)
    for a in range(nb):
        for bb in range(nb):
            same = (cols[:, a] == cols[:, bb]) & (cols[:, a] >= 0)
            blk = torch.einsum("bgrk,bgrl->bgkl", Jb[:, :, :, a], Jb[:, :, :, bb]) * same.view(1, G, 1, 1)
            D = D.index_add(1, cols[:, a].clamp(min=0).long(), blk)
    return D


def jac_vec_torch(J: torch.Tensor, cols: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Pure-torch u = J v: v (B, 6N) -> (B, G, g)."""
    c6, valid = _cols6(cols)
    vg = v[:, c6] * valid.to(v.dtype)  # (B, G, nb6)
    return torch.einsum("bgrk,bgk->bgr", J, vg)


def jac_t_vec_torch(J: torch.Tensor, cols: torch.Tensor, u: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Pure-torch y = J^T u: u (B, G, g) -> (B, 6N)."""
    c6, valid = _cols6(cols)
    y = torch.einsum("bgrk,bgr->bgk", J, u) * valid.to(u.dtype)
    return torch.zeros(J.shape[0], 6 * num_nodes, dtype=J.dtype, device=J.device).index_add(
        1, c6.reshape(-1), y.reshape(J.shape[0], -1)
    )


def solve_adjoint_jacobian_torch(J: torch.Tensor, r: torch.Tensor, cols: torch.Tensor, x: torch.Tensor, gc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pure-torch matrix-free backward of x = -(J^T J + D)^-1 J^T r given gc = (J^T J + D)^-1 dL/dx.

    Returns (dL/dJ (B, G, g, nb*6), dL/dr (B, G, g)).
    """
    c6, valid = _cols6(cols)
    vm = valid.to(J.dtype)
    xg = x[:, c6] * vm
    gg = gc[:, c6] * vm
    jx = torch.einsum("bgrk,bgk->bgr", J, xg)
    jg = torch.einsum("bgrk,bgk->bgr", J, gg)
    dJ = -(jg.unsqueeze(-1) * xg.unsqueeze(2) + (jx + r).unsqueeze(-1) * gg.unsqueeze(2))
    return dJ, -jg


# ==================================================================================================
# Warp-backed autograd Functions
# ==================================================================================================


class DataTermsFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, points, anchor_weights, nodes, rotations, translations, corr, target_z, target_points,
                normals, wt, intrinsics, anchors, min_depth):
        ins = [contiguous(t) for t in (points, anchor_weights, nodes, rotations, translations, corr, target_z,
                                        target_points, normals, wt, intrinsics)]
        anchors = contiguous(anchors)
        B, P = points.shape[:2]
        r = torch.empty(B, P, wk.DATA_ROWS, dtype=points.dtype, device=points.device)
        J = torch.empty(B, P, wk.DATA_ROWS, 24, dtype=points.dtype, device=points.device)
        if B * P:
            launch(wk.data_terms_kernel, (B, P), _data_inputs(ins, anchors, min_depth), [wview(r), wview(J)],
                   like=points)
        ctx.save_for_backward(*ins, anchors, r, J)
        ctx.min_depth = min_depth
        return r, J

    @staticmethod
    def backward(ctx, gr, gJ):
        *ins, anchors, r, J = ctx.saved_tensors
        grads = [torch.zeros_like(t) for t in ins]
        gr = torch.zeros_like(r) if gr is None else contiguous(gr)
        gJ = torch.zeros_like(J) if gJ is None else contiguous(gJ)
        B, P = r.shape[:2]
        if B * P:
            like = ins[0]
            adj_in = [wview(grads[0]), None, wview(grads[1])] + [wview(g) for g in grads[2:]] + [
                _scalar(0.0, like)]
            wp.launch(wk.data_terms_kernel, dim=(B, P), inputs=_data_inputs(ins, anchors, ctx.min_depth),
                      outputs=[wview(r), wview(J)], adj_inputs=adj_in, adj_outputs=[wview(gr), wview(gJ)],
                      adjoint=True, device=_dev(like))
        return (*grads, None, None)


def _dev(t: torch.Tensor) -> str:
    from nrsfm_kit.kernels._bridge import warp_device

    return warp_device(t)


def _data_inputs(ins, anchors, min_depth):
    points, anchor_weights, nodes, R, t, corr, tz, tp, nrm, wt, intr = ins
    return [wview(points), wview(anchors), wview(anchor_weights), wview(nodes), wview(R), wview(t), wview(corr),
            wview(tz), wview(tp), wview(nrm), wview(wt), wview(intr), _scalar(min_depth, points)]


class ArapTermsFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, nodes, scale, rotations, translations, edges):
        nodes, scale, rotations, translations, edges = map(contiguous, (nodes, scale, rotations, translations, edges))
        B, N = rotations.shape[:2]
        K = edges.shape[1]
        r = torch.empty(B, N * K, 3, dtype=nodes.dtype, device=nodes.device)
        J = torch.empty(B, N * K, 3, 12, dtype=nodes.dtype, device=nodes.device)
        if B * N * K:
            launch(wk.arap_terms_kernel, (B, N, K),
                   [wview(nodes), wview(edges), wview(scale), wview(rotations), wview(translations)],
                   [wview(r), wview(J)], like=nodes)
        ctx.save_for_backward(nodes, scale, rotations, translations, edges, r, J)
        return r, J

    @staticmethod
    def backward(ctx, gr, gJ):
        nodes, scale, rotations, translations, edges, r, J = ctx.saved_tensors
        grads = [torch.zeros_like(t) for t in (nodes, scale, rotations, translations)]
        gr = torch.zeros_like(r) if gr is None else contiguous(gr)
        gJ = torch.zeros_like(J) if gJ is None else contiguous(gJ)
        B, N = rotations.shape[:2]
        K = edges.shape[1]
        if B * N * K:
            wp.launch(wk.arap_terms_kernel, dim=(B, N, K),
                      inputs=[wview(nodes), wview(edges), wview(scale), wview(rotations), wview(translations)],
                      outputs=[wview(r), wview(J)],
                      adj_inputs=[wview(grads[0]), None, wview(grads[1]), wview(grads[2]), wview(grads[3])],
                      adj_outputs=[wview(gr), wview(gJ)], adjoint=True, device=_dev(nodes))
        return (*grads, None)


class NormalEquationsFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, J, r, cols, num_nodes):
        J, r, cols = contiguous(J), contiguous(r), contiguous(cols)
        B, G = r.shape[:2]
        n = 6 * num_nodes
        A = torch.zeros(B, n, n, dtype=J.dtype, device=J.device)
        b = torch.zeros(B, n, dtype=J.dtype, device=J.device)
        if B * G:
            launch(wk.normal_equations_kernel, (B, G), [wview(J), wview(r), wview(cols)], [wview(A), wview(b)],
                   like=J)
        ctx.save_for_backward(J, r, cols)
        ctx.n = n
        return A, b

    @staticmethod
    def backward(ctx, gA, gb):
        J, r, cols = ctx.saved_tensors
        B, G = r.shape[:2]
        n = ctx.n
        gA = torch.zeros(B, n, n, dtype=J.dtype, device=J.device) if gA is None else contiguous(gA)
        gb = torch.zeros(B, n, dtype=J.dtype, device=J.device) if gb is None else contiguous(gb)
        dJ = torch.zeros_like(J)
        dr = torch.zeros_like(r)
        if B * G:
            launch(wk.normal_equations_adjoint_kernel, (B, G),
                   [wview(J), wview(r), wview(cols), wview(gA), wview(gb)], [wview(dJ), wview(dr)], like=J)
        return dJ, dr, None, None


# ==================================================================================================
# public functions
# ==================================================================================================


def _pad_anchors(anchors, anchor_weights):
    A = anchors.shape[-1]
    if A > wk.NUM_ANCHORS:
        raise ValueError(f"anchors: expected at most {wk.NUM_ANCHORS} anchors per point, found {A}")
    if A < wk.NUM_ANCHORS:
        pad = wk.NUM_ANCHORS - A
        anchors = torch.cat([anchors, anchors.new_full((anchors.shape[0], pad), -1)], 1)
        anchor_weights = torch.cat([anchor_weights, anchor_weights.new_zeros(anchor_weights.shape[0], pad)], 1)
    return anchors, anchor_weights


def data_terms(points: torch.Tensor, anchors: torch.Tensor, anchor_weights: torch.Tensor, nodes: torch.Tensor, rotations: torch.Tensor, translations: torch.Tensor, corr: torch.Tensor,
               target_z: torch.Tensor, target_points: torch.Tensor, normals: torch.Tensor, wt: torch.Tensor, intrinsics: torch.Tensor,
               min_depth: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Data residuals (2D, depth, point-to-point, point-to-plane) and their analytic Jacobians (Warp).

    Args:
        points: (B, P, 3) source points, metres.
        anchors: (P, A) int node ids (A <= 4), -1 padding. anchor_weights: (P, A) skinning weights alpha.
        nodes: (N, 3) node positions v, metres. rotations: (B, N, 3, 3). translations: (B, N, 3) metres.
        corr: (B, P, 2) target pixels c_u (u = column, v = row). target_z: (B, P) target depth at c_u, metres.
        target_points: (B, P, 3) metres. normals: (B, P, 3) unit target normals.
        wt: (B, P, 4) row weights (2D, depth, point, plane) = sqrt(lambda_term) * w_u (0 masks a row).
        intrinsics: (B, 4) fx, fy, cx, cy in pixels.
        min_depth: 2D rows are zero where the warped point has z <= min_depth (metres).

    Returns:
        r (B, P, 7) and J (B, P, 7, A*6): rows (u, v, depth, px, py, pz, plane); column block a holds
        (d r / d eps_a, d r / d t_a). Differentiable w.r.t. every float input.
    """
    dims: dict = {}
    check_tensor("points", points, ("B", "P", 3), dims=dims)
    check_shape("anchors", anchors, ("P", "A"), dims)
    check_tensor("anchor_weights", anchor_weights, ("P", "A"), dims=dims)
    check_tensor("nodes", nodes, ("N", 3), dims=dims)
    check_tensor("rotations", rotations, ("B", "N", 3, 3), dims=dims)
    check_tensor("translations", translations, ("B", "N", 3), dims=dims)
    check_tensor("corr", corr, ("B", "P", 2), dims=dims)
    check_tensor("target_z", target_z, ("B", "P"), dims=dims)
    check_tensor("target_points", target_points, ("B", "P", 3), dims=dims)
    check_tensor("normals", normals, ("B", "P", 3), dims=dims)
    check_tensor("wt", wt, ("B", "P", 4), dims=dims)
    check_tensor("intrinsics", intrinsics, ("B", 4), dims=dims)
    A = anchors.shape[1]
    anchors_p, weights_p = _pad_anchors(anchors.to(torch.int32), anchor_weights)
    r, J = DataTermsFunction.apply(points, weights_p, nodes, rotations, translations, corr, target_z,
                                   target_points, normals, wt, intrinsics, anchors_p, float(min_depth))
    return r, J[..., : 6 * A]


def arap_terms(nodes: torch.Tensor, edges: torch.Tensor, scale: torch.Tensor, rotations: torch.Tensor, translations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ARAP residuals (eq. 11) and Jacobians (Warp).

    Args:
        nodes: (N, 3) metres. edges: (N, K) int, -1 padding. scale: (N, K) residual scale
        sqrt(lambda_reg * w_ij). rotations: (B, N, 3, 3). translations: (B, N, 3) metres.

    Returns:
        r (B, N*K, 3) metres (scaled) and J (B, N*K, 3, 12), columns (eps_i, t_i, eps_j, t_j); group
        i*K + k is edge (i, edges[i, k]).
    """
    dims: dict = {}
    check_tensor("nodes", nodes, ("N", 3), dims=dims)
    check_shape("edges", edges, ("N", "K"), dims)
    check_tensor("scale", scale, ("N", "K"), dims=dims)
    check_tensor("rotations", rotations, ("B", "N", 3, 3), dims=dims)
    check_tensor("translations", translations, ("B", "N", 3), dims=dims)
    return ArapTermsFunction.apply(nodes, scale, rotations, translations, edges.to(torch.int32))


def _check_block(J, r, cols):
    dims: dict = {}
    check_tensor("J", J, ("B", "G", "g", None), dims=dims, finite=False)
    check_tensor("r", r, ("B", "G", "g"), dims=dims, finite=False)
    check_shape("cols", cols, ("G", None), dims)
    if J.shape[-1] != 6 * cols.shape[1]:
        raise ValueError(f"J: expected last dimension 6 * nb = {6 * cols.shape[1]}, found {J.shape[-1]}")


def normal_equations(J: torch.Tensor, r: torch.Tensor, cols: torch.Tensor, num_nodes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A = J^T J (B, 6N, 6N) and b = J^T r (B, 6N), assembled with atomics in Warp; differentiable
    (explicit adjoint kernel: dJ_row = J_row (gA + gA^T) + r_row gb, dr_row = J_row . gb)."""
    _check_block(J, r, cols)
    return NormalEquationsFunction.apply(J, r, cols.to(torch.int32), int(num_nodes))


def block_diagonal(J: torch.Tensor, cols: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Diagonal 6x6 blocks of J^T J (B, N, 6, 6) in Warp (not differentiable; PCG preconditioner)."""
    J, cols = contiguous(J.detach()), contiguous(cols.to(torch.int32))
    D = torch.zeros(J.shape[0], num_nodes, 6, 6, dtype=J.dtype, device=J.device)
    if J.shape[0] * J.shape[1]:
        launch(wk.block_diagonal_kernel, J.shape[:2], [wview(J), wview(cols)], [wview(D)], like=J)
    return D


def jac_vec(J: torch.Tensor, cols: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """u = J v (B, G, g) in Warp (not differentiable; used inside the PCG Function)."""
    J, cols, v = contiguous(J.detach()), contiguous(cols.to(torch.int32)), contiguous(v.detach())
    u = torch.zeros(J.shape[:3], dtype=J.dtype, device=J.device)
    if J.shape[0] * J.shape[1]:
        launch(wk.jac_vec_kernel, J.shape[:2], [wview(J), wview(cols), wview(v)], [wview(u)], like=J)
    return u


def jac_t_vec(J: torch.Tensor, cols: torch.Tensor, u: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """y = J^T u (B, 6N) in Warp with atomics (not differentiable; used inside the PCG Function)."""
    J, cols, u = contiguous(J.detach()), contiguous(cols.to(torch.int32)), contiguous(u.detach())
    y = torch.zeros(J.shape[0], 6 * num_nodes, dtype=J.dtype, device=J.device)
    if J.shape[0] * J.shape[1]:
        launch(wk.jac_t_vec_kernel, J.shape[:2], [wview(J), wview(cols), wview(u)], [wview(y)], like=J)
    return y


def solve_adjoint_jacobian(J: torch.Tensor, r: torch.Tensor, cols: torch.Tensor, x: torch.Tensor, gc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp version of :func:`solve_adjoint_jacobian_torch`: (dL/dJ, dL/dr) of x = -(J^T J + D)^-1 J^T r."""
    J, r, cols = contiguous(J.detach()), contiguous(r.detach()), contiguous(cols.to(torch.int32))
    x, gc = contiguous(x.detach()), contiguous(gc.detach())
    dJ = torch.zeros_like(J)
    dr = torch.zeros_like(r)
    if J.shape[0] * J.shape[1]:
        launch(wk.solve_adjoint_jacobian_kernel, J.shape[:2],
               [wview(J), wview(r), wview(cols), wview(x), wview(gc)], [wview(dJ), wview(dr)], like=J)
    return dJ, dr
