"""EDM from depth (eq. 1), the priors of Table 1 and the low-rank proposition, verified numerically."""

from __future__ import annotations

import pytest
import torch

from nrsfm_kit.edm import priors as P
from nrsfm_kit.geometry import edm, random_rotation


def _rays(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    pix = torch.rand(n, 2, generator=g, dtype=torch.float64) * torch.tensor([64.0, 48.0], dtype=torch.float64)
    return pix, P.normalized_rays(pix, torch.tensor([50.0, 55.0, 32.0, 24.0], dtype=torch.float64))


def test_edm_from_depth_matches_point_edm_and_sampled_form():
    pix, U = _rays()
    lam = 1 + torch.rand(3, 12, dtype=torch.float64)
    E = P.edm_from_depth(lam, U)
    X = P.points_from_depth(lam, U)
    assert torch.allclose(E, edm(X), atol=1e-12)
    i, j = torch.randint(0, 12, (30,)), torch.randint(0, 12, (30,))
    e = P.sampled_edm(lam, U, i, j)
    assert torch.allclose(e, E[:, i, j], atol=1e-12)
    # back-projection inverts the pinhole projection
    assert torch.allclose(X[0, :, :2] / X[0, :, 2:], U[:, :2])


def test_edm_from_depth_gradcheck():
    _, U = _rays(n=6)
    lam = (1 + torch.rand(6, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda d: P.edm_from_depth(d, U), (lam,))
    i, j = torch.tensor([0, 1, 2, 5]), torch.tensor([3, 4, 5, 0])
    assert torch.autograd.gradcheck(lambda d: P.sampled_edm(d, U, i, j), (lam,))


def test_priors_table():
    pix, U = _rays()
    n = 12
    assert torch.equal(P.rigid_weights(n), torch.ones(n, n))
    Wi = P.isometric_weights(pix, 10.0)
    d = torch.cdist(pix, pix)
    assert torch.equal(Wi.bool(), d <= 10.0) and bool(Wi.diagonal().all())
    lab = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1, 2, 0, 1, 2])
    Wp = P.piecewise_rigid_weights(lab, torch.float64)
    assert Wp[0, 1] == 1 and Wp[0, 2] == 0
    s = torch.rand(n, dtype=torch.float64)
    assert torch.allclose(P.arap_weights(s), s[:, None] * s[None])
    m = torch.rand(n, 3, dtype=torch.float64)
    Ws = P.scene_motion_weights(m)
    assert torch.allclose(Ws, 1 - torch.tanh(torch.cdist(m, m)))
    assert float(Ws.min()) >= 0 and torch.allclose(Ws.diagonal(), torch.ones(n, dtype=torch.float64))


def test_rigid_prior_residual_vanishes_under_rigid_motion_only():
    _, U = _rays(n=20)
    lam = 2 + torch.rand(20, dtype=torch.float64)
    X = P.points_from_depth(lam, U)
    R = random_rotation(1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)[0]
    Y = X @ R.T + torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
    W = P.rigid_weights(20, torch.float64)
    assert float(P.prior_residual(W, edm(X), edm(Y)).abs().max()) < 1e-10
    Y2 = Y.clone()
    Y2[:10] *= 1.3  # non-rigid: half of the points are stretched
    res = P.prior_residual(W, edm(X), edm(Y2))
    assert float(res.abs().max()) > 0.1
    # the piecewise-rigid prior that separates the stretched part still sees the stretch inside it
    lab = torch.cat([torch.zeros(10), torch.ones(10)]).long()
    Wp = P.piecewise_rigid_weights(lab, torch.float64)
    assert float(P.prior_residual(Wp, edm(X), edm(Y2))[10:, 10:].abs().max()) < 1e-10


@pytest.mark.parametrize("b", [0, 1, 2, 3])
def test_rank_of_edm_difference_linear_deformation(b):
    g = torch.Generator().manual_seed(b)
    Xk, Xl = P.linear_deformation(40, b, generator=g)
    assert P.gram_change_rank(Xk, Xl) == b
    D = P.edm_difference(Xk, Xl)
    bound = P.rank_bounds(b)[0]
    r = P.numerical_rank(D, ref=float(edm(Xl).norm()))
    assert r <= bound
    assert r == (bound if b > 0 else 0)  # tight for generic points


def test_rank_of_edm_difference_general_deformation_is_at_most_8():
    g = torch.Generator().manual_seed(0)
    Xk = torch.randn(40, 3, generator=g, dtype=torch.float64)
    Xl = torch.randn(40, 3, generator=g, dtype=torch.float64)
    b = P.gram_change_rank(Xk, Xl)
    assert b == 6
    assert P.numerical_rank(P.edm_difference(Xk, Xl)) == min(8, b + 2) == 8


@pytest.mark.parametrize("b", [1, 2, 3, 4])
def test_rank_of_stacked_edms_low_rank_shapes(b):
    g = torch.Generator().manual_seed(10 + b)
    shapes = P.low_rank_shapes(30, b, frames=40, generator=g)
    r = P.numerical_rank(P.stacked_edms(shapes))
    assert r <= P.rank_bounds(b)[1]
    assert r == P.rank_bounds(b)[1]  # generic: the bound is attained
    # a non-low-rank sequence exceeds it
    noise = torch.randn(40, 30, 3, generator=g, dtype=torch.float64)
    assert P.numerical_rank(P.stacked_edms(noise)) > P.rank_bounds(b)[1]


def test_bad_inputs():
    pix, U = _rays()
    with pytest.raises(ValueError, match="rays: expected shape"):
        P.edm_from_depth(torch.ones(5, dtype=torch.float64), U)
    with pytest.raises(ValueError, match="depth: expected finite"):
        P.edm_from_depth(torch.full((12,), float("nan"), dtype=torch.float64), U)
    with pytest.raises(ValueError, match="radius"):
        P.isometric_weights(pix, 0.0)
    with pytest.raises(ValueError, match=r"scores: expected values in \[0, 1\]"):
        P.arap_weights(torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match="b: expected 0 <= b <= 3"):
        P.linear_deformation(10, 4)
    with pytest.raises(ValueError, match=r"i: expected indices in \[0, 12\)"):
        P.sampled_edm(torch.ones(12, dtype=torch.float64), U, torch.tensor([12]), torch.tensor([0]))
