"""EDM priors and unsupervised monocular depth of non-rigid scenes (Takmaz et al., 3DV 2021).

- :mod:`~nrsfm_kit.edm.priors`: EDM from depth (eq. 1), the priors of Table 1, the rank proposition.
- :mod:`~nrsfm_kit.edm.loss`: the view-pair ARAP EDM loss (eq. 6/8) on sampled pixel pairs
  (Warp kernels in :mod:`nrsfm_kit.kernels.edm_loss`).
- :mod:`~nrsfm_kit.edm.training`: two-stage test-time training of the depth / motion-embedding nets.
- :mod:`~nrsfm_kit.edm.segmentation`: motion segmentation from the embeddings.
- :mod:`~nrsfm_kit.edm.reconstruct`: surfaces reconstructed by EDM optimisation (teaching).
- :mod:`~nrsfm_kit.edm.video_io`: frame folders, intrinsics, DIS optical flow; ``cli``: ``nrsfm-kit depth fit``.
"""

from nrsfm_kit.edm.loss import EDMLossConfig, edm_view_pair_loss
from nrsfm_kit.edm.priors import PRIORS, edm_from_depth, sampled_edm

__all__ = ["EDMLossConfig", "PRIORS", "edm_from_depth", "edm_view_pair_loss", "sampled_edm"]
