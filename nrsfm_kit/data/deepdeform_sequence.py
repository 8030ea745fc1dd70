"""Whole DeepDeform (Bozic et al., CVPR 2020) sequences: loading, and synthetic sequences in the same layout.

Layout (see :mod:`nrsfm_kit.data.deepdeform` for the file formats)::

    <root>/<split>/<seq>/color/%06d.jpg            8-bit RGB
    <root>/<split>/<seq>/depth/%06d.png            uint16 millimetres, 0 = invalid
    <root>/<split>/<seq>/mask/%06d_<object>.png    object mask, only for some frames in the real data
    <root>/<split>/<seq>/intrinsics.txt            4x4 matrix
    <root>/<split>_matches.json                    sparse annotated matches between frame pairs

:func:`load_deepdeform_sequence` reads the frames, the masks that exist and the annotated matches of one
sequence into a :class:`DeepDeformSequence`. :func:`synthetic_sequence` renders a deforming RGB-D sequence with
exact ground truth (:func:`nrsfm_kit.data.rgbd.synthetic_rgbd_sequence`) as the same structure, with sparse
ground-truth matches from frame f to f + ``pair_stride``; :func:`export_synthetic_sequence` writes it in the
DeepDeform layout, so that a method can be run on real and synthetic data through one loader.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from nrsfm_kit.data._args import check_float_dtype, check_int
from nrsfm_kit.data.deepdeform import _frame_id, _pixels
from nrsfm_kit.data.imageio import read_color, read_depth_png, read_intrinsics_txt, read_mask, require_file
from nrsfm_kit.data.types import RGBDSequence
from nrsfm_kit.utils.checks import check_positive

if TYPE_CHECKING:
    from nrsfm_kit.data.rgbd import SyntheticRGBDSequence

__all__ = ["DeepDeformSequence", "SequenceMatches", "export_synthetic_sequence", "load_deepdeform_sequence",
           "synthetic_sequence"]  # fmt: skip

SEGMENT_LENGTH = 100  # frames: DeepDeform's evaluation segments; synthetic matches never cross a segment border
_COLOR = re.compile(r"^(\d{6})\.jpg$")
_DEPTH = re.compile(r"^(\d{6})\.png$")
_MASK = re.compile(r"^(\d{6})_(.+)\.png$")


class SequenceMatches(NamedTuple):
    """Annotated sparse matches of one frame pair.

    Attributes:
        source_frame, target_frame: DeepDeform frame ids (file numbers, not positions in the loaded sequence;
            :meth:`DeepDeformSequence.index_of` converts).
        source_px, target_px: (K, 2) float pixels, x = column, y = row.
    """

    source_frame: int
    target_frame: int
    source_px: torch.Tensor
    target_px: torch.Tensor


@dataclass
class DeepDeformSequence(RGBDSequence):
    """An :class:`RGBDSequence` in DeepDeform form: frame ids, per-frame mask availability, annotated matches.

    Attributes (besides those of :class:`RGBDSequence`: colors (T, 3, H, W) in [0, 1], depths (T, H, W) metres
    with 0 = invalid, intrinsics (4,) fx, fy, cx, cy, masks (T, H, W) bool or None):
        frame_ids: the T DeepDeform frame ids, in the order of the tensors.
        object_id: object name of the masks / matches (``"cloth"``, ``"shirt"``...), or None.
        matches: annotated sparse matches between loaded frames (:class:`SequenceMatches`).
        mask_available: (T,) bool, True where frame t has a mask (``masks[t]`` is all False elsewhere).
        seq_id: sequence folder name. split: split folder name (``train``/``val``/``test``) or None.
        path: the sequence folder it was loaded from (None in memory).
        source: the :class:`~nrsfm_kit.data.rgbd.SyntheticRGBDSequence` of a synthetic sequence (exact ground
            truth: ``source.pair(i, j)``, ``source.node_translations``), None for loaded data.
    """

    frame_ids: list[int] = field(default_factory=list)
    object_id: str | None = None
    matches: list[SequenceMatches] = field(default_factory=list)
    mask_available: torch.Tensor | None = None
    seq_id: str = ""
    split: str | None = None
    path: Path | None = None
    source: SyntheticRGBDSequence | None = field(default=None, repr=False)

    def index_of(self, frame_id: int) -> int:
        """Position in the tensors of DeepDeform frame ``frame_id``; ValueError when it is not loaded."""
        try:
            return self.frame_ids.index(int(frame_id))
        except ValueError:
            raise ValueError(f"frame_id: expected one of the loaded frames {self.frame_ids}, found {frame_id!r}") from None

    def ground_truth_mesh(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact surface of the object at frame position ``index`` (synthetic sequences only).

        Returns:
            vertices (V, 3) in that frame's camera frame, metres (dtype of ``colors``), and faces (F, 3) int64.
            The vertex order is the same in every frame (the mesh deforms with fixed topology), so vertex i of
            two frames is the same material point.
        """
        if self.source is None or getattr(self.source, "scene", None) is None:
            raise ValueError("ground_truth_mesh: only synthetic sequences (source is not None) have a ground-truth mesh")
        T = self.num_frames
        if not isinstance(index, (int, np.integer)) or not 0 <= int(index) < T:
            raise ValueError(f"index: expected a frame position in [0, {T}), found {index!r}")
        from nrsfm_kit.data.render import apply_pose

        src = self.source
        k = src.object_names.index(self.object_id)
        t = src.times[int(index)]
        v = src.scene.vertices(t)[k]
        T_cw = np.asarray(src.scene.pose_at(t), dtype=np.float64)
        verts = torch.from_numpy(apply_pose(T_cw, v)).to(self.colors.dtype)
        return verts, torch.from_numpy(np.asarray(src.scene.objects[k].faces, dtype=np.int64))


