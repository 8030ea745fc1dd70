"""Geometry core: pinhole and orthographic cameras, SO(3), Procrustes, Gram matrices and EDMs.

Batched torch, differentiable (every function is gradchecked in float64), points as rows.
Names load lazily (PEP 562); ``edm`` and ``procrustes`` are the functions (as they were with eager imports).
"""

from nrsfm_kit.utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "edm": ["edm", "edm_from_gram", "gram", "gram_from_edm", "pair_sq_distances"],
    "orthographic": ["matrix_to_rotation_6d", "orthographic_project", "orthonormalize", "rotation_6d_to_matrix"],
    "pinhole": ["as_intrinsics", "backproject", "depth_to_points", "intrinsics_matrix", "pixel_grid", "project",
                "project_jacobian", "project_with_mask"],
    "procrustes": ["procrustes", "procrustes_align", "ransac_procrustes"],
    "so3": ["delta_rotation_update", "hat", "random_rotation", "so3_exp", "so3_log", "vee"],
})
