"""Plotly / ipywidgets helpers; topic modules (viz/<topic>.py) build on :mod:`nrsfm_kit.viz.plot3d`."""

from nrsfm_kit.viz.plot3d import figure3d, frustum_lines, lines3d, scatter3d, skeleton_traces

__all__ = ["figure3d", "frustum_lines", "lines3d", "scatter3d", "skeleton_traces"]
