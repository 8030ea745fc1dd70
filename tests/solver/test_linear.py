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



def test_dense_solve_adjoint_equals_autograd_through_the_assembly(tiny):
    """DenseSolve's backward (mapped to the Jacobian rows) equals autograd through the dense assembly and
    Cholesky, with frozen nodes, for every assembly."""
    from nrsfm_kit.solver.linear import Assembler

    blocks, diag, N, corr, w = _blocks(tiny)
    valid = torch.ones(2, N, dtype=torch.bool)
    valid[0, 1] = False
    gx = torch.randn(2, 6 * N, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ref = dense_solve(blocks, diag, N, "torch", valid_nodes=valid)  # "reference": autograd everywhere
    g_ref = torch.autograd.grad((ref * gx).sum(), [corr, w], retain_graph=True)
    for how in ("blocks", "segmented", "atomic"):
        x = dense_solve(blocks, diag, N, "warp", valid_nodes=valid, assembler=Assembler(N, how, "warp"))
        torch.testing.assert_close(x, ref, atol=1e-12, rtol=1e-10)
        for a, b in zip(torch.autograd.grad((x * gx).sum(), [corr, w], retain_graph=True), g_ref):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("solver, backend", [("dense", "warp"), ("dense", "torch"), ("pcg", "warp"), ("pcg", "torch")])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_jacobian_or_residual_is_an_error_not_a_nan_step(tiny, solver, backend, bad):
    """The assembly kernels do not check J / r (speed); the solve names the batch item instead of returning NaN."""
    from nrsfm_kit.kernels.gauss_newton import ResidualBlock

    blocks, diag, N, _, _ = _blocks(tiny, requires_grad=False)
    for which in ("J", "r"):
        J, r = blocks[0].J.clone(), blocks[0].r.clone()
        (J if which == "J" else r)[1, 3, 0, ...] = bad  # batch item 1 only
        blk = [ResidualBlock(J, r, blocks[0].cols), *blocks[1:]]
        with pytest.raises(FloatingPointError, match=r"solve: expected finite normal equations, found NaN or inf in "
                                                     r"batch item\(s\) \[1\]"):
            if solver == "dense":
                dense_solve(blk, diag, N, backend)
            else:
                pcg_solve(blk, diag, N, tol=1e-13, max_iter=50, backend=backend)
