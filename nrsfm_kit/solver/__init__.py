"""Differentiable Gauss-Newton / Levenberg-Marquardt solver for non-rigid tracking.

Neural Non-Rigid Tracking (Bozic, Palafox et al., NeurIPS 2020) §4.3 and App. B, with the data terms
of DeepDeform / DynamicFusion on the same machinery. Entry point: :func:`solve_deformation`.

- :mod:`.config`: :class:`EnergyTerms` (lambdas) and :class:`SolverConfig` (reference-code defaults).
- :mod:`.problem`: input validation, masking of bad input, cluster filtering, bilinear depth sampling.
- :mod:`.gauss_newton`: the GN/LM loop, unrolled or implicit backward.
- :mod:`.linear`: dense Cholesky and matrix-free PCG solves with their backward (App. B.2).
- :mod:`.reference`: the straightforward torch reference (autograd Jacobian + dense solve), scipy check.
- :mod:`.synthetic`: synthetic problems with exact ground truth.
Kernels: :mod:`nrsfm_kit.kernels.gauss_newton` (Warp) with pure-torch references.
"""

from .config import EnergyTerms, SolverConfig
from .gauss_newton import (
    GraphMotion,
    apply_step,
    energy_terms,
    residual_blocks,
    solve_deformation,
    solve_problem,
)
from .linear import dense_solve, pcg_solve
from .problem import Problem, SparseMatches, prepare_problem, sample_depth_bilinear

__all__ = [
    "EnergyTerms", "SolverConfig", "GraphMotion", "solve_deformation", "solve_problem", "residual_blocks",
    "energy_terms", "apply_step", "dense_solve", "pcg_solve", "Problem", "SparseMatches", "prepare_problem",
    "sample_depth_bilinear",
]
