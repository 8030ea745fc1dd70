"""DeepDeform (Bozic et al., CVPR 2020) RGB-D sequences, flow images and JSON labels.

Layout (facts from the dataset's README, github.com/AljazBozic/DeepDeform)::

    <root>/<split>/<seq>/color/%06d.jpg         8-bit RGB
    <root>/<split>/<seq>/depth/%06d.png         uint16, millimetres (divide by 1000), 0 = invalid
    <root>/<split>/<seq>/mask/%06d_<object>.png uint16 object mask (non-zero = object)
    <root>/<split>/<seq>/optical_flow/<object>_<src>_<tgt>.oflow   C=2, pixels
    <root>/<split>/<seq>/scene_flow/<object>_<src>_<tgt>.sflow     C=3, metres
    <root>/<split>/<seq>/intrinsics.txt         4x4 matrix
    <root>/<split>_{matches,dense,selfsupervised,masks,occlusions}.json

Binary flow images: little-endian header uint32 width, height, channels, then channels x height x
width float32 (channel-major); invalid pixels are -inf. JSON labels: a list of frame-pair records with
``seq_id``, ``object_id``, ``source_id``, ``target_id`` and paths relative to ``<root>`` (``source_color``,
``source_depth``, ``target_color``, ``target_depth``; ``optical_flow``/``scene_flow`` for dense alignments),
plus ``matches`` (list of ``source_x, source_y, target_x, target_y``) or ``occlusions`` (list of
``source_x, source_y``); mask records have ``seq_id``, ``object_id``, ``frame_id``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nrsfm_kit.data.imageio import read_color, read_depth_png, read_intrinsics_txt, read_mask, require_file
from nrsfm_kit.data.types import RGBDPair
from nrsfm_kit.utils.io import atomic_write_bytes

LABEL_KINDS = ("matches", "dense", "selfsupervised", "masks", "occlusions")
_FLOW_NAME = re.compile(r"^(?P<object>.+)_(?P<source>\d+)_(?P<target>\d+)\.(?:oflow|sflow)$")


def read_flow_binary(path: str | Path, channels: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a DeepDeform ``.oflow``/``.sflow`` image.

    Returns:
        flow (H, W, C) float32 (0 where invalid) and valid (H, W) bool (False where any channel is -inf).
    Raises:
        FileNotFoundError for a missing file; ValueError (with the path) for a short header, a size that
        does not match the header, an unexpected channel count, or NaN/+inf values.
    """
    p = require_file(path, "DeepDeform flow image")
    raw = p.read_bytes()
    if len(raw) < 12:
        raise ValueError(f"{p}: expected a 12-byte header (uint32 width, height, channels), found {len(raw)} bytes")
    w, h, c = (int(x) for x in np.frombuffer(raw[:12], dtype="<u4"))
    if channels is not None and c != channels:
        raise ValueError(f"{p}: expected {channels} channels, found {c} in the header")
    want = 12 + 4 * w * h * c
    if w == 0 or h == 0 or c == 0 or len(raw) != want:
        raise ValueError(
            f"{p}: header says {w}x{h}x{c} float32 = {want} bytes with the header, found {len(raw)} bytes"
        )
    data = np.frombuffer(raw, dtype="<f4", offset=12).reshape(c, h, w).transpose(1, 2, 0)
    invalid = np.isneginf(data)
    bad = ~np.isfinite(data) & ~invalid
    if bad.any():
        raise ValueError(f"{p}: expected finite values or -inf (invalid), found {int(bad.sum())} NaN/+inf")
    valid = ~invalid.any(axis=-1)
    flow = np.where(valid[..., None], data, 0.0).astype(np.float32)
    return torch.from_numpy(flow), torch.from_numpy(valid)


def write_flow_binary(path: str | Path, flow: torch.Tensor, valid: torch.Tensor | None = None) -> Path:
    """Write (H, W, C) flow as a DeepDeform binary image (-inf where not ``valid``), atomically."""
    f = flow.detach().cpu().float().numpy()
    if f.ndim != 3 or 0 in f.shape:
        raise ValueError(f"flow: expected shape (H, W, C) with H, W, C >= 1 (the reader refuses an empty image), "
                         f"found {tuple(f.shape)}")
    v = np.ones(f.shape[:2], bool) if valid is None else valid.cpu().numpy().astype(bool)
    if v.shape != f.shape[:2]:
        raise ValueError(f"valid: expected shape {f.shape[:2]} to match flow, found {v.shape}")
    if not np.isfinite(f[v]).all():
        raise ValueError(f"flow: expected finite values where valid (writing {path}), found non-finite")
    if valid is not None:
        f = np.where(v[..., None], f, -np.inf).astype(np.float32)
    h, w, c = f.shape
    header = np.array([w, h, c], dtype="<u4").tobytes()
    return atomic_write_bytes(path, header + np.ascontiguousarray(f.transpose(2, 0, 1)).astype("<f4").tobytes())


