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
