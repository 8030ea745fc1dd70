"""Patch pairs for DeepDeform's Siamese matcher (Bozic et al., CVPR 2020, sec. 3, 6.4 and App. A.2).

The matcher sees two 6-channel patches (RGB + the back-projected camera-frame XYZ, metres; 0 where the depth is
invalid): a **source patch** centred on a source point and a **target patch** of the target frame centred on the
same pixel location (DeepDeform's setting: the match is searched in a window around where the point was). The
labels of a sample are the true match in target-patch pixels, its depth (metres, target camera frame) and its
visibility (the point is visible in the target frame *and* its match lies inside the target patch).

Training augmentation (App. A.2, on the fly): a random 2D rotation of the target patch about its centre, a random
translation of the target patch (so the match is not always at the centre; a share of samples is pushed outside
the patch: visibility negatives), and a random horizontal flip of both patches (the X channel negated, the
mirror image of the point cloud).

Patch sampling weighted towards non-rigid motion (sec. 6.4): the rigid pose of a pair's sparse matches is fitted
by RANSAC + Procrustes (:func:`nrsfm_kit.geometry.procrustes.ransac_procrustes`), each match's deviation from it
is its sampling weight (a multinomial; a floor keeps rigidly moving points in the mix).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from nrsfm_kit.data.types import RGBDPair
from nrsfm_kit.geometry import depth_to_points
from nrsfm_kit.geometry.procrustes import ransac_procrustes
from nrsfm_kit.metrics.matching import ground_truth_matches
from nrsfm_kit.utils.checks import check_tensor
from nrsfm_kit.utils.io import cached_torch

__all__ = ["PATCH_CHANNELS", "SamplingConfig", "PatchBatch", "PreparedPair", "PatchSampler", "frame_image",
           "extract_patches", "image_to_patch", "patch_to_image", "prepare_pair", "synthetic_matching_pairs", "resize_pair",
           "prepare_sparse_pair", "deepdeform_training_pairs", "nonrigid_weights"]

#: RGB + back-projected XYZ (camera frame, metres)
PATCH_CHANNELS = 6


@dataclass
class SamplingConfig:
    """How training patches are drawn (App. A.2, sec. 6.4). Values marked "ours" are not stated by the paper."""

    patch_size: int = 224  # App. A: 224 x 224 patches
    max_rotation_deg: float = 15.0  # random 2D rotation of the target patch (range: ours)
    max_translation: float = 0.25  # target patch centre offset, fraction of the patch side (ours)
    flip_prob: float = 0.5  # horizontal flip of both patches
    outside_fraction: float = 0.15  # share of samples whose match is pushed outside the target patch (ours)
    nonrigid_floor: float = 0.005  # metres added to every deviation before the multinomial (ours)
    ransac_iterations: int = 256
    ransac_threshold: float = 0.01  # metres, inlier distance of the rigid fit (ours)
    ransac_points: int = 500  # sparse matches per pair used for the rigid fit (DeepDeform pairs have 20-50)

    def __post_init__(self) -> None:
        if int(self.patch_size) < 8:
            raise ValueError(f"patch_size: expected an int >= 8, found {self.patch_size!r}")
        for name in ("max_rotation_deg", "max_translation", "nonrigid_floor"):
            if not float(getattr(self, name)) >= 0:
                raise ValueError(f"{name}: expected >= 0, found {getattr(self, name)!r}")
        for name in ("flip_prob", "outside_fraction"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ValueError(f"{name}: expected a value in [0, 1], found {getattr(self, name)!r}")
        if not 0 <= float(self.max_translation) <= 0.5:
            raise ValueError(f"max_translation: expected a fraction in [0, 0.5], found {self.max_translation!r}")


def frame_image(color: torch.Tensor, depth: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """The matcher's 6-channel image of a frame: RGB (3, H, W) in [0, 1] and the camera-frame XYZ of every pixel
    (metres, 0 where the depth is invalid) -> (6, H, W)."""
    dims: dict = {}
    check_tensor("color", color, (3, "H", "W"), dims=dims)
    check_tensor("depth", depth, (dims["H"], dims["W"]), finite=False)
    pts, valid = depth_to_points(depth.to(color.dtype), intrinsics)
    xyz = torch.where(valid.unsqueeze(-1), pts, torch.zeros_like(pts)).permute(2, 0, 1)
    return torch.cat([color, xyz], 0).contiguous()


def _rot(angles: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(angles), torch.sin(angles)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)  # (K, 2, 2)


def _defaults(centers: torch.Tensor, angles, flips):
    K = centers.shape[0]
    a = torch.zeros(K, dtype=centers.dtype, device=centers.device) if angles is None else angles.to(centers.dtype)
    f = torch.zeros(K, dtype=torch.bool, device=centers.device) if flips is None else flips.bool()
    return a, f


def patch_to_image(patch_px: torch.Tensor, centers: torch.Tensor, size: int, angles=None, flips=None) -> torch.Tensor:
    """Patch pixels (K, 2) (x, y) -> image pixels: local l = p - (S - 1)/2, x mirrored when flipped, rotated by the
    angle (radians) about the patch centre ``centers`` (K, 2) image pixels."""
    a, f = _defaults(centers, angles, flips)
    loc = patch_px - (size - 1) / 2.0
    loc = torch.stack([torch.where(f, -loc[:, 0], loc[:, 0]), loc[:, 1]], -1)
    return centers + torch.einsum("kab,kb->ka", _rot(a), loc)


def image_to_patch(image_px: torch.Tensor, centers: torch.Tensor, size: int, angles=None, flips=None) -> torch.Tensor:
    """The inverse of :func:`patch_to_image`: image pixels (K, 2) -> patch pixels (K, 2)."""
    a, f = _defaults(centers, angles, flips)
    loc = torch.einsum("kba,kb->ka", _rot(a), image_px - centers)  # R^T (p - c)
    loc = torch.stack([torch.where(f, -loc[:, 0], loc[:, 0]), loc[:, 1]], -1)
    return loc + (size - 1) / 2.0


def extract_patches(image: torch.Tensor, centers: torch.Tensor, size: int, *, angles: torch.Tensor | None = None,
                    flips: torch.Tensor | None = None) -> torch.Tensor:
    """Square patches of a 6-channel frame image (:func:`frame_image`) around ``centers`` (K, 2) pixels (x, y).

    Patch pixel p samples the image at :func:`patch_to_image` (p): RGB bilinearly, XYZ at the nearest pixel (no
    blending across depth discontinuities); zeros outside the image. A flipped patch has its X channel negated.
    Returns (K, 6, S, S).
    """
    check_tensor("image", image, (PATCH_CHANNELS, "H", "W"))
    check_tensor("centers", centers, ("K", 2))
    S = int(size)
    H, W = image.shape[-2:]
    K = centers.shape[0]
    dt = image.dtype
    centers = centers.to(dt)
    g = torch.arange(S, dtype=dt, device=image.device)
    pp = torch.stack(torch.meshgrid(g, g, indexing="xy"), -1).reshape(1, S * S, 2).expand(K, -1, -1)  # (x, y)
    a, f = _defaults(centers, angles, flips)
    img_px = patch_to_image(pp.reshape(-1, 2), centers.repeat_interleave(S * S, 0), S, a.repeat_interleave(S * S),
                            f.repeat_interleave(S * S)).reshape(K, S, S, 2)
    grid = torch.stack([2 * img_px[..., 0] / max(W - 1, 1) - 1, 2 * img_px[..., 1] / max(H - 1, 1) - 1], -1)
    src = image.unsqueeze(0).expand(K, -1, -1, -1)
    rgb = F.grid_sample(src[:, :3], grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    xyz = F.grid_sample(src[:, 3:], grid, mode="nearest", padding_mode="zeros", align_corners=True)
    sign = torch.where(f, -1.0, 1.0).to(dt)
    xyz = torch.cat([xyz[:, :1] * sign[:, None, None, None], xyz[:, 1:]], 1)
    return torch.cat([rgb, xyz], 1).contiguous()


class PreparedPair(NamedTuple):
    """A pair ready for patch sampling: the two frame images (6, H, W); candidate source pixels (N, 2) (x, y);
    their true target pixels (N, 2), target depth (N,) metres and visibility (N,) bool (NaN labels where
    invisible); sampling weights (N,) (non-rigid deviation + floor, sec. 6.4)."""

    source: torch.Tensor
    target: torch.Tensor
    pixels: torch.Tensor
    target_px: torch.Tensor
    target_depth: torch.Tensor
    visible: torch.Tensor
    weights: torch.Tensor
    name: str


def nonrigid_weights(source_xyz: torch.Tensor, target_xyz: torch.Tensor, config: SamplingConfig,
                     generator: torch.Generator, fit: torch.Tensor | None = None) -> torch.Tensor:
    """Sampling weights of matched 3D points, source and target (N, 3) each (sec. 6.4): the deviation (metres) of every match
    from the RANSAC + Procrustes rigid fit of the matches ``fit`` (indices; default all) plus
    ``config.nonrigid_floor``. float64 (N,)."""
    X, Y = source_xyz.double(), target_xyz.double()
    sel = slice(None) if fit is None else fit
    R, t, _ = ransac_procrustes(X[sel], Y[sel], iterations=config.ransac_iterations,
                                threshold=config.ransac_threshold, generator=generator)
    return (X @ R.T + t - Y).norm(dim=-1) + config.nonrigid_floor


def prepare_pair(pair: RGBDPair, config: SamplingConfig | None = None, *, seed: int = 0) -> PreparedPair:
    """Candidates of a pair: source pixels on the object mask (or all valid depth) with valid depth; visible ones
    labelled from the dense flows (:func:`nrsfm_kit.metrics.matching.ground_truth_matches`), weighted by their deviation from the RANSAC +
    Procrustes rigid fit of up to ``config.ransac_points`` of them; occluded ones get the mean weight."""
    cfg = config or SamplingConfig()
    H, W = pair.source_depth.shape
    _, valid = depth_to_points(pair.source_depth, pair.intrinsics)
    m = valid if pair.source_mask is None else valid & pair.source_mask.bool()
    if pair.source_mask is not None and pair.source_mask.shape != (H, W):
        raise ValueError(f"pair.source_mask: expected shape {(H, W)}, found {tuple(pair.source_mask.shape)}")
    yy, xx = torch.nonzero(m, as_tuple=True)
    if len(xx) < 3:
        raise ValueError(f"pair: expected at least 3 source pixels with valid depth on the mask, found {len(xx)}"
                         f" ({pair.name})")
    px = torch.stack([xx, yy], -1).to(pair.source_depth.dtype)
    if pair.scene_flow is None:
        raise ValueError(f"pair.scene_flow: expected a dense ground-truth scene flow, found None ({pair.name})")
    tgt_px, tgt_xyz, ok = ground_truth_matches(pair, px)
    pts, _ = depth_to_points(pair.source_depth, pair.intrinsics)
    src_xyz = pts[yy, xx]
    w = torch.zeros(len(xx), dtype=px.dtype)
    vis = torch.nonzero(ok).squeeze(1)
    if len(vis) >= 3:
        gen = torch.Generator().manual_seed(int(seed))
        pick = torch.randperm(len(vis), generator=gen)[: cfg.ransac_points]
        w[vis] = nonrigid_weights(src_xyz[vis], tgt_xyz[vis], cfg, gen, fit=pick).to(w.dtype)
    occl = ~ok
    w[occl] = w[vis].mean() if len(vis) else 1.0
    return PreparedPair(frame_image(pair.source_color, pair.source_depth, pair.intrinsics),
                        frame_image(pair.target_color, pair.target_depth, pair.intrinsics), px, tgt_px,
                        tgt_xyz[:, 2], ok, w, pair.name)


def prepare_sparse_pair(pair: RGBDPair, source_px: torch.Tensor, target_px: torch.Tensor, *,
                        occluded_px: torch.Tensor | None = None, config: SamplingConfig | None = None,
                        seed: int = 0) -> PreparedPair:
    """Candidates of a pair labelled with sparse matches (DeepDeform's ``<split>_matches.json``: 20-50 annotated
    source -> target pixels per pair, (K, 2) each) and, optionally, occluded source pixels
    (``<split>_occlusions.json``, (M, 2): visibility negatives). The target depth of a match is the target frame's
    depth at its pixel (matches on depth holes are dropped); the non-rigid weights come from the RANSAC +
    Procrustes rigid fit of the matches' 3D points (sec. 6.4)."""
    cfg = config or SamplingConfig()
    H, W = pair.source_depth.shape
    dims: dict = {}
    check_tensor("source_px", source_px, ("K", 2), dims=dims)
    check_tensor("target_px", target_px, (dims["K"], 2))
    if dims["K"] == 0:
        raise ValueError("source_px: expected at least one sparse match, found an empty (0, 2) set")
    src_pts, src_ok = depth_to_points(pair.source_depth, pair.intrinsics)
    tgt_pts, tgt_ok = depth_to_points(pair.target_depth, pair.intrinsics)

    def at(px, pts, ok, name):
        x, y = px[:, 0].round().long(), px[:, 1].round().long()
        inside = (x >= 0) & (y >= 0) & (x < W) & (y < H)
        if not bool(inside.all()):
            k = int(torch.nonzero(~inside)[0])
            raise ValueError(f"{name}: expected pixels inside the {W} x {H} image, found point {k} at "
                             f"{tuple(float(v) for v in px[k])}")
        return pts[y, x], ok[y, x]

    sxyz, sok = at(source_px, src_pts, src_ok, "source_px")
    txyz, tok = at(target_px, tgt_pts, tgt_ok, "target_px")
    keep = sok & tok
    if int(keep.sum()) == 0:
        raise ValueError(f"source_px: expected matches with valid source and target depth, found none ({pair.name})")
    px, tpx, sxyz, txyz = source_px[keep].to(src_pts.dtype), target_px[keep].to(src_pts.dtype), sxyz[keep], txyz[keep]
    w = torch.full((len(px),), 1.0, dtype=px.dtype)
    if len(px) >= 3:
        w = nonrigid_weights(sxyz, txyz, cfg, torch.Generator().manual_seed(int(seed))).to(px.dtype)
    vis = torch.ones(len(px), dtype=torch.bool)
    depth = txyz[:, 2]
    if occluded_px is not None and len(occluded_px):
        check_tensor("occluded_px", occluded_px, ("M", 2))
        _, ook = at(occluded_px, src_pts, src_ok, "occluded_px")
        occ = occluded_px[ook].to(px.dtype)
        nan2 = torch.full((len(occ), 2), float("nan"), dtype=px.dtype)
        px, tpx = torch.cat([px, occ]), torch.cat([tpx, nan2])
        depth = torch.cat([depth, torch.full((len(occ),), float("nan"), dtype=px.dtype)])
        vis = torch.cat([vis, torch.zeros(len(occ), dtype=torch.bool)])
        w = torch.cat([w, torch.full((len(occ),), float(w.mean()), dtype=px.dtype)])
    return PreparedPair(frame_image(pair.source_color, pair.source_depth, pair.intrinsics),
                        frame_image(pair.target_color, pair.target_depth, pair.intrinsics), px, tpx, depth, vis, w,
                        pair.name)


