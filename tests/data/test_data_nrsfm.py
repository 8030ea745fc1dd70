"""Synthetic NRSfM sequences and the classic .mat loader."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.io
import torch

from nrsfm_kit.data import NRSfMFrames, center_sequence, load_nrsfm_mat, save_nrsfm_mat, synthetic_nrsfm
from nrsfm_kit.data.nrsfm import CAR_KEYPOINTS

KINDS = ["skeleton", "lowrank", "category"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("camera", ["random", "smooth"])
def test_conventions_exact(kind, camera):
    seq = synthetic_nrsfm(kind, num_frames=40, camera=camera, seed=3, dtype=torch.float64)
    F, P = seq.W.shape[:2]
    assert F == 40 and seq.S.shape == (F, P, 3) and seq.cameras.shape == (F, 2, 3)
    M = seq.cameras
    # cameras orthonormal, W = S[..., :2] = S_world M^T, S = S_world R^T with R = [M; m1 x m2]
    assert torch.allclose(M @ M.mT, torch.eye(2, dtype=M.dtype).expand(F, 2, 2), atol=1e-12)
    assert torch.allclose(seq.W, seq.S[..., :2], atol=1e-12)
    assert torch.allclose(seq.W, seq.S_world @ M.mT, atol=1e-12)
    R = torch.cat([M, torch.linalg.cross(M[:, 0], M[:, 1])[:, None]], dim=1)
    assert torch.allclose(seq.S, seq.S_world @ R.mT, atol=1e-12)
    assert torch.allclose(torch.linalg.det(R), torch.ones(F, dtype=R.dtype))
    # centred per frame, all visible, finite
    assert seq.W.mean(1).abs().max() < 1e-12
    assert seq.visibility.all() and torch.isfinite(seq.S).all()
    assert all(0 <= i < P and 0 <= j < P for i, j in seq.bones)


def test_deterministic_and_seed_dependent():
    a = synthetic_nrsfm("skeleton", num_frames=20, seed=5)
    b = synthetic_nrsfm("skeleton", num_frames=20, seed=5)
    c = synthetic_nrsfm("skeleton", num_frames=20, seed=6)
    assert torch.equal(a.W, b.W) and torch.equal(a.S, b.S)
    assert not torch.allclose(a.W, c.W)
    assert a.W.dtype == torch.float32


@pytest.mark.parametrize("motion", ["walking", "waving", "bending"])
def test_skeleton_is_articulated(motion):
    seq = synthetic_nrsfm("skeleton", num_frames=60, motion=motion, seed=1, dtype=torch.float64)
    assert seq.num_points == 31 and len(seq.bones) == 30
    i, j = torch.tensor(seq.bones).T
    lengths = (seq.S_world[:, i] - seq.S_world[:, j]).norm(dim=-1)  # (F, 30)
    # rigid bones: every bone length constant over time, and the body really moves
    assert (lengths.std(0) / lengths.mean(0)).max() < 1e-10
    assert 0.03 < lengths.mean() < 0.5
    motion_range = (seq.S_world - seq.S_world.mean(0)).norm(dim=-1).max()
    assert motion_range > 0.1
    # the body is upright: head (joint 16) above the toes (joints 5, 10) in the world frame
    assert (seq.S_world[:, 16, 1] > seq.S_world[:, [5, 10], 1].max(1).values + 0.8).all()


def test_lowrank_has_the_stated_rank():
    K = 3
    seq = synthetic_nrsfm("lowrank", num_frames=80, num_points=30, rank=K, seed=2, dtype=torch.float64)
    sv = torch.linalg.svdvals(seq.S_world.reshape(80, -1))
    # mean + K bases (centring is linear in the coefficients): rank K + 1, not more
    assert sv[K] > 1e-3 * sv[0]
    assert sv[K + 1] < 1e-10 * sv[0]


def test_category_instances_are_symmetric_cars():
    seq = synthetic_nrsfm("category", num_frames=30, seed=4, dtype=torch.float64)
    assert seq.num_points == len(CAR_KEYPOINTS) == 12
    S = seq.S_world
    mirror = S[:, [2, 3, 0, 1, 5, 4, 7, 6, 9, 8, 11, 10]] * torch.tensor([-1.0, 1.0, 1.0], dtype=S.dtype)
    assert torch.allclose(S, mirror, atol=1e-12)  # bilateral symmetry of every instance
    length = (S[:, 0] - S[:, 1]).norm(dim=-1)  # wheelbase varies across instances
    assert length.std() / length.mean() > 0.05


def test_smooth_cameras_are_smooth_random_are_not():
    def steps(camera):
        M = synthetic_nrsfm("skeleton", num_frames=100, camera=camera, seed=0, dtype=torch.float64).cameras
        R = torch.cat([M, torch.linalg.cross(M[:, 0], M[:, 1])[:, None]], 1)
        rel = R[1:] @ R[:-1].mT
        return torch.rad2deg(torch.arccos(((rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)))

    assert steps("smooth").max() < 8.0
    assert steps("random").median() > 30.0


def test_noise_ratio_and_missing_ratio_exact():
    clean = synthetic_nrsfm("skeleton", num_frames=50, seed=7, missing_ratio=0.25, dtype=torch.float64)
    noisy = synthetic_nrsfm(
        "skeleton", num_frames=50, seed=7, missing_ratio=0.25, noise_ratio=0.05, dtype=torch.float64
    )
    vis = noisy.visibility
    assert abs(vis.float().mean().item() - 0.75) < 1.0 / (50 * 31)
    assert torch.equal(vis, clean.visibility)
    assert (noisy.W[~vis] == 0).all()
    ratio = (noisy.W - clean.W).norm() / clean.W.norm()
    assert math.isclose(ratio.item(), 0.05, rel_tol=1e-9)
    # missing points keep exact ground truth
    assert torch.allclose(noisy.S, clean.S)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "blob"}, "kind"),
        ({"motion": "dance"}, "motion"),
        ({"camera": "fisheye"}, "camera"),
        ({"num_frames": 1}, "num_frames"),
        ({"kind": "skeleton", "num_points": 20}, "num_points"),
        ({"kind": "category", "num_points": 20}, "num_points"),
        ({"kind": "lowrank", "num_points": 2}, "num_points"),
        ({"kind": "lowrank", "num_points": 10, "rank": 10}, "rank"),
        ({"noise_ratio": -0.1}, "noise_ratio"),
        ({"noise_ratio": float("nan")}, "noise_ratio"),
        ({"missing_ratio": 1.0}, "missing_ratio"),
        ({"num_frames": float("nan")}, r"num_frames: expected an integer >= 2, found nan"),
        ({"kind": "lowrank", "num_points": "40"}, "num_points"),
        ({"kind": "lowrank", "rank": 0}, "rank"),
        ({"seed": -1}, "seed"),
        ({"dtype": torch.int64}, "dtype"),
    ],
)
def test_synthetic_bad_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        synthetic_nrsfm(**{"num_frames": 10, **kwargs})


def test_frames_dataset_and_centering():
    seq = synthetic_nrsfm("lowrank", num_frames=12, seed=0, missing_ratio=0.1)
    ds = NRSfMFrames(seq)
    assert len(ds) == 12
    item = ds[3]
    assert item["W"].shape == (40, 2) and item["S"].shape == (40, 3) and item["camera"].shape == (2, 3)
    with pytest.raises(IndexError):
        ds[12]
    shifted = synthetic_nrsfm("lowrank", num_frames=12, seed=0)
    shifted.W = shifted.W + torch.tensor([3.0, -2.0])
    shifted.S = shifted.S + torch.tensor([3.0, -2.0, 5.0])
    c = center_sequence(shifted)
    assert c.W.mean(1).abs().max() < 1e-5 and torch.allclose(c.W, c.S[..., :2], atol=1e-5)
    bad = synthetic_nrsfm("lowrank", num_frames=12, seed=0)
    bad.W[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"seq\.W: expected finite"):
        NRSfMFrames(bad)


# ------------------------------------------------------------------------------------ loader


def _seq64():
    return synthetic_nrsfm("skeleton", num_frames=15, seed=9, dtype=torch.float64)


def test_load_x_layout(tmp_path):
    seq = _seq64()
    X = seq.S.numpy().transpose(2, 1, 0).copy()  # (3, P, F)
    X[:, 4, 2] = np.nan  # a missing point
    p = tmp_path / "x.mat"
    scipy.io.savemat(p, {"X": X})
    got = load_nrsfm_mat(p, dtype=torch.float64)
    assert got.W.shape == (15, 31, 2) and got.name == "x"
    assert not got.visibility[2, 4] and got.visibility.sum() == 15 * 31 - 1
    v = got.visibility
    assert torch.allclose(got.W[v], seq.W[v]) and torch.allclose(got.S[v], seq.S[v])
    assert (got.W[~v] == 0).all() and torch.isfinite(got.S).all()


def test_load_w_s_layout_camera_frame(tmp_path):
    seq = _seq64()
    W = seq.W.numpy().transpose(0, 2, 1).reshape(-1, 31)  # rows x1, y1, x2, y2, ...
    S = seq.S.numpy().transpose(0, 2, 1).reshape(-1, 31)
    scipy.io.savemat(tmp_path / "ws.mat", {"W": W, "S": S})
    got = load_nrsfm_mat(tmp_path / "ws.mat", dtype=torch.float64)
    assert torch.allclose(got.W, seq.W) and torch.allclose(got.S, seq.S)
    assert got.cameras is None


@pytest.mark.parametrize("with_rs", [True, False])
def test_load_w_s_layout_world_frame(tmp_path, with_rs):
    seq = _seq64()
    W = seq.W.numpy().transpose(0, 2, 1).reshape(-1, 31)
    S = seq.S_world.numpy().transpose(0, 2, 1).reshape(-1, 31)
    d = {"W": W, "S": S}
    if with_rs:
        d["Rs"] = seq.cameras.numpy().reshape(-1, 3)
    scipy.io.savemat(tmp_path / "w.mat", d)
    got = load_nrsfm_mat(tmp_path / "w.mat", dtype=torch.float64)
    assert torch.allclose(got.cameras, seq.cameras, atol=1e-9)
    assert torch.allclose(got.S, seq.S, atol=1e-9)  # rotated into the camera frame
    assert torch.allclose(got.S_world, seq.S_world)


def test_load_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mat"):
        load_nrsfm_mat(tmp_path / "nope.mat")
    (tmp_path / "junk.mat").write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(ValueError, match="junk.mat"):
        load_nrsfm_mat(tmp_path / "junk.mat")
    scipy.io.savemat(tmp_path / "other.mat", {"Y": np.zeros((3, 4))})
    with pytest.raises(ValueError, match=r"other\.mat: expected a variable 'X'"):
        load_nrsfm_mat(tmp_path / "other.mat")
    scipy.io.savemat(tmp_path / "x2.mat", {"X": np.zeros((2, 4, 5))})
    with pytest.raises(ValueError, match=r"x2\.mat: X: expected shape \(3, P, F\), found \(2, 4, 5\)"):
        load_nrsfm_mat(tmp_path / "x2.mat")
    scipy.io.savemat(tmp_path / "w3.mat", {"W": np.zeros((3, 4))})
    with pytest.raises(ValueError, match=r"W: expected shape \(2F, P\)"):
        load_nrsfm_mat(tmp_path / "w3.mat")
    scipy.io.savemat(tmp_path / "ws.mat", {"W": np.zeros((4, 5)), "S": np.zeros((5, 5))})
    with pytest.raises(ValueError, match=r"S: expected shape \(3F, P\)"):
        load_nrsfm_mat(tmp_path / "ws.mat")
    X = np.ones((3, 4, 5))
    X[2, 1, 3] = -np.inf
    scipy.io.savemat(tmp_path / "xinf.mat", {"X": X})
    with pytest.raises(ValueError, match=r"xinf\.mat: X: expected finite values or NaN \(missing\), found 1 infinite"):
        load_nrsfm_mat(tmp_path / "xinf.mat")
    Wi = np.zeros((4, 5))
    Wi[1, 1] = np.inf
    scipy.io.savemat(tmp_path / "winf.mat", {"W": Wi})
    with pytest.raises(ValueError, match=r"winf\.mat: W: expected finite values or NaN"):
        load_nrsfm_mat(tmp_path / "winf.mat")
    S = np.ones((6, 5))
    S[0, 0] = np.inf
    scipy.io.savemat(tmp_path / "wsinf.mat", {"W": np.zeros((4, 5)), "S": S})
    with pytest.raises(ValueError, match=r"wsinf\.mat: S: expected finite"):
        load_nrsfm_mat(tmp_path / "wsinf.mat")


REAL = {"pickup": (41, 357), "yoga": (41, 307), "stretch": (41, 370), "face": (40, 316), "walking": (55, 260)}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_sequences(real_data, name):
    seq = load_nrsfm_mat(real_data("nrsfm", f"{name}.mat"))
    P, F = REAL[name]
    assert seq.W.shape == (F, P, 2) and seq.S.shape == (F, P, 3)
    assert seq.visibility.all() and torch.isfinite(seq.S).all()
    assert torch.equal(seq.W, seq.S[..., :2])
    # motion capture: the shapes change over time (non-rigid) but stay bounded
    c = center_sequence(seq)
    spread = (c.S - c.S.mean(0)).norm(dim=-1).mean()
    assert spread > 1e-3 * c.S.norm(dim=-1).mean()


@pytest.mark.parametrize("layout", ["X", "WS"])
def test_save_load_round_trip(tmp_path, layout):
    seq = synthetic_nrsfm("lowrank", num_frames=10, seed=1, missing_ratio=0.2, dtype=torch.float64)
    save_nrsfm_mat(tmp_path / "s.mat", seq, layout=layout)
    got = load_nrsfm_mat(tmp_path / "s.mat", dtype=torch.float64)
    assert torch.equal(got.visibility, seq.visibility)
    assert torch.allclose(got.W, seq.W)
    v = seq.visibility
    assert torch.allclose(got.S[v], seq.S[v], atol=1e-9)
    if layout == "WS":
        assert torch.allclose(got.cameras, seq.cameras) and torch.allclose(got.S, seq.S, atol=1e-9)
    with pytest.raises(ValueError, match="layout"):
        save_nrsfm_mat(tmp_path / "t.mat", seq, layout="Y")
