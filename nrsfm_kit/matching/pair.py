"""Match (and track) one real RGB-D pair with the DeepDeform matcher (``nrsfm-kit match pair``).

Steps: read the frames (:func:`nrsfm_kit.tracking.pair.read_rgbd_pair`) -> the object: the given mask, or, with a
graph folder, the valid-depth pixels within 2 sigma of a node, or else all valid depth -> the graph: read from a
folder in the reference's binary layout or built on the source -> the matches of the graph nodes (or of
``num_points`` object pixels) -> ``matches.json`` (DeepDeform's label layout: ``source_x, source_y, target_x,
target_y`` plus ``visibility``, ``depth``, ``accepted``) -> with ``track``: the DeepDeform tracker (E_data +
E_learned + E_reg) and the tracker's output files (``deformed.ply``, ``.sflow`` / ``.oflow``, ``graph_motion.npz``,
``result.json``; :func:`nrsfm_kit.tracking.io.write_tracking_outputs`).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from nrsfm_kit.data.types import RGBDPair
from nrsfm_kit.utils.io import atomic_write_json

__all__ = ["match_pair", "matches_json"]


def matches_json(matches, pair: RGBDPair) -> dict:
    """The matches as a DeepDeform-style label record (pixels x = column, y = row)."""
    rows = []
    for k in range(matches.source_px.shape[0]):
        sx, sy = (float(v) for v in matches.source_px[k])
        tx, ty = (float(v) for v in matches.target_px[k])
        rows.append({"source_x": sx, "source_y": sy, "target_x": tx, "target_y": ty,
                     "visibility": float(matches.visibility[k]), "depth": float(matches.depth[k]),
                     "accepted": bool(matches.accepted[k])})
    return {"name": pair.name, "matches": rows}


def match_pair(pair: RGBDPair, out_dir, *, matcher, graph_dir=None, graph_name: str | None = None,
               num_points: int | None = None, track: bool = False, node_coverage: float = 0.05, seed: int = 0,
               config=None) -> dict:
    """Match ``pair`` (and with ``track`` deform its source points) and write the outputs to ``out_dir``.

    Args:
        pair: the frames (any size; the matcher's patch side must fit: images at least as large as a patch are
            not required, patches are zero-padded outside the image).
        matcher: a trained :class:`~nrsfm_kit.models.matcher.SiameseMatcher`.
        graph_dir, graph_name: a graph folder in the reference layout (default: built on the source).
        num_points: match this many object pixels instead of the graph nodes (not with ``track``).
        config: :class:`~nrsfm_kit.matching.tracker.DeepDeformTrackerConfig` of the tracker.
    Returns: the summary (also in ``matches.json`` / ``result.json``).
    """
    from nrsfm_kit.geometry import depth_to_points
    from nrsfm_kit.graph import build_graph
    from nrsfm_kit.metrics.matching import sample_source_points
    from nrsfm_kit.tracking.io import read_graph_folder, write_tracking_outputs
    from nrsfm_kit.tracking.pair import object_mask

    from .inference import match_points
    from .tracker import DeepDeformTrackerConfig, node_matches, track_deepdeform

    if matcher is None:
        raise ValueError("matcher: expected a trained SiameseMatcher (--checkpoint), found None")
    if track and num_points is not None:
        raise ValueError("num_points: the tracker matches the graph nodes; expected None with track=True, found "
                         f"{num_points}")
    cfg = config or DeepDeformTrackerConfig()
    out = Path(out_dir)
    t0 = time.perf_counter()
    pts, valid = depth_to_points(pair.source_depth, pair.intrinsics)
    graph = None
    if graph_dir is not None:
        graph = read_graph_folder(graph_dir, graph_name, source_points=pts, node_coverage=node_coverage)
    mask = object_mask(pair.source_mask, pts, valid, graph)
    if num_points is not None:
        if int(num_points) < 1:
            raise ValueError(f"num_points: expected >= 1, found {num_points}")
        masked = RGBDPair(**{**vars(pair), "source_mask": mask})
        px = sample_source_points(masked, int(num_points), seed=seed, require_ground_truth=False)
        m, ids = match_points(matcher, pair, px, min_visibility=cfg.min_visibility,
                              max_depth_difference=cfg.max_depth_difference), None
    else:
        if graph is None:
            graph = build_graph(pair.source_depth, mask, pair.intrinsics, node_coverage=node_coverage)
        m, ids = node_matches(matcher, pair, graph, min_visibility=cfg.min_visibility,
                              max_depth_difference=cfg.max_depth_difference)
    t_match = time.perf_counter()
    record = matches_json(m, pair)
    if ids is not None:
        for row, i in zip(record["matches"], ids.tolist()):
            row["node"] = int(i)
    summary = {"points": int(m.source_px.shape[0]), "accepted": int(m.accepted.sum()),
               "timings_s": {"match": t_match - t0}}
    record["summary"] = summary
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "matches.json", record)
    files = {"matches": str(out / "matches.json")}
    if track:
        tr = track_deepdeform(pair, graph, config=cfg, matches=(m, ids), source_mask=mask)
        a = tr.alignment
        H, W = pair.source_depth.shape
        sel = a.valid.reshape(-1)
        index = torch.nonzero(sel).squeeze(1)
        colors = pair.source_color.reshape(3, -1)[:, index].T
        energies = a.history[-1] if a.history else {}
        summary.update(nodes=graph.num_nodes, learned_nodes=int(tr.node_ids.numel()), tracked_points=int(index.numel()),
                       energy_terms={k: float(v) for k, v in energies.items() if isinstance(v, (int, float))},
                       mean_translation_m=float(a.motion.translations.norm(dim=-1).mean()))
        summary["timings_s"]["track"] = time.perf_counter() - t_match
        paths = write_tracking_outputs(out, warped_points=a.warped.reshape(-1, 3)[index], colors=colors,
                                       pixel_index=index, image_size=(H, W), source_points=pts.reshape(-1, 3)[index],
                                       intrinsics=pair.intrinsics, rotations=a.motion.rotations,
                                       translations=a.motion.translations,
                                       node_valid=torch.ones(graph.num_nodes, dtype=torch.bool), result=summary)
        files.update({k: str(v) for k, v in paths.items()})
    summary["files"] = files
    return summary
