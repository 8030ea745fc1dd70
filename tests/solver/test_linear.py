"""Linear solves of a GN step and their backward (App. B.2): dense Cholesky and matrix-free PCG."""

from __future__ import annotations

import pytest
import torch

from nrsfm_kit.solver import prepare_problem, residual_blocks
from nrsfm_kit.solver.gauss_newton import _mask_blocks
from nrsfm_kit.solver.linear import CholeskySolve, dense_solve, pcg_solve
from nrsfm_kit.solver.problem import EnergyTerms


def test_cholesky_solve_gradcheck():
    g = torch.Generator().manual_seed(0)
    M = torch.randn(2, 6, 6, generator=g, dtype=torch.float64)
    A = (M @ M.transpose(-1, -2) + 6 * torch.eye(6, dtype=torch.float64)).requires_grad_()
    c = torch.randn(2, 6, generator=g, dtype=torch.float64, requires_grad=True)
    # symmetrise inside so the numerical derivative stays on SPD matrices
    assert torch.autograd.gradcheck(lambda A, c: CholeskySolve.apply(0.5 * (A + A.transpose(-1, -2)), c), (A, c))
    x = CholeskySolve.apply(A, c)
    torch.testing.assert_close(x, torch.linalg.solve(A, c))


def test_cholesky_singular_is_damped_not_nan():
    A = torch.zeros(1, 6, 6, dtype=torch.float64, requires_grad=True)
    c = torch.ones(1, 6, dtype=torch.float64, requires_grad=True)
    x = CholeskySolve.apply(A, c)
    x.sum().backward()
    assert torch.isfinite(x).all() and torch.isfinite(A.grad).all() and torch.isfinite(c.grad).all()


def _blocks(tiny, requires_grad=True):
    s = tiny
    corr = s.correspondences.clone().requires_grad_(requires_grad)
    w = s.weights.clone().requires_grad_(requires_grad)
    prob = prepare_problem(s.graph, s.source_points, corr, w, s.target_depth, s.intrinsics, terms=EnergyTerms(),
                           min_cluster_correspondences=1, anchors=s.anchors, anchor_weights=s.anchor_weights)
    B, N = 2, prob.num_nodes
    R = torch.eye(3, dtype=torch.float64).expand(B, N, 3, 3)
    t = torch.zeros(B, N, 3, dtype=torch.float64)
    blocks = _mask_blocks(residual_blocks(prob, R, t), prob.valid_nodes)
    diag = torch.full((B, 6 * N), 0.1, dtype=torch.float64)
    return blocks, diag, N, corr, w


@pytest.mark.parametrize("backend", ["warp", "torch"])
def test_pcg_matches_dense_values_and_gradients(tiny, backend):
    blocks, diag, N, corr, w = _blocks(tiny)
    gx = torch.randn(2, 6 * N, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x_dense = dense_solve(blocks, diag, N, backend)
    g_dense = torch.autograd.grad((x_dense * gx).sum(), [corr, w], retain_graph=True)
    x_pcg = pcg_solve(blocks, diag, N, tol=1e-13, max_iter=500, backend=backend)
    g_pcg = torch.autograd.grad((x_pcg * gx).sum(), [corr, w], retain_graph=True)
    x_unr = pcg_solve(blocks, diag, N, tol=1e-13, max_iter=500, unrolled=True)
    g_unr = torch.autograd.grad((x_unr * gx).sum(), [corr, w])
    torch.testing.assert_close(x_pcg, x_dense, atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(x_unr, x_dense, atol=1e-10, rtol=1e-8)
    for a, b, c in zip(g_dense, g_pcg, g_unr):
        torch.testing.assert_close(b, a, atol=1e-8, rtol=1e-6)
        torch.testing.assert_close(c, a, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("solver", ["dense", "pcg"])
def test_linear_solve_gradcheck_wrt_jacobian_and_residual(tiny, solver):
    blocks, diag, N, _, _ = _blocks(tiny, requires_grad=False)
    Jd = blocks[0].J[:1, :12].detach().clone().requires_grad_()
    rd = blocks[0].r[:1, :12].detach().clone().requires_grad_()
    cols = blocks[0].cols[:12]
    Ja, ra, ca = blocks[1].J[:1].detach(), blocks[1].r[:1].detach(), blocks[1].cols

    def f(J, r):
        from nrsfm_kit.kernels.gauss_newton import ResidualBlock

        blk = [ResidualBlock(J, r, cols), ResidualBlock(Ja, ra, ca)]
        if solver == "dense":
            return dense_solve(blk, diag[:1], N)
        return pcg_solve(blk, diag[:1], N, tol=1e-13, max_iter=500)

    # fast_mode: checks random directions (the full Jacobian of ~2000 inputs would take minutes)
    assert torch.autograd.gradcheck(f, (Jd, rd), atol=1e-6, fast_mode=True)


def test_block_cholesky_solve_matches_dense_and_gradchecks():
    """The block-form solve (dL/dA gathered at the stored blocks only) equals the dense Cholesky solve."""
    from nrsfm_kit.kernels.gauss_newton import dense_from_blocks
    from nrsfm_kit.solver.linear import BlockCholeskySolve

    g = torch.Generator().manual_seed(0)
    N = 3
    pi = torch.tensor([0, 1, 2, 0, 1, 0, 2, 1])  # a repeated pair (0, 0) adds
    pj = torch.tensor([0, 1, 2, 1, 0, 0, 1, 2])
    M = torch.randn(2, 8, 6, 6, generator=g, dtype=torch.float64)
    sym = torch.cat([M[:, :3] @ M[:, :3].transpose(-1, -2), M[:, 3:4], M[:, 3:4].transpose(-1, -2),
                     M[:, 5:6] @ M[:, 5:6].transpose(-1, -2), M[:, 6:7], M[:, 6:7].transpose(-1, -2)], 1)
    vals = (0.1 * sym).requires_grad_()
    c = torch.randn(2, 18, generator=g, dtype=torch.float64, requires_grad=True)
    d = (torch.rand(2, 18, generator=g, dtype=torch.float64) + 5).requires_grad_()
    x = BlockCholeskySolve.apply(vals, c, d, pi, pj, N)
    A = dense_from_blocks(vals, pi, pj, N) + torch.diag_embed(d)
    x_ref = CholeskySolve.apply(A, c)
    torch.testing.assert_close(x, x_ref)
    gx = torch.randn(2, 18, generator=g, dtype=torch.float64)
    g1 = torch.autograd.grad((x * gx).sum(), [vals, c, d])
    g2 = torch.autograd.grad((x_ref * gx).sum(), [vals, c, d])
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)
    # gradcheck on symmetrised blocks ((i, j) and (j, i) transposes of each other), so A stays SPD
    def f(v, c, d):
        v = torch.cat([v[:, :3] + v[:, :3].transpose(-1, -2), v[:, 3:4], v[:, 3:4].transpose(-1, -2),
                       v[:, 5:6] + v[:, 5:6].transpose(-1, -2), v[:, 6:7], v[:, 6:7].transpose(-1, -2)], 1)
        return BlockCholeskySolve.apply(v, c, d, pi, pj, N)

    v0 = (0.05 * sym).detach().requires_grad_()
    assert torch.autograd.gradcheck(f, (v0, c, d))
