"""Non-rigid structure from motion: classical baselines (Tomasi-Kanade, EM-PPCA), the msr rigidity
measure, Deep NRSfM (Kong & Lucey 2019) and PR-RRN (Zeng et al. 2021), one fit entry point.

Methods are registered by name (:mod:`~nrsfm_kit.nrsfm.registry`); :func:`fit_nrsfm` dispatches through it.
Names load lazily (PEP 562): ``import nrsfm_kit.nrsfm.cli`` does not import torch.
"""

from nrsfm_kit.utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "classical": ["EMPPCAConfig", "TomasiKanadeConfig", "em_ppca", "metric_upgrade", "tomasi_kanade"],
    "common": ["NRSfMResult", "measurement_matrix", "normalize_observations", "to_camera_frame",
               "validate_observations"],
    "deep_nrsfm": ["DeepNRSfM", "DeepNRSfMConfig", "mutual_coherence"],
    "fit": ["fit_nrsfm"],
    "learned": ["LearnedFitConfig", "LearnedMethod", "fit_learned"],
    "msr": ["msr", "msr_pairwise", "msr_svd"],
    "prrrn": ["PRRRN", "MemoryBank", "PRRRNConfig", "consistency_loss", "contrastive_loss"],
    "registry": ["METHODS", "NRSfMMethod", "get_method", "method_names", "register", "unregister"],
})
