"""Monocular depth metrics with per-image median scaling (Eigen et al. 2014; as in Takmaz et al., Tab. 2/3).

With per-image median scaling the prediction is multiplied by median(gt) / median(pred) over the valid
pixels of the image (monocular depth has no absolute scale), then over the evaluated pixels:

    AbsRel = mean |d - d*| / d*          SqRel = mean (d - d*)^2 / d*
    RMSE   = sqrt(mean (d - d*)^2)       RMSElog = sqrt(mean (log d - log d*)^2)
    delta_k = fraction with max(d / d*, d* / d) < 1.25^k, k = 1, 2, 3
"""

from __future__ import annotations

import math

import torch

from nrsfm_kit.utils.checks import check_tensor

METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")
# regions of a segmentation with 0 static / 1 rigid mover / 2 non-rigid (MonocularVideo convention)
REGIONS = {"all": None, "static": (0,), "dynamic": (1, 2), "rigid": (1,), "nonrigid": (2,)}


def _valid(gt: torch.Tensor, pred: torch.Tensor, min_depth: float, max_depth: float) -> torch.Tensor:
    return torch.isfinite(gt) & torch.isfinite(pred) & (gt > min_depth) & (gt < max_depth) & (pred > 0)


def median_scale(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image factor median(gt) / median(pred) over ``mask``: pred, gt (..., H, W) -> (...,)."""
    dims: dict = {}
    check_tensor("pred", pred, ("...", "H", "W"), dims=dims, finite=False)
    check_tensor("gt", gt, ("...", "H", "W"), dims=dims, finite=False)
    if pred.shape != gt.shape:
        raise ValueError(f"pred: expected shape {tuple(gt.shape)} like gt, found {tuple(pred.shape)}")
    m = _valid(gt, pred, 0.0, math.inf) if mask is None else mask & _valid(gt, pred, 0.0, math.inf)
    p = pred.reshape(-1, *pred.shape[-2:])
    g = gt.reshape(-1, *gt.shape[-2:])
    mm = m.reshape(-1, *m.shape[-2:])
    out = []
    for b in range(p.shape[0]):
        if not bool(mm[b].any()):
            raise ValueError(f"gt: expected valid pixels in image {b} for median scaling, found none")
        out.append(g[b][mm[b]].median() / p[b][mm[b]].median())
    return torch.stack(out).reshape(pred.shape[:-2])


def depth_errors(pred: torch.Tensor, gt: torch.Tensor) -> dict[str, float]:
    """The seven metrics over matching 1-D tensors of positive depths (no scaling)."""
    if pred.numel() == 0:
        return {k: float("nan") for k in METRIC_NAMES}
    pred, gt = pred.double(), gt.double()
    thresh = torch.maximum(gt / pred, pred / gt)
    return {
        "abs_rel": float(((gt - pred).abs() / gt).mean()),
        "sq_rel": float(((gt - pred) ** 2 / gt).mean()),
        "rmse": float(((gt - pred) ** 2).mean().sqrt()),
        "rmse_log": float(((gt.log() - pred.log()) ** 2).mean().sqrt()),
        "a1": float((thresh < 1.25).double().mean()),
        "a2": float((thresh < 1.25**2).double().mean()),
        "a3": float((thresh < 1.25**3).double().mean()),
    }


def depth_metrics(
    pred: torch.Tensor,
    gt: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    segmentation: torch.Tensor | None = None,
    median_scaling: bool = True,
    min_depth: float = 1e-3,
    max_depth: float = 80.0,
) -> dict[str, dict[str, float]]:
    """Depth metrics over all / static / dynamic (and rigid / non-rigid) pixels.

    Args:
        pred: (..., H, W) predicted depth (any scale when ``median_scaling``), metres.
        gt: (..., H, W) ground-truth depth in metres; non-finite or out of (min_depth, max_depth) is ignored.
        mask: optional (..., H, W) bool of pixels to evaluate.
        segmentation: optional (..., H, W) int labels 0 static / 1 rigid / 2 non-rigid; without it only
            "all" is reported.
        median_scaling: scale each image by median(gt) / median(pred) over its valid pixels first.

    Returns:
        {region: {metric: value}} with regions of :data:`REGIONS` (NaN metrics for an empty region).
    """
    dims: dict = {}
    check_tensor("pred", pred, ("...", "H", "W"), dims=dims, finite=False)
    check_tensor("gt", gt, ("...", "H", "W"), dims=dims, finite=False)
    if pred.shape != gt.shape:
        raise ValueError(f"pred: expected shape {tuple(gt.shape)} like gt, found {tuple(pred.shape)}")
    valid = _valid(gt, pred, min_depth, max_depth)
    if mask is not None:
        if tuple(mask.shape) != tuple(gt.shape):
            raise ValueError(f"mask: expected shape {tuple(gt.shape)}, found {tuple(mask.shape)}")
        valid = valid & mask.bool()
    if not bool(valid.any()):
        raise ValueError("gt: expected at least one valid ground-truth pixel, found none")
    if median_scaling:
        s = median_scale(pred, gt, valid)
        pred = pred * s[..., None, None]
    regions = {"all": None}
    if segmentation is not None:
        if tuple(segmentation.shape) != tuple(gt.shape):
            raise ValueError(f"segmentation: expected shape {tuple(gt.shape)}, found {tuple(segmentation.shape)}")
        regions = REGIONS
    out = {}
    for name, labels in regions.items():
        m = valid
        if labels is not None:
            sel = torch.zeros_like(valid)
            for lab in labels:
                sel |= segmentation == lab
            m = m & sel
        out[name] = depth_errors(pred[m], gt[m])
    return out


SINTEL_MAX_DEPTH = 50.0  # metres: Takmaz et al. evaluate Sintel where the ground-truth depth is < 50 m


def sintel_depth_metrics(
    pred: torch.Tensor,
    gt: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    segmentation: torch.Tensor | None = None,
) -> dict[str, dict[str, float]]:
    """:func:`depth_metrics` under the Sintel protocol of Takmaz et al. (sec. 5 / supplement).

    Only pixels whose ground-truth depth is finite and in (1e-3, 50) m (:data:`SINTEL_MAX_DEPTH`, strict) are
    evaluated, and each image is median-scaled over exactly those pixels (per image, not per sequence).
    pred, gt: (..., H, W) as :func:`depth_metrics`; returns {region: {metric: value}}.
    """
    return depth_metrics(pred, gt, mask=mask, segmentation=segmentation, median_scaling=True,
                         max_depth=SINTEL_MAX_DEPTH)


def constant_depth_baseline(gt: torch.Tensor) -> torch.Tensor:
    """A constant depth map per image (the value is irrelevant under median scaling): (..., H, W)."""
    return torch.ones_like(gt)
