"""Image and matrix readers/writers shared by the dataset loaders (OpenCV), with path-naming errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from nrsfm_kit.utils.io import atomic_write_bytes


def require_file(path: str | Path, what: str) -> Path:
    """Return ``Path(path)``; FileNotFoundError naming it (and what it should be) when missing, ValueError when
    it is a directory."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{p}: expected a {what}, found a directory")
    if not p.is_file():
        raise FileNotFoundError(f"{p}: {what} not found")
    return p


def read_color(path: str | Path, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """8-bit colour image (jpg/png) -> (3, H, W) RGB in [0, 1]."""
    p = require_file(path, "colour image")
    img = cv2.imread(str(p), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"{p}: not a readable image file")
    return torch.from_numpy(np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1))).to(dtype) / 255.0


def read_depth_png(path: str | Path, scale: float = 1000.0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """16-bit depth PNG (``scale`` units per metre, 1000 = millimetres) -> (H, W) metres, 0 = invalid."""
    p = require_file(path, "depth image")
    d = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if d is None:
        raise ValueError(f"{p}: not a readable image file")
    if d.dtype != np.uint16 or d.ndim != 2:
        raise ValueError(f"{p}: expected a single-channel uint16 depth PNG, found {d.dtype} with shape {d.shape}")
    return torch.from_numpy(d.astype(np.float32) / np.float32(scale)).to(dtype)


def read_mask(path: str | Path) -> torch.Tensor:
    """Mask image (any bit depth) -> (H, W) bool, True where non-zero."""
    p = require_file(path, "mask image")
    m = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if m is None:
        raise ValueError(f"{p}: not a readable image file")
    if m.ndim == 3:
        m = m.max(axis=2)
    return torch.from_numpy(m != 0)


def write_color(path: str | Path, color: torch.Tensor, quality: int = 95) -> Path:
    """(3, H, W) RGB in [0, 1] -> 8-bit jpg/png (by extension), written atomically."""
    p = Path(path)
    if color.dim() != 3 or color.shape[0] != 3 or color.shape[1] < 1 or color.shape[2] < 1:
        raise ValueError(f"color: expected shape (3, H, W) with H, W >= 1 writing {p}, found {tuple(color.shape)}")
    if not bool(torch.isfinite(color).all()):
        raise ValueError(f"color: expected finite values writing {p}, found {int((~torch.isfinite(color)).sum())} "
                         "non-finite")
    img = (color.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy()[..., ::-1] * 255.0 + 0.5).astype(np.uint8)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if p.suffix.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(p.suffix, img, params)
    if not ok:
        raise ValueError(f"{p}: cannot encode an image with extension {p.suffix!r}")
    return atomic_write_bytes(p, buf.tobytes())


def write_depth_png(path: str | Path, depth: torch.Tensor, scale: float = 1000.0) -> Path:
    """(H, W) metres -> uint16 PNG in 1/``scale`` metres (0 = invalid), written atomically."""
    d = depth.detach().cpu().double().numpy()
    if not np.isfinite(d).all() or (d < 0).any() or (np.round(d * scale) > 65535).any():  # (65.535 read as f32 fits)
        raise ValueError(f"depth: expected finite values in [0, {65535 / scale}] m for {path}")
    ok, buf = cv2.imencode(".png", np.round(d * scale).astype(np.uint16))
    assert ok
    return atomic_write_bytes(path, buf.tobytes())


def write_mask(path: str | Path, mask: torch.Tensor, value: int = 65535) -> Path:
    """(H, W) bool -> uint16 PNG with ``value`` on the mask (as DeepDeform), written atomically."""
    ok, buf = cv2.imencode(".png", mask.cpu().numpy().astype(np.uint16) * np.uint16(value))
    assert ok
    return atomic_write_bytes(path, buf.tobytes())


def read_matrix(path: str | Path, what: str = "matrix") -> np.ndarray:
    """Whitespace-separated text matrix -> float64 array; ValueError naming the path when unreadable."""
    p = require_file(path, what)
    try:
        m = np.loadtxt(p, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise ValueError(f"{p}: expected a whitespace-separated numeric {what} ({exc})") from None
    if not np.isfinite(m).all():
        raise ValueError(f"{p}: expected finite values in the {what}, found {int((~np.isfinite(m)).sum())} non-finite")
    return m


def read_intrinsics_txt(path: str | Path, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Intrinsics text file (4x4 or 3x3 matrix, or the 4 numbers fx fy cx cy) -> (4,) (fx, fy, cx, cy)."""
    from nrsfm_kit.geometry import as_intrinsics

    m = read_matrix(path, "intrinsics matrix")
    if m.shape not in ((4, 4), (3, 3)) and m.size != 4:
        raise ValueError(f"{path}: expected a 4x4 or 3x3 intrinsics matrix or 4 numbers, found shape {m.shape}")
    try:
        return as_intrinsics(torch.as_tensor(m.reshape(-1) if m.size == 4 else m), dtype=dtype)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
