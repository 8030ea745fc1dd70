"""Warp kernels of the GN solver vs their pure-torch references (values and gradients), gradchecks."""

from __future__ import annotations

import pytest
import torch

from nrsfm_kit.geometry import so3_exp
from nrsfm_kit.kernels import gauss_newton as gn

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
FLOAT_ARGS = [0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]  # positions of float inputs of data_terms


def data_inputs(B=2, P=16, N=6, A=4, dtype=torch.float64, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    nodes = r(N, 3) * 0.1 + torch.tensor([0.0, 0.0, 1.0], dtype=dtype)
    pts = r(B, P, 3) * 0.1 + torch.tensor([0.0, 0.0, 1.0], dtype=dtype)
    anc = torch.randint(0, N, (P, A), generator=g)
    anc[0, -1] = -1
    aw = torch.rand(P, A, generator=g, dtype=dtype)
    R = so3_exp(r(B, N, 3) * 0.3)
    t = r(B, N, 3) * 0.05
    corr = torch.rand(B, P, 2, generator=g, dtype=dtype) * 60
    tz = torch.rand(B, P, generator=g, dtype=dtype) + 0.5
    tp = r(B, P, 3)
    nrm = r(B, P, 3)
    wt = torch.rand(B, P, 4, generator=g, dtype=dtype)
    intr = torch.tensor([[80.0, 85.0, 30.0, 28.0]] * B, dtype=dtype)
    out = [pts, anc, aw, nodes, R, t, corr, tz, tp, nrm, wt, intr]
    return [x.to(device) for x in out]


def arap_inputs(B=2, N=7, K=3, dtype=torch.float64, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    nodes = torch.randn(N, 3, generator=g, dtype=dtype)
    edges = torch.randint(-1, N, (N, K), generator=g)
    scale = torch.rand(N, K, generator=g, dtype=dtype)
    R = so3_exp(torch.randn(B, N, 3, generator=g, dtype=dtype))
    t = torch.randn(B, N, 3, generator=g, dtype=dtype)
    return [x.to(device) for x in (nodes, edges, scale, R, t)]


def _grads(fn, args, float_idx, seed=1):
    ins = [a.clone().requires_grad_(True) if i in float_idx else a for i, a in enumerate(args)]
    outs = fn(*ins)
    g = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype).to(o.device)).sum() for o in outs)
    return outs, torch.autograd.grad(loss, [ins[i] for i in float_idx])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-4)])
@pytest.mark.parametrize("A", [4, 3])
def test_data_terms_parity(device, dtype, tol, A):
    args = data_inputs(A=A, dtype=dtype, device=device)
    (r1, J1), g1 = _grads(gn.data_terms, args, FLOAT_ARGS)
    (r2, J2), g2 = _grads(gn.data_terms_torch, args, FLOAT_ARGS)
    assert J1.shape == (2, 16, 7, 6 * A)
    torch.testing.assert_close(r1, r2, atol=tol, rtol=tol)
    torch.testing.assert_close(J1, J2, atol=tol, rtol=tol)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, atol=tol * 10, rtol=tol * 10)


def test_data_terms_behind_camera_masks_2d_rows():
    args = data_inputs()
    args[0] = args[0].clone()
    args[0][..., 2] = -1.0  # everything behind the camera: warped z < 0 for small motions
    args[4] = torch.eye(3, dtype=torch.float64).expand_as(args[4]).contiguous()
    args[5] = torch.zeros_like(args[5])
    r, J = gn.data_terms(*args)
    assert torch.isfinite(r).all() and torch.isfinite(J).all()
    assert (r[..., :2] == 0).all() and (J[..., :2, :] == 0).all()
    assert (r[..., 2] != 0).any()  # the depth row stays active


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-4)])
def test_arap_terms_parity(device, dtype, tol):
    args = arap_inputs(dtype=dtype, device=device)
    (r1, J1), g1 = _grads(gn.arap_terms, args, [0, 2, 3, 4])
    (r2, J2), g2 = _grads(gn.arap_terms_torch, args, [0, 2, 3, 4])
    torch.testing.assert_close(r1, r2, atol=tol, rtol=tol)
    torch.testing.assert_close(J1, J2, atol=tol, rtol=tol)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, atol=tol * 10, rtol=tol * 10)


def test_arap_residual_matches_graph_kernel():
    """Our ARAP rows equal the graph engineer's eq. 11 residuals times the scale."""
    from nrsfm_kit.kernels.warp_field import arap_residuals_torch

    nodes, edges, scale, R, t = arap_inputs()
    r, _ = gn.arap_terms(nodes, edges, scale, R, t)
    for b in range(R.shape[0]):
        ref = arap_residuals_torch(nodes, edges, R[b], t[b]) * scale.unsqueeze(-1)
        torch.testing.assert_close(r[b], ref.reshape(-1, 3))


def _block(dtype=torch.float64, device="cpu", nb=3, g=5, G=11, N=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    J = torch.randn(2, G, g, nb * 6, generator=gen, dtype=dtype).to(device)
    r = torch.randn(2, G, g, generator=gen, dtype=dtype).to(device)
    cols = torch.randint(-1, N, (G, nb), generator=gen, dtype=torch.int64)
    cols[0] = torch.tensor([1, 1, 2][:nb])  # a repeated node inside a group
    return J, r, cols.to(torch.int32).to(device), N


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_normal_equations_parity(device, dtype, tol):
    J, r, cols, N = _block(dtype, device)
    (A1, b1), g1 = _grads(lambda J, r: gn.normal_equations(J, r, cols, N), [J, r], [0, 1])
    (A2, b2), g2 = _grads(lambda J, r: gn.normal_equations_torch(J, r, cols, N), [J, r], [0, 1])
    torch.testing.assert_close(A1, A2, atol=tol, rtol=tol)
    torch.testing.assert_close(b1, b2, atol=tol, rtol=tol)
    torch.testing.assert_close(A1, A1.transpose(-1, -2))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, atol=tol * 10, rtol=tol * 10)


