"""The one setup call every notebook makes first: ``from nrsfm_kit.notebook import setup; setup()``.

What it does, and why:

- **plotly renderer** ``"plotly_mimetype+notebook_offline"``: JupyterLab draws the
  ``application/vnd.plotly.v1+json`` mimetype (live, interactive); ``notebook_offline`` (plotly's ``notebook``
  renderer without the MathJax script it loads from a CDN for every figure) adds a ``text/html`` version of every
  figure and embeds plotly.js once per notebook, so an exported notebook (``jupyter nbconvert --to html``, the book
  of ``make book``) shows every figure offline. plotly's default renderer in a kernel stores the mimetype alone,
  which nbconvert cannot show.
- **third-party logs out of cell outputs**: Open3D's web visualiser (it prints its WebRTC set-up into the first
  cell that imports open3d) is turned off unless ``OPEN3D_DISABLE_WEB_VISUALIZER`` is already set, Open3D's own
  log level is set to warnings, Warp is quiet (:mod:`nrsfm_kit.warp_setup`).
- **smoke banner**: under ``NRSFM_KIT_SMOKE=1`` (``make test``, the CI book) a visible note says that sizes and
  iterations are shrunk, so numbers and the narrative's figures need not agree.

:func:`show_static` is the companion for ipywidgets cells: a widget needs a live kernel, so a cell that displays
one also displays a static figure (a plotly figure with its own sliders, or an image) that a reader of the
exported notebook or of the book sees instead.
"""

from __future__ import annotations

import logging
import os
import re

from nrsfm_kit.config import smoke

RENDERER = "plotly_mimetype+notebook_offline"
SMOKE_BANNER = (
    "Smoke size (NRSFM_KIT_SMOKE=1): sizes and iterations are shrunk so this notebook runs in seconds; the "
    "numbers below need not match the ones quoted in the text, which are from teaching size."
)
# metadata key marking a static stand-in for a widget (the book keeps it, drops the widget view)
STATIC_KEY = "nrsfm_kit_static_for_widget"

_state = {"done": False}
last_setup: dict = {}  # what the last setup() call set: renderer, smoke, banner


def setup(renderer: str | None = None, quiet: bool = True, banner: bool = True) -> None:
    """Configure plotly and logging for a notebook; call it first. Idempotent. Returns nothing (a notebook's
    setup cell shows no output); what it set is in :data:`last_setup`.

    Args:
        renderer: plotly renderer name (default :data:`RENDERER`, or ``$PLOTLY_RENDERER`` when set).
        quiet: keep third-party log lines (Open3D, Warp) out of cell outputs.
        banner: show :data:`SMOKE_BANNER` under smoke mode (once per kernel).

    Raises:
        ValueError: ``renderer`` is not a plotly renderer name (the available ones are listed).
    """
    import plotly.io as pio

    _register_offline_renderer()
    name = renderer if renderer is not None else os.environ.get("PLOTLY_RENDERER", RENDERER)
    available = set(pio.renderers)
    unknown = [part for part in str(name).split("+") if part not in available]
    if unknown:
        raise ValueError(f"renderer: expected plotly renderer names joined by '+' (one of {sorted(available)}), "
                         f"found {name!r} (unknown: {unknown})")
    pio.renderers.default = name
    if quiet:
        os.environ.setdefault("OPEN3D_DISABLE_WEB_VISUALIZER", "true")
        for noisy in ("open3d", "matplotlib", "PIL", "numba"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        try:
            import open3d as o3d

            o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Warning)
        except ImportError:  # Open3D is optional for most notebooks
            pass
        from nrsfm_kit.warp_setup import init

        init()
    shown = False
    if banner and smoke() and not _state["done"]:
        _show_banner()
        shown = True
    _state["done"] = True
    last_setup.clear()
    last_setup.update(renderer=name, smoke=smoke(), banner=shown)


# plotly's notebook renderer puts this CDN MathJax script before every figure (plotly 6-7)
_CDN_SCRIPT = re.compile(r'<script src="https?://[^"]*mathjax[^"]*"></script>', re.IGNORECASE)


def _register_offline_renderer() -> None:
    """Register ``notebook_offline``: plotly's ``notebook`` renderer minus its per-figure CDN MathJax script."""
    import plotly.io as pio
    from plotly.io._base_renderers import NotebookRenderer

    if "notebook_offline" in pio.renderers:
        return

    class OfflineNotebookRenderer(NotebookRenderer):
        def to_mimebundle(self, fig_dict):
            bundle = super().to_mimebundle(fig_dict)
            bundle["text/html"] = _CDN_SCRIPT.sub("", bundle["text/html"])
            return bundle

    pio.renderers["notebook_offline"] = OfflineNotebookRenderer()


def _show_banner() -> None:
    try:
        from IPython.display import HTML, display
    except ImportError:  # not in IPython: print instead
        print(SMOKE_BANNER)
        return
    display(HTML('<div class="nrsfm-kit-smoke-banner" style="border-left:4px solid #d9822b;padding:4px 10px;'
                 f'background:#fff5e6"><b>Note.</b> {SMOKE_BANNER}</div>'))


def show_static(fig, note: str = "Static version (works without a running kernel, e.g. in the book):") -> None:
    """Display ``fig`` (a plotly figure, or anything IPython can display) as the static stand-in of the widget
    shown in the same cell; the book keeps this output and drops the widget view.

    Raises:
        TypeError: ``fig`` is a live ``plotly.graph_objects.FigureWidget`` (it needs a kernel, too).
    """
    from IPython.display import Markdown, display

    try:
        import plotly.graph_objects as go

        if isinstance(fig, go.FigureWidget):
            raise TypeError("fig: expected a static figure (plotly.graph_objects.Figure), found a FigureWidget; "
                            "use go.Figure(widget) for a static copy")
        is_plotly = isinstance(fig, go.Figure)
    except ImportError:
        is_plotly = False
    display(Markdown(f"*{note}*"), metadata={STATIC_KEY: True})
    if is_plotly:
        fig.show()  # through the configured renderer: the mimetype live, the HTML version in an export
    else:
        display(fig)
