"""Straightforward references of the solver: same energy, no analytic Jacobians, no kernels.

Generic over the residual terms (:mod:`nrsfm_kit.solver.terms`): every term gives its residuals in plain
torch (:meth:`~nrsfm_kit.solver.terms.ResidualTerm.values`), and autograd does the rest.

- :func:`residual_vector`: all residuals of a frame pair, term after term, as a function of the
  stacked node increments x (N, 6) = (eps_i, dt_i).
- :func:`autograd_blocks` / :func:`reference_solve`: Gauss-Newton / LM with the Jacobian from autograd
  (point terms: forward-mode derivatives w.r.t. each point's own anchor increments, vmapped, as
  autograd-mode solvers do; other terms: the dense Jacobian of their values) and a dense
  ``torch.linalg.solve``: the baseline of the benchmark and an independent check of the analytic path.
- :func:`scipy_solve`: the same energy minimised by ``scipy.optimize.least_squares`` with node
  rotations parametrised by axis-angle (R_i = exp(w_i^)).
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import torch

from nrsfm_kit.geometry import so3_exp

from .config import SolverConfig
from .gauss_newton import GraphMotion
from .problem import Problem
from .terms import PointTerm, ResidualBlock

__all__ = ["residual_vector", "autograd_blocks", "dense_jacobian", "reference_solve", "scipy_solve"]


def _increment(x: torch.Tensor, R0: torch.Tensor, t0: torch.Tensor):
    N = R0.shape[-3]
    x = x.reshape(*x.shape[:-1], N, 6) if x.shape[-1] == 6 * N else x
    return so3_exp(x[..., :3]) @ R0, t0 + x[..., 3:]


def residual_vector(x: torch.Tensor, prob: Problem, R0: torch.Tensor, t0: torch.Tensor, b: int = 0) -> torch.Tensor:
    """All residuals of frame pair ``b`` at R = exp(eps^) R0, t = t0 + dt, x (N, 6) or (6N,): (M,) vector,
    in term order, group by group (the row order of :func:`dense_jacobian` of the solver's blocks).
    ``R0`` (N, 3, 3), ``t0`` (N, 3)."""
    B = prob.batch
    R, t = _increment(x.reshape(prob.num_nodes, 6), R0, t0)
    Rb, tb = R.expand(B, *R.shape), t.expand(B, *t.shape)  # pair b's rows depend on its own motion only
    return torch.cat([term.values(prob.nodes, Rb, tb)[b].reshape(-1) for term in prob.terms])


@contextlib.contextmanager
def _quiet_forward_ad():
    """torch's first forward-mode AD call scripts its jvp decompositions with the deprecated torch.jit.script
    (a DeprecationWarning from torch's internals, not from this code): silenced here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=DeprecationWarning)
        yield


def _point_block(term: PointTerm, nodes: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> ResidualBlock:
    """Jacobian of a point term by forward-mode autograd w.r.t. each point's own anchor increments."""
    ps = term.points
    B, P = ps.points.shape[:2]
    A = ps.anchors.shape[1]
    ok = ps.anchors >= 0
    idx = ps.anchors.clamp(min=0)
    alpha = torch.where(ok, ps.anchor_weights, torch.zeros_like(ps.anchor_weights)).unsqueeze(-1)
    lever = ps.points.unsqueeze(-2) - nodes[idx]  # (B, P, A, 3)
    Ra, ta = R[:, idx], t[:, idx]

    def residuals(xa):  # xa (B, P, A, 6): each point's own increments of its anchors' motions
        Rn = so3_exp(xa[..., :3]) @ Ra
        moved = (Rn @ lever.unsqueeze(-1)).squeeze(-1) + nodes[idx] + ta + xa[..., 3:]
        return term.residual((alpha * moved).sum(-2), "torch")[0]

    x0 = torch.zeros(B, P, A, 6, dtype=R.dtype, device=R.device)
    eye = torch.eye(A * 6, dtype=R.dtype, device=R.device).view(A * 6, 1, 1, A, 6).expand(A * 6, B, P, A, 6)
    r = residuals(x0)
    with _quiet_forward_ad():
        J = torch.func.vmap(lambda v: torch.func.jvp(residuals, (x0,), (v,))[1])(eye)  # (A*6, B, P, m)
    return ResidualBlock(J.permute(1, 2, 3, 0), r, ps.anchors)


def _dense_block(term, nodes: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> ResidualBlock:
    """Jacobian of any term's values w.r.t. all node increments (one group over all nodes)."""
    B, N = t.shape[:2]

    def values(x):  # x (B, 6N)
        Rn, tn = _increment(x, R, t)
        return term.values(nodes, Rn, tn).reshape(B, -1)

    x0 = torch.zeros(B, 6 * N, dtype=R.dtype, device=R.device)
    r = values(x0)
    with _quiet_forward_ad():
        J = torch.func.jacfwd(values)(x0)  # (B, M, B, 6N): pairs are independent, keep the diagonal
    J = torch.stack([J[b, :, b] for b in range(B)])
    cols = torch.arange(N, device=nodes.device).unsqueeze(0)
    return ResidualBlock(J.unsqueeze(1), r.unsqueeze(1), cols)


def autograd_blocks(prob: Problem, R: torch.Tensor, t: torch.Tensor):
    """One block per term with Jacobians from autograd only (no analytic derivative anywhere):
    point terms in the solver's layout, other terms as one dense group over all nodes."""
    return [_point_block(term, prob.nodes, R, t) if isinstance(term, PointTerm) else
            _dense_block(term, prob.nodes, R, t) for term in prob.terms]


def dense_jacobian(blocks, num_nodes: int, rows: list[torch.Tensor] | None = None):
    """Scatter block-sparse families into one dense Jacobian (B, M, 6N) and residual (B, M) (differentiable).

    ``rows``: per family, the row indices (within a group) to keep (e.g. only the active terms).
    """
    Js, rs = [], []
    for k, blk in enumerate(blocks):
        J, r, cols = blk.J, blk.r, blk.cols.long()
        if rows is not None and rows[k] is not None:
            J, r = J[:, :, rows[k]], r[:, :, rows[k]]
        B, G, g, nb6 = J.shape
        ok = (cols >= 0).repeat_interleave(6, dim=1)  # (G, nb6)
        c6 = (cols.clamp(min=0).unsqueeze(-1) * 6 + torch.arange(6, device=cols.device)).reshape(G, nb6)
        D = torch.zeros(B, G, g, 6 * num_nodes, dtype=J.dtype, device=J.device)
        idx = c6.view(1, G, 1, nb6).expand(B, G, g, nb6)
        D = D.scatter_add(3, idx, J * ok.view(1, G, 1, nb6).to(J.dtype))
        Js.append(D.reshape(B, G * g, -1))
        rs.append(r.reshape(B, -1))
    return torch.cat(Js, 1), torch.cat(rs, 1)


def reference_solve(prob: Problem, cfg: SolverConfig) -> GraphMotion:
    """The straightforward torch reference: Jacobian by autograd (:func:`autograd_blocks`), written into
    a dense (M, 6N) matrix as the NeuralTracking reference code does, A = J^T J + D and J^T r by dense
    matmuls, ``torch.linalg.solve``; autograd differentiates through everything. GN / LM with fixed damping. Returns GraphMotion (B, N, ...)."""
    from .gauss_newton import _mask_blocks, apply_step

    B, N = prob.batch, prob.num_nodes
    dt, dev = prob.nodes.dtype, prob.nodes.device
    R = torch.eye(3, dtype=dt, device=dev).expand(B, N, 3, 3)
    t = torch.zeros(B, N, 3, dtype=dt, device=dev)
    lam = cfg.damping if cfg.method == "lm" else 0.0
    m = prob.valid_nodes.to(dt)
    diag = (lam * m + (1 - m) + cfg.jitter).repeat_interleave(6, dim=1)
    for _ in range(cfg.max_iter):
        blocks = _mask_blocks(autograd_blocks(prob, R, t), prob.valid_nodes)
        J, r = dense_jacobian(blocks, N)
        Jt = J.transpose(1, 2)
        A = Jt @ J + torch.diag_embed(diag)
        x = torch.linalg.solve(A, -(Jt @ r.unsqueeze(-1)).squeeze(-1))
        R, t = apply_step(R, t, x)
    return GraphMotion(R, t)


def scipy_solve(prob: Problem, b: int = 0, **kwargs) -> tuple[GraphMotion, float]:
    """Minimise the same energy with ``scipy.optimize.least_squares`` (axis-angle parametrisation).

    Frozen nodes are kept at the identity. Returns (GraphMotion (N, ...), final energy sum r^2).
    """
    from scipy.optimize import least_squares

    prob = prob.detached()
    N = prob.num_nodes
    dt = prob.nodes.dtype
    eye = torch.eye(3, dtype=dt).expand(N, 3, 3)
    zero = torch.zeros(N, 3, dtype=dt)
    m = prob.valid_nodes[b].repeat_interleave(6).numpy()

    def full(xv):
        x = np.zeros(6 * N)
        x[m] = xv
        return torch.as_tensor(x, dtype=dt)

    def fun(xv):
        return residual_vector(full(xv), prob, eye, zero, b).numpy()

    def jac(xv):
        J = torch.autograd.functional.jacobian(lambda x: residual_vector(x, prob, eye, zero, b),
                                               full(xv), vectorize=True)
        return J.numpy()[:, m]

    opts = {"method": "lm", "xtol": 1e-15, "ftol": 1e-15, "gtol": 1e-15, "max_nfev": 200, **kwargs}
    res = least_squares(fun, np.zeros(int(m.sum())), jac=jac, **opts)
    x = full(res.x).view(N, 6)
    return GraphMotion(so3_exp(x[:, :3]), x[:, 3:]), float((res.fun**2).sum())
