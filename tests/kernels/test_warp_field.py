"""Warp warp-field Q and ARAP residual kernels: parity with the torch references (values and gradients),
gradchecks, exactness on rigid motions, padding semantics and bad input.

Devices, parity and gradchecks come from the shared helpers (``device`` / ``dtype_tol`` fixtures of
``tests/kernels/conftest.py``, :mod:`nrsfm_kit.utils.testing`).
"""

from __future__ import annotations

import pytest
import torch

from nrsfm_kit.geometry import delta_rotation_update, random_rotation, so3_exp
from nrsfm_kit.kernels.warp_field import (
    apply_increment,
    arap_residuals,
    arap_residuals_axis_angle,
    arap_residuals_torch,
    warp_point_image,
    warp_point_image_torch,
    warp_points,
    warp_points_axis_angle,
    warp_points_torch,
)
from nrsfm_kit.utils.testing import DEVICES, assert_parity, gradcheck64

# these kernels agree with their references to round-off: held tighter than the shared TOLERANCES floor
# (tol x (1 + max |reference|) stays below the atol 2e-5 (float32) / 1e-12 (float64) used so far)
STRICT = {torch.float32: 1e-6, torch.float64: 5e-14}

# differentiable arguments of warp_points / warp_point_image (points, weights, nodes, rotations,
# translations; not the integer anchors) and of arap_residuals (nodes, rotations, translations)
POINT_GRADS = [0, 2, 3, 4, 5]
ARAP_GRADS = [0, 2, 3]


def _tol(dtype_tol) -> tuple[torch.dtype, float]:
    dtype, tol = dtype_tol
    return dtype, min(tol, STRICT[dtype])


def _problem(dtype=torch.float64, device="cpu", N=7, P=23, A=4, K=5, pad=True, seed=0):
    """(points (P, 3), anchors (P, A), weights (P, A), nodes (N, 3), rotations, translations, edges (N, K))."""
    g = torch.Generator().manual_seed(seed)
    nodes = torch.randn(N, 3, generator=g, dtype=torch.float64)
    R = random_rotation(N, generator=g, dtype=torch.float64)
    t = 0.1 * torch.randn(N, 3, generator=g, dtype=torch.float64)
    pts = torch.randn(P, 3, generator=g, dtype=torch.float64)
    anchors = torch.randint(0 if not pad else -1, N, (P, A), generator=g)
    w = torch.rand(P, A, generator=g, dtype=torch.float64)
    edges = torch.randint(-1 if pad else 0, N, (N, K), generator=g)
    cast = lambda x: x.to(device=device, dtype=dtype)  # noqa: E731
    return (cast(pts), anchors.to(device), cast(w), cast(nodes), cast(R), cast(t), edges.to(device))


def _image(H=5, W=6, A=4, **kw):
    """The problem of :func:`_problem` with its P = H W points laid out as an (H, W) point image."""
    pts, anc, w, nodes, R, t, edges = _problem(P=H * W, A=A, **kw)
    return pts.reshape(H, W, 3), anc.reshape(H, W, A), w.reshape(H, W, A), nodes, R, t, edges


def test_warp_points_parity_values_and_gradients(device, dtype_tol):
    dtype, tol = _tol(dtype_tol)
    pts, anc, w, nodes, R, t, _ = _problem(dtype, device)
    assert_parity(warp_points, warp_points_torch, [pts, anc, w, nodes, R, t], POINT_GRADS, tol=tol)


def test_warp_point_image_parity_values_and_gradients(device, dtype_tol):
    dtype, tol = _tol(dtype_tol)
    pts, anc, w, nodes, R, t, _ = _image(dtype=dtype, device=device)
    assert_parity(warp_point_image, warp_point_image_torch, [pts, anc, w, nodes, R, t], POINT_GRADS, tol=tol)
    # the image kernel and the list kernel compute the same thing
    A = anc.shape[-1]
    flat = warp_points(pts.reshape(-1, 3), anc.reshape(-1, A), w.reshape(-1, A), nodes, R, t)
    torch.testing.assert_close(warp_point_image(pts, anc, w, nodes, R, t).reshape(-1, 3), flat, atol=tol, rtol=0)


def test_arap_parity_values_and_gradients(device, dtype_tol):
    dtype, tol = _tol(dtype_tol)
    _, _, _, nodes, R, t, edges = _problem(dtype, device)
    assert_parity(arap_residuals, arap_residuals_torch, [nodes, edges, R, t], ARAP_GRADS, tol=tol)
    assert (arap_residuals(nodes, edges, R, t)[edges < 0] == 0).all()


