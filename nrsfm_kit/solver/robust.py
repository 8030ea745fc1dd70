"""Robust losses for any residual term, by iteratively reweighted least squares (IRLS).

A robust term replaces the squared norm s_g = ||r_g||^2 of each residual group g (one point's rows, or
one edge's) by c^2 rho(s_g / c^2), with the loss scale c in the residual's units:

    Huber         rho(s) = s                   (s <= 1),   2 sqrt(s) - 1              (s > 1)
    Cauchy        rho(s) = log(1 + s)                                     (alias "lorentzian")
    Tukey         rho(s) = (1 - (1 - s)^3) / 3 (s <= 1),   1 / 3                      (s > 1)

All three have rho(s) ~ s near 0, so a robust term equals the plain term for small residuals.
IRLS (as Ceres / Theseus do without the second-order correction): at every linearisation each group
gets the weight omega_g = rho'(s_g / c^2) and the Gauss-Newton step is taken on the reweighted rows
sqrt(omega_g) r_g, sqrt(omega_g) J_g; weights are recomputed at every iteration, and the LM
accept/reject test compares robust energies sum_g c^2 rho(s_g / c^2).

Backward (``weight_grad``):

- ``"stop"`` (default): the weights are treated as constants in the backward (``omega.detach()``),
  i.e. the gradient of a weighted least-squares solve with the weights given. With the implicit
  backward this is the implicit-function gradient of the stationarity of the IRLS problem whose
  weights are frozen at the solution.
- ``"through"``: autograd also differentiates omega(r): the implicit step then differentiates
  J^T omega(r) r = grad E_robust / 2, i.e. the full first-order condition of the robust energy (the
  Gauss-Newton part of its Hessian stays J^T omega J). Unrolled: gradients flow through every
  iteration's weights.
"""

from __future__ import annotations

import torch

from nrsfm_kit.kernels.gauss_newton import ResidualBlock
from nrsfm_kit.utils.checks import check_positive

from .terms import ResidualTerm

__all__ = ["RobustLoss", "Huber", "Cauchy", "Tukey", "ROBUST_LOSSES", "robust_loss", "Robust"]


class RobustLoss:
    """rho(s) of the squared norm s (in units of the loss scale squared) and its IRLS weight."""

    name = "loss"

    def rho(self, s: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sqrt_weight(self, s: torch.Tensor) -> torch.Tensor:
        """sqrt(rho'(s)), written directly so that it stays differentiable where rho' vanishes."""
        raise NotImplementedError

    def weight(self, s: torch.Tensor) -> torch.Tensor:
        return self.sqrt_weight(s) ** 2


class Huber(RobustLoss):
    name = "huber"

    def rho(self, s):
        return torch.where(s <= 1, s, 2 * torch.sqrt(s.clamp(min=1)) - 1)

    def sqrt_weight(self, s):
        return torch.where(s <= 1, torch.ones_like(s), s.clamp(min=1) ** -0.25)


class Cauchy(RobustLoss):
    name = "cauchy"

    def rho(self, s):
        return torch.log1p(s)

    def sqrt_weight(self, s):
        return torch.rsqrt(1 + s)


class Tukey(RobustLoss):
    name = "tukey"

    def rho(self, s):
        return torch.where(s <= 1, (1 - (1 - s.clamp(max=1)) ** 3) / 3, torch.full_like(s, 1 / 3))

    def sqrt_weight(self, s):
        return (1 - s).clamp(min=0)


ROBUST_LOSSES: dict[str, type[RobustLoss]] = {"huber": Huber, "cauchy": Cauchy, "lorentzian": Cauchy,
                                              "tukey": Tukey}


def robust_loss(loss: str | RobustLoss) -> RobustLoss:
    """A :class:`RobustLoss` from its name (``"huber"``, ``"cauchy"`` / ``"lorentzian"``, ``"tukey"``)."""
    if isinstance(loss, RobustLoss):
        return loss
    if loss not in ROBUST_LOSSES:
        raise ValueError(f"loss: expected one of {sorted(ROBUST_LOSSES)} or a RobustLoss, found {loss!r}")
    return ROBUST_LOSSES[loss]()


class Robust(ResidualTerm):
    """``term`` with a robust loss on the squared norm of each of its residual groups (IRLS).

    Args:
        term: any :class:`ResidualTerm`.
        loss: "huber", "cauchy" / "lorentzian", "tukey" or a :class:`RobustLoss`.
        scale: loss scale c (> 0) in the units of the term's weighted residuals (e.g. pixels x
            sqrt(lambda_2D) for the 2D term).
        weight_grad: "stop" (weights constant in the backward) or "through" (see the module docstring).
    """

    def __init__(self, term: ResidualTerm, loss: str | RobustLoss = "huber", scale: float = 1.0, *,
                 weight_grad: str = "stop"):
        if not isinstance(term, ResidualTerm):
            raise ValueError(f"term: expected a ResidualTerm, found {type(term).__name__}")
        if weight_grad not in ("stop", "through"):
            raise ValueError(f"weight_grad: expected 'stop' or 'through', found {weight_grad!r}")
        self.term, self.loss = term, robust_loss(loss)
        self.scale = check_positive("scale", scale)
        self.weight_grad = weight_grad
        self.name, self.weight = term.name, term.weight

    @property
    def cols(self) -> torch.Tensor:
        return self.term.cols

    def _reweight(self, r: torch.Tensor):
        """sqrt(omega) (B, G, 1) and robust energy (B,) of residuals r (B, G, g)."""
        c2 = self.scale**2
        s = (r**2).sum(-1) / c2
        sw = self.loss.sqrt_weight(s)
        if self.weight_grad == "stop":
            sw = sw.detach()
        return sw.unsqueeze(-1), (c2 * self.loss.rho(s)).sum(-1)

    def linearize(self, nodes, R, t, *, backend="warp", cache=None) -> ResidualBlock:
        blk = self.term.linearize(nodes, R, t, backend=backend, cache=cache)
        sw, e = self._reweight(blk.r)
        return ResidualBlock(blk.J * sw.unsqueeze(-1), blk.r * sw, blk.cols, e)

    def values(self, nodes, R, t) -> torch.Tensor:
        r = self.term.values(nodes, R, t)
        return r * self._reweight(r)[0]

    def __repr__(self) -> str:
        return f"Robust({self.term!r}, loss={self.loss.name!r}, scale={self.scale}, weight_grad={self.weight_grad!r})"
