"""Regression (issue 14): `depth fit` crashed with the default intra-op threads (`make test` hid it with one).

Root cause: frames loaded from images were channels-last in memory, so the ResNet-18 encoder ran NHWC, and
oneDNN 3.12 (torch 2.13, AVX-512 CPUs) writes past its scratch buffer in the weight gradient of a 1x1
stride-2 conv on NHWC input with fewer than 16 input channels (the smoke width 8): heap corruption, then a
segfault or "corrupted size vs. prev_size" in an OpenMP worker. Pure torch, no Warp involved. The training
entry point now feeds the networks NCHW-contiguous frames (:func:`nrsfm_kit.edm.training.network_input`)
and the frame loader returns contiguous frames.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import torch

from nrsfm_kit.data.types import MonocularVideo
from nrsfm_kit.edm import training
from nrsfm_kit.edm.video_io import load_frame_folder

# the variables that would hide the crash by making every op single-threaded
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NRSFM_KIT_THREADS")


def _write_frames(folder, n=3, H=40, W=56, shift=2):
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur((rng.random((H + 20, W + 20, 3)) * 255).astype(np.uint8), (5, 5), 1.5)
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        cv2.imwrite(str(folder / f"{k:04d}.png"), base[5:5 + H, 5 + k * shift:5 + k * shift + W])
    return folder


def test_depth_fit_with_default_threads_exits_cleanly(tmp_path):
    """The issue's command, in a fresh process with the default thread settings: exit code 0, JSON written."""
    seq = _write_frames(tmp_path / "seq")
    out = tmp_path / "res.json"
    env = {k: v for k, v in os.environ.items() if k not in _THREAD_VARS}
    cmd = [sys.executable, "-X", "faulthandler", "-m", "nrsfm_kit.cli", "depth", "fit", "--sequence", str(seq),
           "--json", str(out), "--smoke", "--steps", "2", "--height", "40", "--width", "56", "--pairs", "500"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, f"rc {proc.returncode} (-11/139 = segfault, -6/134 = abort)\n{proc.stderr[-4000:]}"
    assert set(json.loads(out.read_text())["results"]) == {"embeddings", "rigid"}


def test_frame_loader_returns_contiguous_frames(tmp_path):
    video = load_frame_folder(_write_frames(tmp_path / "seq"), height=40, width=56)
    assert video.frames.is_contiguous()


def test_networks_get_nchw_frames_whatever_the_input_layout(monkeypatch):
    """A channels-last video (as any HWC -> CHW permute gives) reaches both networks as NCHW-contiguous."""
    seen = []

    class DepthSpy(training.DepthNet):
        def forward(self, images):
            seen.append(("depth", images.is_contiguous()))
            return super().forward(images)

    class MotionSpy(training.MotionNet):
        def forward(self, frame_k, frame_l):
            seen.append(("motion", frame_k.is_contiguous() and frame_l.is_contiguous()))
            return super().forward(frame_k, frame_l)

    monkeypatch.setattr(training, "DepthNet", DepthSpy)
    monkeypatch.setattr(training, "MotionNet", MotionSpy)
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(3, 24, 32, 3, generator=g).permute(0, 3, 1, 2)  # NHWC strides
    assert not frames.is_contiguous()
    flow = torch.zeros(2, 24, 32, 2)
    flow[..., 0] = -1.0
    video = MonocularVideo(frames=frames, flow=flow, intrinsics=torch.tensor([30.0, 30.0, 15.5, 11.5]))
    cfg, _ = training.preset_config(True)
    cfg.steps_stage1, cfg.steps_stage2, cfg.warmup_stage1 = 1, 1, 0
    cfg.loss.num_pairs = 200
    training.fit_sequence(video, "embeddings", cfg, backend="torch")
    assert {name for name, _ in seen} == {"depth", "motion"}
    assert all(ok for _, ok in seen), seen
    assert training.network_input(frames).is_contiguous()
