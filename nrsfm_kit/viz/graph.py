"""Plotly / ipywidgets views of an embedded deformation graph.

- :func:`graph_traces`: nodes as spheres, edges as lines (optionally coloured by cluster).
- :func:`surface_trace`: the object's point cloud, optionally coloured by the skinning weight of one node.
- :func:`graph_figure`: both in one equal-aspect figure.
- :func:`deformation_explorer`: ipywidgets sliders that rotate / translate chosen nodes and show the
  surface warped by Q (the Warp kernel) live in a ``go.FigureWidget`` (needs a running kernel).
- :func:`deformation_slider_figure`: the same warp over a few preset slider values as a plain ``go.Figure``
  with plotly's own slider (layout sliders + frames), which works without a kernel (HTML export, the book).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch

from nrsfm_kit.graph.types import DeformationGraph
from nrsfm_kit.viz.plot3d import figure3d, lines3d, scatter3d

__all__ = ["graph_traces", "surface_trace", "node_weight_image", "graph_figure", "deformation_explorer",
           "deformation_slider_figure"]

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


_SLIDERS = ("rx", "ry", "rz", "tx (cm)", "ty (cm)", "tz (cm)")
_EXPLORER_TITLE = ("drag the sliders: the highlighted nodes turn about their centroid<br>"
                   "<sup>Q(p) = sum_k alpha_k (R_k (p - v_k) + v_k + t_k), colour = weight of the moving nodes</sup>")
# top margin: room for the two-line title above the legend, so neither is cut off
_EXPLORER_MARGIN = {"l": 10, "r": 10, "t": 110, "b": 10}


class _Explorer:
    """The warp behind :func:`deformation_explorer` and :func:`deformation_slider_figure` (no widgets)."""

    def __init__(self, graph: DeformationGraph, points, nodes_to_move=None, max_points: int = 8000):
        from nrsfm_kit.kernels.warp_field import warp_points

        self._warp_points = warp_points
        self.graph = graph
        pts = torch.as_tensor(_np(points), dtype=torch.float32)
        if pts.ndim != 3 or pts.shape[-1] != 3 or tuple(pts.shape[:2]) != tuple(graph.pixel_anchors.shape[:2]):
            raise ValueError(f"points: expected an (H, W, 3) point image with (H, W) = "
                             f"{tuple(graph.pixel_anchors.shape[:2])} (the graph's pixel anchors), "
                             f"found {tuple(pts.shape)}")
        anchors, weights = graph.pixel_anchors, graph.pixel_weights.float()
        valid = (anchors >= 0).any(-1)
        P, A, W = pts[valid], anchors[valid], weights[valid]
        if len(P) == 0:
            raise ValueError("points: expected at least one pixel with a graph anchor, found none")
        if len(P) > max_points:
            sel = torch.from_numpy(np.sort(np.random.default_rng(0).choice(len(P), max_points, replace=False)))
            P, A, W = P[sel], A[sel], W[sel]
        self.P, self.A, self.W = P, A, W
        self.nodes = graph.nodes.float()
        N = graph.num_nodes
        if nodes_to_move is None:
            nodes_to_move = torch.nonzero(self.nodes[:, 0] > self.nodes[:, 0].median()).flatten().tolist() or [0]
        moving = torch.as_tensor(list(nodes_to_move), dtype=torch.int64)
        if moving.numel() == 0 or moving.min() < 0 or moving.max() >= N:
            raise ValueError(f"nodes_to_move: expected ids in [0, {N - 1}], found {list(nodes_to_move)}")
        self.moving = moving
        infl = (A[..., None] == moving).any(-1) * W  # weight of the moving nodes at each point
        self.color = _np(infl.sum(-1)).astype(np.float64)

    @staticmethod
    def values(values: dict | None) -> dict:
        out = dict.fromkeys(_SLIDERS, 0.0)
        for k, v in (values or {}).items():
            if k not in out:
                raise ValueError(f"values: expected keys among {list(_SLIDERS)}, found {k!r}")
            out[k] = float(v)
        return out

    def warp(self, values: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(Q (M, 3) warped surface points, (N, 3) moved node positions), float64, for slider ``values``."""
        v = self.values(values)
        from nrsfm_kit.geometry import so3_exp

        N = self.graph.num_nodes
        omega = torch.tensor([v[k] for k in _SLIDERS[:3]]) * torch.pi / 180
        shift = torch.tensor([v[k] for k in _SLIDERS[3:]]) / 100
        R = torch.eye(3).repeat(N, 1, 1)
        t = torch.zeros(N, 3)
        Rm = so3_exp(omega)
        m = self.moving
        c = self.nodes[m].mean(0)
        R[m] = Rm
        t[m] = (self.nodes[m] - c) @ Rm.T + c - self.nodes[m] + shift
        Q = self._warp_points(self.P, self.A, self.W, self.nodes, R, t).numpy().astype(np.float64)
        return Q, _np(self.nodes + t).astype(np.float64)  # a node itself moves by its translation

    def traces(self, values: dict | None = None) -> list:
        Q, moved = self.warp(values)
        return [scatter3d(Q, color=self.color, size=2, name="warped surface", colorscale="Viridis"),
                *graph_traces(self.graph, nodes=moved)]


