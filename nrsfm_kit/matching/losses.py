"""Training losses of DeepDeform's Siamese matcher (Bozic et al., CVPR 2020, sec. 3).

For a pair with ground-truth match at target-patch pixel p~ = (x~, y~) (x = column, y = row, pixels,
possibly fractional), depth d~ (metres) and visibility label v~ in {0, 1}:

    G(p)  = exp(-||p - p~||^2 / (2 sigma^2))                 unnormalised Gaussian, 1 at p~ (sigma = 7 px)
    w_H   = 1 + 10 G                                          heatmap weights
    L_H   = BCE(w_H (H_sg - G)) + lambda_nll NLL(w_H (H_sm - G))
    L_D   = sum_p G(p) (D(p) - d~)^2 / sum_p G(p)             weighted MSE, w_D = G
    L_V   = BCE(V, v~)
    L     = L_H + lambda_D L_D + lambda_V L_V

The paper writes L_H in the shorthand above; the interpretation implemented here (per sample b, then
averaged over the *visible* samples, i.e. v~_b = 1; samples with v~_b = 0 only enter L_V):

    BCE_b = (1 / S^2) sum_p w_H(p) [ -G(p) log sigmoid(l(p)) - (1 - G(p)) log(1 - sigmoid(l(p))) ]
    NLL_b = - sum_p w_H(p) G_n(p) log H_sm(p) / sum_p w_H(p) G_n(p),    G_n = G / sum_p G
    L_H   = mean_b [ BCE_b + lambda_nll NLL_b ]

with l the logits; the BCE is evaluated in the stable form of ``binary_cross_entropy_with_logits``,
softplus(l) - G l, and log H_sm = ``log_softmax`` of the logits over the S^2 pixels (both stable for large
logits; both differentiable w.r.t. the logits and G). NLL_b is the cross-entropy between the
w_H-reweighted target distribution and H_sm (G_n's normalisation cancels in the ratio; it is kept to
match the "target distribution" reading). Weights (sec. 3): sigma = 7 px, w_H = 1 + 10 G,
lambda_nll = 10, lambda_D = 100, lambda_V = 1 (:class:`MatcherLossConfig`).

Training stages (App. A.2): ``"heatmap_depth"`` optimises L_H + lambda_D L_D with the whole network;
``"visibility"`` then optimises lambda_V L_V with only the visibility head trainable
(:meth:`nrsfm_kit.models.matcher.SiameseMatcher.freeze_for_visibility`); ``"all"`` sums both.

Non-visible samples may carry any (even non-finite) target pixel and depth: they are masked out before
any arithmetic, so they add neither NaN values nor NaN gradients. With no visible sample in the batch,
L_H and L_D are an exact 0 that still back-propagates (zero gradients).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nrsfm_kit.models.matcher import MatcherOutput
from nrsfm_kit.utils.checks import check_positive, check_tensor

__all__ = [
    "MatcherLossConfig",
    "STAGES",
    "gaussian_heatmap",
    "heatmap_loss",
    "depth_loss",
    "visibility_loss",
    "matcher_loss",
]

STAGES = ("heatmap_depth", "visibility", "all")
_TINY = 1e-12  # floor of the Gaussian mass, only reached when p~ lies far outside the patch


@dataclass
class MatcherLossConfig:
    """Weights of the matcher loss (DeepDeform sec. 3).

    Attributes:
        sigma: standard deviation of the ground-truth Gaussian heatmap G, pixels (paper: 7).
        heatmap_weight: a in w_H = 1 + a G (paper: 10).
        lambda_nll: weight of the NLL (softmax) term inside L_H (paper: 10).
        lambda_depth: lambda_D, weight of the depth loss (paper: 100).
        lambda_visibility: lambda_V, weight of the visibility loss (paper: 1).
    """

    sigma: float = 7.0
    heatmap_weight: float = 10.0
    lambda_nll: float = 10.0
    lambda_depth: float = 100.0
    lambda_visibility: float = 1.0

    def __post_init__(self) -> None:
        check_positive("sigma", self.sigma)
        for name in ("heatmap_weight", "lambda_nll", "lambda_depth", "lambda_visibility"):
            check_positive(name, getattr(self, name), strict=False)


def gaussian_heatmap(target_px: torch.Tensor, size: int, sigma: float = 7.0) -> torch.Tensor:
    """Unnormalised Gaussian G(p) = exp(-||p - p~||^2 / (2 sigma^2)) on an S x S pixel grid.

    Pixel (row i, column j) sits at p = (x, y) = (j, i); G is 1 at p~ when p~ is a pixel centre and is
    differentiable w.r.t. ``target_px``.

    Args:
        target_px: (B, 2) float, p~ = (x, y) = (column, row) in patch pixels, may be fractional.
        size: S, side of the patch in pixels.
        sigma: standard deviation in pixels (> 0).
    Returns:
        (B, S, S) G in (0, 1], dtype and device of ``target_px``.
    """
    check_tensor("target_px", target_px, (None, 2))
    if isinstance(size, bool) or int(size) != size or size < 1:
        raise ValueError(f"size: expected an integer >= 1, found {size!r}")
    sigma = check_positive("sigma", sigma)
    r = torch.arange(int(size), dtype=target_px.dtype, device=target_px.device)
    dx = r.view(1, 1, -1) - target_px[:, 0].view(-1, 1, 1)
    dy = r.view(1, -1, 1) - target_px[:, 1].view(-1, 1, 1)
    return torch.exp(-(dx * dx + dy * dy) / (2.0 * sigma * sigma))


def _visible_mask(visible: torch.Tensor | None, b: int, device: torch.device) -> torch.Tensor:
    if visible is None:
        return torch.ones(b, dtype=torch.bool, device=device)
    if not isinstance(visible, torch.Tensor):
        raise ValueError(f"visible: expected a torch.Tensor, found {type(visible).__name__}")
    if visible.dtype != torch.bool:
        raise ValueError(f"visible: expected dtype torch.bool, found {visible.dtype}")
    check_tensor("visible", visible, (b,), floating=False)
    return visible


def _mean_over(per_sample: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of (B,) ``per_sample`` over ``mask``; an exact 0 (with a graph) when nothing is selected."""
    zero = torch.zeros((), dtype=per_sample.dtype, device=per_sample.device)
    picked = torch.where(mask, per_sample, zero)
    return picked.sum() / mask.sum().clamp_min(1).to(per_sample.dtype)


