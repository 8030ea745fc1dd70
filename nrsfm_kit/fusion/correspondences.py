"""Correspondence sources of the keyframe term: from pixels of one RGB-D frame to pixels of another, with weights.

One interface for every source (:class:`CorrespondenceSource`): ``match(source, target, source_px)`` returns the
target pixels (K, 2) and weights (K,) in [0, 1] of the source pixels (K, 2), NaN target pixels where the source
has no answer. Registered by name in :data:`SOURCES` (``--correspondences`` of ``nrsfm-kit fuse``):

- ``none``: no correspondences (pure ICP against the model: DynamicFusion);
- ``dis``: OpenCV's DIS optical flow (Kroeger et al. 2016) between the two colour images, weight 1 (DIS gives
  no confidence; the bi-directional and multi-keyframe checks of the pipeline do the rejection);
- ``nnrt``: the learned tracker's Phi (PWC-Net flow) + Psi (correspondence weights) of Neural Non-Rigid
  Tracking (:class:`nrsfm_kit.tracking.model.NeuralTracker`; default checkpoint: the shipped teaching tracker);
  images are padded (edge replicate) to sides divisible by 64 for PWC-Net;
- ``deepdeform``: DeepDeform's Siamese heatmap matcher (:func:`nrsfm_kit.matching.inference.match_points`;
  default: the shipped teaching matcher): the heatmap's peak per source pixel, weight = predicted visibility V
  where the match is accepted (V >= 0.5 and predicted depth within 0.15 m of the target depth), 0 otherwise.

Frames are :class:`FrameData` (colour (3, H, W) in [0, 1], depth (H, W) metres, intrinsics (4,)).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

from nrsfm_kit.utils.checks import check_tensor

__all__ = ["FrameData", "CorrespondenceSource", "NoCorrespondences", "DISCorrespondences", "NNRTCorrespondences",
           "DeepDeformCorrespondences", "SOURCES", "make_source"]


class FrameData(NamedTuple):
    """One RGB-D frame: color (3, H, W) in [0, 1], depth (H, W) metres (0 invalid), intrinsics (4,)."""

    color: torch.Tensor
    depth: torch.Tensor
    intrinsics: torch.Tensor


def _sample_nearest(img: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    """img (H, W, C) at the nearest pixels of px (K, 2) (clamped inside)."""
    H, W = img.shape[:2]
    u = px[:, 0].round().long().clamp(0, W - 1)
    v = px[:, 1].round().long().clamp(0, H - 1)
    return img[v, u]


class CorrespondenceSource:
    """Interface: ``match(source, target, source_px) -> (target_px (K, 2), weights (K,))``."""

    name = "source"
    uses_correspondences = True
    #: keyframe pixels this source is asked about per keyframe (None: ``FusionConfig.keyframe_points``)
    max_points: int | None = None

    def match(self, source: FrameData, target: FrameData, source_px: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def __call__(self, source: FrameData, target: FrameData, source_px: torch.Tensor):
        check_tensor("source.color", source.color, (3, "H", "W"))
        H, W = source.color.shape[1:]
        check_tensor("target.color", target.color, (3, H, W))
        check_tensor("source_px", source_px, (None, 2))
        if source_px.shape[0] == 0:
            return source_px.clone(), source_px.new_zeros(0)
        tpx, w = self.match(source, target, source_px.float())
        return tpx.float(), w.float().clamp(0, 1)


class NoCorrespondences(CorrespondenceSource):
    """``none``: pure ICP (no keyframe term)."""

    name = "none"
    uses_correspondences = False

    def match(self, source, target, source_px):
        K = source_px.shape[0]
        return torch.full((K, 2), float("nan")), torch.zeros(K)


class DISCorrespondences(CorrespondenceSource):
    """``dis``: DIS optical flow (OpenCV ``medium`` preset).

    DIS gives no confidence: ``weights="ones"`` (default) gives weight 1 everywhere and leaves the rejection to the
    pipeline's bi-directional and multi-keyframe checks. ``weights="consistency"`` gives each correspondence the
    forward-backward consistency test of Sundaram, Brox and Keutzer (ECCV 2010) as a 0 / 1 weight: with the forward
    flow w at the source pixel and the backward flow w' at its target, consistent iff
    |w + w'|^2 < 0.01 (|w|^2 + |w'|^2) + 0.5 px^2 (their published constants), so the delta threshold rejects the
    rest. Measured (benchmarks/RESULTS.md, issue 16): on the synthetic sequences it lowers the deformation error
    with keyframes (fast: 2.57 -> 2.01 cm), but on the real DeepDeform pair seq258 (110 frames apart) it rejects
    nearly every correspondence and fusion falls back to pure ICP (2.2 -> 23.9 cm): large-displacement DIS flow is
    rarely consistent by that strict test, so it is not the default.
    """

    name = "dis"

    def __init__(self, preset: str = "medium", weights: str = "ones"):
        if weights not in ("consistency", "ones"):
            raise ValueError(f"weights: expected 'consistency' or 'ones', found {weights!r}")
        self.preset, self.weights = preset, weights

    def match(self, source, target, source_px):
        from nrsfm_kit.tracking.io import dis_flow

        flow = dis_flow(source.color, target.color, preset=self.preset)
        fwd = _sample_nearest(flow, source_px)
        tpx = source_px + fwd
        if self.weights == "ones":
            return tpx, torch.ones(source_px.shape[0])
        back = _sample_nearest(dis_flow(target.color, source.color, preset=self.preset), tpx)
        H, W = flow.shape[:2]
        inside = (tpx[:, 0] > -0.5) & (tpx[:, 0] < W - 0.5) & (tpx[:, 1] > -0.5) & (tpx[:, 1] < H - 0.5)
        err = ((fwd + back) ** 2).sum(-1)
        ok = inside & (err < 0.01 * ((fwd**2).sum(-1) + (back**2).sum(-1)) + 0.5)
        return tpx, ok.float()


def _pad64(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) padded at the bottom / right (edge replicate) to sides divisible by 64."""
    H, W = x.shape[-2:]
    ph, pw = (-H) % 64, (-W) % 64
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if (ph or pw) else x


