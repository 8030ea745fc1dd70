"""Lecture slides (:mod:`nrsfm_kit.course.slides`) on the fixture ``tests/course/data/slides/91_slides_fixture.ipynb``
(cells tagged ``slides`` with a heading, an equation, a fragment and a plotly figure, plus untagged cells).

Most tests use a stand-in reveal.js folder (the files the decks load), so they need no network; only
``test_fetch_reveal_with_npm`` needs npm and the npm registry, and is skipped when either is unreachable.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest

from nrsfm_kit.course import slides as S

DATA = Path(__file__).resolve().parent / "data" / "slides"
FIXTURE = DATA / "91_slides_fixture.ipynb"


def fake_reveal(folder: Path) -> Path:
    for rel in S.REVEAL_REQUIRED:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(f"/* stand-in for reveal.js {rel} */\n")
    (folder / "dist" / "reveal.js.map").write_text("{}")
    return folder


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The fixture's deck, built once (the notebook is executed in a kernel: no executed copy is given)."""
    root = tmp_path_factory.mktemp("slides")
    out = root / "out"
    rc = S.main(["--notebooks", str(DATA), "--out", str(out), "--reveal", str(fake_reveal(root / "reveal")),
                 "--executed", str(root)])  # an executed-copies folder without this notebook: executed now
    assert rc == 0
    return out, (out / "91_slides_fixture.slides.html").read_text()


def test_deck_and_offline_assets_written(built):
    out, _ = built
    for rel in ("91_slides_fixture.slides.html", "index.html", "reveal.js/dist/reveal.js",
                "reveal.js/plugin/notes/notes.js", "mathjax/MathJax.js", "plotly.min.js"):
        assert (out / rel).is_file(), rel
    assert not (out / "reveal.js" / "dist" / "reveal.js.map").exists()  # source maps are not copied
    assert "91_slides_fixture.slides.html" in (out / "index.html").read_text()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_deck_has_the_tagged_cells_only(built):
    _, body = built
    assert "The title slide." in body and "The data term (eq. 3)" in body
    assert "UNTAGGED_MARKDOWN_MARKER" not in body and "UNTAGGED_OUTPUT_MARKER" not in body
    assert "pio.renderers.default" not in body  # the untagged code cell's input
    assert r"\mathbf{x}" in body  # the equation, typeset by MathJax in the browser
    assert "PLOTLY_TRACE_MARKER" in body and "plotly-graph-div" in body
    assert "window.PlotlyConfig" not in body  # plotly's embedded copy of plotly.js dropped: the deck loads it once
    assert 'class="fragment"' in body
    # title slide, the energy slide, the figure as its subslide
    assert body.count("<section") == 5, body.count("<section")


def test_deck_loads_nothing_from_the_network(built):
    out, body = built
    assert S.external_urls(body) == []
    assert not re.search(r"""<(script|link|iframe|img)\b[^>]*(src|href)=["']?(https?:)?//""", body, re.I)
    local = re.findall(r"""<(?:script|link)\b[^>]*\b(?:src|href)=["']([^"']+)["']""", body)
    assert {url.split("?")[0] for url in local} == {"plotly.min.js", "mathjax/MathJax.js", "reveal.js/dist/reveal.css",
                                                    "reveal.js/dist/theme/simple.css", "reveal.js/dist/reveal.js",
                                                    "reveal.js/plugin/notes/notes.js"}
    for url in local:
        assert (out / url.split("?")[0]).is_file(), url


def test_external_urls_finds_scripts_links_iframes_not_anchors():
    text = ('<script src="https://cdn.example/x.js"></script><link rel="stylesheet" href="//cdn.example/y.css">'
            "<iframe src='http://e.example'></iframe><a href=\"https://ok.example\">ok</a>"
            '<script src="local.js"></script>')
    assert len(S.external_urls(text)) == 3


def test_slide_types_by_rule():
    nb = nbformat.read(FIXTURE, as_version=4)
    nb.cells[1].metadata["tags"] = ["slides"]  # an untagged code cell, now tagged: same slide
    types = [c.metadata["slideshow"]["slide_type"] for c in S.slide_notebook(nb, FIXTURE).cells]
    assert types == ["slide", "-", "skip", "slide", "fragment", "skip", "subslide"]
    assert "slideshow" not in nb.cells[0].metadata  # the input is not modified


def test_outputs_from_an_executed_copy_and_plotly_rerendered(tmp_path):
    import plotly.graph_objects as go

    nb = nbformat.read(FIXTURE, as_version=4)
    fig = go.Figure(go.Scatter(x=[0, 1], y=[1, 0], name="FROM_EXECUTED_COPY"))
    html_with_cdn = '<script src="https://cdnjs.cloudflare.com/ajax/libs/mathjax/3.2.2/es5/tex-svg.min.js"></script>'
    nb.cells[6].outputs = [
        nbformat.v4.new_output("display_data", data={"text/html": "<script>window.PlotlyConfig = {};</script>"}),
        nbformat.v4.new_output("display_data", data={"application/vnd.plotly.v1+json": json.loads(fig.to_json()),
                                                     "text/html": html_with_cdn + "<div>old</div>"}),
        nbformat.v4.new_output("display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "m"},
                                                     "text/plain": "VBox()"}),
    ]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    executed = tmp_path / "executed"
    executed.mkdir()
    nbformat.write(nb, executed / FIXTURE.name)
    out = tmp_path / "out"
    assert S.main(["--notebooks", str(DATA), "--out", str(out), "--reveal", str(fake_reveal(tmp_path / "rv")),
                   "--executed", str(executed)]) == 0
    body = (out / "91_slides_fixture.slides.html").read_text()
    assert "FROM_EXECUTED_COPY" in body and "<div>old</div>" not in body and "VBox()" not in body
    assert S.external_urls(body) == [] and "window.PlotlyConfig" not in body