def deepdeform_training_pairs(root: str | Path, split: str = "train", *, max_pairs: int | None = None,
                              config: SamplingConfig | None = None, progress: bool = True) -> list[PreparedPair]:
    """DeepDeform's sparse match labels of a split (``<root>/<split>_matches.json``, with
    ``<split>_occlusions.json`` when present) as prepared pairs for :class:`PatchSampler` (the paper trains its
    matcher on these annotations)."""
    from nrsfm_kit.data.deepdeform import load_deepdeform_labels, load_deepdeform_pair

    root = Path(root)
    labels = load_deepdeform_labels(root, split, "matches")
    occl = {}
    if (root / f"{split}_occlusions.json").is_file():
        for lab in load_deepdeform_labels(root, split, "occlusions"):
            occl[(lab.seq_id, lab.object_id, lab.source_id, lab.target_id)] = lab.source_pixels
    labels = labels[: max_pairs] if max_pairs is not None else labels
    out = []
    for i, lab in enumerate(tqdm(labels, desc=f"DeepDeform {split} matches", disable=not progress, leave=False)):
        pair = load_deepdeform_pair(root / split / lab.seq_id, lab.source_id, lab.target_id, lab.object_id)
        key = (lab.seq_id, lab.object_id, lab.source_id, lab.target_id)
        out.append(prepare_sparse_pair(pair, lab.source_pixels, lab.target_pixels, occluded_px=occl.get(key),
                                       config=config, seed=i))
    if not out:
        raise ValueError(f"{root / (split + '_matches.json')}: expected at least one labelled pair, found none")
    return out


