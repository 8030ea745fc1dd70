"""Inference rules (sec. 4.2), the learned term in the solver and the DeepDeform tracker."""

import pytest
import torch
from torch import nn

from nrsfm_kit.data.rgbd import synthetic_rgbd_pair
from nrsfm_kit.geometry import project_with_mask
from nrsfm_kit.graph import build_graph
from nrsfm_kit.matching.inference import Matches, match_points
from nrsfm_kit.matching.losses import gaussian_heatmap
from nrsfm_kit.matching.tracker import DeepDeformTrackerConfig, learned_terms, track_deepdeform
from nrsfm_kit.metrics.matching import ground_truth_matches
from nrsfm_kit.models.matcher import MatcherConfig, matcher_output
from nrsfm_kit.solver.reference import autograd_blocks


class ShiftMatcher(nn.Module):
    """A stand-in network that 'finds' every match at a fixed patch offset, with a chosen depth error and
    visibility: tests the inference arithmetic without training."""

    def __init__(self, shift=(3, -2), depth_error=0.0, visibility_logit=5.0, size=32):
        super().__init__()
        self.config = MatcherConfig(patch_size=size, num_down=5)
        self.shift, self.depth_error, self.vis = shift, depth_error, visibility_logit
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, source, target):
        B, _, S, _ = source.shape
        c = (S - 1) / 2
        g = torch.arange(S, dtype=source.dtype)
        yy, xx = torch.meshgrid(g, g, indexing="ij")
        tx, ty = c + 0.5 + self.shift[0], c + 0.5 + self.shift[1]
        logits = (-((xx - tx) ** 2 + (yy - ty) ** 2) / 4.0).expand(B, S, S) + 0 * self.dummy
        z = target[:, 5, int(ty), int(tx)] + self.depth_error
        depth = z.view(B, 1, 1).expand(B, S, S)
        return matcher_output(logits, depth, torch.full((B,), self.vis))


@pytest.fixture(scope="module")
def pair():
    return synthetic_rgbd_pair(64, 96, seed=5, time_gap=0.6, t_source=1.0)


def _points(pair, k=12):
    m = pair.source_mask & (pair.source_depth > 0)
    yy, xx = torch.nonzero(m, as_tuple=True)
    sel = torch.linspace(0, len(xx) - 1, k).long()
    return torch.stack([xx[sel], yy[sel]], -1).float()


def test_match_points_maps_the_heatmap_maximum_to_image_pixels(pair):
    px = _points(pair)
    m = match_points(ShiftMatcher(), pair, px, return_heatmaps=True)
    # peak at patch pixel (c + 0.5 + 3, c + 0.5 - 2) -> rounded to the grid -> image pixel source + (3.5, -1.5) ...
    S = 32
    c = (S - 1) / 2
    expect = px + torch.tensor([int(c + 0.5 + 3) - c, int(c + 0.5 - 2) - c])
    assert torch.allclose(m.target_px, expect)
    assert m.heatmaps.shape == (12, S, S)
    assert torch.allclose(m.offsets, px - c)
    inside = (expect[:, 0] <= 95) & (expect[:, 1] >= 0)
    assert m.accepted[inside & (m.target_depth > 0)].all()


def test_rejection_rules(pair):
    px = _points(pair)
    far = match_points(ShiftMatcher(depth_error=0.2), pair, px)
    assert not far.accepted.any()  # |D - target depth| > 0.15 m
    near = match_points(ShiftMatcher(depth_error=0.1), pair, px)
    assert near.accepted[near.target_depth > 0].all()
    hidden = match_points(ShiftMatcher(visibility_logit=-5.0), pair, px)
    assert not hidden.accepted.any()  # V < 0.5


def test_match_points_bad_input(pair):
    with pytest.raises(ValueError, match="source_px"):
        match_points(ShiftMatcher(), pair, torch.zeros(0, 2))
    with pytest.raises(ValueError, match="source_px.*inside"):
        match_points(ShiftMatcher(), pair, torch.tensor([[200.0, 10.0]]))
    holes = (pair.source_depth <= 0).nonzero()
    bad = torch.tensor([[0.0, 0.0]]) if len(holes) == 0 else holes[:1].flip(-1).float()
    if len(holes):
        with pytest.raises(ValueError, match="valid source depth"):
            match_points(ShiftMatcher(), pair, bad)
    with pytest.raises(ValueError, match="source_px"):
        match_points(ShiftMatcher(), pair, torch.zeros(3, 3))


