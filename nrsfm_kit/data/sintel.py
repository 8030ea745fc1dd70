"""MPI Sintel: ``.flo`` optical flow, ``.dpt`` depth, ``.cam`` cameras, and scene folders as videos.

Binary formats (Sintel / Middlebury conventions, little-endian):

* ``.flo``: float32 tag 202021.25 (bytes ``PIEH``), int32 width, int32 height, then height x width x 2
  float32 (u, v interleaved, row-major). Values with magnitude > 1e9 mean "unknown".
* ``.dpt``: float32 tag 202021.25, int32 width, int32 height, then height x width float32 depth.
* ``.cam``: float32 tag 202021.25, then the 3x3 intrinsic matrix M and the 3x4 extrinsic matrix N
  (world -> camera), both float64 row-major: x ~ M N X.

Folder layout (MPI-Sintel-complete + the depth/camera package)::

    <root>/<split>/<pass>/<scene>/frame_%04d.png      (pass: clean | final; frames start at 1)
    <root>/<split>/flow/<scene>/frame_%04d.flo        (flow from frame i to i + 1)
    <root>/<split>/occlusions/<scene>/frame_%04d.png  (255 = occluded in frame i + 1)
    <root>/<split>/depth/<scene>/frame_%04d.dpt
    <root>/<split>/camdata_left/<scene>/frame_%04d.cam
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nrsfm_kit.data.imageio import read_color, read_mask, require_file
from nrsfm_kit.data.types import MonocularVideo
from nrsfm_kit.utils.io import atomic_write_bytes

TAG_FLOAT = np.float32(202021.25)
UNKNOWN_FLOW = 1e9


def _header(p: Path, raw: bytes, what: str) -> None:
    if len(raw) < 4:
        raise ValueError(f"{p}: expected a 4-byte {what} tag, found {len(raw)} bytes")
    tag = np.frombuffer(raw[:4], "<f4")[0]
    if tag != TAG_FLOAT:
        raise ValueError(f"{p}: expected the {what} tag 202021.25 ('PIEH'), found {tag!r}")


def _size(p: Path, raw: bytes, channels: int) -> tuple[int, int]:
    if len(raw) < 12:
        raise ValueError(f"{p}: expected a 12-byte header (tag, width, height), found {len(raw)} bytes")
    w, h = (int(x) for x in np.frombuffer(raw[4:12], "<i4"))
    want = 12 + 4 * w * h * channels
    if w <= 0 or h <= 0 or len(raw) != want:
        raise ValueError(f"{p}: header says {w}x{h}x{channels} float32 = {want} bytes, found {len(raw)} bytes")
    return w, h


def read_flo(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """``.flo`` -> (flow (H, W, 2) float32 pixels, 0 where unknown; valid (H, W) bool)."""
    p = require_file(path, "Sintel .flo flow file")
    raw = p.read_bytes()
    _header(p, raw, ".flo")
    w, h = _size(p, raw, 2)
    f = np.frombuffer(raw, "<f4", offset=12).reshape(h, w, 2)
    if np.isnan(f).any():
        raise ValueError(f"{p}: expected finite flow values, found {int(np.isnan(f).sum())} NaN")
    valid = (np.abs(f) <= UNKNOWN_FLOW).all(-1)
    return torch.from_numpy(np.where(valid[..., None], f, 0.0).astype(np.float32)), torch.from_numpy(valid)


def write_flo(path: str | Path, flow: torch.Tensor) -> Path:
    """(H, W, 2) flow -> ``.flo`` (atomic)."""
    f = flow.detach().cpu().float().numpy()
    if f.ndim != 3 or f.shape[2] != 2:
        raise ValueError(f"flow: expected shape (H, W, 2), found {tuple(f.shape)}")
    if np.isnan(f).any():
        raise ValueError(f"flow: expected no NaN (use > 1e9 for unknown) writing {path}, found {int(np.isnan(f).sum())}")
    head = np.array([TAG_FLOAT], "<f4").tobytes() + np.array([f.shape[1], f.shape[0]], "<i4").tobytes()
    return atomic_write_bytes(path, head + f.astype("<f4").tobytes())


def read_dpt(path: str | Path) -> torch.Tensor:
    """``.dpt`` -> (H, W) float32 depth (Sintel units); ValueError for non-finite or negative values."""
    p = require_file(path, "Sintel .dpt depth file")
    raw = p.read_bytes()
    _header(p, raw, ".dpt")
    w, h = _size(p, raw, 1)
    d = np.frombuffer(raw, "<f4", offset=12).reshape(h, w).copy()
    bad = ~np.isfinite(d) | (d < 0)
    if bad.any():
        raise ValueError(f"{p}: expected finite depth >= 0, found {int(bad.sum())} bad values")
    return torch.from_numpy(d)


def write_dpt(path: str | Path, depth: torch.Tensor) -> Path:
    """(H, W) depth -> ``.dpt`` (atomic)."""
    d = depth.detach().cpu().float().numpy()
    if d.ndim != 2:
        raise ValueError(f"depth: expected shape (H, W), found {tuple(d.shape)}")
    if not np.isfinite(d).all() or (d < 0).any():
        raise ValueError(f"depth: expected finite values >= 0 writing {path}")
    head = np.array([TAG_FLOAT], "<f4").tobytes() + np.array([d.shape[1], d.shape[0]], "<i4").tobytes()
    return atomic_write_bytes(path, head + d.astype("<f4").tobytes())


def read_cam(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """``.cam`` -> (M (3, 3) intrinsics, N (3, 4) world -> camera extrinsics), float64."""
    p = require_file(path, "Sintel .cam camera file")
    raw = p.read_bytes()
    _header(p, raw, ".cam")
    if len(raw) != 4 + 8 * 21:
        raise ValueError(f"{p}: expected {4 + 8 * 21} bytes (tag + 3x3 + 3x4 float64), found {len(raw)}")
    v = np.frombuffer(raw, "<f8", offset=4)
    if not np.isfinite(v).all():
        raise ValueError(f"{p}: expected finite camera matrices, found non-finite values")
    return torch.from_numpy(v[:9].reshape(3, 3).copy()), torch.from_numpy(v[9:].reshape(3, 4).copy())


def write_cam(path: str | Path, M: torch.Tensor, N: torch.Tensor) -> Path:
    """Write (3, 3) intrinsics and (3, 4) extrinsics as a ``.cam`` file (atomic)."""
    M, N = np.asarray(M, dtype="<f8"), np.asarray(N, dtype="<f8")
    if M.shape != (3, 3) or N.shape != (3, 4):
        raise ValueError(f"M, N: expected shapes (3, 3) and (3, 4), found {M.shape} and {N.shape}")
    if not (np.isfinite(M).all() and np.isfinite(N).all()):
        raise ValueError(f"M, N: expected finite camera matrices writing {path}")
    return atomic_write_bytes(path, np.array([TAG_FLOAT], "<f4").tobytes() + M.tobytes() + N.tobytes())


def load_sintel_scene(
    root: str | Path,
    scene: str,
    pass_name: str = "clean",
    split: str = "training",
    frames: tuple[int, int] | None = None,
    dtype: torch.dtype = torch.float32,
) -> MonocularVideo:
    """Load a Sintel scene as a :class:`MonocularVideo`.

    Args:
        root: Sintel root (``MPI-Sintel-complete`` with the depth package merged in).
        scene: scene name, e.g. ``"alley_1"``.
        pass_name: ``"clean"`` or ``"final"``.
        split: ``"training"`` (``"test"`` has no ground truth).
        frames: optional (first, last) 1-based frame numbers, inclusive.
        dtype: floating dtype.

    Returns:
        frames (T, 3, H, W), and when the files exist: depth (T, H, W), flow (T-1, H, W, 2),
        flow_visibility (T-1, H, W) (not occluded and not unknown), intrinsics (4,) from the first
        ``.cam`` (else zeros are not invented: FileNotFoundError), poses (T, 4, 4) world -> camera.
    """
    from nrsfm_kit.geometry import as_intrinsics

    if pass_name not in ("clean", "final"):
        raise ValueError(f"pass_name: expected 'clean' or 'final', found {pass_name!r}")
    base = Path(root) / split
    img_dir = base / pass_name / scene
    if not img_dir.is_dir():
        raise FileNotFoundError(f"{img_dir}: Sintel scene folder not found")
    nums = sorted(int(f.stem.split("_")[1]) for f in img_dir.glob("frame_*.png"))
    if frames is not None:
        nums = [n for n in nums if frames[0] <= n <= frames[1]]
    if len(nums) < 1:
        raise FileNotFoundError(f"{img_dir}: no frame_%04d.png images (in range {frames})")
    name = lambda n, ext: f"frame_{n:04d}.{ext}"
    imgs = torch.stack([read_color(img_dir / name(n, "png"), dtype) for n in nums])
    video = MonocularVideo(frames=imgs, intrinsics=torch.zeros(4, dtype=dtype), name=f"sintel-{scene}-{pass_name}")
    H, W = imgs.shape[-2:]
    depth_dir, cam_dir = base / "depth" / scene, base / "camdata_left" / scene
    flow_dir, occ_dir = base / "flow" / scene, base / "occlusions" / scene
    if depth_dir.is_dir():
        d = torch.stack([read_dpt(depth_dir / name(n, "dpt")) for n in nums]).to(dtype)
        if tuple(d.shape[-2:]) != (H, W):
            raise ValueError(f"{depth_dir}: depth size {tuple(d.shape[-2:])} differs from the images {(H, W)}")
        video.depth = d
    if cam_dir.is_dir():
        cams = [read_cam(cam_dir / name(n, "cam")) for n in nums]
        video.intrinsics = as_intrinsics(cams[0][0], dtype=dtype)
        poses = torch.eye(4, dtype=torch.float64).repeat(len(nums), 1, 1)
        poses[:, :3] = torch.stack([c[1] for c in cams])
        video.poses = poses.to(dtype)
    else:
        raise FileNotFoundError(f"{cam_dir}: Sintel camera folder (camdata_left) not found; intrinsics unknown")
    if flow_dir.is_dir() and len(nums) > 1:
        flows = [read_flo(flow_dir / name(n, "flo")) for n in nums[:-1]]
        video.flow = torch.stack([f for f, _ in flows]).to(dtype)
        vis = torch.stack([v for _, v in flows])
        if occ_dir.is_dir():
            vis &= ~torch.stack([read_mask(occ_dir / name(n, "png")) for n in nums[:-1]])
        video.flow_visibility = vis
    return video
