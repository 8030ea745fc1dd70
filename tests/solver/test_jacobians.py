"""Analytic Jacobians (App. B.1) of every residual term vs autograd and central finite differences."""

from __future__ import annotations

import pytest
import torch

from nrsfm_kit.geometry import so3_exp
from nrsfm_kit.solver import EnergyTerms, prepare_problem, residual_blocks
from nrsfm_kit.solver.reference import autograd_blocks, dense_jacobian, residual_vector
from nrsfm_kit.solver.robust import Robust
from nrsfm_kit.solver.terms import Heatmap, Photometric, PointSet, Silhouette


def problem(tiny, extra: bool = False):
    s = tiny
    terms = EnergyTerms(lambda_point=0.5, lambda_plane=2.0)
    prob = prepare_problem(s.graph, s.source_points, s.correspondences[:1], s.weights[:1], s.target_depth[:1],
                           s.intrinsics, terms=terms, target_normals=s.target_normals[:1],
                           min_cluster_correspondences=1, anchors=s.anchors, anchor_weights=s.anchor_weights)
    if not extra:
        return prob
    return prob.with_terms(image_terms(prob))


def image_terms(prob):
    """Photometric, silhouette and heatmap terms on the problem's dense points (smooth random maps)."""
    g = torch.Generator().manual_seed(3)
    ps = PointSet(prob.points, prob.anchors, prob.anchor_weights)
    B, P = prob.points.shape[:2]
    H, W = 48, 64
    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    img = torch.stack([torch.sin(xx / 5) * torch.cos(yy / 7), torch.cos(xx / 9), torch.sin(yy / 4)], -1)[None]
    cols = torch.rand(B, P, 3, generator=g, dtype=torch.float64)
    mask = ((xx - 30) ** 2 + (yy - 22) ** 2 < 120)[None]
    # one heatmap per point (here over the whole image) around its target pixel: a Gaussian of std 7 px
    cu = prob.corr[..., None, None, :]
    heat = torch.exp(-((xx - cu[..., 0]) ** 2 + (yy - cu[..., 1]) ** 2) / (2 * 7.0**2))
    offset = torch.zeros_like(prob.corr)
    return [Photometric(ps, img, cols, prob.intrinsics, weight=0.3),
            Robust(Silhouette(ps, mask, prob.intrinsics, weight=0.01), "cauchy", 0.5),
            Heatmap(ps, heat.contiguous(), prob.intrinsics, offset=offset, weight=2.0)]


def _state(N, seed=0):
    g = torch.Generator().manual_seed(seed)
    R = so3_exp(0.2 * torch.randn(1, N, 3, generator=g, dtype=torch.float64))
    t = 0.02 * torch.randn(1, N, 3, generator=g, dtype=torch.float64)
    return R, t


@pytest.mark.parametrize("backend", ["warp", "torch"])
@pytest.mark.parametrize("extra", [False, True], ids=["standard", "with_image_terms"])
def test_jacobian_matches_autograd_and_finite_differences(tiny, backend, extra):
    prob = problem(tiny, extra)
    N = prob.num_nodes
    R, t = _state(N)
    blocks = residual_blocks(prob, R, t, backend=backend)
    J, r_blocks = dense_jacobian(blocks, N)
    J, r_blocks = J[0], r_blocks[0]
    x0 = torch.zeros(6 * N, dtype=torch.float64)
    f = lambda x: residual_vector(x, prob, R[0], t[0])  # noqa: E731
    torch.testing.assert_close(r_blocks, f(x0))
    assert (J.abs().sum(1) > 0).sum() > 100  # the check covers many non-trivial rows
    if extra:  # the image terms have active rows
        for blk, term in zip(blocks, prob.terms):
            if term.name in ("photometric", "silhouette", "heatmap"):
                assert (blk.J.abs().sum(-1) > 0).sum() > 5, term.name
    J_auto = torch.autograd.functional.jacobian(f, x0)
    torch.testing.assert_close(J, J_auto, atol=1e-9, rtol=1e-8)
    h = 1e-6
    eye = torch.eye(6 * N, dtype=torch.float64)
    J_fd = torch.stack([(f(h * eye[k]) - f(-h * eye[k])) / (2 * h) for k in range(6 * N)], 1)
    # IRLS rows hold their weights fixed (weight_grad="stop"), finite differences do not: compare the rest
    sizes = [blk.r[0].numel() for blk in blocks]
    keep = torch.cat([torch.full((n,), not isinstance(term, Robust)) for n, term in zip(sizes, prob.terms)])
    torch.testing.assert_close(J[keep], J_fd[keep], atol=1e-5, rtol=1e-5)


def test_autograd_blocks_match_analytic_blocks(tiny):
    prob = problem(tiny, extra=True)
    R, t = _state(prob.num_nodes, seed=1)
    Ja, ra = dense_jacobian(residual_blocks(prob, R, t), prob.num_nodes)
    Jb, rb = dense_jacobian(autograd_blocks(prob, R, t), prob.num_nodes)
    torch.testing.assert_close(ra, rb)
    torch.testing.assert_close(Ja, Jb, atol=1e-9, rtol=1e-8)


def test_rotation_increment_is_left_multiplied(tiny):
    """d/d eps of exp(eps^) R a at 0 is -[R a]^ (App. A): check on the ARAP block of one edge."""
    prob = problem(tiny)
    N = prob.num_nodes
    R = so3_exp(torch.full((1, N, 3), 0.3, dtype=torch.float64))
    t = torch.zeros(1, N, 3, dtype=torch.float64)
    blocks = residual_blocks(prob, R, t, backend="warp")
    k_arap = [term.name for term in prob.terms].index("arap")
    arap = prob.terms[k_arap]
    i, k = 0, 0
    j = int(prob.edges[i, k])
    s = float(arap.scale[i, k])
    a = R[0, i] @ (prob.nodes[j] - prob.nodes[i])
    eps_block = blocks[k_arap].J[0, i * prob.edges.shape[1] + k, :, :3]
    hat = torch.tensor([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]], dtype=torch.float64)
    torch.testing.assert_close(eps_block, -s * hat)
