"""Plotly views of datasets: flow colour wheels, image/flow overlays, RGB-D sliders, skeleton animations."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import plotly.graph_objects as go

from nrsfm_kit.viz.plot3d import figure3d, lines3d, scatter3d, scene_framing, skeleton_traces


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _need(name: str, a: np.ndarray, ndim: int, last: int | None, spec: str) -> np.ndarray:
    """ValueError naming ``name`` unless ``a`` has ``ndim`` dims (and last dim ``last``)."""
    if a.ndim != ndim or (last is not None and a.shape[-1] != last):
        raise ValueError(f"{name}: expected shape {spec}, found {tuple(a.shape)}")
    return a


def _rgb8(img) -> np.ndarray:
    """(3, H, W) or (H, W, 3) float in [0, 1] -> (H, W, 3) uint8."""
    a = _np(img).astype(np.float64)
    if a.ndim == 3 and a.shape[0] == 3 and a.shape[-1] != 3:
        a = a.transpose(1, 2, 0)
    return (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)


def flow_to_rgb(flow, valid=None, max_norm: float | None = None) -> np.ndarray:
    """Colour-code optical flow (H, W, 2): hue = direction, saturation = magnitude / ``max_norm``.

    Invalid pixels (``valid`` False) are black. Returns (H, W, 3) uint8.
    """
    f = _np(flow).astype(np.float32)
    if f.ndim != 3 or f.shape[-1] != 2:
        raise ValueError(f"flow: expected shape (H, W, 2), found {f.shape}")
    v = np.ones(f.shape[:2], bool) if valid is None else _np(valid).astype(bool)
    mag = np.linalg.norm(f, axis=-1)
    scale = max_norm if max_norm else max(float(mag[v].max(initial=0.0)), 1e-6)
    ang = (np.degrees(np.arctan2(f[..., 1], f[..., 0])) % 360) / 2  # OpenCV hue in [0, 180)
    hsv = np.stack([ang, np.clip(mag / scale, 0, 1) * 255, np.full_like(ang, 255)], -1).astype(np.uint8)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    rgb[~v] = 0
    return rgb


def image_row(images: Sequence, titles: Sequence[str] = (), height: int = 300, title: str = "") -> go.Figure:
    """Images side by side: each (3, H, W)/(H, W, 3) float in [0, 1], (H, W, 3) uint8, or (H, W) scalars.

    The top margin keeps the subplot titles below plotly's toolbar (shown on hover at the top right).
    """
    from plotly.subplots import make_subplots

    n = len(images)
    fig = make_subplots(1, n, subplot_titles=list(titles) + [""] * (n - len(titles)), horizontal_spacing=0.02)
    for k, img in enumerate(images, start=1):
        a = _np(img)
        if a.ndim == 2:
            fig.add_trace(go.Heatmap(z=a, colorscale="Viridis", showscale=False), 1, k)
            fig.update_yaxes(autorange="reversed", row=1, col=k)
        else:
            fig.add_trace(go.Image(z=a if a.dtype == np.uint8 else _rgb8(a)), 1, k)
        fig.update_xaxes(visible=False, row=1, col=k)
        fig.update_yaxes(visible=False, scaleanchor=f"x{k}", row=1, col=k)
    top = 30 + (25 if any(titles) else 0) + (30 if title else 0)
    fig.update_layout(title=title, height=height + top - 30, margin={"l": 0, "r": 0, "t": top, "b": 0})
    return fig


def flow_arrows_2d(image, flow, valid=None, stride: int = 16, title: str = "", height: int = 400) -> go.Figure:
    """An image with optical-flow arrows (pixel -> pixel + flow) every ``stride`` pixels."""
    f = _need("flow", _np(flow), 3, 2, "(H, W, 2)")
    H, W = f.shape[:2]
    v = np.ones((H, W), bool) if valid is None else _np(valid).astype(bool)
    if v.shape != (H, W):
        raise ValueError(f"valid: expected shape {(H, W)} to match flow, found {v.shape}")
    if int(stride) != stride or stride < 1:
        raise ValueError(f"stride: expected an integer >= 1, found {stride!r}")
    v = v & np.isfinite(f).all(-1)
    vv, uu = np.mgrid[stride // 2 : H : stride, stride // 2 : W : stride]
    keep = v[vv, uu]
    u0, v0 = uu[keep].astype(float), vv[keep].astype(float)
    u1, v1 = u0 + f[vv, uu, 0][keep], v0 + f[vv, uu, 1][keep]
    xs = np.stack([u0, u1, np.full_like(u0, np.nan)], 1).ravel()
    ys = np.stack([v0, v1, np.full_like(v0, np.nan)], 1).ravel()
    fig = go.Figure([go.Image(z=_rgb8(image)), go.Scatter(x=xs, y=ys, mode="lines", line={"color": "yellow", "width": 1.5},
                                                          name="flow"),
                     go.Scatter(x=u1, y=v1, mode="markers", marker={"size": 3, "color": "red"}, name="target")])  # fmt: skip
    fig.update_layout(title=title, height=height, margin={"l": 0, "r": 0, "t": 40, "b": 0}, showlegend=False)
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    fig.update_xaxes(visible=False)
    return fig


def scene_flow_figure(points, scene_flow, colors=None, stride: int = 8, title: str = "", max_points: int = 20000):
    """3D view of source points (H, W, 3) and their scene-flow arrows to the target, every ``stride`` px.

    ``points``/``scene_flow`` (H, W, 3) metres with zeros where invalid; ``colors`` (3, H, W) or (H, W, 3).
    """
    P = _need("points", _np(points).astype(np.float64), 3, 3, "(H, W, 3)")
    S = _need("scene_flow", _np(scene_flow).astype(np.float64), 3, 3, "(H, W, 3)")
    if S.shape != P.shape:
        raise ValueError(f"scene_flow: expected shape {P.shape} to match points, found {S.shape}")
    if int(stride) != stride or stride < 1:
        raise ValueError(f"stride: expected an integer >= 1, found {stride!r}")
    valid = (P[..., 2] > 0) & np.isfinite(P).all(-1) & np.isfinite(S).all(-1)
    sub = np.zeros_like(valid)
    sub[::stride, ::stride] = True
    arrows = valid & sub & (np.linalg.norm(S, axis=-1) > 0)
    cloud = valid.copy()
    idx = np.flatnonzero(cloud.ravel())
    if idx.size > max_points:
        idx = idx[:: int(np.ceil(idx.size / max_points))]
    col = None
    if colors is not None:
        c = _np(colors).astype(np.float64)
        c = c.transpose(1, 2, 0) if c.shape[0] == 3 and c.shape[-1] != 3 else c
        col = c.reshape(-1, 3)[idx]
    traces = [scatter3d(P.reshape(-1, 3)[idx], color=col if col is not None else "gray", size=1.5, name="source"),
              lines3d(P[arrows], P[arrows] + S[arrows], color="crimson", width=3, name="scene flow"),
              scatter3d(P[arrows] + S[arrows], color="crimson", size=2, name="target")]  # fmt: skip
    return figure3d(traces, title=title)


def rgbd_slider(colors, depths, title: str = "", height: int = 380, max_depth: float | None = None) -> go.Figure:
    """Scrub an RGB-D sequence with a plotly slider: colour (T, 3, H, W) and depth (T, H, W) side by side."""
    C = _need("colors", _np(colors), 4, None, "(T, 3, H, W)")
    D = _need("depths", _np(depths).astype(np.float64), 3, None, "(T, H, W)")
    T, _, H, W = C.shape
    if C.shape[1] != 3 or D.shape != (T, H, W):
        raise ValueError(f"colors, depths: expected shapes (T, 3, H, W) and (T, H, W), found {C.shape} and {D.shape}")
    D = np.where(np.isfinite(D), D, 0.0)
    dmax = max_depth or float(D.max())
    depth_rgb = lambda d: cv2.applyColorMap((np.clip(d / dmax, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)[..., ::-1]
    both = lambda t: np.concatenate([_rgb8(C[t]), np.zeros((H, 4, 3), np.uint8), depth_rgb(D[t])], 1)
    fig = go.Figure([go.Image(z=both(0))], frames=[go.Frame(data=[go.Image(z=both(t))], name=str(t)) for t in range(T)])
    steps = [{"method": "animate", "label": str(t), "args": [[str(t)], {"mode": "immediate", "frame": {"duration": 0}}]}
             for t in range(T)]  # fmt: skip
    fig.update_layout(title=title or "colour | depth", height=height, margin={"l": 0, "r": 0, "t": 40, "b": 0},
                      sliders=[{"steps": steps, "currentvalue": {"prefix": "frame "}}])  # fmt: skip
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def skeleton_animation(S, bones: Sequence[tuple[int, int]], title: str = "", step: int = 1,
                       color: str = "royalblue", up="auto", height: int = 560) -> go.Figure:  # fmt: skip
    """Animate 3D shapes (F, P, 3) (skeleton when ``bones`` is given) with play button and frame slider.

    ``up``: the scene's up axis (see :func:`nrsfm_kit.viz.plot3d.scene_framing`; "auto": the axis of largest
    spread, a body's height).
    """
    A = _need("S", _np(S).astype(np.float64), 3, 3, "(F, P, 3)")
    bad = [(i, j) for i, j in bones if not (0 <= i < A.shape[1] and 0 <= j < A.shape[1])]
    if bad:
        raise ValueError(f"bones: expected joint indices in [0, {A.shape[1]}), found {bad[:3]}")
    frames_idx = list(range(0, A.shape[0], max(1, int(step))))
    fig = figure3d(skeleton_traces(A[0], bones, name="shape", color=color), title=title, camera_view="default",
                   height=height)
    fig.frames = [go.Frame(data=skeleton_traces(A[f], bones, name="shape", color=color), name=str(f))
                  for f in frames_idx]  # fmt: skip
    steps = [{"method": "animate", "label": str(f), "args": [[str(f)], {"mode": "immediate", "frame": {"duration": 0}}]}
             for f in frames_idx]  # fmt: skip
    # the scene is framed on the whole sequence (equal aspect, camera on the body, its height up) and kept
    # above the play button and the slider, which sit below it
    fig.update_layout(
        scene={**scene_framing(A, up=up), "domain": {"x": [0, 1], "y": [0.2, 1]}},
        legend={"x": 1, "xanchor": "right", "y": 1},
        updatemenus=[{"type": "buttons", "x": 0, "xanchor": "left", "y": 0.16, "yanchor": "top", "buttons": [
            {"label": "play", "method": "animate",
             "args": [None, {"frame": {"duration": 60, "redraw": True}, "fromcurrent": True}]}]}],
        sliders=[{"steps": steps, "currentvalue": {"prefix": "frame "}, "x": 0.08, "len": 0.92, "y": 0.17,
                  "yanchor": "top"}],
    )  # fmt: skip
    return fig


def keypoints_2d(W, visibility=None, bones: Sequence[tuple[int, int]] = (), title: str = "") -> go.Figure:
    """2D keypoints (P, 2) with bones; invisible points hidden. Image convention (y down)."""
    w = _need("W", _np(W).astype(np.float64), 2, 2, "(P, 2)")
    v = np.ones(len(w), bool) if visibility is None else _np(visibility).astype(bool)
    if v.shape != (len(w),):
        raise ValueError(f"visibility: expected shape ({len(w)},), found {v.shape}")
    xs, ys = [], []
    for i, j in bones:
        if v[i] and v[j]:
            xs += [w[i, 0], w[j, 0], None]
            ys += [w[i, 1], w[j, 1], None]
    fig = go.Figure([go.Scatter(x=xs, y=ys, mode="lines", name="bones"),
                     go.Scatter(x=w[v, 0], y=w[v, 1], mode="markers", name="visible")])  # fmt: skip
    fig.update_yaxes(autorange="reversed", scaleanchor="x")
    fig.update_layout(title=title, height=380, margin={"l": 0, "r": 0, "t": 40, "b": 0})
    return fig
