"""Plotly views of the graph and the live deformation explorer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nrsfm_kit.geometry import depth_to_points
from nrsfm_kit.graph import build_graph
from nrsfm_kit.graph.synthetic import synthetic_depth
from nrsfm_kit.viz.graph import deformation_explorer, graph_figure, graph_traces, node_weight_image


@pytest.fixture(scope="module")
def frame():
    depth, mask, intr = synthetic_depth(60, 80, "wave", extent=0.6)
    pts, valid = depth_to_points(torch.from_numpy(depth), torch.from_numpy(intr))
    return build_graph(depth, mask, intr), pts, valid


def test_graph_traces_and_figure(frame):
    graph, pts, valid = frame
    lines, nodes = graph_traces(graph)
    assert len(nodes.x) == graph.num_nodes
    n_segments = int(np.isnan(np.asarray(lines.x, dtype=float)).sum())
    e = graph.edges
    pairs = {tuple(sorted((i, int(j)))) for i in range(graph.num_nodes) for j in e[i] if j >= 0}
    assert n_segments == len(pairs)  # every undirected edge drawn once
    fig = graph_figure(graph, pts, valid, weight_node=0)
    assert len(fig.data) == 4 and fig.layout.scene.aspectmode == "data"


def test_node_weight_image(frame):
    graph, *_ = frame
    total = sum(node_weight_image(graph, k) for k in range(graph.num_nodes))
    has = (graph.pixel_anchors >= 0).any(-1).numpy()
    np.testing.assert_allclose(total[has], 1.0, atol=1e-5)
    assert (total[~has] == 0).all()
    with pytest.raises(ValueError, match=r"node: expected an id in \[0, \d+\], found -1"):
        node_weight_image(graph, -1)


def test_deformation_explorer_warps_live(frame):
    graph, pts, _ = frame
    box = deformation_explorer(graph, pts, max_points=500)
    rest = box.update()
    fig = box.children[-1]
    np.testing.assert_allclose(np.asarray(fig.data[0].x), rest[:, 0])
    box.sliders["tz (cm)"].value = 5.0  # observers re-warp
    moved = np.asarray(box.children[-1].data[0].z)
    assert np.abs(moved - rest[:, 2]).max() == pytest.approx(0.05, abs=1e-4)  # fully anchored part moves 5 cm
    with pytest.raises(ValueError, match="nodes_to_move: expected ids in"):
        deformation_explorer(graph, pts, nodes_to_move=[graph.num_nodes])