def _check_out(out: MatcherOutput, *fields: str) -> dict:
    if not isinstance(out, MatcherOutput):
        raise ValueError(f"out: expected a MatcherOutput, found {type(out).__name__}")
    dims: dict = {}
    spec = {"logits": ("B", "S", "S"), "depth": ("B", "S", "S"), "visibility_logit": ("B",)}
    for f in fields:
        check_tensor(f"out.{f}", getattr(out, f), spec[f], dims=dims)
    return dims


def heatmap_loss(
    out: MatcherOutput,
    G: torch.Tensor,
    cfg: MatcherLossConfig | None = None,
    visible: torch.Tensor | None = None,
) -> torch.Tensor:
    """L_H = mean over visible b of [BCE_b + lambda_nll NLL_b] (formulas in the module docstring).

    Args:
        out: the network output; only ``out.logits`` (B, S, S) is used.
        G: (B, S, S) ground-truth Gaussian (:func:`gaussian_heatmap`), in [0, 1].
        cfg: weights (``heatmap_weight`` a in w_H = 1 + a G, ``lambda_nll``); paper values by default.
        visible: (B,) bool, samples whose match is visible (None = all); the others are left out.
    Returns:
        scalar loss (0 when no sample is visible).
    """
    cfg = cfg or MatcherLossConfig()
    dims = _check_out(out, "logits")
    logits = out.logits
    b = dims["B"]
    mask = _visible_mask(visible, b, logits.device)
    check_tensor("G", G, (b, dims["S"], dims["S"]), finite=False)
    zero = torch.zeros((), dtype=G.dtype, device=G.device)
    G = torch.where(mask.view(-1, 1, 1), G, zero)  # non-visible targets never enter the arithmetic
    check_tensor("G", G)  # visible rows must be finite
    w = 1.0 + cfg.heatmap_weight * G
    # BCE(sigmoid(l), G) = softplus(l) - G l: binary_cross_entropy_with_logits' stable form, written out so that
    # it is also differentiable w.r.t. G (torch's weight argument is not)
    bce = (w * (F.softplus(logits) - G * logits)).flatten(1).mean(1)
    g_n = G / G.flatten(1).sum(1).clamp_min(_TINY).view(-1, 1, 1)
    wg = (w * g_n).flatten(1)
    log_sm = torch.log_softmax(logits.flatten(1), dim=1)
    nll = -(wg * log_sm).sum(1) / wg.sum(1).clamp_min(_TINY)
    return _mean_over(bce + cfg.lambda_nll * nll, mask)


