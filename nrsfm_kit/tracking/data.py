"""Training and evaluation pairs for the learned tracker (Neural Non-Rigid Tracking, sec. 5).

A :class:`TrackingSample` is one source/target RGB-D pair with everything the tracker and its losses need:
the images, the deformation graph built on the source (:func:`nrsfm_kit.graph.build_graph`), the ground-truth
optical flow (for L_corr), scene flow (for L_warp and EPE 3D) and node translations (for L_graph and Graph
Error 3D).

Data sources:

- :func:`synthetic_tracking_pairs`: our ray-cast generator (:func:`nrsfm_kit.data.rgbd.synthetic_rgbd_pair`:
  textured wall and floor, a waving cloth, a bending arm, a rigid box) with exact ground truth. Splits are
  disjoint generated scenes: "train", "val" and "test" draw their scene seeds from disjoint ranges, so textures,
  object phases and motions of the test pairs were never seen in training.
- :func:`flow_pretraining_pairs`: the same generator with a moving camera as well (rigid + non-rigid flow over
  the whole image). The paper pre-trains Phi on FlyingChairs / FlyingThings3D; those are not downloadable here,
  so the suite pre-trains on these synthetic pairs instead (a documented substitute, not the paper's data).
- :func:`sample_from_pair`: any :class:`~nrsfm_kit.data.types.RGBDPair` (e.g. a DeepDeform pair from
  :func:`nrsfm_kit.data.deepdeform.load_deepdeform_pair`), ground-truth node translations read from the scene
  flow at the nodes' pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from nrsfm_kit.graph.types import DeformationGraph
from nrsfm_kit.utils.checks import check_tensor
from nrsfm_kit.utils.io import cached_torch

__all__ = ["TrackingSample", "sample_from_pair", "synthetic_tracking_pairs", "flow_pretraining_pairs",
           "node_translations_from_scene_flow", "deepdeform_samples", "SPLIT_SEEDS"]

#: first scene seed of each split; splits never share a scene
SPLIT_SEEDS = {"train": 0, "val": 100_000, "test": 200_000}


@dataclass
class TrackingSample:
    """One RGB-D pair prepared for the tracker.

    Attributes:
        source_color, target_color: (3, H, W) RGB in [0, 1].
        source_depth, target_depth: (H, W) metres, 0 = hole.
        intrinsics: (4,) fx, fy, cx, cy (pixels).
        object_mask: (H, W) bool, the tracked object in the source (the graph covers it).
        graph: deformation graph on the source object (pixel anchors (H, W, A)).
        optical_flow: (H, W, 2) ground-truth source -> target flow, pixels (0 where ``flow_valid`` is False).
        flow_valid: (H, W) bool, pixels with ground-truth optical flow (supervise L_corr there).
        scene_flow: (H, W, 3) ground-truth 3D motion of each source pixel's point, metres (NaN where unknown).
        node_translations: (N, 3) ground-truth node translations, metres (NaN where unknown).
        visibility: (H, W) bool or None, source pixel visible in the target (for the occlusion pre-filter).
        name: a label.
    """

    source_color: torch.Tensor
    target_color: torch.Tensor
    source_depth: torch.Tensor
    target_depth: torch.Tensor
    intrinsics: torch.Tensor
    object_mask: torch.Tensor
    graph: DeformationGraph
    optical_flow: torch.Tensor
    flow_valid: torch.Tensor
    scene_flow: torch.Tensor
    node_translations: torch.Tensor
    visibility: torch.Tensor | None = None
    name: str = ""

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.source_depth.shape)

    def to(self, device=None, dtype=None) -> TrackingSample:
        """Copy to a device; ``dtype`` applies to the float tensors."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                v = v.to(device=device, dtype=dtype) if v.is_floating_point() else v.to(device=device)
            elif isinstance(v, DeformationGraph):
                v = v.to(device=device, dtype=dtype)
            out[f.name] = v
        return TrackingSample(**out)

    def validate(self) -> TrackingSample:
        """Check shapes and value ranges; return self (ValueError naming the field otherwise)."""
        dims: dict = {}
        check_tensor("source_color", self.source_color, (3, "H", "W"), dims=dims)
        check_tensor("target_color", self.target_color, (3, "H", "W"), dims=dims)
        check_tensor("source_depth", self.source_depth, ("H", "W"), dims=dims, finite=False)
        check_tensor("target_depth", self.target_depth, ("H", "W"), dims=dims, finite=False)
        check_tensor("optical_flow", self.optical_flow, ("H", "W", 2), dims=dims, finite=False)
        check_tensor("scene_flow", self.scene_flow, ("H", "W", 3), dims=dims, finite=False)
        for name in ("object_mask", "flow_valid"):
            m = getattr(self, name)
            if tuple(m.shape) != (dims["H"], dims["W"]) or m.dtype != torch.bool:
                raise ValueError(f"{name}: expected a bool ({dims['H']}, {dims['W']}) mask, found "
                                 f"{m.dtype} {tuple(m.shape)}")
        if not bool(self.object_mask.any()):
            raise ValueError(f"object_mask: expected at least one object pixel, found none ({self.name})")
        ok = torch.isfinite(self.source_depth) & (self.source_depth > 0)
        if not bool(ok.any()):
            raise ValueError(f"source_depth: expected some valid depth (> 0, finite), found none ({self.name})")
        if tuple(self.graph.pixel_anchors.shape[:2]) != (dims["H"], dims["W"]):
            raise ValueError(f"graph.pixel_anchors: expected ({dims['H']}, {dims['W']}, A) like the images, found "
                             f"{tuple(self.graph.pixel_anchors.shape)}")
        check_tensor("node_translations", self.node_translations, (self.graph.num_nodes, 3), finite=False)
        return self


