"""Plotly figures for non-rigid fusion: TSDF slices, triangle meshes, per-frame errors, keyframe rejections and a
frame slider over the canonical and the live model (plotly frames: it works in a static HTML export too)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from nrsfm_kit.viz.plot3d import _np

__all__ = ["mesh_trace", "tsdf_slice_figure", "errors_figure", "rejections_figure", "fusion_slider_figure",
           "REJECTION_KEYS"]

#: the keys of ``FrameRecord.rejected`` in the order of the pipeline's checks
REJECTION_KEYS = ("weight", "depth", "bidirectional", "keyframe_ignored", "multi_keyframe")


def _mesh_arrays(mesh) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(vertices (V, 3), faces (F, 3) int, colours (V, 3) or None) of a TriangleMesh or a (v, f[, c]) tuple."""
    if isinstance(mesh, (tuple, list)) and not hasattr(mesh, "vertices"):
        if len(mesh) not in (2, 3):
            raise ValueError(f"mesh: expected a TriangleMesh or (vertices, faces[, colors]), found {len(mesh)} items")
        v, f, c = (*mesh, None)[:3]
    else:
        v, f, c = mesh.vertices, mesh.faces, getattr(mesh, "colors", None)
    v = _np(v)
    f = np.asarray(f.detach().cpu().numpy() if hasattr(f, "detach") else f, dtype=np.int64)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"mesh.vertices: expected shape (V, 3), found {tuple(v.shape)}")
    if f.ndim != 2 or (f.size and f.shape[1] != 3):
        raise ValueError(f"mesh.faces: expected shape (F, 3), found {tuple(f.shape)}")
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise ValueError(f"mesh.faces: expected vertex ids in [0, {len(v)}), found [{f.min()}, {f.max()}]")
    c = None if c is None else _np(c).reshape(-1, 3)
    return v, f.reshape(-1, 3), c


def mesh_trace(mesh, name: str = "", color: str | None = "lightsteelblue", vertex_colors: bool = False,
               opacity: float = 1.0, showlegend: bool = True) -> go.Mesh3d:
    """A ``go.Mesh3d`` of a triangle mesh (metres).

    Args:
        mesh: :class:`~nrsfm_kit.fusion.volume.TriangleMesh` or (vertices (V, 3), faces (F, 3)[, colours (V, 3)]).
        color: one colour for the whole mesh (used when ``vertex_colors`` is False or the mesh has no colours).
        vertex_colors: colour the vertices with the mesh's RGB colours in [0, 1].
    """
    v, f, c = _mesh_arrays(mesh)
    kw: dict = {}
    if vertex_colors and c is not None and len(c) == len(v):
        kw["vertexcolor"] = [f"rgb({int(r * 255)},{int(g * 255)},{int(b * 255)})" for r, g, b in np.clip(c, 0, 1)]
    elif color is not None:
        kw["color"] = color
    return go.Mesh3d(x=v[:, 0], y=v[:, 1], z=v[:, 2], i=f[:, 0], j=f[:, 1], k=f[:, 2], name=name, opacity=opacity,
                     flatshading=False, showlegend=showlegend, lighting={"ambient": 0.45, "diffuse": 0.8,
                                                                         "specular": 0.15}, **kw)


