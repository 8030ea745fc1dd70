"""Plotly figures for NRSfM: ground truth vs reconstruction with a frame slider, metric plots."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import torch

from nrsfm_kit.metrics.nrsfm import align_shapes
from nrsfm_kit.viz.plot3d import figure3d, scene_framing, skeleton_traces


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def compare_skeletons(
    S_gt,
    recon: dict,
    bones: Sequence[tuple[int, int]] = (),
    step: int = 1,
    title: str = "ground truth vs reconstruction",
    max_frames: int = 60,
    up="auto",
    height: int = 560,
) -> go.Figure:
    """Interactive 3D viewer: ground truth (F, P, 3) and one or more reconstructions side by side.

    ``recon`` maps a name to (F, P, 3) shapes; each is centred and aligned onto the ground truth per
    frame (Procrustes with reflection, as e3D) so they overlay. A slider (and play button) walks the
    frames (every ``step``-th, at most ``max_frames``). The camera frames the ground truth with an equal aspect
    (``up``: its up axis, see :func:`nrsfm_kit.viz.plot3d.scene_framing`): pass world-frame ground truth
    (``seq.S_world``) to see a body upright in every frame; the per-frame alignment makes any frame valid.
    """
    gt = torch.as_tensor(_np(S_gt))
    shapes = {"ground truth": (gt - gt.mean(1, keepdim=True)).numpy()}
    for name, S in recon.items():
        shapes[name] = align_shapes(torch.as_tensor(_np(S)), gt).numpy()
    colors = ["black", "crimson", "royalblue", "seagreen", "darkorange", "purple"]
    F = gt.shape[0]
    idx = list(range(0, F, max(1, int(step))))[: int(max_frames)]

    def traces(f: int) -> list:
        out = []
        for k, (name, A) in enumerate(shapes.items()):
            out += skeleton_traces(A[f], bones, name=name, color=colors[k % len(colors)], size=3)
        return out

    fig = figure3d(traces(idx[0]), title=title, camera_view="default", height=height)
    fig.frames = [go.Frame(data=traces(f), name=str(f)) for f in idx]
    steps = [
        {"method": "animate", "label": str(f), "args": [[str(f)], {"mode": "immediate", "frame": {"duration": 0}}]}
        for f in idx
    ]
    # framed on the ground truth (equal aspect, its height up, a 3/4 view); the reconstructions are aligned to it
    fig.update_layout(
        scene={**scene_framing(shapes["ground truth"], up=up), "domain": {"x": [0, 1], "y": [0.2, 1]}},
        legend={"x": 1, "xanchor": "right", "y": 1},
        updatemenus=[
            {
                "type": "buttons", "x": 0, "xanchor": "left", "y": 0.16, "yanchor": "top",
                "buttons": [
                    {"label": "play", "method": "animate",
                     "args": [None, {"frame": {"duration": 80, "redraw": True}, "fromcurrent": True}]}
                ],
            }
        ],
        sliders=[{"steps": steps, "currentvalue": {"prefix": "frame "}, "x": 0.08, "len": 0.92, "y": 0.17,
                  "yanchor": "top"}],
    )
    return fig


def history_figure(history: list[dict], keys: Sequence[str] = ("rep", "e3d"), title: str = "training") -> go.Figure:
    """Logged training curves (list of dicts with ``step``) for the given keys, log-scale y."""
    fig = go.Figure()
    for k in keys:
        pts = [(h["step"], h[k]) for h in history if h.get(k) is not None]
        if pts:
            x, y = zip(*pts)
            fig.add_trace(go.Scatter(x=list(x), y=list(y), mode="lines+markers", name=k))
    fig.update_layout(title=title, xaxis_title="step", yaxis_type="log", height=350)
    return fig


def coherence_vs_error(history: list[dict], title: str = "Deep NRSfM: coherence of the final dictionary vs e3D") -> go.Figure:
    """Scatter of mutual coherence against e3D along training (Kong & Lucey §5.4), coloured by step."""
    pts = [(h["coherence"], h["e3d"], h["step"]) for h in history if h.get("coherence") is not None and h.get("e3d") is not None]
    c, e, s = (list(v) for v in zip(*pts)) if pts else ([], [], [])
    fig = go.Figure(go.Scatter(x=c, y=e, mode="markers+lines", marker={"color": s, "colorscale": "Viridis",
                                                                         "showscale": True, "colorbar": {"title": "step"}}))
    fig.update_layout(title=title, xaxis_title="mutual coherence", yaxis_title="e3D", height=380)
    return fig


def metric_bars(table: dict[str, dict[str, float]], metric: str = "e3d", title: str = "") -> go.Figure:
    """Grouped bars: ``table[sequence][method] -> value``."""
    seqs = list(table)
    methods = sorted({m for row in table.values() for m in row})
    fig = go.Figure([go.Bar(name=m, x=seqs, y=[table[s].get(m) for s in seqs]) for m in methods])
    fig.update_layout(barmode="group", title=title or metric, yaxis_title=metric, height=380)
    return fig
