"""Object keypoints in the C3DPO JSON layout (PASCAL3D+, Human3.6M, UP-3D, CUB as prepared by C3DPO).

Layout (facts from github.com/facebookresearch/c3dpo_nrsfm, ``dataset/keypoints_dataset.py``): either a
JSON list of records or ``{"dataset": name, "data": [records]}``; each record has

* ``kp_loc``: 2 x P keypoint image coordinates, ``kp_vis``: P visibility flags (1/0) - required;
* ``kp_loc_3d``: 3 x P ground-truth 3D keypoints in camera coordinates - optional;
* ``class_mask``: P flags of the keypoints that exist for the record's class (PASCAL3D+ stacks the
  keypoints of all 12 classes) - optional; ``kp_defined`` likewise;
* ``p3d_info.bbox``: [x, y, w, h] object box; keypoints more than 10 % outside it are made invisible
  (as C3DPO does) - optional; ``image_path``/``file_name`` - optional.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from nrsfm_kit.data.imageio import require_file
from nrsfm_kit.data.types import NRSfMSequence


def _array(path: Path, i: int, rec: dict, key: str, rows: int | None) -> np.ndarray:
    try:
        a = np.asarray(rec[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: record {i}: {key}: expected a numeric array") from None
    if rows is not None and (a.ndim != 2 or a.shape[0] != rows):
        raise ValueError(f"{path}: record {i}: {key}: expected shape ({rows}, P), found {a.shape}")
    return a


def load_c3dpo_keypoints(
    path: str | Path,
    class_mask: list[int] | None = None,
    dtype: torch.dtype = torch.float32,
) -> NRSfMSequence:
    """Read a C3DPO keypoint JSON file as an :class:`NRSfMSequence` (one "frame" per annotated image).

    Args:
        path: the JSON file.
        class_mask: keep only the records whose ``class_mask`` equals this list and only the keypoints it
            flags (e.g. the 12 car keypoints of PASCAL3D+); default: every record and keypoint.
    Returns:
        W (F, P, 2) image coordinates (0 where invisible), visibility (F, P), S (F, P, 3) when every kept
        record has ``kp_loc_3d`` (camera frame), else None. No centring (see ``center_sequence``).
    """
    p = require_file(path, "C3DPO keypoint JSON file")
    try:
        db = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}: not valid JSON ({exc})") from None
    if isinstance(db, dict):
        if "data" not in db:
            raise ValueError(f"{p}: expected a list of records or an object with 'data', found keys {sorted(db)}")
        db = db["data"]
    if not isinstance(db, list) or not db:
        raise ValueError(f"{p}: expected a non-empty list of keypoint records")
    Ws, vis, Ss = [], [], []
    keep_pts = None if class_mask is None else np.asarray(class_mask, dtype=bool)
    P = None
    for i, rec in enumerate(db):
        if not isinstance(rec, dict) or "kp_loc" not in rec or "kp_vis" not in rec:
            raise ValueError(f"{p}: record {i}: expected keys 'kp_loc' and 'kp_vis'")
        if class_mask is not None:
            cm = rec.get("class_mask")
            if cm is None or len(cm) != len(class_mask) or not np.array_equal(np.asarray(cm, bool), keep_pts):
                continue
        kp = _array(p, i, rec, "kp_loc", 2)
        v = np.asarray(rec["kp_vis"], dtype=np.float64).reshape(-1)
        if P is None:
            P = kp.shape[1]
        if kp.shape[1] != P or v.size != P:
            raise ValueError(f"{p}: record {i}: expected {P} keypoints, found kp_loc {kp.shape}, kp_vis {v.size}")
        v = v > 0.5
        if "kp_defined" in rec:
            v &= np.asarray(rec["kp_defined"], dtype=np.float64).reshape(-1) > 0.5
        info = rec.get("p3d_info")
        if isinstance(info, dict) and "bbox" in info:
            bx, by, bw, bh = (float(x) for x in info["bbox"])
            ctx = 0.1
            inside = (kp[0] >= bx - ctx * bw) & (kp[0] <= bx + bw * (1 + ctx))
            inside &= (kp[1] >= by - ctx * bh) & (kp[1] <= by + bh * (1 + ctx))
            v &= inside
        if not np.isfinite(kp[:, v]).all():
            raise ValueError(f"{p}: record {i}: kp_loc: expected finite visible keypoints, found non-finite")
        Ws.append(np.where(v[None], np.nan_to_num(kp), 0.0).T)
        vis.append(v)
        if "kp_loc_3d" in rec:
            s = _array(p, i, rec, "kp_loc_3d", 3)
            if s.shape[1] != P or not np.isfinite(s).all():
                raise ValueError(f"{p}: record {i}: kp_loc_3d: expected finite (3, {P}), found {s.shape}")
            Ss.append(s.T)
    if not Ws:
        raise ValueError(f"{p}: no record matches class_mask={class_mask}")
    W, V = np.stack(Ws), np.stack(vis)
    S = np.stack(Ss) if len(Ss) == len(Ws) else None
    if keep_pts is not None:
        W, V = W[:, keep_pts], V[:, keep_pts]
        S = None if S is None else S[:, keep_pts]
    t = lambda a: None if a is None else torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)
    return NRSfMSequence(W=t(W), visibility=torch.as_tensor(V), S=t(S), name=p.stem)


def save_c3dpo_keypoints(path: str | Path, seq: NRSfMSequence, dataset: str = "synthetic") -> Path:
    """Write an :class:`NRSfMSequence` in the C3DPO JSON layout (``kp_loc``, ``kp_vis``, ``kp_loc_3d``)."""
    from nrsfm_kit.utils.io import atomic_write_json

    recs = []
    for f in range(seq.num_frames):
        r = {"kp_loc": seq.W[f].T.tolist(), "kp_vis": seq.visibility[f].float().tolist()}
        if seq.S is not None:
            r["kp_loc_3d"] = seq.S[f].T.tolist()
        recs.append(r)
    return atomic_write_json(path, {"dataset": dataset, "data": recs}, indent=None)