def _oracle_matches(pair, graph, S=32):
    """Matches built from the ground truth: a Gaussian heatmap at the true pixel, the true 3D point."""
    uv, ok = project_with_mask(graph.nodes, pair.intrinsics)
    H, W = pair.source_depth.shape
    ids = torch.nonzero(ok & (uv[:, 0] >= 0) & (uv[:, 1] >= 0) & (uv[:, 0] <= W - 1) & (uv[:, 1] <= H - 1)).squeeze(1)
    px = uv[ids]
    tpx, txyz, good = ground_truth_matches(pair, px)
    off = px - (S - 1) / 2
    G = gaussian_heatmap(torch.nan_to_num(tpx - off), S, 7.0)
    return Matches(px, tpx, txyz[:, 2], good.float(), txyz[:, 2], good, txyz, G, off), ids


def test_learned_term_pulls_tracking_to_the_matches():
    """Large motion (1.5 s): projective ICP alone drifts; with the learned term (oracle matches) the 3D end-point
    error drops to a few mm (measured 97 -> 6 mm at 96 x 128)."""
    pair = synthetic_rgbd_pair(96, 128, seed=4, time_gap=1.5, t_source=1.0)
    mask = pair.source_mask & (pair.source_depth > 0)
    graph = build_graph(pair.source_depth, mask, pair.intrinsics)
    data = track_deepdeform(pair, graph, source_mask=mask).alignment
    m, ids = _oracle_matches(pair, graph)
    tr = track_deepdeform(pair, graph, matches=(m, ids), source_mask=mask)
    ok = pair.flow_valid & mask & pair.visibility & data.valid & tr.alignment.valid
    gt = pair.scene_flow[ok]
    err_id = float(gt.norm(dim=-1).mean())
    err_data = float((data.scene_flow[ok] - gt).norm(dim=-1).mean())
    err_learned = float((tr.alignment.scene_flow[ok] - gt).norm(dim=-1).mean())
    assert err_learned < 0.015, err_learned
    assert err_learned < 0.3 * min(err_data, err_id)
    assert tr.node_ids.numel() == int(m.accepted.sum())
    assert "heatmap" in tr.alignment.history[-1] and "learned_point" in tr.alignment.history[-1]


def test_learned_terms_energy_and_jacobian_against_autograd():
    """The heatmap + point terms on node positions: analytic Jacobians equal autograd of their residuals."""
    from types import SimpleNamespace

    from nrsfm_kit.geometry import so3_exp

    pair = synthetic_rgbd_pair(64, 96, seed=2, time_gap=0.6, t_source=1.0)
    mask = pair.source_mask & (pair.source_depth > 0)
    graph = build_graph(pair.source_depth, mask, pair.intrinsics)
    m, ids = _oracle_matches(pair, graph)
    terms = learned_terms(graph.nodes.double(), ids, m._replace(heatmaps=m.heatmaps.double(),
                                                              offsets=m.offsets.double(),
                                                              target_xyz=m.target_xyz.double()),
                          pair.intrinsics.double())
    assert [t.name for t in terms] == ["heatmap", "learned_point"]
    nodes = graph.nodes.double()
    N = nodes.shape[0]
    g = torch.Generator().manual_seed(0)
    R = so3_exp(0.1 * torch.randn(1, N, 3, generator=g, dtype=torch.float64))
    t = 0.01 * torch.randn(1, N, 3, generator=g, dtype=torch.float64)
    ref = autograd_blocks(SimpleNamespace(nodes=nodes, terms=terms), R, t)
    for term, blk_ref in zip(terms, ref):
        blk = term.linearize(nodes, R, t, backend="warp")
        torch.testing.assert_close(blk.r, blk_ref.r)
        torch.testing.assert_close(blk.J, blk_ref.J, atol=1e-9, rtol=1e-7)
        assert float(blk.J.abs().sum()) > 0


def test_learned_terms_bad_input(pair):
    graph = build_graph(pair.source_depth, pair.source_mask & (pair.source_depth > 0), pair.intrinsics)
    m, ids = _oracle_matches(pair, graph)
    with pytest.raises(ValueError, match="heatmaps"):
        learned_terms(graph.nodes, ids, m._replace(heatmaps=None), pair.intrinsics)
    with pytest.raises(ValueError, match="node_ids"):
        learned_terms(graph.nodes, ids[:-1], m, pair.intrinsics)
    assert learned_terms(graph.nodes, ids, m._replace(accepted=torch.zeros_like(m.accepted)), pair.intrinsics) == []
    with pytest.raises(ValueError, match="lambda_point"):
        DeepDeformTrackerConfig(lambda_point=-1.0)
    with pytest.raises(ValueError, match="min_visibility"):
        DeepDeformTrackerConfig(min_visibility=2.0)