# ==================================================================================================
# loading


def _ids(folder: Path, pattern: re.Pattern) -> set[int]:
    if not folder.is_dir():
        return set()
    return {int(m[1]) for f in folder.iterdir() if (m := pattern.match(f.name))}


def _select_frames(seq: Path, frames, color_ids: set[int], depth_ids: set[int]) -> list[int]:
    if frames is None or isinstance(frames, slice):
        ids = sorted(color_ids | depth_ids)
        if frames is not None:
            ids = ids[frames]
    else:
        if isinstance(frames, (str, bytes)) or not hasattr(frames, "__iter__"):
            raise ValueError(f"frames: expected None, a slice or a list of frame ids, found {frames!r}")
        ids = [check_int("frames", f, 0) for f in frames]
        if len(set(ids)) != len(ids):
            raise ValueError(f"frames: expected distinct frame ids, found {ids}")
    if not ids:
        raise ValueError(f"frames: expected at least one frame of {seq}, found none selected by {frames!r}")
    missing = []
    for i in ids:
        c, d = i in color_ids, i in depth_ids
        if not (c and d):
            what = [f"no color/{i:06d}.jpg"] * (not c) + [f"no depth/{i:06d}.png"] * (not d)
            missing.append(f"frame {i} ({', '.join(what)})")
    if missing:
        raise FileNotFoundError(f"{seq}: missing frames: {'; '.join(missing[:10])}"
                                + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""))  # fmt: skip
    return ids


def _find_labels(seq: Path, labels) -> Path | None:
    if labels is not None:
        return require_file(labels, "DeepDeform matches label file")
    for cand in (seq / "matches.json", seq.parent.parent / f"{seq.parent.name}_matches.json"):
        if cand.is_file():
            return cand
    return None


def _read_match_records(path: Path) -> list[dict]:
    try:
        records = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a JSON list of records, found {type(records).__name__}")
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise ValueError(f"{path}: record {i}: expected an object, found {type(r).__name__}")
        missing = [k for k in ("seq_id", "source_id", "target_id", "matches") if k not in r]
        if missing:
            raise ValueError(f"{path}: record {i}: missing keys {missing} (has {sorted(r)})")
        if not isinstance(r["matches"], list):
            raise ValueError(f"{path}: record {i}: expected 'matches' to be a list, found {type(r['matches']).__name__}")
        for key in ("source_id", "target_id"):
            try:
                int(r[key])
            except (TypeError, ValueError):
                raise ValueError(f"{path}: record {i}: expected an integer frame id for {key!r}, found {r[key]!r}") from None
    return records


