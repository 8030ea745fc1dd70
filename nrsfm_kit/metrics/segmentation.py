"""Binary motion-segmentation metrics: accuracy, IoU of the moving class, ROC over thresholds."""

from __future__ import annotations

import torch

from nrsfm_kit.utils.checks import check_tensor


def _binary(name: str, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, found {type(x).__name__}")
    if x.dtype == torch.bool:
        return x
    if x.is_floating_point() or not bool(((x == 0) | (x == 1)).all()):
        raise ValueError(f"{name}: expected a bool / 0-1 mask, found dtype {x.dtype}")
    return x.bool()


def segmentation_scores(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, float]:
    """ACC, IoU (of the moving class), precision and recall of a binary moving-pixel mask.

    pred, gt: (..., H, W) bool (True = moving); mask: optional bool of pixels to evaluate.
    """
    p, g = _binary("pred", pred), _binary("gt", gt)
    if p.shape != g.shape:
        raise ValueError(f"pred: expected shape {tuple(g.shape)} like gt, found {tuple(p.shape)}")
    if mask is not None:
        if tuple(mask.shape) != tuple(g.shape):
            raise ValueError(f"mask: expected shape {tuple(g.shape)}, found {tuple(mask.shape)}")
        p, g = p[mask.bool()], g[mask.bool()]
    if p.numel() == 0:
        raise ValueError("mask: expected at least one pixel to evaluate, found none")
    tp = int((p & g).sum())
    fp = int((p & ~g).sum())
    fn = int((~p & g).sum())
    union = tp + fp + fn
    return {
        "acc": float((p == g).double().mean()),
        "iou": tp / union if union else 1.0,
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / (tp + fn) if tp + fn else 1.0,
    }


def roc_curve(scores: torch.Tensor, gt: torch.Tensor, num_thresholds: int = 101) -> dict:
    """ROC of ``scores`` (higher = more likely moving) against ``gt`` over thresholds.

    Returns {"thresholds" (T,), "tpr" (T,), "fpr" (T,), "auc": float}; thresholds span [min, max] of the
    scores, the AUC is the trapezoid area under (fpr, tpr) including the (0, 0) and (1, 1) end points.
    """
    check_tensor("scores", scores)
    g = _binary("gt", gt)
    if scores.shape != g.shape:
        raise ValueError(f"scores: expected shape {tuple(g.shape)} like gt, found {tuple(scores.shape)}")
    if int(num_thresholds) < 2:
        raise ValueError(f"num_thresholds: expected >= 2, found {num_thresholds}")
    s, g = scores.reshape(-1).double(), g.reshape(-1)
    pos, neg = int(g.sum()), int((~g).sum())
    if pos == 0 or neg == 0:
        raise ValueError(f"gt: expected both moving and static pixels for a ROC, found {pos} moving, {neg} static")
    th = torch.linspace(float(s.min()), float(s.max()), int(num_thresholds), dtype=torch.float64)
    above = s[None, :] >= th[:, None]
    tpr = (above & g[None]).sum(1).double() / pos
    fpr = (above & ~g[None]).sum(1).double() / neg
    x = torch.cat([torch.tensor([1.0], dtype=torch.float64), fpr, torch.tensor([0.0], dtype=torch.float64)])
    y = torch.cat([torch.tensor([1.0], dtype=torch.float64), tpr, torch.tensor([0.0], dtype=torch.float64)])
    auc = float(-torch.trapezoid(y, x))
    return {"thresholds": th, "tpr": tpr, "fpr": fpr, "auc": auc}
