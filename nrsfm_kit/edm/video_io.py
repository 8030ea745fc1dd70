"""Real videos for test-time training: a folder of RGB frames, intrinsics, DIS optical flow (OpenCV), and the
results written back (depth maps, motion embeddings).

A sequence folder holds frames as ``*.png`` / ``*.jpg`` / ``*.jpeg`` (sorted by name) and optionally an
``intrinsics.txt`` with fx fy cx cy (4 numbers) or a 3x3 / 4x4 matrix, in pixels of the original frames.
Without it the intrinsics are guessed: a 60 degree horizontal field of view, principal point at the
image centre. Frames are resized to the requested size and the intrinsics scaled with them.

The DeepDeform layout is recognised too (:func:`find_frames`): ``<seq>/color/*.jpg`` with ``<seq>/intrinsics.txt``
and, as ground truth, ``<seq>/depth/<frame>.png`` (uint16 millimetres, 0 = invalid) beside ``color/``; the
sequence may be given as ``<seq>`` or as ``<seq>/color``.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from nrsfm_kit.data.types import MonocularVideo
from nrsfm_kit.geometry import as_intrinsics
from nrsfm_kit.utils.io import atomic_write_bytes

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


@dataclass
class FrameFolder:
    """The files of one sequence (:func:`find_frames`).

    Attributes:
        root: the sequence folder (``<seq>`` for the DeepDeform layout, else the frames' folder).
        frames: the frame images, sorted by name.
        intrinsics: ``intrinsics.txt`` beside the frames or in ``root``, or None.
        depth: one ground-truth depth PNG per frame (``<root>/depth/<frame stem>.png``), or None.
        depth_scale: depth PNG units per metre (1000: millimetres, as DeepDeform).
    """

    root: Path
    frames: list[Path]
    intrinsics: Path | None = None
    depth: list[Path] | None = None
    depth_scale: float = 1000.0

    @property
    def names(self) -> list[str]:
        """The frames' file stems (``000000``), used to name the outputs."""
        return [f.stem for f in self.frames]


def find_frames(folder: str | Path, max_frames: int | None = None) -> FrameFolder:
    """The frames, intrinsics and ground-truth depth of a sequence folder, without reading any image.

    ``folder`` is a folder of frames, or a DeepDeform sequence ``<seq>`` (frames in ``<seq>/color``), or its
    ``color`` folder. Ground truth: when a ``depth/`` folder sits beside the frames' folder, every frame must
    have its ``depth/<stem>.png``. Raises FileNotFoundError for a missing folder or depth file, ValueError
    for a file given as the folder or fewer than 2 frames.
    """
    root = Path(folder)
    if not root.exists():
        raise FileNotFoundError(f"sequence folder {root} does not exist")
    if not root.is_dir():
        raise ValueError(f"{root}: expected a folder of frames (*.png, *.jpg) or a DeepDeform sequence, found a file")
    if (root / "color").is_dir():
        frames_dir, base = root / "color", root
    elif root.name == "color" and ((root.parent / "depth").is_dir() or (root.parent / "intrinsics.txt").is_file()):
        frames_dir, base = root, root.parent
    else:
        frames_dir = base = root
    files = sorted(p for p in frames_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if max_frames is not None:
        files = files[: int(max_frames)]
    if len(files) < 2:
        raise ValueError(f"{frames_dir}: expected at least 2 frames (*.png, *.jpg), found {len(files)}")
    intr = next((k for k in (frames_dir / "intrinsics.txt", base / "intrinsics.txt") if k.is_file()), None)
    depth = None
    if base != frames_dir and (base / "depth").is_dir():
        depth = [base / "depth" / f"{f.stem}.png" for f in files]
        missing = [d for d in depth if not d.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{base / 'depth'}: expected a ground-truth depth PNG for each of the {len(files)} frames, found "
                f"{len(missing)} missing ({missing[0].name}{', ...' if len(missing) > 1 else ''})")
    return FrameFolder(root=base, frames=files, intrinsics=intr, depth=depth)


def _read_depth_frame(path: Path, size: tuple[int, int], height: int, width: int, scale: float) -> np.ndarray:
    d = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if d is None:
        raise ValueError(f"{path}: expected a readable depth PNG, found an unreadable file")
    if d.dtype != np.uint16 or d.ndim != 2:
        raise ValueError(f"{path}: expected a single-channel uint16 depth PNG, found {d.dtype} with shape {d.shape}")
    if d.shape != size:
        raise ValueError(f"{path}: expected the frames' size {size}, found {d.shape}")
    # nearest neighbour: averaging would mix invalid (0) pixels into valid ones at object borders
    d = cv2.resize(d, (int(width), int(height)), interpolation=cv2.INTER_NEAREST).astype(np.float32) / scale
    if not (d > 0).any():
        raise ValueError(f"{path}: expected valid (non-zero) ground-truth depth at {height}x{width}, found none")
    return d


def load_frame_folder(folder: str | Path, height: int = 96, width: int = 128, max_frames: int | None = None,
                      ground_truth: bool = True) -> MonocularVideo:
    """Frames of ``folder`` resized to (height, width), scaled intrinsics and DIS flow -> MonocularVideo.

    ``folder``: see :func:`find_frames`. With ``ground_truth`` and a ``depth/`` folder beside the frames
    (DeepDeform layout), ``depth`` is the ground truth (T, height, width) in metres, 0 = invalid (nearest
    neighbour resizing); otherwise None.
    """
    layout = find_frames(folder, max_frames)
    files = layout.frames
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
    # contiguous (NCHW): a permuted HWC stack is channels-last in memory, a layout that oneDNN mishandles in
    # the networks' backward (nrsfm_kit.edm.training.network_input)
    frames = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float().contiguous() / 255.0
    H0, W0 = orig
    depth = None
    if ground_truth and layout.depth is not None:
        depth = torch.from_numpy(np.stack([_read_depth_frame(d, orig, height, width, layout.depth_scale)
                                           for d in layout.depth]))
    kfile = layout.intrinsics
    if kfile is not None:
        k = read_intrinsics(kfile)
        sx, sy = width / W0, height / H0
        intr = torch.stack([k[0] * sx, k[1] * sy, (k[2] + 0.5) * sx - 0.5, (k[3] + 0.5) * sy - 0.5])
    else:
        intr = default_intrinsics(int(height), int(width))
    return MonocularVideo(frames=frames, intrinsics=intr, flow=dis_flow(frames), depth=depth, name=layout.root.name)


# ----------------------------------------------------------------------------------------------------------
# results written back: depth maps (16-bit PNG in mm + colourised previews) and motion embeddings


def _png(path: Path, img: np.ndarray) -> Path:
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise ValueError(f"{path}: expected an image OpenCV can encode as PNG, found dtype {img.dtype} {img.shape}")
    return atomic_write_bytes(path, buf.tobytes())


def depth_to_png16(depth: torch.Tensor, scale: float = 1000.0) -> np.ndarray:
    """(..., H, W) metres -> uint16 in 1/``scale`` metres (1000: millimetres), 0 where not finite or <= 0.

    Values are rounded and clipped to [1, 65535] (65.5 m at millimetres), so a valid depth never reads as 0.
    """
    d = depth.detach().cpu().double().numpy() * float(scale)
    valid = np.isfinite(d) & (d > 0)
    return np.where(valid, np.clip(np.round(np.where(valid, d, 0.0)), 1, 65535), 0).astype(np.uint16)


def colourise_depth(depth: torch.Tensor) -> np.ndarray:
    """(T, H, W) depth -> (T, H, W, 3) uint8 BGR previews (OpenCV's turbo map of the inverse depth: near = red).

    One normalisation for the whole sequence (2nd..98th percentile of the inverse depth over all frames), so
    the previews compare across frames; invalid pixels are black.
    """
    d = depth.detach().cpu().double().numpy()
    valid = np.isfinite(d) & (d > 0)
    inv = np.where(valid, 1.0 / np.where(valid, d, 1.0), 0.0)
    lo, hi = (np.percentile(inv[valid], [2, 98]) if valid.any() else (0.0, 1.0))
    x = np.clip((inv - lo) / max(hi - lo, 1e-12), 0, 1)
    out = np.stack([cv2.applyColorMap((f * 255 + 0.5).astype(np.uint8), cv2.COLORMAP_TURBO) for f in x])
    out[~valid] = 0
    return out


def colourise_embeddings(emb: torch.Tensor) -> np.ndarray:
    """(T, 3, H, W) motion embeddings -> (T, H, W, 3) uint8 BGR previews (embedding channel c -> colour c).

    Each channel is stretched to [0, 255] by its min and max over the whole sequence (the embeddings live in
    (0, embedding_scale)^3 and rarely fill it, so clipping to [0, 1] would show a blank image); a constant
    channel shows mid-grey.
    """
    e = emb.detach().cpu().double().numpy()
    lo = e.min(axis=(0, 2, 3), keepdims=True)
    span = e.max(axis=(0, 2, 3), keepdims=True) - lo
    x = np.where(span > 1e-12, (e - lo) / np.where(span > 1e-12, span, 1.0), 0.5)
    rgb = (x.transpose(0, 2, 3, 1) * 255 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(rgb[..., ::-1])


def write_depth_maps(folder: str | Path, depth: torch.Tensor, names: list[str], scale: float = 1000.0) -> dict:
    """Write ``<folder>/depth/<name>.png`` (uint16, 1/``scale`` m: millimetres) and ``depth_preview/<name>.png``.

    depth: (T, H, W) metres; names: T file stems. Written atomically; returns {"depth": [paths], "preview": [...]}.
    """
    if depth.dim() != 3 or depth.shape[0] != len(names):
        raise ValueError(f"depth: expected shape ({len(names)}, H, W) for {len(names)} names, "
                         f"found {tuple(depth.shape)}")
    root = Path(folder)
    png, preview = depth_to_png16(depth, scale), colourise_depth(depth)
    return {
        "depth": [_png(root / "depth" / f"{n}.png", png[t]) for t, n in enumerate(names)],
        "preview": [_png(root / "depth_preview" / f"{n}.png", preview[t]) for t, n in enumerate(names)],
    }


def write_embeddings(folder: str | Path, emb: torch.Tensor, names: list[str]) -> dict:
    """Write ``<folder>/embeddings.npy`` ((T, 3, H, W) float32, frame t's embedding of the pair t -> t+1) and
    ``<folder>/embedding_preview/<name>.png``; names: T file stems. Returns {"npy": path, "preview": [...]}."""
    if emb.dim() != 4 or emb.shape[1] != 3 or emb.shape[0] != len(names):
        raise ValueError(f"emb: expected shape ({len(names)}, 3, H, W) for {len(names)} names, "
                         f"found {tuple(emb.shape)}")
    root = Path(folder)
    buf = io.BytesIO()
    np.save(buf, emb.detach().cpu().float().numpy())
    npy = atomic_write_bytes(root / "embeddings.npy", buf.getvalue())
    preview = colourise_embeddings(emb)
    return {"npy": npy, "preview": [_png(root / "embedding_preview" / f"{n}.png", preview[t])
                                    for t, n in enumerate(names)]}
