"""metrics"""
from nrsfm_kit.metrics.nrsfm import (  # noqa: F401  (NRSfM metrics)
    align_shapes,
    e3d,
    e3d_per_frame,
    mpjpe,
    nrsfm_report,
    reprojection_error,
    stress,
)
