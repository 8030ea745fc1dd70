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
    """

    frames: torch.Tensor
    intrinsics: torch.Tensor
    depth: torch.Tensor | None = None
    flow: torch.Tensor | None = None
    segmentation: torch.Tensor | None = None
    name: str = ""