def deformation_explorer(graph: DeformationGraph, points, nodes_to_move=None, max_points: int = 8000,
                         height: int = 550, initial: dict | None = None):
    """Interactive embedded deformation: sliders rotate (about the x/y/z axes, degrees, around the centroid
    c of the chosen nodes) and translate (centimetres) the chosen nodes; the other nodes stay put and the
    surface is re-warped by Q (Warp kernel) on every change. A chosen node gets R_k = R and
    t_k = R (v_k - c) + c - v_k + shift, so the chosen part turns rigidly and the graph blends it smoothly
    into the part that stays.

    The figure is built with the warp of the ``initial`` slider values already in its traces (surface, edges
    and nodes), so the first display shows them without waiting for a slider event; the title has its own
    top margin.

    Args:
        graph: the deformation graph. points: (H, W, 3) point image of the frame the graph was built on.
        nodes_to_move: node ids driven by the sliders (default: the nodes right of the median x, i.e. the
            right half of the object).
        max_points: surface points drawn (a random subset above it). height: figure height in pixels.
        initial: initial slider values, keys among ``rx ry rz`` (degrees) and ``tx (cm)`` ``ty (cm)``
            ``tz (cm)`` (default all 0: the rest pose).

    Returns:
        an ``ipywidgets.VBox`` (display it in a notebook); ``.children[-1]`` is the FigureWidget;
        attributes ``.sliders`` (name -> FloatSlider), ``.update()`` (re-run the warp for the sliders' values
        and push it to the figure; returns Q), ``.warp(values)`` (Q and the node positions for any values,
        without touching the figure) and ``.static_figure(slider, values)`` (a plain ``go.Figure`` with its
        own slider: :func:`deformation_slider_figure` for the same graph, points and nodes).

    Raises:
        ValueError: ``nodes_to_move`` outside ``[0, N-1]``, ``points`` not the graph's (H, W, 3) point image,
            or an unknown key in ``initial``.
    """
    import ipywidgets as widgets

    ex = _Explorer(graph, points, nodes_to_move, max_points)
    start = ex.values(initial)
    base = figure3d(ex.traces(start), title=_EXPLORER_TITLE, height=height)
    base.update_layout(margin=_EXPLORER_MARGIN,
                       legend={"orientation": "h", "x": 0, "xanchor": "left", "y": 1.0, "yanchor": "bottom"})
    fig = go.FigureWidget(base)
    sliders = {k: widgets.FloatSlider(value=start[k], min=-90 if k.startswith("r") else -10,
                                      max=90 if k.startswith("r") else 10, step=1 if k.startswith("r") else 0.5,
                                      description=k, continuous_update=False)
               for k in _SLIDERS}

    def update(*_):
        Q, moved = ex.warp({k: s.value for k, s in sliders.items()})
        new = graph_traces(graph, nodes=moved)
        with fig.batch_update():
            fig.data[0].x, fig.data[0].y, fig.data[0].z = Q[:, 0], Q[:, 1], Q[:, 2]
            for tr_old, tr_new in zip(fig.data[1:], new):
                tr_old.x, tr_old.y, tr_old.z = tr_new.x, tr_new.y, tr_new.z
        return Q

    def static_figure(slider: str = "ry", values=(-60.0, -30.0, 0.0, 30.0, 60.0)) -> go.Figure:
        return _slider_figure(ex, slider, values, height)

    for s in sliders.values():  # observers after the initial values: building the box sends no update
        s.observe(update, names="value")
    box = widgets.VBox([widgets.HBox(list(sliders.values())[:3]), widgets.HBox(list(sliders.values())[3:]), fig])
    box.update = update
    box.sliders = sliders
    box.warp = ex.warp
    box.static_figure = static_figure
    return box


