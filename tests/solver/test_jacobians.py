"""Analytic Jacobians (App. B.1) vs autograd and central finite differences on the full residual vector."""

from __future__ import annotations

import pytest
import torch

from nrsfm_kit.geometry import so3_exp
from nrsfm_kit.solver import EnergyTerms, prepare_problem, residual_blocks
from nrsfm_kit.solver.reference import residual_vector


def dense_rows(blocks, N):
    """Scatter the block-sparse Jacobians into the dense (M, 6N) matrix in residual_vector's row order."""
    dense = []
    for blk in blocks:
        J, cols = blk.J[0], blk.cols.long()
        G, g, nb6 = J.shape
        D = torch.zeros(G, g, 6 * N, dtype=J.dtype)
        for a in range(nb6 // 6):
            ok = cols[:, a] >= 0
            for k in range(6):
                idx = (6 * cols[:, a].clamp(min=0) + k)[ok]
                D[ok.nonzero().squeeze(1), :, idx] += J[ok, :, 6 * a + k]
        dense.append(D)
    Dd, Da = dense
    data = torch.cat([Dd[:, 0], Dd[:, 1], Dd[:, 2], Dd[:, 3:6].reshape(-1, 6 * N), Dd[:, 6]])
    return torch.cat([data, Da.reshape(-1, 6 * N)])


def problem(tiny):
    s = tiny
    terms = EnergyTerms(lambda_point=0.5, lambda_plane=2.0)
    return prepare_problem(s.graph, s.source_points, s.correspondences[:1], s.weights[:1], s.target_depth[:1],
                           s.intrinsics, terms=terms, target_normals=s.target_normals[:1],
                           min_cluster_correspondences=1, anchors=s.anchors, anchor_weights=s.anchor_weights)


@pytest.mark.parametrize("backend", ["warp", "torch"])
def test_jacobian_matches_autograd_and_finite_differences(tiny, backend):
    prob = problem(tiny)
    N = prob.num_nodes
    g = torch.Generator().manual_seed(0)
    R = so3_exp(0.2 * torch.randn(1, N, 3, generator=g, dtype=torch.float64))
    t = 0.02 * torch.randn(1, N, 3, generator=g, dtype=torch.float64)
    blocks = residual_blocks(prob, R, t, backend=backend)
    J = dense_rows(blocks, N)
    x0 = torch.zeros(6 * N, dtype=torch.float64)
    f = lambda x: residual_vector(x, prob, R[0], t[0])  # noqa: E731
    r = f(x0)
    r_blocks = torch.cat([blocks[0].r[0, :, 0], blocks[0].r[0, :, 1], blocks[0].r[0, :, 2],
                          blocks[0].r[0, :, 3:6].reshape(-1), blocks[0].r[0, :, 6], blocks[1].r[0].reshape(-1)])
    torch.testing.assert_close(r_blocks, r)
    assert (J.abs().sum(1) > 0).sum() > 100  # the check covers many non-trivial rows
    J_auto = torch.autograd.functional.jacobian(f, x0)
    torch.testing.assert_close(J, J_auto, atol=1e-9, rtol=1e-8)
    h = 1e-6
    eye = torch.eye(6 * N, dtype=torch.float64)
    J_fd = torch.stack([(f(h * eye[k]) - f(-h * eye[k])) / (2 * h) for k in range(6 * N)], 1)
    torch.testing.assert_close(J, J_fd, atol=1e-5, rtol=1e-5)


def test_rotation_increment_is_left_multiplied(tiny):
    """d/d eps of exp(eps^) R a at 0 is -[R a]^ (App. A): check on the ARAP block of one edge."""
    prob = problem(tiny)
    N = prob.num_nodes
    R = so3_exp(torch.full((1, N, 3), 0.3, dtype=torch.float64))
    t = torch.zeros(1, N, 3, dtype=torch.float64)
    blocks = residual_blocks(prob, R, t, backend="warp")
    i, k = 0, 0
    j = int(prob.edges[i, k])
    s = float(prob.arap_scale[i, k])
    a = R[0, i] @ (prob.nodes[j] - prob.nodes[i])
    eps_block = blocks[1].J[0, i * prob.edges.shape[1] + k, :, :3]
    hat = torch.tensor([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]], dtype=torch.float64)
    torch.testing.assert_close(eps_block, -s * hat)
