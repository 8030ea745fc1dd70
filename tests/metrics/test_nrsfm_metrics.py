"""NRSfM metrics: e3D (per-frame / sequence), MPJPE, EDM stress, reprojection error."""

from __future__ import annotations

import pytest
import torch

from nrsfm_kit.geometry import random_rotation
from nrsfm_kit.metrics import (
    align_shapes,
    e3d,
    e3d_per_frame,
    mpjpe,
    nrsfm_report,
    reprojection_error,
    stress,
)


def _shapes(F=5, P=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(F, P, 3, generator=g, dtype=torch.float64)


def test_e3d_zero_for_rotated_translated_and_flipped_copies():
    S = _shapes()
    R = random_rotation(S.shape[0], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    flip = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    pred = S @ R.transpose(-1, -2) + torch.randn(S.shape[0], 1, 3, dtype=torch.float64)
    pred[::2] = pred[::2] @ flip  # depth flip of every other frame
    assert float(e3d(pred, S)) < 1e-10
    assert float(mpjpe(pred, S)) < 1e-10
    assert float(stress(pred, S)) < 1e-10
    # one transform for the whole sequence cannot undo per-frame rotations and flips
    assert float(e3d(pred, S, alignment="sequence")) > 0.3


def test_sequence_alignment_exact_for_one_global_reflection():
    S = _shapes()
    Q = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3)))[0]
    Q[:, 0] *= -1 if torch.det(Q) > 0 else 1  # make it a reflection
    assert torch.det(Q) < 0
    assert float(e3d(S @ Q.T, S, alignment="sequence")) < 1e-10


def test_e3d_known_value_for_shrunk_shapes():
    S = _shapes()
    Sc = S - S.mean(1, keepdim=True)
    # per-frame Procrustes without scale cannot undo a uniform shrink: error = (1 - 0.6)
    assert float(e3d(0.6 * Sc + 3.0, S)) == pytest.approx(0.4, abs=1e-10)
    per = e3d_per_frame(0.6 * Sc, S)
    assert per.shape == (S.shape[0],)
    assert torch.allclose(per, torch.full_like(per, 0.4))
    # stress of a uniform scale s is |s - 1|
    assert float(stress(0.6 * S, S)) == pytest.approx(0.4, abs=1e-10)


def test_mpjpe_units():
    S = _shapes(F=3, P=6)
    shift = torch.zeros_like(S)
    shift[:, 0, 0] = 6.0  # move one point by 6 units: after centring the error is spread, before alignment
    err = mpjpe(S + shift, S, alignment="none")
    expected = (5.0 + 5 * 1.0) / 6  # the moved point is 5 off, the centroid shift moves the others by 1
    assert float(err) == pytest.approx(expected, rel=1e-9)


def test_align_shapes_returns_centred_aligned_copy():
    S = _shapes()
    A = align_shapes(S * 1.0, S)
    assert torch.allclose(A, S - S.mean(1, keepdim=True), atol=1e-10)


def test_reprojection_error_exact_and_offset():
    S = _shapes()
    R = random_rotation(S.shape[0], generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    M = R[:, :2]
    W = S @ M.transpose(-1, -2) + 5.0  # translation is factored out
    assert float(reprojection_error(W, S, M)) < 1e-10
    Scam = S @ R.transpose(-1, -2)
    assert float(reprojection_error(W, Scam)) < 1e-10
    W2 = W.clone()
    W2[:, 0] += torch.tensor([1.2, 0.0], dtype=torch.float64)
    vis = torch.ones(W.shape[:2], dtype=torch.bool)
    vis[:, 0] = False  # the perturbed point is masked out: still exact
    assert float(reprojection_error(W2, S, M, vis)) < 1e-10
    assert float(reprojection_error(W2, S, M)) > 0.1
    assert float(reprojection_error(W2, S, M, relative=True)) > 0.0


def test_report_has_all_metrics():
    S = _shapes()
    rep = nrsfm_report(S, S, W=S[..., :2])
    assert set(rep) == {"e3d", "e3d_seq", "mpjpe", "stress", "reproj"}
    assert all(v < 1e-9 for v in rep.values())


def test_gradcheck_metrics():
    S = _shapes(F=2, P=5)
    pred = (S + 0.3 * torch.randn_like(S)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: e3d(x, S), (pred,))
    assert torch.autograd.gradcheck(lambda x: e3d(x, S, alignment="sequence"), (pred,))
    assert torch.autograd.gradcheck(lambda x: stress(x, S), (pred,))
    assert torch.autograd.gradcheck(lambda x: mpjpe(x, S), (pred,))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda S: e3d(S[..., :2], S), r"S_pred: expected shape \(F, P, 3\)"),
        (lambda S: e3d(S[:, :4], S), r"S_gt: expected shape"),
        (lambda S: e3d(S, S, alignment="bogus"), r"alignment: expected one of"),
        (lambda S: e3d(S.clone().fill_(float("nan")), S), r"S_pred: expected finite values"),
        (lambda S: e3d(S, torch.zeros_like(S)), r"S_gt: expected non-degenerate frames"),
        (lambda S: stress(S[:, :2], S[:, :2]), r"S_gt: expected at least 3 points"),
        (lambda S: reprojection_error(S[..., :2], S, torch.zeros(3, 2, 3, dtype=S.dtype)), r"cameras: expected shape"),
        (
            lambda S: reprojection_error(S[..., :2], S, None, torch.zeros(S.shape[:2], dtype=torch.bool)),
            r"visibility: expected at least one visible point",
        ),
    ],
)
def test_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call(_shapes())


def test_depth_flips_finds_the_mirrored_frames():
    from nrsfm_kit.metrics.nrsfm import depth_flips

    g = torch.Generator().manual_seed(0)
    S = torch.randn(10, 15, 3, generator=g, dtype=torch.float64)
    exact = depth_flips(S.clone(), S)
    assert exact["flip_fraction"] == 0 and exact["e3d_frame"] < 1e-9 and exact["e3d_sequence"] < 1e-9
    X = S.clone()
    X[[2, 5, 7], :, 2] *= -1  # depth flips in three frames
    r = depth_flips(X, S)
    assert r["flipped"].nonzero().squeeze(1).tolist() == [2, 5, 7] and r["flip_fraction"] == pytest.approx(0.3)
    assert r["e3d_frame"] < 1e-9  # the per-frame metric hides the flips
    assert r["e3d_sequence"] > 0.1 and r["e3d_frame_rotation"] > 0.1
    mirrored = depth_flips(S * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64), S)
    assert mirrored["flip_fraction"] == 0  # a consistent mirror of the whole sequence is not a per-frame flip


def test_depth_flips_with_random_cameras_counts_only_the_minority():
    from nrsfm_kit.geometry import random_rotation
    from nrsfm_kit.metrics.nrsfm import depth_flips

    g = torch.Generator().manual_seed(1)
    S_world = torch.randn(12, 15, 3, generator=g, dtype=torch.float64)
    S = S_world @ random_rotation(12, generator=g, dtype=torch.float64).transpose(-1, -2)  # random views
    X = S.clone()
    X[[0, 4], :, 2] *= -1
    assert depth_flips(X, S)["flipped"].nonzero().squeeze(1).tolist() == [0, 4]
    assert depth_flips(S.clone(), S)["flip_fraction"] == 0
