"""Synthetic monocular video: exact depth / flow / segmentation / poses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nrsfm_kit.data import MonocularVideo, VideoFramePairs, synthetic_monocular_video
from nrsfm_kit.geometry import backproject, pixel_grid, project


@pytest.fixture(scope="module")
def video():
    return synthetic_monocular_video(num_frames=4, height=96, width=128, seed=1, dtype=torch.float64)


def test_shapes_and_ranges(video):
    T, H, W = 4, 96, 128
    assert video.frames.shape == (T, 3, H, W) and video.depth.shape == (T, H, W)
    assert video.flow.shape == (T - 1, H, W, 2) and video.flow_visibility.shape == (T - 1, H, W)
    assert video.segmentation.shape == (T, H, W) and video.segmentation.dtype == torch.int64
    assert video.poses.shape == (T, 4, 4) and video.intrinsics.shape == (4,)
    assert 0 <= video.frames.min() and video.frames.max() <= 1
    assert (video.depth > 0.5).all() and (video.depth < 3.0).all()
    assert set(video.segmentation.unique().tolist()) == {0, 1, 2}
    assert video.frames.std() > 0.05  # textured


def _sample(img, uv):
    """Bilinear sample img (C, H, W) at pixel coords uv (H, W, 2)."""
    H, W = img.shape[-2:]
    g = torch.stack([2 * uv[..., 0] / (W - 1) - 1, 2 * uv[..., 1] / (H - 1) - 1], -1)
    return F.grid_sample(img[None], g[None], align_corners=True, mode="bilinear")[0]


def test_static_flow_is_the_camera_motion(video):
    H, W = video.depth.shape[1:]
    grid = pixel_grid(H, W, dtype=torch.float64)
    for t in range(3):
        X = backproject(grid, video.depth[t], video.intrinsics)
        rel = video.poses[t + 1] @ torch.linalg.inv(video.poses[t])
        uv = project(X @ rel[:3, :3].T + rel[:3, 3], video.intrinsics)
        static = video.segmentation[t] == 0
        err = (uv - grid - video.flow[t])[static].norm(dim=-1)
        assert err.max() < 1e-4  # float32 ray casting: pixel-centre hits to ~1e-5 px
        # the camera really moves and the movers move differently from the background
        assert video.flow[t][static].norm(dim=-1).mean() > 0.2
        moving = video.segmentation[t] > 0
        assert (uv - grid - video.flow[t])[moving].norm(dim=-1).mean() > 0.05


def test_brightness_constancy_along_flow(video):
    H, W = video.depth.shape[1:]
    grid = pixel_grid(H, W, dtype=torch.float64)
    for t in range(3):
        warped = _sample(video.frames[t + 1], grid + video.flow[t])
        ident = video.frames[t + 1]
        m = video.flow_visibility[t]
        err_gt = (warped - video.frames[t]).abs().mean(0)[m].mean()
        err_zero = (ident - video.frames[t]).abs().mean(0)[m].mean()
        assert err_gt < 0.03 and err_gt < 0.5 * err_zero


def test_deterministic():
    a = synthetic_monocular_video(num_frames=2, height=16, width=16, seed=3)
    b = synthetic_monocular_video(num_frames=2, height=16, width=16, seed=3)
    c = synthetic_monocular_video(num_frames=2, height=16, width=16, seed=4)
    assert torch.equal(a.frames, b.frames) and torch.equal(a.flow, b.flow)
    assert not torch.equal(a.frames, c.frames)
    still = synthetic_monocular_video(num_frames=2, height=16, width=16, seed=3, camera_motion=0.0)
    assert torch.allclose(still.poses, torch.eye(4).expand(2, 4, 4))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_frames": 1}, "num_frames"),
        ({"height": 4}, "height"),
        ({"width": 3.5}, "width"),
        ({"fps": 0}, "fps"),
        ({"camera_motion": -1}, "camera_motion"),
        ({"objects": ("cloth", "teapot")}, "objects"),
        ({"height": float("nan")}, "height"),
        ({"seed": -3}, "seed"),
        ({"dtype": torch.int32}, "dtype"),
    ],
)
def test_bad_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        synthetic_monocular_video(**kwargs)


def test_frame_pairs_dataset(video):
    ds = VideoFramePairs(video)
    assert len(ds) == 3
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch["source"].shape == (2, 3, 96, 128) and batch["flow"].shape == (2, 96, 128, 2)
    assert batch["relative_pose"].shape == (2, 4, 4) and batch["flow_visibility"].dtype == torch.bool
    item = ds[2]
    assert torch.equal(item["source"], video.frames[2]) and torch.equal(item["target"], video.frames[3])
    # the relative pose carries static source points to the target camera: their projection is the flow
    H, W = video.depth.shape[1:]
    grid = pixel_grid(H, W, dtype=torch.float64)
    X = backproject(grid, item["source_depth"], item["intrinsics"])
    T = item["relative_pose"]
    uv = project(X @ T[:3, :3].T + T[:3, 3], item["intrinsics"])
    static = item["segmentation"] == 0
    assert (uv - grid - item["flow"])[static].norm(dim=-1).max() < 1e-4
    with pytest.raises(IndexError):
        ds[3]


def test_frame_pairs_dataset_bad_inputs(video):
    one = MonocularVideo(frames=video.frames[:1], intrinsics=video.intrinsics)
    with pytest.raises(ValueError, match="video.frames: expected at least 2 frames"):
        VideoFramePairs(one)
    bad = MonocularVideo(frames=video.frames, intrinsics=video.intrinsics, depth=video.depth.clone())
    bad.depth[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="video.depth: expected finite"):
        VideoFramePairs(bad)
    short = MonocularVideo(frames=video.frames, intrinsics=video.intrinsics, flow=video.flow[:1])
    with pytest.raises(ValueError, match="video.flow: expected shape"):
        VideoFramePairs(short)
