"""Hand-crafted matching baselines (SIFT, ORB, AKAZE, FPFH, DIS): interface, accuracy on known motion, bad input."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from nrsfm_kit.data.rgbd import synthetic_rgbd_pair
from nrsfm_kit.matching import baselines as bl
from nrsfm_kit.matching.baselines import BASELINES, DEEPDEFORM_WINDOW, match_baseline
from nrsfm_kit.metrics.matching import (
    MatchingMetrics,
    ground_truth_matches,
    match_points_3d,
    sample_source_points,
)

NAMES = ["sift", "orb", "akaze", "fpfh", "dis"]
SHIFT = (5, 3)  # (x, y) px of the pure image translation


def _need(name: str) -> None:
    if not BASELINES[name].available():
        pytest.skip(f"{name}: not in this OpenCV build (OpenCV 5 moved AKAZE to opencv-contrib)")


@pytest.fixture(scope="module")
def pair():
    return synthetic_rgbd_pair(120, 160, seed=0)


@pytest.fixture(scope="module")
def shifted(pair):
    """Target = source image and depth translated by SHIFT (np.roll; points are chosen away from the seam)."""
    dx, dy = SHIFT
    return dataclasses.replace(
        pair,
        target_color=torch.roll(pair.source_color, shifts=(dy, dx), dims=(1, 2)),
        target_depth=torch.roll(pair.source_depth, shifts=(dy, dx), dims=(0, 1)),
    )


def _textured_points(pair, n: int, margin: int = 16) -> torch.Tensor:
    """The n most textured (Shi-Tomasi score) valid-depth pixels, at least 6 px apart, away from the borders."""
    g = cv2.cvtColor((pair.source_color.permute(1, 2, 0).numpy() * 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
    score = cv2.cornerMinEigenVal(g, 5)
    H, W = g.shape
    ok = pair.source_depth.numpy() > 0
    ok[:margin], ok[H - margin:], ok[:, :margin], ok[:, W - margin:] = False, False, False, False
    order = np.argsort(-np.where(ok, score, -1).ravel())
    picked: list[tuple[int, int]] = []
    for i in order:
        y, x = divmod(int(i), W)
        if all(abs(x - a) + abs(y - b) >= 6 for a, b in picked):
            picked.append((x, y))
        if len(picked) == n:
            break
    return torch.tensor(picked, dtype=torch.float32)


@pytest.mark.parametrize("name", NAMES)
def test_every_baseline_returns_the_interface(pair, name):
    _need(name)
    px = sample_source_points(pair, 25, seed=1)
    tgt, ok = match_baseline(name, pair, px)
    assert tgt.shape == (25, 2) and tgt.dtype == pair.source_depth.dtype and ok.shape == (25,)
    assert ok.dtype == torch.bool and bool(ok.any())
    assert bool(torch.isfinite(tgt[ok]).all()) and bool(torch.isnan(tgt[~ok]).all())
    H, W = pair.source_depth.shape
    if name != "dis":  # candidates are image locations inside the window
        assert bool(((tgt[ok] >= 0) & (tgt[ok] <= torch.tensor([W - 1, H - 1]))).all())
        assert bool(((tgt[ok] - px[ok]).abs().amax(-1) <= DEEPDEFORM_WINDOW / 2).all())


@pytest.mark.parametrize("name", ["sift", "orb", "akaze", "dis"])
def test_image_baselines_recover_a_pure_translation(shifted, name):
    _need(name)
    px = _textured_points(shifted, 40)
    opts = {} if name == "dis" else {"stride": 1}  # a 1 px grid: the exact location is a candidate
    tgt, ok = match_baseline(name, shifted, px, **opts)
    err = (tgt - (px + torch.tensor(SHIFT, dtype=torch.float32))).norm(dim=-1)
    frac = float((ok & (err <= 2.0)).float().mean())
    assert frac >= 0.8, (name, frac, err)


def _rigidly_translated(pair, t=(0.04, -0.02, 0.0)):
    """Target depth = the source point cloud translated by t metres, re-rendered by z-buffered splatting."""
    H, W = pair.source_depth.shape
    fx, fy, cx, cy = pair.intrinsics.double().tolist()
    d = pair.source_depth.double().numpy()
    v, u = np.nonzero(d > 0)
    z = d[v, u]
    Y = np.stack([z * (u - cx) / fx, z * (v - cy) / fy, z], -1) + np.asarray(t)
    uu = np.floor(fx * Y[:, 0] / Y[:, 2] + cx + 0.5).astype(int)
    vv = np.floor(fy * Y[:, 1] / Y[:, 2] + cy + 0.5).astype(int)
    inside = (uu >= 0) & (uu < W) & (vv >= 0) & (vv < H)
    tgt = np.full((H, W), np.inf)
    np.minimum.at(tgt, (vv[inside], uu[inside]), Y[inside, 2])
    tgt[~np.isfinite(tgt)] = 0.0
    return dataclasses.replace(pair, target_depth=torch.from_numpy(tgt).to(pair.source_depth.dtype)), np.asarray(t)


def test_fpfh_finds_the_neighbourhood_under_a_rigid_translation(pair):
    moved, t = _rigidly_translated(pair)
    px = sample_source_points(pair, 60, seed=1)
    xi, yi = px[:, 0].long(), px[:, 1].long()
    names = pair.object_names
    ids = pair.source_object_ids[yi, xi]
    shaped = (ids == names.index("cylinder")) | (ids == names.index("box"))  # curved / cornered geometry
    px = px[shaped]
    assert len(px) >= 10
    fx, fy, cx, cy = pair.intrinsics.double().tolist()
    z = pair.source_depth.double()[px[:, 1].long(), px[:, 0].long()].numpy()
    p = px.double().numpy()
    Y = np.stack([z * (p[:, 0] - cx) / fx, z * (p[:, 1] - cy) / fy, z], -1) + t
    gt = np.stack([fx * Y[:, 0] / Y[:, 2] + cx, fy * Y[:, 1] / Y[:, 2] + cy], -1)
    tgt, ok = match_baseline("fpfh", moved, px)
    err = np.linalg.norm(tgt.double().numpy() - gt, axis=-1)
    frac = float((ok.numpy() & (err <= 10.0)).mean())
    assert frac > 0.5, (frac, err)


def test_window_and_rejection_options(shifted):
    px = _textured_points(shifted, 10)
    # a 6 px window (+-3 px) cannot hold the true match, 5 px right and 3 down: every prediction stays inside it
    tgt, ok = match_baseline("sift", shifted, px, window=6, stride=1)
    assert bool(ok.all()) and bool(((tgt - px).abs().amax(-1) <= 3).all())
    inverted = dataclasses.replace(shifted, target_color=1.0 - shifted.target_color)  # no descriptor repeats
    tgt, ok = match_baseline("orb", inverted, px, max_distance=1e-9, stride=8)
    assert not bool(ok.any()) and bool(torch.isnan(tgt).all())
    assert bool(match_baseline("orb", inverted, px, stride=8)[1].all())  # without max_distance: never rejects
    tgt, ok = match_baseline("sift", shifted, px, window=None, detect=False, stride=2, keypoint_size=2.0)
    assert bool(ok.all())
    tgt, ok = match_baseline("fpfh", shifted, px, window=None, voxel_size=None)
    assert bool(ok.all())


def test_points_opencv_drops_come_back_rejected(shifted, monkeypatch):
    """Without padding ORB's border filter drops points within edgeThreshold (31 px) of the edge: they are rejected."""
    monkeypatch.setattr(bl.ORBBaseline, "_pad", lambda self, cfg: 0)
    px = torch.tensor([[3.0, 60.0], [80.0, 60.0], [100.0, 40.0]])
    tgt, ok = match_baseline("orb", shifted, px, stride=1)
    assert ok.tolist() == [False, True, True] and bool(torch.isnan(tgt[0]).all())
    assert float((tgt[1:] - (px[1:] + torch.tensor(SHIFT, dtype=torch.float32))).norm(dim=-1).max()) <= 2.0


