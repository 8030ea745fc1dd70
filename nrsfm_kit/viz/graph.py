"""Plotly / ipywidgets views of an embedded deformation graph.

- :func:`graph_traces`: nodes as spheres, edges as lines (optionally coloured by cluster).
- :func:`surface_trace`: the object's point cloud, optionally coloured by the skinning weight of one node.
- :func:`graph_figure`: both in one equal-aspect figure.
- :func:`deformation_explorer`: ipywidgets sliders that rotate / translate chosen nodes and show the
  surface warped by Q (the Warp kernel) live in a ``go.FigureWidget``.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch

from nrsfm_kit.graph.types import DeformationGraph
from nrsfm_kit.viz.plot3d import figure3d, lines3d, scatter3d

__all__ = ["graph_traces", "surface_trace", "node_weight_image", "graph_figure", "deformation_explorer"]

_PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c"]


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def graph_traces(graph: DeformationGraph, nodes=None, node_size: float = 5.0, by_cluster: bool = True,
                 name: str = "graph") -> list:
    """Nodes (markers) and edges (one line trace) of ``graph``; ``nodes`` (N, 3) overrides positions."""
    v = _np(graph.nodes if nodes is None else nodes).astype(np.float64)
    e = _np(graph.edges)
    i, k = np.nonzero(e >= 0)
    j = e[i, k]
    keep = i < j  # draw each symmetric pair once
    both = set(zip(i[keep].tolist(), j[keep].tolist()))
    pairs = both | {(b, a) for a, b in zip(i[~keep].tolist(), j[~keep].tolist()) if (b, a) not in both}
    pairs = np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)
    if by_cluster:
        colors = [_PALETTE[c % len(_PALETTE)] for c in _np(graph.clusters).tolist()]
    else:
        colors = "crimson"
    traces = [lines3d(v[pairs[:, 0]], v[pairs[:, 1]], color="gray", width=3, name=f"{name} edges")]
    traces.append(go.Scatter3d(x=v[:, 0], y=v[:, 1], z=v[:, 2], mode="markers", name=f"{name} nodes",
                               marker={"size": node_size, "color": colors, "line": {"width": 0}}))
    return traces


def node_weight_image(graph: DeformationGraph, node: int) -> np.ndarray:
    """(H, W) skinning weight of ``node`` at every pixel (0 where it is not an anchor)."""
    if not 0 <= int(node) < graph.num_nodes:
        raise ValueError(f"node: expected an id in [0, {graph.num_nodes - 1}], found {node}")
    a, w = _np(graph.pixel_anchors), _np(graph.pixel_weights)
    return np.where(a == int(node), w, 0.0).sum(-1)


def surface_trace(points, valid=None, color=None, size: float = 1.5, max_points: int = 20000,
                  name: str = "surface", colorscale: str = "Viridis", seed: int = 0) -> go.Scatter3d:
    """Point cloud of a (H, W, 3) point image (``valid`` pixels) or (M, 3) points, subsampled for speed.

    ``color``: None, a colour name, or per-point / per-pixel scalars (e.g. :func:`node_weight_image`).
    """
    p = _np(points).astype(np.float64)
    c = None if color is None or isinstance(color, str) else _np(color).astype(np.float64)
    if p.ndim == 3:
        m = np.ones(p.shape[:2], bool) if valid is None else _np(valid).astype(bool)
        p = p[m]
        c = c[m] if c is not None else None
    idx = np.arange(len(p))
    if len(p) > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(len(p), max_points, replace=False))
    col = color if isinstance(color, str) else (c[idx] if c is not None else None)
    return scatter3d(p[idx], color=col, size=size, name=name, colorscale=colorscale if c is not None else None,
                     showscale=c is not None)


def graph_figure(graph: DeformationGraph, points=None, valid=None, weight_node: int | None = None,
                 title: str = "embedded deformation graph", height: int = 550) -> go.Figure:
    """Point cloud (optionally coloured by the skinning weight of ``weight_node``) + nodes + edges."""
    traces = []
    if points is not None:
        color = node_weight_image(graph, weight_node) if weight_node is not None else "lightsteelblue"
        traces.append(surface_trace(points, valid, color=color))
        if weight_node is not None:  # the colour bar names what it shows and sits right of the scene
            traces[-1].marker.colorbar = {"title": {"text": f"skinning weight<br>of node {weight_node}", "side": "top"},
                                          "x": 1.0, "xanchor": "left", "len": 0.75, "y": 0.45, "thickness": 15}
    traces += graph_traces(graph)
    if weight_node is not None:
        traces.append(scatter3d(_np(graph.nodes)[[weight_node]], color="black", size=10, name=f"node {weight_node}"))
    fig = figure3d(traces, title=title, height=height)
    # the legend in one row under the title, clear of the colour bar on the right
    fig.update_layout(legend={"orientation": "h", "x": 0, "xanchor": "left", "y": 1.0, "yanchor": "bottom"},
                      margin={"l": 10, "r": 90, "t": 80, "b": 10})
    return fig


def deformation_explorer(graph: DeformationGraph, points, nodes_to_move=None, max_points: int = 8000,
                         height: int = 550):
    """Interactive embedded deformation: sliders rotate (about the x/y/z axes, degrees, around the centroid
    c of the chosen nodes) and translate (centimetres) the chosen nodes; the other nodes stay put and the
    surface is re-warped by Q (Warp kernel) on every change. A chosen node gets R_k = R and
    t_k = R (v_k - c) + c - v_k + shift, so the chosen part turns rigidly and the graph blends it smoothly
    into the part that stays.

    Args:
        graph: the deformation graph. points: (H, W, 3) point image of the frame the graph was built on.
        nodes_to_move: node ids driven by the sliders (default: the nodes right of the median x, i.e. the
            right half of the object).

    Returns:
        an ``ipywidgets.VBox`` (display it in a notebook); ``.children[-1]`` is the FigureWidget and
        ``.update()`` (attribute) re-runs the warp (used by tests / notebooks without a browser).
    """
    import ipywidgets as widgets

    from nrsfm_kit.geometry import so3_exp
    from nrsfm_kit.kernels.warp_field import warp_points

    pts = torch.as_tensor(_np(points), dtype=torch.float32)
    anchors, weights = graph.pixel_anchors, graph.pixel_weights.float()
    valid = (anchors >= 0).any(-1)
    P, A, W = pts[valid], anchors[valid], weights[valid]
    if len(P) > max_points:
        sel = torch.from_numpy(np.sort(np.random.default_rng(0).choice(len(P), max_points, replace=False)))
        P, A, W = P[sel], A[sel], W[sel]
    nodes = graph.nodes.float()
    N = graph.num_nodes
    if nodes_to_move is None:
        nodes_to_move = torch.nonzero(nodes[:, 0] > nodes[:, 0].median()).flatten().tolist() or [0]
    moving = torch.as_tensor(list(nodes_to_move), dtype=torch.int64)
    if moving.numel() == 0 or moving.min() < 0 or moving.max() >= N:
        raise ValueError(f"nodes_to_move: expected ids in [0, {N - 1}], found {list(nodes_to_move)}")
    infl = (A[..., None] == moving).any(-1) * W  # weight of the moving nodes at each point
    color = _np(infl.sum(-1))

    fig = go.FigureWidget(figure3d(
        [scatter3d(_np(P), color=color, size=2, name="warped surface", colorscale="Viridis"),
         *graph_traces(graph)], title="drag the sliders (the highlighted nodes turn about their centroid): "
        "Q(p) = sum_k alpha_k (R_k (p - v_k) + v_k + t_k)",
        height=height))
    sliders = {k: widgets.FloatSlider(value=0.0, min=-90 if k.startswith("r") else -10,
                                      max=90 if k.startswith("r") else 10, step=1 if k.startswith("r") else 0.5,
                                      description=k, continuous_update=False)
               for k in ("rx", "ry", "rz", "tx (cm)", "ty (cm)", "tz (cm)")}

    def update(*_):
        omega = torch.tensor([sliders[k].value for k in ("rx", "ry", "rz")]) * torch.pi / 180
        shift = torch.tensor([sliders[k].value for k in ("tx (cm)", "ty (cm)", "tz (cm)")]) / 100
        R = torch.eye(3).repeat(N, 1, 1)
        t = torch.zeros(N, 3)
        Rm = so3_exp(omega)
        c = nodes[moving].mean(0)
        R[moving] = Rm
        t[moving] = (nodes[moving] - c) @ Rm.T + c - nodes[moving] + shift
        Q = warp_points(P, A, W, nodes, R, t).numpy()
        moved = nodes + t  # a node itself moves by its translation (R acts about v)
        with fig.batch_update():
            fig.data[0].x, fig.data[0].y, fig.data[0].z = Q[:, 0], Q[:, 1], Q[:, 2]
            new = graph_traces(graph, nodes=moved)
            for tr_old, tr_new in zip(fig.data[1:], new):
                tr_old.x, tr_old.y, tr_old.z = tr_new.x, tr_new.y, tr_new.z
        return Q

    for s in sliders.values():
        s.observe(update, names="value")
    box = widgets.VBox([widgets.HBox(list(sliders.values())[:3]), widgets.HBox(list(sliders.values())[3:]), fig])
    box.update = update
    box.sliders = sliders
    update()
    return box
