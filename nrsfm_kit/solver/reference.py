"""Straightforward references of the solver: same energy, no analytic Jacobians, no kernels.

- :func:`residual_vector`: the full residual vector of eq. 8-11 (plus the extra data terms) written
  directly with the warp field Q (:func:`nrsfm_kit.kernels.warp_field.warp_points_torch`), projection
  and ARAP residuals, as a function of the stacked node increments x (N, 6) = (eps_i, dt_i).
- :func:`reference_solve`: Gauss-Newton / LM with the Jacobian from autograd
  (``torch.autograd.functional.jacobian``, kept in the graph) and a dense ``torch.linalg.solve``: the
  baseline of the benchmark and an independent check of the analytic path.
- :func:`scipy_solve`: the same energy minimised by ``scipy.optimize.least_squares`` with node
  rotations parametrised by axis-angle (R_i = exp(w_i^)).
"""

from __future__ import annotations

import numpy as np
import torch

from nrsfm_kit.geometry import so3_exp
from nrsfm_kit.kernels.warp_field import arap_residuals_torch, warp_points_torch

from .config import SolverConfig
from .gauss_newton import GraphMotion
from .problem import Problem

__all__ = ["residual_vector", "reference_solve", "scipy_solve"]


def residual_vector(x: torch.Tensor, prob: Problem, R0: torch.Tensor, t0: torch.Tensor, b: int = 0,
                    min_depth: float = 1e-3) -> torch.Tensor:
    """All residuals of frame pair ``b`` at R = exp(eps^) R0, t = t0 + dt, x (N, 6): (M,) vector."""
    N = prob.num_nodes
    x = x.view(N, 6)
    R = so3_exp(x[:, :3]) @ R0
    t = t0 + x[:, 3:]
    q = warp_points_torch(prob.points[b], prob.anchors, prob.anchor_weights, prob.nodes, R, t)
    fx, fy, cx, cy = prob.intrinsics[b].unbind(-1)
    z = q[:, 2]
    ok = z > min_depth
    zs = torch.where(ok, z, torch.ones_like(z))
    w2, wd, wpt, wpl = (prob.wt[b] * 1).unbind(-1)
    w2 = w2 * ok.to(q.dtype)
    u = w2 * (fx * q[:, 0] / zs + cx - prob.corr[b, :, 0])
    v = w2 * (fy * q[:, 1] / zs + cy - prob.corr[b, :, 1])
    d = wd * (z - prob.target_z[b])
    dq = q - prob.target_points[b]
    pt = wpt.unsqueeze(-1) * dq
    pl = wpl * (prob.normals[b] * dq).sum(-1)
    arap = arap_residuals_torch(prob.nodes, prob.edges, R, t) * prob.arap_scale.unsqueeze(-1)
    return torch.cat([u, v, d, pt.reshape(-1), pl, arap.reshape(-1)])


def _frozen_diag(prob: Problem, b: int, damping: float, jitter: float) -> torch.Tensor:
    m = prob.valid_nodes[b].to(prob.points.dtype).repeat_interleave(6)
    return damping * m + (1 - m) + jitter, m


def reference_solve(prob: Problem, cfg: SolverConfig) -> GraphMotion:
    """GN / LM (fixed damping) with autograd Jacobians and dense solves; differentiable (B, N, ...)."""
    B, N = prob.points.shape[0], prob.num_nodes
    dt, dev = prob.points.dtype, prob.points.device
    Rs, ts = [], []
    lam = cfg.damping if cfg.method == "lm" else 0.0
    for b in range(B):
        R = torch.eye(3, dtype=dt, device=dev).expand(N, 3, 3)
        t = torch.zeros(N, 3, dtype=dt, device=dev)
        diag, m = _frozen_diag(prob, b, lam, cfg.jitter)
        for _ in range(cfg.max_iter):
            x0 = torch.zeros(N * 6, dtype=dt, device=dev)
            f = lambda x, R=R, t=t, b=b: residual_vector(x, prob, R, t, b, cfg.min_depth)  # noqa: E731
            r = f(x0)
            J = torch.autograd.functional.jacobian(f, x0, create_graph=torch.is_grad_enabled(), vectorize=True)
            J = J * m
            A = J.T @ J + torch.diag(diag)
            x = torch.linalg.solve(A, -(J.T @ r))
            R = so3_exp(x.view(N, 6)[:, :3]) @ R
            t = t + x.view(N, 6)[:, 3:]
        Rs.append(R)
        ts.append(t)
    return GraphMotion(torch.stack(Rs), torch.stack(ts))


def scipy_solve(prob: Problem, b: int = 0, min_depth: float = 1e-3, **kwargs) -> tuple[GraphMotion, float]:
    """Minimise the same energy with ``scipy.optimize.least_squares`` (axis-angle parametrisation).

    Frozen nodes are kept at the identity. Returns (GraphMotion (N, ...), final energy sum r^2).
    """
    from scipy.optimize import least_squares

    prob = prob.detached()
    N = prob.num_nodes
    dt = prob.points.dtype
    eye = torch.eye(3, dtype=dt).expand(N, 3, 3)
    zero = torch.zeros(N, 3, dtype=dt)
    m = prob.valid_nodes[b].repeat_interleave(6).numpy()

    def full(xv):
        x = np.zeros(6 * N)
        x[m] = xv
        return torch.as_tensor(x, dtype=dt)

    def fun(xv):
        return residual_vector(full(xv), prob, eye, zero, b, min_depth).numpy()

    def jac(xv):
        J = torch.autograd.functional.jacobian(lambda x: residual_vector(x, prob, eye, zero, b, min_depth),
                                               full(xv), vectorize=True)
        return J.numpy()[:, m]

    opts = {"method": "lm", "xtol": 1e-15, "ftol": 1e-15, "gtol": 1e-15, "max_nfev": 200, **kwargs}
    res = least_squares(fun, np.zeros(int(m.sum())), jac=jac, **opts)
    x = full(res.x).view(N, 6)
    return GraphMotion(so3_exp(x[:, :3]), x[:, 3:]), float((res.fun**2).sum())