def load_deepdeform_sequence(
    seq_dir: str | Path,
    *,
    object_id: str | None = None,
    frames: slice | list[int] | None = None,
    labels: str | Path | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
) -> DeepDeformSequence:
    """Load a DeepDeform sequence folder (``<root>/<split>/<seq>``) with its masks and annotated matches.

    Args:
        seq_dir: the sequence folder.
        object_id: object name of the mask files ``mask/%06d_<object>.png`` and of the label records; found
            automatically when the masks (or else the labels of this sequence) name exactly one object.
        frames: None (all frames), a slice of the sorted frame ids present (equal to frame ids when they are
            numbered from 0 without gaps), or a list of frame ids (kept in the given order).
        labels: a JSON matches file; default ``<seq>/matches.json``, then ``<root>/<split>_matches.json``
            (``<seq>/../../<split>_matches.json`` with split the parent folder's name); no matches when neither
            exists. Records are kept when their ``seq_id`` is this folder's name, their object is ``object_id``
            (or unnamed) and both frames are loaded.
        dtype: floating dtype of colours, depths, intrinsics and match pixels.
        progress: tqdm bar over frames.

    Returns:
        :class:`DeepDeformSequence`. ``masks`` is None when no frame has a mask, else (T, H, W) with all-False
        frames where ``mask_available`` is False (a frame's mask is ``mask/%06d_<object>.png``, or
        ``mask/%06d.png``).

    Raises:
        FileNotFoundError naming the path for a missing folder, no frames, missing frames (a colour image
        without its depth or vice versa, naming the frame id), a missing intrinsics or labels file;
        ValueError naming the file for a colour/depth/mask size mismatch, unreadable intrinsics or labels,
        several objects without ``object_id``, and an empty mask in the first frame (fusion needs the object
        in frame 0).
    """
    check_float_dtype(dtype)
    seq = Path(seq_dir)
    if not seq.is_dir():
        raise FileNotFoundError(f"{seq}: DeepDeform sequence folder not found")
    color_ids, depth_ids = _ids(seq / "color", _COLOR), _ids(seq / "depth", _DEPTH)
    if not color_ids and not depth_ids:
        raise FileNotFoundError(f"{seq}: no frames (expected color/%06d.jpg with depth/%06d.png)")
    ids = _select_frames(seq, frames, color_ids, depth_ids)
    intr = read_intrinsics_txt(seq / "intrinsics.txt", dtype)

    colors, depths = [], []
    size = None
    for i in tqdm(ids, desc="DeepDeform frames", disable=not progress, leave=False):
        cp, dp = seq / "color" / f"{i:06d}.jpg", seq / "depth" / f"{i:06d}.png"
        c, d = read_color(cp, dtype), read_depth_png(dp, dtype=dtype)
        if tuple(d.shape) != tuple(c.shape[-2:]):
            raise ValueError(f"{dp}: depth size {tuple(d.shape)} differs from the colour image {cp.name} "
                             f"{tuple(c.shape[-2:])}")  # fmt: skip
        if size is None:
            size = tuple(d.shape)
        elif tuple(d.shape) != size:
            raise ValueError(f"{dp}: frame size {tuple(d.shape)} differs from the first frame's {size}")
        colors.append(c)
        depths.append(d)
    H, W = size

    # object id: from the mask files, else from the labels of this sequence
    mask_objects = sorted({m[2] for f in (seq / "mask").iterdir() if (m := _MASK.match(f.name))}) \
        if (seq / "mask").is_dir() else []  # fmt: skip
    label_path = _find_labels(seq, labels)
    records = [r for r in _read_match_records(label_path) if str(r["seq_id"]) == seq.name] if label_path else []
    if object_id is None:
        cands = mask_objects or sorted({str(r["object_id"]) for r in records if r.get("object_id") is not None})
        if len(cands) > 1:
            raise ValueError(f"{seq}: several objects ({cands}); pass object_id")
        object_id = cands[0] if cands else None

    masks = torch.zeros(len(ids), H, W, dtype=torch.bool)
    avail = torch.zeros(len(ids), dtype=torch.bool)
    for t, i in enumerate(ids):
        names = ([f"{i:06d}_{object_id}.png"] if object_id is not None else []) + [f"{i:06d}.png"]
        for name in names:
            mp = seq / "mask" / name
            if mp.is_file():
                m = read_mask(mp)
                if tuple(m.shape) != (H, W):
                    raise ValueError(f"{mp}: mask size {tuple(m.shape)} differs from the frames {(H, W)}")
                if t == 0 and not m.any():
                    raise ValueError(f"{mp}: the first frame's mask is empty (fusion needs the object in frame 0)")
                masks[t], avail[t] = m, True
                break

    loaded = set(ids)
    matches = []
    for k, r in enumerate(records):
        if object_id is not None and r.get("object_id") is not None and str(r["object_id"]) != object_id:
            continue
        s, g = int(r["source_id"]), int(r["target_id"])
        if s not in loaded or g not in loaded:
            continue
        px = _pixels(label_path, k, r["matches"], ("source_x", "source_y", "target_x", "target_y")).to(dtype)
        matches.append(SequenceMatches(s, g, px[:, :2].clone(), px[:, 2:].clone()))

    return DeepDeformSequence(
        colors=torch.stack(colors),
        depths=torch.stack(depths),
        intrinsics=intr,
        masks=masks if bool(avail.any()) else None,
        name=f"{seq.parent.name}/{seq.name}",
        frame_ids=list(ids),
        object_id=object_id,
        matches=matches,
        mask_available=avail,
        seq_id=seq.name,
        split=seq.parent.name,
        path=seq,
    )


