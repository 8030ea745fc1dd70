"""Unsupervised motion segmentation from motion embeddings (Takmaz et al., Sec. 4.4).

The static (background) embedding is the channel-wise median of the embeddings over the image border
(the border is mostly static scene); a pixel is moving when its embedding is farther than a threshold
from it. Scores are the distances, so a ROC over thresholds needs no training.
"""

from __future__ import annotations

import torch

from nrsfm_kit.utils.checks import check_tensor


def static_embedding(embeddings: torch.Tensor, border: int = 4) -> torch.Tensor:
    """Channel-wise median over a border of ``border`` pixels: (..., C, H, W) -> (..., C)."""
    check_tensor("embeddings", embeddings, ("...", "C", "H", "W"))
    H, W = embeddings.shape[-2:]
    b = int(border)
    if b < 1 or 2 * b >= min(H, W):
        raise ValueError(f"border: expected 1 <= border < min(H, W) / 2 = {min(H, W) / 2}, found {border}")
    m = torch.zeros(H, W, dtype=torch.bool, device=embeddings.device)
    m[:b], m[-b:], m[:, :b], m[:, -b:] = True, True, True, True
    return embeddings[..., m].median(dim=-1).values


def motion_scores(embeddings: torch.Tensor, border: int = 4) -> torch.Tensor:
    """||m(p) - m_static||: (..., C, H, W) -> (..., H, W) (higher = more likely moving)."""
    ms = static_embedding(embeddings, border)
    return (embeddings - ms[..., None, None]).norm(dim=-3)


def segment_motion(embeddings: torch.Tensor, threshold: float = 0.5, border: int = 4) -> torch.Tensor:
    """Moving-pixel mask: scores > threshold: (..., C, H, W) -> (..., H, W) bool."""
    if not float(threshold) >= 0:
        raise ValueError(f"threshold: expected >= 0, found {threshold!r}")
    return motion_scores(embeddings, border) > float(threshold)


def best_threshold(scores: torch.Tensor, gt: torch.Tensor, num: int = 101) -> tuple[float, float]:
    """Oracle threshold maximising the IoU of the moving class (for reporting ROC-style upper bounds).

    Returns (threshold, iou).
    """
    from nrsfm_kit.metrics.segmentation import segmentation_scores

    th = torch.linspace(float(scores.min()), float(scores.max()), int(num))
    best = (float(th[0]), -1.0)
    for t in th.tolist():
        iou = segmentation_scores(scores > t, gt.bool())["iou"]
        if iou > best[1]:
            best = (t, iou)
    return best
