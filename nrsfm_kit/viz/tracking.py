"""Plotly figures for non-rigid tracking: alignments in 3D, energies per iteration, learned weights."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from nrsfm_kit.viz.plot3d import _np, figure3d, lines3d, scatter3d

__all__ = ["alignment_figure", "iterations_figure", "energy_figure", "weights_figure"]


def alignment_figure(source, warped, target, nodes=None, title: str = "", size: float = 2.0) -> go.Figure:
    """Source (P, 3), warped source (P, 3) and target (P, 3) points in metres, residual lines, nodes."""
    traces = [scatter3d(source, color="lightgray", size=size, name="source", opacity=0.5),
              scatter3d(target, color="seagreen", size=size, name="target"),
              scatter3d(warped, color="crimson", size=size, name="warped source")]
    w, t = _np(warped), _np(target)
    traces.append(lines3d(w, t, color="orange", width=1, name="residual"))
    if nodes is not None:
        traces.append(scatter3d(nodes, color="black", size=4, name="nodes"))
    return figure3d(traces, title=title)


def iterations_figure(warped_per_iter: Sequence, target, title: str = "", size: float = 2.0) -> go.Figure:
    """Interactive 3D view with a slider over iterations: warped points (P, 3) per iteration vs target."""
    frames_pts = [_np(w).reshape(-1, 3) for w in warped_per_iter]
    tgt = _np(target).reshape(-1, 3)
    fig = figure3d([scatter3d(tgt, color="seagreen", size=size, name="target"),
                    scatter3d(frames_pts[0], color="crimson", size=size, name="warped source")], title=title)
    frames = [go.Frame(data=[go.Scatter3d(x=tgt[:, 0], y=tgt[:, 1], z=tgt[:, 2]),
                             go.Scatter3d(x=p[:, 0], y=p[:, 1], z=p[:, 2])], name=str(k))
              for k, p in enumerate(frames_pts)]
    fig.frames = frames
    steps = [{"args": [[str(k)], {"frame": {"duration": 0, "redraw": True}, "mode": "immediate"}],
              "label": str(k), "method": "animate"} for k in range(len(frames))]
    fig.update_layout(sliders=[{"steps": steps, "currentvalue": {"prefix": "iteration "}}])
    return fig


def energy_figure(curves: Mapping[str, Sequence[float]], title: str = "energy per iteration",
                  log: bool = True) -> go.Figure:
    """Line plot of energies (one curve per name) against the iteration index."""
    fig = go.Figure()
    for name, values in curves.items():
        v = _np(values).reshape(-1)
        fig.add_trace(go.Scatter(x=np.arange(len(v)), y=v, mode="lines+markers", name=name))
    fig.update_layout(title=title, xaxis_title="iteration", yaxis_title="E", height=380,
                      yaxis_type="log" if log else "linear")
    return fig


def weights_figure(weights, is_outlier, title: str = "learned correspondence weights") -> go.Figure:
    """Histogram of weights (P,) split into inliers and planted outliers (P,) bool."""
    w = _np(weights).reshape(-1)
    o = np.asarray(_np(is_outlier).reshape(-1) > 0.5)
    fig = go.Figure([go.Histogram(x=w[~o], name="inliers", opacity=0.7, nbinsx=40),
                     go.Histogram(x=w[o], name="planted outliers", opacity=0.7, nbinsx=40)])
    fig.update_layout(barmode="overlay", title=title, xaxis_title="weight w_u", yaxis_title="count", height=380)
    return fig
