"""The demo page in a real browser: headless Chromium draws every figure (nrsfm_kit.demo.browser).

Skipped when no Chromium is installed (Debian: ``apt-get install chromium``; ``.ci/run`` installs it). The smoke
demo of the sections below is written to a temporary folder, rendered, and every figure is checked: plotly drew
it, no plot area or 3D scene is blank or one colour, every 3D scene has a WebGL canvas, and titles, legends,
colour bars, sliders and the toolbar neither overlap nor stick out. Screenshots (``page.png`` and one PNG per
figure) and ``report.json`` go to build/demo-browser/ for a person to look at.

``NRSFM_KIT_BROWSER_SECTIONS=all`` renders every section (default: one section per kind of figure, to stay fast).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from nrsfm_kit.demo.browser import check_page, find_chromium, region_problem

REPO = Path(__file__).resolve().parents[1]
SHOTS = REPO / "build" / "demo-browser"
# 3D scatter / frustum (geometry), skeleton animation + image row + scene flow (datasets), graph with a colour bar,
# skeleton comparison (NRSfM), 2D line plots + maps + embeddings + point clouds (depth)
SECTIONS = ["s10_geometry", "s20_datasets", "s30_graph", "s60_nrsfm", "s70_depth"]

needs_chromium = pytest.mark.skipif(
    find_chromium() is None,
    reason="headless Chromium not found (install Debian's chromium: apt-get install chromium, or set "
           "NRSFM_KIT_CHROMIUM to a Chrome/Chromium binary); .ci/run installs it",
)


def test_region_check_flags_blank_and_constant_images():
    white = np.full((40, 60, 3), 255, np.uint8)
    assert "constant image" in region_problem(white, "panel")
    assert "empty region" in region_problem(white[:0], "panel")
    drawn = white.copy()
    drawn[10:20, 10:30] = (30, 90, 200)
    assert region_problem(drawn, "panel") is None


@needs_chromium
def test_browser_check_catches_a_blank_panel_and_overlaps(tmp_path):
    """The checks fail where they should: a white image panel, a legend on top of a colour bar."""
    import plotly.graph_objects as go
    from plotly.offline import get_plotlyjs

    blank = go.Figure(go.Image(z=np.full((20, 30, 3), 255, np.uint8)))
    clash = go.Figure(go.Scatter(x=[0, 1, 2], y=[1, 0, 2], mode="markers",
                                 marker={"color": [0, 1, 2], "showscale": True, "colorbar": {"x": 1.0, "y": 0.5}}))
    clash.update_layout(legend={"x": 1.0, "y": 0.5, "yanchor": "middle"}, showlegend=True)
    body = "".join(f"<div class='figure' data-section='t' data-index='{k}'>"
                   f"{f.to_html(full_html=False, include_plotlyjs=False)}</div>" for k, f in enumerate((blank, clash)))
    page = tmp_path / "page.html"
    page.write_text(f"<html><head><script>{get_plotlyjs()}</script></head><body>{body}</body></html>")
    rep = check_page(page, tmp_path / "shots")
    assert len(rep.figures) == 2
    assert any("constant image" in p for p in rep.figures[0].problems), rep.figures[0].problems
    assert any("overlaps" in p and "colour bar" in p for p in rep.figures[1].problems), rep.figures[1].problems


@needs_chromium
def test_demo_page_draws_every_figure(tmp_path):
    from nrsfm_kit.cli import main

    sections = SECTIONS if os.environ.get("NRSFM_KIT_BROWSER_SECTIONS", "") != "all" else []
    args = ["demo", "--smoke", "--out", str(tmp_path)]
    for s in sections:
        args += ["--section", s]
    assert main(args) == 0
    html = (tmp_path / "index.html").read_text()
    expected = html.count("<div class='figure'")
    assert expected >= 10

    shutil.rmtree(SHOTS, ignore_errors=True)
    rep = check_page(tmp_path / "index.html", SHOTS)
    assert len(rep.figures) == expected, f"expected {expected} plotly figures on the page, found {len(rep.figures)}"
    assert not rep.problems, "figures that did not draw correctly (screenshots in build/demo-browser/):\n" + \
        "\n".join(rep.problems)
    assert {f.section for f in rep.figures} == set(sections or {f.section for f in rep.figures})
    assert sum(f.scenes for f in rep.figures) >= 8 and sum(f.plots for f in rep.figures) >= 8
    assert all(Path(f.image).is_file() for f in rep.figures) and (SHOTS / "page.png").is_file()