class PatchBatch(NamedTuple):
    """A batch of labelled patch pairs: source, target (B, 6, S, S); target_px (B, 2) true match in target-patch
    pixels (NaN where invisible); target_depth (B,) metres; visible (B,) bool; centers (B, 2) target-patch centres
    in the target image; angles (B,), flips (B,) the augmentation; source_px (B, 2)."""

    source: torch.Tensor
    target: torch.Tensor
    target_px: torch.Tensor
    target_depth: torch.Tensor
    visible: torch.Tensor
    centers: torch.Tensor
    angles: torch.Tensor
    flips: torch.Tensor
    source_px: torch.Tensor


class PatchSampler:
    """Draws augmented, non-rigidly weighted patch batches from a set of pairs (App. A.2, sec. 6.4).

    Args:
        pairs: RGB-D pairs with dense ground-truth flows (synthetic, or DeepDeform pairs with their dense labels),
            or :class:`PreparedPair` objects (e.g. sparse labels, :func:`deepdeform_training_pairs`).
        config: :class:`SamplingConfig`. augment: False draws un-augmented patches (target patch centred on the
            source pixel). seed: of the rigid fits.
    """

    def __init__(self, pairs: Sequence[RGBDPair], config: SamplingConfig | None = None, *, augment: bool = True,
                 seed: int = 0, progress: bool = False):
        if len(pairs) == 0:
            raise ValueError("pairs: expected at least one RGB-D pair, found none")
        self.config = config or SamplingConfig()
        self.augment = bool(augment)
        self.pairs = [p if isinstance(p, PreparedPair) else prepare_pair(p, self.config, seed=seed + i)
                      for i, p in enumerate(tqdm(pairs, desc="prepare pairs", disable=not progress, leave=False))]

    def sample(self, batch: int, generator: torch.Generator | None = None) -> PatchBatch:
        """``batch`` labelled patch pairs: pairs uniformly, source points by the multinomial over their weights."""
        g = generator
        which = torch.randint(len(self.pairs), (int(batch),), generator=g)
        out = []
        for k in torch.unique(which).tolist():
            n = int((which == k).sum())
            out.append(self._draw(self.pairs[k], n, g))
        parts = [torch.cat(x, 0) for x in zip(*out)]
        perm = torch.randperm(int(batch), generator=g)
        return PatchBatch(*[p[perm] for p in parts])

    def _draw(self, pp: PreparedPair, n: int, g) -> tuple:
        cfg, S = self.config, int(self.config.patch_size)
        idx = torch.multinomial(pp.weights, n, replacement=True, generator=g)
        src_px = pp.pixels[idx]
        dt = src_px.dtype
        if self.augment:
            angles = (torch.rand(n, generator=g, dtype=dt) * 2 - 1) * math.radians(cfg.max_rotation_deg)
            flips = torch.rand(n, generator=g) < cfg.flip_prob
            shift = (torch.rand(n, 2, generator=g, dtype=dt) * 2 - 1) * cfg.max_translation * S
            # a share of samples moved so that the match falls outside the target patch (visibility negatives)
            out = torch.rand(n, generator=g) < cfg.outside_fraction
            direction = torch.rand(n, generator=g, dtype=dt) * 2 * math.pi
            far = (0.75 + 0.25 * torch.rand(n, generator=g, dtype=dt)) * S
            shift = torch.where(out[:, None], far[:, None] * torch.stack([direction.cos(), direction.sin()], -1),
                                shift)
        else:
            angles, flips = torch.zeros(n, dtype=dt), torch.zeros(n, dtype=torch.bool)
            shift = torch.zeros(n, 2, dtype=dt)
        centers = src_px + shift
        source = extract_patches(pp.source, src_px, S, flips=flips)
        target = extract_patches(pp.target, centers, S, angles=angles, flips=flips)
        vis = pp.visible[idx].clone()
        tpx = image_to_patch(torch.nan_to_num(pp.target_px[idx]), centers, S, angles, flips)
        inside = ((tpx >= 0) & (tpx <= S - 1)).all(-1)
        vis = vis & inside
        tpx = torch.where(vis[:, None], tpx, torch.full_like(tpx, float("nan")))
        depth = torch.where(vis, pp.target_depth[idx], torch.full_like(pp.target_depth[idx], float("nan")))
        return source, target, tpx, depth, vis, centers, angles, flips, src_px


