"""Residual terms, Jacobians and normal equations of the non-rigid Gauss-Newton solver (torch bridge).

Warp kernels (:mod:`warp_kernels.gauss_newton`) bridged to torch autograd, each beside a pure-torch
reference ``*_torch`` of the same maths (parity-tested in ``tests/kernels/test_gauss_newton.py``).
Maths: Neural Non-Rigid Tracking (Bozic, Palafox et al., NeurIPS 2020) eq. 8-11 and App. B.1.

Unknowns per node i: x_i = (eps_i, t_i), a rotation increment applied on top of the current rotation
(R_i <- exp(eps_i^) R_i, radians) and a translation update (metres).

**Point terms** are linearised in three steps, so a new term writes only the middle one:

1. :func:`warp_linearize`: the warped points Q(p) = sum_a alpha_a (R_a (p - v_a) + v_a + t_a)
   (eq. 2) and d_a = R_a (p - v_a) per anchor;
2. a residual function ``(Q, ...) -> (r (B, P, m), g = dr/dQ (B, P, m, 3))``: :func:`reprojection_residual`
   (eq. 9), :func:`depth_residual` (eq. 10), :func:`point_residual`, :func:`plane_residual`,
   :func:`image_residual` (photometric / silhouette / heatmap maps sampled bilinearly);
3. :func:`point_jacobian`: J rows (alpha_a d_a x g, alpha_a g) per anchor (App. B.1).

**ARAP** (eq. 11): :func:`arap_terms`. **Block-sparse layout** of a residual family: ``J`` (B, G, g,
nb*6), ``r`` (B, G, g), ``cols`` (G, nb) int64 node ids, -1 unused. **Normal equations**:
:class:`BlockLayout` precomputes, once per solve, which groups feed which (node, node) pair; then
:func:`normal_equations_segmented` (Warp: one thread per output entry, no atomics) or
:func:`normal_equations_blocks_torch` (per-group 6x6 products by batched matmul, reduced by a sparse
CSR product: multi-threaded on CPU) assemble A = J^T J, b = J^T r. :func:`normal_equations` is the
plain atomic scatter kept as the simple Warp version.

Batching convention (every function here and in :mod:`nrsfm_kit.solver`): a leading batch dim B of
frame pairs on everything that changes per pair (points, motions, targets, weights, intrinsics);
graph data (nodes, edges, anchors, skinning weights, cols) shared by the batch, without B.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import torch
import warp as wp

import warp_kernels.gauss_newton as wk
from nrsfm_kit.kernels._bridge import contiguous, index_tensor, launch, wview
from nrsfm_kit.utils.checks import check_shape, check_tensor
from warp_kernels.types import float_types

__all__ = [
    "ResidualBlock",
    "BlockLayout",
    "pad_anchors",
    "warp_linearize",
    "warp_linearize_torch",
    "point_jacobian",
    "point_jacobian_torch",
    "reprojection_residual",
    "reprojection_residual_torch",
    "depth_residual",
    "depth_residual_torch",
    "point_residual",
    "point_residual_torch",
    "plane_residual",
    "plane_residual_torch",
    "image_residual",
    "image_residual_torch",
    "arap_terms",
    "arap_terms_torch",
    "normal_equations",
    "normal_equations_torch",
    "normal_equations_segmented",
    "normal_equations_blocks_torch",
    "normal_blocks_torch",
    "dense_from_blocks",
    "block_entry_index",
    "block_diagonal",
    "block_diagonal_torch",
    "jac_vec",
    "jac_vec_torch",
    "jac_t_vec",
    "jac_t_vec_torch",
    "solve_adjoint_jacobian",
    "solve_adjoint_jacobian_torch",
    "PARITY_CASES",
]

NUM_ANCHORS = wk.NUM_ANCHORS


class ResidualBlock(NamedTuple):
    """One residual family in block-sparse form.

    J (B, G, g, nb*6), r (B, G, g), cols (G, nb) int64 node ids (-1 unused); ``energy`` (B,) the
    family's energy when it is not sum r^2 (robust terms: sum rho(||r_group||^2)), else None.
    """

    J: torch.Tensor
    r: torch.Tensor
    cols: torch.Tensor
    energy: torch.Tensor | None = None


_FT = {torch.float32: wp.float32, torch.float64: wp.float64}


def _kind_dtype(kind: str, like: torch.Tensor):
    if kind == "i":
        return None
    ft = float_types(_FT[like.dtype])
    return {"s": None, "v2": ft.vec2, "v3": ft.vec3, "m33": ft.mat33}[kind]


def _views(tensors, kinds):
    return [wview(t, _kind_dtype(k, t)) for t, k in zip(tensors, kinds)]


class _Const(NamedTuple):
    value: float | int


class _KernelSpec(NamedTuple):
    """A residual kernel launch: inputs in kernel order (view kinds "s", "v2", "v3", "m33", "i" for the
    tensors, :class:`_Const` for scalars), outputs (shape, kind), launch dims."""

    kernel: object
    dim: tuple
    ins: tuple
    outs: tuple


class _ResidualKernelFunction(torch.autograd.Function):
    """Forward: launch a residual kernel; backward: Warp's generated adjoint of the same kernel."""

    @staticmethod
    def forward(ctx, spec: _KernelSpec, *tensors):
        tensors = [contiguous(t) for t in tensors]
        like = next(t for t in tensors if t.is_floating_point())
        outs = [torch.empty(shape, dtype=like.dtype, device=like.device) for shape, _ in spec.outs]
        if all(spec.dim):
            launch(spec.kernel, spec.dim, _inputs(spec, tensors, like), _views(outs, [k for _, k in spec.outs]),
                   like=like)
        ctx.spec = spec
        ctx.save_for_backward(*tensors, *outs)
        ctx.mark_non_differentiable(*[t for t in tensors if not t.is_floating_point()])
        return tuple(outs) if len(outs) > 1 else outs[0]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *gouts):
        spec = ctx.spec
        saved = ctx.saved_tensors
        n_in = len(saved) - len(spec.outs)
        tensors, outs = list(saved[:n_in]), list(saved[n_in:])
        like = next(t for t in tensors if t.is_floating_point())
        grads = [torch.zeros_like(t) if t.is_floating_point() else None for t in tensors]
        gouts = [torch.zeros_like(o) if g is None else contiguous(g) for g, o in zip(gouts, outs)]
        if all(spec.dim):
            adj_in, ti = [], 0
            for k in spec.ins:
                if isinstance(k, _Const):
                    adj_in.append(_scalar(0.0, like) if isinstance(k.value, float) else 0)
                else:
                    g = grads[ti]
                    adj_in.append(None if g is None else wview(g, _kind_dtype(k, g)))
                    ti += 1
            okinds = [k for _, k in spec.outs]
            launch(spec.kernel, spec.dim, _inputs(spec, tensors, like), _views(outs, okinds), like=like,
                   adjoint=True, adj_inputs=adj_in, adj_outputs=_views(gouts, okinds))
        need = ctx.needs_input_grad[1:]
        return (None, *[g if (g is not None and need[i]) else None for i, g in enumerate(grads)])


