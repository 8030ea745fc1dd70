"""Evaluation of the tracker (EPE 3D, Graph Error 3D; sec. 5.2) and the Table 1 ablation on synthetic pairs.

:func:`evaluate` tracks every pair and pools the errors over all pairs (:class:`~nrsfm_kit.metrics.tracking.
TrackingMetrics`). :func:`ablation` trains, per seed, the rows of Table 1 at a preset's size:

==================================  ===========================================================================
row                                 how
==================================  ===========================================================================
DIS optical flow (classical)        OpenCV DIS flow as correspondences, all weights 1 (no training)
Phi_c                               pre-trained PWC-Net, then the flow stage (L_corr), weights 1
Phi_c+g+w                           flow, then flow + solver losses, weights 1
Phi_c + Psi_supervised              flow stage, then Psi with the App. C.3 BCE labels
Phi_c+g+w + Psi_self-supervised     flow, solver, mask (Psi through the solver), refine (joint)
ground-truth correspondences        the ground-truth optical flow, weights 1: the floor of the solver
==================================  ===========================================================================

Results are mean and standard deviation over seeds; the paper's ordering is each learned row better than the
one above it on both metrics (:func:`paper_ordering`).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from nrsfm_kit.metrics.tracking import TrackingMetrics, keep_pair
from nrsfm_kit.utils.io import atomic_write_json, json_safe

from .model import NeuralTracker

__all__ = ["evaluate", "ablation", "ABLATION_ROWS", "LEARNED_ROWS", "paper_ordering", "summarise"]

ABLATION_ROWS = ("dis", "phi_c", "phi_cgw", "phi_c+psi_sup", "phi_cgw+psi_self", "gt")
LEARNED_ROWS = ("phi_c", "phi_cgw", "phi_c+psi_sup", "phi_cgw+psi_self")  # Table 1 order
ROW_LABELS = {"dis": "DIS optical flow (classical)", "phi_c": "Phi_c", "phi_c+psi_sup": "Phi_c + Psi_supervised",
              "phi_cgw": "Phi_c+g+w", "phi_cgw+psi_self": "Phi_c+g+w + Psi_self-supervised",
              "gt": "ground-truth correspondences (floor)"}


@torch.no_grad()
def evaluate(tracker: NeuralTracker, samples, *, correspondences: str = "learned", weights: bool | None = None,
             filter_occluded: bool = False, batch_size: int = 4, progress: bool = False) -> dict:
    """Pooled EPE 3D and Graph Error 3D (mm) of ``tracker`` on ``samples``.

    Args:
        correspondences: "learned", "dis" or "gt" (see :meth:`NeuralTracker.track`).
        weights: use Psi (default: the tracker's config).
        filter_occluded: drop pairs with > 30 % of the source object occluded in the target (sec. 5.2).

    Returns:
        {"epe_3d_mm", "graph_error_3d_mm", "points", "nodes", "pairs", "solved_pairs", "skipped_pairs"}.
    """
    if not samples:
        raise ValueError("samples: expected at least one TrackingSample, found none")
    was = tracker.training
    tracker.eval()
    m = TrackingMetrics()
    kept = [s for s in samples if not filter_occluded or s.visibility is None
            or keep_pair(s.object_mask, ~s.visibility.bool())]
    solved = 0
    try:
        for i in tqdm(range(0, len(kept), batch_size), desc="evaluate", disable=not progress, leave=False):
            chunk = kept[i: i + batch_size]
            groups: dict = {}
            for s in chunk:
                groups.setdefault(tuple(s.source_depth.shape), []).append(s)
            for group in groups.values():
                _, results = tracker.track(group, correspondences=correspondences, weights=weights)
                for s, r in zip(group, results):
                    dev = r.warped.device
                    sf = s.scene_flow.to(dev).reshape(-1, 3)[r.pixels].to(r.warped.dtype)
                    gt_t = s.node_translations.to(dev, r.translations.dtype)
                    m.update(r.warped, r.source_points, sf, r.translations, gt_t)
                    solved += int(r.solved)
    finally:
        tracker.train(was)
    out = m.compute()
    out.update(solved_pairs=solved, skipped_pairs=len(samples) - len(kept))
    return out


def summarise(per_seed: dict[str, list[dict]]) -> dict:
    """{row: {"epe_3d_mm": (mean, std), "graph_error_3d_mm": (mean, std), "seeds": n}} over seeds."""
    out = {}
    for row, runs in per_seed.items():
        entry = {"label": ROW_LABELS.get(row, row), "seeds": len(runs)}
        for key in ("epe_3d_mm", "graph_error_3d_mm"):
            v = np.array([r[key] for r in runs], dtype=float)
            entry[key] = (float(v.mean()), float(v.std(ddof=0)))
        out[row] = entry
    return out


def paper_ordering(summary: dict) -> dict:
    """Checks of the paper's ordering on the means: each learned row below the one above it on both metrics,
    the self-supervised Psi row best of the learned rows, and the floor below all. {check: bool}."""
    def v(row, key):
        return summary[row][key][0]

    checks = {}
    for a, b in zip(LEARNED_ROWS, LEARNED_ROWS[1:]):
        for key in ("epe_3d_mm", "graph_error_3d_mm"):
            checks[f"{b} < {a} ({key})"] = v(b, key) < v(a, key)
    for key in ("epe_3d_mm", "graph_error_3d_mm"):
        checks[f"phi_cgw+psi_self best learned ({key})"] = all(
            v("phi_cgw+psi_self", key) <= v(r, key) for r in LEARNED_ROWS)
        if "gt" in summary:
            checks[f"gt floor below learned ({key})"] = all(v("gt", key) < v(r, key) for r in LEARNED_ROWS)
    return checks


def ablation(recipe, *, seeds=(0, 1, 2), out_dir: str | Path | None = None, data_cache: str | Path | None = None,
             progress: bool = True, json_path: str | Path | None = None) -> dict:
    """Table 1 at the size of ``recipe`` (:class:`~nrsfm_kit.tracking.training.TrainingPreset`).

    Every seed starts from ``recipe.pretrained_phi`` (a PWC-Net checkpoint) when set, else runs the pretrain stage.
    Data: ``recipe.train_pairs`` training pairs + ``recipe.flow_pairs`` flow pre-training pairs (train split),
    ``recipe.test_pairs`` test pairs (disjoint scenes). Every stage of every seed checkpoints under
    ``out_dir/seed<k>/<row>/`` and a rerun resumes. Returns {"per_seed": {row: [metrics]}, "summary", "ordering"}.
    """
    from .data import flow_pretraining_pairs, synthetic_tracking_pairs
    from .training import train_tracker

    h, w = recipe.height, recipe.width
    train = synthetic_tracking_pairs("train", recipe.train_pairs, h, w, cache_dir=data_cache, progress=progress)
    flow = flow_pretraining_pairs(recipe.flow_pairs, h, w, cache_dir=data_cache, progress=progress)
    test = synthetic_tracking_pairs("test", recipe.test_pairs, h, w, cache_dir=data_cache, progress=progress)
    out = Path(out_dir) if out_dir is not None else None
    per_seed: dict[str, list[dict]] = {r: [] for r in ABLATION_ROWS}

    def run(seed: int, row: str, stages, start=None, use_w=False):
        d = None if out is None else out / f"seed{seed}" / row
        t = copy.deepcopy(start) if start is not None else None
        tracker, _ = train_tracker(recipe, train, stages=stages, out_dir=d, seed=seed, flow_samples=flow, tracker=t,
                                   progress=progress)
        return tracker, evaluate(tracker, test, weights=use_w)

    base = NeuralTracker(copy.deepcopy(recipe.tracker))
    per_seed["dis"] = [evaluate(base, test, correspondences="dis")]
    per_seed["gt"] = [evaluate(base, test, correspondences="gt")]
    for seed in seeds:
        torch.manual_seed(seed)
        init = NeuralTracker(copy.deepcopy(recipe.tracker))
        if recipe.pretrained_phi is not None:  # as the paper: start from a pre-trained PWC-Net
            from nrsfm_kit.models.pwcnet import load_pwcnet_state_dict

            load_pwcnet_state_dict(init.phi, recipe.pretrained_phi)
        first = ("flow",) if recipe.pretrained_phi is not None else ("pretrain", "flow")
        phi_c, m = run(seed, "phi_c", first, init)
        per_seed["phi_c"].append(m)
        _, m = run(seed, "phi_c+psi_sup", ("supervised",), phi_c, use_w=True)
        per_seed["phi_c+psi_sup"].append(m)
        cgw, m = run(seed, "phi_cgw", ("solver",), phi_c)
        per_seed["phi_cgw"].append(m)
        _, m = run(seed, "phi_cgw+psi_self", ("mask", "refine"), cgw, use_w=True)
        per_seed["phi_cgw+psi_self"].append(m)
        if json_path is not None:
            atomic_write_json(json_path, {"per_seed": per_seed, "partial": True})
    summary = summarise(per_seed)
    result = {"per_seed": per_seed, "summary": summary, "ordering": paper_ordering(summary),
              "sizes": {"height": h, "width": w, "train_pairs": len(train), "flow_pairs": len(flow),
                        "test_pairs": len(test), "seeds": list(seeds)}}
    if json_path is not None:
        atomic_write_json(json_path, json_safe(result))
    return result

