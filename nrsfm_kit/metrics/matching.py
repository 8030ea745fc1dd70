"""Sparse non-rigid matching metrics of DeepDeform (Bozic et al., CVPR 2020, Table 1) and their ground truth.

A matcher receives source pixels and predicts where each one is in the target frame. Per point:

- **2D error** (px): ``||pred_px - gt_px||``;
- **3D error** (m): ``||pred_xyz - gt_xyz||`` between camera-frame points of the target frame (the predicted
  pixel back-projected with the target depth, :func:`match_points_3d`, against the source point moved by the
  ground-truth scene flow, :func:`ground_truth_matches`).

The summary (:class:`MatchingMetrics`) is pooled over **all matches of all pairs** (sum of errors / number of
matches over the whole evaluation set), as the public DeepDeform evaluation does
(``evaluation/evaluate_flow.py`` of github.com/AljazBozic/DeepDeform sums per sequence and divides the totals);
it is not the mean of per-pair means.

Counting rules (exact)
    - ``valid`` (ground truth) decides which points are evaluated at all: a point with ``valid`` False (no ground
      truth, occluded, ...) is in no count. ``num_matches`` = number of evaluated points.
    - ``pred_valid`` (the method's own flag) says whether the method output a match. A **rejected** point
      (evaluated, ``pred_valid`` False) gets error ``+inf``: it is a failure for every accuracy (the accuracies
      divide by ``num_matches``, rejected points included) and it is left out of the mean errors (which divide by
      ``num_valid``, the evaluated points that have a prediction). ``coverage = num_valid / num_matches``.
    - 3D: a predicted point is missing when the 2D match is rejected or when its ``pred_xyz`` row is all NaN (the
      predicted pixel fell on a depth hole: what :func:`match_points_3d` returns). Missing 3D points count like
      rejections for ``acc_3d`` / ``mean_3d_m`` (``num_valid_3d``, ``coverage_3d``).
    - Thresholds are inclusive (``error <= threshold``), as in the reference evaluation.
    - Non-finite ``gt_px`` / ``gt_xyz`` where ``valid``, non-finite ``pred_px`` where ``valid & pred_valid``, and a
      ``pred_xyz`` row that is neither finite nor all NaN where ``valid & pred_valid`` raise ValueError.

Thresholds (module constants): :data:`ACC_2D_PX` = 10 px and :data:`ACC_3D_M` = 0.05 m, the 2D / 3D accuracy
thresholds of DeepDeform's matching comparison (Table 1); :data:`FLOW_ACC_PX` = 20 px, ``pixel_threshold`` of the
public benchmark's flow evaluation (``evaluate_flow.py``, ``pixel_dist <= 20``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from nrsfm_kit.data.types import RGBDPair
from nrsfm_kit.geometry.pinhole import as_intrinsics
from nrsfm_kit.utils.checks import check_positive, check_shape

__all__ = [
    "ACC_2D_PX", "ACC_3D_M", "FLOW_ACC_PX", "MatchingErrors", "MatchingMetrics", "check_source_pixels",
    "ground_truth_matches",
    "match_points_3d", "matching_errors", "sample_source_points",
]

ACC_2D_PX = 10.0  # px: 2D accuracy threshold of DeepDeform's matching evaluation (Bozic et al. 2020, Table 1)
ACC_3D_M = 0.05  # m: 3D accuracy threshold of the same table (5 cm)
FLOW_ACC_PX = 20.0  # px: pixel_threshold of the public benchmark (DeepDeform evaluation/evaluate_flow.py, <=)

_INTERPOLATIONS = ("nearest", "bilinear")


# ==================================================================================================
# argument helpers
# ==================================================================================================


def _as_tensor(name: str, x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    raise ValueError(f"{name}: expected a torch.Tensor or numpy array, found {type(x).__name__}")


def _float(name: str, x, spec, dims: dict) -> torch.Tensor:
    t = _as_tensor(name, x)
    if not t.is_floating_point():
        if t.dtype == torch.bool or t.is_complex():
            raise ValueError(f"{name}: expected real numbers, found dtype {t.dtype}")
        t = t.double()
    check_shape(name, t, spec, dims)
    return t.double().cpu()


def _mask(name: str, x, k: int) -> torch.Tensor:
    if x is None:
        return torch.ones(k, dtype=torch.bool)
    t = _as_tensor(name, x)
    if t.dtype != torch.bool:
        raise ValueError(f"{name}: expected a bool tensor of shape ({k},), found dtype {t.dtype}")
    if tuple(t.shape) != (k,):
        raise ValueError(f"{name}: expected shape ({k},), found {tuple(t.shape)}")
    return t.cpu()


def _require_finite(name: str, x: torch.Tensor, where: torch.Tensor, what: str) -> None:
    bad = where & ~torch.isfinite(x).all(-1)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"{name}: expected finite values where {what}, found {int(bad.sum())} non-finite rows "
            f"(first at index {i}: {x[i].tolist()})"
        )


# ==================================================================================================
# per-point errors
# ==================================================================================================


@dataclass
class MatchingErrors:
    """Per-point errors of one pair (see the module docstring for the counting rules).

    Attributes:
        err_2d: (K,) float64 px: the error where evaluated and predicted, ``+inf`` where evaluated and rejected,
            NaN where not evaluated.
        err_3d: (K,) float64 metres, same encoding (``+inf`` also where the predicted pixel has no 3D point), or
            None when no 3D inputs were given.
        evaluated: (K,) bool, the ``valid`` mask.
    """

    err_2d: torch.Tensor
    err_3d: torch.Tensor | None
    evaluated: torch.Tensor


def matching_errors(
    pred_px,
    gt_px,
    pred_xyz=None,
    gt_xyz=None,
    valid=None,
    *,
    pred_valid=None,
) -> MatchingErrors:
    """Per-point 2D and 3D errors of predicted matches.

    Args:
        pred_px: (K, 2) predicted target pixels (x = column, y = row), px. Ignored where ``pred_valid`` is False.
        gt_px: (K, 2) ground-truth target pixels, px.
        pred_xyz: (K, 3) predicted target points in the target camera frame, metres, or None (no 3D metrics).
            A row of NaN means "no 3D point" (e.g. the predicted pixel lies on a depth hole).
        gt_xyz: (K, 3) ground-truth target points, metres; given together with ``pred_xyz``.
        valid: (K,) bool, points with ground truth (evaluated); default all.
        pred_valid: (K,) bool, points the method matched (False = rejected); default all.

    Returns:
        :class:`MatchingErrors` (float64, CPU).

    Raises:
        ValueError: shapes that disagree, non-bool masks, only one of ``pred_xyz`` / ``gt_xyz``, or non-finite
            values where they are used (see the module docstring).
    """
    dims: dict = {}
    pred = _float("pred_px", pred_px, ("K", 2), dims)
    gt = _float("gt_px", gt_px, ("K", 2), dims)
    k = dims["K"]
    ev = _mask("valid", valid, k)
    pv = _mask("pred_valid", pred_valid, k)
    if (pred_xyz is None) != (gt_xyz is None):
        missing = "gt_xyz" if gt_xyz is None else "pred_xyz"
        raise ValueError(f"{missing}: expected a (K, 3) tensor together with the other 3D input, found None")
    _require_finite("gt_px", gt, ev, "valid")
    used = ev & pv
    _require_finite("pred_px", pred, used, "valid & pred_valid")
    nan = torch.full((k,), math.nan, dtype=torch.float64)
    inf = torch.full((k,), math.inf, dtype=torch.float64)
    zero2 = torch.zeros_like(pred)
    d2 = (torch.where(used[:, None], pred, zero2) - torch.where(used[:, None], gt, zero2)).norm(dim=-1)
    e2 = torch.where(ev, torch.where(used, d2, inf), nan)
    e3 = None
    if pred_xyz is not None:
        pxyz = _float("pred_xyz", pred_xyz, ("K", 3), dims)
        gxyz = _float("gt_xyz", gt_xyz, ("K", 3), dims)
        _require_finite("gt_xyz", gxyz, ev, "valid")
        hole = torch.isnan(pxyz).all(-1)
        _require_finite("pred_xyz", pxyz, used & ~hole, "valid & pred_valid (a row of NaN marks a missing point)")
        has3 = used & ~hole
        zero3 = torch.zeros_like(pxyz)
        d3 = (torch.where(has3[:, None], pxyz, zero3) - torch.where(has3[:, None], gxyz, zero3)).norm(dim=-1)
        e3 = torch.where(ev, torch.where(has3, d3, inf), nan)
    return MatchingErrors(err_2d=e2, err_3d=e3, evaluated=ev)


class MatchingMetrics:
    """Pooled DeepDeform matching metrics over an evaluation set: :meth:`update` per pair, :meth:`compute` at the end.

    Args:
        acc_2d_px, acc_3d_m, flow_acc_px: thresholds (inclusive), defaults :data:`ACC_2D_PX`, :data:`ACC_3D_M`,
            :data:`FLOW_ACC_PX`.
    """

    def __init__(self, acc_2d_px: float = ACC_2D_PX, acc_3d_m: float = ACC_3D_M, flow_acc_px: float = FLOW_ACC_PX):
        self.acc_2d_px = check_positive("acc_2d_px", acc_2d_px)
        self.acc_3d_m = check_positive("acc_3d_m", acc_3d_m)
        self.flow_acc_px = check_positive("flow_acc_px", flow_acc_px)
        self.reset()

    def reset(self) -> None:
        """Forget every update."""
        self.pairs = 0
        self.n, self.n_pred, self.sum_2d, self.n_acc_2d, self.n_flow = 0, 0, 0.0, 0, 0
        self.n3, self.n3_pred, self.sum_3d, self.n_acc_3d = 0, 0, 0.0, 0

    def update(self, pred_px, gt_px, pred_xyz=None, gt_xyz=None, valid=None, *, pred_valid=None) -> MatchingErrors:
        """Add one pair (arguments of :func:`matching_errors`); returns its per-point errors."""
        errors = matching_errors(pred_px, gt_px, pred_xyz, gt_xyz, valid, pred_valid=pred_valid)
        self.update_errors(errors)
        return errors

    def update_errors(self, errors: MatchingErrors) -> None:
        """Add the per-point errors of one pair (a :class:`MatchingErrors`)."""
        if not isinstance(errors, MatchingErrors):
            raise ValueError(f"errors: expected a MatchingErrors, found {type(errors).__name__}")
        ev = errors.evaluated
        e2 = errors.err_2d[ev]
        fin = torch.isfinite(e2)
        self.n += int(ev.sum())
        self.n_pred += int(fin.sum())
        self.sum_2d += float(e2[fin].sum())
        self.n_acc_2d += int((e2 <= self.acc_2d_px).sum())
        self.n_flow += int((e2 <= self.flow_acc_px).sum())
        if errors.err_3d is not None:
            e3 = errors.err_3d[ev]
            fin3 = torch.isfinite(e3)
            self.n3 += int(ev.sum())
            self.n3_pred += int(fin3.sum())
            self.sum_3d += float(e3[fin3].sum())
            self.n_acc_3d += int((e3 <= self.acc_3d_m).sum())
        self.pairs += 1

    def compute(self) -> dict:
        """The pooled summary.

        Returns:
            dict with ``mean_2d_px`` (px, over the matched points), ``acc_2d`` (fraction of all evaluated points
            with 2D error <= ``acc_2d_px``), ``flow_acc_20px`` (<= ``flow_acc_px``), ``mean_3d_m`` (metres, over the
            points with a 3D prediction), ``acc_3d`` (<= ``acc_3d_m``), ``num_matches`` (evaluated points),
            ``num_valid`` (evaluated points with a prediction), ``coverage`` (= num_valid / num_matches),
            ``num_matches_3d``, ``num_valid_3d``, ``coverage_3d`` and ``pairs``. NaN where nothing was counted.
        """
        nan = math.nan
        ratio = lambda a, b: a / b if b else nan
        return {
            "mean_2d_px": ratio(self.sum_2d, self.n_pred),
            "mean_3d_m": ratio(self.sum_3d, self.n3_pred),
            "acc_2d": ratio(self.n_acc_2d, self.n),
            "acc_3d": ratio(self.n_acc_3d, self.n3),
            "flow_acc_20px": ratio(self.n_flow, self.n),
            "num_matches": self.n,
            "num_valid": self.n_pred,
            "coverage": ratio(self.n_pred, self.n),
            "num_matches_3d": self.n3,
            "num_valid_3d": self.n3_pred,
            "coverage_3d": ratio(self.n3_pred, self.n3),
            "pairs": self.pairs,
        }


# ==================================================================================================
# 3D points of predicted and ground-truth matches
# ==================================================================================================


def _image_size(pair: RGBDPair) -> tuple[int, int]:
    if not isinstance(pair, RGBDPair):
        raise ValueError(f"pair: expected an RGBDPair, found {type(pair).__name__}")
    dims: dict = {}
    check_shape("pair.source_depth", pair.source_depth, ("H", "W"), dims)
    check_shape("pair.target_depth", pair.target_depth, ("H", "W"), dims)
    return dims["H"], dims["W"]


def _sample_map(img: np.ndarray, px: np.ndarray, interpolation: str) -> np.ndarray:
    """Read a (H, W) map with 0 / non-finite = invalid at (K, 2) pixels; NaN where invalid or outside."""
    H, W = img.shape
    ok_img = np.isfinite(img) & (img > 0)
    out = np.full(len(px), np.nan)
    fin = np.isfinite(px).all(-1)
    x = np.where(fin, px[:, 0], -10.0)
    y = np.where(fin, px[:, 1], -10.0)
    if interpolation == "nearest":
        xi, yi = np.floor(x + 0.5).astype(np.int64), np.floor(y + 0.5).astype(np.int64)
        inside = fin & (xi >= 0) & (xi < W) & (yi >= 0) & (yi < H)
        xi, yi = np.clip(xi, 0, W - 1), np.clip(yi, 0, H - 1)
        good = inside & ok_img[yi, xi]
        out[good] = img[yi[good], xi[good]]
        return out
    inside = fin & (x >= 0) & (x <= W - 1) & (y >= 0) & (y <= H - 1)
    x0 = np.clip(np.floor(x), 0, W - 1).astype(np.int64)
    y0 = np.clip(np.floor(y), 0, H - 1).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, W - 1), np.minimum(y0 + 1, H - 1)
    ax, ay = np.clip(x - x0, 0, 1), np.clip(y - y0, 0, 1)
    good = inside & ok_img[y0, x0] & ok_img[y0, x1] & ok_img[y1, x0] & ok_img[y1, x1]
    v = np.where(ok_img, img, 0.0)
    val = (v[y0, x0] * (1 - ax) * (1 - ay) + v[y0, x1] * ax * (1 - ay) + v[y1, x0] * (1 - ax) * ay
           + v[y1, x1] * ax * ay)
    out[good] = val[good]
    return out


def match_points_3d(pair: RGBDPair, target_px, depth=None, *, interpolation: str = "nearest") -> torch.Tensor:
    """Back-project predicted target pixels to target camera-frame points.

    Args:
        pair: the :class:`RGBDPair` (its ``intrinsics`` and, when ``depth`` is None, its ``target_depth``).
        target_px: (K, 2) predicted target pixels (x = column, y = row), px. Non-finite rows (rejected matches)
            give NaN rows.
        depth: None (read ``pair.target_depth``), an (H, W) predicted depth map (read like the target depth), or
            (K,) predicted depths of the points, metres; 0 / negative / non-finite = no depth.
        interpolation: how a depth map is read: ``"nearest"`` (the pixel ``floor(p + 0.5)``; invalid when that
            pixel has no depth) or ``"bilinear"`` (invalid unless all four neighbours have depth).

    Returns:
        (K, 3) camera-frame points in metres (dtype of ``pair.target_depth``), ``z * ((x - cx) / fx,
        (y - cy) / fy, 1)`` at the predicted (sub-pixel) location; NaN rows where there is no depth or the pixel
        is outside the image (see :func:`matching_errors` for how they count).

    Raises:
        ValueError: wrong shapes, an unknown interpolation.
    """
    H, W = _image_size(pair)
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"interpolation: expected one of {_INTERPOLATIONS}, found {interpolation!r}")
    dims: dict = {}
    px = _float("target_px", target_px, ("K", 2), dims).numpy()
    k = dims["K"]
    if depth is None:
        z = _sample_map(pair.target_depth.detach().cpu().double().numpy(), px, interpolation)
    else:
        d = _as_tensor("depth", depth).detach().cpu().double().numpy()
        if d.shape == (H, W):
            z = _sample_map(d, px, interpolation)
        elif d.shape == (k,):
            z = np.where(np.isfinite(d) & (d > 0) & np.isfinite(px).all(-1), d, np.nan)
        else:
            raise ValueError(f"depth: expected shape ({H}, {W}) (a depth map) or ({k},) (one per point), "
                             f"found {tuple(d.shape)}")
    fx, fy, cx, cy = (float(v) for v in as_intrinsics(pair.intrinsics, dtype=torch.float64))
    xyz = np.stack([z * (px[:, 0] - cx) / fx, z * (px[:, 1] - cy) / fy, z], axis=-1)
    return torch.from_numpy(xyz).to(pair.target_depth.dtype)


def check_source_pixels(pair: RGBDPair, source_px, *, require_depth: bool = False
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate source pixels of a matching query (shared by :func:`ground_truth_matches` and the matchers).

    Args:
        pair: the :class:`RGBDPair` (its depth sizes and, with ``require_depth``, its source depth).
        source_px: (K, 2) pixels (x = column, y = row), K >= 1, finite, ``0 <= x <= W - 1``, ``0 <= y <= H - 1``.
        require_depth: also require source depth > 0 at the integer pixel ``floor(p + 0.5)``.

    Returns:
        (px (K, 2) float64, xi (K,) int64, yi (K,) int64) numpy arrays: the pixels and their integer pixel.

    Raises:
        ValueError: naming ``source_px``, the first offending index and its value.
    """
    H, W = _image_size(pair)
    dims: dict = {}
    px = _float("source_px", source_px, ("K", 2), dims).numpy()
    if dims["K"] == 0:
        raise ValueError("source_px: expected at least one point, found shape (0, 2)")
    fin = np.isfinite(px).all(-1)
    inside = fin & (px[:, 0] >= 0) & (px[:, 0] <= W - 1) & (px[:, 1] >= 0) & (px[:, 1] <= H - 1)
    if not inside.all():
        i = int(np.flatnonzero(~inside)[0])
        raise ValueError(f"source_px: expected finite pixels inside the {W} x {H} image (0 <= x <= {W - 1}, "
                         f"0 <= y <= {H - 1}), found {int((~inside).sum())} outside (first: index {i} = "
                         f"{px[i].tolist()})")
    xi = np.clip(np.floor(px[:, 0] + 0.5), 0, W - 1).astype(np.int64)
    yi = np.clip(np.floor(px[:, 1] + 0.5), 0, H - 1).astype(np.int64)
    if require_depth:
        d = pair.source_depth.detach().cpu().double().numpy()[yi, xi]
        hole = ~(np.isfinite(d) & (d > 0))
        if hole.any():
            i = int(np.flatnonzero(hole)[0])
            raise ValueError(f"source_px: expected points on valid source depth (> 0 at the pixel floor(p + 0.5)), "
                             f"found {int(hole.sum())} on depth holes (first: index {i} = {px[i].tolist()}, "
                             f"depth {d[i]!r})")
    return px, xi, yi