def test_stale_executed_copy_is_not_used():
    nb = nbformat.read(FIXTURE, as_version=4)
    other = nbformat.read(FIXTURE, as_version=4)
    assert S._same_cells(nb, other)
    other.cells[6].source += "\n# edited since"
    assert not S._same_cells(nb, other)


def test_bad_input(tmp_path, capsys):
    reveal = fake_reveal(tmp_path / "rv")
    plain = tmp_path / "plain"
    plain.mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# No tags")]), plain / "00_x.ipynb")
    assert S.main(["--notebooks", str(plain), "--out", str(tmp_path / "o"), "--reveal", str(reveal)]) == 1
    err = capsys.readouterr().err
    assert "no cell tagged 'slides' in 00_x.ipynb" in err and "metadata.tags" in err
    with pytest.raises(ValueError, match="no cell tagged 'slides'"):
        S.slide_notebook(nbformat.read(plain / "00_x.ipynb", as_version=4), "00_x.ipynb")

    empty = tmp_path / "empty_reveal"
    empty.mkdir()
    assert S.main(["--notebooks", str(DATA), "--out", str(tmp_path / "o"), "--reveal", str(empty)]) == 1
    err = capsys.readouterr().err
    assert f"--reveal {empty}: expected a reveal.js package folder" in err and "missing dist/reveal.js" in err
    assert not (tmp_path / "o").exists()

    bad = tmp_path / "bad"
    bad.mkdir()
    nb = nbformat.read(FIXTURE, as_version=4)
    nb.cells[3].metadata["slideshow"] = {"slide_type": "page"}
    nbformat.write(nb, bad / FIXTURE.name)
    assert S.main(["--notebooks", str(bad), "--out", str(tmp_path / "o"), "--reveal", str(reveal)]) == 1
    assert "cell 3: expected slideshow.slide_type in" in capsys.readouterr().err

    assert S.main(["--notebooks", str(DATA), "--only", "05", "--reveal", str(reveal)]) == 1
    assert "--only 05: no notebook in" in capsys.readouterr().err
    assert S.main(["--notebooks", str(DATA), "--reveal", str(reveal), "--executed", str(tmp_path / "no")]) == 1
    assert "--executed" in capsys.readouterr().err


def test_missing_npm_names_the_way_out(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the default --reveal build/vendor/reveal.js is relative: missing here
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    assert S.main(["--notebooks", str(DATA), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "npm" in err and "not on PATH" in err and "--reveal" in err and "reveal.js-5.2.1.tgz" in err
    assert not (tmp_path / "build" / "vendor" / "reveal.js").exists()


def test_help_states_every_default(capsys):
    with pytest.raises(SystemExit):
        S.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert text.count("(default") == 5, text


def _npm_reachable() -> bool:
    npm = shutil.which("npm")
    if not npm:
        return False
    try:
        proc = subprocess.run([npm, "view", f"reveal.js@{S.REVEAL_VERSION}", "version"], capture_output=True,
                              text=True, timeout=60)
    except (subprocess.TimeoutExpired, OSError):
        return False
    return proc.returncode == 0 and S.REVEAL_VERSION in proc.stdout


def test_fetch_reveal_with_npm(tmp_path, monkeypatch):
    if not _npm_reachable():
        pytest.skip("npm or the npm registry is unreachable (needed to fetch reveal.js)")
    monkeypatch.chdir(tmp_path)  # a relative destination, as `make slides` passes (build/vendor/reveal.js)
    dest = S.fetch_reveal(Path("vendor") / "reveal.js")
    assert dest.resolve() == (tmp_path / "vendor" / "reveal.js").resolve()
    assert S.check_reveal(dest) == dest
    assert S.REVEAL_INTEGRITY in (dest / ".nrsfm-kit-integrity").read_text()
    assert sorted(p.name for p in (tmp_path / "vendor").iterdir()) == ["reveal.js"]  # no temporary folder left
    with pytest.raises(FileExistsError):
        S.fetch_reveal(tmp_path / "vendor")  # exists, not a reveal.js package


def test_executed_copies_tried_in_order_stale_ones_skipped(tmp_path, capsys):
    """make slides takes the book's teaching-size copies first, then make test's; a stale copy is passed over."""
    assert S.DEFAULT_EXECUTED == ("build/book/executed", "build/executed")
    first, second = tmp_path / "book", tmp_path / "tests"
    for folder, marker, edit in ((first, "FROM_FIRST", True), (second, "FROM_SECOND", False)):
        folder.mkdir()
        nb = nbformat.read(FIXTURE, as_version=4)
        nb.cells[6].outputs = [nbformat.v4.new_output("stream", name="stdout", text=marker)]
        if edit:
            nb.cells[6].source += "\n# edited since"  # stale: its cells differ from the notebook's
        nbformat.write(nb, folder / FIXTURE.name)
    nb, how = S.executed_notebook(FIXTURE, [first, second])
    assert how == f"executed copy in {second}" and nb.cells[6].outputs[0]["text"] == "FROM_SECOND"
    assert "is stale" in capsys.readouterr().err
    (first / FIXTURE.name).unlink()
    nbformat.write(nbformat.read(second / FIXTURE.name, as_version=4), first / FIXTURE.name)
    assert S.executed_notebook(FIXTURE, [first, second])[1] == f"executed copy in {first}"
    assert S.executed_notebook(FIXTURE, second)[1] == f"executed copy in {second}"  # one folder works too
