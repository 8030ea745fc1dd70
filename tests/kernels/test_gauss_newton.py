"""Warp kernels of the GN solver vs their pure-torch references (values and gradients), gradchecks, bad input.

Every Warp function of :mod:`nrsfm_kit.kernels.gauss_newton` with a ``*_torch`` twin has a case in its
``PARITY_CASES`` (also run on CUDA by ``benchmarks/gpu_check.py``).
"""

from __future__ import annotations

import pytest
import torch

from nrsfm_kit.kernels import gauss_newton as gn
from nrsfm_kit.utils.testing import assert_parity, gradcheck64


@pytest.mark.parametrize("name", sorted(gn.PARITY_CASES))
def test_parity_values_and_gradients(name, device, dtype_tol):
    dtype, tol = dtype_tol
    make, grad_idx = gn.PARITY_CASES[name]
    args = make(device, dtype)
    base = name.split("[")[0]  # "f[variant]": another input case of f
    assert_parity(getattr(gn, base), getattr(gn, base + "_torch"), args, grad_idx, tol=tol)


def test_every_warp_function_has_a_parity_case():
    twins = {n for n in gn.__all__ if n + "_torch" in gn.__all__}
    assert twins == {name.split("[")[0] for name in gn.PARITY_CASES}


# the PCG products are not differentiable (their adjoint is PCGSolve's): values only, above
@pytest.mark.parametrize("name", sorted(n for n, (_, grad_idx) in gn.PARITY_CASES.items() if grad_idx))
def test_gradcheck_warp_and_reference(name):
    """float64 gradcheck of the Warp function and of its reference (fast mode: random directions)."""
    make, grad_idx = gn.PARITY_CASES[name]
    args = make("cpu", torch.float64)
    base = name.split("[")[0]
    for fn in (getattr(gn, base), getattr(gn, base + "_torch")):
        assert gradcheck64(fn, args, grad_idx, eps=1e-6, atol=1e-6, fast_mode=True)


def test_reprojection_behind_camera_masks_rows():
    make, _ = gn.PARITY_CASES["reprojection_residual"]
    q, corr, w, intr = make("cpu", torch.float64)
    q = q.clone()
    q[..., 2] = -1.0
    for fn in (gn.reprojection_residual, gn.reprojection_residual_torch):
        r, g = fn(q, corr, w, intr)
        assert torch.isfinite(r).all() and torch.isfinite(g).all()
        assert (r == 0).all() and (g == 0).all()


def test_image_residual_outside_and_exact_bilinear():
    """Outside the map the rows are zero; inside, a linear image is sampled exactly with its gradient."""
    B, P, H, W = 1, 3, 20, 30
    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    img = (2.0 * xx + 3.0 * yy)[None, None, :, :, None]  # I(u, v) = 2u + 3v
    intr = torch.tensor([[10.0, 10.0, 15.0, 10.0]], dtype=torch.float64)
    q = torch.tensor([[[0.1, 0.05, 1.0], [5.0, 0.0, 1.0], [0.0, 0.0, -1.0]]], dtype=torch.float64)
    args = (q, img, torch.zeros(P, dtype=torch.int64), torch.zeros(B, P, 2, dtype=torch.float64),
            torch.zeros(B, P, 1, dtype=torch.float64), torch.ones(B, P, dtype=torch.float64), intr)
    for fn in (gn.image_residual, gn.image_residual_torch):
        r, g = fn(*args)
        u, v = 10 * 0.1 + 15, 10 * 0.05 + 10
        torch.testing.assert_close(r[0, 0, 0], torch.tensor(2 * u + 3 * v, dtype=torch.float64))
        torch.testing.assert_close(g[0, 0, 0], torch.tensor([2 * 10.0, 3 * 10.0, -2 * 10 * 0.1 - 3 * 10 * 0.05],
                                                            dtype=torch.float64))
        assert (r[0, 1:] == 0).all() and (g[0, 1:] == 0).all()


def test_arap_residual_matches_graph_kernel():
    """Our ARAP rows equal the warp-field module's eq. 11 residuals times the scale."""
    from nrsfm_kit.kernels.warp_field import arap_residuals_torch

    nodes, edges, scale, R, t = gn.PARITY_CASES["arap_terms"][0]("cpu", torch.float64)
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
    return J, r, cols.to(device), N


