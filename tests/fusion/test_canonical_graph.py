"""CanonicalGraph: the first graph, growth where the surface is not covered, the motion of new nodes, anchors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nrsfm_kit.fusion.graph import CanonicalGraph
from nrsfm_kit.graph import build_graph
from nrsfm_kit.graph.synthetic import synthetic_depth


@pytest.fixture
def graph():
    depth, mask, intr = synthetic_depth(60, 80, "wave")
    half = mask.copy()
    half[:, 40:] = False  # the graph covers the left half of the sheet
    g = build_graph(depth, half, intr, erosion_iterations=1)
    from nrsfm_kit.geometry import depth_to_points

    pts, ok = depth_to_points(torch.from_numpy(depth), torch.tensor(intr, dtype=torch.float32))
    return CanonicalGraph.from_graph(g), pts[torch.from_numpy(mask) & ok]


def test_growth_covers_the_surface_and_connects_new_nodes(graph):
    g, surface = graph
    N0 = g.num_nodes
    g.translations[:] = torch.tensor([0.01, -0.02, 0.03])  # a rigid translation of the whole field
    added = g.grow(surface, frame=7)
    assert added > 0 and g.num_nodes == N0 + added
    d = torch.cdist(surface, g.nodes).min(1).values
    assert float(d.max()) <= g.sigma + 1e-6  # every surface point within sigma of a node
    new = g.nodes[N0:]
    assert float(torch.cdist(new, new).add(torch.eye(added) * 9).min()) > g.sigma  # new nodes > sigma apart
    assert bool((g.added[N0:] == 7).all()) and bool((g.added[:N0] == 0).all())
    # new nodes are connected (K neighbours, normalised weights) and some old rows got the mirrored edge
    e = g.edges[N0:]
    assert bool((e >= 0).sum(1).ge(1).all()) and int(e.max()) < g.num_nodes
    torch.testing.assert_close(g.edge_weights.sum(1), torch.ones(g.num_nodes), atol=1e-5, rtol=0)
    assert bool((g.edges[:N0] >= N0).any())
    # the motion of the new nodes is the current field at their position: the same translation
    inside = torch.cdist(new, g.nodes[:N0]).min(1).values <= g.influence
    torch.testing.assert_close(g.translations[N0:][inside], torch.tensor([0.01, -0.02, 0.03]).expand(int(inside.sum()), 3),
                               atol=1e-5, rtol=0)
    assert g.grow(surface) == 0  # covered now
    assert len(np.unique(g.clusters().numpy())) >= 1


def test_anchors_and_warp(graph):
    g, surface = graph
    a, w = g.anchors(surface)
    ok = (a >= 0).any(1)
    assert bool(ok.any()) and not bool(ok.all())  # the right half is out of reach of the left-half graph
    torch.testing.assert_close(w[ok].sum(1), torch.ones(int(ok.sum())), atol=1e-5, rtol=0)
    assert bool((w[~ok] == 0).all())
    q, sup = g.warp(surface, a, w)
    torch.testing.assert_close(q, surface)  # identity motion
    assert torch.equal(sup, ok)
    state = g.state_dict()
    back = CanonicalGraph.from_state_dict(state)
    assert torch.equal(back.nodes, g.nodes) and back.sigma == g.sigma
    with pytest.raises(ValueError, match="CanonicalGraph state"):
        CanonicalGraph.from_state_dict({"nodes": g.nodes})
    with pytest.raises(ValueError, match="points"):
        g.grow(torch.zeros(4, 2))
