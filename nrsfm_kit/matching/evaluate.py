"""DeepDeform's matching comparison (Table 1) and the tracker comparison, on any set of pairs with dense labels.

Every method matches the **same source points** of every pair (uniform over the object pixels with a valid,
visible ground-truth match, :func:`nrsfm_kit.metrics.matching.sample_source_points`, seeded); the metrics are
pooled over all points of all pairs (:class:`nrsfm_kit.metrics.matching.MatchingMetrics`). The 3D matches of all
methods are their pixels back-projected at the target depth there (the learned matcher's predicted depth only
rejects matches, sec. 4.2). Rejected matches count as failures in the accuracies (see
:mod:`nrsfm_kit.metrics.matching`). The descriptor and FPFH baselines search the matcher's target patch (``window`` = the patch side), so all methods see the same region.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from nrsfm_kit.data.types import RGBDPair
from nrsfm_kit.metrics.matching import (
    MatchingMetrics,
    ground_truth_matches,
    match_points_3d,
    sample_source_points,
)

from .inference import match_points

__all__ = ["TABLE_METHODS", "METHOD_LABELS", "matching_table", "beats_baselines", "tracking_table", "finite_or_none"]

#: rows of the matching table: the learned matcher and the hand-crafted baselines
TABLE_METHODS = ("learned", "sift", "orb", "akaze", "fpfh", "dis")
METHOD_LABELS = {"learned": "DeepDeform matcher (ours, trained)", "sift": "SIFT", "orb": "ORB", "akaze": "AKAZE",
                 "fpfh": "FPFH (3D)", "dis": "DIS optical flow"}
_METRICS = ("mean_2d_px", "mean_3d_m", "acc_2d", "acc_3d")


def _method_matches(method: str, pair: RGBDPair, px: torch.Tensor, matcher, window):
    from .baselines import match_baseline

    if method == "learned":
        if matcher is None:
            raise ValueError("matcher: expected a trained SiameseMatcher for the 'learned' row, found None")
        m = match_points(matcher, pair, px)
        xyz = torch.where(m.accepted[:, None], m.target_xyz, torch.full_like(m.target_xyz, float("nan")))
        return m.target_px, m.accepted, xyz
    opts = {"window": window} if method in ("sift", "orb", "akaze", "fpfh") else {}
    tpx, ok = match_baseline(method, pair, px, **opts)
    tpx = torch.where(ok[:, None], tpx, torch.full_like(tpx, float("nan")))
    return tpx, ok, match_points_3d(pair, tpx)


def matching_table(pairs: Sequence[RGBDPair], *, matcher=None, methods: Sequence[str] = TABLE_METHODS,
                   num_points: int = 64, seed: int = 0, window: int | None = None, progress: bool = True) -> dict:
    """Table 1 on ``pairs``: ``{method: pooled metrics + seconds_per_pair}`` (and ``"points"``: the points used).

    ``window``: search window of the descriptor / FPFH baselines in pixels (default: the matcher's patch side, or
    DeepDeform's 224 without a matcher)."""
    if len(pairs) == 0:
        raise ValueError("pairs: expected at least one RGB-D pair, found none")
    if window is None:
        window = int(matcher.config.patch_size) if matcher is not None else 224
    metrics = {m: MatchingMetrics() for m in methods}
    seconds = {m: 0.0 for m in methods}
    for i, pair in enumerate(tqdm(pairs, desc="matching table", disable=not progress, leave=False)):
        px = sample_source_points(pair, num_points, seed=seed + i)
        gt_px, gt_xyz, valid = ground_truth_matches(pair, px)
        for method in methods:
            t0 = time.perf_counter()
            tpx, ok, xyz = _method_matches(method, pair, px, matcher, window)
            seconds[method] += time.perf_counter() - t0
            metrics[method].update(tpx.to(gt_px.dtype), gt_px, xyz.to(gt_px.dtype), gt_xyz, valid, pred_valid=ok)
    out = {m: {**metrics[m].compute(), "seconds_per_pair": seconds[m] / len(pairs)} for m in methods}
    out["settings"] = {"num_points": int(num_points), "seed": int(seed), "window": window, "pairs": len(pairs)}
    return out


def finite_or_none(obj):
    """``obj`` with every non-finite float replaced by None (strict JSON), recursively: :func:`nrsfm_kit.utils.io.json_safe`."""
    from nrsfm_kit.utils.io import json_safe

    return json_safe(obj)


def beats_baselines(table: dict, method: str = "learned") -> dict[str, bool]:
    """Per metric: whether ``method`` beats every other row of ``table`` (lower mean errors, higher accuracies)."""
    others = [k for k in table if k not in (method, "settings")]
    res = {}
    for key in _METRICS:
        mine = table[method][key]
        if mine is None or mine != mine:  # NaN: nothing matched
            res[key] = False
        elif key.startswith("mean"):
            res[key] = all(table[o][key] is None or table[o][key] != table[o][key] or mine < table[o][key]
                           for o in others)
        else:
            res[key] = all(table[o][key] is None or table[o][key] != table[o][key] or mine > table[o][key]
                           for o in others)
    return res


def tracking_table(pairs: Sequence[RGBDPair], *, matcher=None, config=None, graph_config=None,
                   progress: bool = True) -> dict:
    """3D end-point error (mm, pooled over the evaluated source pixels of all pairs) of the DeepDeform tracker with
    E_data + E_reg only and with the learned term added (``matcher`` given), against the identity motion."""
    from nrsfm_kit.graph import build_graph

    from .tracker import DeepDeformTrackerConfig, node_matches, track_deepdeform

    cfg = config or DeepDeformTrackerConfig()
    rows = ("identity", "data+reg") + (("data+reg+learned",) if matcher is not None else ())
    sums = {r: 0.0 for r in rows}
    count, nodes_used, nodes_total, secs = 0, 0, 0, {r: 0.0 for r in rows}
    for pair in tqdm(pairs, desc="tracking table", disable=not progress, leave=False):
        mask = pair.source_mask.bool() & (pair.source_depth > 0)
        graph = build_graph(pair.source_depth, mask, pair.intrinsics, **(graph_config or {}))
        results = {}
        t0 = time.perf_counter()
        results["data+reg"] = track_deepdeform(pair, graph, config=cfg, source_mask=mask).alignment
        secs["data+reg"] += time.perf_counter() - t0
        if matcher is not None:
            t0 = time.perf_counter()
            m, ids = node_matches(matcher, pair, graph, min_visibility=cfg.min_visibility,
                                  max_depth_difference=cfg.max_depth_difference)
            tr = track_deepdeform(pair, graph, config=cfg, matches=(m, ids), source_mask=mask)
            secs["data+reg+learned"] += time.perf_counter() - t0
            results["data+reg+learned"] = tr.alignment
            nodes_used += int(tr.node_ids.numel())
            nodes_total += int(ids.numel())
        ok = results["data+reg"].valid & pair.flow_valid.bool() & mask
        if pair.visibility is not None:
            ok = ok & pair.visibility.bool()
        for r in rows[1:]:
            ok = ok & results[r].valid
        gt = pair.scene_flow[ok]
        sums["identity"] += float(gt.norm(dim=-1).sum())
        for r in rows[1:]:
            sums[r] += float((results[r].scene_flow[ok] - gt).norm(dim=-1).sum())
        count += int(ok.sum())
    out = {r: {"epe_3d_mm": 1000.0 * sums[r] / max(count, 1), "seconds_per_pair": secs[r] / len(pairs)}
           for r in rows}
    out["settings"] = {"pairs": len(pairs), "points": count, "nodes_matched": nodes_total,
                       "nodes_accepted": nodes_used}
    return out
