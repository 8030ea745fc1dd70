"""NRSfM keypoint sequences: synthetic generators with exact ground truth and the classic .mat loader.

Conventions (used by every NRSfM method of the suite; points are rows):

* ``S_world`` (F, P, 3): the 3D shape of each frame in an object-centred world frame (centroid 0).
* ``R_f`` (3, 3): rotation world -> camera of frame f; the orthographic camera is its first two rows,
  ``cameras[f] = M_f = R_f[:2]`` with M_f M_f^T = I.
* ``S`` (F, P, 3) = S_world R_f^T: the shape in the CAMERA frame; its first two coordinates are the
  observations, ``W = S[..., :2] = S_world M_f^T`` (noise-free), and its third is the (relative) depth.
* ``W`` (F, P, 2) is centred per frame (the camera translation is removed), 0 where not visible.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch

from nrsfm_kit.data._args import check_float_dtype, check_int, to_tensor
from nrsfm_kit.data.skeleton import MOTIONS, cmu_skeleton, forward_kinematics, procedural_motion
from nrsfm_kit.data.types import NRSfMSequence
from nrsfm_kit.utils.checks import check_positive, check_tensor

KINDS = ("skeleton", "lowrank", "category")
CAMERAS = ("random", "smooth")

# PASCAL3D+ car keypoint names (12), in the order of the C3DPO/PASCAL3D+ annotations
CAR_KEYPOINTS = (
    "left_front_wheel", "left_back_wheel", "right_front_wheel", "right_back_wheel",
    "upper_left_windshield", "upper_right_windshield", "upper_left_rearwindow", "upper_right_rearwindow",
    "left_front_light", "right_front_light", "left_back_trunk", "right_back_trunk",
)  # fmt: skip
CAR_BONES = [(0, 1), (2, 3), (0, 2), (1, 3), (4, 5), (6, 7), (4, 6), (5, 7), (8, 9), (10, 11),
             (8, 4), (9, 5), (10, 6), (11, 7), (8, 0), (9, 2), (10, 1), (11, 3)]  # fmt: skip


# ----------------------------------------------------------------------------------------------
# cameras
# ----------------------------------------------------------------------------------------------


def _random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3, 3) rotations uniform on SO(3) (normalised Gaussian quaternions)."""
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        axis=1,
    ).reshape(n, 3, 3)  # fmt: skip


def _axis_rot(axis: int, ang: np.ndarray) -> np.ndarray:
    c, s = np.cos(ang), np.sin(ang)
    R = np.zeros((*ang.shape, 3, 3))
    i, j = [k for k in range(3) if k != axis]
    R[..., axis, axis] = 1
    R[..., i, i], R[..., i, j], R[..., j, i], R[..., j, j] = c, -s, s, c
    return R


def camera_rotations(num_frames: int, camera: str, rng: np.random.Generator) -> np.ndarray:
    """World -> camera rotations R_f (F, 3, 3) for Y-up worlds.

    ``random``: independent uniform rotations (the classic synthetic NRSfM protocol).
    ``smooth``: a hand-held-like orbit: the camera circles the subject (azimuth sweeping 0.6 to 1.2 turns
    over the sequence), looks down at a slowly oscillating elevation (10-30 degrees) with a small roll
    jitter, all smooth in time.
    """
    if camera not in CAMERAS:
        raise ValueError(f"camera: expected one of {CAMERAS}, found {camera!r}")
    F = int(num_frames)
    if camera == "random":
        return _random_rotations(F, rng)
    s = np.linspace(0.0, 1.0, F)
    az0 = rng.uniform(0, 2 * math.pi)
    turns = rng.uniform(0.6, 1.2) * rng.choice([-1.0, 1.0])
    az = az0 + 2 * math.pi * turns * s
    el = np.deg2rad(20 + 10 * np.sin(2 * math.pi * (1.5 * s + rng.uniform())))
    roll = np.deg2rad(4 * np.sin(2 * math.pi * (2.3 * s + rng.uniform())))
    # world Y up -> camera y down (image convention): flip, then elevation about x, roll about z
    flip = np.diag([1.0, -1.0, -1.0])
    return _axis_rot(2, roll) @ _axis_rot(0, -el) @ flip @ _axis_rot(1, az)


# ----------------------------------------------------------------------------------------------
# shapes
# ----------------------------------------------------------------------------------------------


