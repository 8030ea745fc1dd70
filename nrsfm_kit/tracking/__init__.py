"""Neural Non-Rigid Tracking (Bozic, Palafox et al., NeurIPS 2020): Phi + Psi + the differentiable solver.

- :mod:`.losses`: L_corr (eq. 14, 21), L_graph, L_warp (eq. 15-16) and the invalidation of diverged solves.

Names load lazily (PEP 562).
"""

from nrsfm_kit.utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "losses": ["LossWeights", "PRESETS", "correspondence_loss", "downsample_flow", "graph_loss", "warp_loss",
               "valid_solves", "robust_qnorm"],
})