def _is_frame_id(x) -> bool:
    """An integer >= 0, an integral float (JSON 12.0) or a string of digits ("000012"); not a bool, 1.5 or "1.5"."""
    if isinstance(x, bool):
        return False
    if isinstance(x, str):
        return x.isascii() and x.isdigit()
    try:
        return float(x) == int(x) >= 0
    except (TypeError, ValueError, OverflowError):
        return False


def _frame_id(x, name: str = "frame id") -> str:
    if not _is_frame_id(x):
        raise ValueError(f"{name}: expected an integer frame id >= 0, found {x!r}")
    return f"{int(x):06d}"


def find_object_ids(seq_dir: str | Path, source_id, target_id) -> list[str]:
    """Object ids with an optical-flow image for the pair in ``<seq>/optical_flow``."""
    d = Path(seq_dir) / "optical_flow"
    s, t = _frame_id(source_id, "source_id"), _frame_id(target_id, "target_id")
    return sorted(m["object"] for f in d.glob(f"*_{s}_{t}.oflow") if (m := _FLOW_NAME.match(f.name)))


def load_deepdeform_pair(
    seq_dir: str | Path,
    source_id: int | str,
    target_id: int | str,
    object_id: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> RGBDPair:
    """Load one DeepDeform frame pair with its flow images (when present) and source mask.

    Args:
        seq_dir: ``<root>/<split>/<seq>`` folder.
        source_id, target_id: frame numbers (``0`` or ``"000000"``).
        object_id: object name in the flow/mask file names (e.g. ``"shirt"``); found automatically when
            the pair has exactly one.
        dtype: floating dtype.

    Returns:
        :class:`RGBDPair` with colours (3, H, W), depths (H, W) metres (0 = invalid), intrinsics (4,),
        ``optical_flow`` (H, W, 2) px / ``scene_flow`` (H, W, 3) m with ``flow_valid`` when the flow files
        exist (None otherwise), and ``source_mask`` when ``mask/<src>_<object>.png`` (or ``<src>.png``)
        exists. Raises FileNotFoundError naming any missing file, ValueError for bad contents.
    """
    seq = Path(seq_dir)
    if not seq.is_dir():
        raise FileNotFoundError(f"{seq}: DeepDeform sequence folder not found")
    s, t = _frame_id(source_id, "source_id"), _frame_id(target_id, "target_id")
    if object_id is None:
        objs = find_object_ids(seq, s, t)
        if len(objs) > 1:
            raise ValueError(f"{seq}: several objects have flow for {s}->{t} ({objs}); pass object_id")
        object_id = objs[0] if objs else None
    src_c, tgt_c = read_color(seq / "color" / f"{s}.jpg", dtype), read_color(seq / "color" / f"{t}.jpg", dtype)
    src_d, tgt_d = read_depth_png(seq / "depth" / f"{s}.png", dtype=dtype), read_depth_png(
        seq / "depth" / f"{t}.png", dtype=dtype
    )
    H, W = src_d.shape
    for name, img in (("source colour", src_c), ("target colour", tgt_c), ("target depth", tgt_d)):
        if tuple(img.shape[-2:]) != (H, W):
            raise ValueError(f"{seq}: {name} has size {tuple(img.shape[-2:])}, source depth has {(H, W)}")
    intr = read_intrinsics_txt(seq / "intrinsics.txt", dtype)
    pair = RGBDPair(src_c, tgt_c, src_d, tgt_d, intr, name=f"{seq.name}:{object_id or ''}:{s}->{t}")
    if object_id is not None:
        of = seq / "optical_flow" / f"{object_id}_{s}_{t}.oflow"
        sf = seq / "scene_flow" / f"{object_id}_{s}_{t}.sflow"
        if of.exists():
            flow, v1 = read_flow_binary(of, channels=2)
            if tuple(flow.shape[:2]) != (H, W):
                raise ValueError(f"{of}: flow size {tuple(flow.shape[:2])} differs from the frames {(H, W)}")
            pair.optical_flow, pair.flow_valid = flow.to(dtype), v1
        if sf.exists():
            sflow, v2 = read_flow_binary(sf, channels=3)
            if tuple(sflow.shape[:2]) != (H, W):
                raise ValueError(f"{sf}: scene flow size {tuple(sflow.shape[:2])} differs from the frames {(H, W)}")
            pair.scene_flow = sflow.to(dtype)
            pair.flow_valid = v2 if pair.flow_valid is None else pair.flow_valid & v2
        for mp in (seq / "mask" / f"{s}_{object_id}.png", seq / "mask" / f"{s}.png"):
            if mp.exists():
                pair.source_mask = read_mask(mp)
                break
        for mp in (seq / "mask" / f"{t}_{object_id}.png", seq / "mask" / f"{t}.png"):
            if mp.exists():
                pair.target_mask = read_mask(mp)
                break
    return pair


@dataclass
class DeepDeformLabel:
    """One record of a DeepDeform JSON label file.

    Attributes:
        kind: ``matches``, ``dense``, ``selfsupervised``, ``masks`` or ``occlusions``.
        seq_id, object_id: sequence folder and object name.
        source_id, target_id: frame ids (``frame_id`` for masks, target_id None).
        paths: resolved absolute paths of the files the record names (``source_color``, ...).
        source_pixels, target_pixels: (N, 2) float (x = column, y = row) for matches; source_pixels for
            occlusions; None otherwise.
    """

    kind: str
    seq_id: str
    object_id: str | None
    source_id: str
    target_id: str | None
    paths: dict[str, Path] = field(default_factory=dict)
    source_pixels: torch.Tensor | None = None
    target_pixels: torch.Tensor | None = None


def _pixels(path: Path, i: int, items, keys: tuple[str, ...]) -> torch.Tensor:
    out = np.zeros((len(items), len(keys)), dtype=np.float32)
    for k, it in enumerate(items):
        try:
            out[k] = [float(it[key]) for key in keys]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}: record {i}: expected entries with keys {keys}, found {it!r}") from None
    if not np.isfinite(out).all():
        raise ValueError(f"{path}: record {i}: expected finite pixel coordinates, found non-finite")
    return torch.from_numpy(out)