def node_translations_from_scene_flow(nodes: torch.Tensor, scene_flow: torch.Tensor, valid: torch.Tensor,
                                      intrinsics: torch.Tensor) -> torch.Tensor:
    """Ground-truth node translations read from a scene-flow image: the scene flow at each node's pixel.

    Nodes built by :func:`nrsfm_kit.graph.build_graph` are back-projected source pixels, so projecting them
    gives their pixel back (rounded). Returns (N, 3) metres, NaN for nodes whose pixel has no valid flow.
    """
    check_tensor("nodes", nodes, ("N", 3))
    H, W = scene_flow.shape[:2]
    fx, fy, cx, cy = (float(x) for x in intrinsics.reshape(-1)[:4])
    z = nodes[:, 2].clamp(min=1e-9)
    u = torch.round(fx * nodes[:, 0] / z + cx).long()
    v = torch.round(fy * nodes[:, 1] / z + cy).long()
    inside = (u >= 0) & (u < W) & (v >= 0) & (v < H)
    uc, vc = u.clamp(0, W - 1), v.clamp(0, H - 1)
    sf = scene_flow[vc, uc].to(nodes.dtype)
    ok = inside & valid[vc, uc] & torch.isfinite(sf).all(-1)
    return torch.where(ok.unsqueeze(-1), sf, torch.full_like(sf, float("nan")))


