"""Sintel, VolumeDeform and C3DPO-keypoint loaders on fixtures the tests write themselves."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nrsfm_kit.data import synthetic_monocular_video, synthetic_nrsfm, synthetic_rgbd_sequence
from nrsfm_kit.data.imageio import write_color, write_depth_png, write_mask
from nrsfm_kit.data.pascal3d import load_c3dpo_keypoints, save_c3dpo_keypoints
from nrsfm_kit.data.sintel import (
    load_sintel_scene,
    read_cam,
    read_dpt,
    read_flo,
    write_cam,
    write_dpt,
    write_flo,
)
from nrsfm_kit.data.volumedeform import (
    list_volumedeform_frames,
    load_volumedeform_sequence,
    save_volumedeform_sequence,
)

# ------------------------------------------------------------------------------------ Sintel


def test_flo_dpt_cam_round_trip(tmp_path):
    flow = torch.randn(6, 9, 2)
    flow[2, 3] = 1e10  # "unknown"
    f, v = read_flo(write_flo(tmp_path / "a.flo", flow))
    assert (tmp_path / "a.flo").read_bytes()[:4] == b"PIEH"
    assert not v[2, 3] and v.sum() == 53 and torch.equal(f[v], flow[v]) and (f[2, 3] == 0).all()
    d = torch.rand(6, 9) * 10
    assert torch.equal(read_dpt(write_dpt(tmp_path / "a.dpt", d)), d)
    M = torch.tensor([[500.0, 0, 300], [0, 510, 200], [0, 0, 1]], dtype=torch.float64)
    N = torch.cat([torch.eye(3, dtype=torch.float64), torch.tensor([[1.0], [2], [3]], dtype=torch.float64)], 1)
    M2, N2 = read_cam(write_cam(tmp_path / "a.cam", M, N))
    assert torch.equal(M2, M) and torch.equal(N2, N)


def test_sintel_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"x\.flo"):
        read_flo(tmp_path / "x.flo")
    (tmp_path / "tag.flo").write_bytes(np.array([1.0, 0, 0], "<f4").tobytes())
    with pytest.raises(ValueError, match=r"tag\.flo: expected the \.flo tag 202021\.25"):
        read_flo(tmp_path / "tag.flo")
    raw = write_flo(tmp_path / "ok.flo", torch.zeros(3, 4, 2)).read_bytes()
    (tmp_path / "short.flo").write_bytes(raw[:-8])
    with pytest.raises(ValueError, match=r"short\.flo: header says 4x3x2"):
        read_flo(tmp_path / "short.flo")
    d = np.ones((3, 4), "<f4")
    d[0, 0] = np.inf
    head = np.array([202021.25], "<f4").tobytes() + np.array([4, 3], "<i4").tobytes()
    (tmp_path / "inf.dpt").write_bytes(head + d.tobytes())
    with pytest.raises(ValueError, match=r"inf\.dpt: expected finite depth"):
        read_dpt(tmp_path / "inf.dpt")
    with pytest.raises(ValueError, match=r"depth: expected finite values >= 0 writing .*w\.dpt"):
        write_dpt(tmp_path / "w.dpt", torch.from_numpy(d))
    with pytest.raises(ValueError, match=r"depth: expected finite values >= 0"):
        write_dpt(tmp_path / "w.dpt", -torch.ones(2, 2))
    with pytest.raises(ValueError, match=r"flow: expected no NaN"):
        write_flo(tmp_path / "n.flo", torch.full((2, 2, 2), float("nan")))
    with pytest.raises(ValueError, match=r"M, N: expected shapes \(3, 3\) and \(3, 4\), found \(3, 3\) and \(4, 4\)"):
        write_cam(tmp_path / "n.cam", torch.eye(3), torch.eye(4))
    with pytest.raises(ValueError, match=r"M, N: expected finite camera matrices"):
        write_cam(tmp_path / "n.cam", torch.full((3, 3), float("inf")), torch.zeros(3, 4))
    (tmp_path / "c.cam").write_bytes(np.array([202021.25], "<f4").tobytes() + b"\0" * 16)
    with pytest.raises(ValueError, match=r"c\.cam: expected 172 bytes"):
        read_cam(tmp_path / "c.cam")
    with pytest.raises(ValueError, match="flow: expected shape"):
        write_flo(tmp_path / "b.flo", torch.zeros(3, 4))


def _write_sintel(root, video, scene="toy"):
    base = root / "training"
    K = torch.tensor([[video.intrinsics[0], 0, video.intrinsics[2]], [0, video.intrinsics[1], video.intrinsics[3]],
                      [0, 0, 1]], dtype=torch.float64)  # fmt: skip
    for t in range(video.frames.shape[0]):
        n = f"frame_{t + 1:04d}"
        write_color(base / "clean" / scene / f"{n}.png", video.frames[t])
        write_dpt(base / "depth" / scene / f"{n}.dpt", video.depth[t])
        write_cam(base / "camdata_left" / scene / f"{n}.cam", K, video.poses[t, :3].double())
        if t + 1 < video.frames.shape[0]:
            write_flo(base / "flow" / scene / f"{n}.flo", video.flow[t])
            write_mask(base / "occlusions" / scene / f"{n}.png", ~video.flow_visibility[t], value=255)


def test_sintel_scene_round_trip(tmp_path):
    video = synthetic_monocular_video(num_frames=3, height=24, width=32, seed=0)
    _write_sintel(tmp_path, video)
    got = load_sintel_scene(tmp_path, "toy")
    assert got.frames.shape == (3, 3, 24, 32) and got.flow.shape == (2, 24, 32, 2)
    assert (got.frames - video.frames).abs().max() <= 0.5 / 255 + 1e-6  # png
    assert torch.equal(got.depth, video.depth) and torch.equal(got.flow, video.flow)
    assert torch.equal(got.flow_visibility, video.flow_visibility)
    assert torch.allclose(got.intrinsics, video.intrinsics) and torch.allclose(got.poses, video.poses)
    part = load_sintel_scene(tmp_path, "toy", frames=(2, 3))
    assert part.frames.shape[0] == 2 and torch.equal(part.flow[0], video.flow[1])
    with pytest.raises(FileNotFoundError, match=r"clean[/\\]nope: Sintel scene folder not found"):
        load_sintel_scene(tmp_path, "nope")
    with pytest.raises(ValueError, match="pass_name"):
        load_sintel_scene(tmp_path, "toy", pass_name="albedo")
    (tmp_path / "training" / "flow" / "toy" / "frame_0002.flo").unlink()
    with pytest.raises(FileNotFoundError, match=r"frame_0002\.flo"):
        load_sintel_scene(tmp_path, "toy")


# ------------------------------------------------------------------------------------ VolumeDeform


def test_volumedeform_round_trip(tmp_path):
    seq = synthetic_rgbd_sequence(3, 20, 28, seed=1, objects=("box",))
    save_volumedeform_sequence(seq, tmp_path / "boxing")
    assert list_volumedeform_frames(tmp_path / "boxing") == [0, 1, 2]
    got = load_volumedeform_sequence(tmp_path / "boxing")
    assert got.colors.shape == (3, 3, 20, 28) and got.name == "volumedeform-boxing"
    assert (got.depths - seq.depths).abs().max() <= 0.0005 + 1e-6
    assert (got.colors - seq.colors).abs().max() <= 0.5 / 255 + 1e-6
    assert torch.allclose(got.intrinsics, seq.intrinsics, rtol=1e-6)
    two = load_volumedeform_sequence(tmp_path / "boxing", frames=[2, 0], intrinsics=[1.0, 1.0, 2.0, 3.0])
    assert torch.equal(two.colors[0], got.colors[2]) and two.intrinsics.tolist() == [1.0, 1.0, 2.0, 3.0]


def test_volumedeform_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="VolumeDeform sequence folder not found"):
        load_volumedeform_sequence(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no frame-%06d\.color\.png"):
        load_volumedeform_sequence(tmp_path / "empty")
    seq = synthetic_rgbd_sequence(2, 16, 16, seed=1, objects=("box",))
    save_volumedeform_sequence(seq, tmp_path / "s")
    (tmp_path / "s" / "intrinsics.txt").unlink()
    with pytest.raises(FileNotFoundError, match="no intrinsics file"):
        load_volumedeform_sequence(tmp_path / "s")
    write_depth_png(tmp_path / "s" / "data" / "frame-000001.depth.png", torch.ones(8, 8))
    with pytest.raises(ValueError, match=r"frame 1: colour size \(16, 16\) != depth size \(8, 8\)"):
        load_volumedeform_sequence(tmp_path / "s", intrinsics=[1, 1, 1, 1])
    (tmp_path / "s" / "data" / "frame-000001.depth.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"frame-000001\.depth\.png: depth image not found"):
        load_volumedeform_sequence(tmp_path / "s", intrinsics=[1, 1, 1, 1])
    with pytest.raises(ValueError, match="intrinsics"):
        load_volumedeform_sequence(tmp_path / "s", frames=[0], intrinsics=[1, 1, 1])


# ------------------------------------------------------------------------------------ C3DPO keypoints


def test_c3dpo_round_trip(tmp_path):
    seq = synthetic_nrsfm("category", num_frames=6, seed=2, missing_ratio=0.2, dtype=torch.float64)
    save_c3dpo_keypoints(tmp_path / "cars.json", seq)
    got = load_c3dpo_keypoints(tmp_path / "cars.json", dtype=torch.float64)
    assert torch.equal(got.visibility, seq.visibility)
    assert torch.allclose(got.W, seq.W) and torch.allclose(got.S, seq.S)
    assert got.name == "cars"


def test_c3dpo_class_mask_and_bbox(tmp_path):
    recs = [
        {"kp_loc": [[1, 2, 3], [4, 5, 6]], "kp_vis": [1, 1, 1], "class_mask": [1, 1, 0]},
        {"kp_loc": [[7, 8, 9], [1, 2, 3]], "kp_vis": [1, 0, 1], "class_mask": [0, 1, 1],
         "p3d_info": {"bbox": [0, 0, 8.5, 10]}},
        {"kp_loc": [[10, 0, 1], [2, 2, 2]], "kp_vis": [1, 1, 1], "class_mask": [1, 1, 0],
         "p3d_info": {"bbox": [0, 0, 5, 5]}},
    ]  # fmt: skip
    (tmp_path / "p.json").write_text(json.dumps(recs))
    allp = load_c3dpo_keypoints(tmp_path / "p.json")
    assert allp.W.shape == (3, 3, 2) and allp.S is None
    # record 1: kp 1 invisible, kp 2 (x = 9) outside the 10 % box margin (<= 9.35) is kept; record 2: x = 10 out
    assert allp.visibility.tolist() == [[True] * 3, [True, False, True], [False, True, True]]
    cars = load_c3dpo_keypoints(tmp_path / "p.json", class_mask=[1, 1, 0])
    assert cars.W.shape == (2, 2, 2) and cars.W[0].tolist() == [[1.0, 4.0], [2.0, 5.0]]
    with pytest.raises(ValueError, match="no record matches"):
        load_c3dpo_keypoints(tmp_path / "p.json", class_mask=[1, 0, 1])


def test_c3dpo_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"k\.json"):
        load_c3dpo_keypoints(tmp_path / "k.json")
    (tmp_path / "a.json").write_text("[")
    with pytest.raises(ValueError, match=r"a\.json: not valid JSON"):
        load_c3dpo_keypoints(tmp_path / "a.json")
    (tmp_path / "b.json").write_text(json.dumps({"dataset": "x", "items": []}))
    with pytest.raises(ValueError, match=r"b\.json: expected a list of records or an object with 'data'"):
        load_c3dpo_keypoints(tmp_path / "b.json")
    (tmp_path / "c.json").write_text(json.dumps([{"kp_loc": [[1, 2]], "kp_vis": [1, 1]}]))
    with pytest.raises(ValueError, match=r"record 0: kp_loc: expected shape \(2, P\), found \(1, 2\)"):
        load_c3dpo_keypoints(tmp_path / "c.json")
    recs = [{"kp_loc": [[1, 2], [3, 4]], "kp_vis": [1, 1]}, {"kp_loc": [[1, 2, 3], [3, 4, 5]], "kp_vis": [1, 1, 1]}]
    (tmp_path / "d.json").write_text(json.dumps(recs))
    with pytest.raises(ValueError, match="record 1: expected 2 keypoints"):
        load_c3dpo_keypoints(tmp_path / "d.json")
    (tmp_path / "e.json").write_text(json.dumps([{"kp_loc": [[1, float("nan")], [3, 4]], "kp_vis": [1, 1]}]))
    with pytest.raises(ValueError, match="record 0: kp_loc: expected finite visible keypoints"):
        load_c3dpo_keypoints(tmp_path / "e.json")
    (tmp_path / "f.json").write_text(json.dumps([{"kp_vis": [1]}]))
    with pytest.raises(ValueError, match="record 0: expected keys 'kp_loc' and 'kp_vis'"):
        load_c3dpo_keypoints(tmp_path / "f.json")


# ------------------------------------------------------------------------------------ misc bad inputs


def test_misc_bad_inputs(tmp_path):
    from nrsfm_kit.data import DeepDeformPairs, views_from_shapes, write_flow_binary
    from nrsfm_kit.data.imageio import read_color, read_depth_png, read_intrinsics_txt, write_depth_png

    with pytest.raises(ValueError, match=r"S_world: expected shape \(F, P, 3\)"):
        views_from_shapes(np.zeros((4, 5, 2)))
    bad = np.zeros((2, 3, 3))
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="S_world: expected finite"):
        views_from_shapes(bad)
    with pytest.raises(ValueError, match="camera"):
        views_from_shapes(np.ones((2, 3, 3)), camera="wobbly")
    with pytest.raises(FileNotFoundError, match="DeepDeform split folder not found"):
        DeepDeformPairs(tmp_path, "val")
    (tmp_path / "train" / "seq" / "optical_flow").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no .*oflow files found"):
        DeepDeformPairs(tmp_path, "train")
    with pytest.raises(ValueError, match=r"flow: expected shape \(H, W, C\)"):
        write_flow_binary(tmp_path / "f.oflow", torch.zeros(4, 4))
    with pytest.raises(ValueError, match="depth: expected finite values in"):
        write_depth_png(tmp_path / "d.png", torch.full((2, 2), 70.0))
    write_color(tmp_path / "c.png", torch.rand(3, 4, 5))
    with pytest.raises(ValueError, match=r"c\.png: expected a single-channel uint16 depth PNG"):
        read_depth_png(tmp_path / "c.png")
    assert read_color(tmp_path / "c.png").shape == (3, 4, 5)
    (tmp_path / "K.txt").write_text("500 0 320\n0 -1 240\n0 0 1\n")
    with pytest.raises(ValueError, match=r"K\.txt: intrinsics: expected focal lengths"):
        read_intrinsics_txt(tmp_path / "K.txt")
    (tmp_path / "K2.txt").write_text("500 500 320 240\n")
    assert read_intrinsics_txt(tmp_path / "K2.txt").tolist() == [500.0, 500.0, 320.0, 240.0]
    (tmp_path / "K3.txt").write_text("a b\n")
    with pytest.raises(ValueError, match=r"K3\.txt: expected a whitespace-separated numeric"):
        read_intrinsics_txt(tmp_path / "K3.txt")


def test_nrsfm_mat_with_no_visible_point_uses_the_stored_cameras(tmp_path):
    """W + S layout with every point missing: W = S[:2] holds vacuously, so the frame of S cannot be checked. With Rs
    stored the cameras decide (S is kept as S_world, as when points are visible); without Rs S is taken as camera
    frame, with a warning naming the file."""
    import scipy.io

    from nrsfm_kit.data.nrsfm import load_nrsfm_mat, save_nrsfm_mat

    seq = synthetic_nrsfm("skeleton", num_frames=5, seed=3, dtype=torch.float64)
    seq.visibility = torch.zeros_like(seq.visibility)
    seq.W = torch.zeros_like(seq.W)
    path = save_nrsfm_mat(tmp_path / "world.mat", seq, layout="WS")
    got = load_nrsfm_mat(path, dtype=torch.float64)  # was: S_world taken as the camera-frame S, cameras dropped
    assert got.cameras is not None and not got.visibility.any()
    assert torch.allclose(got.cameras, seq.cameras, atol=1e-12)
    assert torch.allclose(got.S_world, seq.S_world, atol=1e-9)
    assert torch.allclose(got.S, seq.S, atol=1e-9)
    mats = {k: v for k, v in scipy.io.loadmat(str(path)).items() if not k.startswith("__")}
    mats.pop("Rs")
    scipy.io.savemat(str(tmp_path / "no_rs.mat"), mats)
    with pytest.warns(UserWarning, match=r"no_rs\.mat: no visible point in W.*taken as camera frame"):
        plain = load_nrsfm_mat(tmp_path / "no_rs.mat", dtype=torch.float64)
    assert plain.cameras is None
