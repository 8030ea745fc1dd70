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


_CAMERA_EYE = {"x": 0.6, "y": -0.9, "z": -2.2}


def _step_back(traces) -> float:
    """How far the camera must step back so that plotly's ``aspectmode="data"`` box of ``traces`` stays in view.

    Plotly scales that box to unit volume (each side range / geometric mean of the ranges): a flat or thin scene
    (a depth map, a sheet, a standing body) gets a side several times the default cube's and overflows the view,
    cutting the axis labels off. Returns max(1, longest side / 1.3), the factor for the camera's eye.
    """
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    for tr in traces:
        cols = [getattr(tr, k, None) for k in "xyz"]
        if any(c is None for c in cols):
            continue
        try:
            p = np.stack([np.asarray(c, dtype=np.float64).reshape(-1) for c in cols], 1)
        except (TypeError, ValueError):  # dates, text, ragged: leave the view as it is
            continue
        p = p[np.isfinite(p).all(1)]
        if len(p):
            lo, hi = np.minimum(lo, p.min(0)), np.maximum(hi, p.max(0))
    r = (hi - lo) * (1 + 1 / 16)  # plotly pads each autorange by 1/32 on both sides
    if not np.isfinite(r).all() or r.max() <= 0:
        return 1.0
    r = np.maximum(r, 1e-3 * r.max())
    return max(1.0, float(r.max() / np.cbrt(r.prod())) / 1.3)


def _scene(camera_view: str, zoom: float = 1.0, traces=()) -> dict:
    scene = {"aspectmode": "data", "xaxis_title": "x", "yaxis_title": "y", "zaxis_title": "z"}
    back = _step_back(traces) / zoom
    if camera_view == "camera":
        scene["camera"] = {"up": {"x": 0, "y": -1, "z": 0}, "eye": {k: v * back for k, v in _CAMERA_EYE.items()}}
    elif back != 1.0:  # plotly's default view (1.25, 1.25, 1.25), further back
        scene["camera"] = {"eye": {k: 1.25 * back for k in "xyz"}}
    return scene


def scene_framing(points, up="auto", margin: float = 0.08, distance: float = 1.7) -> dict:
    """Scene settings that frame ``points`` (..., 3): a tight equal-aspect box around them and a 3/4 camera view.

    ``up``: ``"auto"`` (the principal axis of largest spread, e.g. a standing body's height, pointing along
    the positive side of the coordinate axis it is closest to), ``"x"`` / ``"y"`` / ``"z"``, or a 3-vector.
    The camera looks from between the other two principal axes, slightly from above, at ``distance`` (in
    plotly's units of the scene cube, whose half-size is 1; plotly's default view is at 2.2). Returns a dict
    for ``layout.scene`` (``aspectmode`` "cube", axis ranges, ``camera``).
    """
    p = _np(points).reshape(-1, 3)
    p = p[np.isfinite(p).all(1)]
    if len(p) == 0:
        raise ValueError("points: expected at least one finite (x, y, z) point, found none")
    lo, hi = p.min(0), p.max(0)
    centre = (lo + hi) / 2
    # a tight box around the data, every axis padded by the same length (equal scale on all axes)
    half = (hi - lo) / 2 + margin * float((hi - lo).max()) / 2 + 1e-9
    axes = np.eye(3)
    if len(p) >= 3:
        _, _, vt = np.linalg.svd(p - p.mean(0), full_matrices=False)
        axes = vt  # rows: principal directions, largest spread first
    if isinstance(up, str) and up in ("x", "y", "z"):
        u = np.eye(3)["xyz".index(up)]
    elif isinstance(up, str):
        if up != "auto":
            raise ValueError(f"up: expected 'auto', 'x', 'y', 'z' or a 3-vector, found {up!r}")
        u = axes[0]
        k = int(np.abs(u).argmax())
        u = np.eye(3)[k] if abs(u[k]) > 0.9 else u * np.sign(u[k])
    else:
        u = _np(up).reshape(3)
    u = u / max(np.linalg.norm(u), 1e-12)
    # viewing directions: the two principal axes orthogonal to up (in the plane normal to it)
    rest = [a - (a @ u) * u for a in axes]
    rest = sorted(rest, key=lambda a: -np.linalg.norm(a))
    a1 = rest[0] / max(np.linalg.norm(rest[0]), 1e-12)
    a2 = np.cross(u, a1)
    eye = 0.45 * a1 + 0.85 * a2 + 0.3 * u
    eye = distance * eye / np.linalg.norm(eye)
    rng = lambda k: [float(centre[k] - half[k]), float(centre[k] + half[k])]  # noqa: E731
    # equal aspect with the longest side 1 (as plotly's cube): "manual" ratios proportional to the ranges (plotly's
    # "data" mode rescales the box to unit volume, so a tall thin body would overflow the view at this distance)
    ratio = half / half.max()
    return {"aspectmode": "manual", "aspectratio": dict(zip("xyz", ratio.tolist())),
            "xaxis": {"range": rng(0)}, "yaxis": {"range": rng(1)}, "zaxis": {"range": rng(2)},
            "camera": {"up": dict(zip("xyz", u.tolist())), "eye": dict(zip("xyz", eye.tolist())),
                       "center": {"x": 0, "y": 0, "z": 0}}}


def figure3d(traces, title: str = "", height: int = 500, camera_view: str = "camera") -> go.Figure:
    """A figure with an equal-aspect 3D scene.

    ``camera_view="camera"`` looks down +z with y down (as a pinhole camera sees the scene);
    ``"default"`` keeps plotly's view direction. The camera steps back for flat or thin scenes (see
    :func:`_step_back`) and the margins leave room for the title, so the axis labels stay in view.
    """
    traces = list(traces)
    fig = go.Figure(data=traces)
    fig.update_layout(title=title, scene=_scene(camera_view, traces=traces), height=height,
                      legend={"itemsizing": "constant"},
                      margin={"l": 10, "r": 10, "t": 50 if title else 30, "b": 10})
    return fig


def figure3d_row(panels: dict, title: str = "", height: int = 480, camera_view: str = "camera") -> go.Figure:
    """Equal-aspect 3D scenes side by side: ``panels`` maps a subplot title to a list of traces.

    The scenes share the camera settings (``camera_view`` as in :func:`figure3d`); each trace keeps its legend
    entry, so the same name in two panels is two entries (give them distinct names).
    """
    from plotly.subplots import make_subplots

    n = len(panels)
    if n == 0:
        raise ValueError("panels: expected at least one {title: traces} entry, found none")
    fig = make_subplots(rows=1, cols=n, specs=[[{"type": "scene"}] * n], subplot_titles=list(panels),
                        horizontal_spacing=0.02)
    for c, traces in enumerate(panels.values(), start=1):
        for tr in traces:
            fig.add_trace(tr, row=1, col=c)
    # narrower scenes than figure3d's: the camera steps back so that the axis labels stay in view
    fig.update_layout(**{f"scene{c if c > 1 else ''}": _scene(camera_view, zoom=0.9, traces=tr)
                         for c, tr in enumerate(panels.values(), start=1)})
    fig.update_layout(title=title, height=height, margin={"l": 10, "r": 10, "t": 70 if title else 50, "b": 10},
                      legend={"orientation": "h", "y": -0.02, "yanchor": "top", "itemsizing": "constant"})
    return fig