def test_gradcheck_torch_references_float64():
    pts, anc, w, nodes, R, t, edges = _problem(torch.float64, N=4, P=6, A=3, K=3)
    assert gradcheck64(warp_points_torch, [pts, anc, w, nodes, R, t], POINT_GRADS)
    assert gradcheck64(arap_residuals_torch, [nodes, edges, R, t], ARAP_GRADS)


def test_gradcheck_warp_functions_float64(device):
    pts, anc, w, nodes, R, t, edges = _problem(torch.float64, device, N=4, P=6, A=3, K=3)
    assert gradcheck64(warp_points, [pts, anc, w, nodes, R, t], POINT_GRADS)
    img = [pts.reshape(2, 3, 3), anc.reshape(2, 3, 3), w.reshape(2, 3, 3), nodes, R, t]
    assert gradcheck64(warp_point_image, img, POINT_GRADS)
    assert gradcheck64(arap_residuals, [nodes, edges, R, t], ARAP_GRADS)


def test_global_rigid_motion_is_reproduced_exactly():
    """Node motion t_k = R v_k + T - v_k of one rigid (R, T): Q(p) = R p + T and every ARAP residual is 0."""
    pts, anc, w, nodes, _, _, edges = _problem(torch.float64, pad=False)
    w = w / w.sum(1, keepdim=True)
    Rg = random_rotation(1, generator=torch.Generator().manual_seed(3), dtype=torch.float64)[0]
    T = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)
    N = nodes.shape[0]
    R = Rg.expand(N, 3, 3).contiguous()
    t = nodes @ Rg.T + T - nodes
    torch.testing.assert_close(warp_points(pts, anc, w, nodes, R, t), pts @ Rg.T + T, atol=1e-12, rtol=0)
    assert arap_residuals(nodes, edges, R, t).abs().max() < 1e-12


def test_identity_motion_and_padding():
    pts, anc, w, nodes, _, _, _ = _problem(torch.float32, pad=False)
    w = w / w.sum(1, keepdim=True)
    N = nodes.shape[0]
    eye, zero = torch.eye(3).expand(N, 3, 3).contiguous(), torch.zeros(N, 3)
    torch.testing.assert_close(warp_points(pts, anc, w, nodes, eye, zero), pts, atol=1e-5, rtol=0)
    # padded anchors contribute nothing whatever their weight; a point without anchor maps to 0
    anc2, w2 = anc.clone(), w.clone()
    anc2[0, 1:] = -1
    w2[0, 1:] = 123.0
    anc2[1] = -1
    out = warp_points(pts, anc2, w2, nodes, eye, zero)
    torch.testing.assert_close(out[0], w[0, 0] * pts[0], atol=1e-5, rtol=0)
    assert (out[1] == 0).all()
    w2.requires_grad_(True)
    warp_points(pts, anc2, w2, nodes, eye, zero).sum().backward()
    assert (w2.grad[anc2 < 0] == 0).all()


def test_axis_angle_front_end_and_increment():
    pts, anc, w, nodes, _, t, edges = _problem(torch.float64, N=4, P=6, A=3, K=3)
    omega = 0.7 * torch.randn(4, 3, dtype=torch.float64)
    R = so3_exp(omega)
    torch.testing.assert_close(warp_points_axis_angle(pts, anc, w, nodes, omega, t), warp_points(pts, anc, w, nodes, R, t))
    torch.testing.assert_close(arap_residuals_axis_angle(nodes, edges, omega, t), arap_residuals(nodes, edges, R, t))
    assert gradcheck64(warp_points_axis_angle, [pts, anc, w, nodes, omega, t], [4])
    eps, dt = 0.1 * torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    R2, t2 = apply_increment(R, t, eps, dt)
    torch.testing.assert_close(R2, delta_rotation_update(eps, R))
    torch.testing.assert_close(t2, t + dt)


def test_empty_inputs():
    _, _, _, nodes, R, t, _ = _problem(torch.float32)
    out = warp_points(torch.zeros(0, 3), torch.zeros(0, 4, dtype=torch.int64), torch.zeros(0, 4), nodes, R, t)
    assert out.shape == (0, 3)
    assert arap_residuals(nodes, torch.zeros(nodes.shape[0], 0, dtype=torch.int64), R, t).shape == (7, 0, 3)


def test_int32_anchors_accepted():
    pts, anc, w, nodes, R, t, edges = _problem(torch.float32)
    torch.testing.assert_close(warp_points(pts, anc.int(), w, nodes, R, t), warp_points(pts, anc, w, nodes, R, t))
    torch.testing.assert_close(arap_residuals(nodes, edges.int(), R, t), arap_residuals(nodes, edges, R, t))


