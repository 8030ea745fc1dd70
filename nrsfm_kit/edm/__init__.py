"""EDM priors and unsupervised monocular depth of non-rigid scenes (Takmaz et al., 3DV 2021).

- :mod:`~nrsfm_kit.edm.priors`: EDM from depth (eq. 1), the priors of Table 1, the rank proposition.
- :mod:`~nrsfm_kit.edm.loss`: the view-pair ARAP EDM loss (eq. 6/8) on sampled pixel pairs
  (Warp kernels in :mod:`nrsfm_kit.kernels.edm_loss`).
- :mod:`~nrsfm_kit.edm.training`: two-stage test-time training of the depth / motion-embedding nets.
- :mod:`~nrsfm_kit.edm.segmentation`: motion segmentation from the embeddings.
- :mod:`~nrsfm_kit.edm.reconstruct`: surfaces reconstructed by EDM optimisation (teaching).
- :mod:`~nrsfm_kit.edm.video_io`: frame folders, intrinsics, DIS optical flow; ``cli``: ``nrsfm-kit depth fit``.

Names load lazily (PEP 562): ``import nrsfm_kit.edm.cli`` does not import torch.
"""

from nrsfm_kit.utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "loss": ["EDMLossConfig", "edm_view_pair_loss", "scale_anchor_loss"],
    "priors": ["PRIORS", "edm_from_depth", "sampled_edm"],
})
