"""Track one real RGB-D pair with the learned tracker or with DIS correspondences (``nrsfm-kit track pair``).

Steps: read the frames -> centre-crop to sides divisible by 64 (448 x 640 for DeepDeform's 480 x 640, intrinsics
shifted exactly, :func:`~nrsfm_kit.tracking.io.center_crop_pair`) -> the object: the given mask, or, with a graph
folder, the valid-depth pixels within 2 sigma of a node, or else all valid depth -> the graph: read from a folder
in the reference's binary layout or built on the source -> correspondences (Phi + Psi, or DIS) -> Gauss-Newton ->
outputs at the original image size (:func:`~nrsfm_kit.tracking.io.write_tracking_outputs`).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch

from nrsfm_kit.data.types import RGBDPair

from .io import center_crop_pair, object_mask_from_nodes, read_graph_folder, write_tracking_outputs

__all__ = ["read_rgbd_pair", "track_pair", "crop_size_for", "object_mask"]


def crop_size_for(height: int, width: int) -> tuple[int, int]:
    """The largest centred crop with sides divisible by 64 (448 x 640 for 480 x 640)."""
    h, w = (int(height) // 64) * 64, (int(width) // 64) * 64
    if h < 64 or w < 64:
        raise ValueError(f"image size: expected at least 64 x 64 pixels, found ({height}, {width})")
    return h, w


def read_rgbd_pair(source_color, source_depth, target_color, target_depth, intrinsics, mask=None, *,
                   depth_scale: float = 1000.0) -> RGBDPair:
    """Read a pair from image files (colour 8-bit, depth uint16 PNG in ``1 / depth_scale`` metres, intrinsics text
    with a 3x3 / 4x4 matrix or fx fy cx cy, optional object mask PNG). Sizes must agree (ValueError naming the
    file otherwise); a depth image without any valid pixel raises."""
    from nrsfm_kit.data.imageio import read_color, read_depth_png, read_intrinsics_txt, read_mask

    sc, tc = read_color(source_color), read_color(target_color)
    sd, td = read_depth_png(source_depth, scale=depth_scale), read_depth_png(target_depth, scale=depth_scale)
    H, W = sd.shape
    for path, img in ((source_color, sc), (target_color, tc), (target_depth, td)):
        if tuple(img.shape[-2:]) != (H, W):
            raise ValueError(f"{path}: expected the source depth's size (H, W) = ({H}, {W}), found "
                             f"{tuple(img.shape[-2:])}")
    for path, d in ((source_depth, sd), (target_depth, td)):
        if not bool(((d > 0) & torch.isfinite(d)).any()):
            raise ValueError(f"{path}: expected some valid depth (> 0), found none")
    m = None
    if mask is not None:
        m = read_mask(mask)
        if tuple(m.shape) != (H, W):
            raise ValueError(f"{mask}: expected a mask of size ({H}, {W}), found {tuple(m.shape)}")
        if not bool(m.any()):
            raise ValueError(f"{mask}: expected object pixels (non-zero), found an empty mask")
    return RGBDPair(sc, tc, sd, td, read_intrinsics_txt(intrinsics), source_mask=m, name=Path(source_color).stem)


def object_mask(mask, points, valid, graph=None) -> torch.Tensor:
    """The pixels to track: the given mask (H, W) on valid depth, or, with a graph, the valid-depth pixels within
    2 sigma of a node, or else every valid-depth pixel; ValueError when none is left."""
    if mask is not None:
        out = mask.bool() & valid
    elif graph is not None:
        out = object_mask_from_nodes(points, valid, graph.nodes.to(points.dtype), graph.node_coverage)
    else:
        out = valid
    if not bool(out.any()):
        raise ValueError("mask: expected object pixels with valid source depth, found none")
    return out


def track_pair(pair: RGBDPair, out_dir, *, tracker=None, correspondences: str = "learned", graph_dir=None,
               graph_name: str | None = None, node_coverage: float = 0.05, progress: bool = False) -> dict:
    """Track ``pair`` and write the outputs to ``out_dir``; returns the result summary (also in result.json).

    Args:
        pair: the frames at their original size (any size >= 64 x 64; centre-cropped to multiples of 64).
        tracker: a :class:`~nrsfm_kit.tracking.model.NeuralTracker` (needed for ``correspondences="learned"``).
        correspondences: "learned" or "dis".
        graph_dir: folder with a graph in the reference layout (nodes in the camera frame; pixel anchors of the
            original or the cropped size, or none: computed from the source points).
    """
    from nrsfm_kit.geometry import depth_to_points
    from nrsfm_kit.graph import build_graph

    from .data import TrackingSample
    from .model import NeuralTracker, TrackerConfig

    if correspondences not in ("learned", "dis"):
        raise ValueError(f"correspondences: expected 'learned' or 'dis', found {correspondences!r}")
    if correspondences == "learned" and tracker is None:
        raise ValueError("tracker: expected a trained NeuralTracker for learned correspondences (pass --checkpoint), "
                         "found None; use correspondences='dis' to track without a trained model")
    t0 = time.perf_counter()
    H, W = pair.source_depth.shape
    size = crop_size_for(H, W)
    crop = center_crop_pair(pair, size) if size != (H, W) else pair
    y0, x0 = (H - size[0]) // 2, (W - size[1]) // 2
    pts, valid = depth_to_points(crop.source_depth, crop.intrinsics)
    graph = None
    if graph_dir is not None:
        full_pts, _ = depth_to_points(pair.source_depth, pair.intrinsics)
        g = read_graph_folder(graph_dir, graph_name, source_points=full_pts, node_coverage=node_coverage)
        ah, aw = g.pixel_anchors.shape[:2]
        if (ah, aw) == (H, W) and size != (H, W):
            g = replace(g, pixel_anchors=g.pixel_anchors[y0:y0 + size[0], x0:x0 + size[1]].contiguous(),
                        pixel_weights=g.pixel_weights[y0:y0 + size[0], x0:x0 + size[1]].contiguous())
        elif (ah, aw) != size:
            raise ValueError(f"{graph_dir}: expected pixel anchors of size {(H, W)} or {size}, found {(ah, aw)}")
        graph = g
    mask = object_mask(crop.source_mask, pts, valid, graph)
    if graph is None:
        graph = build_graph(crop.source_depth, mask, crop.intrinsics, node_coverage=node_coverage)
    t_graph = time.perf_counter()
    hw = crop.source_depth.shape
    nan = torch.full((*hw, 3), float("nan"))
    sample = TrackingSample(crop.source_color, crop.target_color, crop.source_depth, crop.target_depth,
                            crop.intrinsics, mask, graph, torch.zeros(*hw, 2), torch.zeros(hw, dtype=torch.bool),
                            nan, torch.full((graph.num_nodes, 3), float("nan")), name=pair.name).validate()
    model = tracker if tracker is not None else NeuralTracker(TrackerConfig(width=0.0625, use_weights=False))
    with torch.no_grad():
        _, (res,) = model.eval().track([sample], correspondences=correspondences)
    t_solve = time.perf_counter()
    rows, cols = res.pixels // hw[1], res.pixels % hw[1]
    full_index = (rows + y0) * W + (cols + x0)
    colors = crop.source_color.reshape(3, -1)[:, res.pixels].T
    energy = res.info.get("energy")
    summary = {
        "correspondences": correspondences, "image_size": [H, W], "crop": [int(y0), int(x0), *size],
        "nodes": graph.num_nodes, "valid_nodes": int(res.node_valid.sum()), "tracked_points": int(res.pixels.numel()),
        "used_correspondences": res.used, "solved": bool(res.solved),
        "energy": [] if energy is None else energy.reshape(-1).tolist(),
        "energy_terms": {k: v.reshape(-1).tolist() for k, v in res.info.get("energy_terms", {}).items()},
        "mean_translation_m": float(res.translations.norm(dim=-1).mean()),
        "timings_s": {"graph": t_graph - t0, "track": t_solve - t_graph},
    }
    paths = write_tracking_outputs(out_dir, warped_points=res.warped, colors=colors, pixel_index=full_index,
                                   image_size=(H, W), source_points=res.source_points, intrinsics=pair.intrinsics,
                                   rotations=res.rotations, translations=res.translations, node_valid=res.node_valid,
                                   result=summary)
    summary["files"] = {k: str(v) for k, v in paths.items()}
    return summary
