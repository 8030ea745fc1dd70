"""VolumeDeform (Innmann et al., ECCV 2016) RGB-D frame sequences.

Layout: ``<seq>/data/frame-%06d.color.png`` and ``<seq>/data/frame-%06d.depth.png`` (uint16 millimetres,
0 = invalid), frames numbered from 0; the frames may also sit directly in ``<seq>``. The dataset does not
ship a machine-readable intrinsics file in every sequence: pass ``intrinsics`` or put an
``intrinsics.txt`` / ``colorIntrinsics.txt`` / ``depthIntrinsics.txt`` (3x3 or 4x4 matrix) next to the
frames.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from tqdm.auto import tqdm

from nrsfm_kit.data.imageio import read_color, read_depth_png, read_intrinsics_txt
from nrsfm_kit.data.types import RGBDSequence

_COLOR = re.compile(r"^frame-(\d{6})\.color\.png$")
INTRINSICS_FILES = ("intrinsics.txt", "colorIntrinsics.txt", "depthIntrinsics.txt")


def _frame_dir(seq: Path) -> Path:
    for d in (seq / "data", seq):
        if d.is_dir() and any(_COLOR.match(f.name) for f in d.iterdir()):
            return d
    raise FileNotFoundError(f"{seq}: no frame-%06d.color.png files in {seq / 'data'} or {seq}")


def list_volumedeform_frames(seq_dir: str | Path) -> list[int]:
    """Frame numbers with a colour image in a VolumeDeform sequence folder."""
    seq = Path(seq_dir)
    if not seq.is_dir():
        raise FileNotFoundError(f"{seq}: VolumeDeform sequence folder not found")
    d = _frame_dir(seq)
    return sorted(int(m[1]) for f in d.iterdir() if (m := _COLOR.match(f.name)))


def load_volumedeform_sequence(
    seq_dir: str | Path,
    frames: list[int] | range | None = None,
    intrinsics=None,
    progress: bool = False,
    dtype: torch.dtype = torch.float32,
) -> RGBDSequence:
    """Load VolumeDeform frames as an :class:`RGBDSequence` (colors (T, 3, H, W), depths (T, H, W) m).

    Args:
        seq_dir: sequence folder.
        frames: frame numbers to load (default: all).
        intrinsics: (fx, fy, cx, cy), a 3x3 or 4x4 matrix; default: read from an intrinsics file.
        progress: tqdm bar over frames.
    """
    from nrsfm_kit.geometry import as_intrinsics

    seq = Path(seq_dir)
    nums = list_volumedeform_frames(seq) if frames is None else [int(f) for f in frames]
    if not nums:
        raise ValueError(f"frames: expected at least one frame number for {seq}, found none")
    d = _frame_dir(seq)
    if intrinsics is None:
        cands = [c / n for c in (d, seq) for n in INTRINSICS_FILES if (c / n).is_file()]
        if not cands:
            raise FileNotFoundError(
                f"{seq}: no intrinsics file ({', '.join(INTRINSICS_FILES)}); pass intrinsics=(fx, fy, cx, cy)"
            )
        intr = read_intrinsics_txt(cands[0], dtype)
    else:
        intr = as_intrinsics(intrinsics, dtype=dtype)
    colors, depths = [], []
    for n in tqdm(nums, desc="VolumeDeform frames", disable=not progress, leave=False):
        c = read_color(d / f"frame-{n:06d}.color.png", dtype)
        z = read_depth_png(d / f"frame-{n:06d}.depth.png", dtype=dtype)
        if tuple(c.shape[-2:]) != tuple(z.shape):
            raise ValueError(f"{d}: frame {n}: colour size {tuple(c.shape[-2:])} != depth size {tuple(z.shape)}")
        if colors and tuple(c.shape) != tuple(colors[0].shape):
            raise ValueError(f"{d}: frame {n}: size {tuple(c.shape[-2:])} differs from the first frame")
        colors.append(c)
        depths.append(z)
    return RGBDSequence(torch.stack(colors), torch.stack(depths), intr, name=f"volumedeform-{seq.name}")


def save_volumedeform_sequence(seq: RGBDSequence, seq_dir: str | Path) -> Path:
    """Write an :class:`RGBDSequence` in the VolumeDeform layout (+ ``intrinsics.txt``); returns the folder."""
    from nrsfm_kit.data.imageio import write_color, write_depth_png
    from nrsfm_kit.utils.io import atomic_write_text

    d = Path(seq_dir) / "data"
    for k in range(seq.num_frames):
        write_color(d / f"frame-{k:06d}.color.png", seq.colors[k])
        write_depth_png(d / f"frame-{k:06d}.depth.png", seq.depths[k])
    fx, fy, cx, cy = (float(v) for v in seq.intrinsics)
    atomic_write_text(Path(seq_dir) / "intrinsics.txt", f"{fx} 0 {cx}\n0 {fy} {cy}\n0 0 1\n")
    return Path(seq_dir)
