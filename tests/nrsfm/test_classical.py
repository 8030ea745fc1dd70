"""Tomasi-Kanade and EM-PPCA on synthetic sequences with exact ground truth; input validation."""

from __future__ import annotations

import pytest
import torch

from nrsfm_kit.geometry import random_rotation
from nrsfm_kit.metrics import e3d, reprojection_error
from nrsfm_kit.nrsfm import EMPPCAConfig, em_ppca, metric_upgrade, tomasi_kanade


def test_metric_upgrade_recovers_orthographic_cameras():
    R = random_rotation(10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    A = torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    M_hat = R[:, :2] @ torch.linalg.inv(A)  # an affine ambiguity A applied to true cameras
    Q = metric_upgrade(M_hat)
    M = M_hat @ Q
    assert torch.allclose(M @ M.transpose(-1, -2), torch.eye(2, dtype=torch.float64).expand(10, 2, 2), atol=1e-8)


def test_tomasi_kanade_exact_on_rigid_data(make_lowrank):
    seq = make_lowrank(F=30, P=12, rigid=True)
    res = tomasi_kanade(seq.W, seq.visibility)
    assert res.S.shape == (30, 12, 3) and res.cameras.shape == (30, 2, 3)
    assert float(e3d(res.S, seq.S)) < 1e-4
    assert float(e3d(res.S, seq.S, alignment="sequence")) < 1e-4  # rigid: no per-frame flip ambiguity
    assert float(reprojection_error(seq.W, res.S)) < 1e-4


def test_tomasi_kanade_with_missing_points(make_lowrank):
    seq = make_lowrank(F=40, P=15, rigid=True, missing=0.2, seed=2)
    assert not bool(seq.visibility.all())
    res = tomasi_kanade(seq.W, seq.visibility)
    assert float(e3d(res.S, seq.S)) < 1e-3


def test_tomasi_kanade_is_biased_on_nonrigid_data(make_lowrank):
    seq = make_lowrank(F=40, P=15, defo=0.4, seed=3)
    assert float(e3d(tomasi_kanade(seq.W).S, seq.S)) > 0.05


def test_em_ppca_recovers_low_rank_shapes(make_lowrank):
    seq = make_lowrank(F=60, P=15, K=2, defo=0.3, seed=4)
    res = em_ppca(seq.W, seq.visibility, EMPPCAConfig(num_bases=2, iters=60))
    err = float(e3d(res.S, seq.S))
    assert err < 1e-2, err
    assert err < 0.2 * float(e3d(tomasi_kanade(seq.W).S, seq.S))
    assert res.extra["bases"].shape == (2, 15, 3) and res.extra["z"].shape == (60, 2)
    losses = res.extra["losses"]
    assert losses[-1] <= losses[0]


def test_em_ppca_with_missing_points_and_noise(make_lowrank):
    seq = make_lowrank(F=60, P=15, K=2, defo=0.3, seed=5, missing=0.15)
    W = seq.W + 0.01 * torch.randn_like(seq.W) * seq.visibility[..., None]
    res = em_ppca(W, seq.visibility, EMPPCAConfig(num_bases=2, iters=60))
    assert float(e3d(res.S, seq.S)) < 0.05


@pytest.mark.parametrize("fn", [tomasi_kanade, em_ppca])
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: (torch.zeros(5, 6, 3), None), r"W: expected shape \(F, P, 2\)"),
        (lambda: (torch.randn(1, 6, 2), None), r"W: expected at least 2 frames"),
        (lambda: (torch.randn(5, 3, 2), None), r"W: expected at least 4 points"),
        (lambda: (torch.randn(5, 6, 2), torch.ones(5, 6, dtype=torch.bool).index_fill_(0, torch.tensor([2]), False)),
         r"visibility: .*frame 2 with all points missing"),
        (lambda: (torch.randn(5, 6, 2).index_fill_(1, torch.tensor([1]), float("nan")), None),
         r"W: expected finite coordinates"),
        (lambda: (torch.randn(5, 6, 2), torch.ones(5, 7, dtype=torch.bool)), r"visibility: expected shape \(5, 6\)"),
    ],
)
def test_bad_inputs(fn, make, match):
    W, vis = make()
    with pytest.raises(ValueError, match=match):
        fn(W, vis)


def test_nan_at_missing_points_is_fine(make_lowrank):
    seq = make_lowrank(F=20, P=10, rigid=True, missing=0.1, seed=6)
    W = seq.W.clone()
    W[~seq.visibility] = float("nan")
    assert float(e3d(tomasi_kanade(W, seq.visibility).S, seq.S)) < 1e-3


def test_em_ppca_bad_config():
    with pytest.raises(ValueError, match="num_bases: expected >= 1"):
        em_ppca(torch.randn(5, 6, 2), None, EMPPCAConfig(num_bases=0))
