"""Differentiable Gauss-Newton / Levenberg-Marquardt for embedded-deformation tracking.

Neural Non-Rigid Tracking (Bozic, Palafox et al., NeurIPS 2020) §4.3 and App. B: the solver
Omega(C, W, V) -> T minimises

    E(T) = lambda_2D E_2D + lambda_depth E_depth + lambda_reg E_reg                        (eq. 8)

over node motions T = {(R_i, t_i)}; every step linearises the residuals with the analytic Jacobian
(App. B.1, rotation increments eps on top of R), solves the (damped) normal equations and updates
R_i <- exp(eps_i^) R_i, t_i <- t_i + dt_i. PyTorch back-propagates through everything (App. B.2).

Backward modes (``SolverConfig.backward``):

- ``"unrolled"``: autograd follows all iterations (each step's Jacobian depends on the previous T).
- ``"implicit"``: iterations run without a graph; one differentiable step x = -(J^T J + D)^-1 J^T r is
  taken at the solution T*. Since J^T r = 0 at a stationary point, its derivative is
  dT/dtheta = -(J^T J + D)^-1 d(J^T r)/dtheta, the implicit-function-theorem gradient with the
  Gauss-Newton Hessian: memory independent of the number of iterations. It equals the limit of the
  unrolled gradient when the residuals vanish at the solution (the unrolled one converges to the
  true-Hessian gradient); with large residuals it is an approximation (tests: 0.4 % on a rigid pair).
  The forward value is that of ``max_iter + 1`` iterations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import NamedTuple

import torch

from nrsfm_kit.geometry import so3_exp
from nrsfm_kit.graph.types import DeformationGraph
from nrsfm_kit.kernels.gauss_newton import ResidualBlock

from .config import EnergyTerms, SolverConfig
from .linear import Assembler, dense_solve, pcg_solve
from .problem import Problem, SparseMatches, prepare_problem
from .terms import Linearization, ResidualTerm

__all__ = ["GraphMotion", "solve_deformation", "solve_problem", "residual_blocks", "energy_terms", "apply_step",
           "STANDARD_TERMS"]

#: terms always reported in ``info["energy_terms"]`` (zero when a term is off)
STANDARD_TERMS = ("2d", "depth", "point", "plane", "sparse", "arap")


class GraphMotion(NamedTuple):
    """Node motions T: rotations (..., N, 3, 3) and translations (..., N, 3) metres."""

    rotations: torch.Tensor
    translations: torch.Tensor


def residual_blocks(prob: Problem, R: torch.Tensor, t: torch.Tensor, *, backend: str = "warp") -> list[ResidualBlock]:
    """One :class:`ResidualBlock` per term of ``prob.terms`` at T = (R (B,N,3,3), t (B,N,3)), in term order.

    The terms share one :class:`~nrsfm_kit.solver.terms.Linearization` (warped points computed once per
    point set).
    """
    lin = Linearization(prob.nodes, R, t, backend)
    return [term.linearize(prob.nodes, R, t, backend=backend, cache=lin) for term in prob.terms]


def energy_terms(terms, blocks: list[ResidualBlock]) -> dict[str, torch.Tensor]:
    """Energies per term name (B,) (robust terms: their robust energy), the standard names always present,
    and ``"total"``. ``terms``: a :class:`Problem` or its list of terms, in the order of ``blocks``."""
    terms = terms.terms if isinstance(terms, Problem) else terms
    if len(terms) != len(blocks):
        raise ValueError(f"blocks: expected one block per term ({len(terms)}), found {len(blocks)}")
    out: dict[str, torch.Tensor] = {}
    for term, blk in zip(terms, blocks):
        e = term.energy(blk)
        out[term.name] = out[term.name] + e if term.name in out else e
    like = blocks[0].r if blocks else None
    for name in STANDARD_TERMS:
        if name not in out and like is not None:
            out[name] = like.new_zeros(like.shape[0])
    out["total"] = sum(v for v in out.values()) if out else torch.zeros(())
    return out


def _mask_blocks(blocks: list[ResidualBlock], valid_nodes: torch.Tensor) -> list[ResidualBlock]:
    """Zero the Jacobian columns of frozen (invalid) nodes (matrix-free PCG path)."""
    out = []
    for blk in blocks:
        c = blk.cols.long()
        m = valid_nodes[:, c.clamp(min=0)] & (c >= 0)
        m6 = m.to(blk.J.dtype).repeat_interleave(6, dim=-1).unsqueeze(2)  # (B, G, 1, nb*6)
        out.append(ResidualBlock(blk.J * m6, blk.r, blk.cols, blk.energy))
    return out


def apply_step(R: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """R_i <- exp(eps_i^) R_i, t_i <- t_i + dt_i with x (B, 6N) = (eps_i, dt_i) per node (App. A)."""
    B, N = t.shape[:2]
    x = x.view(B, N, 6)
    return so3_exp(x[..., :3]) @ R, t + x[..., 3:]


def _solve_step(blocks, prob: Problem, damping: torch.Tensor, cfg: SolverConfig, asm: Assembler) -> torch.Tensor:
    m = prob.valid_nodes.to(blocks[0].J.dtype)
    diag = (damping[:, None] * m + (1 - m) + cfg.jitter).repeat_interleave(6, dim=1)  # (B, 6N)
    if cfg.linear_solver == "dense":
        return dense_solve(blocks, diag, prob.num_nodes, cfg.backend, valid_nodes=prob.valid_nodes, assembler=asm)
    masked = _mask_blocks(blocks, prob.valid_nodes)
    return pcg_solve(masked, diag, prob.num_nodes, max_iter=cfg.cg_max_iter, tol=cfg.cg_tol, backend=cfg.backend,
                     unrolled=cfg.cg_backward == "unrolled")


def _energies(prob: Problem, blocks) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in energy_terms(prob.terms, blocks).items()}


def _iterate(prob: Problem, R, t, cfg: SolverConfig, asm: Assembler):
    """The GN / LM loop. Returns R, t, damping, history dict of per-iteration tensors."""
    B = R.shape[0]
    lam0 = cfg.damping if cfg.method == "lm" else 0.0
    damping = torch.full((B,), lam0, dtype=R.dtype, device=R.device)
    blocks = residual_blocks(prob, R, t, backend=cfg.backend)
    e = _energies(prob, blocks)
    hist = {k: [v] for k, v in e.items()}
    hist["damping"] = [damping.clone()]
    hist["accepted"] = []
    for it in range(cfg.max_iter):
        x = _solve_step(blocks, prob, damping, cfg, asm)
        Rc, tc = apply_step(R, t, x)
        last = it == cfg.max_iter - 1
        if cfg.adaptive_damping and cfg.method == "lm":
            cand = residual_blocks(prob, Rc, tc, backend=cfg.backend)
            ec = _energies(prob, cand)
            acc = ec["total"] <= e["total"]  # robust terms: their robust energies
            R = torch.where(acc.view(B, 1, 1, 1), Rc, R)
            t = torch.where(acc.view(B, 1, 1), tc, t)
            blocks = [_select_block(acc, c, o) for c, o in zip(cand, blocks)]
            e = {k: torch.where(acc, ec[k], e[k]) for k in e}
            damping = torch.where(acc, damping / cfg.damping_factor, damping * cfg.damping_factor)
        else:
            acc = torch.ones(B, dtype=torch.bool, device=R.device)
            R, t = Rc, tc
            if last:
                with torch.no_grad():
                    blocks = residual_blocks(prob, R.detach(), t.detach(), backend=cfg.backend)
            else:
                blocks = residual_blocks(prob, R, t, backend=cfg.backend)
            e = _energies(prob, blocks)
        for k, v in e.items():
            hist[k].append(v)
        hist["damping"].append(damping.clone())
        hist["accepted"].append(acc)
        if cfg.tol is not None:
            prev, cur = hist["total"][-2], hist["total"][-1]
            rel = (prev - cur).abs() / prev.clamp_min(torch.finfo(prev.dtype).tiny)
            if bool(((rel < cfg.tol) | (cur <= torch.finfo(cur.dtype).tiny)).all()):
                break
    return R, t, damping, hist


def _select_block(acc: torch.Tensor, new: ResidualBlock, old: ResidualBlock) -> ResidualBlock:
    B = acc.shape[0]
    energy = None if new.energy is None else torch.where(acc, new.energy, old.energy)
    return ResidualBlock(torch.where(acc.view(B, 1, 1, 1), new.J, old.J), torch.where(acc.view(B, 1, 1), new.r, old.r),
                         new.cols, energy)


def solve_problem(prob: Problem, cfg: SolverConfig, init: GraphMotion | None = None):
    """Run the solver on a prepared :class:`Problem` (its list of terms); returns (GraphMotion (B, N, ...), history)."""
    if not isinstance(cfg, SolverConfig):
        raise ValueError(f"cfg: expected a SolverConfig, found {type(cfg).__name__}")
    if not prob.terms:
        raise ValueError("prob.terms: expected at least one residual term, found none (every lambda is 0)")
    B, N = prob.batch, prob.num_nodes
    dt, dev = prob.nodes.dtype, prob.nodes.device
    if init is None:
        R0 = torch.eye(3, dtype=dt, device=dev).expand(B, N, 3, 3)
        t0 = torch.zeros(B, N, 3, dtype=dt, device=dev)
    else:
        R0 = init.rotations.to(dt).expand(B, N, 3, 3)
        t0 = init.translations.to(dt).expand(B, N, 3)
    asm = Assembler(N, cfg.assembly, cfg.backend)
    if cfg.backward == "unrolled":
        R, t, _, hist = _iterate(prob, R0, t0, cfg, asm)
    else:
        with torch.no_grad():
            R, t, damping, hist = _iterate(prob, R0.detach(), t0.detach(), cfg, asm)
        blocks = residual_blocks(prob, R, t, backend=cfg.backend)
        x = _solve_step(blocks, prob, damping, cfg, asm)
        R, t = apply_step(R, t, x)
    return GraphMotion(R, t), hist


def solve_deformation(
    graph: DeformationGraph,
    source_points: torch.Tensor,
    correspondences: torch.Tensor,
    weights: torch.Tensor | None,
    target_depth: torch.Tensor,
    intrinsics,
    *,
    terms: EnergyTerms | None = None,
    solver: str | None = None,
    max_iter: int | None = None,
    config: SolverConfig | None = None,
    anchors: torch.Tensor | None = None,
    anchor_weights: torch.Tensor | None = None,
    target_points: torch.Tensor | None = None,
    target_normals: torch.Tensor | None = None,
    sparse: SparseMatches | None = None,
    init: GraphMotion | None = None,
    extra_terms: Sequence[ResidualTerm] = (),
) -> tuple[GraphMotion, dict]:
    """Non-rigid alignment Omega(C, W, V) -> T, differentiable w.r.t. correspondences, weights, depth, points.

    Two input layouts:

    - **list**: ``source_points`` (P, 3) or (B, P, 3) metres with ``anchors`` (P, A) / ``anchor_weights``
      (P, A) given; ``correspondences`` (P, 2) or (B, P, 2) target pixels; ``weights`` (P,) / (B, P).
    - **image**: ``anchors=None``: ``source_points`` (H, W, 3) or (B, H, W, 3), anchors from
      ``graph.pixel_anchors`` (H, W, A); ``correspondences`` (H, W, 2) or (B, H, W, 2); weights (B, H, W).

    A leading B on ``correspondences`` batches B frame pairs sharing the graph (one solve per pair, run
    together). Other inputs: ``target_depth`` (H', W') or (B, H', W') metres (<= 0 invalid);
    ``intrinsics`` (4,) / 3x3 / 4x4 or batched; ``target_points`` / ``target_normals`` (B, P, 3) for the
    point-to-point / point-to-plane terms (target points default to the back-projection of c_u with the
    sampled target depth); ``sparse`` extra point-to-point matches; ``init`` initial motion.

    Args:
        terms: energy weights (defaults of the paper: lambda_2D 0.001, lambda_depth 1, lambda_reg 1).
        solver: "dense" or "pcg"; when given, overrides ``config.linear_solver`` (default: the config's,
            "dense").
        max_iter: iterations; when given, overrides ``config.max_iter`` (default: the config's, the
            reference code's 3).
        config: other settings (:class:`SolverConfig`: method gn/lm, damping 0.1, tolerance, backward mode,
            Warp or torch backend, min_cluster_correspondences 2000, ...).
        extra_terms: further :class:`~nrsfm_kit.solver.terms.ResidualTerm` objects (e.g. a robust
            photometric or heatmap term) added to the energy built from ``terms``.

    Returns:
        (T, info): T = GraphMotion(rotations (B, N, 3, 3), translations (B, N, 3)) (no B when the inputs
        had none); info = {"energy": (B, I+1) total energy per iteration (I = iterations run),
        "energy_terms": {term name: (B, I+1)} (the standard
        names 2d, depth, point, plane, sparse, arap always, and every extra term's name), "valid_nodes": (B, N) bool, "valid_points": (B, P) bool,
        "cluster_correspondences": (B, C), "damping": (B, I+1), "accepted": (B, I), "iterations": I}.
        Frozen nodes (clusters with too few correspondences) keep ``init`` (identity by default).

    Raises:
        ValueError: wrong shapes/dtypes, non-finite weights/intrinsics/graph, bad settings.
    """
    terms = EnergyTerms() if terms is None else terms
    cfg = SolverConfig() if config is None else config
    if not isinstance(cfg, SolverConfig):
        raise ValueError(f"config: expected a SolverConfig, found {type(cfg).__name__}")
    overrides = {k: v for k, v in (("linear_solver", solver), ("max_iter", max_iter)) if v is not None}
    if overrides:
        cfg = replace(cfg, **overrides)
    prob = prepare_problem(graph, source_points, correspondences, weights, target_depth, intrinsics, terms=terms,
                           anchors=anchors, anchor_weights=anchor_weights, target_points=target_points,
                           target_normals=target_normals, sparse=sparse,
                           min_cluster_correspondences=cfg.min_cluster_correspondences, min_depth=cfg.min_depth,
                           extra_terms=extra_terms)
    if init is not None:
        if not isinstance(init, GraphMotion):
            init = GraphMotion(*init)
        N = prob.num_nodes
        from nrsfm_kit.utils.checks import check_tensor

        check_tensor("init.rotations", init.rotations, ("...", N, 3, 3))
        check_tensor("init.translations", init.translations, ("...", N, 3))
    T, hist = solve_problem(prob, cfg, init)
    stack = lambda xs: torch.stack(xs, -1)  # noqa: E731
    info = {
        "energy": stack(hist["total"]),
        "energy_terms": {k: stack(v) for k, v in hist.items() if k not in ("total", "damping", "accepted")},
        "valid_nodes": prob.valid_nodes,
        "valid_points": prob.valid_points_full,
        "cluster_correspondences": prob.cluster_correspondences,
        "damping": stack(hist["damping"]),
        "accepted": stack(hist["accepted"]) if hist["accepted"] else torch.zeros(
            prob.batch, 0, dtype=torch.bool, device=prob.nodes.device),
        "iterations": len(hist["accepted"]),
    }
    if not prob.batched:
        T = GraphMotion(T.rotations[0], T.translations[0])
        info = {k: (v[0] if isinstance(v, torch.Tensor) else ({kk: vv[0] for kk, vv in v.items()}
                                                                  if isinstance(v, dict) else v))
                for k, v in info.items()}
    return T, info
