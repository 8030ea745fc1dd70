"""Metrics, one module per task family, exact definitions from the papers (names load lazily, PEP 562).

- :mod:`~nrsfm_kit.metrics.depth`: monocular depth metrics.
- :mod:`~nrsfm_kit.metrics.matching`: sparse matching (2D / 3D errors and accuracies; DeepDeform Table 1).
- :mod:`~nrsfm_kit.metrics.nrsfm`: NRSfM metrics (e3D, MPJPE, stress, reprojection).
- :mod:`~nrsfm_kit.metrics.reconstruction`: non-rigid reconstruction (geometry / deformation error, segment
  scores, PLY submissions; DeepDeform Table 2).
- :mod:`~nrsfm_kit.metrics.segmentation`: motion segmentation.
- :mod:`~nrsfm_kit.metrics.tracking`: non-rigid tracking (EPE 3D, Graph Error 3D; Neural Non-Rigid Tracking sec. 5.2).
"""

from nrsfm_kit.utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "depth": ["depth_metrics", "median_scale"],
    "matching": ["ACC_2D_PX", "ACC_3D_M", "FLOW_ACC_PX", "MatchingErrors", "MatchingMetrics", "ground_truth_matches",
                 "match_points_3d", "matching_errors", "sample_source_points"],
    "nrsfm": ["align_shapes", "depth_flips", "e3d", "e3d_per_frame", "mpjpe", "nrsfm_report", "reprojection_error", "stress"],
    "reconstruction": ["CARRY_NEIGHBOURS", "DEFORMATION_EROSION", "DEPTH_WINDOW", "GEOMETRY_EROSION",
                       "MISSING_MESH_M", "SEGMENT_CAP_M", "SEGMENT_LENGTH", "DeformationErrors",
                       "ReconstructionReport", "benchmark_score", "carry_points", "carry_weights",
                       "deformation_error", "erode_mask", "geometry_error", "read_mesh_ply", "segment_scores",
                       "submission_name", "write_mesh_ply"],
    "segmentation": ["roc_curve", "segmentation_scores"],
    "tracking": ["TrackingMetrics", "epe_3d_terms", "graph_error_3d_terms", "keep_pair"],
})
