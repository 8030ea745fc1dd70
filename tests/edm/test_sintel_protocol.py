"""The MPI-Sintel protocol of Takmaz et al. (final pass, centre crop, ground-truth flow, depth < 50 m) on a tiny
scene written in the Sintel formats with the suite's own writers, through the loader and `nrsfm-kit depth fit`."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from nrsfm_kit.cli import main
from nrsfm_kit.data.imageio import read_color, write_color
from nrsfm_kit.data.sintel import (
    center_crop_box,
    crop_video,
    find_sintel_scene,
    load_sintel_protocol,
    resize_video,
    write_cam,
    write_dpt,
    write_flo,
)
from nrsfm_kit.data.types import MonocularVideo
from nrsfm_kit.metrics.depth import METRIC_NAMES, depth_metrics, sintel_depth_metrics

T, H, W = 4, 44, 64  # a 40x64 centre crop: top offset 2
CROP = (40, 64)
SCALE = 25.0  # the synthetic room (0.9 .. 2.6 m) scaled to 23 .. 65 m: part of it beyond 50 m
EDGE_PIXELS = ((0, 2, 10, -1.5), (0, 41, 20, 1.5))  # (pair, row, col, v): targets inside the frame, not the crop


@pytest.fixture(scope="module")
def sintel(tmp_path_factory):
    """(root, the synthetic video written, visibility written) for scene alley_1 in the official layout."""
    from nrsfm_kit.edm.training import synthetic_video

    v = synthetic_video(T, H, W, seed=0)
    flow, vis = v.flow.clone(), v.flow_visibility.clone()
    for t, y, x, dv in EDGE_PIXELS:
        flow[t, y, x] = torch.tensor([0.0, dv])
        vis[t, y, x] = True
    root = tmp_path_factory.mktemp("sintel")
    base = root / "training"
    fx, fy, cx, cy = v.intrinsics.double().tolist()
    M = torch.tensor([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=torch.float64)
    for t in range(T):
        n = f"frame_{t + 1:04d}"
        write_color(base / "final" / "alley_1" / f"{n}.png", v.frames[t])
        write_color(base / "clean" / "alley_1" / f"{n}.png", v.frames[t])
        write_dpt(base / "depth" / "alley_1" / f"{n}.dpt", v.depth[t] * SCALE)
        N = v.poses[t, :3].double().clone()
        N[:, 3] *= SCALE
        write_cam(base / "camdata_left" / "alley_1" / f"{n}.cam", M, N)
        if t < T - 1:
            write_flo(base / "flow" / "alley_1" / f"{n}.flo", flow[t])
            write_color(base / "occlusions" / "alley_1" / f"{n}.png", (~vis[t]).float().expand(3, H, W))
    return root, v, flow, vis


def _copy(sintel, tmp_path):
    dst = tmp_path / "sintel"
    shutil.copytree(sintel[0], dst)
    return dst


def test_loader_crops_frames_flow_and_intrinsics(sintel):
    root, v, flow, vis = sintel
    scene = find_sintel_scene(root / "training" / "final" / "alley_1")
    assert scene == find_sintel_scene(root, "alley_1") == find_sintel_scene(root / "training", "alley_1")
    assert scene.frames == [1, 2, 3, 4] and scene.size == (H, W) and scene.pass_name == "final"
    assert find_sintel_scene(root, "alley_1", max_frames=3).names == ["frame_0001", "frame_0002", "frame_0003"]
    assert center_crop_box((436, 1024), (384, 1024)) == (26, 0)  # the paper's crop: rows 26..409
    video, info = load_sintel_protocol(scene, CROP)
    top = 2
    assert info["crop"] == [40, 64] and info["crop_offset"] == [top, 0] and info["size"] == [40, 64]
    png = torch.stack([read_color(root / "training" / "final" / "alley_1" / f"{n}.png") for n in scene.names])
    assert torch.equal(video.frames, png[:, :, top:top + 40])
    assert torch.allclose(video.depth, v.depth[:, top:top + 40] * SCALE)
    # the ground-truth flow is the correspondence field: vectors unchanged, pixels shifted with the crop
    assert torch.equal(video.flow, flow[:, top:top + 40])
    tgt_y = torch.arange(40.0)[:, None] + video.flow[..., 1]
    tgt_x = torch.arange(64.0)[None, :] + video.flow[..., 0]
    inside = (tgt_x >= 0) & (tgt_x <= 63) & (tgt_y >= 0) & (tgt_y <= 39)
    assert torch.equal(video.flow_visibility, vis[:, top:top + 40] & inside)
    for t, y, x, _ in EDGE_PIXELS:  # visible in the full frame, their targets leave the crop: dropped
        assert vis[t, y, x] and not video.flow_visibility[t, y - top, x]
    fx, fy, cx, cy = v.intrinsics.tolist()
    assert torch.allclose(video.intrinsics, torch.tensor([fx, fy, cx, cy - top]))
    assert info["intrinsics_max_rel_change"] == 0.0 and video.poses.shape == (T, 4, 4)


def test_loader_downscales_after_cropping():
    # a constant flow (2, 1) at 40x64: at 20x32 it is (1, 0.5); targets leaving the image become invisible
    frames = torch.rand(2, 3, 40, 64)
    base = MonocularVideo(frames=frames, intrinsics=torch.tensor([50.0, 50.0, 31.5, 19.5]),
                          depth=torch.arange(40.0)[:, None].expand(2, 40, 64) + 1,
                          flow=torch.tensor([2.0, 1.0]).expand(1, 40, 64, 2).clone())
    small = resize_video(base, 20, 32)
    assert small.frames.shape == (2, 3, 20, 32)
    assert torch.allclose(small.frames, frames.reshape(2, 3, 20, 2, 32, 2).mean((3, 5)))
    assert torch.allclose(small.flow, torch.tensor([1.0, 0.5]).expand(1, 20, 32, 2))
    assert small.flow_visibility[0, :19, :31].all()  # targets (x + 1, y + 0.5) inside [0, 31] x [0, 19]
    assert not small.flow_visibility[0, :, 31].any() and not small.flow_visibility[0, 19].any()
    assert torch.equal(small.depth[0, :, 0], torch.arange(20.0) * 2 + 2)  # rows 1, 3, ..., the blocks' centres
    assert torch.allclose(small.intrinsics, torch.tensor([25.0, 25.0, 15.5, 9.5]))
    crop = crop_video(base, 2, 4, 36, 56)
    assert torch.allclose(crop.intrinsics, torch.tensor([50.0, 50.0, 27.5, 17.5]))
    assert crop.flow_visibility[0, :35, :54].all() and not crop.flow_visibility[0, 35].any()


def test_loader_scene_with_downscale_and_separate_depth_download(sintel, tmp_path):
    root = _copy(sintel, tmp_path)
    depth_root = tmp_path / "MPI-Sintel-depth-training"
    (depth_root / "training").mkdir(parents=True)
    for kind in ("depth", "camdata_left"):
        shutil.move(root / "training" / kind, depth_root / "training" / kind)
    with pytest.raises(FileNotFoundError, match=r"training/depth/alley_1: Sintel depth folder not found .*"
                                                r"depth_root"):
        find_sintel_scene(root, "alley_1")
    scene = find_sintel_scene(root, "alley_1", depth_root=depth_root)
    video, info = load_sintel_protocol(scene, CROP, (20, 32))
    assert video.frames.shape == (T, 3, 20, 32) and video.flow.shape == (T - 1, 20, 32, 2)
    assert video.depth.shape == (T, 20, 32) and info["size"] == [20, 32]
    fx, fy, cx, cy = sintel[1].intrinsics.tolist()
    assert torch.allclose(video.intrinsics, torch.tensor([fx / 2, fy / 2, (cx + 0.5) / 2 - 0.5,
                                                          (cy - 2 + 0.5) / 2 - 0.5]))


def test_metrics_mask_depth_below_50m_and_scale_per_image(sintel):
    gt = torch.full((2, 6, 8), 10.0) + torch.rand(2, 6, 8)
    gt[:, :2] = 60.0  # beyond 50 m: not evaluated, and not part of the medians
    pred = gt * torch.tensor([2.0, 7.0])[:, None, None]  # exact up to a different scale per image
    pred[:, :2] = 1e4
    m = sintel_depth_metrics(pred, gt)["all"]
    assert set(m) == set(METRIC_NAMES)
    assert m["abs_rel"] < 1e-6 and m["rmse"] < 1e-4 and m["a1"] == 1.0
    assert depth_metrics(pred, gt)["all"]["abs_rel"] > 1.0  # the default 80 m cap counts the far rows
    # one median over both images (a per-sequence scale) cannot undo the two scales: the scaling is per image
    assert sintel_depth_metrics(pred.reshape(1, 12, 8), gt.reshape(1, 12, 8))["all"]["abs_rel"] > 0.3
    # on the fixture: part of the crop is beyond 50 m, and the baseline ignores it
    video, _ = load_sintel_protocol(find_sintel_scene(sintel[0], "alley_1"), CROP)
    far = video.depth >= 50
    assert 0.05 < float(far.float().mean()) < 0.95
    mixed = torch.where(far, torch.full_like(video.depth, 1e3), torch.ones_like(video.depth))
    assert sintel_depth_metrics(mixed, video.depth) == sintel_depth_metrics(torch.ones_like(video.depth),
                                                                            video.depth)


SMOKE = ["--smoke", "--steps", "2", "--pairs", "500", "--quiet"]


def test_cli_sintel_end_to_end(sintel, tmp_path, capsys, monkeypatch):
    import nrsfm_kit.edm.video_io as video_io

    def no_dis(*a, **k):
        raise AssertionError("DIS flow computed: the Sintel protocol uses the ground-truth flow")

    monkeypatch.setattr(video_io, "dis_flow", no_dis)
    root = sintel[0]
    out, js = tmp_path / "out", tmp_path / "report.json"
    assert main(["depth", "fit", "--sequence", str(root / "training" / "final" / "alley_1"), "--crop", "40x64",
                 "--out", str(out), "--json", str(js), *SMOKE]) == 0
    rep = json.loads(js.read_text())
    assert rep == json.loads((out / "report.json").read_text())
    p = rep["protocol"]
    assert p["dataset"] == "MPI-Sintel" and p["pass"] == "final" and p["scene"] == "alley_1"
    assert p["crop"] == [40, 64] and p["crop_offset"] == [2, 0] and p["frame_size"] == [H, W]
    assert p["max_depth"] == 50.0 and p["frames"] == ["frame_0001", "frame_0002", "frame_0003"]  # smoke: 3
    assert rep["size"] == [40, 64] and rep["frames"] == 3 and rep["ground_truth_depth"]
    for var in ("embeddings", "rigid"):
        m = rep["results"][var]["depth_metrics"]["all"]
        assert set(m) == set(METRIC_NAMES) and all(np.isfinite(x) for x in m.values()), m
        assert 0 <= m["abs_rel"] < 1 and 0 <= m["a1"] <= m["a2"] <= m["a3"] <= 1
        assert sorted(f.name for f in (out / var / "depth").iterdir()) == [f"frame_000{k}.png" for k in (1, 2, 3)]
    video, _ = load_sintel_protocol(find_sintel_scene(root, "alley_1", max_frames=3), CROP)
    want = sintel_depth_metrics(torch.ones_like(video.depth), video.depth)["all"]
    assert rep["constant_baseline"]["all"] == pytest.approx(want)  # evaluated where depth < 50 m
    # the root form with --sintel-seq, downscaled after the crop (the width follows the crop's aspect)
    assert main(["depth", "fit", "--sequence", str(root), "--sintel-seq", "alley_1", "--crop", "40x64",
                 "--height", "20", "--variant", "rigid", "--json", str(js), *SMOKE[:-1]]) == 0
    rep = json.loads(js.read_text())
    assert rep["size"] == [20, 32] and rep["protocol"]["size"] == [20, 32]
    assert "ground-truth flow as correspondences" in capsys.readouterr().err


def _drop(rel):
    def f(root):
        target = root / "training" / rel
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    return f


def _truncate_cam(root):
    p = root / "training" / "camdata_left" / "alley_1" / "frame_0002.cam"
    p.write_bytes(p.read_bytes()[:40])


@pytest.mark.parametrize("change, extra, match", [
    (_drop("final"), ["--sintel-seq", "alley_1"],
     "training/final/alley_1: Sintel final-pass folder not found (the protocol reads the final render pass; "
     "found the clean pass only)"),
    (None, ["@clean"], "expected the final render pass folder {root}/training/final/alley_1 (the Sintel protocol), "
     "found the clean pass folder"),
    (_drop("flow/alley_1/frame_0002.flo"), [],
     "training/flow/alley_1: expected frame_0002.flo (ground-truth optical flow of frame 2; 1 of 2 missing for "
     "frames 1..3)"),
    (_drop("depth"), [], "training/depth/alley_1: Sintel depth folder not found"),
    (_drop("camdata_left/alley_1/frame_0003.cam"), [], "training/camdata_left/alley_1: expected frame_0003.cam"),
    (None, ["--crop", "48x64"], "--crop 48x64: expected at most the frame size 44x64, found 48x64"),
    (None, ["@nocrop"], "--crop: expected at most the frame size 44x64, found 384x1024"),
    (None, ["--crop", "40by64"], "--crop: expected HxW with positive integers (e.g. 384x1024), found '40by64'"),
    (None, ["--crop", "40x64", "--height", "42"], "--height: expected at most the crop's height 40"),
    (_truncate_cam, [], "camdata_left/alley_1/frame_0002.cam: expected 172 bytes"),
    (None, ["@root"], "--sintel-seq: expected a scene name with the Sintel root {root}, found none; scenes there: "
     "alley_1"),
    (None, ["@sceneseq", "--sintel-seq", "alley_1"], "--sintel-seq: expected a Sintel root with a scene "
     "name, found the scene folder {root}/training/final/alley_1"),
    (None, ["--crop", "40x64", "--width", "20"], "--width: expected a working size of at least 16x16, found 12x20"),
])
def test_cli_bad_sintel_inputs_fail_before_any_work(sintel, tmp_path, monkeypatch, capsys, change, extra, match):
    import nrsfm_kit.edm.training as training

    def boom(*a, **k):
        raise AssertionError("fit_sequence ran although the input was bad")

    monkeypatch.setattr(training, "fit_sequence", boom)
    root = _copy(sintel, tmp_path)
    if change is not None:
        change(root)
    seq = root / "training" / "final" / "alley_1"
    if "@clean" in extra:
        seq = root / "training" / "clean" / "alley_1"
    if "@root" in extra or ("--sintel-seq" in extra and "@sceneseq" not in extra):
        seq = root
    flags = [e for e in extra if not e.startswith("@")]
    if "--crop" not in flags and "@nocrop" not in extra:
        flags += ["--crop", "40x64"]
    out = tmp_path / "out"
    assert main(["depth", "fit", "--sequence", str(seq), *flags, "--out", str(out), *SMOKE]) == 2
    err = capsys.readouterr().err
    assert match.format(root=root) in err, err
    assert not out.exists()  # refused before the output folder is created


def test_cli_sintel_flags_need_a_sintel_sequence(tmp_path, capsys):
    assert main(["depth", "fit", "--sequence", "synthetic", "--crop", "40x64", *SMOKE]) == 2
    assert "--crop: expected only with an MPI-Sintel sequence" in capsys.readouterr().err
    assert main(["depth", "fit", "--sequence", "synthetic", "--sintel-seq", "alley_1", *SMOKE]) == 2
    assert "--sintel-seq: expected an MPI-Sintel root as --sequence, found 'synthetic'" in capsys.readouterr().err