# ==================================================================================================
# synthetic sequences


def _sample_matches(src, i: int, j: int, k_obj: int, count: int, rng: np.random.Generator):
    """Up to ``count`` ground-truth matches of object ``k_obj`` from frame i to j: source pixel centres on the
    object whose material point is visible in frame j and lands on the object there."""
    pair = src.pair(i, j)
    H, W = pair.source_depth.shape
    flow = pair.optical_flow.double().numpy()
    ok = (src._frames[i].object_ids == k_obj) & pair.visibility.numpy() & pair.flow_valid.numpy()
    v, u = np.mgrid[0:H, 0:W]
    tu, tv = u + flow[..., 0], v + flow[..., 1]
    ru, rv = np.floor(tu + 0.5).astype(np.int64), np.floor(tv + 0.5).astype(np.int64)
    inside = (ru >= 0) & (ru < W) & (rv >= 0) & (rv < H)
    tgt_obj = np.zeros_like(ok)
    tgt_obj[inside] = src._frames[j].object_ids[rv[inside], ru[inside]] == k_obj
    cand = np.flatnonzero(ok & inside & tgt_obj)
    pick = np.sort(rng.choice(cand, size=min(count, cand.size), replace=False)) if cand.size else cand
    sp = np.stack([u.ravel()[pick], v.ravel()[pick]], 1).astype(np.float64)
    tp = np.stack([tu.ravel()[pick], tv.ravel()[pick]], 1)
    return np.round(sp, 4), np.round(tp, 4)  # 1e-4 px: what the JSON file stores


