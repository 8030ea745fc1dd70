"""Training losses of Neural Non-Rigid Tracking (Bozic, Palafox et al., NeurIPS 2020), eq. 13-16 and App. C.

    L = lambda_corr L_corr + lambda_graph L_graph + lambda_warp L_warp                                  (eq. 13)

- **L_corr** (eq. 14, 21): the robust q-norm (|du| + |dv| + eps)^q, q = 0.4, eps = 0.01, of the PWC-Net flow
  predictions at every pyramid level l (they are flow / 20 in full-resolution pixels) against the ground-truth
  flow divided by 20 and downsampled to that level, masked by valid ground truth, averaged over the valid
  pixels of each level and summed over the levels.
- **L_graph** (eq. 15): squared error of the node translations, ||t_i - t~_i||^2, over the valid nodes
  (those of clusters kept by the solver's cluster filtering, App. C.2), averaged.
- **L_warp** (eq. 16): ||Q(p, T) - (p + s~)||^2 over valid source points, averaged.
- A solve whose mean node-translation error exceeds 0.5 m is invalidated (:func:`valid_solves`): its pair is
  left out of L_graph and L_warp instead of back-propagating a diverged solve (reference code).

Weights: the paper's (lambda_corr, lambda_graph, lambda_warp) = (1, 5, 5) for the solver and joint stages,
(0, 1000, 1000) when only Psi trains; the reference code uses (5, 2, 2): both are :data:`PRESETS`.
Downsampling of the ground truth (ours; the paper does not state it): area averaging (mean over each coarse
pixel's footprint) of the masked flow and of the mask; a pixel is valid at level l only when every
full-resolution pixel under its footprint is valid (the averaged mask is 1), so no invalid flow leaks in.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nrsfm_kit.utils.checks import check_positive, check_shape, check_tensor

__all__ = ["LossWeights", "PRESETS", "robust_qnorm", "downsample_flow", "correspondence_loss", "graph_loss",
           "warp_loss", "valid_solves", "multiscale_epe_loss"]

FLOW_SCALE = 20.0  # PWC-Net predicts flow / 20 at every level


@dataclass(frozen=True)
class LossWeights:
    """lambda_corr, lambda_graph, lambda_warp of eq. 13."""

    corr: float = 1.0
    graph: float = 5.0
    warp: float = 5.0

    def __post_init__(self) -> None:
        for name in ("corr", "graph", "warp"):
            check_positive(f"lambda_{name}", getattr(self, name), strict=False)


#: stage -> weights; "paper" values of sec. 5.1 (default) and the reference code's ("reference")
PRESETS = {
    "paper": {"flow": LossWeights(1.0, 0.0, 0.0), "solver": LossWeights(1.0, 5.0, 5.0),
              "mask": LossWeights(0.0, 1000.0, 1000.0), "refine": LossWeights(1.0, 5.0, 5.0)},
    "reference": {"flow": LossWeights(1.0, 0.0, 0.0), "solver": LossWeights(5.0, 2.0, 2.0),
                  "mask": LossWeights(0.0, 1000.0, 1000.0), "refine": LossWeights(5.0, 2.0, 2.0)},
}


def robust_qnorm(diff: torch.Tensor, q: float = 0.4, eps: float = 0.01) -> torch.Tensor:
    """(|du| + |dv| + eps)^q of flow differences diff (..., 2, H, W) -> (..., H, W) (eq. 21)."""
    check_positive("q", q)
    check_positive("eps", eps)
    return (diff.abs().sum(-3) + eps) ** q


def downsample_flow(flow: torch.Tensor, valid: torch.Tensor, size: tuple[int, int]):
    """Ground truth at a pyramid level: (flow / 20 (B, 2, h, w), valid (B, h, w) bool).

    flow: (B, 2, H, W) pixels (non-finite where invalid); valid: (B, H, W) bool. Area averaging of the masked
    flow; a coarse pixel is valid only where the averaged mask is 1 (all its footprint valid).
    """
    check_tensor("flow", flow, ("B", 2, "H", "W"), finite=False)
    check_shape("valid", valid, (flow.shape[0], flow.shape[2], flow.shape[3]))
    ok = valid.bool() & torch.isfinite(flow).all(1)
    f = torch.where(ok.unsqueeze(1), flow, torch.zeros_like(flow)) / FLOW_SCALE
    m = ok.to(flow.dtype).unsqueeze(1)
    if tuple(size) == tuple(flow.shape[-2:]):
        return f, ok
    fd = F.interpolate(f, size=size, mode="area")
    md = F.interpolate(m, size=size, mode="area")
    return fd, md[:, 0] > 1 - 1e-6


def _sum_of_level_means(flows, gt_flow, gt_valid, per_pixel) -> torch.Tensor:
    """sum over levels of the mean of ``per_pixel(pred - gt_l)`` (B, h, w) over the valid pixels of each level."""
    if not flows:
        raise ValueError("flows: expected at least one level, found none")
    total = gt_flow.new_zeros(())
    for k, pred in enumerate(flows):
        check_tensor(f"flows[{k}]", pred, (gt_flow.shape[0], 2, None, None))
        target, ok = downsample_flow(gt_flow, gt_valid, tuple(pred.shape[-2:]))
        n = ok.sum()
        if int(n):
            total = total + (per_pixel(pred - target) * ok).sum() / n
    return total


def correspondence_loss(flows: list[torch.Tensor], gt_flow: torch.Tensor, gt_valid: torch.Tensor,
                        q: float = 0.4, eps: float = 0.01) -> torch.Tensor:
    """L_corr (eq. 14): sum over levels of the mean robust q-norm over valid pixels.

    Args:
        flows: PWC-Net predictions, each (B, 2, h_l, w_l) = flow / 20 (full-resolution pixels / 20).
        gt_flow: (B, 2, H, W) ground-truth optical flow, pixels (non-finite where unknown).
        gt_valid: (B, H, W) bool.

    Returns:
        scalar; levels without any valid pixel contribute 0.
    """
    return _sum_of_level_means(flows, gt_flow, gt_valid, lambda d: robust_qnorm(d, q, eps))


def multiscale_epe_loss(flows: list[torch.Tensor], gt_flow: torch.Tensor, gt_valid: torch.Tensor) -> torch.Tensor:
    """Pre-training loss of the flow network: sum over levels of the mean end-point error ||f_l - f~_l||_2 (in
    flow / 20 units) over valid pixels.

    PWC-Net (Sun et al. 2018) pre-trains with this L2 multi-scale loss and switches to the robust q-norm
    (:func:`correspondence_loss`) for fine-tuning; it weights the per-level *sums* over pixels by
    0.32 / 0.08 / 0.02 / 0.01 / 0.005 (levels 6..2), which roughly equalises the levels. We average over the
    pixels of each level instead and weight the levels equally (ours; the same balance without the constants).
    """
    return _sum_of_level_means(flows, gt_flow, gt_valid, lambda d: d.square().sum(1).add(1e-12).sqrt())


def valid_solves(translations: torch.Tensor, gt_translations: torch.Tensor, node_valid: torch.Tensor,
                 max_error: float = 0.5) -> torch.Tensor:
    """(B,) bool: pairs whose mean node-translation error over valid nodes is at most ``max_error`` metres
    (and finite); others are invalidated (left out of L_graph / L_warp)."""
    err = (translations.detach() - gt_translations).norm(dim=-1)
    v = node_valid.bool() & torch.isfinite(err)
    mean = torch.where(v, err, torch.zeros_like(err)).sum(-1) / v.sum(-1).clamp(min=1)
    return (mean <= max_error) & v.any(-1)


def _masked_mean_sq(x: torch.Tensor, target: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """mean over v of ||x - target||^2 (target may be non-finite outside v); 0 (still differentiable) if v is empty."""
    target = torch.where(v.unsqueeze(-1), target, torch.zeros_like(target))
    sq = ((x - target) ** 2).sum(-1)
    n = v.sum()
    return (sq * v).sum() / n if int(n) else sq.sum() * 0.0


def graph_loss(translations: torch.Tensor, gt_translations: torch.Tensor, node_valid: torch.Tensor,
               pair_valid: torch.Tensor | None = None) -> torch.Tensor:
    """L_graph: mean ||t_i - t~_i||^2 (m^2) over valid nodes of valid pairs; translations, gt (B, N, 3),
    node_valid (B, N) bool, pair_valid (B,) bool (default all)."""
    dims: dict = {}
    check_tensor("translations", translations, ("B", "N", 3), dims=dims)
    check_tensor("gt_translations", gt_translations, ("B", "N", 3), dims=dims, finite=False)
    check_shape("node_valid", node_valid, ("B", "N"), dims)
    v = node_valid.bool() & torch.isfinite(gt_translations).all(-1)
    if pair_valid is not None:
        v = v & pair_valid.view(-1, 1)
    return _masked_mean_sq(translations, gt_translations, v)


def warp_loss(warped: torch.Tensor, source_points: torch.Tensor, scene_flow: torch.Tensor, point_valid: torch.Tensor,
              pair_valid: torch.Tensor | None = None) -> torch.Tensor:
    """L_warp (eq. 16): mean ||Q(p, T) - (p + s~)||^2 (m^2) over valid points of valid pairs; (B, P, 3) each,
    point_valid (B, P) bool."""
    dims: dict = {}
    check_tensor("warped", warped, ("B", "P", 3), dims=dims)
    check_tensor("source_points", source_points, ("B", "P", 3), dims=dims, finite=False)
    check_tensor("scene_flow", scene_flow, ("B", "P", 3), dims=dims, finite=False)
    check_shape("point_valid", point_valid, ("B", "P"), dims)
    target = source_points + scene_flow
    v = point_valid.bool() & torch.isfinite(target).all(-1)
    if pair_valid is not None:
        v = v & pair_valid.view(-1, 1)
    return _masked_mean_sq(warped, target, v)