def sample_from_pair(pair, *, graph: DeformationGraph | None = None, node_translations: torch.Tensor | None = None,
                     object_mask: torch.Tensor | None = None, graph_config=None) -> TrackingSample:
    """A :class:`TrackingSample` from an :class:`~nrsfm_kit.data.types.RGBDPair` with ground-truth flows.

    Args:
        pair: the RGB-D pair; ``optical_flow`` / ``scene_flow`` / ``flow_valid`` are the ground truth.
        graph: the source graph; default: :func:`nrsfm_kit.graph.build_graph` on the source depth and object mask.
        node_translations: (N, 3) ground truth; default: the pair's own (synthetic pairs) or the scene flow at the
            nodes' pixels (:func:`node_translations_from_scene_flow`).
        object_mask: (H, W) bool; default ``pair.source_mask`` (or all valid depth).
        graph_config: :class:`nrsfm_kit.graph.build.GraphConfig` for the default graph.
    """
    from nrsfm_kit.graph import build_graph

    depth = pair.source_depth
    H, W = depth.shape
    valid_depth = torch.isfinite(depth) & (depth > 0)
    mask = object_mask if object_mask is not None else pair.source_mask
    mask = (valid_depth if mask is None else mask.bool()) & valid_depth
    if not bool(mask.any()):
        raise ValueError(f"object_mask: expected object pixels with valid depth, found none ({pair.name})")
    if graph is None:
        kw = {} if graph_config is None else {k: getattr(graph_config, k) for k in
                                              ("node_coverage", "max_triangle_edge", "erosion_iterations",
                                               "min_neighbours", "num_neighbours", "geodesic")}
        graph = build_graph(depth, mask, pair.intrinsics, **kw)
    fv = pair.flow_valid if pair.flow_valid is not None else torch.ones(H, W, dtype=torch.bool)
    if pair.optical_flow is None or pair.scene_flow is None:
        raise ValueError(f"pair: expected ground-truth optical_flow and scene_flow, found None ({pair.name})")
    of = torch.where(fv.unsqueeze(-1), pair.optical_flow, torch.zeros_like(pair.optical_flow))
    sf = torch.where(fv.unsqueeze(-1), pair.scene_flow, torch.full_like(pair.scene_flow, float("nan")))
    if node_translations is None:
        if hasattr(pair, "node_translations") and callable(pair.node_translations):
            node_translations = pair.node_translations(graph.nodes.to(depth.dtype))
        else:
            node_translations = node_translations_from_scene_flow(graph.nodes.to(depth.dtype), sf, fv & valid_depth,
                                                                  pair.intrinsics)
    return TrackingSample(
        source_color=pair.source_color, target_color=pair.target_color, source_depth=depth,
        target_depth=pair.target_depth, intrinsics=pair.intrinsics.reshape(-1)[:4] if pair.intrinsics.numel() == 4
        else torch.stack([pair.intrinsics[0, 0], pair.intrinsics[1, 1], pair.intrinsics[0, 2], pair.intrinsics[1, 2]]),
        object_mask=mask, graph=graph, optical_flow=of, flow_valid=fv.bool(), scene_flow=sf,
        node_translations=node_translations, visibility=pair.visibility, name=pair.name,
    ).validate()


def _cached(cache_dir, key: dict, make):
    return cached_torch(cache_dir, "tracking", key, make)


def _pairs(split: str, num_pairs: int, height: int, width: int, seed: int, *, camera_motion: float,
           kinect_noise: bool, time_gap: tuple[float, float], progress: bool, desc: str) -> list[TrackingSample]:
    from nrsfm_kit.data.rgbd import synthetic_rgbd_pair

    if split not in SPLIT_SEEDS:
        raise ValueError(f"split: expected one of {list(SPLIT_SEEDS)}, found {split!r}")
    if int(num_pairs) < 1:
        raise ValueError(f"num_pairs: expected >= 1, found {num_pairs}")
    for name, v in (("height", height), ("width", width)):
        if int(v) % 64 or int(v) < 64:
            raise ValueError(f"{name}: expected a positive multiple of 64 (PWC-Net's 6 stride-2 levels), found {v}")
    lo, hi = time_gap
    if not 0 < lo <= hi:
        raise ValueError(f"time_gap: expected 0 < min <= max seconds, found {time_gap}")
    rng = np.random.default_rng([SPLIT_SEEDS[split] + int(seed), 11])
    out = []
    for i in tqdm(range(int(num_pairs)), desc=desc, disable=not progress, leave=False):
        scene_seed = SPLIT_SEEDS[split] + int(seed) * 1000 + i
        pair = synthetic_rgbd_pair(int(height), int(width), time_gap=float(rng.uniform(lo, hi)),
                                   t_source=float(rng.uniform(0.0, 4.0)), kinect_noise=kinect_noise,
                                   camera_motion=camera_motion, seed=scene_seed)
        s = sample_from_pair(pair)
        s.name = f"{split}-{scene_seed}"
        out.append(replace(s, visibility=pair.visibility))
    return out