def tsdf_slice_figure(sdf, weight, origin, voxel_size: float, axis: int = 1, index: int | None = None,
                      title: str = "", height: int = 380) -> go.Figure:
    """Heatmap of the normalised TSDF F on one grid slice (unobserved voxels, W = 0, are blank).

    Args:
        sdf, weight: (nx, ny, nz) F in [-1, 1] and W. origin: (3,) metres (corner of voxel (0, 0, 0)).
        voxel_size: metres. axis: the axis held fixed (0, 1 or 2). index: the slice (default: the middle one).
    """
    F, Wt = _np(sdf), _np(weight)
    if F.ndim != 3 or Wt.shape != F.shape:
        raise ValueError(f"weight: expected the shape of sdf, a 3D grid {tuple(F.shape)}, found {tuple(Wt.shape)}")
    if axis not in (0, 1, 2):
        raise ValueError(f"axis: expected 0, 1 or 2, found {axis!r}")
    n = F.shape[axis]
    index = n // 2 if index is None else int(index)
    if not 0 <= index < n:
        raise ValueError(f"index: expected a slice in [0, {n}), found {index}")
    o = np.asarray(_np(origin), dtype=np.float64).reshape(3)
    z = np.where(np.take(Wt, index, axis) > 0, np.take(F, index, axis), np.nan)  # (a, b) for the two other axes
    a, b = [k for k in range(3) if k != axis]
    ca = o[a] + (np.arange(F.shape[a]) + 0.5) * voxel_size
    cb = o[b] + (np.arange(F.shape[b]) + 0.5) * voxel_size
    names = "xyz"
    fig = go.Figure(go.Heatmap(x=ca, y=cb, z=z.T, colorscale="RdBu", zmin=-1, zmax=1, colorbar={"title": "F"}))
    fig.update_layout(title=title or f"F on the slice {names[axis]} = {o[axis] + (index + 0.5) * voxel_size:.3f} m",
                      xaxis_title=f"{names[a]} (m)", yaxis_title=f"{names[b]} (m)", height=height,
                      yaxis={"scaleanchor": "x", "autorange": "reversed" if b == 1 else True})
    return fig


def errors_figure(curves: Mapping[str, Mapping[int, float]], title: str = "", yaxis_title: str = "error (cm)",
                  scale: float = 100.0, height: int = 340, mode: str = "lines+markers") -> go.Figure:
    """Per-frame errors of several methods: ``curves`` maps a method to {frame: error in metres} (NaN skipped),
    drawn times ``scale`` (cm by default)."""
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError(f"curves: expected a non-empty mapping method -> {{frame: error}}, found {curves!r}")
    fig = go.Figure()
    for name, per_frame in curves.items():
        items = sorted((int(f), float(v)) for f, v in dict(per_frame).items() if v is not None and np.isfinite(v))
        fig.add_trace(go.Scatter(x=[f for f, _ in items], y=[scale * v for _, v in items], mode=mode, name=name))
    fig.update_layout(title=title, xaxis_title="frame", yaxis_title=yaxis_title, height=height)
    return fig


def rejections_figure(records: Sequence, title: str = "keyframe correspondences per frame",
                      height: int = 360) -> go.Figure:
    """Stacked bars of the correspondences rejected per check (``FrameRecord.rejected``) and the kept ones."""
    if not records:
        raise ValueError("records: expected at least one FrameRecord, found none")
    frames = [r.frame for r in records]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=frames, y=[r.keyframe_correspondences for r in records], name="kept",
                         marker_color="seagreen"))
    for key in REJECTION_KEYS:
        fig.add_trace(go.Bar(x=frames, y=[r.rejected.get(key, 0) for r in records], name=f"rejected: {key}"))
    fig.add_trace(go.Scatter(x=frames, y=[r.keyframes_ignored for r in records], name="keyframes ignored",
                             mode="lines+markers", yaxis="y2", line={"color": "black", "dash": "dot"}))
    fig.update_layout(barmode="stack", title=title, xaxis_title="frame", yaxis_title="correspondences",
                      yaxis2={"overlaying": "y", "side": "right", "title": "keyframes ignored", "rangemode": "tozero"},
                      height=height, legend={"orientation": "h", "y": -0.25})
    return fig


def _bounds(arrays) -> tuple[np.ndarray, np.ndarray]:
    pts = np.concatenate([a for a in arrays if len(a)], 0)
    return pts.min(0), pts.max(0)