class NNRTCorrespondences(CorrespondenceSource):
    """``nnrt``: the learned tracker's Phi (flow) + Psi (weights), Neural Non-Rigid Tracking sec. 4.1-4.2."""

    name = "nnrt"

    def __init__(self, checkpoint: str | Path | None = None, tracker=None):
        if tracker is None:
            from nrsfm_kit.tracking.training import load_tracker

            path = Path(checkpoint) if checkpoint is not None else SHIPPED_TRACKER
            tracker = load_tracker(path)
        self.tracker = tracker.eval()

    @torch.no_grad()
    def match(self, source, target, source_px):
        p = next(self.tracker.parameters())
        dev, dt = p.device, p.dtype
        H, W = source.color.shape[1:]
        sc = _pad64(source.color.unsqueeze(0).to(dev, dt))
        tc = _pad64(target.color.unsqueeze(0).to(dev, dt))
        sd = _pad64(source.depth[None, None].to(dev, dt))[:, 0]
        td = _pad64(target.depth[None, None].to(dev, dt))[:, 0]
        intr = source.intrinsics.reshape(1, 4).to(dev, dt)
        out = self.tracker.correspond(sc, tc, td, intr, sd, weights=True)
        flow = out["flow"][0].permute(1, 2, 0)[:H, :W].cpu().float()
        w = out["weights"][0][:H, :W].cpu().float()
        return source_px + _sample_nearest(flow, source_px), _sample_nearest(w.unsqueeze(-1), source_px)[:, 0]


class DeepDeformCorrespondences(CorrespondenceSource):
    """``deepdeform``: the Siamese heatmap matcher (DeepDeform sec. 4.1), weight = visibility where accepted."""

    name = "deepdeform"
    # DeepDeform matches sparse points (one heatmap per point, ~10 ms each on a CPU core at teaching size): the
    # keyframe term takes 100 per keyframe, of the order of the 20-50 annotated matches the method was made for
    max_points = 100

    def __init__(self, checkpoint: str | Path | None = None, matcher=None, batch_size: int = 64):
        if matcher is None:
            from nrsfm_kit.matching.training import load_matcher

            matcher = load_matcher(checkpoint)
        self.matcher, self.batch_size = matcher.eval(), int(batch_size)

    def match(self, source, target, source_px):
        from nrsfm_kit.data.types import RGBDPair
        from nrsfm_kit.matching.inference import match_points

        pair = RGBDPair(source.color, target.color, source.depth, target.depth, source.intrinsics)
        # the matcher needs valid source depth at every pixel it is asked about
        z = _sample_nearest(source.depth.unsqueeze(-1), source_px)[:, 0]
        ok = torch.isfinite(z) & (z > 0)
        tpx = torch.full((source_px.shape[0], 2), float("nan"))
        w = torch.zeros(source_px.shape[0])
        if bool(ok.any()):
            m = match_points(self.matcher, pair, source_px[ok], batch_size=self.batch_size)
            tpx[ok] = m.target_px.cpu().float()
            w[ok] = torch.where(m.accepted.cpu(), m.visibility.cpu().float(), torch.zeros_like(m.visibility.cpu()))
        return tpx, w


SHIPPED_TRACKER = Path(__file__).resolve().parents[2] / "datasets" / "weights" / "tracker_teaching_synthetic.pt"

#: correspondence sources by name
SOURCES = {"none": NoCorrespondences, "dis": DISCorrespondences, "nnrt": NNRTCorrespondences,
           "deepdeform": DeepDeformCorrespondences}


def make_source(name: str, checkpoint: str | Path | None = None) -> CorrespondenceSource:
    """The source called ``name`` (``checkpoint``: weights of ``nnrt`` / ``deepdeform``, default the shipped ones)."""
    if name not in SOURCES:
        raise ValueError(f"correspondences: expected one of {list(SOURCES)}, found {name!r}")
    if checkpoint is not None and name in ("none", "dis"):
        raise ValueError(f"checkpoint: the {name!r} source has no weights, found {checkpoint}")
    return SOURCES[name](checkpoint) if name in ("nnrt", "deepdeform") else SOURCES[name]()
