"""The book (:mod:`nrsfm_kit.course.book`) on small notebooks made here: post-processing of executed outputs (plotly
figures, plotly.js bundles, widgets and their static stand-ins, tqdm bars, ``\\r`` streams, CDN scripts), the page
checks (each problem kind found on a page made to have it, and not on a clean one), chapters and bad input, and a
whole Sphinx build of two tiny "executed" notebooks (no kernel: outputs are written by hand). The full book of the
14 notebooks is built by ``tests/book`` (``make test``, from the notebooks nbval executed).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from nrsfm_kit.course import book as B
from nrsfm_kit.notebook import STATIC_KEY

FIG = {"data": [{"type": "scatter", "x": [0, 1, 2], "y": [1, 0, 1], "name": "FIG_TRACE_MARKER"}],
       "layout": {"title": {"text": "a figure"}, "height": 320}}
FIG3D = {"data": [{"type": "scatter3d", "x": [0, 1], "y": [0, 1], "z": [0, 1], "mode": "markers"}],
         "layout": {"height": 400}}
PLOTLY_BUNDLE = "<script>/**\n* plotly.js v3.0.1\n* Copyright 2012-2025, Plotly, Inc.\n*/" + "x" * 120_000 + "</script>"
WIDGET = {"application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2, "version_minor": 0},
          "text/plain": "VBox(children=(FloatSlider(value=0.0),))"}
TQDM = {"application/vnd.jupyter.widget-view+json": {"model_id": "t1", "version_major": 2, "version_minor": 0},
        "text/plain": " 40%|####      | 4/10 [00:01<00:02,  2.90it/s]"}


def display(data: dict, metadata: dict | None = None):
    return new_output("display_data", data=data, metadata=metadata or {})


def executed_notebook(title: str = "01 · A chapter: the subtitle") -> nbformat.NotebookNode:
    """A notebook as a kernel would have left it: every kind of output the post-processing treats."""
    nb = new_notebook()
    nb.cells = [
        new_markdown_cell(f"# {title}\n\nInline $x^2$ and display\n\n$$\\mathbf{{x}} = R\\,\\mathbf{{p}} + t$$\n"),
        new_code_cell("import plotly", outputs=[display({"text/html": PLOTLY_BUNDLE})]),
        new_code_cell("fig.show()", outputs=[display({B.PLOTLY_MIME: FIG, "text/html": "<div>old html</div>"})]),
        new_code_cell("fig3d.show()", outputs=[display({B.PLOTLY_MIME: FIG3D})]),
        new_code_cell("explorer()", outputs=[display(WIDGET), display({B.PLOTLY_MIME: FIG}, {STATIC_KEY: True})]),
        new_code_cell("for _ in tqdm(range(10)): pass",
                      outputs=[display(TQDM), new_output("stream", name="stdout", text="step 1\rstep 2\rdone\n"),
                               new_output("stream", name="stdout", text="more\n")]),
        new_code_cell("HTML(...)", outputs=[display({"text/html": '<b>table</b><script src="https://cdn.example.org/'
                                                                   'x.js"></script>'})]),
        new_markdown_cell("## Closing\n\n\\begin{align} a &= b \\\\ c &= d \\end{align}\n"),
    ]
    return nb


# ------------------------------------------------------------------------------------------------ post-processing


def test_postprocess_turns_figures_into_divs_and_drops_what_needs_a_kernel():
    nb = executed_notebook()
    before = nbformat.writes(nb)
    out = B.postprocess_notebook(nb, "01_chapter", "teaching")
    assert nbformat.writes(nb) == before  # the input is not modified
    cells = out.cells
    assert cells[1].outputs == []  # the plotly.js bundle: loaded once per page from _static instead
    html = cells[2].outputs[0]["data"]["text/html"]
    assert list(cells[2].outputs[0]["data"]) == ["text/html"]  # the mimetype copy is gone
    assert 'id="fig-01_chapter-0"' in html and "FIG_TRACE_MARKER" in html and "Plotly.newPlot" in html
    assert "height:320px" in html and "old html" not in html
    assert cells[2].metadata[B.BOOK_KEY] == {"plotly": 1}
    # the widget view is dropped, its static stand-in (a plotly figure) kept and marked
    assert cells[4].metadata[B.BOOK_KEY] == {"widget": True, "plotly": 1}
    assert len(cells[4].outputs) == 1 and cells[4].outputs[0]["metadata"][STATIC_KEY]
    # tqdm's widget bar is not a widget cell; \r-rewritten stream lines keep their last text, streams merge
    assert B.BOOK_KEY not in cells[5].metadata
    assert [o["output_type"] for o in cells[5].outputs] == ["stream"]
    assert cells[5].outputs[0]["text"] == "done\nmore\n"
    assert "cdn.example.org" not in cells[6].outputs[0]["data"]["text/html"]
    assert "<b>table</b>" in cells[6].outputs[0]["data"]["text/html"]
    assert out.metadata[B.BOOK_KEY]["figures"] == 3
    assert not any(c.metadata.get(B.BOOK_KEY, {}).get("banner") for c in cells)  # teaching size: no banner


def test_postprocess_smoke_banner_below_the_title():
    out = B.postprocess_notebook(executed_notebook(), "01_chapter", "smoke")
    assert out.cells[0].source.startswith("# 01")
    assert out.cells[1].metadata[B.BOOK_KEY] == {"banner": True}
    assert B.BANNER_CLASS in out.cells[1].source and "smoke size" in out.cells[1].source


def test_plotly_div_escapes_script_end_and_refuses_nan():
    fig = {"data": [{"type": "scatter", "x": [0], "y": [1], "name": "</script><b>"}], "layout": {}}
    html = B.plotly_div(fig, "f0")
    assert "</script><b>" not in html and "<\\/script>" in html
    with pytest.raises(ValueError):
        B.plotly_div({"data": [{"x": [float("nan")]}], "layout": {}}, "f1")


def test_trace_has_points():
    assert B.trace_has_points({"x": [0, 1]})
    assert B.trace_has_points({"z": {"dtype": "f8", "bdata": "AAAAAAAA8D8=", "shape": "1"}})
    assert B.trace_has_points({"source": "data:image/png;base64,iVBOR"})
    assert B.trace_has_points({"type": "table", "cells": {"values": [["a", "b"], ["0.1", "0.2"]]}})
    assert not B.trace_has_points({"type": "table", "cells": {"values": []}, "header": {"values": []}})
    assert not B.trace_has_points({"x": [], "y": []})
    assert not B.trace_has_points({"x": [None, None]})
    assert not B.trace_has_points({"type": "scatter"})
    assert not B.trace_has_points({"z": {"dtype": "f8", "bdata": "", "shape": "0"}})


def test_notebook_title():
    assert B.notebook_title(executed_notebook(), "x") == "01 · A chapter: the subtitle"
    nb = new_notebook(cells=[new_markdown_cell("no heading here"), new_markdown_cell("# later")])
    assert B.notebook_title(nb, "fallback") == "fallback"


# ------------------------------------------------------------------------------------------------ checks


def test_check_notebook_names_errors_widgets_without_stand_in_and_early_stops():
    nb = executed_notebook()
    nb.cells[4].outputs = [display(WIDGET)]  # the stand-in removed
    nb.cells.append(new_code_cell("1 / 0", outputs=[new_output("error", ename="ZeroDivisionError",
                                                               evalue="division by zero", traceback=[])]))
    nb.metadata["nrsfm_kit"] = {"failure": "DeadKernelError: kernel died"}
    problems = B.check_notebook(B.postprocess_notebook(nb, "01_chapter", "teaching"), "01_chapter")
    assert len(problems) == 3, problems
    assert "execution stopped: DeadKernelError" in problems[0]
    assert "cell 4 ('explorer()')" in problems[1] and "static stand-in" in problems[1]
    assert "ZeroDivisionError: division by zero" in problems[2] and "'1 / 0'" in problems[2]
    assert B.check_notebook(B.postprocess_notebook(executed_notebook(), "01_chapter", "teaching"), "c") == []


def page(tmp_path: Path, body: str, name: str = "p.html") -> Path:
    path = tmp_path / name
    path.write_text(f"<html><head><script src=\"_static/plotly.min.js\"></script></head><body>{body}</body></html>")
    return path


def test_check_html_page_finds_each_problem_kind(tmp_path):
    good = (f'<div class="math notranslate nohighlight">\\[a = b\\]</div><p>text $x$ inline</p>'
            f'<pre>$$ in code is fine</pre>{B.plotly_div(FIG, "f0")}')
    assert B.check_html_page(page(tmp_path, good), False) == ([], 1)
    problems, n = B.check_html_page(page(tmp_path, good), True)
    assert n == 1 and problems == ["p.html: no smoke-size banner (the book was built at smoke size)"]
    banner = f'<div class="{B.BANNER_CLASS}">smoke</div>'
    assert B.check_html_page(page(tmp_path, good + banner), True) == ([], 1)

    cases = {
        "<p>left raw: $$x = 1$$</p>": "raw LaTeX '$$'",
        "<p>\\begin{align} a \\end{align}</p>": "raw LaTeX '\\\\begin{'",
        '<script src="https://cdn.plot.ly/plotly-2.js"></script>': "external resource <script src=https://cdn",
        '<link rel="stylesheet" href="//fonts.example.org/a.css">': "external resource <link href=//fonts",
        '<img src="http://example.org/a.png">': "external resource <img src=http://",
        B.plotly_div({"data": [{"type": "scatter", "x": [], "y": []}], "layout": {}}, "f1"): "has no data",
        f'<div id="f2" class="{B.PLOTLY_CLASS}"></div>': "has no JSON data",
        "<script>/**\n* plotly.js v3.0.1\n*/</script>": "embeds plotly.js",
    }
    for body, expected in cases.items():
        problems, _ = B.check_html_page(page(tmp_path, good + body), False)
        assert len(problems) == 1 and expected in problems[0], (body, problems)


def test_check_book_on_a_folder_that_is_not_a_book(tmp_path):
    problems = B.check_book(tmp_path)
    assert len(problems) == 1 and "book.json: missing" in problems[0]


# ------------------------------------------------------------------------------------------------ chapters, bad input


def make_sources(tmp_path: Path) -> tuple[Path, Path, Path]:
    """notebooks/ (two chapters + a file that is not a chapter), docs/ with a guide, executed/ (their outputs)."""
    nbs, docs, executed = tmp_path / "notebooks", tmp_path / "docs", tmp_path / "executed"
    for d in (nbs, docs, executed):
        d.mkdir()
    for stem, title in (("01_first", "01 · First: one"), ("02_second", "02 · Second")):
        src = executed_notebook(title)
        nbformat.write(new_notebook(cells=[new_markdown_cell(f"# {title}")]), nbs / f"{stem}.ipynb")
        nbformat.write(src, executed / f"{stem}.ipynb")
    nbformat.write(new_notebook(), nbs / "scratch.ipynb")  # not NN_*: not a chapter
    (docs / "instructor_guide.md").write_text("# Instructor guide\n\nWeek 1: read `01_first`.\n")
    return nbs, docs, executed


def test_find_chapters_order_guide_and_only(tmp_path):
    nbs, docs, _ = make_sources(tmp_path)
    chapters = B.find_chapters(nbs, docs)
    assert [(c.stem, c.kind, c.number) for c in chapters] == [
        ("01_first", "notebook", "01"), ("02_second", "notebook", "02"), ("instructor_guide", "markdown", "")]
    assert [c.stem for c in B.find_chapters(nbs, docs, only=["2"])] == ["02_second"]
    with pytest.raises(ValueError, match=r"--only: expected notebook numbers among \['01', '02'\], found \['07'\]"):
        B.find_chapters(nbs, docs, only=["07"])
    with pytest.raises(FileNotFoundError, match="notebooks: .*missing.* is not a folder"):
        B.find_chapters(tmp_path / "missing", docs)
    with pytest.raises(FileNotFoundError, match="expected NN_\\*.ipynb files in .*, found none"):
        B.find_chapters(docs, docs)


def test_read_notebook_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="notebook: .*nope.ipynb does not exist"):
        B.read_notebook(tmp_path / "nope.ipynb")
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.ipynb is not a Jupyter notebook"):
        B.read_notebook(bad)
    bad.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": "x"}))
    with pytest.raises(ValueError, match="bad.ipynb is not a Jupyter notebook"):
        B.read_notebook(bad)


def test_build_book_bad_input(tmp_path):
    nbs, docs, executed = make_sources(tmp_path)
    kw = {"notebooks": nbs, "docs": docs, "executed": executed}
    with pytest.raises(ValueError, match="--size: expected one of \\['teaching', 'smoke'\\], found 'huge'"):
        B.build_book(tmp_path / "o", size="huge", **kw)
    with pytest.raises(ValueError, match="--jobs: expected >= 1, found 0"):
        B.build_book(tmp_path / "o", size="smoke", jobs=0, **kw)
    with pytest.raises(ValueError, match="--timeout: expected >= 1 s, found 0"):
        B.build_book(tmp_path / "o", size="smoke", timeout=0, **kw)
    with pytest.raises(FileNotFoundError, match="--executed: expected a folder"):
        B.build_book(tmp_path / "o", size="smoke", notebooks=nbs, docs=docs, executed=tmp_path / "none")
    nb = nbformat.read(executed / "02_second.ipynb", 4)
    nb.metadata["nrsfm_kit"] = {"smoke": False}
    nbformat.write(nb, executed / "02_second.ipynb")
    with pytest.raises(ValueError, match="built at smoke size but .*02_second.ipynb was executed at teaching size"):
        B.build_book(tmp_path / "o", size="smoke", **kw)
    (executed / "02_second.ipynb").unlink()
    with pytest.raises(FileNotFoundError, match="missing 02_second.ipynb"):
        B.build_book(tmp_path / "o", size="smoke", **kw)
    assert B.main(["--out", str(tmp_path / "o"), "--size", "smoke", "--executed", str(executed),
                   "--notebooks", str(nbs)]) == 2


# ------------------------------------------------------------------------------------------------ a whole build


@pytest.fixture(scope="module")
def small_book(tmp_path_factory):
    root = tmp_path_factory.mktemp("book")
    nbs, docs, executed = make_sources(root)
    times = root / "times.json"
    times.write_text(json.dumps([{"notebook": "01_first", "size": "teaching", "device": "cpu", "cpu_s": 75.0,
                                  "ok": True, "date": "2026-12-03"}]))
    out = root / "out"
    manifest = B.build_book(out, size="smoke", executed=executed, notebooks=nbs, docs=docs, times=times)
    return out, manifest


def test_small_book_builds_and_checks_clean(small_book):
    out, manifest = small_book
    assert [r["page"] for r in manifest["chapters"]] == ["01_first.html", "02_second.html", "instructor_guide.html"]
    assert [r["figures"] for r in manifest["chapters"]] == [3, 3, 0]
    assert B.check_book(out) == []
    html = out / "html"
    for rel in ("index.html", "_static/plotly.min.js", "_static/mathjax/MathJax.js", "01_first.html"):
        assert (html / rel).is_file(), rel
    index = (html / "index.html").read_text()
    for text in ("01_first.html", "02_second.html", "instructor_guide.html", "First", "1 min 15 s"):
        assert text in index, text
    chapter = (html / "01_first.html").read_text()
    assert chapter.count(f'class="plotly-graph-div {B.PLOTLY_CLASS}"') == 3
    assert 'class="math' in chapter and "FIG_TRACE_MARKER" in chapter and "smoke size" in chapter
    assert "cdn.example.org" not in chapter


def test_check_book_finds_a_missing_page_and_a_lost_figure(small_book, tmp_path):
    out, _ = small_book
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "html" / "02_second.html").unlink()
    page = copy / "html" / "01_first.html"
    marker = f'class="plotly-graph-div {B.PLOTLY_CLASS}"'
    page.write_text(page.read_text().replace(marker, 'class="plotly-graph-div"', 1))
    problems = B.check_book(copy)
    assert any("02_second: chapter page" in p and "is missing" in p for p in problems), problems
    assert any("01_first.html: expected 3 plotly figures" in p for p in problems), problems


def test_prerequisites_graph_links_every_chapter_and_draws_every_edge():
    from nrsfm_kit.course import book_landing as L

    chapters = [("00", "00_tour", "A tour of nrsfm-kit"), ("01", "01_geometry_primer", "Geometry primer"),
                ("02", "02_datasets", "Datasets: synthetic ground truth and the real formats"),
                ("11", "11_edm_priors", "EDM priors")]
    svg = L.prerequisites_svg(chapters)
    for _, stem, _ in chapters:
        assert f'<a href="{stem}.html">' in svg
    edges = [(a, b) for a, b in L.PREREQUISITES if {a, b} <= {"00", "01", "02", "11"}]
    assert edges == [("00", "01"), ("01", "02"), ("01", "11")]
    assert svg.count('marker-end="url(#nrsfm-arrow)"') == len(edges)
    assert "width:100%" in svg  # scales to the page instead of overflowing it
    assert "Datasets: synthetic…" not in svg and "02 Datasets:" in svg  # long titles wrap onto two lines
    assert L._wrap("03 The embedded deformation graph and its warp field", 19, 2) == ["03 The embedded",
                                                                                    "deformation graph…"]
    assert L._wrap("08 NRSfM classics", 19, 2) == ["08 NRSfM classics"]
    # every chapter's layer is after its prerequisites: 00 left of 01 left of 02 and 11
    xs = {n: float(svg.split(f'<title>{n} ')[1].split('x="')[1].split('"')[0]) for n, _, _ in chapters}
    assert xs["00"] < xs["01"] < xs["02"] and xs["02"] == xs["11"]


@pytest.mark.skipif(__import__("nrsfm_kit.demo.browser", fromlist=["find_chromium"]).find_chromium() is None,
                    reason="headless Chromium not found (Debian: apt-get install chromium; .ci/run installs it)")
def test_small_book_in_a_browser_typesets_every_formula_and_draws_every_figure(small_book, tmp_path):
    from nrsfm_kit.course.book_browser import check_book_pages

    out, _ = small_book
    report = check_book_pages(out, tmp_path / "shots", ["index.html", "01_first.html"], timeout=60)
    assert report["problems"] == [], report["problems"]
    chapter = report["pages"][1]
    assert chapter["math"] == chapter["math_rendered"] == 3  # inline, display, the align environment
    assert chapter["figures"] == chapter["figures_drawn"] == 3
    assert Path(chapter["screenshot"]).is_file()


def _heading_titles(paths):
    import re

    titles = {}
    for p in paths:
        first = "".join(json.loads(p.read_text(encoding="utf-8"))["cells"][0]["source"]).splitlines()[0]
        m = re.match(r"# (\d\d) · (.*)", first)
        assert m, (p.name, first)
        titles[m.group(1)] = m.group(2).split(" (")[0].split(":")[0].strip()
    return titles


def test_every_notebook_opens_with_its_read_first_line_from_the_prerequisites_graph():
    """A learner in Jupyter sees the same prerequisites as the book's landing page: the first cell of every
    notebook ends with the line read_first_line builds from PREREQUISITES (edit the graph, and this fails until
    the notebooks say the same)."""
    from nrsfm_kit.course import book_landing as L

    paths = sorted((B.REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    titles = _heading_titles(paths)
    assert len(paths) == 14 and set(titles) == {f"{k:02d}" for k in range(14)}
    for p in paths:
        first = "".join(json.loads(p.read_text(encoding="utf-8"))["cells"][0]["source"])
        want = L.read_first_line(p.name[:2], titles)
        lines = [ln for ln in first.splitlines() if ln.startswith("**Read first:**")]
        assert lines == [want], (p.name, lines, want)
    # the graph's own shape: 00 starts, everything else has a prerequisite, and the sentence joins them
    assert L.read_first("00") == [] and all(L.read_first(f"{k:02d}") for k in range(1, 14))
    assert L.read_first_line("13", titles).count(" and ") >= 1 and ", " in L.read_first_line("13", titles)
    with pytest.raises(ValueError, match="titles: expected a title for every prerequisite of 07"):
        L.read_first_line("07", {"03": "graph"})