def _slider_figure(ex: _Explorer, slider: str, values, height: int) -> go.Figure:
    if slider not in _SLIDERS:
        raise ValueError(f"slider: expected one of {list(_SLIDERS)}, found {slider!r}")
    values = [float(v) for v in values]
    if not values:
        raise ValueError("values: expected at least one slider value, found none")
    unit = "deg" if slider.startswith("r") else ""
    frames = [go.Frame(name=f"{v:g}", data=ex.traces({slider: v}), traces=[0, 1, 2]) for v in values]
    first = min(range(len(values)), key=lambda i: (abs(values[i]) < 1e-12, -abs(values[i])))  # a deformed pose
    fig = figure3d(list(frames[first].data), height=height,
                   title=f"the highlighted nodes turn / move: slider {slider} {unit}<br>"
                         "<sup>static figure (works without a kernel): Q(p) = sum_k alpha_k (R_k (p - v_k) + v_k + "
                         "t_k)</sup>")
    fig.frames = frames
    fig.update_layout(
        margin={**_EXPLORER_MARGIN, "b": 60},
        legend={"orientation": "h", "x": 0, "xanchor": "left", "y": 1.0, "yanchor": "bottom"},
        sliders=[{"active": first, "currentvalue": {"prefix": f"{slider} = "},
                  "steps": [{"label": f.name, "method": "animate",
                             "args": [[f.name], {"frame": {"duration": 0, "redraw": True}, "mode": "immediate"}]}
                            for f in frames]}])
    return fig


def deformation_slider_figure(graph: DeformationGraph, points, slider: str = "ry",
                              values=(-60.0, -30.0, 0.0, 30.0, 60.0), nodes_to_move=None, max_points: int = 8000,
                              height: int = 550) -> go.Figure:
    """The static counterpart of :func:`deformation_explorer`: a plain ``go.Figure`` whose own plotly slider
    steps through ``values`` of one explorer slider (layout ``sliders`` + ``frames``, so it works without a
    kernel, e.g. in an HTML export). Each frame holds the warped surface, the edges and the moved nodes; the
    first display shows the value of largest magnitude (a deformed pose).

    Args:
        slider: one of ``rx ry rz`` (degrees) or ``tx (cm)`` ``ty (cm)`` ``tz (cm)`` (default ``"ry"``).
        values: the preset slider values (default -60, -30, 0, 30, 60).
        graph, points, nodes_to_move, max_points, height: as in :func:`deformation_explorer`.

    Raises:
        ValueError: an unknown ``slider``, no ``values``, or the bad inputs of :func:`deformation_explorer`.
    """
    return _slider_figure(_Explorer(graph, points, nodes_to_move, max_points), slider, values, height)
