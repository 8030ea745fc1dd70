"""Plotly views for unsupervised monocular depth: depth / embedding maps, point clouds, ROC, loss curves."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from nrsfm_kit.geometry import depth_to_points
from nrsfm_kit.viz.plot3d import figure3d, scatter3d


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def embedding_rgb(embedding, mask=None) -> np.ndarray:
    """Motion embeddings (3, H, W) as an RGB image (3, H, W) in [0, 1], each channel stretched to its own range.

    Embeddings live in (0, s)^3 with s up to 4 (:class:`nrsfm_kit.models.MotionNet`); shown as they are they
    clip to white. Each channel is mapped from its 1st-99th percentile (over ``mask`` pixels when given,
    (H, W) bool) to [0, 1]; a constant channel becomes 0.5. Non-finite values are shown black.
    """
    e = _np(embedding)
    if e.ndim != 3 or e.shape[0] != 3:
        raise ValueError(f"embedding: expected shape (3, H, W), found {tuple(e.shape)}")
    finite = np.isfinite(e).all(0)
    sel = finite if mask is None else finite & _np(mask).astype(bool)
    out = np.zeros_like(e)
    for c in range(3):
        vals = e[c][sel] if sel.any() else np.zeros(1)
        lo, hi = np.percentile(vals, [1, 99])
        out[c] = 0.5 if hi - lo < 1e-12 else np.clip((e[c] - lo) / (hi - lo), 0, 1)
    out[:, ~finite] = 0.0
    return out


def maps_figure(panels: dict, title: str = "", height: int = 280) -> go.Figure:
    """Side-by-side images: ``panels`` maps a title to an (H, W) scalar map (heatmap) or (3, H, W) RGB in [0, 1].

    RGB values outside [0, 1] are clipped: show embeddings through :func:`embedding_rgb`.
    """
    n = len(panels)
    fig = make_subplots(rows=1, cols=n, subplot_titles=list(panels))
    for c, (_, img) in enumerate(panels.items(), start=1):
        a = _np(img)
        if a.ndim == 3 and a.shape[0] == 3:
            fig.add_trace(go.Image(z=np.clip(a.transpose(1, 2, 0), 0, 1) * 255), 1, c)
        else:
            fig.add_trace(go.Heatmap(z=a, colorscale="Viridis", showscale=False), 1, c)
            fig.update_yaxes(autorange="reversed", row=1, col=c)
        fig.update_xaxes(showticklabels=False, row=1, col=c)
        fig.update_yaxes(showticklabels=False, scaleanchor=f"x{c}" if c > 1 else "x", row=1, col=c)
    fig.update_layout(title=title, height=height, margin={"l": 10, "r": 10, "t": 60, "b": 10})
    return fig


def point_cloud_figure(depths: dict, image: torch.Tensor, intrinsics, title: str = "", step: int = 1,
                       height: int = 500) -> go.Figure:
    """Back-projected point clouds of several depth maps of one frame, coloured by the image.

    depths: {name: (H, W) depth}; image: (3, H, W) RGB in [0, 1]; toggle clouds with the legend.
    Predicted depths should be median-scaled to the ground truth first (monocular scale ambiguity).
    """
    traces = []
    col = image.permute(1, 2, 0)[::step, ::step].reshape(-1, 3)
    for k, (name, d) in enumerate(depths.items()):
        pts, valid = depth_to_points(d.float(), intrinsics)
        pts = pts[::step, ::step].reshape(-1, 3)
        ok = valid[::step, ::step].reshape(-1)
        traces.append(scatter3d(pts[ok], color=col[ok], size=2, name=name))
        if k > 0:
            traces[-1].visible = "legendonly"
    return figure3d(traces, title=title, height=height)


def roc_figure(curves: dict, title: str = "Motion segmentation ROC") -> go.Figure:
    """ROC curves {name: roc_curve(...) dict} with their AUC in the legend."""
    fig = go.Figure()
    for name, r in curves.items():
        fig.add_trace(go.Scatter(x=_np(r["fpr"]), y=_np(r["tpr"]), mode="lines", name=f"{name} (AUC {r['auc']:.3f})"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "gray"}, name="chance"))
    fig.update_layout(title=title, xaxis_title="false positive rate", yaxis_title="true positive rate", height=400)
    return fig


def loss_figure(histories: dict, key: str = "loss", title: str = "EDM loss") -> go.Figure:
    """Training curves {name: history list of dicts with "step" and ``key``}."""
    fig = go.Figure()
    for name, hist in histories.items():
        fig.add_trace(go.Scatter(x=list(range(len(hist))), y=[h.get(key) for h in hist], mode="lines+markers",
                                 name=name, text=[f"stage {h.get('stage', 1)}, step {h['step']}" for h in hist]))
    fig.update_layout(title=title, xaxis_title="log entry (stage 1 then stage 2)", yaxis_title=key, height=350)
    return fig
