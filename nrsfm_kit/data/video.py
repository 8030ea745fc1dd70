"""Synthetic monocular non-rigid video with exact depth, optical flow, motion segmentation and poses."""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from nrsfm_kit.data._args import check_float_dtype, check_int, to_tensor
from nrsfm_kit.data.scenes import OBJECTS, build_scene
from nrsfm_kit.data.types import MonocularVideo
from nrsfm_kit.utils.checks import check_positive


def synthetic_monocular_video(
    num_frames: int = 8,
    height: int = 96,
    width: int = 128,
    seed: int = 0,
    *,
    fps: float = 5.0,
    camera_motion: float = 1.0,
    objects: tuple[str, ...] = OBJECTS,
    scene: str = "room",
    progress: bool = False,
    dtype: torch.dtype = torch.float32,
) -> MonocularVideo:
    """Render a monocular video of a static textured room, a rigid mover and deforming objects.

    The scene (:func:`nrsfm_kit.data.scenes.build_scene`): a back wall and a floor (label 0, static), a
    box moving rigidly (label 1), a waving cloth and a bending cylinder (label 2, non-rigid), seen by a
    pinhole camera with a 60 degree horizontal field of view that sways and pans (``camera_motion``
    scales it; 0 = static camera). Colours are the albedo (no shading), so brightness constancy holds
    exactly along the ground-truth flow.

    Args:
        num_frames: T >= 2.
        height, width: image size in pixels (>= 8).
        seed: textures, object phases and camera path are deterministic for a seed.
        fps: frame rate; frame t is rendered at time t / fps seconds.
        camera_motion: scale of the camera path (>= 0).
        objects: subset of ``("cloth", "cylinder", "box")``.
        scene: ``"room"`` (back wall + floor: two planes) or ``"cluttered"`` (adds a side wall, pillars,
            crates, a step, shelves: static geometry at several depths, so that the camera motion shows
            parallax beyond a homography; smaller movers, ~10 % of the pixels; same camera path for a seed).
        progress: show a tqdm bar over frames.
        dtype: floating dtype of the tensors.

    Returns:
        :class:`MonocularVideo` with frames (T, 3, H, W) in [0, 1], depth (T, H, W) metres (> 0 everywhere),
        flow (T-1, H, W, 2) forward flow in pixels, flow_visibility (T-1, H, W), segmentation (T, H, W)
        int64, intrinsics (4,), poses (T, 4, 4) world -> camera.
    """
    check_int("num_frames", num_frames, 2)
    check_int("height", height, 8)
    check_int("width", width, 8)
    check_int("seed", seed, 0)
    check_float_dtype(dtype)
    check_positive("fps", fps)
    check_positive("camera_motion", camera_motion, strict=False)
    world = build_scene(tuple(objects), int(height), int(width), seed, camera_motion=float(camera_motion),
                        scene=scene)
    times = [k / float(fps) for k in range(int(num_frames))]
    frames = [world.render(t) for t in tqdm(times, desc="render video", disable=not progress, leave=False)]
    if not all(f.valid.all() for f in frames):
        raise RuntimeError("synthetic_monocular_video: some pixels see no surface (scene too small)")
    flows, vis = [], []
    for f, t_next in zip(frames[:-1], times[1:]):
        gt = world.correspondences(f, t_next)
        flows.append(gt["optical_flow"])
        vis.append(gt["visibility"])
    t = lambda a: to_tensor(a, dtype)
    return MonocularVideo(
        frames=t(np.stack([f.color for f in frames]).transpose(0, 3, 1, 2)),
        intrinsics=t(world.intrinsics),
        depth=t(np.stack([f.depth for f in frames])),
        flow=t(np.stack(flows)),
        segmentation=torch.as_tensor(np.stack([f.labels for f in frames]), dtype=torch.int64),
        name=f"synthetic-video-s{seed}" + ("" if scene == "room" else f"-{scene}"),
        poses=t(np.stack([f.T_cw for f in frames])),
        flow_visibility=torch.as_tensor(np.stack(vis)),
    )


class VideoFramePairs(torch.utils.data.Dataset):
    """A torch Dataset of consecutive frame pairs (t, t + 1) of a :class:`MonocularVideo` (synthetic or Sintel).

    Item t (0 <= t < T - 1): a dict of tensors (collatable by the default ``DataLoader`` collate):
    ``source``, ``target`` (3, H, W) in [0, 1], ``intrinsics`` (4,) pixels, ``index`` (int), and when the
    video has them: ``source_depth``, ``target_depth`` (H, W) metres, ``flow`` (H, W, 2) forward flow in
    pixels, ``flow_visibility`` (H, W) bool, ``segmentation`` (H, W) int64 of the source frame,
    ``relative_pose`` (4, 4) = T_{t+1} T_t^{-1} (source camera -> target camera, metres).

    The video's fields are validated once (shapes consistent with ``frames``, finite values): ValueError
    naming the field otherwise.
    """

    def __init__(self, video: MonocularVideo):
        from nrsfm_kit.utils.checks import check_tensor

        dims: dict = {}
        check_tensor("video.frames", video.frames, ("T", 3, "H", "W"), dims=dims)
        if dims["T"] < 2:
            raise ValueError(f"video.frames: expected at least 2 frames, found {dims['T']}")
        check_tensor("video.intrinsics", video.intrinsics, (4,))
        if video.depth is not None:
            check_tensor("video.depth", video.depth, ("T", "H", "W"), dims=dims)
        if video.flow is not None:
            dims["T1"] = dims["T"] - 1
            check_tensor("video.flow", video.flow, ("T1", "H", "W", 2), dims=dims)
        if video.flow_visibility is not None:
            dims["T1"] = dims["T"] - 1
            check_tensor("video.flow_visibility", video.flow_visibility, ("T1", "H", "W"), dims=dims, floating=False)
        if video.segmentation is not None:
            check_tensor("video.segmentation", video.segmentation, ("T", "H", "W"), dims=dims, floating=False)
        if video.poses is not None:
            check_tensor("video.poses", video.poses, ("T", 4, 4), dims=dims)
        self.video = video

    def __len__(self) -> int:
        return int(self.video.frames.shape[0]) - 1

    def __getitem__(self, t: int) -> dict:
        if not 0 <= int(t) < len(self):
            raise IndexError(f"t: expected an index in [0, {len(self)}), found {t}")
        v, t = self.video, int(t)
        item = {"source": v.frames[t], "target": v.frames[t + 1], "intrinsics": v.intrinsics, "index": t}
        if v.depth is not None:
            item["source_depth"], item["target_depth"] = v.depth[t], v.depth[t + 1]
        if v.flow is not None:
            item["flow"] = v.flow[t]
        if v.flow_visibility is not None:
            item["flow_visibility"] = v.flow_visibility[t]
        if v.segmentation is not None:
            item["segmentation"] = v.segmentation[t]
        if v.poses is not None:
            item["relative_pose"] = v.poses[t + 1] @ torch.linalg.inv(v.poses[t])
        return item
