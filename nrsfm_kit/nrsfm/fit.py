"""One entry point for every NRSfM method: ``fit_nrsfm(seq, method, ...) -> (NRSfMResult, metrics)``.

The method is looked up by name in :mod:`nrsfm_kit.nrsfm.registry`; the learned methods (Deep NRSfM, PR-RRN)
train through :func:`nrsfm_kit.nrsfm.learned.fit_learned`, the suite's one loop.
"""

from __future__ import annotations

from pathlib import Path

from nrsfm_kit.data.types import NRSfMSequence
from nrsfm_kit.metrics.nrsfm import nrsfm_report, reprojection_error
from nrsfm_kit.nrsfm.common import NRSfMResult, validate_sequence
from nrsfm_kit.nrsfm.learned import LearnedFitConfig, fit_learned, select_restart
from nrsfm_kit.nrsfm.registry import METHODS, get_method

__all__ = ["METHODS", "LearnedFitConfig", "fit_learned", "fit_nrsfm", "select_restart"]


def fit_nrsfm(
    seq: NRSfMSequence,
    method: str,
    *,
    epochs: int | None = None,
    model_config=None,
    config: LearnedFitConfig | None = None,
    out_dir: str | Path | None = None,
    resume: bool = True,
) -> tuple[NRSfMResult, dict]:
    """Fit any registered method and evaluate it.

    Args:
        seq: an :class:`NRSfMSequence`.
        method: a registered name (:func:`nrsfm_kit.nrsfm.registry.method_names`): ``"tk"``, ``"em-ppca"``,
            ``"dnrsfm"``, ``"prrrn"`` and any method registered since.
        epochs: overrides ``config.epochs`` for the learned methods (None: the data-scaled budget with
            convergence stopping, :func:`~nrsfm_kit.nrsfm.learned.budget_steps`); EM-PPCA: the number of EM iterations.
        model_config: the method's config dataclass (TomasiKanadeConfig, EMPPCAConfig, DeepNRSfMConfig,
            PRRRNConfig), defaults from the papers.

    Returns:
        (result, metrics): metrics has ``reproj`` (units of W) and, with ground truth, e3d (per-frame
        alignment), e3d_seq, mpjpe, stress; plus ``coherence`` for Deep NRSfM.
    """
    fitter = get_method(method)
    W, vis = validate_sequence(seq)
    res = fitter.fit(seq, epochs=epochs, model_config=model_config, config=config, out_dir=out_dir, resume=resume)
    metrics: dict = {"method": method, "sequence": seq.name, "frames": W.shape[0], "points": W.shape[1]}
    if seq.S is not None:
        metrics.update(nrsfm_report(res.S.float(), seq.S.float(), W.float(), vis))
    else:
        metrics["reproj"] = float(reprojection_error(W.float(), res.S.float(), None, vis))
    if "coherence" in res.extra:
        metrics["coherence"] = res.extra["coherence"]
    if "steps" in res.extra:  # learned methods: optimiser steps run (of the budget) and whether convergence stopped it
        metrics["steps"] = int(res.extra["steps"])
        metrics["stopped_early"] = bool(res.extra.get("stopped", False))
    if "restart_seed" in res.extra:
        metrics["restart_seed"] = res.extra["restart_seed"]
    return res, metrics
