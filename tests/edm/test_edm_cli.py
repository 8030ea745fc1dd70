"""`nrsfm-kit depth fit` on a tiny folder of frames (DIS flow, intrinsics.txt) and on the synthetic video."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from nrsfm_kit.cli import main
from nrsfm_kit.edm.video_io import default_intrinsics, dis_flow, load_frame_folder, read_intrinsics


def _write_sequence(folder, n=3, H=40, W=56, shift=2):
    rng = np.random.default_rng(0)
    base = (rng.random((H + 20, W + 20, 3)) * 255).astype(np.uint8)
    base = cv2.GaussianBlur(base, (5, 5), 1.5)
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        img = base[5:5 + H, 5 + k * shift:5 + k * shift + W]
        cv2.imwrite(str(folder / f"{k:04d}.png"), img)
    return folder


def test_load_folder_dis_flow_and_intrinsics(tmp_path):
    seq = _write_sequence(tmp_path / "seq")
    (seq / "intrinsics.txt").write_text("50 0 27.5\n0 50 19.5\n0 0 1\n")
    video = load_frame_folder(seq, height=40, width=56)
    assert video.frames.shape == (3, 3, 40, 56) and video.flow.shape == (2, 40, 56, 2)
    assert torch.allclose(video.intrinsics, torch.tensor([50.0, 50.0, 27.5, 19.5]))
    # the content moves left by 2 px per frame: DIS recovers it in the interior
    inner = video.flow[0, 8:-8, 8:-8]
    assert abs(float(inner[..., 0].median()) + 2.0) < 0.3 and abs(float(inner[..., 1].median())) < 0.3
    assert torch.allclose(read_intrinsics(seq / "intrinsics.txt"), torch.tensor([50.0, 50.0, 27.5, 19.5]))
    half = load_frame_folder(seq, height=20, width=28)
    assert torch.allclose(half.intrinsics, torch.tensor([25.0, 25.0, 13.5, 9.5]))
    assert torch.allclose(default_intrinsics(40, 56)[2:], torch.tensor([27.5, 19.5]))


def test_cli_on_folder_writes_json(tmp_path, capsys):
    seq = _write_sequence(tmp_path / "seq")
    out = tmp_path / "res.json"
    rc = main(["depth", "fit", "--sequence", str(seq), "--json", str(out), "--smoke", "--steps", "2",
               "--height", "40", "--width", "56", "--pairs", "500"])
    assert rc == 0
    rep = json.loads(out.read_text())
    assert set(rep["results"]) == {"embeddings", "rigid"}
    lo, hi = rep["results"]["rigid"]["depth_range"]
    assert 0.5 < lo <= hi < 10.0  # depths inside the network's (d_min, d_max)
    assert rep["results"]["rigid"]["depth_metrics"] == {}  # no ground truth for a real folder


def test_cli_bad_inputs(tmp_path, capsys):
    assert main(["depth", "fit", "--sequence", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    one = tmp_path / "one"
    _write_sequence(one, n=1)
    assert main(["depth", "fit", "--sequence", str(one), "--smoke"]) == 2
    assert "expected at least 2 frames" in capsys.readouterr().err
    (one / "0001.png").write_bytes(b"not an image")
    assert main(["depth", "fit", "--sequence", str(one), "--smoke"]) == 2
    assert "unreadable" in capsys.readouterr().err
    bad = tmp_path / "badk"
    _write_sequence(bad, n=2)
    (bad / "intrinsics.txt").write_text("1 2 3")
    assert main(["depth", "fit", "--sequence", str(bad), "--smoke"]) == 2
    assert "expected 4 (fx fy cx cy), 9 (3x3) or 16 (4x4) numbers, found 3" in capsys.readouterr().err
    with pytest.raises(ValueError, match="frames: expected shape"):
        dis_flow(torch.rand(1, 3, 8, 8))


def test_real_deepdeform_frames_load_with_dis_flow(real_data, tmp_path):
    import shutil

    src = real_data("deepdeform", "train", "seq258")
    for name in ("000000.jpg", "000110.jpg"):
        shutil.copy(src / "color" / name, tmp_path / name)
    shutil.copy(src / "intrinsics.txt", tmp_path / "intrinsics.txt")
    video = load_frame_folder(tmp_path, 48, 64)
    K = read_intrinsics(src / "intrinsics.txt")  # 4x4 matrix in pixels of the 640x480 frames
    assert video.frames.shape == (2, 3, 48, 64) and torch.isfinite(video.flow).all()
    assert torch.allclose(video.intrinsics[:2], K[:2] * 0.1, rtol=1e-5)


def _deepdeform_sequence(tmp_path, size="48x64"):
    """A 2-frame DeepDeform-layout sequence (color/, depth/ in mm, intrinsics.txt) from `nrsfm-kit data synth`."""
    seq = tmp_path / "seq"
    assert main(["data", "synth", "rgbd-pair", str(seq), "--size", size]) == 0
    return seq


SMOKE = ["--smoke", "--steps", "2", "--height", "48", "--width", "64", "--pairs", "500", "--quiet"]


def test_cli_deepdeform_layout_metrics_and_outputs(tmp_path, capsys):
    seq = _deepdeform_sequence(tmp_path)
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["depth", "fit", "--sequence", str(seq), "--out", str(out), *SMOKE]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep == json.loads(capsys.readouterr().out)
    assert rep["ground_truth_depth"] and rep["frames"] == 2 and "constant_baseline" in rep
    gt = [cv2.imread(str(seq / "depth" / f"00000{t}.png"), cv2.IMREAD_UNCHANGED) for t in (0, 1)]
    for var in ("embeddings", "rigid"):
        m = rep["results"][var]["depth_metrics"]["all"]
        assert 0 <= m["abs_rel"] < 1 and 0 <= m["a1"] <= 1, m  # metrics against depth/ (not {})
        for t, name in enumerate(("000000", "000001")):
            d = cv2.imread(str(out / var / "depth" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
            assert d.dtype == np.uint16 and d.shape == (48, 64) and d.min() > 0
            valid = gt[t] > 0  # written median-scaled to the ground truth: equal medians (mm)
            assert abs(float(np.median(d[valid])) - float(np.median(gt[t][valid]))) <= 2
            p = cv2.imread(str(out / var / "depth_preview" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
            assert p.shape == (48, 64, 3) and p.dtype == np.uint8 and len(np.unique(p.reshape(-1, 3), axis=0)) > 8
    emb = np.load(out / "embeddings" / "embeddings.npy")
    assert emb.shape == (1, 3, 48, 64) and emb.dtype == np.float32 and np.isfinite(emb).all()
    prev = cv2.imread(str(out / "embeddings" / "embedding_preview" / "000000.png"), cv2.IMREAD_UNCHANGED)
    assert prev.shape == (48, 64, 3)
    assert not (out / "rigid" / "embeddings.npy").exists()


def test_cli_color_folder_finds_ground_truth_beside_it(tmp_path, capsys):
    seq = _deepdeform_sequence(tmp_path)
    from nrsfm_kit.edm.video_io import find_frames

    for folder in (seq, seq / "color"):
        layout = find_frames(folder)
        assert layout.names == ["000000", "000001"] and layout.intrinsics == seq / "intrinsics.txt"
        assert layout.depth == [seq / "depth" / "000000.png", seq / "depth" / "000001.png"]
    video = load_frame_folder(seq / "color", 24, 32)
    assert video.depth.shape == (2, 24, 32) and float(video.depth.max()) > 0
    assert load_frame_folder(seq, 24, 32, ground_truth=False).depth is None
    (seq / "depth" / "000001.png").unlink()
    assert main(["depth", "fit", "--sequence", str(seq / "color"), *SMOKE]) == 2
    assert "expected a ground-truth depth PNG for each of the 2 frames, found 1 missing (000001.png)" in \
        capsys.readouterr().err


def _no_fit(monkeypatch):
    import nrsfm_kit.edm.training as training

    def boom(*a, **k):
        raise AssertionError("fit_sequence ran although the arguments were bad")

    monkeypatch.setattr(training, "fit_sequence", boom)


@pytest.mark.parametrize("extra, match", [
    (["--json", "{tmp}"], "--json: expected a file path to write, found a directory {tmp}"),
    (["--out", "{tmp}/seq/intrinsics.txt"], "--out: expected a folder (existing or new) at {tmp}/seq/intrinsics.txt"),
    (["--height", "8"], "--height: expected an integer >= 16, found 8"),
    (["--frames", "1"], "--frames: expected an integer >= 2, found 1"),
    (["--steps", "-1"], "--steps: expected an integer >= 0, found -1"),
    (["--pairs", "0"], "--pairs: expected an integer >= 1, found 0"),
    (["--net-width", "0"], "--net-width: expected an integer >= 1, found 0"),
    (["--trim", "1.0"], "--trim: expected a fraction of pairs in [0, 1), found 1.0"),
    (["--trim", "-0.1"], "--trim: expected a finite value >= 0, found -0.1"),
])
def test_cli_bad_flags_are_refused_before_any_work(extra, match, tmp_path, monkeypatch, capsys):
    seq = _deepdeform_sequence(tmp_path, "24x32")
    _no_fit(monkeypatch)
    extra = [e.format(tmp=tmp_path) for e in extra]
    assert main(["depth", "fit", "--sequence", str(seq), "--smoke", "--quiet", *extra]) == 2
    assert match.format(tmp=tmp_path) in capsys.readouterr().err


def test_cli_loss_flags_reach_the_config(tmp_path, monkeypatch):
    import nrsfm_kit.edm.cli as cli
    import nrsfm_kit.edm.training as training
    from nrsfm_kit.kernels.edm_loss import NORMALIZATIONS

    assert cli.LOSS_NORMALIZATIONS == NORMALIZATIONS  # spelt out in the CLI (no torch import), kept in step
    seen = []

    class Stop(Exception):
        pass

    def capture(video, variant, cfg, **kw):
        seen.append(cfg)
        raise Stop

    monkeypatch.setattr(training, "fit_sequence", capture)
    seq = _deepdeform_sequence(tmp_path, "24x32")
    with pytest.raises(Stop):
        main(["depth", "fit", "--sequence", str(seq), "--smoke", "--quiet", "--normalization", "log", "--trim", "0.2"])
    assert seen and seen[0].loss.normalization == "log" and seen[0].loss.trim == 0.2


def test_cli_sequence_that_is_a_file(tmp_path, capsys):
    (tmp_path / "f.png").write_bytes(b"x")
    assert main(["depth", "fit", "--sequence", str(tmp_path / "f.png"), "--smoke"]) == 2
    assert "expected a folder of frames (*.png, *.jpg) or a DeepDeform sequence, found a file" in \
        capsys.readouterr().err


def test_output_encoders():
    from nrsfm_kit.edm.video_io import colourise_depth, colourise_embeddings, depth_to_png16

    d = torch.tensor([[[0.5, 1.2344], [float("nan"), 0.0]], [[70.0, 1e-5], [2.0, -1.0]]])
    png = depth_to_png16(d)
    assert png.dtype == np.uint16 and png.tolist() == [[[500, 1234], [0, 0]], [[65535, 1], [2000, 0]]]
    prev = colourise_depth(d)
    assert prev.shape == (2, 2, 2, 3) and (prev[0, 1, 0] == 0).all() and prev[0, 0, 0].any()
    emb = torch.stack([torch.full((3, 4, 4), 2.0), torch.full((3, 4, 4), 2.5)])  # inside (0, 4): not in [0, 1]
    e = colourise_embeddings(emb)
    assert e.shape == (2, 4, 4, 3) and int(e[0].max()) == 0 and int(e[1].min()) == 255  # stretched, not clipped
    assert (colourise_embeddings(torch.ones(1, 3, 2, 2)) == 128).all()  # constant: mid-grey


def test_real_deepdeform_sequence_metrics_and_outputs(real_data, tmp_path, capsys):
    seq = real_data("deepdeform", "train", "seq258")
    out = tmp_path / "out"
    assert main(["depth", "fit", "--sequence", str(seq), "--variant", "rigid", "--out", str(out), *SMOKE]) == 0
    rep = json.loads((out / "report.json").read_text())
    m = rep["results"]["rigid"]["depth_metrics"]["all"]
    assert rep["ground_truth_depth"] and 0 < m["abs_rel"] < 1 and m["rmse"] > 0, m
    assert sorted(p.name for p in (out / "rigid" / "depth").iterdir()) == ["000000.png", "000110.png"]
    d = cv2.imread(str(out / "rigid" / "depth" / "000000.png"), cv2.IMREAD_UNCHANGED)
    gt = cv2.resize(cv2.imread(str(seq / "depth" / "000000.png"), cv2.IMREAD_UNCHANGED), (64, 48),
                    interpolation=cv2.INTER_NEAREST)
    assert abs(float(np.median(d[gt > 0])) - float(np.median(gt[gt > 0]))) <= 2  # mm, median-scaled