def test_bad_inputs():
    pts, anc, w, nodes, R, t, edges = _problem(torch.float32)
    with pytest.raises(ValueError, match=r"points: expected shape \(P, 3\).*found \(23, 2\)"):
        warp_points(pts[:, :2], anc, w, nodes, R, t)
    with pytest.raises(ValueError, match=r"anchors: expected shape \(P, A\).*found \(23, 4\)"):
        warp_points(pts, anc, w[:, :3], nodes, R, t)
    with pytest.raises(ValueError, match="rotations: expected shape"):
        warp_points(pts, anc, w, nodes, R[:3], t)
    with pytest.raises(ValueError, match=r"anchors: expected ids in \[-1, 7\), found range \[2, 9\]"):
        warp_points(pts, anc + 3, w, nodes, R, t)
    with pytest.raises(ValueError, match=r"anchors: expected ids in \[-1, 7\), found range \[-2, "):
        warp_points(pts, anc - 1, w, nodes, R, t)
    with pytest.raises(ValueError, match="anchors: expected an integer tensor"):
        warp_points(pts, anc.float(), w, nodes, R, t)
    with pytest.raises(ValueError, match="anchors: expected an integer tensor"):
        warp_points(pts, anc.numpy(), w, nodes, R, t)
    with pytest.raises(ValueError, match="anchors: expected shape"):
        warp_points(pts, anc[:, :2], w, nodes, R, t)
    with pytest.raises(ValueError, match=r"weights: expected dtype torch.float32 \(as points\)"):
        warp_points(pts, anc, w.double(), nodes, R, t)
    with pytest.raises(ValueError, match="points: expected dtype float32 or float64"):
        warp_points(pts.half(), anc, w.half(), nodes.half(), R.half(), t.half())
    bad = pts.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="points: expected finite values, found 1 non-finite"):
        warp_points(bad, anc, w, nodes, R, t)
    with pytest.raises(ValueError, match="translations: expected finite"):
        arap_residuals(nodes, edges, R, t + float("inf"))
    with pytest.raises(ValueError, match=r"edges: expected ids in \[-1, 7\)"):
        arap_residuals(nodes, edges - 2, R, t)
    with pytest.raises(ValueError, match=r"edges: expected shape \(N, K\)"):
        arap_residuals(nodes, edges[:3], R, t)
    with pytest.raises(ValueError, match="points: expected a torch.Tensor"):
        warp_points(pts.numpy(), anc, w, nodes, R, t)
    with pytest.raises(ValueError, match=r"points: expected shape \(H, W, 3\)"):
        warp_point_image(pts, anc, w, nodes, R, t)
    with pytest.raises(ValueError, match="omega: expected shape"):
        warp_points_axis_angle(pts, anc, w, nodes, t[:, :2], t)


@pytest.mark.skipif("cuda" not in DEVICES, reason="no CUDA device")
def test_cuda_matches_cpu():
    cpu = _problem(torch.float32, "cpu")
    gpu = [x.cuda() for x in cpu]
    pts, anc, w, nodes, R, t, edges = gpu
    out = warp_points(pts, anc, w, nodes, R, t).cpu()
    torch.testing.assert_close(out, warp_points(*cpu[:6]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(arap_residuals(nodes, edges, R, t).cpu(),
                               arap_residuals(cpu[3], cpu[6], cpu[4], cpu[5]), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="device"):
        warp_points(pts, anc.cpu(), w, nodes, R, t)


def test_gradcheck_axis_angle_front_ends_and_increment():
    _, _, _, nodes, _, t, edges = _problem(torch.float64, N=4, P=6, A=3, K=3)
    omega = 0.5 * torch.randn(4, 3, dtype=torch.float64)
    assert gradcheck64(arap_residuals_axis_angle, [nodes, edges, omega, t], [2, 3])
    R = so3_exp(0.5 * torch.randn(4, 3, dtype=torch.float64))
    eps = 0.1 * torch.randn(4, 3, dtype=torch.float64)
    dt = torch.randn(4, 3, dtype=torch.float64)
    assert gradcheck64(apply_increment, [R, t, eps, dt], [0, 1, 2, 3])


def test_double_backward_is_refused_by_warp_but_available_in_the_reference():
    pts, anc, w, nodes, R, t, _ = _problem(torch.float64, N=4, P=5, A=2)
    tt = t.clone().requires_grad_(True)
    g = torch.autograd.grad(warp_points_torch(pts, anc, w, nodes, R, tt).pow(2).sum(), tt, create_graph=True)[0]
    assert g.requires_grad  # the reference supports higher-order derivatives
    g2 = torch.autograd.grad(warp_points(pts, anc, w, nodes, R, tt).pow(2).sum(), tt, create_graph=True)[0]
    with pytest.raises(RuntimeError):  # first-order only: no silent wrong second derivative
        torch.autograd.grad(g2.sum(), tt)
