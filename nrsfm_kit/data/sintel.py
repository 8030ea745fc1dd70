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

The depth/camera package may also stay in its own root (``depth_root``). The protocol of Takmaz et al.
(sec. 5 / supplement) on one scene: :func:`find_sintel_scene` checks the files, :func:`load_sintel_protocol`
reads the final pass, centre-crops it to 384x1024 (:data:`SINTEL_CROP`, intrinsics cy - 26) with the
ground-truth flow as the correspondences, and optionally downscales (:func:`crop_video`, :func:`resize_video`);
its metrics are :func:`nrsfm_kit.metrics.depth.sintel_depth_metrics` (depth < 50 m, per-image median scaling).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

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
    if f.ndim != 3 or f.shape[2] != 2 or 0 in f.shape[:2]:
        raise ValueError(f"flow: expected shape (H, W, 2) with H, W >= 1 (read_flo refuses an empty image), found "
                         f"{tuple(f.shape)}")
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
    if d.ndim != 2 or 0 in d.shape:
        raise ValueError(f"depth: expected shape (H, W) with H, W >= 1 (read_dpt refuses an empty image), found "
                         f"{tuple(d.shape)}")
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
    depth_root: str | Path | None = None,
) -> MonocularVideo:
    """Load a Sintel scene as a :class:`MonocularVideo`.

    Args:
        root: Sintel root (``MPI-Sintel-complete`` with the depth package merged in).
        scene: scene name, e.g. ``"alley_1"``.
        pass_name: ``"clean"`` or ``"final"``.
        split: ``"training"`` (``"test"`` has no ground truth).
        frames: optional (first, last) 1-based frame numbers, inclusive.
        dtype: floating dtype.
        depth_root: root of the separate depth/camera download (``MPI-Sintel-depth-training``, holding
            ``<split>/depth`` and ``<split>/camdata_left``) when it is not merged into ``root`` (default: ``root``).

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
    dbase = base if depth_root is None else Path(depth_root) / split
    depth_dir, cam_dir = dbase / "depth" / scene, dbase / "camdata_left" / scene
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


# ----------------------------------------------------------------------------------------------------------
# the Sintel protocol of Takmaz et al. (sec. 5 / supplement): final pass, 384x1024 centre crop, ground-truth
# flow as the correspondences, evaluation where the ground-truth depth is < 50 m (nrsfm_kit.metrics.depth)

PASSES = ("clean", "final")
SINTEL_CROP = (384, 1024)  # (H, W): centre crop of the 436x1024 frames (Takmaz et al., supplement)
_FRAME_NAME = re.compile(r"^frame_(\d{4,})\.png$")


@dataclass
class SintelScene:
    """The files of one Sintel scene, checked by :func:`find_sintel_scene` (nothing read but one image's size).

    Attributes:
        root: the Sintel root (holding ``<split>/<pass>/<scene>``, ``<split>/flow/<scene>``, ...).
        split: ``"training"``.
        scene: scene name, e.g. ``"alley_1"``.
        pass_name: render pass of the frames (``"final"`` for the protocol).
        frames: 1-based frame numbers, consecutive files of the scene folder (the first ``max_frames``).
        size: (H, W) of the frames, pixels (436x1024 for Sintel).
        depth_root: root of ``<split>/depth`` and ``<split>/camdata_left`` (``root`` when merged).
    """

    root: Path
    split: str
    scene: str
    pass_name: str
    frames: list[int]
    size: tuple[int, int]
    depth_root: Path

    @property
    def names(self) -> list[str]:
        """Frame stems ``frame_0001``, ..., used to name the outputs."""
        return [f"frame_{n:04d}" for n in self.frames]

    @property
    def image_dir(self) -> Path:
        return self.root / self.split / self.pass_name / self.scene

    def folder(self, kind: str) -> Path:
        """``<root>/<split>/<kind>/<scene>`` (``depth`` / ``camdata_left`` under ``depth_root``)."""
        base = self.depth_root if kind in ("depth", "camdata_left") else self.root
        return base / self.split / kind / self.scene


def sintel_scene_path(path: str | Path) -> tuple[Path, str, str, str] | None:
    """(root, split, pass, scene) when ``path`` is a Sintel scene folder ``<root>/<split>/<pass>/<scene>``.

    Recognised by its layout: the parent folder is named ``clean`` or ``final`` and the folder holds
    ``frame_%04d.png`` images. None otherwise (nothing raised).
    """
    p = Path(path)
    if p.parent.name not in PASSES or not p.is_dir():
        return None
    if not any(_FRAME_NAME.match(f.name) for f in p.iterdir()):
        return None
    return p.parent.parent.parent, p.parent.parent.name, p.parent.name, p.name


def sintel_split_folder(path: str | Path, split: str = "training") -> Path | None:
    """``<root>/<split>`` when ``path`` is a Sintel root (holding ``<split>/``) or that split folder itself
    (holding ``clean``, ``final`` or ``flow``); None otherwise."""
    p = Path(path)
    if (p / split).is_dir():
        return p / split
    if p.is_dir() and p.name == split and any((p / k).is_dir() for k in (*PASSES, "flow")):
        return p
    return None


def _scenes(folder: Path) -> str:
    names = sorted(d.name for d in folder.iterdir() if d.is_dir()) if folder.is_dir() else []
    if not names:
        return ""
    return f"; scenes there: {', '.join(names[:8])}{', ...' if len(names) > 8 else ''}"


def find_sintel_scene(
    path: str | Path,
    scene: str | None = None,
    *,
    depth_root: str | Path | None = None,
    max_frames: int | None = None,
    pass_name: str = "final",
) -> SintelScene:
    """The files of one Sintel scene for the protocol, all checked before anything is read.

    Args:
        path: the scene folder ``<root>/training/final/<scene>`` (``scene`` None), or the Sintel root
            ``<root>`` (or ``<root>/training``) with ``scene`` given.
        scene: scene name with a root ``path``.
        depth_root: root of the separate depth/camera download (``<depth_root>/training/depth/<scene>``,
            ``.../camdata_left/<scene>``); default: the same root as the frames.
        max_frames: the first ``max_frames`` frames of the scene (default all).
        pass_name: ``"final"`` (the protocol) or ``"clean"``.

    Every requested frame needs ``<pass>/<scene>/frame_%04d.png``, ``depth/<scene>/frame_%04d.dpt`` and
    ``camdata_left/<scene>/frame_%04d.cam``, and every frame but the last ``flow/<scene>/frame_%04d.flo``
    (flow from frame n to n + 1). Raises FileNotFoundError naming the missing folder or file, ValueError for a
    path that is no Sintel scene (naming ``path`` / ``scene``), a scene folder of another pass than
    ``pass_name``, or fewer than 2 frames.
    """
    if pass_name not in PASSES:
        raise ValueError(f"pass_name: expected one of {PASSES}, found {pass_name!r}")
    p = Path(path)
    if scene is None:
        parsed = sintel_scene_path(p)
        if parsed is None:
            if sintel_split_folder(p) is not None:
                raise ValueError(f"scene: expected a scene name with the Sintel root {p}, found none"
                                 f"{_scenes(sintel_split_folder(p) / pass_name)}")
            raise ValueError(f"path: expected a Sintel scene folder <root>/training/{pass_name}/<scene> with "
                             f"frame_%04d.png images, or a Sintel root with a scene name, found {p}")
        root, split, found_pass, scene = parsed
        if found_pass != pass_name:
            raise ValueError(f"path: expected the {pass_name} render pass folder {root / split / pass_name / scene}"
                             f" (the Sintel protocol), found the {found_pass} pass folder {p}")
    else:
        if not p.is_dir():
            raise FileNotFoundError(f"{p}: Sintel root folder not found")
        if sintel_scene_path(p) is not None:
            raise ValueError(f"scene: expected a Sintel root with a scene name, found the scene folder {p} "
                             f"with scene {scene!r} (give one or the other)")
        base = sintel_split_folder(p)
        if base is None:
            raise ValueError(f"path: expected a Sintel root holding training/ (or the training/ folder itself), "
                             f"found {p}")
        root, split = base.parent, base.name
    droot = root if depth_root is None else Path(depth_root)
    if depth_root is not None and not (droot / split).is_dir():
        raise FileNotFoundError(f"{droot / split}: Sintel depth-download folder not found (depth_root {droot} "
                                f"should hold {split}/depth/<scene> and {split}/camdata_left/<scene>)")
    img_dir = root / split / pass_name / scene
    if not img_dir.is_dir():
        other = [q for q in PASSES if q != pass_name and (root / split / q / scene).is_dir()]
        hint = f"; found the {other[0]} pass only" if other else _scenes(root / split / pass_name)
        raise FileNotFoundError(f"{img_dir}: Sintel {pass_name}-pass folder not found (the protocol reads the "
                                f"{pass_name} render pass{hint})")
    nums = sorted(int(m.group(1)) for f in img_dir.iterdir() if (m := _FRAME_NAME.match(f.name)))
    if max_frames is not None:
        nums = nums[: int(max_frames)]
    if len(nums) < 2:
        raise ValueError(f"{img_dir}: expected at least 2 frames frame_%04d.png, found {len(nums)}")
    if nums != list(range(nums[0], nums[0] + len(nums))):
        gap = next(n + 1 for a, n in zip(nums[1:], nums) if a != n + 1)
        raise FileNotFoundError(f"{img_dir}: expected consecutive frames from frame_{nums[0]:04d}.png, found "
                                f"frame_{gap:04d}.png missing")
    out = SintelScene(root=root, split=split, scene=scene, pass_name=pass_name, frames=nums, size=(0, 0),
                      depth_root=droot)
    span = f"frames {nums[0]}..{nums[-1]}"
    need = {"flow": ("flo", nums[:-1], "ground-truth optical flow"),
            "depth": ("dpt", nums, "ground-truth depth (MPI-Sintel depth download)"),
            "camdata_left": ("cam", nums, "camera (MPI-Sintel depth download)")}
    for kind, (ext, ns, what) in need.items():
        folder = out.folder(kind)
        if not folder.is_dir():
            hint = ("; when the MPI-Sintel depth download has its own root, give it as depth_root (--sintel-depth)"
                    if kind != "flow" and depth_root is None else "")
            raise FileNotFoundError(f"{folder}: Sintel {kind} folder not found (the {what} of {span}{hint})")
        missing = [n for n in ns if not (folder / f"frame_{n:04d}.{ext}").is_file()]
        if missing:
            raise FileNotFoundError(f"{folder}: expected frame_{missing[0]:04d}.{ext} ({what} of frame {missing[0]}; "
                                    f"{len(missing)} of {len(ns)} missing for {span})")
    first = img_dir / f"frame_{nums[0]:04d}.png"
    img = cv2.imread(str(first), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"{first}: not a readable image file")
    out.size = (int(img.shape[0]), int(img.shape[1]))
    return out


def parse_size(text: str, name: str = "crop") -> tuple[int, int]:
    """``"384x1024"`` -> (384, 1024); ValueError naming ``name`` for anything else (positive integers)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if m is None or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ValueError(f"{name}: expected HxW with positive integers (e.g. 384x1024), found {text!r}")
    return int(m.group(1)), int(m.group(2))


def center_crop_box(size: tuple[int, int], crop: tuple[int, int]) -> tuple[int, int]:
    """(top, left) of a centred ``crop`` (h, w) of an image of ``size`` (H, W): ((H - h) // 2, (W - w) // 2).

    ValueError naming ``crop`` and both sizes when the crop is larger than the image (436x1024 -> 384x1024: top
    26, left 0).
    """
    (H, W), (h, w) = (int(s) for s in size), (int(s) for s in crop)
    if h < 1 or w < 1:
        raise ValueError(f"crop: expected a positive size HxW, found {h}x{w}")
    if h > H or w > W:
        raise ValueError(f"crop: expected at most the frame size {H}x{W}, found {h}x{w}")
    return (H - h) // 2, (W - w) // 2


def crop_video(video: MonocularVideo, top: int, left: int, height: int, width: int) -> MonocularVideo:
    """The window [top, top + height) x [left, left + width) of every frame, the ground truth cropped with it.

    Frames, depth and segmentation are cut; the flow keeps its vectors (a pixel shift moves source and target
    alike) and only correspondences whose target p + flow(p) lands inside the crop ([0, width - 1] x
    [0, height - 1], the EDM loss's test) stay visible; intrinsics (fx, fy, cx - left, cy - top); poses as
    they are.
    """
    T, _, H, W = video.frames.shape
    if top < 0 or left < 0 or height < 1 or width < 1 or top + height > H or left + width > W:
        raise ValueError(f"crop: expected a window inside the {H}x{W} frames, found {height}x{width} at "
                         f"(top {top}, left {left})")
    ys, xs = slice(top, top + height), slice(left, left + width)
    cut = lambda a: None if a is None else a[..., ys, xs].clone()
    intr = video.intrinsics.clone()
    intr[2] -= left
    intr[3] -= top
    flow = vis = None
    if video.flow is not None:
        flow = video.flow[:, ys, xs].clone()
        vis = _inside(flow, height, width)
        if video.flow_visibility is not None:
            vis &= video.flow_visibility[:, ys, xs].bool()
    return replace(video, frames=cut(video.frames), depth=cut(video.depth), segmentation=cut(video.segmentation),
                   flow=flow, flow_visibility=vis, intrinsics=intr)


def _inside(flow: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(T, h, w) bool: pixel + flow inside [0, width - 1] x [0, height - 1] (and finite)."""
    v = torch.arange(height, dtype=flow.dtype)[:, None] + flow[..., 1]
    u = torch.arange(width, dtype=flow.dtype)[None, :] + flow[..., 0]
    return torch.isfinite(flow).all(-1) & (u >= 0) & (u <= width - 1) & (v >= 0) & (v <= height - 1)


def _centre_index(n_in: int, n_out: int) -> torch.Tensor:
    """Source pixel under the centre of each of ``n_out`` output pixels: floor((i + 0.5) n_in / n_out)."""
    return ((torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out)).floor().long().clamp_(0, n_in - 1)


def resize_video(video: MonocularVideo, height: int, width: int) -> MonocularVideo:
    """Every frame and its ground truth at (height, width).

    Frames are area-averaged (``F.interpolate(mode="area")``); depth, segmentation, flow and its visibility
    are sampled at the source pixel under each output pixel's centre, floor((i + 0.5) W / width) (no blending
    across depth or motion edges), the flow vectors scaled by (sx, sy) = (width / W, height / H) (exact for a
    locally constant flow); correspondences whose target leaves the image become invisible. Intrinsics
    (fx sx, fy sy, (cx + 0.5) sx - 0.5, (cy + 0.5) sy - 0.5), as :func:`nrsfm_kit.edm.video_io.load_frame_folder`.
    """
    T, _, H, W = video.frames.shape
    if height < 1 or width < 1:
        raise ValueError(f"size: expected a positive size HxW, found {height}x{width}")
    if (height, width) == (H, W):
        return video
    sx, sy = width / W, height / H
    yi, xi = _centre_index(H, height), _centre_index(W, width)
    pick = lambda a: None if a is None else a[..., yi, :][..., xi].clone()
    frames = F.interpolate(video.frames, size=(height, width), mode="area")
    k = video.intrinsics
    intr = torch.stack([k[0] * sx, k[1] * sy, (k[2] + 0.5) * sx - 0.5, (k[3] + 0.5) * sy - 0.5]).to(k.dtype)
    flow = vis = None
    if video.flow is not None:
        f = video.flow[:, yi][:, :, xi]
        flow = torch.stack([f[..., 0] * sx, f[..., 1] * sy], -1)
        vis = _inside(flow, height, width)
        if video.flow_visibility is not None:
            vis &= video.flow_visibility[:, yi][:, :, xi].bool()
    return replace(video, frames=frames.contiguous(), depth=pick(video.depth), segmentation=pick(video.segmentation),
                   flow=flow, flow_visibility=vis, intrinsics=intr)


def load_sintel_protocol(
    scene: SintelScene,
    crop: tuple[int, int] = SINTEL_CROP,
    size: tuple[int, int] | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[MonocularVideo, dict]:
    """A Sintel scene as the video of Takmaz et al.'s protocol: centre crop, then (optionally) downscaled.

    Args:
        scene: :func:`find_sintel_scene` (frames of the final pass, ground-truth flow, depth, cameras).
        crop: (h, w) centre crop of the frames (the paper: 384x1024 of the 436x1024 frames, top offset 26).
        size: working (height, width) after the crop (default: the crop); at most the crop (downscaling only).
        dtype: floating dtype.

    Returns:
        (video, info). video: frames (T, 3, h, w), depth (T, h, w) Sintel units (metres), the ground-truth
        flow (T-1, h, w, 2) as the correspondences with flow_visibility (T-1, h, w) = known flow, not occluded
        (``occlusions/`` when present) and target inside the crop, intrinsics of the first ``.cam`` adjusted
        for the crop (cy - top, cx - left) and the resize, poses (T, 4, 4). info: {"scene", "pass", "frames"
        (stems), "frame_size", "crop", "crop_offset" [top, left], "size", "intrinsics" (working size),
        "intrinsics_max_rel_change" (largest relative change of fx, fy, cx, cy over the frames' ``.cam``:
        the EDM loss uses one camera per video)}.
    """
    h, w = (int(c) for c in crop)
    top, left = center_crop_box(scene.size, (h, w))
    sh, sw = (h, w) if size is None else (int(s) for s in size)
    if sh < 1 or sw < 1 or sh > h or sw > w:
        raise ValueError(f"size: expected a working size between 1x1 and the crop {h}x{w}, found {sh}x{sw}")
    video = load_sintel_scene(scene.root, scene.scene, scene.pass_name, scene.split,
                              frames=(scene.frames[0], scene.frames[-1]), dtype=dtype, depth_root=scene.depth_root)
    if tuple(video.frames.shape[-2:]) != tuple(scene.size):
        raise ValueError(f"{scene.image_dir}: expected every frame of size {scene.size[0]}x{scene.size[1]}, found "
                         f"{tuple(video.frames.shape[-2:])}")
    if video.flow is None or video.depth is None:  # checked by find_sintel_scene; guards hand-made scenes
        raise FileNotFoundError(f"{scene.folder('flow' if video.flow is None else 'depth')}: Sintel ground truth "
                                f"folder not found")
    if tuple(video.flow.shape[1:3]) != tuple(scene.size):
        raise ValueError(f"{scene.folder('flow')}: flow size {tuple(video.flow.shape[1:3])} differs from the "
                         f"images {tuple(scene.size)}")
    from nrsfm_kit.geometry import as_intrinsics

    ks = torch.stack([as_intrinsics(read_cam(scene.folder("camdata_left") / f"{n}.cam")[0]) for n in scene.names])
    change = float(((ks - ks[0]).abs() / ks[0].abs().clamp_min(1e-12)).max())
    video = crop_video(video, top, left, h, w)
    video = resize_video(video, sh, sw)
    video.name = f"sintel-{scene.scene}-{scene.pass_name}"
    info = {"scene": scene.scene, "pass": scene.pass_name, "split": scene.split, "frames": scene.names,
            "frame_size": list(scene.size), "crop": [h, w], "crop_offset": [top, left], "size": [sh, sw],
            "intrinsics": [float(x) for x in video.intrinsics], "intrinsics_max_rel_change": change}
    return video, info
