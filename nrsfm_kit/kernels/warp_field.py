"""Embedded-deformation warp field Q and ARAP edge residuals: Warp kernels bridged to torch autograd.

This module is the template every later kernel bridge follows:

1. a **pure-torch reference** (``*_torch``) of the maths, batched, differentiable by autograd, used to
   teach (notebooks) and to test (parity of values and gradients);
2. a ``torch.autograd.Function`` whose ``forward`` launches a Warp kernel on zero-copy views of the
   input tensors and whose ``backward`` launches the hand-written adjoint kernel
   (:mod:`warp_kernels.warp_field`), writing into fresh torch tensors;
3. a **public function** that validates its inputs (shapes, dtypes, devices, index ranges,
   finiteness: errors name the argument, the expected and the found value) and calls the Function.

Checklist for a new kernel topic (what this module and ``warp_kernels/warp_field.py`` do):

- kernels generic over the float type (``typing.Any``), float32 and float64 overloads declared up front
  with :func:`warp_kernels.types.declare_float_overloads` so the module compiles once (vector / matrix
  arrays via :func:`warp_kernels.types.float_types`); ``wp.set_module_options({"enable_backward": False})``
  when the adjoints are hand-written; no Warp private attributes;
- integer indices as :data:`warp_kernels.types.INDEX` (int64) with -1 padding, converted and checked to
  lie in [-1, N) by :func:`nrsfm_kit.kernels._bridge.index_tensor` before launch (an out-of-range index
  would read arbitrary memory in the kernel); shapes through :mod:`nrsfm_kit.utils.checks`;
- every launch, forward and backward, through :func:`nrsfm_kit.kernels._bridge.launch` (device of the
  inputs, torch's current CUDA stream); backwards that launch kernels are ``once_differentiable``;
- scatter-adds of gradients with ``wp.atomic_add`` into zero-initialised torch tensors; rows owned by
  one thread written directly;
- tests (``tests/kernels/test_<topic>.py``, with the ``device`` / ``dtype_tol`` fixtures and the helpers
  of :mod:`nrsfm_kit.utils.testing`): ``assert_parity`` of values and every gradient against the torch
  reference in float32 and float64 on CPU and (when present) CUDA; ``gradcheck64`` of the Warp Function
  and of the reference; exact cases (here: rigid motions); every bad input. ``benchmarks/gpu_check.py``
  lists the new bridge so its parity is also checked on a GPU.

Maths (Neural Non-Rigid Tracking, Bozic et al. NeurIPS 2020, eq. 2 / eq. 17, eq. 11; embedded
deformation, Sumner et al. 2007). A node i has position v_i (metres), rotation R_i and translation t_i
(metres). A point p with anchors k_1..k_A and skinning weights alpha_a moves to

    Q(p) = sum_a alpha_a ( R_{k_a} (p - v_{k_a}) + v_{k_a} + t_{k_a} )                     (eq. 2)

and the as-rigid-as-possible regulariser compares what node i predicts for its neighbour j with
where j actually goes:

    r_ij = R_i (v_j - v_i) + v_i + t_i - (v_j + t_j)                                       (eq. 11)

Conventions: anchors / edges are int64 with -1 padding (skipped: contributes nothing, residual 0);
weights are used as given (build_graph normalises them to sum to 1); a point with no valid anchor
maps to 0. Rotations are matrices; :func:`warp_points_axis_angle` and :func:`arap_residuals_axis_angle`
are front ends taking axis-angle vectors omega (R = exp(omega^)), and :func:`apply_increment` applies
the delta-rotation update R <- exp(eps^) R, t <- t + dt of the paper's App. A.

Devices: everything follows the input tensors (CPU now, CUDA when available); float32 and float64.
The Warp Functions are first-order (``once_differentiable``): for second derivatives use the torch
references, which autograd differentiates to any order.
"""

from __future__ import annotations

import torch
import warp as wp