def _check_record_types(path: Path, i: int, r: dict, kind: str) -> None:
    """The fields a ``kind`` record needs have usable types (ValueError naming the file, record and key)."""
    if isinstance(r["seq_id"], bool) or not isinstance(r["seq_id"], (str, int)):
        raise ValueError(f"{path}: record {i}: expected a sequence name for 'seq_id', found {r['seq_id']!r}")
    for key in ("frame_id",) if kind == "masks" else ("source_id", "target_id"):
        if not _is_frame_id(r[key]):  # 1.5 or True must not be read as frame 1
            raise ValueError(f"{path}: record {i}: expected an integer frame id for {key!r} (>= 0, not a fraction "
                             f"or a bool), found {r[key]!r}")
    if kind in ("matches", "occlusions") and not isinstance(r[kind], list):
        raise ValueError(f"{path}: record {i}: expected {kind!r} to be a list, found {type(r[kind]).__name__}")
    if kind in ("dense", "selfsupervised") and not isinstance(r["optical_flow"], str):
        raise ValueError(f"{path}: record {i}: expected a file path (string) for 'optical_flow', "
                         f"found {r['optical_flow']!r}")


def load_deepdeform_labels(root: str | Path, split: str = "train", kind: str = "matches") -> list[DeepDeformLabel]:
    """Parse ``<root>/<split>_<kind>.json`` (see the module docstring for the record layout)."""
    if kind not in LABEL_KINDS:
        raise ValueError(f"kind: expected one of {LABEL_KINDS}, found {kind!r}")
    path = require_file(Path(root) / f"{split}_{kind}.json", f"DeepDeform {kind} label file")
    try:
        records = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a JSON list of records, found {type(records).__name__}")
    out = []
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise ValueError(f"{path}: record {i}: expected an object, found {type(r).__name__}")
        need = ["seq_id", "frame_id"] if kind == "masks" else ["seq_id", "source_id", "target_id"]
        need += {"matches": ["matches"], "occlusions": ["occlusions"], "dense": ["optical_flow"],
                 "selfsupervised": ["optical_flow"], "masks": []}[kind]  # fmt: skip
        missing = [k for k in need if k not in r]
        if missing:
            raise ValueError(f"{path}: record {i}: missing keys {missing} (has {sorted(r)})")
        _check_record_types(path, i, r, kind)
        paths = {
            k: Path(root) / v
            for k, v in r.items()
            if isinstance(v, str) and k in ("source_color", "source_depth", "target_color", "target_depth",
                                            "optical_flow", "scene_flow", "mask", "color", "depth")
        }  # fmt: skip
        lab = DeepDeformLabel(
            kind=kind,
            seq_id=str(r["seq_id"]),
            object_id=None if r.get("object_id") is None else str(r["object_id"]),
            source_id=_frame_id(r["frame_id"] if kind == "masks" else r["source_id"]),
            target_id=None if kind == "masks" else _frame_id(r["target_id"]),
            paths=paths,
        )
        if kind == "matches":
            px = _pixels(path, i, r["matches"], ("source_x", "source_y", "target_x", "target_y"))
            lab.source_pixels, lab.target_pixels = px[:, :2], px[:, 2:]
        elif kind == "occlusions":
            lab.source_pixels = _pixels(path, i, r["occlusions"], ("source_x", "source_y"))
        out.append(lab)
    return out


