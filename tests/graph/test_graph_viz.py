"""Plotly views of the graph and the live deformation explorer."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from nrsfm_kit.geometry import depth_to_points
from nrsfm_kit.graph import build_graph
from nrsfm_kit.graph.synthetic import synthetic_depth
from nrsfm_kit.viz.graph import (
    deformation_explorer,
    deformation_slider_figure,
    graph_figure,
    graph_traces,
    node_weight_image,
)


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


def _visible_and_filled(trace) -> bool:
    xyz = np.stack([np.asarray(getattr(trace, k), dtype=float) for k in "xyz"], -1)
    return trace.visible in (None, True) and len(xyz) > 0 and np.isfinite(xyz).all(-1).any()


def test_deformation_explorer_first_display_shows_everything(frame):
    """The figure as built (before any slider event) already holds the warped surface, edges and nodes,
    and its title has room: a first display needs no update message."""
    graph, pts, _ = frame
    box = deformation_explorer(graph, pts, max_points=500, initial={"ry": 30.0})
    fig = box.children[-1]
    names = [tr.name for tr in fig.data]
    assert names == ["warped surface", "graph edges", "graph nodes"]
    assert all(_visible_and_filled(tr) for tr in fig.data), names
    Q30, moved30 = box.warp({"ry": 30.0})
    Q0, _ = box.warp()
    np.testing.assert_allclose(np.asarray(fig.data[0].z), Q30[:, 2])  # deformed, not the rest pose
    np.testing.assert_allclose(np.asarray(fig.data[2].x), moved30[:, 0])
    assert np.abs(Q30 - Q0).max() > 1e-3
    assert box.sliders["ry"].value == 30.0
    np.testing.assert_allclose(box.update(), Q30)  # the sliders' values give the same warp
    title = fig.layout.title.text
    assert "<br>" in title and fig.layout.margin.t >= 100  # two lines, both inside the top margin
    assert fig.layout.legend.orientation == "h"
    with pytest.raises(ValueError, match="values: expected keys among"):
        deformation_explorer(graph, pts, initial={"spin": 1.0})
    with pytest.raises(ValueError, match=r"points: expected an \(H, W, 3\) point image"):
        deformation_explorer(graph, pts[:10])


def test_deformation_slider_figure_is_static(frame):
    graph, pts, _ = frame
    fig = deformation_slider_figure(graph, pts, slider="tz (cm)", values=(0.0, 5.0), max_points=300)
    assert type(fig) is go.Figure  # not a FigureWidget: its slider works in a static HTML export
    assert [f.name for f in fig.frames] == ["0", "5"] and len(fig.layout.sliders[0].steps) == 2
    assert all(_visible_and_filled(tr) for tr in fig.data)
    assert fig.layout.sliders[0].active == 1  # the first display is the deformed pose
    z0, z5 = (np.asarray(f.data[0].z) for f in fig.frames)
    assert np.abs(z5 - z0).max() == pytest.approx(0.05, abs=1e-4)
    np.testing.assert_allclose(np.asarray(fig.data[0].z), z5)
    box = deformation_explorer(graph, pts, max_points=300)
    assert type(box.static_figure("rx", (10.0,))) is go.Figure
    with pytest.raises(ValueError, match="slider: expected one of"):
        deformation_slider_figure(graph, pts, slider="roll")
    with pytest.raises(ValueError, match="values: expected at least one"):
        deformation_slider_figure(graph, pts, values=())