import warp_kernels.warp_field as wk
from nrsfm_kit.kernels._bridge import contiguous, index_tensor, launch, wview
from nrsfm_kit.utils.checks import check_shape, check_tensor
from warp_kernels.types import float_types

__all__ = [
    "warp_points",
    "warp_points_torch",
    "warp_point_image",
    "warp_point_image_torch",
    "arap_residuals",
    "arap_residuals_torch",
    "warp_points_axis_angle",
    "arap_residuals_axis_angle",
    "apply_increment",
    "WarpPointsFunction",
    "WarpPointImageFunction",
    "ArapResidualsFunction",
]

# Warp scalar / vec3 / mat33 types of each supported torch dtype
_FT = {torch.float32: float_types(wp.float32), torch.float64: float_types(wp.float64)}


# ==================================================================================================
# pure-torch references (any leading batch shape of points; autograd does the backward)
# ==================================================================================================


def warp_points_torch(
    points: torch.Tensor,
    anchors: torch.Tensor,
    weights: torch.Tensor,
    nodes: torch.Tensor,
    rotations: torch.Tensor,
    translations: torch.Tensor,
) -> torch.Tensor:
    """Pure-torch warp field Q (eq. 2), the reference of :func:`warp_points`.

    Args:
        points: (..., 3) metres.
        anchors: (..., A) int, node ids, -1 padding.
        weights: (..., A) skinning weights alpha (used as given).
        nodes: (N, 3) node positions v, metres.
        rotations: (N, 3, 3) node rotations R.
        translations: (N, 3) node translations t, metres.

    Returns:
        (..., 3) warped points Q(p), metres (0 where a point has no valid anchor).
    """
    valid = anchors >= 0
    idx = anchors.clamp(min=0).long()
    v = nodes[idx]  # (..., A, 3)
    R = rotations[idx]  # (..., A, 3, 3)
    t = translations[idx]
    moved = torch.einsum("...ij,...j->...i", R, points.unsqueeze(-2) - v) + v + t
    w = torch.where(valid, weights, torch.zeros_like(weights))
    return (w.unsqueeze(-1) * moved).sum(-2)


def warp_point_image_torch(
    points: torch.Tensor,
    anchors: torch.Tensor,
    weights: torch.Tensor,
    nodes: torch.Tensor,
    rotations: torch.Tensor,
    translations: torch.Tensor,
) -> torch.Tensor:
    """Pure-torch Q on a point image: points (H, W, 3), anchors/weights (H, W, A) -> (H, W, 3)."""
    return warp_points_torch(points, anchors, weights, nodes, rotations, translations)


def arap_residuals_torch(
    nodes: torch.Tensor, edges: torch.Tensor, rotations: torch.Tensor, translations: torch.Tensor
) -> torch.Tensor:
    """Pure-torch ARAP edge residuals (eq. 11), the reference of :func:`arap_residuals`.

    Args:
        nodes: (N, 3) metres. edges: (N, K) int, -1 padding. rotations: (N, 3, 3). translations: (N, 3).

    Returns:
        (N, K, 3) residuals r_ij = R_i (v_j - v_i) + v_i + t_i - (v_j + t_j), metres; 0 on padding.
    """
    valid = (edges >= 0).unsqueeze(-1)
    j = edges.clamp(min=0).long()
    vi = nodes.unsqueeze(1)
    vj = nodes[j]
    pred = torch.einsum("nij,nkj->nki", rotations, vj - vi) + vi + translations.unsqueeze(1)
    r = pred - (vj + translations[j])
    return torch.where(valid, r, torch.zeros_like(r))


# ==================================================================================================
# autograd Functions launching the Warp kernels
# ==================================================================================================


def _empty_like_grads(nodes, rotations, translations):
    return torch.zeros_like(nodes), torch.zeros_like(rotations), torch.zeros_like(translations)