@pytest.mark.parametrize("device", DEVICES)
def test_products_and_preconditioner_parity(device):
    J, r, cols, N = _block(device=device)
    gen = torch.Generator().manual_seed(3)
    v = torch.randn(2, 6 * N, generator=gen, dtype=torch.float64).to(device)
    u = torch.randn(r.shape, generator=gen, dtype=torch.float64).to(device)
    torch.testing.assert_close(gn.jac_vec(J, cols, v), gn.jac_vec_torch(J, cols, v))
    torch.testing.assert_close(gn.jac_t_vec(J, cols, u, N), gn.jac_t_vec_torch(J, cols, u, N))
    D = gn.block_diagonal(J, cols, N)
    torch.testing.assert_close(D, gn.block_diagonal_torch(J, cols, N))
    A, _ = gn.normal_equations_torch(J, r, cols, N)
    blocks = torch.stack([A[:, 6 * i:6 * i + 6, 6 * i:6 * i + 6] for i in range(N)], 1)
    torch.testing.assert_close(D, blocks)
    x = torch.randn(2, 6 * N, generator=gen, dtype=torch.float64).to(device)
    a1 = gn.solve_adjoint_jacobian(J, r, cols, x, v)
    a2 = gn.solve_adjoint_jacobian_torch(J, r, cols, x, v)
    for a, b in zip(a1, a2):
        torch.testing.assert_close(a, b)


def test_matrix_free_products_match_dense():
    J, r, cols, N = _block()
    A, b = gn.normal_equations_torch(J, r, cols, N)
    v = torch.randn(2, 6 * N, dtype=torch.float64)
    Av = gn.jac_t_vec(J, cols, gn.jac_vec(J, cols, v), N)
    torch.testing.assert_close(Av, (A @ v.unsqueeze(-1)).squeeze(-1))
    torch.testing.assert_close(gn.jac_t_vec(J, cols, r, N), b)


def test_gradcheck_warp_functions():
    args = data_inputs(B=1, P=3, N=3)
    fl = [i for i in FLOAT_ARGS if i not in (3,)]
    ins = [a.clone().requires_grad_(i in fl) for i, a in enumerate(args) if i != 1]

    def f(*xs):
        full = list(xs)
        full.insert(1, args[1])
        return gn.data_terms(*full)

    assert torch.autograd.gradcheck(f, ins, eps=1e-6, atol=1e-6)
    nodes, edges, scale, R, t = arap_inputs(B=1, N=4, K=2)
    assert torch.autograd.gradcheck(lambda n, s, R, t: gn.arap_terms(n, edges, s, R, t),
                                    [x.requires_grad_() for x in (nodes, scale, R, t)])
    J, r, cols, N = _block(G=3, g=2, nb=2, N=3)
    assert torch.autograd.gradcheck(lambda J, r: gn.normal_equations(J, r, cols, N),
                                    [J.requires_grad_(), r.requires_grad_()])


def test_gradcheck_torch_references():
    args = data_inputs(B=1, P=3, N=3)
    ins = [a.clone().requires_grad_(i in FLOAT_ARGS) for i, a in enumerate(args) if i != 1]

    def f(*xs):
        full = list(xs)
        full.insert(1, args[1])
        return gn.data_terms_torch(*full)

    assert torch.autograd.gradcheck(f, ins)
    nodes, edges, scale, R, t = arap_inputs(B=1, N=4, K=2)
    assert torch.autograd.gradcheck(lambda n, s, R, t: gn.arap_terms_torch(n, edges, s, R, t),
                                    [x.requires_grad_() for x in (nodes, scale, R, t)])


def test_bad_inputs():
    args = data_inputs(A=4)
    args5 = list(args)
    args5[1] = torch.cat([args[1], args[1][:, :1]], 1)
    args5[2] = torch.cat([args[2], args[2][:, :1]], 1)
    with pytest.raises(ValueError, match="anchors: expected at most 4"):
        gn.data_terms(*args5)
    bad = list(args)
    bad[6] = args[6][..., :1]
    with pytest.raises(ValueError, match=r"corr: expected shape \(B, P, 2\)"):
        gn.data_terms(*bad)
    bad = list(args)
    bad[4] = args[4].clone()
    bad[4][0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="rotations: expected finite"):
        gn.data_terms(*bad)
    J, r, cols, N = _block()
    with pytest.raises(ValueError, match="J: expected last dimension"):
        gn.normal_equations(J[..., :-1], r, cols, N)


def test_empty_residual_family_gives_zero_system():
    """A family with no residual rows (G = 0, e.g. every node cluster too small) contributes A = 0, b = 0."""
    J, r, cols, N = _block()
    J0, r0, c0 = J[:, :0], r[:, :0], cols[:0]
    A, b = gn.normal_equations_torch(J0, r0, c0, N)
    assert A.shape == (J.shape[0], 6 * N, 6 * N) and b.shape == (J.shape[0], 6 * N)
    assert float(A.abs().max()) == 0.0 and float(b.abs().max()) == 0.0
    Aw, bw = gn.normal_equations(J0, r0, c0, N)
    torch.testing.assert_close(Aw, A)
    torch.testing.assert_close(bw, b)
