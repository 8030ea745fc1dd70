"""Plotly building blocks for 3D views: point clouds, line sets, skeletons, camera frusta.

Every helper takes torch tensors or arrays (rows are points) and returns plotly traces; combine them
with :func:`figure3d`, which fixes an equal aspect ratio so shapes are not distorted.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def scatter3d(points, color=None, size: float = 2.0, name: str = "", colorscale: str | None = None,
              opacity: float = 1.0, showscale: bool = False) -> go.Scatter3d:
    """Point cloud trace from (N, 3) points; ``color`` is a colour name, (N,) scalars or (N, 3) RGB in [0, 1]."""
    p = _np(points).reshape(-1, 3)
    marker: dict = {"size": size, "opacity": opacity}
    if color is not None:
        c = color if isinstance(color, str) else _np(color)
        if not isinstance(c, str) and c.ndim == 2 and c.shape[1] == 3:
            c = [f"rgb({int(r * 255)},{int(g * 255)},{int(b * 255)})" for r, g, b in np.clip(c, 0, 1)]
        marker["color"] = c
        if colorscale is not None:
            marker["colorscale"] = colorscale
            marker["showscale"] = showscale
    return go.Scatter3d(x=p[:, 0], y=p[:, 1], z=p[:, 2], mode="markers", marker=marker, name=name)


def lines3d(starts, ends, color: str | None = None, width: float = 2.0, name: str = "") -> go.Scatter3d:
    """One trace drawing the segments starts[e] -> ends[e], (E, 3) each (None-separated polyline)."""
    a, b = _np(starts).reshape(-1, 3), _np(ends).reshape(-1, 3)
    if a.shape != b.shape:
        raise ValueError(f"ends: expected shape {a.shape} matching starts, found {b.shape}")
    seg = np.full((a.shape[0] * 3, 3), np.nan)
    seg[0::3], seg[1::3] = a, b
    line = {"width": width}
    if color is not None:
        line["color"] = color
    return go.Scatter3d(x=seg[:, 0], y=seg[:, 1], z=seg[:, 2], mode="lines", line=line, name=name,
                        connectgaps=False)


def skeleton_traces(joints, bones: Sequence[tuple[int, int]], name: str = "", color: str = "royalblue",
                    size: float = 4.0) -> list:
    """Joints (P, 3) as markers and ``bones`` (pairs of joint ids) as lines."""
    j = _np(joints).reshape(-1, 3)
    traces = [scatter3d(j, color=color, size=size, name=name)]
    if len(bones):
        idx = np.asarray(bones, dtype=int)
        traces.append(lines3d(j[idx[:, 0]], j[idx[:, 1]], color=color, width=4, name=f"{name} bones"))
    return traces


def frustum_lines(intrinsics, R=None, t=None, image_size: tuple[int, int] = (480, 640), scale: float = 0.2,
                  color: str = "black", name: str = "camera") -> go.Scatter3d:
    """Camera frustum (apex + image-plane rectangle at depth ``scale``) for a pinhole camera.

    ``R``, ``t`` map camera to world coordinates (x_world = R x_cam + t); identity by default.
    ``image_size`` is (height, width) in pixels.
    """
    from nrsfm_kit.geometry.pinhole import as_intrinsics

    fx, fy, cx, cy = _np(as_intrinsics(intrinsics)).tolist()
    h, w = image_size
    corners = np.array([[(u - cx) / fx * scale, (v - cy) / fy * scale, scale]
                        for u, v in [(0, 0), (w, 0), (w, h), (0, h)]])
    apex = np.zeros((1, 3))
    R = np.eye(3) if R is None else _np(R)
    t = np.zeros(3) if t is None else _np(t)
    pts = np.concatenate([apex, corners]) @ R.T + t
    starts = pts[[0, 0, 0, 0, 1, 2, 3, 4]]
    ends = pts[[1, 2, 3, 4, 2, 3, 4, 1]]
    return lines3d(starts, ends, color=color, name=name)


def figure3d(traces, title: str = "", height: int = 500, camera_view: str = "camera") -> go.Figure:
    """A figure with an equal-aspect 3D scene.

    ``camera_view="camera"`` looks down +z with y down (as a pinhole camera sees the scene);
    ``"default"`` keeps plotly's view.
    """
    fig = go.Figure(data=list(traces))
    scene = {"aspectmode": "data", "xaxis_title": "x", "yaxis_title": "y", "zaxis_title": "z"}
    if camera_view == "camera":
        scene["camera"] = {"up": {"x": 0, "y": -1, "z": 0}, "eye": {"x": 0.6, "y": -0.9, "z": -2.2}}
    fig.update_layout(title=title, scene=scene, height=height, margin={"l": 0, "r": 0, "t": 40, "b": 0})
    return fig
