"""Learning correspondence weights end to end through the solver (Neural Non-Rigid Tracking §4.2-4.4).

The paper's weighting network is trained without weight labels: the weights w_u only enter the
Gauss-Newton energy, and the loss on the solver's output (node motions / warped points) is
back-propagated through the solve (App. B.2) into them. Here the "network" is one free logit per
correspondence, w_u = sigmoid(theta_u), so the experiment isolates that mechanism: on a synthetic pair
with planted outlier correspondences, gradient descent through the solver drives the outliers' weights
down because they pull the solution away from the ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nrsfm_kit.kernels.warp_field import warp_points_torch
from nrsfm_kit.train import TrainConfig, fit

from .config import EnergyTerms, SolverConfig
from .gauss_newton import solve_deformation
from .synthetic import SyntheticTracking

__all__ = ["WeightLearningResult", "plant_outliers", "warp_error", "learn_correspondence_weights"]


@dataclass
class WeightLearningResult:
    weights: torch.Tensor  # (P,) learned weights in (0, 1)
    is_outlier: torch.Tensor  # (P,) bool
    error_before: float  # mean |Q(p; T) - target| (metres) with uniform weights
    error_after: float  # the same with the learned weights
    history: list[dict]


def plant_outliers(s: SyntheticTracking, fraction: float = 0.2, magnitude: float = 12.0, seed: int = 0):
    """Corrupt a fraction of the correspondences of pair 0 by random offsets of ``magnitude`` pixels.

    Returns (correspondences (P, 2), is_outlier (P,) bool)."""
    g = torch.Generator().manual_seed(seed)
    P = s.correspondences.shape[1]
    out = torch.rand(P, generator=g) < fraction
    ang = 2 * torch.pi * torch.rand(P, generator=g, dtype=s.correspondences.dtype)
    off = magnitude * torch.stack([ang.cos(), ang.sin()], -1)
    corr = s.correspondences[0] + off * out.unsqueeze(-1).to(off.dtype)
    return corr, out


def warp_error(s: SyntheticTracking, T) -> torch.Tensor:
    """Mean distance (metres) between the warped source points under T (N, ...) and the true targets."""
    q = warp_points_torch(s.source_points, s.anchors, s.anchor_weights, s.graph.nodes, T.rotations, T.translations)
    return (q - s.target_points[0]).norm(dim=-1).mean()


class _Logits(torch.nn.Module):
    def __init__(self, P: int, init: float, dtype):
        super().__init__()
        self.theta = torch.nn.Parameter(torch.full((P,), init, dtype=dtype))

    def forward(self) -> torch.Tensor:
        return torch.sigmoid(self.theta)


def learn_correspondence_weights(s: SyntheticTracking, corr: torch.Tensor, is_outlier: torch.Tensor, *,
                                 steps: int = 60, lr: float = 0.5, terms: EnergyTerms | None = None,
                                 config: SolverConfig | None = None, progress: bool = True) -> WeightLearningResult:
    """Gradient descent on per-correspondence logits through ``solve_deformation`` (loss: warp error).

    Args:
        s: synthetic pair (pair 0 is used); corr: (P, 2) corrupted correspondences; is_outlier: (P,) bool.
        steps, lr: Adam steps and learning rate. terms / config: solver settings (default: the paper's
            lambdas, 3 LM iterations, min 50 correspondences per cluster for these small problems).
    """
    terms = terms or EnergyTerms()
    cfg = config or SolverConfig(min_cluster_correspondences=50)
    model = _Logits(corr.shape[0], 2.0, corr.dtype)

    def solve(w):
        T, _ = solve_deformation(s.graph, s.source_points, corr, w, s.target_depth[0], s.intrinsics,
                                 anchors=s.anchors, anchor_weights=s.anchor_weights, terms=terms,
                                 solver=cfg.linear_solver, max_iter=cfg.max_iter, config=cfg)
        return T

    with torch.no_grad():
        before = float(warp_error(s, solve(torch.ones_like(corr[:, 0]))))

    def step_fn(m, step):
        w = m()
        loss = warp_error(s, solve(w)) * 1e3  # millimetres
        o = is_outlier
        wd = w.detach()
        return {"loss": loss, "w_outliers": float(wd[o].mean()) if o.any() else 0.0,
                "w_inliers": float(wd[~o].mean())}

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    res = fit(model, step_fn, opt, TrainConfig(steps=steps, seed=0, log_every=1, progress=progress,
                                               desc="learn weights"))
    with torch.no_grad():
        w = model()
        after = float(warp_error(s, solve(w)))
    return WeightLearningResult(weights=w.detach(), is_outlier=is_outlier, error_before=before, error_after=after,
                                history=res.history)