ASSEMBLIES = {
    "atomic": lambda J, r, cols, N: gn.normal_equations(J, r, cols, N),
    "segmented": lambda J, r, cols, N: gn.normal_equations_segmented(J, r, gn.BlockLayout(cols, N)),
    "blocks": lambda J, r, cols, N: gn.normal_equations_blocks_torch(J, r, gn.BlockLayout(cols, N)),
}


@pytest.mark.parametrize("how", sorted(ASSEMBLIES))
def test_normal_equations_parity(how, device, dtype_tol):
    dtype, tol = dtype_tol
    J, r, cols, N = _block(dtype, device)
    fn = ASSEMBLIES[how]
    assert_parity(lambda J, r: fn(J, r, cols, N), lambda J, r: gn.normal_equations_torch(J, r, cols, N), [J, r],
                  [0, 1], tol=tol)
    A, _ = fn(J, r, cols, N)
    torch.testing.assert_close(A, A.transpose(-1, -2))


@pytest.mark.parametrize("how", sorted(ASSEMBLIES))
def test_normal_equations_gradcheck(how):
    J, r, cols, N = _block(G=3, g=2, nb=2, N=3)
    fn = ASSEMBLIES[how]
    assert gradcheck64(lambda J, r: fn(J, r, cols, N), [J, r], [0, 1])


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


def test_bad_inputs():
    make, _ = gn.PARITY_CASES["warp_linearize"]
    pts, anc, aw, nodes, R, t = make("cpu", torch.float64)
    with pytest.raises(ValueError, match="anchors: expected at most 4"):
        gn.warp_linearize(pts, torch.cat([anc, anc[:, :1]], 1), torch.cat([aw, aw[:, :1]], 1), nodes, R, t)
    bad = anc.clone()
    bad[0, 0] = nodes.shape[0]
    with pytest.raises(ValueError, match=r"anchors: expected ids in \[-1, 6\)"):
        gn.warp_linearize(pts, bad, aw, nodes, R, t)
    Rn = R.clone()
    Rn[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="rotations: expected finite"):
        gn.warp_linearize(pts, anc, aw, nodes, Rn, t)
    q, corr, w, intr = gn.PARITY_CASES["reprojection_residual"][0]("cpu", torch.float64)
    with pytest.raises(ValueError, match=r"corr: expected shape \(B, P, 2\)"):
        gn.reprojection_residual(q, corr[..., :1], w, intr)
    img_args = gn.PARITY_CASES["image_residual"][0]("cpu", torch.float64)
    bad_idx = img_args[2].clone()
    bad_idx[0] = 5
    with pytest.raises(ValueError, match="map_index: expected ids"):
        gn.image_residual(img_args[0], img_args[1], bad_idx, *img_args[3:])
    J, r, cols, N = _block()
    with pytest.raises(ValueError, match="J: expected last dimension"):
        gn.normal_equations(J[..., :-1], r, cols, N)
    with pytest.raises(ValueError, match=r"cols: expected ids in \[-1, 6\)"):
        gn.BlockLayout(cols + 10, N)
    with pytest.raises(ValueError, match="layout: expected a BlockLayout"):
        gn.normal_equations_blocks_torch(J, r, cols)


@pytest.mark.parametrize("how", ["reference"] + sorted(ASSEMBLIES))
def test_empty_residual_family_gives_zero_system(how):
    """A family with no residual rows (G = 0, e.g. every node cluster too small) contributes A = 0, b = 0."""
    J, r, cols, N = _block()
    J0, r0, c0 = J[:, :0], r[:, :0], cols[:0]
    fn = ASSEMBLIES.get(how, lambda J, r, c, n: gn.normal_equations_torch(J, r, c, n))
    A, b = fn(J0, r0, c0, N)
    assert A.shape == (J.shape[0], 6 * N, 6 * N) and b.shape == (J.shape[0], 6 * N)
    assert float(A.abs().max()) == 0.0 and float(b.abs().max()) == 0.0