class _WarpFieldFunction(torch.autograd.Function):
    """Shared forward/backward of Q; subclasses name the kernel pair and the launch shape.

    Inputs must already be validated and contiguous (use the public functions). Gradients flow to
    points, weights, nodes, rotations and translations (not to the integer anchors).
    """

    forward_kernel = None
    backward_kernel = None

    @staticmethod
    def launch_dim(points: torch.Tensor):
        raise NotImplementedError

    @classmethod
    def forward(cls, ctx, points, anchors, weights, nodes, rotations, translations):
        vec, mat = _FT[points.dtype].vec3, _FT[points.dtype].mat33
        out = torch.empty_like(points)
        launch(
            cls.forward_kernel,
            cls.launch_dim(points),
            [wview(points, vec), wview(anchors), wview(weights), wview(nodes, vec),
             wview(rotations, mat), wview(translations, vec)],
            [wview(out, vec)],
            like=points,
        )
        ctx.save_for_backward(points, anchors, weights, nodes, rotations, translations)
        return out

    @classmethod
    @torch.autograd.function.once_differentiable
    def backward(cls, ctx, grad_out):
        points, anchors, weights, nodes, rotations, translations = ctx.saved_tensors
        vec, mat = _FT[points.dtype].vec3, _FT[points.dtype].mat33
        grad_out = contiguous(grad_out)
        gp, gw = torch.empty_like(points), torch.empty_like(weights)
        gv, gR, gt = _empty_like_grads(nodes, rotations, translations)
        launch(
            cls.backward_kernel,
            cls.launch_dim(points),
            [wview(points, vec), wview(anchors), wview(weights), wview(nodes, vec),
             wview(rotations, mat), wview(translations, vec), wview(grad_out, vec)],
            [wview(gp, vec), wview(gw), wview(gv, vec), wview(gR, mat), wview(gt, vec)],
            like=points,
        )
        need = ctx.needs_input_grad
        return (gp if need[0] else None, None, gw if need[2] else None,
                gv if need[3] else None, gR if need[4] else None, gt if need[5] else None)


class WarpPointsFunction(_WarpFieldFunction):
    """Q on a point list (P, 3) via :func:`warp_kernels.warp_field.warp_points_forward` / ``_backward``."""

    forward_kernel = wk.warp_points_forward
    backward_kernel = wk.warp_points_backward

    @staticmethod
    def launch_dim(points: torch.Tensor):
        return points.shape[0]


class WarpPointImageFunction(_WarpFieldFunction):
    """Q on a point image (H, W, 3) with a 2D launch via ``warp_image_forward`` / ``_backward``."""

    forward_kernel = wk.warp_image_forward
    backward_kernel = wk.warp_image_backward

    @staticmethod
    def launch_dim(points: torch.Tensor):
        return (points.shape[0], points.shape[1])


class ArapResidualsFunction(torch.autograd.Function):
    """ARAP residuals (eq. 11) via :func:`warp_kernels.warp_field.arap_forward` / ``arap_backward``."""

    @staticmethod
    def forward(ctx, nodes, edges, rotations, translations):
        vec, mat = _FT[nodes.dtype].vec3, _FT[nodes.dtype].mat33
        out = torch.empty(edges.shape + (3,), dtype=nodes.dtype, device=nodes.device)
        launch(
            wk.arap_forward,
            nodes.shape[0],
            [wview(nodes, vec), wview(edges), wview(rotations, mat), wview(translations, vec)],
            [wview(out, vec)],
            like=nodes,
        )
        ctx.save_for_backward(nodes, edges, rotations)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        nodes, edges, rotations = ctx.saved_tensors
        vec, mat = _FT[nodes.dtype].vec3, _FT[nodes.dtype].mat33
        grad_out = contiguous(grad_out)
        gv, gR, gt = _empty_like_grads(nodes, rotations, nodes)
        launch(
            wk.arap_backward,
            nodes.shape[0],
            [wview(nodes, vec), wview(edges), wview(rotations, mat), wview(grad_out, vec)],
            [wview(gv, vec), wview(gR, mat), wview(gt, vec)],
            like=nodes,
        )
        need = ctx.needs_input_grad
        return gv if need[0] else None, None, gR if need[2] else None, gt if need[3] else None


