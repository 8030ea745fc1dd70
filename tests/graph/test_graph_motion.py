"""Node motion from node translations (Procrustes over the edge neighbourhood), synthetic and real."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nrsfm_kit.geometry import depth_to_points, random_rotation, so3_log
from nrsfm_kit.graph import build_graph, build_graph_with_info
from nrsfm_kit.graph.motion import node_rotations_from_translations, sample_at_nodes
from nrsfm_kit.graph.synthetic import bend_field, node_motion_from_field, synthetic_depth
from nrsfm_kit.kernels.warp_field import warp_point_image


@pytest.fixture(scope="module")
def wave():
    depth, mask, intr = synthetic_depth(90, 120, "wave", extent=0.6)
    return depth, mask, intr, build_graph(depth, mask, intr)


def test_rigid_rotation_recovered_exactly(wave):
    *_, g = wave
    nodes = g.nodes.double()
    Rg = random_rotation(1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)[0]
    t = nodes @ Rg.T + torch.tensor([0.1, 0.0, -0.05], dtype=torch.float64) - nodes
    R = node_rotations_from_translations(nodes, g.edges, g.edge_weights.double(), t)
    assert (R - Rg).abs().max() < 1e-9


def test_bend_rotations_close_to_the_field_and_improve_the_warp(wave):
    depth, _, intr, g = wave
    nodes = g.nodes.double()
    field = lambda p: bend_field(p, nodes.mean(0), 1.0, (0.0, 0.01, 0.0))  # noqa: E731
    R_true, t = node_motion_from_field(nodes, field)
    R = node_rotations_from_translations(nodes, g.edges, g.edge_weights.double(), t)
    angle = so3_log(R.transpose(-1, -2) @ R_true).norm(dim=-1)
    assert angle.median() < np.deg2rad(3.0)  # polar(J) at the node vs a fit over +-2 sigma: close, not equal
    pts, _ = depth_to_points(torch.from_numpy(depth).double(), torch.from_numpy(intr))
    has = (g.pixel_anchors >= 0).any(-1)
    eye = torch.eye(3, dtype=torch.float64).repeat(g.num_nodes, 1, 1)
    w = g.pixel_weights.double()
    err_t = (warp_point_image(pts, g.pixel_anchors, w, nodes, eye, t) - field(pts)).norm(dim=-1)[has].mean()
    err_r = (warp_point_image(pts, g.pixel_anchors, w, nodes, R, t) - field(pts)).norm(dim=-1)[has].mean()
    assert err_r < 0.5 * err_t


def test_bad_inputs(wave):
    *_, g = wave
    with pytest.raises(ValueError, match=r"translations: expected shape \(N, 3\)"):
        node_rotations_from_translations(g.nodes, g.edges, g.edge_weights, torch.zeros(3, 3))
    with pytest.raises(ValueError, match="edges: expected shape"):
        node_rotations_from_translations(g.nodes, g.edges[:, :3], g.edge_weights, torch.zeros_like(g.nodes))
    with pytest.raises(ValueError, match="vertex_pixels: expected .* inside the 4x3 image"):
        sample_at_nodes(torch.zeros(3, 4, 3), torch.tensor([[4, 0]]))


def test_real_scene_flow_is_reproduced_by_the_graph(real_data):
    """seq258 shirt, frame 0 -> 110: node motion from the scene flow at the nodes reproduces the
    per-pixel scene flow (mean 23 cm) to a few millimetres; rotations from Procrustes help."""
    from nrsfm_kit.data.deepdeform import load_deepdeform_pair

    pair = load_deepdeform_pair(real_data("deepdeform", "train", "seq258"), 0, 110, "shirt")
    g, info = build_graph_with_info(pair.source_depth, pair.source_mask, pair.intrinsics)
    pts, _ = depth_to_points(pair.source_depth.double(), pair.intrinsics.double())
    sf, fv = pair.scene_flow.double(), pair.flow_valid
    node_px = torch.from_numpy(info.mesh.vertex_pixels[info.node_vertex_ids])
    assert sample_at_nodes(fv[..., None], node_px).all()
    t = sample_at_nodes(sf, node_px)
    nodes, w = g.nodes.double(), g.pixel_weights.double()
    eye = torch.eye(3, dtype=torch.float64).repeat(g.num_nodes, 1, 1)
    R = node_rotations_from_translations(nodes, g.edges, g.edge_weights.double(), t)
    has = (g.pixel_anchors >= 0).any(-1) & fv
    target = pts + sf
    err_t = (warp_point_image(pts, g.pixel_anchors, w, nodes, eye, t) - target).norm(dim=-1)[has].mean()
    err_r = (warp_point_image(pts, g.pixel_anchors, w, nodes, R, t) - target).norm(dim=-1)[has].mean()
    assert sf.norm(dim=-1)[has].mean() > 0.1
    assert err_r < 3e-3 and err_r < err_t < 4e-3, (err_t, err_r)


def test_gradchecks_float64():
    g = torch.Generator().manual_seed(0)
    nodes = torch.randn(5, 3, generator=g, dtype=torch.float64)
    edges = torch.tensor([[1, 2, 3], [0, 2, 4], [0, 1, 3], [0, 2, 4], [1, 3, -1]])
    w = torch.rand(5, 3, generator=g, dtype=torch.float64)
    t = (0.1 * torch.randn(5, 3, generator=g, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t_: node_rotations_from_translations(nodes, edges, w, t_), [t])
    p = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    c = torch.tensor([0.1, 0.0, 1.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p_: bend_field(p_, c, 1.5, (0.01, 0.0, 0.0)), [p])