def synthetic_tracking_pairs(split: str = "train", num_pairs: int = 16, height: int = 128, width: int = 192, *,
                             seed: int = 0, kinect_noise: bool = False, time_gap: tuple[float, float] = (0.2, 0.6),
                             cache_dir: str | Path | None = None, progress: bool = True) -> list[TrackingSample]:
    """Deforming-object pairs with exact ground truth (static camera, like DeepDeform's tripod captures).

    Args:
        split: "train", "val" or "test" (disjoint scene seeds, :data:`SPLIT_SEEDS`).
        num_pairs: pairs to generate (each a different scene: textures, phases, motion).
        height, width: image size, multiples of 64 (the paper's 448 x 640 is one argument away).
        seed: selects another family of scenes within the split.
        kinect_noise: Kinect-like depth noise and holes (ground truth stays clean).
        time_gap: (min, max) seconds between source and target, drawn uniformly (larger = more motion).
        cache_dir: folder for an atomic ``.pt`` cache keyed on all arguments (None = no cache).
    """
    key = {"kind": "tracking", "split": split, "n": int(num_pairs), "h": int(height), "w": int(width),
           "seed": int(seed), "noise": bool(kinect_noise), "gap": list(time_gap), "v": 1}
    return _cached(cache_dir, key, lambda: _pairs(split, num_pairs, height, width, seed, camera_motion=0.0,
                                                  kinect_noise=kinect_noise, time_gap=time_gap, progress=progress,
                                                  desc=f"synthetic {split} pairs"))


def flow_pretraining_pairs(num_pairs: int = 32, height: int = 128, width: int = 192, *, seed: int = 0,
                           camera_motion: float = 1.0, time_gap: tuple[float, float] = (0.2, 0.8),
                           cache_dir: str | Path | None = None, progress: bool = True) -> list[TrackingSample]:
    """Pairs for pre-training Phi (our stand-in for FlyingChairs / Things): a hand-held-like moving camera adds
    rigid flow over the whole image to the objects' non-rigid motion. Training split scenes only."""
    key = {"kind": "flow", "n": int(num_pairs), "h": int(height), "w": int(width), "seed": int(seed),
           "cam": float(camera_motion), "gap": list(time_gap), "v": 1}
    return _cached(cache_dir, key, lambda: _pairs("train", num_pairs, height, width, 500 + int(seed),
                                                  camera_motion=camera_motion, kinect_noise=False,
                                                  time_gap=time_gap, progress=progress, desc="flow pairs"))


def deepdeform_samples(root: str | Path, split: str = "val", *, max_pairs: int | None = None,
                       progress: bool = False) -> list[TrackingSample]:
    """Every pair with ground-truth flow under ``<root>/<split>/<seq>/scene_flow/<object>_<src>_<tgt>.sflow``,
    centre-cropped to sides divisible by 64 (448 x 640), graph built on the source mask, ground-truth node
    translations from the scene flow at the nodes' pixels."""
    import re

    from nrsfm_kit.data.deepdeform import load_deepdeform_pair

    from .io import center_crop_pair
    from .pair import crop_size_for

    base = Path(root) / split
    if not base.is_dir():
        raise FileNotFoundError(f"{base}: DeepDeform split folder not found")
    pat = re.compile(r"^(?P<object>.+)_(?P<source>\d+)_(?P<target>\d+)\.sflow$")
    found = sorted((seq, m) for seq in base.iterdir() if (seq / "scene_flow").is_dir()
                   for f in (seq / "scene_flow").glob("*.sflow") if (m := pat.match(f.name)))
    if not found:
        raise FileNotFoundError(f"{base}: expected <seq>/scene_flow/<object>_<src>_<tgt>.sflow files, found none")
    out = []
    for seq, m in tqdm(found[:max_pairs], desc=f"DeepDeform {split}", disable=not progress, leave=False):
        pair = load_deepdeform_pair(seq, m["source"], m["target"], m["object"])
        H, W = pair.source_depth.shape
        size = crop_size_for(H, W)
        crop = center_crop_pair(pair, size) if size != (H, W) else pair
        out.append(sample_from_pair(crop))
    return out
