"""The learned tracker Theta(Z_s, Z_t, V) = Omega(Phi(Z_s, Z_t), Psi(...), V) (Neural Non-Rigid Tracking, sec. 4).

1. **Phi** (:class:`~nrsfm_kit.models.pwcnet.PWCDCNet`) predicts a dense flow; the correspondence of source pixel
   u is c_u = u + flow(u) (20 x the bilinearly upsampled level-2 flow, eq. 3).
2. The target point image is sampled bilinearly at c_u (:func:`sample_targets`); a correspondence is valid only
   when all 4 neighbours have depth in (0, 6 m] (reference code).
3. **Psi** (:class:`~nrsfm_kit.models.weightnet.WeightNet`) maps the level-2 feature H, the source RGB-D and the
   target RGB-D sampled at c_u to a weight w_u in (0, 1) (eq. 6). Without Psi (``use_weights=False``, the paper's
   Phi_c rows) every weight is 1.
4. **Omega** (:func:`nrsfm_kit.solver.solve_deformation`) solves the 2D + depth + ARAP energy for the graph's node
   motions T with Gauss-Newton (3 iterations in the reference), differentiable with respect to c_u and w_u, so
   losses on T and on the warped points Q(P_s, T) train Phi and Psi through the solver (App. B).

At training time 10k valid correspondences are sampled per pair (reference ``gn_max_matches_train``); at
evaluation all valid correspondences are used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from nrsfm_kit.geometry import depth_to_points, pixel_grid
from nrsfm_kit.kernels.warp_field import warp_points_torch
from nrsfm_kit.metrics.tracking import MAX_DEPTH
from nrsfm_kit.models.pwcnet import PWCDCNet, PWCNetConfig
from nrsfm_kit.models.weightnet import WeightNet, WeightNetConfig
from nrsfm_kit.solver.config import EnergyTerms, SolverConfig
from nrsfm_kit.solver.problem import sample_bilinear
from nrsfm_kit.utils.checks import check_tensor

__all__ = ["TrackerConfig", "NeuralTracker", "TrackResult", "sample_targets", "point_images", "stack_samples",
           "CORRESPONDENCE_SOURCES"]

#: where the correspondences come from: the network, OpenCV DIS optical flow, or the ground truth (the floor)
CORRESPONDENCE_SOURCES = ("learned", "dis", "gt")


@dataclass
class TrackerConfig:
    """Settings of Theta. Defaults: the paper / reference code at full width.

    Attributes:
        width: channel multiplier of Phi and Psi (1.0 = the paper's networks, 9,374,274 + 315,633 parameters).
        use_weights: run Psi (False: all weights 1, the Phi_c rows of Table 1).
        max_depth: metres; source and target depth outside (0, max_depth] is invalid.
        train_correspondences: valid correspondences sampled per pair during training (reference 10k; None = all).
        min_correspondences: a pair with fewer valid correspondences is not solved (counted invalid).
        max_nodes: pairs whose graph has more nodes are not solved during training (memory guard; None = no limit).
        terms: energy weights (paper: lambda_2D 0.001, lambda_depth 1, lambda_ARAP 1).
        solver: Gauss-Newton settings (reference: LM damping 0.1, 3 iterations, 2000 correspondences per cluster).
    """

    width: float = 1.0
    use_weights: bool = True
    max_depth: float = MAX_DEPTH
    train_correspondences: int | None = 10_000
    min_correspondences: int = 50
    max_nodes: int | None = 2000
    terms: EnergyTerms = field(default_factory=EnergyTerms)
    solver: SolverConfig = field(default_factory=SolverConfig)

    def __post_init__(self):
        if not self.width > 0:
            raise ValueError(f"width: expected > 0, found {self.width}")
        if not self.max_depth > 0:
            raise ValueError(f"max_depth: expected > 0 metres, found {self.max_depth}")
        if self.train_correspondences is not None and int(self.train_correspondences) < 1:
            raise ValueError(f"train_correspondences: expected None or >= 1, found {self.train_correspondences}")
        if int(self.min_correspondences) < 1:
            raise ValueError(f"min_correspondences: expected >= 1, found {self.min_correspondences}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrackerConfig:
        d = dict(d)
        d["terms"] = EnergyTerms(**d.get("terms", {}))
        d["solver"] = SolverConfig(**d.get("solver", {}))
        return cls(**d)


@dataclass
class TrackResult:
    """Output of :meth:`NeuralTracker.track` for one pair.

    Attributes:
        rotations, translations: (N, 3, 3), (N, 3) node motion (source camera frame, metres).
        node_valid: (N,) bool, nodes of clusters the solver kept.
        pixels: (P,) long, flat indices (row * W + col) of the evaluated source pixels (object, valid depth,
            valid anchors).
        source_points: (P, 3) metres; warped: (P, 3) Q(P_s, T).
        correspondences: (H, W, 2) c_u (pixels); corr_valid: (H, W) bool; weights: (H, W) w_u.
        solved: False when the pair had too few valid correspondences (T is then the identity).
        info: the solver's info dict (energies per iteration, valid nodes and points, timings).
    """

    rotations: torch.Tensor
    translations: torch.Tensor
    node_valid: torch.Tensor
    pixels: torch.Tensor
    source_points: torch.Tensor
    warped: torch.Tensor
    correspondences: torch.Tensor
    corr_valid: torch.Tensor
    weights: torch.Tensor
    solved: bool
    used: int = 0
    info: dict = field(default_factory=dict)


def stack_samples(samples, name: str, device=None) -> torch.Tensor:
    """``torch.stack`` of one field of a list of :class:`~nrsfm_kit.tracking.data.TrackingSample` on ``device``."""
    return torch.stack([getattr(s, name) for s in samples]).to(device)


def point_images(depth: torch.Tensor, intrinsics: torch.Tensor, max_depth: float = MAX_DEPTH):
    """(points (B, H, W, 3) metres, valid (B, H, W)) with depth valid in (0, max_depth]; depth (B, H, W),
    intrinsics (B, 4)."""
    pts, ok = depth_to_points(depth, intrinsics)
    return pts, ok & (depth <= max_depth)


def sample_targets(correspondences: torch.Tensor, target_points: torch.Tensor, target_valid: torch.Tensor,
                   target_color: torch.Tensor | None = None):
    """Target points (and colours) at the correspondences, bilinearly, differentiable w.r.t. c_u.

    Args:
        correspondences: (B, H, W, 2) pixels. target_points: (B, H, W, 3). target_valid: (B, H, W) bool.
        target_color: (B, 3, H, W) or None.

    Returns:
        (points (B, H, W, 3), valid (B, H, W) bool: inside and all 4 neighbours valid, colour (B, 3, H, W) or None).
    """
    B, H, W, _ = correspondences.shape
    uv = correspondences.reshape(B, H * W, 2)
    finite = torch.isfinite(uv).all(-1)
    uv = torch.where(finite.unsqueeze(-1), uv, torch.full_like(uv, -10.0))
    pts, ok = sample_bilinear(target_points, target_valid, uv)
    col = None
    if target_color is not None:
        c, _ = sample_bilinear(target_color.permute(0, 2, 3, 1), torch.ones_like(target_valid), uv)
        col = c.reshape(B, H, W, 3).permute(0, 3, 1, 2)
    return pts.reshape(B, H, W, 3), (ok & finite).reshape(B, H, W), col


class NeuralTracker(nn.Module):
    """Phi + Psi + the differentiable solver. ``phi`` and ``psi`` are the two networks."""

    def __init__(self, config: TrackerConfig | None = None, correlation=None):
        super().__init__()
        self.config = config or TrackerConfig()
        self.phi = PWCDCNet(PWCNetConfig(width=self.config.width), correlation=correlation)
        self.psi = WeightNet(WeightNetConfig(feature_channels=self.phi.feature_channels, width=self.config.width))

    # --- Phi and Psi on a batch of images -------------------------------------------------------------------

    def correspond(self, source_color: torch.Tensor, target_color: torch.Tensor, target_depth: torch.Tensor,
                   intrinsics: torch.Tensor, source_depth: torch.Tensor | None = None, *,
                   weights: bool | None = None, flow: torch.Tensor | None = None) -> dict:
        """Dense correspondences and weights for a batch.

        Args:
            source_color, target_color: (B, 3, H, W) in [0, 1]; H, W multiples of 64.
            target_depth: (B, H, W) metres; intrinsics: (B, 4).
            source_depth: (B, H, W), needed by Psi (source XYZ input).
            weights: run Psi (default ``config.use_weights``).
            flow: (B, 2, H, W) given flow in pixels (DIS or ground truth) instead of Phi's; Psi still needs Phi's
                feature, so with a given flow and weights on, Phi runs too.

        Returns:
            dict with "flows" (Phi's pyramid, flow / 20, or None), "flow" (B, 2, H, W) pixels, "correspondences"
            (B, H, W, 2), "target_points" (B, H, W, 3), "valid" (B, H, W) bool, "weights" (B, H, W).
        """
        check_tensor("source_color", source_color, ("B", 3, "H", "W"))
        B, _, H, W = source_color.shape
        check_tensor("target_color", target_color, (B, 3, H, W))
        check_tensor("target_depth", target_depth, (B, H, W), finite=False)
        check_tensor("intrinsics", intrinsics, (B, 4))
        use_w = self.config.use_weights if weights is None else bool(weights)
        out = {"flows": None, "feature": None}
        if flow is None or use_w:
            net = self.phi(source_color, target_color)
            out.update(flows=net["flows"], feature=net["feature"])
            if flow is None:
                flow = net["flow"]
        check_tensor("flow", flow, (B, 2, H, W), finite=False)
        grid = pixel_grid(H, W, dtype=flow.dtype, device=flow.device)
        corr = grid + flow.permute(0, 2, 3, 1)
        tp, tv = point_images(target_depth, intrinsics, self.config.max_depth)
        tpts, ok, tcol = sample_targets(corr, tp, tv, target_color if use_w else None)
        if use_w:
            if source_depth is None:
                raise ValueError("source_depth: expected (B, H, W) metres (Psi's source XYZ input), found None")
            sp, _ = point_images(source_depth, intrinsics, self.config.max_depth)
            tz = torch.where(ok.unsqueeze(-1), tpts, torch.zeros_like(tpts))
            w = self.psi(out["feature"], source_color, sp.permute(0, 3, 1, 2), tcol, tz.permute(0, 3, 1, 2))
        else:
            w = torch.ones(B, H, W, dtype=flow.dtype, device=flow.device)
        out.update(flow=flow, correspondences=corr, target_points=tpts, valid=ok, weights=w)
        return out

    # --- Omega per pair --------------------------------------------------------------------------------------

    def solve(self, sample, correspondences: torch.Tensor, corr_valid: torch.Tensor, weights: torch.Tensor, *,
              num_samples: int | None = None, generator: torch.Generator | None = None) -> TrackResult:
        """Solve one pair's node motion from its dense correspondences.

        Args:
            sample: a :class:`~nrsfm_kit.tracking.data.TrackingSample` (graph, depth, intrinsics, object mask).
            correspondences: (H, W, 2); corr_valid: (H, W) bool; weights: (H, W).
            num_samples: correspondences drawn at random among the valid ones (None = all).
        """
        from nrsfm_kit.solver import solve_deformation

        g = sample.graph
        dt = correspondences.dtype
        H, W = sample.source_depth.shape
        sp, sv = point_images(sample.source_depth.unsqueeze(0), sample.intrinsics.unsqueeze(0).to(dt),
                              self.config.max_depth)
        sp, sv = sp[0].to(dt), sv[0]
        anchors = g.pixel_anchors.to(sp.device)
        aw = g.pixel_weights.to(device=sp.device, dtype=dt)
        base = sample.object_mask & sv & (anchors >= 0).any(-1)
        pixels = base.reshape(-1).nonzero().squeeze(1)
        flat = lambda x: x.reshape(H * W, *x.shape[2:])  # noqa: E731
        P_all = flat(sp)[pixels]
        A_all, AW_all = flat(anchors)[pixels], flat(aw)[pixels]
        usable = (base & corr_valid & torch.isfinite(correspondences).all(-1)).reshape(-1).nonzero().squeeze(1)
        if num_samples is not None and usable.numel() > num_samples:
            perm = torch.randperm(usable.numel(), generator=generator)[: int(num_samples)].to(usable.device)
            usable = usable[perm]
        N = g.num_nodes
        nodes = g.nodes.to(device=sp.device, dtype=dt)
        eye = torch.eye(3, dtype=dt, device=sp.device).expand(N, 3, 3)
        zero = torch.zeros(N, 3, dtype=dt, device=sp.device)
        too_big = self.training and self.config.max_nodes is not None and N > self.config.max_nodes
        if usable.numel() < self.config.min_correspondences or too_big:
            warped = warp_points_torch(P_all, A_all, AW_all, nodes, eye, zero)
            return TrackResult(eye, zero, torch.zeros(N, dtype=torch.bool, device=sp.device), pixels, P_all, warped,
                               correspondences, corr_valid, weights, solved=False, used=int(usable.numel()))
        graph = g if g.nodes.dtype == dt else g.to(dtype=dt)
        T, info = solve_deformation(
            graph, flat(sp)[usable], flat(correspondences)[usable], flat(weights)[usable],
            sample.target_depth.to(dt), sample.intrinsics.to(dt), anchors=flat(anchors)[usable],
            anchor_weights=flat(aw)[usable], terms=self.config.terms, config=self.config.solver)
        warped = warp_points_torch(P_all, A_all, AW_all, nodes, T.rotations, T.translations)
        return TrackResult(T.rotations, T.translations, info["valid_nodes"].reshape(-1), pixels, P_all, warped,
                           correspondences, corr_valid, weights, solved=True, used=int(usable.numel()), info=info)

    def track(self, samples, *, correspondences: str = "learned", weights: bool | None = None,
              num_samples: int | None = None, generator: torch.Generator | None = None) -> tuple[dict, list]:
        """Theta on a list of pairs (one batch of equal image size).

        Args:
            samples: list of :class:`~nrsfm_kit.tracking.data.TrackingSample`.
            correspondences: "learned" (Phi), "dis" (OpenCV DIS optical flow, no training) or "gt" (ground-truth
                flow, the floor of Table 1).
            weights: run Psi (default ``config.use_weights``; always off for "dis" and "gt").
            num_samples: correspondences per pair (default: ``config.train_correspondences`` in training mode,
                all at evaluation).

        Returns:
            (batch dict of :meth:`correspond`, list of :class:`TrackResult`).
        """
        if correspondences not in CORRESPONDENCE_SOURCES:
            raise ValueError(f"correspondences: expected one of {list(CORRESPONDENCE_SOURCES)}, "
                             f"found {correspondences!r}")
        if not samples:
            raise ValueError("samples: expected at least one TrackingSample, found none")
        sizes = {tuple(s.source_depth.shape) for s in samples}
        if len(sizes) != 1:
            raise ValueError(f"samples: expected one image size per batch, found {sorted(sizes)}")
        dev = next(self.parameters()).device
        dt = next(self.parameters()).dtype
        stack = lambda name: stack_samples(samples, name, dev)  # noqa: E731
        sc, tc = stack("source_color").to(dt), stack("target_color").to(dt)
        flow = None
        if correspondences == "gt":
            flow = stack("optical_flow").to(dt).permute(0, 3, 1, 2)
            flow = torch.where(stack("flow_valid").unsqueeze(1), flow, torch.full_like(flow, float("nan")))
        elif correspondences == "dis":
            from .io import dis_flow

            flow = torch.stack([dis_flow(s.source_color, s.target_color).permute(2, 0, 1) for s in samples]).to(dev, dt)
        use_w = (self.config.use_weights if weights is None else bool(weights)) and correspondences == "learned"
        batch = self.correspond(sc, tc, stack("target_depth").to(dt), stack("intrinsics").to(dt),
                                stack("source_depth").to(dt), weights=use_w, flow=flow)
        if num_samples is None and self.training:
            num_samples = self.config.train_correspondences
        results = [self.solve(s.to(dev), batch["correspondences"][b], batch["valid"][b], batch["weights"][b],
                              num_samples=num_samples, generator=generator) for b, s in enumerate(samples)]
        return batch, results