def _plain(pair: RGBDPair) -> RGBDPair:
    return RGBDPair(**{f.name: getattr(pair, f.name) for f in fields(RGBDPair)})


def synthetic_matching_pairs(split: str = "train", num_pairs: int = 32, height: int = 128, width: int = 192, *,
                             seed: int = 0, time_gap: tuple[float, float] = (0.4, 1.2), kinect_noise: bool = False,
                             cache_dir: str | Path | None = None, progress: bool = True) -> list[RGBDPair]:
    """Deforming-object RGB-D pairs with exact dense ground truth for the matcher (static camera, DeepDeform's
    tripod setting). The splits are disjoint scene seeds (:data:`nrsfm_kit.tracking.data.SPLIT_SEEDS`); the time
    gaps are drawn in ``time_gap`` seconds (0.4-1.2 s: flows of a few to ~35 px at 128 x 192, the regime of
    DeepDeform's wide-baseline pairs relative to the patch). Cached atomically in ``cache_dir`` when given."""
    from nrsfm_kit.data.rgbd import synthetic_rgbd_pair
    from nrsfm_kit.tracking.data import SPLIT_SEEDS

    if split not in SPLIT_SEEDS:
        raise ValueError(f"split: expected one of {list(SPLIT_SEEDS)}, found {split!r}")
    if int(num_pairs) < 1:
        raise ValueError(f"num_pairs: expected >= 1, found {num_pairs}")
    lo, hi = time_gap
    if not 0 < lo <= hi:
        raise ValueError(f"time_gap: expected 0 < min <= max seconds, found {time_gap}")

    def make():
        rng = np.random.default_rng([SPLIT_SEEDS[split] + int(seed), 23])
        out = []
        for i in tqdm(range(int(num_pairs)), desc=f"synthetic {split} matching pairs", disable=not progress,
                      leave=False):
            scene_seed = SPLIT_SEEDS[split] + int(seed) * 1000 + 500 + i
            p = synthetic_rgbd_pair(int(height), int(width), time_gap=float(rng.uniform(lo, hi)),
                                    t_source=float(rng.uniform(0.0, 4.0)), kinect_noise=kinect_noise, seed=scene_seed)
            p = _plain(p)
            p.name = f"{split}-{scene_seed}"
            out.append(p)
        return out

    key = {"kind": "matching", "split": split, "n": int(num_pairs), "h": int(height), "w": int(width),
           "seed": int(seed), "gap": [float(lo), float(hi)], "noise": bool(kinect_noise), "v": 1}
    return cached_torch(cache_dir, "matching", key, make)


