"""Differentiable Gauss-Newton / Levenberg-Marquardt solver for non-rigid tracking.

Neural Non-Rigid Tracking (Bozic, Palafox et al., NeurIPS 2020) §4.3 and App. B, with the data terms
of DeepDeform / DynamicFusion on the same machinery. Entry point: :func:`solve_deformation`.

- :mod:`.config`: :class:`EnergyTerms` (lambdas) and :class:`SolverConfig` (reference-code defaults).
- :mod:`.terms`: the residual terms as units (:class:`ResidualTerm`, :class:`PointTerm`; 2D, depth,
  point, plane, sparse matches, ARAP, photometric, silhouette, heatmap); :mod:`.robust`: Huber /
  Cauchy / Tukey by IRLS (:class:`Robust`).
- :mod:`.problem`: input validation in steps (dense correspondences, sparse matches, cluster
  filtering), masking of bad input, bilinear depth sampling; builds the list of terms.
- :mod:`.gauss_newton`: the GN/LM loop over any list of terms, unrolled or implicit backward.
- :mod:`.linear`: block assembly of J^T J, dense Cholesky and matrix-free PCG solves with their
  backward (App. B.2).
- :mod:`.reference`: the straightforward torch reference (autograd Jacobian + dense solve), scipy check.
- :mod:`.synthetic`: synthetic problems with exact ground truth.
Kernels: :mod:`nrsfm_kit.kernels.gauss_newton` (Warp) with pure-torch references.

Batching convention: a leading batch dim B of frame pairs on everything that changes per pair
(points, motions, correspondences, weights, targets, intrinsics); graph data (nodes, edges, anchors,
skinning weights) shared, without B. Names load lazily (PEP 562).
"""

from nrsfm_kit.utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "config": ["EnergyTerms", "SolverConfig"],
    "gauss_newton": ["GraphMotion", "apply_step", "energy_terms", "residual_blocks", "solve_deformation",
                     "solve_problem", "STANDARD_TERMS"],
    "linear": ["Assembler", "dense_solve", "pcg_solve"],
    "problem": ["Problem", "SparseMatches", "prepare_problem", "sample_depth_bilinear", "sample_bilinear"],
    "terms": ["ResidualTerm", "PointTerm", "PointSet", "Reprojection2D", "Depth", "PointToPoint", "PointToPlane",
              "ImageSampled", "Photometric", "Silhouette", "Heatmap", "Arap"],
    "robust": ["Robust", "Huber", "Cauchy", "Tukey"],
})
