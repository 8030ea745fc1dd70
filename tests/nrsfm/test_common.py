"""measurement_matrix: the (2F, P) stacking of factorisation methods, centring, missing points, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from nrsfm_kit.nrsfm import measurement_matrix


def test_layout_rows_x_then_y_per_frame():
    W = torch.arange(3 * 4 * 2, dtype=torch.float64).reshape(3, 4, 2)
    M = measurement_matrix(W, center=False)
    assert M.shape == (6, 4)
    assert torch.equal(M[0], W[0, :, 0]) and torch.equal(M[1], W[0, :, 1]) and torch.equal(M[5], W[2, :, 1])


def test_centred_matrix_of_a_rigid_scene_has_rank_3(make_lowrank):
    seq = make_lowrank(F=20, P=10, rigid=True)
    W = seq.W.double() + torch.randn(20, 1, 2, dtype=torch.float64)  # per-frame translations
    M = measurement_matrix(W)
    assert torch.allclose(M.sum(1), torch.zeros(40, dtype=torch.float64), atol=1e-12)  # every row centred
    s = torch.linalg.svdvals(M)
    assert s[3] / s[0] < 1e-6 and s[2] / s[0] > 1e-3
    # the notebook's readable two-liner
    assert torch.equal(M, (W - W.mean(1, keepdim=True)).permute(0, 2, 1).reshape(-1, W.shape[1]))


def test_missing_points_are_zero_and_do_not_move_the_centroid():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(4, 6, 2, generator=g, dtype=torch.float64)
    vis = torch.ones(4, 6, dtype=torch.bool)
    vis[1, 2] = vis[3, 0] = False
    Wn = W.clone()
    Wn[~vis] = float("nan")  # whatever sits at missing points is ignored
    M = measurement_matrix(Wn, vis)
    assert torch.isfinite(M).all() and M[2, 2] == 0 and M[3, 2] == 0 and M[6, 0] == 0
    c = W[1, vis[1]].mean(0)
    assert torch.allclose(M[2:4, vis[1]], (W[1, vis[1]] - c).T)
    assert torch.allclose(measurement_matrix(W, torch.ones(4, 6, dtype=torch.bool)), measurement_matrix(W))


@pytest.mark.parametrize(
    "args, match",
    [
        ((torch.zeros(3, 4, 3),), r"W: expected shape \(F, P, 2\)"),
        (([[0.0, 1.0]],), "W: expected a torch.Tensor of shape"),
        ((torch.zeros(3, 4, 2), torch.ones(3, 5, dtype=torch.bool)), r"visibility: expected shape \(3, 4\)"),
    ],
)
def test_bad_inputs(args, match):
    with pytest.raises(ValueError, match=match):
        measurement_matrix(*args)


def test_resolve_handedness_undoes_mirrored_runs_of_frames(make_lowrank):
    from nrsfm_kit.metrics.nrsfm import depth_flips
    from nrsfm_kit.nrsfm.common import resolve_handedness

    seq = make_lowrank(F=30, P=12, seed=3, defo=0.2)
    S = seq.S.double()
    X = S.clone()
    X[10:20, :, 2] *= -1  # a run of depth-mirrored frames: the same reprojection
    assert depth_flips(X, S)["flip_fraction"] == pytest.approx(1 / 3)
    Y, flipped = resolve_handedness(X)
    assert flipped.nonzero().squeeze(1).tolist() == list(range(10, 20))
    assert torch.equal(Y[..., :2], X[..., :2])  # reprojection unchanged
    assert depth_flips(Y, S)["flip_fraction"] == 0 and depth_flips(Y, S)["e3d_sequence"] < 1e-6
    _, none = resolve_handedness(S)
    assert not none.any()
    with pytest.raises(ValueError, match="S: expected"):
        resolve_handedness(S[0])
    with pytest.raises(ValueError, match="iters: expected >= 1"):
        resolve_handedness(S, iters=0)


def test_shape_space_residual_scores_the_low_rank_prior():
    from nrsfm_kit.geometry.so3 import random_rotation
    from nrsfm_kit.nrsfm.common import shape_space_residual

    g = torch.Generator().manual_seed(0)
    F, P = 40, 15
    mean = torch.randn(P, 3, generator=g, dtype=torch.float64)
    bases = torch.randn(2, P, 3, generator=g, dtype=torch.float64) * 0.1
    t = torch.linspace(0, 2 * math.pi, F, dtype=torch.float64)
    S = mean + torch.sin(t)[:, None, None] * bases[0] + 0.5 * torch.cos(2 * t)[:, None, None] * bases[1]  # rank 2
    # a rank-2 deformation (the small rotations Procrustes finds between deformed frames leave ~1e-4)
    assert shape_space_residual(S, rank=2) < 1e-3
    r1 = shape_space_residual(S, rank=1)
    assert 0.01 < r1 < 1
    # invariant to a rotation of every frame, to a translation and to the global scale
    R = random_rotation(F, generator=g, dtype=torch.float64)
    moved = 3.0 * S @ R.transpose(-1, -2) + torch.randn(F, 1, 3, generator=g, dtype=torch.float64)
    assert shape_space_residual(moved, rank=1) == pytest.approx(r1, rel=1e-6)
    assert shape_space_residual(moved, rank=2) < 1e-3
    # the same deformation energy spread over independent per-frame directions scores high
    noise = torch.randn(F, P, 3, generator=g, dtype=torch.float64)
    noise *= (S - S.mean(0)).norm() / noise.norm()
    assert shape_space_residual(mean + noise, rank=2) > 0.8
    assert shape_space_residual(mean + noise, rank=3) > 0.6 > 2 * r1
    assert shape_space_residual(S.float(), rank=2) == pytest.approx(shape_space_residual(S, rank=2), abs=1e-5)
    for bad, kw, match in ((S[0], {}, "S: expected"), (S[:1], {}, "S: expected at least 2 frames"),
                           (S, dict(rank=0), r"rank: expected an integer in \[1, 39\], found 0"),
                           (S, dict(rank=40), "rank: expected an integer"), (S, dict(iters=0), "iters: expected >= 1"),
                           (torch.zeros(F, P, 3, dtype=torch.float64), {}, "every frame collapsed to a point")):
        with pytest.raises(ValueError, match=match):
            shape_space_residual(bad, **kw)
    nan = S.clone()
    nan[3, 2, 1] = float("nan")
    with pytest.raises(ValueError, match="S: expected finite values"):
        shape_space_residual(nan)
