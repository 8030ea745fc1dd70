"""Non-rigid structure from motion: classical baselines (Tomasi-Kanade, EM-PPCA), the msr rigidity
measure, Deep NRSfM (Kong & Lucey 2019) and PR-RRN (Zeng et al. 2021), one fit entry point."""

from nrsfm_kit.nrsfm.classical import EMPPCAConfig, TomasiKanadeConfig, em_ppca, metric_upgrade, tomasi_kanade
from nrsfm_kit.nrsfm.common import NRSfMResult, normalize_observations, to_camera_frame, validate_observations
from nrsfm_kit.nrsfm.deep_nrsfm import DeepNRSfM, DeepNRSfMConfig, mutual_coherence
from nrsfm_kit.nrsfm.fit import METHODS, LearnedFitConfig, fit_learned, fit_nrsfm
from nrsfm_kit.nrsfm.msr import msr, msr_pairwise, msr_svd
from nrsfm_kit.nrsfm.prrrn import PRRRN, MemoryBank, PRRRNConfig, consistency_loss, contrastive_loss

__all__ = [
    "METHODS", "DeepNRSfM", "DeepNRSfMConfig", "EMPPCAConfig", "LearnedFitConfig", "MemoryBank", "NRSfMResult",
    "PRRRN", "PRRRNConfig", "TomasiKanadeConfig", "consistency_loss", "contrastive_loss", "em_ppca",
    "fit_learned", "fit_nrsfm", "metric_upgrade", "msr", "msr_pairwise", "msr_svd", "mutual_coherence",
    "normalize_observations", "to_camera_frame", "tomasi_kanade", "validate_observations",
]
