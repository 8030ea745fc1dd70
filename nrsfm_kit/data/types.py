"""Containers shared by the generators, the loaders and the methods."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class NRSfMSequence:
    """Orthographic NRSfM keypoint sequence (F frames, P points), rows-are-points convention.

    Attributes:
        W: (F, P, 2) 2D observations (camera frame, orthographic).
        visibility: (F, P) bool, False where a point is missing (its W entry is undefined, keep it 0).
        S: (F, P, 3) ground-truth 3D shapes in the camera frame, or None (no ground truth).
        cameras: (F, 2, 3) ground-truth orthographic cameras (M M^T = I) with W = S_world M^T, or None.
        name: a label (file stem or synthetic spec).
        bones: optional list of (i, j) point pairs to draw skeletons.
        S_world: (F, P, 3) ground-truth shapes in the object-centred world frame (S = S_world R_f^T with
            R_f[:2] = cameras[f]), or None. Added by the datasets issue; optional.
    """

    W: torch.Tensor
    visibility: torch.Tensor
    S: torch.Tensor | None = None
    cameras: torch.Tensor | None = None
    name: str = ""
    bones: list[tuple[int, int]] = field(default_factory=list)
    S_world: torch.Tensor | None = None

    @property
    def num_frames(self) -> int:
        return int(self.W.shape[0])

    @property
    def num_points(self) -> int:
        return int(self.W.shape[1])


@dataclass
class MonocularVideo:
    """Synthetic or loaded monocular video of a non-rigid scene with ground truth.

    Attributes:
        frames: (T, 3, H, W) float RGB in [0, 1].
        depth: (T, H, W) float metres (> 0), or None.
        flow: (T-1, H, W, 2) float forward optical flow from frame t to t+1 in pixels (u, v), or None.
        segmentation: (T, H, W) int64 motion labels: 0 static background, 1 rigid mover,
            2 non-rigid (deforming), or None.
        intrinsics: (4,) float (fx, fy, cx, cy) in pixels.
        name: a label.
        poses: (T, 4, 4) float world -> camera poses (metres), or None. Added by the datasets issue.
        flow_visibility: (T-1, H, W) bool, True where the pixel's surface point is visible in frame t+1
            (inside the image and not occluded), or None. Added by the datasets issue.
    """

    frames: torch.Tensor
    intrinsics: torch.Tensor
    depth: torch.Tensor | None = None
    flow: torch.Tensor | None = None
    segmentation: torch.Tensor | None = None
    name: str = ""
    poses: torch.Tensor | None = None
    flow_visibility: torch.Tensor | None = None


@dataclass
class RGBDPair:
    """A source/target RGB-D frame pair with (optional) ground-truth correspondences of the source pixels.

    Attributes:
        source_color, target_color: (3, H, W) float RGB in [0, 1].
        source_depth, target_depth: (H, W) float metres, 0 where invalid (holes).
        intrinsics: (4,) float (fx, fy, cx, cy) in pixels (shared by both frames).
        optical_flow: (H, W, 2) source -> target pixel displacement (u, v) in pixels, 0 where invalid.
        scene_flow: (H, W, 3) 3D displacement of the source pixel's surface point in metres (target
            camera-frame point minus source camera-frame point), 0 where invalid.
        flow_valid: (H, W) bool, True where the flows are defined.
        visibility: (H, W) bool, source pixel visible in the target (inside the image, not occluded).
        source_mask, target_mask: (H, W) bool object-of-interest masks.
        segmentation: (H, W) int64 motion labels of the source: 0 static, 1 rigid, 2 non-rigid, -1 none.
        name: a label.
    """

    source_color: torch.Tensor
    target_color: torch.Tensor
    source_depth: torch.Tensor
    target_depth: torch.Tensor
    intrinsics: torch.Tensor
    optical_flow: torch.Tensor | None = None
    scene_flow: torch.Tensor | None = None
    flow_valid: torch.Tensor | None = None
    visibility: torch.Tensor | None = None
    source_mask: torch.Tensor | None = None
    target_mask: torch.Tensor | None = None
    segmentation: torch.Tensor | None = None
    name: str = ""


@dataclass
class RGBDSequence:
    """An RGB-D frame sequence (T frames).

    Attributes:
        colors: (T, 3, H, W) float RGB in [0, 1].
        depths: (T, H, W) float metres, 0 where invalid.
        intrinsics: (4,) float (fx, fy, cx, cy) in pixels.
        masks: (T, H, W) bool object masks, or None.
        segmentation: (T, H, W) int64 motion labels (0 static, 1 rigid, 2 non-rigid, -1 none), or None.
        poses: (T, 4, 4) world -> camera poses, or None (unknown).
        name: a label.
    """

    colors: torch.Tensor
    depths: torch.Tensor
    intrinsics: torch.Tensor
    masks: torch.Tensor | None = None
    segmentation: torch.Tensor | None = None
    poses: torch.Tensor | None = None
    name: str = ""

    @property
    def num_frames(self) -> int:
        return int(self.colors.shape[0])