def _skeleton_shapes(F: int, motion: str, rng: np.random.Generator) -> tuple[np.ndarray, list]:
    sk = cmu_skeleton()
    scale = rng.uniform(0.92, 1.08)  # actor size
    for b in sk.bones:
        b.length *= scale * rng.uniform(0.97, 1.03)
    root, vals = procedural_motion(sk, motion, F, rng)
    return forward_kinematics(sk, root, vals), sk.bone_pairs


def _lowrank_shapes(F: int, P: int, rank: int, motion: str, rng: np.random.Generator) -> np.ndarray:
    """S_f = B_0 + sum_k c_fk B_k with smooth coefficients (Bregler et al. 2000 shape basis model)."""
    # a curved surface patch as the mean shape (like a face / sheet), ~1 unit across
    u = rng.uniform(-1, 1, size=(P, 2))
    mean = np.stack([u[:, 0], u[:, 1], 0.3 * (u[:, 0] ** 2 - 0.5 * u[:, 1] ** 2)], axis=1)
    # smooth deformation bases: low-order polynomials of the patch coordinates
    feats = np.stack([u[:, 0], u[:, 1], u[:, 0] * u[:, 1], u[:, 0] ** 2, u[:, 1] ** 2, np.ones(P)], 1)
    bases = np.einsum("pf,kfd->kpd", feats, rng.standard_normal((rank, feats.shape[1], 3)))
    bases /= np.linalg.norm(bases.reshape(rank, -1), axis=1)[:, None, None] / math.sqrt(P) * 4.0
    t = np.arange(F) / 30.0
    freq = {"walking": 1.0, "waving": 1.6, "bending": 0.4}[motion]
    coef = np.stack(
        [np.sin(2 * math.pi * freq * rng.uniform(0.6, 1.4) * t + rng.uniform(0, 6.3)) for _ in range(rank)],
        axis=1,
    ) * rng.uniform(0.5, 1.0, size=rank)
    return mean[None] + np.einsum("fk,kpd->fpd", coef, bases)


def car_keypoints(length, width, height, roof, hood, wheel) -> np.ndarray:
    """(..., 12, 3) PASCAL3D+ car keypoints of a parametric car (Y up, front = +Z), metres.

    Args (each (...,) array): body length, width, total height, roof length fraction, hood length
    fraction, wheel radius.
    """
    L, Wd, H = length / 2, width / 2, height
    z_wf, z_wb = 0.65 * L, -0.65 * L
    belt = 0.55 * H
    z_ws = L - 2 * L * hood  # windshield base
    z_roof_f = z_ws - 0.25 * L
    z_roof_b = z_roof_f - 2 * L * roof
    x = lambda s: s * Wd
    pts = [
        (x(1), wheel, z_wf), (x(1), wheel, z_wb), (x(-1), wheel, z_wf), (x(-1), wheel, z_wb),
        (0.85 * x(1), H, z_roof_f), (0.85 * x(-1), H, z_roof_f),
        (0.85 * x(1), H, z_roof_b), (0.85 * x(-1), H, z_roof_b),
        (0.8 * x(1), 0.8 * belt, L), (0.8 * x(-1), 0.8 * belt, L),
        (0.8 * x(1), belt, -L), (0.8 * x(-1), belt, -L),
    ]  # fmt: skip
    return np.stack([np.stack(np.broadcast_arrays(*p), axis=-1) for p in pts], axis=-2)


def _category_shapes(F: int, rng: np.random.Generator) -> np.ndarray:
    """One rigid car instance per frame, parameters drawn around a mean car (metres)."""
    g = lambda m, s: m * (1 + s * rng.standard_normal(F))
    pts = car_keypoints(g(4.3, 0.12), g(1.8, 0.06), g(1.45, 0.12), g(0.25, 0.2), g(0.22, 0.2), g(0.32, 0.08))
    return pts


