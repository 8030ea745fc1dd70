"""Non-rigid tracking metrics of Neural Non-Rigid Tracking (Bozic, Palafox et al., NeurIPS 2020), sec. 5.2.

- **EPE 3D** (end-point error of the deformation, mm): ||Q(p, T) - (p + s~)|| over the source pixels with valid
  depth in (0, 6 m], valid anchors and finite ground-truth scene flow s~ (and optical flow, when given);
- **Graph Error 3D** (mm): ||t_i - t~_i|| over the graph nodes with a ground-truth translation.

Both are pooled over all pairs (sum of errors / number of elements over the whole evaluation set, not the mean
of per-pair means): :class:`TrackingMetrics` accumulates them. The optional pair pre-filter of sec. 5.2 drops
pairs in which more than 30 % of the source object is occluded in the target (:func:`keep_pair`).
"""

from __future__ import annotations

import torch

from nrsfm_kit.utils.checks import check_positive, check_tensor

__all__ = ["epe_3d_terms", "graph_error_3d_terms", "keep_pair", "TrackingMetrics", "MAX_DEPTH"]

MAX_DEPTH = 6.0  # metres: valid source depth is (0, 6 m] (sec. 5.2, reference evaluation)


def epe_3d_terms(warped: torch.Tensor, source_points: torch.Tensor, scene_flow: torch.Tensor,
                 valid: torch.Tensor | None = None, optical_flow: torch.Tensor | None = None,
                 max_depth: float = MAX_DEPTH) -> tuple[torch.Tensor, int]:
    """(sum of ||Q(p) - (p + s~)|| in metres, number of evaluated points) of one or more pairs.

    Args:
        warped: (..., 3) Q(p, T), metres. source_points: (..., 3) metres. scene_flow: (..., 3) ground truth s~.
        valid: (...) bool, e.g. points with valid anchors (default all). optical_flow: (..., 2), optional:
            points with a non-finite optical flow are excluded too.
        max_depth: points with source depth outside (0, max_depth] are excluded (metres).
    """
    check_tensor("warped", warped, ("...", 3), finite=False)
    check_tensor("source_points", source_points, ("...", 3), finite=False)
    check_tensor("scene_flow", scene_flow, ("...", 3), finite=False)
    shape = warped.shape
    for name, x in (("source_points", source_points), ("scene_flow", scene_flow)):
        if x.shape != shape:
            raise ValueError(f"{name}: expected shape {tuple(shape)} like warped, found {tuple(x.shape)}")
    check_positive("max_depth", max_depth)
    z = source_points[..., 2]
    ok = (z > 0) & (z <= max_depth) & torch.isfinite(source_points).all(-1) & torch.isfinite(scene_flow).all(-1)
    ok = ok & torch.isfinite(warped).all(-1)
    if valid is not None:
        if valid.shape != shape[:-1]:
            raise ValueError(f"valid: expected shape {tuple(shape[:-1])}, found {tuple(valid.shape)}")
        ok = ok & valid.bool()
    if optical_flow is not None:
        if optical_flow.shape != (*shape[:-1], 2):
            raise ValueError(f"optical_flow: expected shape {(*shape[:-1], 2)}, found {tuple(optical_flow.shape)}")
        ok = ok & torch.isfinite(optical_flow).all(-1)
    err = (warped - (source_points + scene_flow)).norm(dim=-1)
    return torch.where(ok, err, torch.zeros_like(err)).sum(), int(ok.sum())


def graph_error_3d_terms(translations: torch.Tensor, gt_translations: torch.Tensor,
                         valid: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """(sum of ||t_i - t~_i|| in metres, number of nodes): translations (..., N, 3), gt (..., N, 3);
    nodes with a non-finite ground truth or ``valid`` False are excluded."""
    check_tensor("translations", translations, ("...", 3))
    check_tensor("gt_translations", gt_translations, ("...", 3), finite=False)
    if gt_translations.shape != translations.shape:
        raise ValueError(f"gt_translations: expected shape {tuple(translations.shape)}, found "
                         f"{tuple(gt_translations.shape)}")
    ok = torch.isfinite(gt_translations).all(-1)
    if valid is not None:
        if valid.shape != ok.shape:
            raise ValueError(f"valid: expected shape {tuple(ok.shape)}, found {tuple(valid.shape)}")
        ok = ok & valid.bool()
    gt = torch.where(ok.unsqueeze(-1), gt_translations, torch.zeros_like(gt_translations))
    err = (translations - gt).norm(dim=-1)
    return torch.where(ok, err, torch.zeros_like(err)).sum(), int(ok.sum())


def keep_pair(object_mask: torch.Tensor, occluded: torch.Tensor, max_occluded: float = 0.3) -> bool:
    """Pair pre-filter of sec. 5.2: False when more than ``max_occluded`` of the source object's pixels
    (``object_mask`` (H, W) bool) are occluded in the target (``occluded`` (H, W) bool)."""
    if object_mask.shape != occluded.shape:
        raise ValueError(f"occluded: expected shape {tuple(object_mask.shape)}, found {tuple(occluded.shape)}")
    if not 0.0 <= float(max_occluded) <= 1.0:
        raise ValueError(f"max_occluded: expected a fraction in [0, 1], found {max_occluded!r}")
    n = int(object_mask.sum())
    if n == 0:
        raise ValueError("object_mask: expected at least one object pixel, found none")
    return int((object_mask & occluded).sum()) / n <= max_occluded


class TrackingMetrics:
    """Pooled EPE 3D and Graph Error 3D (mm) over an evaluation set: ``update`` per pair, ``compute`` at the end."""

    def __init__(self):
        self.epe_sum, self.epe_n, self.graph_sum, self.graph_n, self.pairs = 0.0, 0, 0.0, 0, 0

    def update(self, warped, source_points, scene_flow, translations=None, gt_translations=None, *,
               valid=None, node_valid=None, optical_flow=None) -> None:
        s, n = epe_3d_terms(warped, source_points, scene_flow, valid, optical_flow)
        self.epe_sum += float(s)
        self.epe_n += n
        if translations is not None:
            if gt_translations is None:
                raise ValueError("gt_translations: expected a (..., N, 3) tensor with translations, found None")
            s, n = graph_error_3d_terms(translations, gt_translations, node_valid)
            self.graph_sum += float(s)
            self.graph_n += n
        self.pairs += 1

    def compute(self) -> dict:
        """{"epe_3d_mm", "graph_error_3d_mm", "points", "nodes", "pairs"} (NaN where nothing was evaluated)."""
        nan = float("nan")
        return {"epe_3d_mm": 1e3 * self.epe_sum / self.epe_n if self.epe_n else nan,
                "graph_error_3d_mm": 1e3 * self.graph_sum / self.graph_n if self.graph_n else nan,
                "points": self.epe_n, "nodes": self.graph_n, "pairs": self.pairs}