class DeepDeformPairs(torch.utils.data.Dataset):
    """torch Dataset over the flow-annotated frame pairs of ``<root>/<split>/*/optical_flow/*.oflow``.

    Item: a dict with the :class:`RGBDPair` fields as tensors (``None`` fields dropped) plus ``name``.
    """

    def __init__(self, root: str | Path, split: str = "train", dtype: torch.dtype = torch.float32):
        base = Path(root) / split
        if not base.is_dir():
            raise FileNotFoundError(f"{base}: DeepDeform split folder not found")
        self.dtype = dtype
        self.items: list[tuple[Path, str, str, str]] = []
        for f in sorted(base.glob("*/optical_flow/*.oflow")):
            m = _FLOW_NAME.match(f.name)
            if m:
                self.items.append((f.parent.parent, m["source"], m["target"], m["object"]))
        if not self.items:
            raise FileNotFoundError(f"{base}: no */optical_flow/<object>_<src>_<tgt>.oflow files found")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        seq, s, t, obj = self.items[i]
        pair = load_deepdeform_pair(seq, s, t, obj, dtype=self.dtype)
        return {k: v for k, v in vars(pair).items() if v is not None}


def save_deepdeform_pair(
    pair: RGBDPair, seq_dir: str | Path, source_id: int = 0, target_id: int = 1, object_id: str = "object"
) -> Path:
    """Write a pair in the DeepDeform layout (colour jpg, depth mm PNG, mask, .oflow/.sflow, intrinsics).

    Used to turn synthetic pairs into DeepDeform-format samples (and by the tests as fixtures). Flow
    images get -inf where ``flow_valid`` is False. Returns the sequence folder.
    """
    from nrsfm_kit.data.imageio import write_color, write_depth_png, write_mask
    from nrsfm_kit.utils.io import atomic_write_text

    seq = Path(seq_dir)
    s, t = _frame_id(source_id, "source_id"), _frame_id(target_id, "target_id")
    write_color(seq / "color" / f"{s}.jpg", pair.source_color)
    write_color(seq / "color" / f"{t}.jpg", pair.target_color)
    write_depth_png(seq / "depth" / f"{s}.png", pair.source_depth)
    write_depth_png(seq / "depth" / f"{t}.png", pair.target_depth)
    if pair.source_mask is not None:
        write_mask(seq / "mask" / f"{s}_{object_id}.png", pair.source_mask)
    valid = pair.flow_valid
    if pair.optical_flow is not None:
        write_flow_binary(seq / "optical_flow" / f"{object_id}_{s}_{t}.oflow", pair.optical_flow, valid)
    if pair.scene_flow is not None:
        write_flow_binary(seq / "scene_flow" / f"{object_id}_{s}_{t}.sflow", pair.scene_flow, valid)
    fx, fy, cx, cy = (float(v) for v in pair.intrinsics)
    K = np.array([[fx, 0, cx, 0], [0, fy, cy, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    atomic_write_text(seq / "intrinsics.txt", "\n".join(" ".join(f"{v:.18e}" for v in row) for row in K) + "\n")
    return seq
