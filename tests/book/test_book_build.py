"""The whole book at smoke size, as ``make test`` builds it: from the 14 notebooks nbval has just executed (recorded
by :mod:`nrsfm_kit.course.nbrecord` into ``$NRSFM_KIT_BOOK_EXECUTED``), so CI executes every notebook once. Without
that variable (``pytest tests/book`` alone) the book of two notebooks (00, 13) is built, executing them here.

Checks (:func:`nrsfm_kit.course.book.check_book`): every chapter page exists, no cell errored, no widget cell without
its static stand-in, no raw ``$$`` LaTeX, every plotly figure has data and reached its page, nothing loads from the
network, the smoke banner is on every chapter; then headless Chromium renders the landing page and the chapters
with the most equations / 3D figures / figures (MathJax typeset every formula, every figure drew, no blank
figure), screenshots in ``build/book-browser/`` (skipped without Chromium: ``.ci/run`` installs it).

Kept out of the main pytest run of ``make test`` (``--ignore=tests/book``): it must run after every notebook has.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nrsfm_kit.course import book as B
from nrsfm_kit.demo.browser import find_chromium

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "build" / "book"
SHOTS = REPO / "build" / "book-browser"
EXECUTED = os.environ.get("NRSFM_KIT_BOOK_EXECUTED", "").strip()


@pytest.fixture(scope="module")
def book():
    if EXECUTED:
        manifest = B.build_book(OUT, size="smoke", executed=EXECUTED)
    else:
        manifest = B.build_book(OUT, size="smoke", only=["00", "13"])
    return manifest


def test_every_chapter_is_in_the_book(book):
    stems = [r["stem"] for r in book["chapters"]]
    notebooks = sorted(p.stem for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if EXECUTED:
        assert stems[: len(notebooks)] == notebooks
        if (REPO / "docs" / "instructor_guide.md").is_file():
            assert stems[len(notebooks):] == ["instructor_guide"]
        for stem in notebooks:  # every notebook ran to its end under nbval
            meta = B.read_notebook(Path(EXECUTED) / f"{stem}.ipynb").metadata["nrsfm_kit"]
            assert meta["complete"], (stem, meta)
    else:
        assert stems == ["00_tour", "13_warp_kernels"]
    assert sum(r["figures"] for r in book["chapters"]) > 0


def test_book_has_no_problems(book):
    problems = B.check_book(OUT)
    assert problems == [], "\n".join(problems)


@pytest.mark.skipif(find_chromium() is None, reason="headless Chromium not found (Debian: apt-get install chromium; "
                    ".ci/run installs it)")
def test_book_pages_in_a_browser(book):
    from nrsfm_kit.course.book_browser import check_book_pages

    report = check_book_pages(OUT, SHOTS)
    assert report["problems"] == [], "\n".join(report["problems"])
    assert len(report["pages"]) >= (3 if EXECUTED else 2)
    for page in report["pages"]:
        assert Path(page["screenshot"]).is_file()
        assert page["figures_drawn"] == page["figures"]
        assert page["math_rendered"] == page["math"]
    assert sum(p["math"] for p in report["pages"]) > 0 and sum(p["figures"] for p in report["pages"]) > 0
    assert json.loads((SHOTS / "report.json").read_text())["problems"] == []