def fusion_slider_figure(snapshots: Sequence[Mapping], title: str = "", height: int = 520,
                         vertex_colors: bool = True, max_points: int = 4000) -> go.Figure:
    """Canonical (left) and live (right) model side by side with a slider over frames (plotly frames).

    Args:
        snapshots: one mapping per slider step with ``"label"`` (str), ``"canonical"`` and ``"live"`` (triangle
            meshes as for :func:`mesh_trace`) and optionally ``"points"`` (P, 3), the observed points of the frame
            (drawn over the live mesh, at most ``max_points``).
        vertex_colors: colour the meshes with their fused vertex colours.

    The axis ranges are fixed over all snapshots (the view does not jump while sliding); camera looking down +z
    with y down, as the camera sees the scene.
    """
    if not snapshots:
        raise ValueError("snapshots: expected at least one {label, canonical, live} snapshot, found none")
    for k, s in enumerate(snapshots):
        missing = [key for key in ("label", "canonical", "live") if key not in s]
        if missing:
            raise ValueError(f"snapshots[{k}]: expected keys label, canonical, live, missing {missing}")
    labels = [str(s["label"]) for s in snapshots]
    if len(set(labels)) != len(labels):
        raise ValueError(f"snapshots: expected distinct labels (slider steps), found {labels}")
    rng = np.random.default_rng(0)

    def points(s):
        p = s.get("points")
        if p is None:
            return np.zeros((0, 3))
        p = _np(p).reshape(-1, 3)
        if len(p) > max_points:
            p = p[np.sort(rng.choice(len(p), max_points, replace=False))]
        return p

    cans = [_mesh_arrays(s["canonical"]) for s in snapshots]
    lives = [_mesh_arrays(s["live"]) for s in snapshots]
    pts = [points(s) for s in snapshots]

    def traces(c, lv, p):
        return [mesh_trace(c, name="canonical", vertex_colors=vertex_colors, showlegend=False),
                mesh_trace(lv, name="live", color="salmon", vertex_colors=vertex_colors, showlegend=False),
                go.Scatter3d(x=p[:, 0], y=p[:, 1], z=p[:, 2], mode="markers", name="observed depth",
                             marker={"size": 1.5, "color": "seagreen"}, scene="scene2")]

    fig = make_subplots(rows=1, cols=2, specs=[[{"type": "scene"}, {"type": "scene"}]],
                        subplot_titles=["canonical model (fused TSDF)", "live model (warped) + observed depth"],
                        horizontal_spacing=0.02)
    first = traces(cans[0], lives[0], pts[0])
    fig.add_trace(first[0], row=1, col=1)
    fig.add_trace(first[1], row=1, col=2)
    fig.add_trace(first[2], row=1, col=2)
    frames = []
    for lab, c, lv, p in zip(labels, cans, lives, pts):
        tr = traces(c, lv, p)
        tr[0].scene, tr[1].scene = "scene", "scene2"
        frames.append(go.Frame(data=tr, traces=[0, 1, 2], name=lab))
    fig.frames = frames
    scenes = {}
    for key, group in (("scene", [c[0] for c in cans]), ("scene2", [lv[0] for lv in lives] + pts)):
        lo, hi = _bounds(group)
        pad = 0.05 * float((hi - lo).max()) + 1e-6
        lo, hi = lo - pad, hi + pad
        ratio = (hi - lo) / (hi - lo).max()
        scenes[key] = {"aspectmode": "manual", "aspectratio": dict(zip("xyz", ratio.tolist())),
                       **{f"{a}axis": {"range": [float(lo[i]), float(hi[i])], "title": a} for i, a in enumerate("xyz")},
                       "camera": {"up": {"x": 0, "y": -1, "z": 0}, "eye": {"x": 0.5, "y": -0.6, "z": -1.9}}}
    steps = [{"args": [[lab], {"frame": {"duration": 0, "redraw": True}, "mode": "immediate"}], "label": lab,
              "method": "animate"} for lab in labels]
    fig.update_layout(title=title, height=height, margin={"l": 10, "r": 10, "t": 70 if title else 50, "b": 10},
                      sliders=[{"steps": steps, "currentvalue": {"prefix": ""}, "pad": {"t": 10}}],
                      updatemenus=[{"type": "buttons", "showactive": False, "x": 0.0, "y": 0.0, "xanchor": "right",
                                    "buttons": [{"label": "▶", "method": "animate",
                                                 "args": [None, {"frame": {"duration": 400, "redraw": True},
                                                                 "fromcurrent": True}]}]}],
                      **scenes)
    return fig
