"""Straightforward references of the solver: same energy, no analytic Jacobians, no kernels.

- :func:`residual_vector`: the full residual vector of eq. 8-11 (plus the extra data terms) written
  directly with the warp field Q (:func:`nrsfm_kit.kernels.warp_field.warp_points_torch`), projection
  and ARAP residuals, as a function of the stacked node increments x (N, 6) = (eps_i, dt_i).
- :func:`autograd_blocks` / :func:`reference_solve`: Gauss-Newton / LM with the Jacobian from autograd
  (``torch.func.jacrev`` vmapped over points and edges, as autograd-mode solvers do) and a dense
  ``torch.linalg.solve``: the baseline of the benchmark and an independent check of the analytic path.
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

__all__ = ["residual_vector", "autograd_blocks", "dense_jacobian", "reference_solve", "scipy_solve"]


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


def _point_residuals(x, p, alpha, v, Ra, ta, corr, tz, tp, nrm, wt, intr, min_depth: float):
    """Residual rows (7,) of one point as a function of its anchors' increments x (A, 6)."""
    Rn = so3_exp(x[:, :3]) @ Ra
    q = (alpha.unsqueeze(-1) * ((Rn @ (p - v).unsqueeze(-1)).squeeze(-1) + v + ta + x[:, 3:])).sum(0)
    fx, fy, cx, cy = intr.unbind(-1)
    ok = q[2] > min_depth
    zs = torch.where(ok, q[2], torch.ones_like(q[2]))
    w2 = wt[0] * ok.to(q.dtype)
    dq = q - tp
    return torch.stack([w2 * (fx * q[0] / zs + cx - corr[0]), w2 * (fy * q[1] / zs + cy - corr[1]),
                        wt[1] * (q[2] - tz), wt[2] * dq[0], wt[2] * dq[1], wt[2] * dq[2], wt[3] * (nrm * dq).sum()])


def _edge_residuals(x, vi, vj, Ri, ti, tj, s):
    """ARAP rows (3,) of one edge as a function of the increments x (2, 6) of nodes i and j."""
    Rn = so3_exp(x[0, :3]) @ Ri
    return s * (Rn @ (vj - vi) + vi + ti + x[0, 3:] - vj - tj - x[1, 3:])


def autograd_blocks(prob: Problem, R: torch.Tensor, t: torch.Tensor, min_depth: float = 1e-3):
    """Residual families with Jacobians from autograd (``torch.func.jacrev`` vmapped over points and edges).

    Same layout as :func:`nrsfm_kit.solver.residual_blocks`; no analytic derivative anywhere.
    """
    from nrsfm_kit.kernels.gauss_newton import ResidualBlock

    B, P = prob.points.shape[:2]
    A = prob.anchors.shape[1]
    ok = prob.anchors >= 0
    idx = prob.anchors.clamp(min=0)
    alpha = torch.where(ok, prob.anchor_weights, torch.zeros_like(prob.anchor_weights))
    x0 = torch.zeros(A, 6, dtype=R.dtype, device=R.device)
    f = lambda x, *a: _point_residuals(x, *a, min_depth=min_depth)  # noqa: E731
    jac = torch.func.vmap(torch.func.jacrev(f), in_dims=(None, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
    val = torch.func.vmap(f, in_dims=(None, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
    flat = lambda x: x.reshape(B * P, *x.shape[2:])  # noqa: E731
    args = (flat(prob.points), alpha.expand(B, P, A).reshape(B * P, A), prob.nodes[idx].expand(B, P, A, 3).reshape(
        B * P, A, 3), flat(R[:, idx]), flat(t[:, idx]), flat(prob.corr), flat(prob.target_z), flat(prob.target_points),
        flat(prob.normals), flat(prob.wt), prob.intrinsics.unsqueeze(1).expand(B, P, 4).reshape(B * P, 4))
    Jd = jac(x0, *args).reshape(B, P, 7, A * 6)
    rd = val(x0, *args).reshape(B, P, 7)
    N, K = prob.edges.shape
    i = torch.arange(N, device=R.device).repeat_interleave(K)
    j = prob.edges.reshape(-1)
    e_ok = j >= 0
    jj = j.clamp(min=0)
    E = N * K
    sc = prob.arap_scale.reshape(-1)
    eargs = (prob.nodes[i].expand(B, E, 3), prob.nodes[jj].expand(B, E, 3), R[:, i], t[:, i], t[:, jj],
             sc.expand(B, E))
    eargs = tuple(a.reshape(B * E, *a.shape[2:]) for a in eargs)
    x2 = torch.zeros(2, 6, dtype=R.dtype, device=R.device)
    Ja = torch.func.vmap(torch.func.jacrev(_edge_residuals), in_dims=(None, 0, 0, 0, 0, 0, 0))(x2, *eargs)
    ra = torch.func.vmap(_edge_residuals, in_dims=(None, 0, 0, 0, 0, 0, 0))(x2, *eargs)
    cols_a = torch.stack([torch.where(e_ok, i, -1), torch.where(e_ok, j, -1)], 1).to(torch.int32)
    return [ResidualBlock(Jd, rd, prob.anchors.to(torch.int32)),
            ResidualBlock(Ja.reshape(B, E, 3, 12), ra.reshape(B, E, 3), cols_a)]


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
    matmuls, ``torch.linalg.solve``; autograd differentiates through everything. Only the rows of active
    terms are kept. GN / LM with fixed damping. Returns GraphMotion (B, N, ...)."""
    from .gauss_newton import _mask_blocks, apply_step

    B, N = prob.points.shape[0], prob.num_nodes
    dt, dev = prob.points.dtype, prob.points.device
    R = torch.eye(3, dtype=dt, device=dev).expand(B, N, 3, 3)
    t = torch.zeros(B, N, 3, dtype=dt, device=dev)
    lam = cfg.damping if cfg.method == "lm" else 0.0
    m = prob.valid_nodes.to(dt)
    diag = (lam * m + (1 - m) + cfg.jitter).repeat_interleave(6, dim=1)
    active = (prob.wt.detach() != 0).flatten(0, 1).any(0)  # (4,) term switches: 2d, depth, point, plane
    keep = torch.tensor([0, 1, 2, 3, 4, 5, 6], device=dev)[active[[0, 0, 1, 2, 2, 2, 3]]]
    for _ in range(cfg.max_iter):
        blocks = _mask_blocks(autograd_blocks(prob, R, t, cfg.min_depth), prob.valid_nodes)
        J, r = dense_jacobian(blocks, N, rows=[keep, None])
        Jt = J.transpose(1, 2)
        A = Jt @ J + torch.diag_embed(diag)
        x = torch.linalg.solve(A, -(Jt @ r.unsqueeze(-1)).squeeze(-1))
        R, t = apply_step(R, t, x)
    return GraphMotion(R, t)


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