# ==================================================================================================
# validation + public entry points
# ==================================================================================================


def _check_index(name: str, idx, spec, dims: dict, num_nodes: int, device) -> torch.Tensor:
    """Integer index tensor of shape ``spec`` in [-1, num_nodes), returned as contiguous int64 on ``device``."""
    idx = index_tensor(name, idx, num_nodes)
    check_shape(name, idx, spec, dims)
    if idx.device != device:
        raise ValueError(f"{name}: expected device {device}, found {idx.device}")
    return idx


def _check_floats(named: dict, dims: dict) -> tuple[torch.Tensor, ...]:
    """Check (spec, tensor) pairs: shapes, floating, finite, one dtype (float32/64), one device."""
    out, dtype, device = [], None, None
    for name, (x, spec) in named.items():
        check_tensor(name, x, spec, dims=dims)
        if x.dtype not in _FT:
            raise ValueError(f"{name}: expected dtype float32 or float64, found {x.dtype}")
        if dtype is None:
            dtype, device, first = x.dtype, x.device, name
        elif x.dtype != dtype:
            raise ValueError(f"{name}: expected dtype {dtype} (as {first}), found {x.dtype}")
        elif x.device != device:
            raise ValueError(f"{name}: expected device {device} (as {first}), found {x.device}")
        out.append(contiguous(x))
    return tuple(out)


def _check_motion(nodes, rotations, translations) -> dict:
    return {
        "nodes": (nodes, ("N", 3)),
        "rotations": (rotations, ("N", 3, 3)),
        "translations": (translations, ("N", 3)),
    }


def warp_points(
    points: torch.Tensor,
    anchors: torch.Tensor,
    weights: torch.Tensor,
    nodes: torch.Tensor,
    rotations: torch.Tensor,
    translations: torch.Tensor,
) -> torch.Tensor:
    """Warp field Q (eq. 2) on a point list, Warp-backed and differentiable.

    Args:
        points: (P, 3) float32/float64, metres.
        anchors: (P, A) int64 node ids, -1 padding (int32 accepted, converted).
        weights: (P, A) skinning weights alpha, same dtype as points (used as given, 0 on padding ok).
        nodes: (N, 3) node positions v, metres.
        rotations: (N, 3, 3) node rotation matrices R.
        translations: (N, 3) node translations t, metres.

    Returns:
        (P, 3) warped points, metres. Gradients flow to points, weights, nodes, rotations, translations.

    Raises:
        ValueError: wrong shapes/dtypes/devices, non-finite values, anchors outside [-1, N).
    """
    dims: dict = {}
    points, weights, nodes, rotations, translations = _check_floats(
        {"points": (points, ("P", 3)), "weights": (weights, ("P", "A")),
         **_check_motion(nodes, rotations, translations)},
        dims,
    )
    anchors = _check_index("anchors", anchors, ("P", "A"), dims, dims["N"], points.device)
    if points.shape[0] == 0:
        return warp_points_torch(points, anchors, weights, nodes, rotations, translations)
    return WarpPointsFunction.apply(points, anchors, weights, nodes, rotations, translations)