def resize_pair(pair: RGBDPair, scale: float) -> RGBDPair:
    """The pair resampled by ``scale`` (e.g. 0.3: a 480 x 640 DeepDeform pair to 144 x 192, the teaching size):
    colours by area averaging, depth / masks / flows at the nearest pixel (no mixing across depth edges), optical
    flow multiplied by ``scale``, intrinsics exactly rescaled (pixel centres: c' = (c + 0.5) s - 0.5)."""
    if not 0 < float(scale) <= 4:
        raise ValueError(f"scale: expected a factor in (0, 4], found {scale!r}")
    if float(scale) == 1.0:
        return pair
    H, W = pair.source_depth.shape
    h, w = max(1, int(round(H * scale))), max(1, int(round(W * scale)))
    sy, sx = h / H, w / W

    def img(x):
        return F.interpolate(x[None].float(), size=(h, w), mode="area" if scale < 1 else "bilinear")[0].to(x.dtype)

    def near(x):
        if x is None:
            return None
        ys = ((torch.arange(h) + 0.5) / sy - 0.5).round().long().clamp(0, H - 1)
        xs = ((torch.arange(w) + 0.5) / sx - 0.5).round().long().clamp(0, W - 1)
        return x[ys][:, xs]

    fx, fy, cx, cy = (float(v) for v in pair.intrinsics)
    K = torch.tensor([fx * sx, fy * sy, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5], dtype=pair.intrinsics.dtype)
    flow = near(pair.optical_flow)
    if flow is not None:
        flow = flow * torch.tensor([sx, sy], dtype=flow.dtype)
    return RGBDPair(img(pair.source_color), img(pair.target_color), near(pair.source_depth), near(pair.target_depth),
                    K, flow, near(pair.scene_flow), near(pair.flow_valid), near(pair.visibility),
                    near(pair.source_mask), near(pair.target_mask), near(pair.segmentation),
                    f"{pair.name}@{float(scale):g}")