def depth_loss(
    out: MatcherOutput,
    target_depth: torch.Tensor,
    G: torch.Tensor,
    visible: torch.Tensor | None = None,
) -> torch.Tensor:
    """L_D = mean over visible b of sum_p G(p) (D(p) - d~_b)^2 / sum_p G(p) (weighted MSE, w_D = G).

    Args:
        out: the network output; only ``out.depth`` (B, S, S) metres is used.
        target_depth: (B,) ground-truth depth d~ of the match in the target camera, metres.
        G: (B, S, S) ground-truth Gaussian (:func:`gaussian_heatmap`).
        visible: (B,) bool (None = all); only visible samples contribute.
    Returns:
        scalar loss, metres^2 (0 when no sample is visible).
    """
    dims = _check_out(out, "depth")
    b, s = dims["B"], dims["S"]
    mask = _visible_mask(visible, b, out.depth.device)
    check_tensor("target_depth", target_depth, (b,), finite=False)
    check_tensor("G", G, (b, s, s), finite=False)
    zero = torch.zeros((), dtype=target_depth.dtype, device=target_depth.device)
    target_depth = torch.where(mask, target_depth, zero)
    G = torch.where(mask.view(-1, 1, 1), G, zero.to(G.dtype))
    check_tensor("target_depth", target_depth)
    check_tensor("G", G)
    err = (out.depth - target_depth.view(-1, 1, 1)) ** 2
    per = (G * err).flatten(1).sum(1) / G.flatten(1).sum(1).clamp_min(_TINY)
    return _mean_over(per, mask)


def visibility_loss(out: MatcherOutput, visible: torch.Tensor) -> torch.Tensor:
    """L_V = mean_b BCE(sigmoid(out.visibility_logit_b), visible_b) (``binary_cross_entropy_with_logits``).

    Args:
        out: the network output; only ``out.visibility_logit`` (B,) is used.
        visible: (B,) bool visibility labels.
    Returns:
        scalar loss.
    """
    dims = _check_out(out, "visibility_logit")
    mask = _visible_mask(visible, dims["B"], out.visibility_logit.device)
    logit = out.visibility_logit
    return F.binary_cross_entropy_with_logits(logit, mask.to(logit.dtype))


def matcher_loss(
    out: MatcherOutput,
    target_px: torch.Tensor,
    target_depth: torch.Tensor,
    visible: torch.Tensor,
    cfg: MatcherLossConfig | None = None,
    *,
    stage: str = "heatmap_depth",
) -> dict[str, torch.Tensor]:
    """The matcher's training loss of one stage (App. A.2).

    Args:
        out: :class:`MatcherOutput` of B pairs of side S.
        target_px: (B, 2) ground-truth match (x, y) = (column, row) in target-patch pixels; rows of
            non-visible samples are ignored (may be non-finite).
        target_depth: (B,) ground-truth depth of the match, metres (ignored where not visible).
        visible: (B,) bool visibility labels.
        cfg: loss weights (paper values by default).
        stage: ``"heatmap_depth"`` -> L_H + lambda_D L_D; ``"visibility"`` -> lambda_V L_V;
            ``"all"`` -> the sum of both.
    Returns:
        dict with ``"loss"`` (the stage's total) and the unweighted terms ``"heatmap"`` (L_H),
        ``"depth"`` (L_D) and ``"visibility"`` (L_V), scalars.
    """
    cfg = cfg or MatcherLossConfig()
    if stage not in STAGES:
        raise ValueError(f"stage: expected one of {STAGES}, found {stage!r}")
    dims = _check_out(out, "logits", "depth", "visibility_logit")
    b, s = dims["B"], dims["S"]
    mask = _visible_mask(visible, b, out.logits.device)
    check_tensor("target_px", target_px, (b, 2), finite=False)
    check_tensor("target_depth", target_depth, (b,), finite=False)
    zero = torch.zeros((), dtype=target_px.dtype, device=target_px.device)
    px = torch.where(mask.view(-1, 1), target_px, zero)
    check_tensor("target_px", px)  # visible rows must be finite
    G = gaussian_heatmap(px, s, cfg.sigma)
    terms = {
        "heatmap": heatmap_loss(out, G, cfg, mask),
        "depth": depth_loss(out, target_depth, G, mask),
        "visibility": visibility_loss(out, mask),
    }
    main = terms["heatmap"] + cfg.lambda_depth * terms["depth"]
    vis = cfg.lambda_visibility * terms["visibility"]
    loss = {"heatmap_depth": main, "visibility": vis, "all": main + vis}[stage]
    return {"loss": loss, **terms}