def _scalar(x: float, like: torch.Tensor):
    return wp.float64(x) if like.dtype == torch.float64 else wp.float32(x)


def _inputs(spec: _KernelSpec, tensors, like):
    out, ti = [], 0
    for k in spec.ins:
        if isinstance(k, _Const):
            out.append(_scalar(k.value, like) if isinstance(k.value, float) else int(k.value))
        else:
            t = tensors[ti]
            out.append(wview(t, _kind_dtype(k, t)))
            ti += 1
    return out


def _run(kernel, dim, ins: list, outs: list):
    """ins: [(tensor, kind) | _Const]; outs: [(shape, kind)]."""
    kinds = tuple(k if isinstance(k, _Const) else k[1] for k in ins)
    tensors = [k[0] for k in ins if not isinstance(k, _Const)]
    spec = _KernelSpec(kernel, tuple(int(d) for d in dim), kinds, tuple((tuple(s), k) for s, k in outs))
    return _ResidualKernelFunction.apply(spec, *tensors)


# ==================================================================================================
# argument checks shared by the public functions
# ==================================================================================================


def pad_anchors(anchors: torch.Tensor, anchor_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchors (P, A <= 4) int and their weights padded to the kernels' 4 anchors (-1 / 0): (P, 4) int64, (P, 4)."""
    A = anchors.shape[-1]
    if A > NUM_ANCHORS:
        raise ValueError(f"anchors: expected at most {NUM_ANCHORS} anchors per point, found {A}")
    anchors = anchors.long()
    if A < NUM_ANCHORS:
        pad = NUM_ANCHORS - A
        anchors = torch.cat([anchors, anchors.new_full((anchors.shape[0], pad), -1)], 1)
        anchor_weights = torch.cat([anchor_weights, anchor_weights.new_zeros(anchor_weights.shape[0], pad)], 1)
    return contiguous(anchors), anchor_weights


def _pad_anchors(anchors: torch.Tensor, anchor_weights: torch.Tensor, num_nodes: int):
    if anchors.shape[-1] > NUM_ANCHORS:  # the count first: a clearer error than an index range
        return pad_anchors(anchors, anchor_weights)
    return pad_anchors(index_tensor("anchors", anchors, num_nodes), anchor_weights)


def _check_q(q, dims, name="q"):
    return check_tensor(name, q, ("B", "P", 3), dims=dims)


# ==================================================================================================
# step 1: warp linearisation (shared by every point term)
# ==================================================================================================


def warp_linearize_torch(points: torch.Tensor, anchors: torch.Tensor, anchor_weights: torch.Tensor,
                         nodes: torch.Tensor, rotations: torch.Tensor, translations: torch.Tensor):
    """Pure-torch reference of :func:`warp_linearize`: (Q (B, P, 3), d (B, P, A, 3))."""
    valid = anchors >= 0
    idx = anchors.clamp(min=0).long()
    d = torch.einsum("bpaij,bpaj->bpai", rotations[:, idx], points.unsqueeze(-2) - nodes[idx])
    d = torch.where(valid.unsqueeze(-1), d, torch.zeros_like(d))
    alpha = torch.where(valid, anchor_weights, torch.zeros_like(anchor_weights))
    q = (alpha.unsqueeze(-1) * (d + nodes[idx] + translations[:, idx])).sum(-2)
    return q, d


def warp_linearize(points: torch.Tensor, anchors: torch.Tensor, anchor_weights: torch.Tensor, nodes: torch.Tensor,
                   rotations: torch.Tensor, translations: torch.Tensor):
    """Warped points and per-anchor lever arms (Warp), differentiable w.r.t. every float input.

    Args:
        points: (B, P, 3) source points, metres. anchors: (P, A) int node ids (A <= 4), -1 padding.
        anchor_weights: (P, A) skinning weights alpha. nodes: (N, 3) metres.
        rotations: (B, N, 3, 3). translations: (B, N, 3) metres.

    Returns:
        Q (B, P, 3) metres (eq. 2) and d (B, P, A, 3) = R_a (p - v_a) (0 on padding).
    """
    dims: dict = {}
    check_tensor("points", points, ("B", "P", 3), dims=dims)
    check_shape("anchors", anchors, ("P", "A"), dims)
    check_tensor("anchor_weights", anchor_weights, ("P", "A"), dims=dims)
    check_tensor("nodes", nodes, ("N", 3), dims=dims)
    check_tensor("rotations", rotations, ("B", "N", 3, 3), dims=dims)
    check_tensor("translations", translations, ("B", "N", 3), dims=dims)
    A = anchors.shape[1]
    anc, aw = _pad_anchors(anchors, anchor_weights, nodes.shape[0])
    B, P = points.shape[:2]
    q, d = _run(wk.warp_linearize_kernel, (B, P),
                [(points, "v3"), (anc, "i"), (aw, "s"), (nodes, "v3"), (rotations, "m33"), (translations, "v3")],
                [((B, P, 3), "v3"), ((B, P, NUM_ANCHORS, 3), "v3")])
    return q, d[:, :, :A]


# ==================================================================================================
# step 3: chain rule through the warp (shared by every point term)
# ==================================================================================================


def point_jacobian_torch(g: torch.Tensor, d: torch.Tensor, anchors: torch.Tensor,
                         anchor_weights: torch.Tensor) -> torch.Tensor:
    """Pure-torch reference of :func:`point_jacobian`: J (B, P, m, A*6)."""
    B, P, m, _ = g.shape
    A = anchors.shape[1]
    alpha = torch.where(anchors >= 0, anchor_weights, torch.zeros_like(anchor_weights)).view(1, P, 1, A, 1)
    ge = g.unsqueeze(3).expand(B, P, m, A, 3)
    rot = torch.cross(d.unsqueeze(2).expand(B, P, m, A, 3), ge, dim=-1)
    return torch.cat([alpha * rot, alpha * ge], -1).reshape(B, P, m, A * 6)


def point_jacobian(g: torch.Tensor, d: torch.Tensor, anchors: torch.Tensor, anchor_weights: torch.Tensor) -> torch.Tensor:
    """Jacobian rows of point terms w.r.t. the node increments (App. B.1), in Warp.

    Args:
        g: (B, P, m, 3) row gradients dr/dQ. d: (B, P, A, 3) lever arms from :func:`warp_linearize`.
        anchors: (P, A) int, -1 padding. anchor_weights: (P, A).

    Returns:
        J (B, P, m, A*6): column block a = (alpha_a d_a x g, alpha_a g) = (dr/d eps_a, dr/d t_a).
    """
    dims: dict = {}
    check_tensor("g", g, ("B", "P", "m", 3), dims=dims)
    check_tensor("d", d, ("B", "P", "A", 3), dims=dims)
    check_shape("anchors", anchors, ("P", "A"), dims)
    check_tensor("anchor_weights", anchor_weights, ("P", "A"), dims=dims)
    A = anchors.shape[1]
    anc, aw = _pad_anchors(anchors, anchor_weights, 2**62)
    if A < NUM_ANCHORS:
        d = torch.cat([d, d.new_zeros(*d.shape[:2], NUM_ANCHORS - A, 3)], 2)
    B, P, m = g.shape[:3]
    J = _run(wk.point_jacobian_kernel, (B, P, m), [(g, "v3"), (d, "v3"), (anc, "i"), (aw, "s")],
             [((B, P, m, 24), "s")])
    return J[..., : 6 * A]


# ==================================================================================================
# step 2: residuals of the built-in point terms
# ==================================================================================================


def reprojection_residual_torch(q, corr, w, intrinsics, min_depth: float = 1e-3):
    """Pure-torch reference of :func:`reprojection_residual`."""
    fx, fy, cx, cy = (intrinsics[:, k, None] for k in range(4))
    z = q[..., 2]
    ok = z > min_depth
    iz = 1.0 / torch.where(ok, z, torch.ones_like(z))
    wm = w * ok.to(q.dtype)
    zero = torch.zeros_like(z)
    r = torch.stack([wm * (fx * q[..., 0] * iz + cx - corr[..., 0]), wm * (fy * q[..., 1] * iz + cy - corr[..., 1])], -1)
    g0 = torch.stack([wm * fx * iz, zero, -wm * fx * q[..., 0] * iz * iz], -1)
    g1 = torch.stack([zero, wm * fy * iz, -wm * fy * q[..., 1] * iz * iz], -1)
    return r, torch.stack([g0, g1], -2)


def reprojection_residual(q: torch.Tensor, corr: torch.Tensor, w: torch.Tensor, intrinsics: torch.Tensor,
                          min_depth: float = 1e-3):
    """2D reprojection rows (eq. 9) w (pi(Q) - c_u) in Warp.

    Args:
        q: (B, P, 3) warped points, metres. corr: (B, P, 2) target pixels (u = column, v = row).
        w: (B, P) row weights sqrt(lambda_2D) w_u. intrinsics: (B, 4) fx, fy, cx, cy (pixels).
        min_depth: rows are zero where Q_z <= min_depth (metres).

    Returns:
        r (B, P, 2) pixels (weighted), g (B, P, 2, 3) = dr/dQ.
    """
    dims: dict = {}
    _check_q(q, dims)
    check_tensor("corr", corr, ("B", "P", 2), dims=dims)
    check_tensor("w", w, ("B", "P"), dims=dims)
    check_tensor("intrinsics", intrinsics, ("B", 4), dims=dims)
    B, P = q.shape[:2]
    return _run(wk.reprojection_residual_kernel, (B, P),
                [(q, "v3"), (corr, "v2"), (w, "s"), (intrinsics, "s"), _Const(float(min_depth))],
                [((B, P, 2), "s"), ((B, P, 2, 3), "v3")])


def depth_residual_torch(q, target_z, w):
    """Pure-torch reference of :func:`depth_residual`."""
    r = (w * (q[..., 2] - target_z)).unsqueeze(-1)
    zero = torch.zeros_like(w)
    return r, torch.stack([zero, zero, w], -1).unsqueeze(-2)


def depth_residual(q: torch.Tensor, target_z: torch.Tensor, w: torch.Tensor):
    """Depth row (eq. 10) w (Q_z - D_t(c_u)) in Warp: q (B, P, 3), target_z (B, P) metres, w (B, P).

    Returns r (B, P, 1) metres (weighted), g (B, P, 1, 3)."""
    dims: dict = {}
    _check_q(q, dims)
    check_tensor("target_z", target_z, ("B", "P"), dims=dims)
    check_tensor("w", w, ("B", "P"), dims=dims)
    B, P = q.shape[:2]
    return _run(wk.depth_residual_kernel, (B, P), [(q, "v3"), (target_z, "s"), (w, "s")],
                [((B, P, 1), "s"), ((B, P, 1, 3), "v3")])


def point_residual_torch(q, target, w):
    """Pure-torch reference of :func:`point_residual`."""
    eye = torch.eye(3, dtype=q.dtype, device=q.device)
    return w.unsqueeze(-1) * (q - target), w[..., None, None] * eye


def point_residual(q: torch.Tensor, target: torch.Tensor, w: torch.Tensor):
    """Point-to-point rows w (Q - y) in Warp: q, target (B, P, 3) metres, w (B, P).

    Returns r (B, P, 3), g (B, P, 3, 3) = w I."""
    dims: dict = {}
    _check_q(q, dims)
    check_tensor("target", target, ("B", "P", 3), dims=dims)
    check_tensor("w", w, ("B", "P"), dims=dims)
    B, P = q.shape[:2]
    return _run(wk.point_residual_kernel, (B, P), [(q, "v3"), (target, "v3"), (w, "s")],
                [((B, P, 3), "s"), ((B, P, 3, 3), "v3")])


def plane_residual_torch(q, target, normals, w):
    """Pure-torch reference of :func:`plane_residual`."""
    r = (w * (normals * (q - target)).sum(-1)).unsqueeze(-1)
    return r, (w.unsqueeze(-1) * normals).unsqueeze(-2)


def plane_residual(q: torch.Tensor, target: torch.Tensor, normals: torch.Tensor, w: torch.Tensor):
    """Point-to-plane row w n . (Q - y) in Warp: q, target, normals (B, P, 3), w (B, P).

    Returns r (B, P, 1), g (B, P, 1, 3) = w n."""
    dims: dict = {}
    _check_q(q, dims)
    check_tensor("target", target, ("B", "P", 3), dims=dims)
    check_tensor("normals", normals, ("B", "P", 3), dims=dims)
    check_tensor("w", w, ("B", "P"), dims=dims)
    B, P = q.shape[:2]
    return _run(wk.plane_residual_kernel, (B, P), [(q, "v3"), (target, "v3"), (normals, "v3"), (w, "s")],
                [((B, P, 1), "s"), ((B, P, 1, 3), "v3")])


def image_residual_torch(q, image, map_index, offset, target, w, intrinsics, min_depth: float = 1e-3,
                         outside: float | None = None):
    """Pure-torch reference of :func:`image_residual` (same bilinear weights and gradient)."""
    B, P = q.shape[:2]
    _, M, H, W, C = image.shape
    fx, fy, cx, cy = (intrinsics[:, k, None] for k in range(4))
    z = q[..., 2]
    front = z > min_depth
    zs = torch.where(front, z, torch.ones_like(z))
    u = fx * q[..., 0] / zs + cx - offset[..., 0]
    v = fy * q[..., 1] / zs + cy - offset[..., 1]
    inside = front & (u >= 0) & (u <= W - 1) & (v >= 0) & (v <= H - 1)
    u = torch.where(inside, u, torch.zeros_like(u))
    v = torch.where(inside, v, torch.zeros_like(v))
    u0 = u.detach().floor().long().clamp(max=max(W - 2, 0))
    v0 = v.detach().floor().long().clamp(max=max(H - 2, 0))
    u1 = (u0 + 1).clamp(max=W - 1)
    v1 = (v0 + 1).clamp(max=H - 1)
    fu = (u - u0.to(u.dtype)).unsqueeze(-1)
    fv = (v - v0.to(v.dtype)).unsqueeze(-1)
    flat = image.reshape(B, M * H * W, C)
    base = map_index.long().view(1, P) * (H * W)

    def at(vv, uu):
        return flat.gather(1, (base + vv * W + uu).unsqueeze(-1).expand(B, P, C))

    i00, i01, i10, i11 = at(v0, u0), at(v0, u1), at(v1, u0), at(v1, u1)
    val = (1 - fv) * ((1 - fu) * i00 + fu * i01) + fv * ((1 - fu) * i10 + fu * i11)
    gu = (1 - fv) * (i01 - i00) + fv * (i11 - i10)
    gv = (1 - fu) * (i10 - i00) + fu * (i11 - i01)
    iz = 1.0 / zs
    zero = torch.zeros_like(z)
    du = torch.stack([fx * iz, zero, -fx * q[..., 0] * iz * iz], -1)
    dv = torch.stack([zero, fy * iz, -fy * q[..., 1] * iz * iz], -1)
    m = (w * inside.to(q.dtype)).unsqueeze(-1)
    r = m * (val - target)
    if outside is not None:
        r = torch.where(inside.unsqueeze(-1), r, w.unsqueeze(-1) * (outside - target))
    g = m.unsqueeze(-1) * (gu.unsqueeze(-1) * du.unsqueeze(-2) + gv.unsqueeze(-1) * dv.unsqueeze(-2))
    return r, g


def image_residual(q: torch.Tensor, image: torch.Tensor, map_index: torch.Tensor, offset: torch.Tensor,
                   target: torch.Tensor, w: torch.Tensor, intrinsics: torch.Tensor, min_depth: float = 1e-3,
                   outside: float | None = None):
    """Rows w (I_m(pi(Q) - o) - c) of any bilinearly sampled 2D map, with the image-gradient Jacobian (Warp).

    The photometric (I = target image, c = source colours), silhouette (I = distance transform of the
    target mask, c = 0; DeepDeform App. D) and heatmap terms (I = H, c = 1: -(1 - H(pi(p))),
    DeepDeform sec. 4.2) are all this function. Differentiable w.r.t. q, the maps, offset, target, w.

    Args:
        q: (B, P, 3) warped points, metres. image: (B, M, H, W, C) maps, channels last (M maps per pair,
            e.g. one heatmap patch per match). map_index: (P,) int in [0, M): the map of each point.
        offset: (B, P, 2) pixel position of each map's pixel (0, 0) in the image (patch corner; 0 for
            full images). target: (B, P, C). w: (B, P) sqrt(lambda) w. intrinsics: (B, 4).
        min_depth: metres; points behind it, or projecting outside [0, W-1] x [0, H-1], give zero rows,
        outside: ... or, when given, the constant rows w (outside - c) without gradient (the value of the
            maps beyond their pixels, e.g. 0 for heatmaps).

    Returns:
        r (B, P, C), g (B, P, C, 3) = w dI/d(u, v) d pi/dQ.
    """
    dims: dict = {}
    _check_q(q, dims)
    check_tensor("image", image, ("B", "M", "H", "W", "C"), dims=dims)
    check_tensor("offset", offset, ("B", "P", 2), dims=dims)
    check_tensor("target", target, ("B", "P", "C"), dims=dims)
    check_tensor("w", w, ("B", "P"), dims=dims)
    check_tensor("intrinsics", intrinsics, ("B", 4), dims=dims)
    check_shape("map_index", map_index, ("P",), dims)
    B, M, H, W, C = image.shape
    if H < 2 or W < 2:
        raise ValueError(f"image: expected maps of at least 2x2 pixels, found {H}x{W}")
    idx = index_tensor("map_index", map_index, M)
    if idx.numel() and int(idx.min()) < 0:
        raise ValueError(f"map_index: expected ids in [0, {M}), found {int(idx.min())}")
    P = q.shape[1]
    return _run(wk.image_residual_kernel, (B, P),
                [(q, "v3"), (image.reshape(B * M, H, W, C), "s"), (idx, "i"), (offset, "v2"), (target, "s"),
                 (w, "s"), (intrinsics, "s"), _Const(int(M)), _Const(float(min_depth)),
                 _Const(0.0 if outside is None else float(outside)), _Const(0 if outside is None else 1)],
                [((B, P, C), "s"), ((B, P, C, 3), "v3")])


# ==================================================================================================
# ARAP
# ==================================================================================================


def arap_terms_torch(nodes: torch.Tensor, edges: torch.Tensor, scale: torch.Tensor, rotations: torch.Tensor,
                     translations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pure-torch ARAP residuals and Jacobians (reference of :func:`arap_terms`)."""
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


def arap_terms(nodes: torch.Tensor, edges: torch.Tensor, scale: torch.Tensor, rotations: torch.Tensor,
               translations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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
    edges = index_tensor("edges", edges, nodes.shape[0])
    B, N = rotations.shape[:2]
    K = edges.shape[1]
    return _run(wk.arap_terms_kernel, (B, N, K),
                [(nodes, "v3"), (edges, "i"), (scale, "s"), (rotations, "m33"), (translations, "v3")],
                [((B, N * K, 3), "s"), ((B, N * K, 3, 12), "s")])


# ==================================================================================================
# normal equations
# ==================================================================================================


def _cols6(cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(G, nb) node ids -> (G, nb*6) column ids (clamped) and their validity."""
    valid = (cols >= 0).repeat_interleave(6, dim=1)
    c6 = (cols.clamp(min=0).long().unsqueeze(-1) * 6 + torch.arange(6, device=cols.device)).reshape(
        cols.shape[0], cols.shape[1] * 6
    )  # explicit width: a family with zero residual rows (G = 0) must work too
    return c6, valid


def normal_equations_torch(J: torch.Tensor, r: torch.Tensor, cols: torch.Tensor, num_nodes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pure-torch A = J^T J (B, 6N, 6N) and b = J^T r (B, 6N): per-group products scattered entry by entry."""
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


class NormalEquationsFunction(torch.autograd.Function):
    """A = J^T J, b = J^T r in Warp (atomics or segmented); backward by the per-group adjoint kernel."""

    @staticmethod
    def forward(ctx, J, r, cols, num_nodes, layout):
        J, r = contiguous(J), contiguous(r)
        B, G = r.shape[:2]
        n = 6 * num_nodes
        A = torch.zeros(B, n, n, dtype=J.dtype, device=J.device)
        b = torch.zeros(B, n, dtype=J.dtype, device=J.device)
        if B * G:
            if layout is None:
                launch(wk.normal_equations_kernel, (B, G), [wview(J), wview(r), wview(cols)], [wview(A), wview(b)],
                       like=J)
            else:
                p, nd = layout.pairs, layout.nodes
                if p.count:
                    launch(wk.pair_gram_kernel, (B, p.count, 36),
                           [wview(J), wview(p.group), wview(p.a), wview(p.c), wview(p.seg), wview(p.i), wview(p.j)],
                           [wview(A)], like=J)
                if nd.count:
                    launch(wk.node_rhs_kernel, (B, nd.count, 6),
                           [wview(J), wview(r), wview(nd.group), wview(nd.a), wview(nd.seg), wview(nd.i)],
                           [wview(b)], like=J)
        ctx.save_for_backward(J, r, cols)
        ctx.n = n
        return A, b

    @staticmethod
    @torch.autograd.function.once_differentiable
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
        return dJ, dr, None, None, None


def _check_block(J, r, cols, num_nodes):
    dims: dict = {}
    check_tensor("J", J, ("B", "G", "g", None), dims=dims, finite=False)
    check_tensor("r", r, ("B", "G", "g"), dims=dims, finite=False)
    check_shape("cols", cols, ("G", None), dims)
    if J.shape[-1] != 6 * cols.shape[1]:
        raise ValueError(f"J: expected last dimension 6 * nb = {6 * cols.shape[1]}, found {J.shape[-1]}")
    return index_tensor("cols", cols, num_nodes)


def normal_equations(J: torch.Tensor, r: torch.Tensor, cols: torch.Tensor, num_nodes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A = J^T J (B, 6N, 6N) and b = J^T r (B, 6N), scattered with atomics in Warp; differentiable
    (explicit adjoint kernel: dJ_row = J_row (gA + gA^T) + r_row gb, dr_row = J_row . gb)."""
    cols = _check_block(J, r, cols, num_nodes)
    return NormalEquationsFunction.apply(J, r, cols, int(num_nodes), None)


# --------------------------------------------------------------------------------------------------
# segmented (block) assembly
# --------------------------------------------------------------------------------------------------


class _Segments(NamedTuple):
    """Entries (group, block a, block c) sorted by output segment; CSR offsets ``seg``; segment ids i, j."""

    group: torch.Tensor
    a: torch.Tensor
    c: torch.Tensor
    seg: torch.Tensor
    i: torch.Tensor
    j: torch.Tensor
    entry: torch.Tensor  # (E,) flat position of each entry in the per-group product layout
    owner: torch.Tensor  # (E,) segment of each entry
    count: int

    @staticmethod
    def build(keys: torch.Tensor, group: torch.Tensor, a: torch.Tensor, c: torch.Tensor, entry: torch.Tensor,
              num_nodes: int, pair: bool) -> _Segments:
        order = torch.argsort(keys, stable=True)
        keys, group, a, c, entry = keys[order], group[order], a[order], c[order], entry[order]
        uniq, owner, counts = torch.unique_consecutive(keys, return_inverse=True, return_counts=True)
        seg = torch.zeros(uniq.numel() + 1, dtype=torch.int64, device=keys.device)
        seg[1:] = torch.cumsum(counts, 0)
        i, j = (uniq // num_nodes, uniq % num_nodes) if pair else (uniq, uniq)
        return _Segments(group, a, c, seg, i, j, entry, owner, int(uniq.numel()))


class BlockLayout:
    """Which groups of a residual family feed which (node, node) pair of J^T J and node of J^T r.

    Built once per solve from ``cols`` (G, nb) (the node ids do not change between iterations): the
    entries (group g, blocks a, c) with both ids valid, sorted by the pair (cols[g, a], cols[g, c]),
    as CSR segments. Both :func:`normal_equations_segmented` (Warp) and
    :func:`normal_equations_blocks_torch` (torch) reduce over these segments instead of scattering
    every scalar product with atomics.
    """

    def __init__(self, cols: torch.Tensor, num_nodes: int):
        cols = index_tensor("cols", cols, num_nodes)
        if cols.dim() != 2:
            raise ValueError(f"cols: expected shape (G, nb), found {tuple(cols.shape)}")
        self.cols, self.num_nodes = cols, int(num_nodes)
        G, nb = cols.shape
        self.num_groups, self.num_blocks = G, nb
        dev = cols.device
        g = torch.arange(G, device=dev).view(G, 1, 1).expand(G, nb, nb)
        a = torch.arange(nb, device=dev).view(1, nb, 1).expand(G, nb, nb)
        c = torch.arange(nb, device=dev).view(1, 1, nb).expand(G, nb, nb)
        ca, cc = cols[:, :, None].expand(G, nb, nb), cols[:, None, :].expand(G, nb, nb)
        ok = (ca >= 0) & (cc >= 0)
        entry = torch.arange(G * nb * nb, device=dev).view(G, nb, nb)
        self.pairs = _Segments.build((ca * num_nodes + cc)[ok], g[ok], a[ok], c[ok], entry[ok], num_nodes, True)
        g1 = torch.arange(G, device=dev).view(G, 1).expand(G, nb)
        a1 = torch.arange(nb, device=dev).view(1, nb).expand(G, nb)
        ok1 = cols >= 0
        e1 = torch.arange(G * nb, device=dev).view(G, nb)
        self.nodes = _Segments.build(cols[ok1], g1[ok1], a1[ok1], a1[ok1], e1[ok1], num_nodes, False)
        self._csr: dict = {}

    def csr(self, which: str, dtype: torch.dtype) -> torch.Tensor:
        """Sparse (segments x entries) CSR matrix of ones: reduced = S @ per-entry values."""
        key = (which, dtype)
        if key not in self._csr:
            s = self.pairs if which == "pairs" else self.nodes
            width = self.num_groups * self.num_blocks * (self.num_blocks if which == "pairs" else 1)
            ones = torch.ones(s.entry.numel(), dtype=dtype, device=s.seg.device)
            with warnings.catch_warnings():  # "sparse CSR support is in beta": we use only CSR @ dense
                warnings.simplefilter("ignore", UserWarning)
                self._csr[key] = torch.sparse_csr_tensor(s.seg, s.entry, ones, size=(s.count, width))
        return self._csr[key]


def normal_equations_segmented(J: torch.Tensor, r: torch.Tensor, layout: BlockLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """A = J^T J, b = J^T r in Warp by segmented reductions over :class:`BlockLayout` (no atomics;
    deterministic on CUDA); differentiable by the same adjoint kernel as :func:`normal_equations`."""
    if not isinstance(layout, BlockLayout):
        raise ValueError(f"layout: expected a BlockLayout, found {type(layout).__name__}")
    cols = _check_block(J, r, layout.cols, layout.num_nodes)
    return NormalEquationsFunction.apply(J, r, cols, layout.num_nodes, layout)


class _SegmentSum(torch.autograd.Function):
    """out = S @ x for a 0/1 CSR matrix S in which every column has at most one entry (each entry
    belongs to one segment); backward gathers: dx[entry] = dout[owner(entry)]."""

    @staticmethod
    def forward(ctx, x, S, entry, owner):
        ctx.save_for_backward(entry, owner)
        ctx.rows = x.shape[0]
        return S @ x

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gout):
        entry, owner = ctx.saved_tensors
        if entry.numel() == ctx.rows:  # every entry is used (the common case): one gather, no scatter
            inverse = torch.empty_like(owner)
            inverse[entry] = owner
            return gout.index_select(0, inverse), None, None, None
        gx = gout.new_zeros(ctx.rows, *gout.shape[1:])
        gx[entry] = gout[owner]
        return gx, None, None, None


def normal_blocks_torch(J: torch.Tensor, r: torch.Tensor, layout: BlockLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """The non-zero 6x6 blocks of A = J^T J and b = J^T r in torch, never forming the dense matrix.

    The per-group products J_a^T J_c (6x6 for every block pair a, c) come from one batched matmul and are
    summed over the groups of each (node, node) pair by a sparse CSR product (multi-threaded); autograd
    differentiates every step.

    Returns:
        blocks (B, U, 6, 6): block u is A[6i:6i+6, 6j:6j+6] for (i, j) = (layout.pairs.i[u], layout.pairs.j[u]);
        b (B, 6N).
    """
    if not isinstance(layout, BlockLayout):
        raise ValueError(f"layout: expected a BlockLayout, found {type(layout).__name__}")
    _check_block(J, r, layout.cols, layout.num_nodes)
    B, G, g, nb6 = J.shape
    nb, N = nb6 // 6, layout.num_nodes
    Jb = J.view(B, G, g, nb, 6)
    prod = torch.einsum("bgrak,bgrcl->bgackl", Jb, Jb)  # per group and block pair: 6x6 products
    # (E, B*36) with E = (g, a, c): a view when B = 1, one copy otherwise
    prod = prod.reshape(G * nb * nb, 36) if B == 1 else prod.permute(1, 2, 3, 0, 4, 5).reshape(G * nb * nb, B * 36)
    p = layout.pairs
    red = _SegmentSum.apply(prod, layout.csr("pairs", J.dtype), p.entry, p.owner)  # (U, B*36)
    rhs = torch.einsum("bgrak,bgr->bgak", Jb, r)
    rhs = rhs.reshape(G * nb, 6) if B == 1 else rhs.permute(1, 2, 0, 3).reshape(G * nb, B * 6)
    nd = layout.nodes
    redb = _SegmentSum.apply(rhs, layout.csr("nodes", J.dtype), nd.entry, nd.owner)  # (Un, B*6)
    bb = torch.zeros(N, B * 6, dtype=J.dtype, device=J.device).index_add(0, nd.i, redb)
    return red.view(p.count, B, 6, 6).transpose(0, 1), bb.view(N, B, 6).permute(1, 0, 2).reshape(B, 6 * N)


def dense_from_blocks(blocks: torch.Tensor, pair_i: torch.Tensor, pair_j: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Dense (B, 6N, 6N) matrix from 6x6 blocks (B, U, 6, 6) at node pairs (pair_i, pair_j) (repeats add)."""
    B = blocks.shape[0]
    n = 6 * num_nodes
    return torch.zeros(B, n * n, dtype=blocks.dtype, device=blocks.device).index_add(
        1, block_entry_index(pair_i, pair_j, num_nodes), blocks.reshape(B, -1)).view(B, n, n)


def block_entry_index(pair_i: torch.Tensor, pair_j: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """(U*36,) flat positions in a (6N, 6N) matrix of the entries of 6x6 blocks at (pair_i, pair_j)."""
    k = torch.arange(6, device=pair_i.device)
    rows = (6 * pair_i).view(-1, 1, 1) + k.view(1, 6, 1)
    cols = (6 * pair_j).view(-1, 1, 1) + k.view(1, 1, 6)
    return (rows * (6 * num_nodes) + cols).reshape(-1)


def normal_equations_blocks_torch(J: torch.Tensor, r: torch.Tensor, layout: BlockLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """A = J^T J (B, 6N, 6N), b = J^T r (B, 6N) in torch, block by block (:func:`normal_blocks_torch`)."""
    blocks, b = normal_blocks_torch(J, r, layout)
    return dense_from_blocks(blocks, layout.pairs.i, layout.pairs.j, layout.num_nodes), b


# --------------------------------------------------------------------------------------------------
# block products of the matrix-free PCG
# --------------------------------------------------------------------------------------------------


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


def solve_adjoint_jacobian_torch(J: torch.Tensor, r: torch.Tensor, cols: torch.Tensor, x: torch.Tensor,
                                 gc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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


def _detached(*ts):
    return [contiguous(t.detach()) for t in ts]


def block_diagonal(J: torch.Tensor, cols: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Diagonal 6x6 blocks of J^T J (B, N, 6, 6) in Warp (not differentiable; PCG preconditioner)."""
    (J,) = _detached(J)
    cols = index_tensor("cols", cols, num_nodes)
    D = torch.zeros(J.shape[0], num_nodes, 6, 6, dtype=J.dtype, device=J.device)
    if J.shape[0] * J.shape[1]:
        launch(wk.block_diagonal_kernel, J.shape[:2], [wview(J), wview(cols)], [wview(D)], like=J)
    return D


def jac_vec(J: torch.Tensor, cols: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """u = J v (B, G, g) in Warp (not differentiable; used inside the PCG Function)."""
    J, v = _detached(J, v)
    cols = index_tensor("cols", cols, v.shape[1] // 6)
    u = torch.zeros(J.shape[:3], dtype=J.dtype, device=J.device)
    if J.shape[0] * J.shape[1]:
        launch(wk.jac_vec_kernel, J.shape[:2], [wview(J), wview(cols), wview(v)], [wview(u)], like=J)
    return u


def jac_t_vec(J: torch.Tensor, cols: torch.Tensor, u: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """y = J^T u (B, 6N) in Warp with atomics (not differentiable; used inside the PCG Function)."""
    J, u = _detached(J, u)
    cols = index_tensor("cols", cols, num_nodes)
    y = torch.zeros(J.shape[0], 6 * num_nodes, dtype=J.dtype, device=J.device)
    if J.shape[0] * J.shape[1]:
        launch(wk.jac_t_vec_kernel, J.shape[:2], [wview(J), wview(cols), wview(u)], [wview(y)], like=J)
    return y


def solve_adjoint_jacobian(J: torch.Tensor, r: torch.Tensor, cols: torch.Tensor, x: torch.Tensor,
                           gc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp version of :func:`solve_adjoint_jacobian_torch`: (dL/dJ, dL/dr) of x = -(J^T J + D)^-1 J^T r."""
    J, r, x, gc = _detached(J, r, x, gc)
    cols = index_tensor("cols", cols, x.shape[1] // 6)
    dJ = torch.zeros_like(J)
    dr = torch.zeros_like(r)
    if J.shape[0] * J.shape[1]:
        launch(wk.solve_adjoint_jacobian_kernel, J.shape[:2],
               [wview(J), wview(r), wview(cols), wview(x), wview(gc)], [wview(dJ), wview(dr)], like=J)
    return dJ, dr


# ==================================================================================================
# parity cases: small inputs for every Warp function / torch reference pair (tests, gpu_check)
# ==================================================================================================


def _so3(w: torch.Tensor) -> torch.Tensor:
    from nrsfm_kit.geometry import so3_exp

    return so3_exp(w)


def _case_inputs(device: str, dtype: torch.dtype, seed: int = 0, B: int = 2, P: int = 16, N: int = 6, A: int = 4):
    g = torch.Generator().manual_seed(seed)

    def rn(*s):
        return torch.randn(*s, generator=g, dtype=torch.float64)

    nodes = rn(N, 3) * 0.1 + torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    pts = rn(B, P, 3) * 0.1 + torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    anc = torch.randint(0, N, (P, A), generator=g)
    anc[0, -1] = -1
    aw = torch.rand(P, A, generator=g, dtype=torch.float64)
    R = _so3(rn(B, N, 3) * 0.3)
    t = rn(B, N, 3) * 0.05
    out = dict(nodes=nodes, points=pts, anchors=anc, anchor_weights=aw, R=R, t=t,
               q=pts + rn(B, P, 3) * 0.02, corr=torch.rand(B, P, 2, generator=g, dtype=torch.float64) * 60,
               target_z=torch.rand(B, P, generator=g, dtype=torch.float64) + 0.5, target=rn(B, P, 3),
               normals=rn(B, P, 3), w=torch.rand(B, P, generator=g, dtype=torch.float64),
               intrinsics=torch.tensor([[80.0, 85.0, 30.0, 28.0]] * B, dtype=torch.float64),
               g=rn(B, P, 3, 3), d=rn(B, P, A, 3) * 0.1,
               image=torch.rand(B, 2, 40, 50, 3, generator=g, dtype=torch.float64),
               map_index=torch.randint(0, 2, (P,), generator=g),
               offset=torch.rand(B, P, 2, generator=g, dtype=torch.float64) * 8,
               target_c=torch.rand(B, P, 3, generator=g, dtype=torch.float64),
               edges=torch.randint(-1, N, (N, 3), generator=g), scale=torch.rand(N, 3, generator=g, dtype=torch.float64))
    # keep projected image samples away from the bilinear cell edges (where the reference derivative jumps)
    out["q_img"] = out["q"].clone()
    out["q_img"][..., :2] = out["q_img"][..., :2] * 0.8
    return {k: (v.to(device=device, dtype=dtype) if v.is_floating_point() else v.to(device)) for k, v in out.items()}


def _block_inputs(device: str, dtype: torch.dtype, B: int = 2, G: int = 11, g: int = 5, nb: int = 3, N: int = 6):
    """A random residual family (J, r, cols) with a repeated node inside a group, N, and two 6N vectors."""
    gen = torch.Generator().manual_seed(0)
    J = torch.randn(B, G, g, nb * 6, generator=gen, dtype=torch.float64)
    r = torch.randn(B, G, g, generator=gen, dtype=torch.float64)
    cols = torch.randint(-1, N, (G, nb), generator=gen)
    cols[0] = torch.tensor([1, 1, 2][:nb])
    v, u = torch.randn(2, B, 6 * N, generator=gen, dtype=torch.float64)
    f = lambda t: t.to(device=device, dtype=dtype)  # noqa: E731
    return f(J), f(r), cols.to(device), N, f(v), f(u)


#: name -> (inputs(device, dtype) -> args, float argument positions); used by the parity tests and
#: ``benchmarks/gpu_check.py`` for every Warp function of this module with a ``*_torch`` twin
PARITY_CASES = {
    "warp_linearize": (lambda dev, dt: [(x := _case_inputs(dev, dt))["points"], x["anchors"], x["anchor_weights"],
                                        x["nodes"], x["R"], x["t"]], [0, 2, 3, 4, 5]),
    "point_jacobian": (lambda dev, dt: [(x := _case_inputs(dev, dt))["g"], x["d"], x["anchors"],
                                        x["anchor_weights"]], [0, 1, 3]),
    "reprojection_residual": (lambda dev, dt: [(x := _case_inputs(dev, dt))["q"], x["corr"], x["w"],
                                               x["intrinsics"]], [0, 1, 2, 3]),
    "depth_residual": (lambda dev, dt: [(x := _case_inputs(dev, dt))["q"], x["target_z"], x["w"]], [0, 1, 2]),
    "point_residual": (lambda dev, dt: [(x := _case_inputs(dev, dt))["q"], x["target"], x["w"]], [0, 1, 2]),
    "plane_residual": (lambda dev, dt: [(x := _case_inputs(dev, dt))["q"], x["target"], x["normals"], x["w"]],
                       [0, 1, 2, 3]),
    "image_residual": (lambda dev, dt: [(x := _case_inputs(dev, dt))["q_img"], x["image"], x["map_index"],
                                        x["offset"], x["target_c"], x["w"], x["intrinsics"]], [0, 1, 3, 4, 5, 6]),
    "image_residual[outside]": (lambda dev, dt: [(x := _case_inputs(dev, dt))["q"] * 3, x["image"], x["map_index"],
                                                x["offset"], x["target_c"], x["w"], x["intrinsics"], 1e-3, 0.0],
                               [0, 1, 3, 4, 5, 6]),
    "arap_terms": (lambda dev, dt: [(x := _case_inputs(dev, dt))["nodes"], x["edges"], x["scale"], x["R"], x["t"]],
                   [0, 2, 3, 4]),
    # block products (the PCG ones are not differentiable: values only)
    "normal_equations": (lambda dev, dt: [*(b := _block_inputs(dev, dt))[:3], b[3]], [0, 1]),
    "block_diagonal": (lambda dev, dt: [(b := _block_inputs(dev, dt))[0], b[2], b[3]], []),
    "jac_vec": (lambda dev, dt: [(b := _block_inputs(dev, dt))[0], b[2], b[4]], []),
    "jac_t_vec": (lambda dev, dt: [(b := _block_inputs(dev, dt))[0], b[2], b[1], b[3]], []),
    "solve_adjoint_jacobian": (lambda dev, dt: [*(b := _block_inputs(dev, dt))[:3], b[4], b[5]], []),
}
