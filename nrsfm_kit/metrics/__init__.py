"""metrics"""
from nrsfm_kit.metrics.depth import depth_metrics, median_scale  # noqa: F401  (monocular depth metrics)
from nrsfm_kit.metrics.nrsfm import (  # noqa: F401  (NRSfM metrics)
    align_shapes,
    e3d,
    e3d_per_frame,
    mpjpe,
    nrsfm_report,
    reprojection_error,
    stress,
)
from nrsfm_kit.metrics.segmentation import roc_curve, segmentation_scores  # noqa: F401  (motion segmentation)