def warp_point_image(
    points: torch.Tensor,
    anchors: torch.Tensor,
    weights: torch.Tensor,
    nodes: torch.Tensor,
    rotations: torch.Tensor,
    translations: torch.Tensor,
) -> torch.Tensor:
    """Warp field Q (eq. 2) on a point image, Warp-backed (2D launch) and differentiable.

    Args:
        points: (H, W, 3) metres (e.g. :func:`nrsfm_kit.geometry.depth_to_points`; invalid pixels
            simply carry no valid anchor).
        anchors: (H, W, A) int64 node ids, -1 where invalid (e.g. ``DeformationGraph.pixel_anchors``).
        weights: (H, W, A) skinning weights (``DeformationGraph.pixel_weights``).
        nodes, rotations, translations: (N, 3), (N, 3, 3), (N, 3) as in :func:`warp_points`.

    Returns:
        (H, W, 3) warped point image, metres; 0 at pixels without a valid anchor.
    """
    dims: dict = {}
    points, weights, nodes, rotations, translations = _check_floats(
        {"points": (points, ("H", "W", 3)), "weights": (weights, ("H", "W", "A")),
         **_check_motion(nodes, rotations, translations)},
        dims,
    )
    anchors = _check_index("anchors", anchors, ("H", "W", "A"), dims, dims["N"], points.device)
    if points.numel() == 0:
        return warp_points_torch(points, anchors, weights, nodes, rotations, translations)
    return WarpPointImageFunction.apply(points, anchors, weights, nodes, rotations, translations)


def arap_residuals(
    nodes: torch.Tensor, edges: torch.Tensor, rotations: torch.Tensor, translations: torch.Tensor
) -> torch.Tensor:
    """ARAP edge residuals (eq. 11), Warp-backed and differentiable.

    Args:
        nodes: (N, 3) node positions v, metres.
        edges: (N, K) int64 neighbour ids, -1 padding (``DeformationGraph.edges``).
        rotations: (N, 3, 3) node rotations R.
        translations: (N, 3) node translations t, metres.

    Returns:
        (N, K, 3) residuals R_i (v_j - v_i) + v_i + t_i - (v_j + t_j), metres; 0 on padding.
        Multiply by sqrt(edge_weights)[..., None] for the weighted energy. Gradients flow to nodes,
        rotations and translations.
    """
    dims: dict = {}
    nodes, rotations, translations = _check_floats(_check_motion(nodes, rotations, translations), dims)
    edges = _check_index("edges", edges, ("N", "K"), dims, dims["N"], nodes.device)
    if edges.numel() == 0:
        return arap_residuals_torch(nodes, edges, rotations, translations)
    return ArapResidualsFunction.apply(nodes, edges, rotations, translations)


# ==================================================================================================
# axis-angle front ends and the delta-rotation update (App. A)
# ==================================================================================================


def _so3_exp(omega: torch.Tensor, name: str) -> torch.Tensor:
    from nrsfm_kit.geometry import so3_exp

    check_tensor(name, omega, ("N", 3))
    return so3_exp(omega)


def warp_points_axis_angle(points, anchors, weights, nodes, omega, translations) -> torch.Tensor:
    """:func:`warp_points` with node rotations given as axis-angle vectors omega (N, 3), radians."""
    return warp_points(points, anchors, weights, nodes, _so3_exp(omega, "omega"), translations)


def arap_residuals_axis_angle(nodes, edges, omega, translations) -> torch.Tensor:
    """:func:`arap_residuals` with node rotations given as axis-angle vectors omega (N, 3), radians."""
    return arap_residuals(nodes, edges, _so3_exp(omega, "omega"), translations)


def apply_increment(
    rotations: torch.Tensor, translations: torch.Tensor, eps: torch.Tensor, delta_t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Delta-rotation update of App. A: R <- exp(eps^) R, t <- t + delta_t.

    Args:
        rotations: (N, 3, 3). translations: (N, 3) metres. eps: (N, 3) radians. delta_t: (N, 3) metres.

    Returns:
        (rotations (N, 3, 3), translations (N, 3)) after the update.
    """
    from nrsfm_kit.geometry import delta_rotation_update

    dims: dict = {}
    check_tensor("rotations", rotations, ("N", 3, 3), dims=dims)
    check_tensor("translations", translations, ("N", 3), dims=dims)
    check_tensor("eps", eps, ("N", 3), dims=dims)
    check_tensor("delta_t", delta_t, ("N", 3), dims=dims)
    return delta_rotation_update(eps, rotations), translations + delta_t
