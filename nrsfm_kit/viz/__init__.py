"""Plotly / ipywidgets helpers; topic modules (viz/<topic>.py) build on :mod:`nrsfm_kit.viz.plot3d`.

Names load lazily (PEP 562).
"""

from nrsfm_kit.utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "plot3d": ["figure3d", "figure3d_row", "frustum_lines", "lines3d", "scatter3d", "skeleton_traces"],
})
