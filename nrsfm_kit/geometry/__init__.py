"""Geometry core: pinhole and orthographic cameras, SO(3), Procrustes, Gram matrices and EDMs.

Batched torch, differentiable (every function is gradchecked in float64), points as rows.
"""

from nrsfm_kit.geometry.edm import edm, edm_from_gram, gram, gram_from_edm, pair_sq_distances
from nrsfm_kit.geometry.orthographic import (
    matrix_to_rotation_6d,
    orthographic_project,
    orthonormalize,
    rotation_6d_to_matrix,
)
from nrsfm_kit.geometry.pinhole import (
    as_intrinsics,
    backproject,
    depth_to_points,
    intrinsics_matrix,
    pixel_grid,
    project,
    project_jacobian,
    project_with_mask,
)
from nrsfm_kit.geometry.procrustes import procrustes, procrustes_align
from nrsfm_kit.geometry.so3 import delta_rotation_update, hat, random_rotation, so3_exp, so3_log, vee

__all__ = [
    "as_intrinsics", "backproject", "delta_rotation_update", "depth_to_points", "edm", "edm_from_gram",
    "gram", "gram_from_edm", "hat", "intrinsics_matrix", "matrix_to_rotation_6d", "orthographic_project",
    "orthonormalize", "pair_sq_distances", "pixel_grid", "procrustes", "procrustes_align", "project",
    "project_jacobian", "project_with_mask", "random_rotation", "rotation_6d_to_matrix", "so3_exp",
    "so3_log", "vee",
]
