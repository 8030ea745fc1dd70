"""Plotly views of triangle meshes: one mesh, and a mesh over time with a frame slider (works in static HTML).

:func:`mesh_trace` draws a :class:`~nrsfm_kit.fusion.volume.TriangleMesh` (or vertices / faces / colours) as a
``go.Mesh3d`` with per-vertex colours; :func:`mesh_sequence_figure` puts one mesh per frame into plotly frames
with a slider and a play button (plotly animations need no kernel, so the view also works in an exported page).
Scenes use the camera convention of :mod:`nrsfm_kit.viz.plot3d` (looking down +z, y down).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from nrsfm_kit.viz.plot3d import _np, _scene

__all__ = ["mesh_trace", "mesh_sequence_figure"]


def mesh_trace(mesh, faces=None, colors=None, name: str = "mesh", color: str = "lightsteelblue",
               opacity: float = 1.0) -> go.Mesh3d:
    """A ``go.Mesh3d`` of a TriangleMesh (or vertices (V, 3), faces (F, 3), colours (V, 3) in [0, 1]), coloured by
    its vertex colours when it has them: :func:`nrsfm_kit.viz.fusion.mesh_trace` (the one implementation) with
    ``vertex_colors=True``."""
    from nrsfm_kit.viz.fusion import mesh_trace as _trace

    return _trace(mesh if faces is None else (mesh, faces, colors), name=name, color=color, vertex_colors=True,
                  opacity=opacity)


def mesh_sequence_figure(meshes: dict, title: str = "", height: int = 520, max_frames: int = 40,
                         camera_view: str = "camera") -> go.Figure:
    """One mesh per frame (``{frame: TriangleMesh}``) with a frame slider and a play button.

    At most ``max_frames`` frames are kept (evenly spaced) so that the page stays light. The axis ranges are
    fixed to the union of all frames, so the motion is visible (not re-framed per frame).
    """
    if not meshes:
        raise ValueError("meshes: expected at least one {frame: mesh} entry, found none")
    keys = sorted(meshes)
    if len(keys) > max_frames:
        keys = [keys[int(round(i))] for i in np.linspace(0, len(keys) - 1, max_frames)]
    traces = {k: mesh_trace(meshes[k], name=f"frame {k}") for k in keys}
    allv = np.concatenate([_np(meshes[k].vertices).reshape(-1, 3) for k in keys])
    allv = allv[np.isfinite(allv).all(1)]
    fig = go.Figure(data=[traces[keys[0]]], frames=[go.Frame(data=[traces[k]], name=str(k)) for k in keys])
    scene = _scene(camera_view)
    if len(allv):
        lo, hi = allv.min(0), allv.max(0)
        pad = 0.05 * float((hi - lo).max())
        for a, ax in enumerate("xyz"):
            scene[f"{ax}axis"] = {"range": [float(lo[a] - pad), float(hi[a] + pad)], "title": ax}
        scene["aspectmode"] = "manual"
        half = (hi - lo) / 2 + pad
        scene["aspectratio"] = dict(zip("xyz", (half / half.max()).tolist()))
    steps = [{"label": str(k), "method": "animate",
              "args": [[str(k)], {"mode": "immediate", "frame": {"duration": 0, "redraw": True},
                                  "transition": {"duration": 0}}]} for k in keys]
    fig.update_layout(
        title=title, height=height, scene=scene, margin={"l": 10, "r": 10, "t": 60 if title else 30, "b": 10},
        sliders=[{"active": 0, "steps": steps, "currentvalue": {"prefix": "frame "}, "pad": {"t": 30}}],
        updatemenus=[{"type": "buttons", "showactive": False, "x": 0.0, "y": 0.0, "xanchor": "left",
                      "yanchor": "top", "buttons": [
                          {"label": "play", "method": "animate",
                           "args": [None, {"frame": {"duration": 150, "redraw": True}, "fromcurrent": True}]}]}])
    return fig
