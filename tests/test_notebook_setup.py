"""nrsfm_kit.notebook.setup(), the first call of every notebook, in a real kernel and in-process.

In a kernel (nbclient): with setup() a plotly figure carries both the plotly mimetype (JupyterLab) and an HTML
version (exports, the book), `import open3d` prints nothing into the cell, the smoke banner shows once, and
show_static marks its outputs; without setup() the same cells show what the issue reported (mimetype only, Open3D's
web-visualiser lines), so the test can fail.
"""

from __future__ import annotations

import json
import os
import re

import nbformat
import pytest

from nrsfm_kit import notebook

PLOTLY_MIME = "application/vnd.plotly.v1+json"


def _run(cells: list[str], smoke: bool = True) -> list[list[dict]]:
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    env_before = {k: os.environ.get(k) for k in ("NRSFM_KIT_SMOKE", "OPEN3D_DISABLE_WEB_VISUALIZER",
                                                 "PLOTLY_RENDERER")}
    os.environ.pop("OPEN3D_DISABLE_WEB_VISUALIZER", None)
    os.environ.pop("PLOTLY_RENDERER", None)
    os.environ["NRSFM_KIT_SMOKE"] = "1" if smoke else "0"
    try:  # the kernel inherits this process's environment
        NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    finally:
        for k, v in env_before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return [c["outputs"] for c in nb.cells]


FIG = "import plotly.graph_objects as go\ngo.Figure(go.Scatter(x=[0, 1], y=[1, 0])).show()"


@pytest.fixture(scope="module")
def with_setup():
    return _run([
        "from nrsfm_kit.notebook import setup\nsetup()",
        "import open3d",
        FIG,
        "from nrsfm_kit.notebook import setup\nsetup()",  # idempotent: no second banner
        "import plotly.graph_objects as go\nfrom nrsfm_kit.notebook import show_static\n"
        "show_static(go.Figure(go.Scatter(x=[0, 1], y=[0, 1])))",
    ])


def test_kernel_with_setup(with_setup):
    banner, o3d, fig, again, static = with_setup
    assert any("Smoke size" in o.get("data", {}).get("text/html", "") for o in banner), banner
    assert o3d == [], f"import open3d printed into the cell: {o3d}"
    mimes = [m for o in fig for m in o.get("data", {})]
    assert PLOTLY_MIME in mimes and "text/html" in mimes, mimes
    # plotly.js is embedded once, offline (no CDN script), so an exported notebook draws the figure
    html = "".join(o["data"].get("text/html", "") for o in fig + banner if "data" in o)
    assert not re.search(r"<script[^>]*src=[\"']https?:", html), "a CDN script"
    assert len(html) > 1_000_000, "plotly.js is not embedded"
    assert again == []
    marked = [o for o in static if o.get("metadata", {}).get(notebook.STATIC_KEY)]
    assert marked, f"show_static outputs not marked: {json.dumps(static)[:300]}"


def test_kernel_without_setup_shows_the_reported_problems():
    o3d, fig = _run(["import open3d", FIG])
    text = "".join(o.get("text", "") for o in o3d)
    assert "Open3D" in text or "WebVisualizer" in text, o3d
    mimes = [m for o in fig for m in o.get("data", {})]
    assert PLOTLY_MIME in mimes and "text/html" not in mimes, mimes


def test_setup_in_process_and_bad_renderer(monkeypatch):
    import plotly.io as pio

    before = pio.renderers.default
    try:
        monkeypatch.delenv("PLOTLY_RENDERER", raising=False)
        assert notebook.setup(banner=False) is None  # a setup cell shows no output
        assert notebook.last_setup["renderer"] == notebook.RENDERER == pio.renderers.default
        monkeypatch.setenv("PLOTLY_RENDERER", "json")
        notebook.setup(banner=False)
        assert notebook.last_setup["renderer"] == "json" == pio.renderers.default
        with pytest.raises(ValueError, match=r"renderer: .*found 'plotly_mimetype\+nope'.*unknown: \['nope'\]"):
            notebook.setup(renderer="plotly_mimetype+nope")
        assert pio.renderers.default == "json"  # a bad name changes nothing
    finally:
        pio.renderers.default = before


def test_show_static_refuses_a_figure_widget():
    go = pytest.importorskip("plotly.graph_objects")
    pytest.importorskip("ipywidgets")
    with pytest.raises(TypeError, match="fig: expected a static figure"):
        notebook.show_static(go.FigureWidget())
