"""Real videos for test-time training: a folder of RGB frames, intrinsics, DIS optical flow (OpenCV).

A sequence folder holds frames as ``*.png`` / ``*.jpg`` / ``*.jpeg`` (sorted by name) and optionally an
``intrinsics.txt`` with fx fy cx cy (4 numbers) or a 3x3 / 4x4 matrix, in pixels of the original frames.
Without it the intrinsics are guessed: a 60 degree horizontal field of view, principal point at the
image centre. Frames are resized to the requested size and the intrinsics scaled with them.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import torch

from nrsfm_kit.data.types import MonocularVideo
from nrsfm_kit.geometry import as_intrinsics

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def default_intrinsics(height: int, width: int, fov_deg: float = 60.0) -> torch.Tensor:
    """(fx, fy, cx, cy) for a horizontal field of view ``fov_deg`` and a centred principal point."""
    f = 0.5 * width / math.tan(math.radians(fov_deg) / 2)
    return torch.tensor([f, f, (width - 1) / 2, (height - 1) / 2], dtype=torch.float32)


def read_intrinsics(path: str | Path) -> torch.Tensor:
    """fx fy cx cy from a text file with 4 numbers or a 3x3 / 4x4 matrix -> (4,) float32."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"intrinsics file {p} does not exist")
    try:
        vals = np.array(p.read_text().split(), dtype=np.float64)
    except ValueError:
        raise ValueError(f"{p}: expected 4, 9 or 16 numbers, found non-numeric text") from None
    if vals.size == 4:
        K = vals
    elif vals.size in (9, 16):
        n = int(round(math.sqrt(vals.size)))
        K = vals.reshape(n, n)
    else:
        raise ValueError(f"{p}: expected 4 (fx fy cx cy), 9 (3x3) or 16 (4x4) numbers, found {vals.size}")
    return as_intrinsics(K).float()


def dis_flow(frames: torch.Tensor, preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) -> torch.Tensor:
    """Forward DIS optical flow (Kroeger et al. 2016, OpenCV) between consecutive frames.

    frames (T, 3, H, W) in [0, 1] -> (T-1, H, W, 2) pixels (u, v).
    """
    if frames.dim() != 4 or frames.shape[1] != 3 or frames.shape[0] < 2:
        raise ValueError(f"frames: expected shape (T >= 2, 3, H, W), found {tuple(frames.shape)}")
    dis = cv2.DISOpticalFlow_create(preset)
    gray = [
        cv2.cvtColor((f.permute(1, 2, 0).clamp(0, 1).numpy() * 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
        for f in frames.float()
    ]
    flows = [dis.calc(a, b, None) for a, b in zip(gray[:-1], gray[1:], strict=True)]
    return torch.from_numpy(np.stack(flows)).float()


def load_frame_folder(folder: str | Path, height: int = 96, width: int = 128, max_frames: int | None = None) -> MonocularVideo:
    """Frames of ``folder`` resized to (height, width), scaled intrinsics and DIS flow -> MonocularVideo."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"sequence folder {root} does not exist")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if max_frames is not None:
        files = files[: int(max_frames)]
    if len(files) < 2:
        raise ValueError(f"{root}: expected at least 2 frames (*.png, *.jpg), found {len(files)}")
    imgs = []
    orig = None
    for f in files:
        im = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if im is None:
            raise ValueError(f"{f}: expected a readable image, found an unreadable file")
        if orig is None:
            orig = im.shape[:2]
        elif im.shape[:2] != orig:
            raise ValueError(f"{f}: expected frame size {orig} like {files[0].name}, found {im.shape[:2]}")
        im = cv2.resize(im, (int(width), int(height)), interpolation=cv2.INTER_AREA)
        imgs.append(cv2.cvtColor(im, cv2.COLOR_BGR2RGB))
    frames = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0
    H0, W0 = orig
    kfile = root / "intrinsics.txt"
    if kfile.exists():
        k = read_intrinsics(kfile)
        sx, sy = width / W0, height / H0
        intr = torch.stack([k[0] * sx, k[1] * sy, (k[2] + 0.5) * sx - 0.5, (k[3] + 0.5) * sy - 0.5])
    else:
        intr = default_intrinsics(int(height), int(width))
    return MonocularVideo(frames=frames, intrinsics=intr, flow=dis_flow(frames), name=root.name)
