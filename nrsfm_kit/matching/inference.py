"""Matching source points with the trained Siamese matcher (DeepDeform sec. 4.2).

For a source point u: the source patch is centred on u, the target patch on the same pixel of the target frame
(no augmentation). The match is the argmax of the heatmap H = H_sg * H_sm, its depth the predicted D there, its
visibility V. A match is **rejected** when V < 0.5 or when |D - target depth at the match| > 0.15 m (sec. 4.2;
also when the target depth there is invalid: nothing to compare with). The 3D match is the matched pixel
back-projected at the target frame's depth there (the point the target camera saw; the predicted depth D decides the
rejection): the same rule as the hand-crafted baselines' 3D matches, so the 3D errors of Table 1 compare the 2D
matches and the rejections, not two depth sources.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from nrsfm_kit.data.types import RGBDPair
from nrsfm_kit.geometry import backproject
from nrsfm_kit.metrics.matching import check_source_pixels

from .data import extract_patches, frame_image, patch_to_image

__all__ = ["MIN_VISIBILITY", "MAX_DEPTH_DIFFERENCE", "Matches", "match_points"]

#: sec. 4.2: matches with predicted visibility below this are rejected
MIN_VISIBILITY = 0.5
#: sec. 4.2: matches whose predicted depth differs from the target depth at the match by more (metres) are rejected
MAX_DEPTH_DIFFERENCE = 0.15


class Matches(NamedTuple):
    """Matches of K source points.

    source_px (K, 2), target_px (K, 2) pixels (x, y); depth (K,) predicted depth metres; visibility (K,) in [0, 1];
    target_depth (K,) the target frame's depth at the match (0 = invalid); accepted (K,) bool (not rejected);
    target_xyz (K, 3) the match back-projected at the target depth (metres, target camera frame; at the predicted
    depth where the target depth is invalid: those matches are rejected); heatmaps
    (K, S, S) H over each target patch (None unless asked for); offsets (K, 2) image pixel of each target patch's
    pixel (0, 0).
    """

    source_px: torch.Tensor
    target_px: torch.Tensor
    depth: torch.Tensor
    visibility: torch.Tensor
    target_depth: torch.Tensor
    accepted: torch.Tensor
    target_xyz: torch.Tensor
    heatmaps: torch.Tensor | None
    offsets: torch.Tensor


@torch.no_grad()
def match_points(matcher, pair: RGBDPair, source_px: torch.Tensor, *, batch_size: int = 32,
                 min_visibility: float = MIN_VISIBILITY, max_depth_difference: float = MAX_DEPTH_DIFFERENCE,
                 return_heatmaps: bool = False) -> Matches:
    """Match ``source_px`` (K, 2) of ``pair``'s source frame into its target frame with ``matcher`` (a
    :class:`~nrsfm_kit.models.matcher.SiameseMatcher`); patches of ``matcher.config.patch_size``. Runs in eval mode
    without gradients, ``batch_size`` patch pairs at a time."""
    check_source_pixels(pair, source_px, require_depth=True)
    px = torch.as_tensor(source_px).to(pair.source_depth.dtype)
    S = int(matcher.config.patch_size)
    p = next(matcher.parameters())
    dev, dt = p.device, p.dtype
    src_img = frame_image(pair.source_color, pair.source_depth, pair.intrinsics).to(dev, dt)
    tgt_img = frame_image(pair.target_color, pair.target_depth, pair.intrinsics).to(dev, dt)
    px = px.to(dev, dt)
    was = matcher.training
    matcher.eval()
    tpx, dep, vis, maps = [], [], [], []
    for i in range(0, px.shape[0], int(batch_size)):
        c = px[i:i + int(batch_size)]
        out = matcher(extract_patches(src_img, c, S), extract_patches(tgt_img, c, S))
        Hm = out.heatmap.reshape(c.shape[0], -1)
        k = Hm.argmax(-1)
        pp = torch.stack([k % S, k // S], -1).to(dt)
        tpx.append(patch_to_image(pp, c, S))
        dep.append(out.depth.reshape(c.shape[0], -1).gather(1, k[:, None]).squeeze(1))
        vis.append(out.visibility.reshape(-1))
        if return_heatmaps:
            maps.append(out.heatmap)
    matcher.train(was)
    target_px, depth, visibility = torch.cat(tpx), torch.cat(dep), torch.cat(vis)
    H, W = pair.target_depth.shape
    td = pair.target_depth.to(dev, dt)
    xi, yi = target_px[:, 0].round().long().clamp(0, W - 1), target_px[:, 1].round().long().clamp(0, H - 1)
    tdep = td[yi, xi]
    tdep = torch.where(torch.isfinite(tdep) & (tdep > 0), tdep, torch.zeros_like(tdep))
    accepted = (visibility >= min_visibility) & (tdep > 0) & ((depth - tdep).abs() <= max_depth_difference)
    xyz = backproject(target_px, torch.where(tdep > 0, tdep, depth), pair.intrinsics.to(dev, dt))
    return Matches(px, target_px, depth, visibility, tdep, accepted, xyz,
                   torch.cat(maps) if return_heatmaps else None, px - (S - 1) / 2.0)