def synthetic_nrsfm(
    kind: str = "skeleton",
    num_frames: int = 200,
    num_points: int | None = None,
    motion: str = "walking",
    camera: str = "random",
    noise_ratio: float = 0.0,
    missing_ratio: float = 0.0,
    seed: int = 0,
    *,
    rank: int = 3,
    dtype: torch.dtype = torch.float32,
) -> NRSfMSequence:
    """A synthetic orthographic NRSfM sequence with exact 3D ground truth and cameras.

    Args:
        kind: ``"skeleton"`` (31-joint CMU-like skeleton, :mod:`nrsfm_kit.data.skeleton`, metres),
            ``"lowrank"`` (a surface patch deforming in a rank-``rank`` shape basis, Bregler et al. 2000),
            ``"category"`` (a different rigid car instance per frame, 12 PASCAL3D+ keypoints, metres).
        num_frames: F >= 2.
        num_points: P; must be None or 31 for ``skeleton``, None or 12 for ``category``; default 40 for
            ``lowrank``.
        motion: ``"walking"``, ``"waving"`` or ``"bending"`` (skeleton motion; for ``lowrank`` it sets
            the tempo of the deformation; ignored for ``category``).
        camera: ``"random"`` (uniform rotations per frame) or ``"smooth"`` (a smooth orbit).
        noise_ratio: Gaussian noise on W scaled so that ||noise||_F / ||W||_F = noise_ratio exactly
            (over visible entries).
        missing_ratio: fraction of (frame, point) observations marked missing (visibility False, W 0).
        seed: everything is deterministic for a seed.
        rank: shape-basis rank K for ``lowrank``.
        dtype: floating dtype of the tensors.

    Returns:
        :class:`NRSfMSequence` with W (F, P, 2), visibility (F, P), S (F, P, 3) in the camera frame,
        cameras (F, 2, 3) (world -> camera rows), S_world (F, P, 3) (object centred), bones.
        Noise-free: ``W == S[..., :2] == S_world @ cameras.mT``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, found {kind!r}")
    if motion not in MOTIONS:
        raise ValueError(f"motion: expected one of {MOTIONS}, found {motion!r}")
    if camera not in CAMERAS:
        raise ValueError(f"camera: expected one of {CAMERAS}, found {camera!r}")
    check_int("num_frames", num_frames, 2)
    check_int("seed", seed, 0)
    check_float_dtype(dtype)
    check_positive("noise_ratio", noise_ratio, strict=False)
    if not 0.0 <= float(missing_ratio) < 1.0:
        raise ValueError(f"missing_ratio: expected a value in [0, 1), found {missing_ratio!r}")
    fixed = {"skeleton": 31, "category": 12}.get(kind)
    if fixed is not None and num_points not in (None, fixed):
        raise ValueError(f"num_points: kind={kind!r} has {fixed} points, found num_points={num_points!r}")
    P = fixed if fixed is not None else (40 if num_points is None else check_int("num_points", num_points, 3))
    if kind == "lowrank" and not (check_int("rank", rank, 1) < P):
        raise ValueError(f"rank: expected 1 <= rank < num_points={P}, found {rank!r}")
    F = int(num_frames)
    rng = np.random.default_rng(seed)

    bones: list[tuple[int, int]] = []
    if kind == "skeleton":
        S_world, bones = _skeleton_shapes(F, motion, rng)
    elif kind == "lowrank":
        S_world = _lowrank_shapes(F, P, int(rank), motion, rng)
    else:
        S_world = _category_shapes(F, rng)
        bones = list(CAR_BONES)
    name = f"synthetic-{kind}" + (f"-{motion}" if kind != "category" else "") + f"-{camera}-s{seed}"
    return views_from_shapes(S_world, camera, noise_ratio, missing_ratio, rng, bones, name, dtype)


def views_from_shapes(
    S_world: np.ndarray,
    camera: str = "random",
    noise_ratio: float = 0.0,
    missing_ratio: float = 0.0,
    rng: np.random.Generator | int = 0,
    bones: list | None = None,
    name: str = "",
    dtype: torch.dtype = torch.float32,
) -> NRSfMSequence:
    """Orthographic views of given 3D shapes (F, P, 3) (world frame, Y up): cameras, noise, missing points.

    The shapes are centred per frame; cameras are drawn by :func:`camera_rotations`; noise is scaled
    to ||noise||_F / ||W||_F = ``noise_ratio`` over the visible entries; ``missing_ratio`` of the
    (frame, point) entries are marked missing. See :func:`synthetic_nrsfm` for the conventions.
    """
    S_world = np.asarray(S_world, dtype=np.float64)
    if S_world.ndim != 3 or S_world.shape[-1] != 3 or S_world.shape[0] < 1:
        raise ValueError(f"S_world: expected shape (F, P, 3), found {S_world.shape}")
    if not np.isfinite(S_world).all():
        raise ValueError(f"S_world: expected finite values, found {int((~np.isfinite(S_world)).sum())} non-finite")
    check_positive("noise_ratio", noise_ratio, strict=False)
    if not 0.0 <= float(missing_ratio) < 1.0:
        raise ValueError(f"missing_ratio: expected a value in [0, 1), found {missing_ratio!r}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    F, P = S_world.shape[:2]
    S_world = S_world - S_world.mean(axis=1, keepdims=True)
    R = camera_rotations(F, camera, rng)
    S_cam = S_world @ R.transpose(0, 2, 1)
    W = S_cam[..., :2].copy()

    vis = np.ones((F, P), dtype=bool)
    if missing_ratio > 0:
        n_miss = int(round(missing_ratio * F * P))
        flat = rng.permutation(F * P)[:n_miss]
        vis.reshape(-1)[flat] = False
    if noise_ratio > 0:
        noise = rng.standard_normal(W.shape) * vis[..., None]
        noise *= noise_ratio * np.linalg.norm(W * vis[..., None]) / max(np.linalg.norm(noise), 1e-300)
        W = W + noise
    W = W * vis[..., None]

    t = lambda a: to_tensor(a, dtype)
    return NRSfMSequence(
        W=t(W),
        visibility=torch.as_tensor(vis),
        S=t(S_cam),
        cameras=t(R[:, :2]),
        name=name,
        bones=list(bones or []),
        S_world=t(S_world),
    )


# ----------------------------------------------------------------------------------------------
# loaders
# ----------------------------------------------------------------------------------------------


def _loadmat(path: Path) -> dict:
    import scipy.io

    if path.is_dir():
        raise ValueError(f"{path}: expected an NRSfM .mat file, found a directory")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: NRSfM .mat file not found")
    try:
        return scipy.io.loadmat(str(path))
    except NotImplementedError:  # MATLAB v7.3 (HDF5): not readable by scipy
        raise ValueError(f"{path}: MATLAB v7.3 (HDF5) files are not supported, re-save with -v7") from None
    except Exception as exc:  # scipy raises assorted errors for corrupt files
        raise ValueError(f"{path}: not a readable MATLAB .mat file ({exc})") from None


def load_nrsfm_mat(path: str | Path, dtype: torch.dtype = torch.float32) -> NRSfMSequence:
    """Read a classic NRSfM sequence from a MATLAB .mat file.

    Two layouts are recognised:

    * ``X`` of shape (3, P, F): 3D points of every frame in the camera frame; W = X[:2]
      (Akhter et al. / Kumar et al. benchmark files: pickup, yoga, stretch, face, walking...).
    * ``W`` (2F, P) with rows ``x_1, y_1, x_2, y_2, ...`` and optionally ``S`` (3F, P) with rows
      ``X_1, Y_1, Z_1, ...`` (Torresani et al. / Akhter et al. layout). When S is present and not already
      in the camera frame (W != S[:2] per frame), cameras come from ``Rs`` (2F, 3) if stored, else from a
      least-squares orthographic fit of the centred W_f to the centred S_f, orthonormalised; S is then
      rotated into the camera frame and the given S is kept as ``S_world``.

    NaN entries in W/X mark missing points (visibility False, W set to 0); infinite entries raise. No centring is applied (see
    :func:`center_sequence`). Raises FileNotFoundError for a missing file and ValueError (with the path)
    for an unknown layout, inconsistent sizes or non-finite ground truth.
    """
    path = Path(path)
    mat = _loadmat(path)
    keys = {k for k in mat if not k.startswith("__")}
    S_world = cameras = None
    if "X" in keys:
        X = _numeric(path, "X", mat["X"])
        if X.ndim != 3 or X.shape[0] != 3:
            raise ValueError(f"{path}: X: expected shape (3, P, F), found {X.shape}")
        S = X.transpose(2, 1, 0)  # (F, P, 3)
        _no_inf(path, "X", S)
        vis = np.isfinite(S).all(axis=-1)
        W = np.where(vis[..., None], S[..., :2], 0.0)
        S_out = np.where(vis[..., None], S, 0.0)  # missing points zeroed, visibility says where
    elif "W" in keys:
        Wm = _numeric(path, "W", mat["W"])
        if Wm.ndim != 2 or Wm.shape[0] % 2:
            raise ValueError(f"{path}: W: expected shape (2F, P), found {Wm.shape}")
        F, P = Wm.shape[0] // 2, Wm.shape[1]
        W = Wm.reshape(F, 2, P).transpose(0, 2, 1)
        _no_inf(path, "W", W)
        vis = np.isfinite(W).all(axis=-1)
        W = np.where(vis[..., None], W, 0.0)
        S_out = None
        if "S" in keys:
            Sm = _numeric(path, "S", mat["S"])
            if Sm.shape != (3 * F, P):
                raise ValueError(f"{path}: S: expected shape (3F, P) = {(3 * F, P)} to match W, found {Sm.shape}")
            if not np.isfinite(Sm).all():
                raise ValueError(f"{path}: S: expected finite values, found {int((~np.isfinite(Sm)).sum())} non-finite")
            S = Sm.reshape(F, 3, P).transpose(0, 2, 1)
            S_out, cameras, S_world = _to_camera_frame(path, W, vis, S, mat.get("Rs"))
    else:
        raise ValueError(f"{path}: expected a variable 'X' (3, P, F) or 'W' (2F, P) [+ 'S' (3F, P)], found {sorted(keys)}")
    if W.shape[0] < 1 or W.shape[1] < 1:
        raise ValueError(f"{path}: expected at least one frame and one point, found W of shape {W.shape}")
    t = lambda a: None if a is None else torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)
    return NRSfMSequence(
        W=t(W), visibility=torch.as_tensor(vis), S=t(S_out), cameras=t(cameras), name=path.stem,
        S_world=t(S_world),
    )  # fmt: skip


def _numeric(path: Path, name: str, a) -> np.ndarray:
    """A .mat variable as a float64 array; ValueError naming the file and the variable when it holds no real numbers."""
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{path}: {name}: expected a real numeric array, found dtype {a.dtype}")
    return a.astype(np.float64)


def _no_inf(path: Path, name: str, a: np.ndarray) -> None:
    """NaN marks a missing point; +-inf is a corrupt value: ValueError naming the file and the variable."""
    n = int(np.isinf(a).sum())
    if n:
        raise ValueError(f"{path}: {name}: expected finite values or NaN (missing), found {n} infinite")


def _to_camera_frame(path: Path, W: np.ndarray, vis: np.ndarray, S: np.ndarray, Rs) -> tuple:
    """(S_cam, cameras, S_world) from W (F,P,2), S (F,P,3); identity cameras when S is already camera-frame."""
    F = W.shape[0]
    scale = max(np.abs(W[vis]).max(initial=0.0), 1e-12)
    if not vis.any():  # W = S[:2] would hold vacuously: only stored cameras can tell the frames apart
        if Rs is None:
            warnings.warn(f"{path}: no visible point in W, so whether S is in the camera frame cannot be checked; "
                          "S is taken as camera frame (store Rs with a world-frame S)", UserWarning, stacklevel=3)
            return S, None, None
    elif np.allclose(S[..., :2][vis], W[vis], atol=1e-6 * scale):
        return S, None, None
    if Rs is not None:
        Rs = _numeric(path, "Rs", Rs)
        if Rs.shape != (2 * F, 3):
            raise ValueError(f"{path}: Rs: expected shape (2F, 3) = {(2 * F, 3)}, found {Rs.shape}")
        if not np.isfinite(Rs).all():
            raise ValueError(f"{path}: Rs: expected finite values, found {int((~np.isfinite(Rs)).sum())} non-finite")
        M = Rs.reshape(F, 2, 3)
    else:
        # least squares W_c = S_c M^T per frame on the visible, centred points
        M = np.zeros((F, 2, 3))
        for f in range(F):
            v = vis[f]
            Sc = S[f, v] - S[f, v].mean(0)
            Wc = W[f, v] - W[f, v].mean(0)
            M[f] = np.linalg.lstsq(Sc, Wc, rcond=None)[0].T
    U, _, Vt = np.linalg.svd(M, full_matrices=False)
    M = U @ Vt
    R = np.concatenate([M, np.cross(M[:, 0], M[:, 1])[:, None]], axis=1)
    return S @ R.transpose(0, 2, 1), M, S


def save_nrsfm_mat(path: str | Path, seq: NRSfMSequence, layout: str = "X") -> Path:
    """Write a sequence as a classic NRSfM .mat file (the inverse of :func:`load_nrsfm_mat`).

    ``layout="X"``: variable ``X`` (3, P, F) = the camera-frame shapes ``seq.S`` (requires S), NaN where not
    visible. ``layout="WS"``: ``W`` (2F, P) with rows x1, y1, x2, y2, ... (NaN where not visible), plus ``S``
    (3F, P) and ``Rs`` (2F, 3) when the sequence has ``S_world`` and cameras (else ``S`` = camera frame).
    Written atomically.
    """
    import io

    import scipy.io

    from nrsfm_kit.utils.io import atomic_write_bytes

    check_sequence(seq)
    vis = seq.visibility.cpu().numpy()
    if layout == "X":
        if seq.S is None:
            raise ValueError("seq.S: layout 'X' needs camera-frame 3D shapes, found None")
        S = np.where(vis[..., None], seq.S.detach().cpu().double().numpy(), np.nan)
        mats = {"X": S.transpose(2, 1, 0)}
    elif layout == "WS":
        F, P = vis.shape
        W = np.where(vis[..., None], seq.W.detach().cpu().double().numpy(), np.nan)
        mats = {"W": W.transpose(0, 2, 1).reshape(2 * F, P)}
        if seq.S_world is not None and seq.cameras is not None:
            mats["S"] = seq.S_world.detach().cpu().double().numpy().transpose(0, 2, 1).reshape(3 * F, P)
            mats["Rs"] = seq.cameras.detach().cpu().double().numpy().reshape(2 * F, 3)
        elif seq.S is not None:
            mats["S"] = seq.S.detach().cpu().double().numpy().transpose(0, 2, 1).reshape(3 * F, P)
    else:
        raise ValueError(f"layout: expected 'X' or 'WS', found {layout!r}")
    buf = io.BytesIO()
    scipy.io.savemat(buf, mats)
    return atomic_write_bytes(path, buf.getvalue())


def center_sequence(seq: NRSfMSequence) -> NRSfMSequence:
    """Remove the per-frame translation: W (and S, S_world) centred on the mean of the visible points.

    Returns a new sequence; S is centred with the same (x, y) offsets as W and its depth on its own
    mean, so ``W == S[..., :2]`` still holds for noise-free data.
    """
    vis = seq.visibility.to(seq.W.dtype)[..., None]
    n = vis.sum(1, keepdim=True).clamp_min(1)
    mw = (seq.W * vis).sum(1, keepdim=True) / n
    W = (seq.W - mw) * vis
    S = S_world = None
    if seq.S is not None:
        mz = (seq.S[..., 2:] * vis).sum(1, keepdim=True) / n
        S = seq.S - torch.cat([mw, mz], dim=-1)
    if seq.S_world is not None:
        S_world = seq.S_world - seq.S_world.mean(1, keepdim=True)
    return NRSfMSequence(
        W=W, visibility=seq.visibility.clone(), S=S, cameras=seq.cameras, name=seq.name,
        bones=list(seq.bones), S_world=S_world,
    )  # fmt: skip


def check_sequence(seq: NRSfMSequence, name: str = "seq") -> NRSfMSequence:
    """Validate the shapes, dtypes and finiteness of an :class:`NRSfMSequence`; returns it."""
    dims: dict = {}
    check_tensor(f"{name}.W", seq.W, ("F", "P", 2), dims=dims)
    if seq.visibility.dtype != torch.bool:
        raise ValueError(f"{name}.visibility: expected dtype torch.bool, found {seq.visibility.dtype}")
    check_tensor(f"{name}.visibility", seq.visibility, ("F", "P"), dims=dims, floating=False)
    if seq.S is not None:
        check_tensor(f"{name}.S", seq.S, ("F", "P", 3), dims=dims)
    if seq.cameras is not None:
        check_tensor(f"{name}.cameras", seq.cameras, ("F", 2, 3), dims=dims)
    if seq.S_world is not None:
        check_tensor(f"{name}.S_world", seq.S_world, ("F", "P", 3), dims=dims)
    return seq


class NRSfMFrames(torch.utils.data.Dataset):
    """A torch Dataset over the frames of an :class:`NRSfMSequence` (for learned NRSfM methods).

    Item f: dict with ``W`` (P, 2), ``visibility`` (P,), and when available ``S`` (P, 3), ``camera``
    (2, 3); plus ``index``.
    """

    def __init__(self, seq: NRSfMSequence):
        self.seq = check_sequence(seq)

    def __len__(self) -> int:
        return self.seq.num_frames

    def __getitem__(self, f: int) -> dict:
        if not -len(self) <= f < len(self):
            raise IndexError(f"f: expected an index in [0, {len(self)}), found {f}")
        item = {"W": self.seq.W[f], "visibility": self.seq.visibility[f], "index": f % len(self)}
        if self.seq.S is not None:
            item["S"] = self.seq.S[f]
        if self.seq.cameras is not None:
            item["camera"] = self.seq.cameras[f]
        return item