def ground_truth_matches(pair: RGBDPair, source_px) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Ground-truth target pixels and points of source pixels, from the pair's optical and scene flow.

    The flows are defined at integer pixels: each source point reads them at its pixel ``p0 = floor(p + 0.5)``
    (the reference evaluation rounds its source keypoints the same way).

    Args:
        pair: an :class:`RGBDPair` with ``optical_flow`` and ``flow_valid`` (``scene_flow`` for 3D,
            ``visibility`` when known).
        source_px: (K, 2) source pixels (x = column, y = row) inside the image, px.

    Returns:
        target_px: (K, 2) ``source_px + optical_flow[p0]``, px;
        target_xyz: (K, 3) ``X(p0) + scene_flow[p0]`` with ``X(p0)`` the source point of ``p0`` (source depth,
            intrinsics), metres, target camera frame; None when the pair has no scene flow;
        valid: (K,) bool, ``flow_valid & visibility & (source depth > 0)`` at ``p0`` (``visibility`` taken as
            True when the pair has none, as for the real DeepDeform pairs).
        Rows of ``target_px`` / ``target_xyz`` are NaN where not ``valid``.

    Raises:
        ValueError: no optical flow / flow_valid in the pair, ``source_px`` not (K, 2), empty, non-finite or
            outside the image.
    """
    H, W = _image_size(pair)
    if pair.optical_flow is None or pair.flow_valid is None:
        raise ValueError("pair.optical_flow: expected ground-truth optical flow and flow_valid, found None")
    check_shape("pair.optical_flow", pair.optical_flow, (H, W, 2))
    check_shape("pair.flow_valid", pair.flow_valid, (H, W))
    px, xi, yi = check_source_pixels(pair, source_px)
    flow = pair.optical_flow.detach().cpu().double().numpy()[yi, xi]
    sd = pair.source_depth.detach().cpu().double().numpy()[yi, xi]
    ok = pair.flow_valid.detach().cpu().numpy().astype(bool)[yi, xi] & np.isfinite(sd) & (sd > 0)
    if pair.visibility is not None:
        check_shape("pair.visibility", pair.visibility, (H, W))
        ok &= pair.visibility.detach().cpu().numpy().astype(bool)[yi, xi]
    ok &= np.isfinite(flow).all(-1)
    tgt = np.where(ok[:, None], px + flow, np.nan)
    dtype = pair.source_depth.dtype
    xyz = None
    if pair.scene_flow is not None:
        check_shape("pair.scene_flow", pair.scene_flow, (H, W, 3))
        fx, fy, cx, cy = (float(v) for v in as_intrinsics(pair.intrinsics, dtype=torch.float64))
        src = np.stack([sd * (xi - cx) / fx, sd * (yi - cy) / fy, sd], axis=-1)
        sf = pair.scene_flow.detach().cpu().double().numpy()[yi, xi]
        ok &= np.isfinite(sf).all(-1)
        xyz_np = np.where(ok[:, None], src + sf, np.nan)
        tgt = np.where(ok[:, None], tgt, np.nan)
        xyz = torch.from_numpy(xyz_np).to(dtype)
    return torch.from_numpy(tgt).to(dtype), xyz, torch.from_numpy(ok)


def sample_source_points(pair: RGBDPair, num_points: int, *, seed: int = 0, on_mask: bool = True,
                         require_ground_truth: bool = True) -> torch.Tensor:
    """Random integer source pixels for a matching evaluation (without replacement).

    Args:
        pair: the :class:`RGBDPair`.
        num_points: how many points (fewer when fewer pixels qualify).
        seed: numpy random seed.
        on_mask: only pixels of ``pair.source_mask`` (when the pair has one).
        require_ground_truth: only pixels whose ground truth is valid (:func:`ground_truth_matches`' rule);
            otherwise only pixels with source depth > 0.

    Returns:
        (N, 2) float32 pixels (x = column, y = row), N = min(num_points, qualifying pixels).

    Raises:
        ValueError: ``num_points`` < 1, or no pixel qualifies.
    """
    H, W = _image_size(pair)
    if int(num_points) != num_points or num_points < 1:
        raise ValueError(f"num_points: expected an integer >= 1, found {num_points!r}")
    d = pair.source_depth.detach().cpu().numpy()
    ok = np.isfinite(d) & (d > 0)
    if on_mask and pair.source_mask is not None:
        ok &= pair.source_mask.detach().cpu().numpy().astype(bool)
    if require_ground_truth:
        if pair.flow_valid is None:
            raise ValueError("pair.flow_valid: expected ground truth (require_ground_truth=True), found None")
        ok &= pair.flow_valid.detach().cpu().numpy().astype(bool)
        if pair.visibility is not None:
            ok &= pair.visibility.detach().cpu().numpy().astype(bool)
    idx = np.flatnonzero(ok.ravel())
    if idx.size == 0:
        raise ValueError("pair: expected at least one source pixel that qualifies (depth, mask, ground truth), "
                         "found none")
    pick = np.sort(np.random.default_rng(int(seed)).choice(idx, size=min(int(num_points), idx.size), replace=False))
    return torch.from_numpy(np.stack([pick % W, pick // W], axis=-1).astype(np.float32))