def synthetic_sequence(
    *,
    split: str = "train",
    seq_id: str = "synth000",
    num_frames: int = 40,
    height: int = 240,
    width: int = 320,
    object_name: str = "cloth",
    speed: float = 1.0,
    matches_per_pair: int = 30,
    pair_stride: int = 10,
    seed: int = 0,
    kinect_noise: bool = False,
    fps: float = 30.0,
    objects: tuple[str, ...] | None = None,
    dtype: torch.dtype = torch.float32,
) -> DeepDeformSequence:
    """A synthetic deforming RGB-D sequence with ground truth, as a :class:`DeepDeformSequence` in memory.

    Renders :func:`nrsfm_kit.data.rgbd.synthetic_rgbd_sequence` (static camera, textured wall and floor) and
    keeps the object ``object_name`` as the sequence's object: its per-frame masks (the pixels whose ray hits
    it; ``mask_available`` all True) and sparse matches from frame f to f + ``pair_stride`` for f = 0,
    ``pair_stride``, 2 ``pair_stride``... when both lie in the same 100-frame segment. A pair's matches are up
    to ``matches_per_pair`` source pixel centres on the object, drawn without replacement among those whose
    material point is visible in the target and lands on the object there, with the exact target position
    (source + ground-truth optical flow, rounded to 1e-4 px as in the exported file).

    Args:
        split, seq_id: names of the split and sequence folders (``name`` = ``split/seq_id``).
        num_frames, height, width: T >= 2 frames of H x W pixels (60 degree horizontal field of view).
        object_name: ``"cloth"``, ``"cylinder"`` or ``"box"``.
        speed: scale of the objects' motion laws (1 = the generator's default).
        matches_per_pair: K >= 1 matches per pair (fewer when fewer pixels qualify).
        pair_stride: frames between the source and the target of a pair (>= 1).
        seed: textures, phases, noise and match sampling.
        kinect_noise: Kinect-like depth noise and holes (ground truth stays exact).
        fps: frame rate; frame t is rendered at t / fps seconds (DeepDeform was captured at 30 Hz).
        objects: objects rendered (default ``(object_name,)``; must contain ``object_name``); others may
            occlude it.
        dtype: floating dtype.

    Returns:
        :class:`DeepDeformSequence` with exact float depths, ``frame_ids`` 0..T-1, and ``source`` the
        :class:`~nrsfm_kit.data.rgbd.SyntheticRGBDSequence` (exact ground truth; see also
        :meth:`DeepDeformSequence.ground_truth_mesh`).
    """
    from nrsfm_kit.data.rgbd import synthetic_rgbd_sequence
    from nrsfm_kit.data.scenes import OBJECTS

    if object_name not in OBJECTS:
        raise ValueError(f"object_name: expected one of {OBJECTS}, found {object_name!r}")
    objs = (object_name,) if objects is None else tuple(objects)
    if object_name not in objs:
        raise ValueError(f"objects: expected to contain object_name {object_name!r}, found {objs!r}")
    for name, val in (("split", split), ("seq_id", seq_id)):
        if not isinstance(val, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", val):
            raise ValueError(f"{name}: expected a folder name of letters, digits, '_', '-', '.', found {val!r}")
    check_int("matches_per_pair", matches_per_pair, 1)
    check_int("pair_stride", pair_stride, 1)
    check_positive("speed", speed)
    src = synthetic_rgbd_sequence(num_frames, height, width, objects=objs, fps=fps, kinect_noise=kinect_noise,
                                  seed=seed, dtype=dtype, speed=speed)  # fmt: skip
    k_obj = src.object_names.index(object_name)
    T = src.num_frames
    masks = torch.from_numpy(np.stack([f.object_ids == k_obj for f in src._frames]))
    if not masks[0].any():
        raise ValueError(f"object_name: {object_name!r} is not visible in frame 0 (fusion needs the object there)")
    matches = []
    for i in range(0, T - pair_stride, pair_stride):
        j = i + pair_stride
        if i // SEGMENT_LENGTH != j // SEGMENT_LENGTH:
            continue
        rng = np.random.default_rng([int(seed), 17, i, j])
        sp, tp = _sample_matches(src, i, j, k_obj, int(matches_per_pair), rng)
        matches.append(SequenceMatches(i, j, torch.from_numpy(sp).to(dtype), torch.from_numpy(tp).to(dtype)))
    return DeepDeformSequence(
        colors=src.colors,
        depths=src.depths,
        intrinsics=src.intrinsics,
        masks=masks,
        name=f"{split}/{seq_id}",
        frame_ids=list(range(T)),
        object_id=object_name,
        matches=matches,
        mask_available=torch.ones(T, dtype=torch.bool),
        seq_id=seq_id,
        split=split,
        source=src,
    )


def _records(seq: DeepDeformSequence) -> list[dict]:
    base = f"{seq.split}/{seq.seq_id}"
    out = []
    for m in seq.matches:
        s, t = _frame_id(m.source_frame), _frame_id(m.target_frame)
        sp, tp = m.source_px.double().tolist(), m.target_px.double().tolist()
        out.append({
            "seq_id": seq.seq_id, "object_id": seq.object_id, "source_id": s, "target_id": t,
            "source_color": f"{base}/color/{s}.jpg", "source_depth": f"{base}/depth/{s}.png",
            "target_color": f"{base}/color/{t}.jpg", "target_depth": f"{base}/depth/{t}.png",
            "matches": [{"source_x": round(a[0], 4), "source_y": round(a[1], 4), "target_x": round(b[0], 4),
                         "target_y": round(b[1], 4)} for a, b in zip(sp, tp)],
        })  # fmt: skip
    return out


def export_synthetic_sequence(
    out_root: str | Path,
    *,
    split: str = "train",
    seq_id: str = "synth000",
    num_frames: int = 40,
    height: int = 240,
    width: int = 320,
    object_name: str = "cloth",
    speed: float = 1.0,
    matches_per_pair: int = 30,
    pair_stride: int = 10,
    seed: int = 0,
    kinect_noise: bool = False,
    fps: float = 30.0,
    objects: tuple[str, ...] | None = None,
    overwrite: bool = False,
) -> Path:
    """Render :func:`synthetic_sequence` and write it in the DeepDeform layout under ``out_root``.

    Writes ``<out_root>/<split>/<seq_id>/{color/%06d.jpg, depth/%06d.png (mm), mask/%06d_<object>.png,
    intrinsics.txt (4x4)}`` and merges the sequence's match records into ``<out_root>/<split>_matches.json``
    (records of other sequences are kept, this sequence's are replaced). Every file is written atomically.
    The files lose a little against the in-memory sequence: JPEG colours and depth rounded to 1 mm.

    Args:
        out_root: dataset root. overwrite: allow writing into an existing non-empty sequence folder (its old
            ``color``/``depth``/``mask`` frame files are removed first); False raises FileExistsError.
        The others: see :func:`synthetic_sequence`.

    Returns:
        The sequence folder ``<out_root>/<split>/<seq_id>`` (load it with :func:`load_deepdeform_sequence`).
    """
    from nrsfm_kit.data.imageio import write_color, write_depth_png, write_mask
    from nrsfm_kit.utils.io import atomic_write_json, atomic_write_text

    root = Path(out_root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root}: out_root: expected a folder, found a file")
    seq = synthetic_sequence(split=split, seq_id=seq_id, num_frames=num_frames, height=height, width=width,
                             object_name=object_name, speed=speed, matches_per_pair=matches_per_pair,
                             pair_stride=pair_stride, seed=seed, kinect_noise=kinect_noise, fps=fps,
                             objects=objects)  # fmt: skip
    folder = root / split / seq_id
    labels = root / f"{split}_matches.json"
    old = _read_match_records(labels) if labels.is_file() else []  # invalid JSON: raise before writing anything
    if folder.is_dir() and any(folder.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{folder}: sequence folder exists and is not empty (pass overwrite=True)")
        for sub, pat in (("color", _COLOR), ("depth", _DEPTH), ("mask", _MASK)):
            if (folder / sub).is_dir():
                for f in (folder / sub).iterdir():
                    if pat.match(f.name):
                        f.unlink()
    for t, i in enumerate(seq.frame_ids):
        write_color(folder / "color" / f"{i:06d}.jpg", seq.colors[t])
        write_depth_png(folder / "depth" / f"{i:06d}.png", seq.depths[t])
        write_mask(folder / "mask" / f"{i:06d}_{object_name}.png", seq.masks[t])
    fx, fy, cx, cy = (float(v) for v in seq.intrinsics)
    K = np.array([[fx, 0, cx, 0], [0, fy, cy, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    atomic_write_text(folder / "intrinsics.txt", "\n".join(" ".join(f"{v:.18e}" for v in row) for row in K) + "\n")
    records = [r for r in old if str(r["seq_id"]) != seq_id] + _records(seq)
    records.sort(key=lambda r: (str(r["seq_id"]), int(r["source_id"]), int(r["target_id"])))
    atomic_write_json(labels, records)
    return folder