def test_akaze_without_the_contrib_build_says_how_to_get_it(pair, monkeypatch):
    monkeypatch.setattr(bl, "_akaze_factory", lambda: None)
    assert not BASELINES["akaze"].available()
    with pytest.raises(ImportError, match="opencv-contrib"):
        match_baseline("akaze", pair, sample_source_points(pair, 3))


def test_bad_inputs(pair):
    px = sample_source_points(pair, 4, seed=2)
    with pytest.raises(ValueError, match=r"name: expected one of \['akaze', 'dis', 'fpfh', 'orb', 'sift'\]"):
        match_baseline("surf", pair, px)
    with pytest.raises(ValueError, match="source_px: expected at least one point"):
        match_baseline("dis", pair, torch.zeros(0, 2))
    bad = px.clone()
    bad[2] = torch.tensor([160.0, 5.0])
    with pytest.raises(ValueError, match=r"source_px: expected finite pixels inside the 160 x 120 image.*index 2"):
        match_baseline("sift", pair, bad)
    hole = pair.source_depth.clone()
    x, y = int(px[1, 0]), int(px[1, 1])
    hole[y, x] = 0.0
    with pytest.raises(ValueError, match=r"source_px: expected points on valid source depth.*index 1"):
        match_baseline("orb", dataclasses.replace(pair, source_depth=hole), px)
    with pytest.raises(ValueError, match=r"pair.target_depth: expected shape \(H, W\)"):
        match_baseline("fpfh", dataclasses.replace(pair, target_depth=pair.target_depth[:60]), px)
    with pytest.raises(ValueError, match=r"pair.target_color: expected shape \(3, H, W\)"):
        match_baseline("dis", dataclasses.replace(pair, target_color=pair.target_color[:, :, :80]), px)
    with pytest.raises(ValueError, match=r"pair.source_color: expected RGB values in \[0, 1\]"):
        match_baseline("dis", dataclasses.replace(pair, source_color=pair.source_color * 255), px)
    with pytest.raises(ValueError, match="source_px: expected shape"):
        match_baseline("dis", pair, px[:, :1])
    with pytest.raises(ValueError, match="stride: expected an integer >= 1"):
        match_baseline("sift", pair, px, stride=0)
    with pytest.raises(ValueError, match="windw: expected an option of sift"):
        match_baseline("sift", pair, px, windw=10)
    with pytest.raises(ValueError, match="preset"):
        match_baseline("dis", pair, px, preset="slow")
    with pytest.raises(ValueError, match="pair: expected an RGBDPair"):
        match_baseline("dis", {"source_color": 0}, px)


def test_real_deepdeform_pair(real_data):
    from nrsfm_kit.data.deepdeform import load_deepdeform_pair

    pair = load_deepdeform_pair(real_data("deepdeform", "train", "seq258"), 0, 110, "shirt")
    px = sample_source_points(pair, 50, seed=0)  # shirt pixels with released (valid) flow
    gt, gxyz, valid = ground_truth_matches(pair, px)
    for name in NAMES:
        if not BASELINES[name].available():
            print(f"{name}: unavailable in this OpenCV build")
            continue
        tgt, ok = match_baseline(name, pair, px)
        assert tgt.shape == (50, 2) and bool(torch.isfinite(tgt[ok]).all()) and bool(ok.any())
        m = MatchingMetrics()
        m.update(tgt, gt, match_points_3d(pair, tgt), gxyz, valid, pred_valid=ok)
        r = m.compute()
        print(f"seq258 {name}: acc_2d {r['acc_2d']:.3f} flow_acc_20px {r['flow_acc_20px']:.3f} "
              f"mean_2d {r['mean_2d_px']:.1f} px acc_3d {r['acc_3d']:.3f} mean_3d {r['mean_3d_m']:.3f} m "
              f"coverage {r['coverage']:.2f}")
