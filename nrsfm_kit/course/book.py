"""The static HTML book of the notebooks: ``python -m nrsfm_kit.course book`` (``make book``).

Why Sphinx + myst-nb: it reads executed ``.ipynb`` files directly (outputs kept, no re-execution: ``nb_execution_mode
= "off"``), MyST parses the notebooks' ``$...$`` / ``$$...$$`` / ``\\begin{align}`` maths (dollarmath, amsmath), the
HTML theme ships with Sphinx (alabaster) and MathJax can be pointed at a local copy (``mathjax_path``), so the whole
book builds and reads offline; Jupyter Book 1 is a layer over the same two packages (and its 2.x line moved to a
Node.js toolchain), mkdocs-jupyter goes through nbconvert's HTML exporter, which loads require.js / MathJax from CDNs.

What a build does, in order:

1. **executed notebooks**: every ``notebooks/NN_*.ipynb`` (reading order) is executed with nbclient (one fresh
   kernel per notebook, ``--jobs`` at a time, ``--timeout`` per cell, errors kept as outputs) at teaching size, or at
   smoke size (``--size smoke`` / ``NRSFM_KIT_SMOKE=1``), into ``<out>/executed/``; or taken from ``--executed DIR``
   (e.g. the notebooks :mod:`nrsfm_kit.course.nbrecord` recorded during ``make test``'s nbval run).
2. **post-processing** (:func:`postprocess_notebook`): plotly.js embedded in outputs is dropped and loaded once as
   ``_static/plotly.min.js``; each plotly figure output becomes a small div + its JSON + a ``Plotly.newPlot`` call;
   ipywidgets views and tqdm's widget progress bars are dropped (a widget needs a live kernel), the static stand-in
   that :func:`nrsfm_kit.notebook.show_static` displays beside a widget is kept (a widget cell without one is a
   problem :func:`check_book` reports); external ``<script src=http...>`` tags in outputs are removed; under smoke
   size a banner says so on every chapter page.
3. **Sphinx** builds ``<out>/html/`` from ``<out>/src/`` (the generated ``conf.py``, the landing page ``index.md``
   of :mod:`nrsfm_kit.course.book_landing`, the processed notebooks, ``docs/instructor_guide.md`` when it exists,
   MathJax 2.7 from the ``jupyter_server_mathjax`` package and plotly.js under ``_static``).
4. :func:`check_book` (the test's assertions; ``make book`` fails on any problem) and, with ``--browser``,
   :func:`nrsfm_kit.course.book_browser.check_book_pages` in headless Chromium.

Layout of ``--out`` (default build/book): ``html/index.html`` (open this), ``src/``, ``executed/``, ``book.json``
(the manifest :func:`check_book` reads), ``sphinx-warnings.log``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from nrsfm_kit.course import book_landing
from nrsfm_kit.course.assets import mathjax_dir, plotly_js
from nrsfm_kit.notebook import STATIC_KEY

REPO = Path(__file__).resolve().parents[2]
SIZES = ("teaching", "smoke")
PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
BOOK_KEY = "nrsfm_kit_book"  # cell metadata the post-processing writes (what it dropped), read by check_book
PLOTLY_CLASS = "nrsfm-kit-plotly"
BANNER_CLASS = "nrsfm-kit-book-banner"
SMOKE_BANNER_TEXT = ("built at smoke size (NRSFM_KIT_SMOKE=1): this page's outputs come from shrunk sizes and "
                     "iterations, so numbers and figures need not match the text (which quotes teaching size)")
_PLOTLY_JS_MARK = re.compile(r"\*\s*plotly\.js v\d")
_EXTERNAL_SCRIPT = re.compile(r"<script\b[^>]*\bsrc\s*=\s*[\"']?(?:https?:)?//[^>]*>\s*</script>", re.I)
# tqdm's widget progress bar ("  40%|####      | 4/10 [00:01<00:02, 2.9it/s]") as its text/plain repr
_TQDM_TEXT = re.compile(r"\d+%\|.*\||\d+(?:\.\d+)?[kMG]?(?:it|B)?/s\]|\[\d+:\d+<|\?it/s\]|s/it\]|it/s\]")


@dataclass
class Chapter:
    """One chapter: a notebook (``kind="notebook"``) or a Markdown page (``kind="markdown"``)."""

    stem: str
    path: Path
    kind: str = "notebook"

    @property
    def number(self) -> str:
        return self.stem[:2] if self.kind == "notebook" else ""


# ------------------------------------------------------------------------------------------------ chapters


def find_chapters(notebooks: str | Path = REPO / "notebooks", docs: str | Path = REPO / "docs",
                  only: list[str] | None = None) -> list[Chapter]:
    """The chapters in reading order: ``notebooks/[0-9][0-9]_*.ipynb``, then ``docs/instructor_guide.md`` if it
    exists (left out when ``only`` picks notebooks by number).

    Raises:
        FileNotFoundError: ``notebooks`` is not a folder or holds no ``NN_*.ipynb``.
        ValueError: a number in ``only`` matches no notebook.
    """
    notebooks = Path(notebooks)
    if not notebooks.is_dir():
        raise FileNotFoundError(f"notebooks: {notebooks} is not a folder")
    found = [Chapter(p.stem, p) for p in sorted(notebooks.glob("[0-9][0-9]_*.ipynb"))]
    if not found:
        raise FileNotFoundError(f"notebooks: expected NN_*.ipynb files in {notebooks}, found none")
    if only:
        wanted = [str(n).zfill(2) for n in only]
        numbers = {c.number for c in found}
        bad = [n for n in wanted if n not in numbers]
        if bad:
            raise ValueError(f"--only: expected notebook numbers among {sorted(numbers)}, found {bad}")
        return [c for c in found if c.number in wanted]
    guide = Path(docs) / "instructor_guide.md"
    if guide.is_file():
        found.append(Chapter("instructor_guide", guide, "markdown"))
    return found


def read_notebook(path: Path, what: str = "notebook"):
    """``nbformat.read`` with a clear error.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not a Jupyter notebook (not JSON, or not valid nbformat 4).
    """
    import nbformat

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: {path} does not exist")
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as e:  # nbformat raises NotJSONError, ValidationError, KeyError, ...
        raise ValueError(f"{what}: {path} is not a Jupyter notebook (expected nbformat 4 JSON; "
                         f"{type(e).__name__}: {str(e)[:200]})") from e
    if not isinstance(nb.get("cells"), list):
        raise ValueError(f"{what}: {path} is not a Jupyter notebook (expected a 'cells' list)")
    return nb


# ------------------------------------------------------------------------------------------------ execution


def _execute_one(src: str, dst: str, smoke: bool, timeout: int) -> dict:
    """Execute one notebook in a fresh kernel (cwd = its folder); errors stay as outputs. Returns a summary."""
    import nbformat
    from nbclient import NotebookClient

    from nrsfm_kit.utils.io import atomic_write_text

    nb = read_notebook(Path(src))
    env = dict(os.environ)
    if smoke:
        env["NRSFM_KIT_SMOKE"] = "1"
    else:
        env.pop("NRSFM_KIT_SMOKE", None)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                            interrupt_on_timeout=True, resources={"metadata": {"path": str(Path(src).parent)}})
    t0 = time.perf_counter()
    failure = ""
    try:
        client.execute(env=env)
    except Exception as e:  # kernel died, could not start, ...: keep what ran, say why it stopped
        failure = f"{type(e).__name__}: {str(e)[:500]}"
    nb.metadata["nrsfm_kit"] = {"executed_by": "nrsfm_kit.course.book", "smoke": smoke, "failure": failure,
                                "seconds": round(time.perf_counter() - t0, 1)}
    atomic_write_text(dst, nbformat.writes(nb))
    return {"notebook": Path(src).stem, "seconds": nb.metadata["nrsfm_kit"]["seconds"], "failure": failure}


def execute_chapters(chapters: list[Chapter], out: Path, size: str, timeout: int, jobs: int) -> list[dict]:
    """Execute the notebook chapters into ``out`` (``<stem>.ipynb``), ``jobs`` at a time."""
    out.mkdir(parents=True, exist_ok=True)
    todo = [(str(c.path), str(out / f"{c.stem}.ipynb"), size == "smoke", timeout) for c in chapters
            if c.kind == "notebook"]
    results = []
    if jobs <= 1:
        for args in todo:
            print(f"book: executing {Path(args[0]).name} at {size} size", flush=True)
            results.append(_execute_one(*args))
            print(f"book:   {results[-1]['seconds']:.0f} s {results[-1]['failure']}", flush=True)
        return results
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
        for res in pool.map(_execute_one, *zip(*todo)):
            print(f"book: executed {res['notebook']} in {res['seconds']:.0f} s {res['failure']}", flush=True)
            results.append(res)
    return results


def load_executed(executed: Path, chapters: list[Chapter]) -> dict:
    """The executed notebook of every notebook chapter, read from ``executed/<stem>.ipynb``.

    Raises:
        FileNotFoundError: the folder, or a chapter's notebook in it, is missing.
        ValueError: a file there is not a Jupyter notebook.
    """
    executed = Path(executed)
    if not executed.is_dir():
        raise FileNotFoundError(f"--executed: expected a folder of executed notebooks, {executed} does not exist")
    missing = [c.stem for c in chapters if c.kind == "notebook" and not (executed / f"{c.stem}.ipynb").is_file()]
    if missing:
        raise FileNotFoundError(f"--executed: expected one executed notebook per chapter in {executed}, missing "
                                f"{', '.join(m + '.ipynb' for m in missing)}")
    return {c.stem: read_notebook(executed / f"{c.stem}.ipynb", "--executed")
            for c in chapters if c.kind == "notebook"}


# ------------------------------------------------------------------------------------------------ post-processing


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def _is_plotlyjs_bundle(output) -> bool:
    """An output that embeds the whole plotly.js (the ``notebook`` renderer's first output of a kernel)."""
    data = output.get("data", {})
    if PLOTLY_MIME in data:
        return False
    h = _text(data.get("text/html", ""))
    return len(h) > 100_000 and bool(_PLOTLY_JS_MARK.search(h[:5000]) or "window.PlotlyConfig" in h[:2000]
                                     and "Plotly=" in h[:5000])


def _is_tqdm(output) -> bool:
    return bool(_TQDM_TEXT.search(_text(output.get("data", {}).get("text/plain", ""))))


def plotly_div(fig: dict, div_id: str) -> str:
    """A figure (plotly JSON: ``data``, ``layout``) as a div, its JSON in a script tag, and a ``Plotly.newPlot``
    call; plotly.js itself is loaded once per page (``_static/plotly.min.js``)."""
    layout = fig.get("layout") or {}
    height = layout.get("height")
    style = f"height:{int(height)}px;width:100%" if isinstance(height, (int, float)) else "height:500px;width:100%"
    payload = json.dumps({"data": fig.get("data") or [], "layout": layout, "frames": fig.get("frames") or []},
                         separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    return (f'<div id="{div_id}" class="plotly-graph-div {PLOTLY_CLASS}" style="{style}"></div>'
            f'<script type="application/json" id="{div_id}-json">{payload}</script>'
            f'<script>(function(){{var f=JSON.parse(document.getElementById("{div_id}-json").textContent);'
            f'Plotly.newPlot("{div_id}",f.data,f.layout,{{"responsive":true}}).then(function(gd){{'
            f'if(f.frames.length){{Plotly.addFrames(gd,f.frames);}}}});}})();</script>')


def _clean_stream(text: str) -> str:
    """A stream's text as a terminal shows it: ``\\r`` rewrites the line (tqdm), backspaces delete."""
    lines = []
    for line in text.split("\n"):
        while True:
            shorter = re.sub(r"[^\b\n]\x08", "", line)
            if shorter == line:
                break
            line = shorter
        line = line.replace("\b", "")
        if "\r" in line:
            parts = [p for p in line.split("\r") if p]
            line = parts[-1] if parts else ""
        lines.append(line)
    return "\n".join(lines)


def postprocess_notebook(nb, stem: str, size: str):
    """The executed notebook ``nb`` ready for the book (a copy; ``nb`` is unchanged). See the module docstring.

    Cells get ``metadata["nrsfm_kit_book"]`` = ``{"widget": True}`` where a widget view was dropped (non-tqdm),
    ``{"plotly": k}`` where ``k`` figures became divs; :func:`check_book` reads them.
    """
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)  # widget state: myst-nb would load the widget manager from a CDN
    fig_no = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outs = []
        info = {}
        for output in cell.get("outputs", []):
            kind = output.get("output_type")
            if kind == "stream":
                text = _clean_stream(_text(output.get("text", "")))
                if outs and outs[-1].get("output_type") == "stream" and outs[-1].get("name") == output.get("name"):
                    outs[-1]["text"] = _clean_stream(outs[-1]["text"] + text)
                else:
                    output = copy.deepcopy(output)
                    output["text"] = text
                    outs.append(output)
                continue
            if kind not in ("display_data", "execute_result"):
                outs.append(output)  # errors stay (check_book names them)
                continue
            data = output.get("data", {})
            if _is_plotlyjs_bundle(output):
                continue
            if WIDGET_MIME in data:
                if not _is_tqdm(output):
                    info["widget"] = True
                continue
            if PLOTLY_MIME in data:
                fig = data[PLOTLY_MIME]
                if isinstance(fig, str):
                    fig = json.loads(fig)
                output = copy.deepcopy(output)
                output["data"] = {"text/html": plotly_div(fig, f"fig-{stem}-{fig_no}")}
                output.setdefault("metadata", {})["nrsfm_kit_plotly"] = True
                fig_no += 1
                info["plotly"] = info.get("plotly", 0) + 1
            elif "text/html" in data:
                h = _text(data["text/html"])
                cleaned = _EXTERNAL_SCRIPT.sub("", h)
                if cleaned != h:
                    output = copy.deepcopy(output)
                    output["data"]["text/html"] = cleaned
            outs.append(output)
        cell["outputs"] = outs
        if info:
            cell.metadata[BOOK_KEY] = info
    nb.metadata[BOOK_KEY] = {"stem": stem, "size": size, "figures": fig_no}
    if size == "smoke":
        import nbformat

        banner = nbformat.v4.new_markdown_cell(f'<div class="{BANNER_CLASS}"><b>Note:</b> this book was '
                                               f"{SMOKE_BANNER_TEXT}.</div>")
        banner.metadata[BOOK_KEY] = {"banner": True}
        first_md = next((k for k, c in enumerate(nb.cells) if c.cell_type == "markdown"), None)
        if first_md is not None and _text(nb.cells[first_md].source).lstrip().startswith("#"):
            nb.cells.insert(first_md + 1, banner)  # right below the title
        else:
            nb.cells.insert(0, banner)
    return nb


def notebook_title(nb, default: str) -> str:
    """The first ``# heading`` of the notebook's first markdown cell (``default`` when there is none)."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = re.search(r"^#\s+(.+)$", _text(cell.source), re.M)
            return m.group(1).strip() if m else default
    return default


# ------------------------------------------------------------------------------------------------ Sphinx project


CONF_PY = '''# generated by nrsfm_kit.course.book: the book's Sphinx configuration (offline: no CDN anywhere)
project = "nrsfm-kit"
author = "nrsfm-kit authors"
extensions = ["myst_nb"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
nb_execution_mode = "off"          # the notebooks were executed before (nbclient or nbval)
nb_merge_streams = True
nb_ipywidgets_js = {}              # widget views are dropped; nothing to load (the default loads from CDNs)
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_dmath_double_inline = True
myst_heading_anchors = 3
suppress_warnings = ["mystnb.unknown_mime_type", "myst.header", "misc.highlighting_failure"]
html_theme = "alabaster"
html_theme_options = {"page_width": "1180px", "sidebar_width": "230px", "show_powered_by": False}
html_title = "nrsfm-kit: the book"
html_static_path = ["_static"]
html_js_files = ["plotly.min.js"]
html_css_files = ["nrsfm_book.css"]
html_copy_source = False
html_show_sourcelink = False
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"
mathjax2_config = {
    "tex2jax": {"inlineMath": [["\\\\(", "\\\\)"]], "displayMath": [["\\\\[", "\\\\]"]],
                "processEscapes": True, "processEnvironments": True,
                # MyST marks every section tex2jax_ignore (it has parsed the maths itself) and puts each formula
                # in a .math element: MathJax 2 must process those (MathJax 3 reads mathjax3_config instead)
                "processClass": "tex2jax_process|mathjax_process|math|output_area",
                "ignoreClass": "tex2jax_ignore|mathjax_ignore"},
    # only the STIX-Web web fonts ship with jupyter_server_mathjax (no image fonts)
    "HTML-CSS": {"availableFonts": [], "preferredFont": None, "webFont": "STIX-Web", "imageFont": None},
    "messageStyle": "none",
    "menuSettings": {"zoom": "None"},
}
'''

BOOK_CSS = f""".{BANNER_CLASS} {{ border-left: 5px solid #d9822b; background: #fff5e6; padding: 6px 12px;
  margin: 8px 0 16px 0; }}
.nrsfm-kit-prereq {{ overflow-x: auto; margin: 10px 0 20px 0; }}
.{PLOTLY_CLASS} {{ min-height: 300px; }}
div.body {{ max-width: none; }}
"""


def write_sources(src: Path, chapters: list[Chapter], processed: dict, size: str, times_path: Path) -> list[dict]:
    """Write the Sphinx project into ``src``; returns the manifest rows of the chapters."""
    import nbformat

    from nrsfm_kit.utils.io import atomic_write_text

    if src.exists():
        shutil.rmtree(src)
    (src / "_static").mkdir(parents=True)
    atomic_write_text(src / "conf.py", CONF_PY)
    atomic_write_text(src / "_static" / "nrsfm_book.css", BOOK_CSS)
    shutil.copytree(mathjax_dir(), src / "_static" / "mathjax",
                    ignore=shutil.ignore_patterns("__pycache__", "*.py", "*.pyc"))
    shutil.copy2(plotly_js(), src / "_static" / "plotly.min.js")
    rows, nb_rows, extra = [], [], []
    for c in chapters:
        if c.kind == "notebook":
            nb = processed[c.stem]
            title = notebook_title(nb, c.stem)
            atomic_write_text(src / f"{c.stem}.ipynb", nbformat.writes(nb))
            short = re.sub(r"^\d\d\s*[·:.-]\s*", "", title).split(":")[0]
            nb_rows.append({"number": c.number, "stem": c.stem, "title": title, "short": short})
            rows.append({"stem": c.stem, "kind": c.kind, "title": title, "page": f"{c.stem}.html",
                         "figures": nb.metadata[BOOK_KEY]["figures"]})
        else:
            text = c.path.read_text(encoding="utf-8")
            m = re.search(r"^#\s+(.+)$", text, re.M)
            title = m.group(1).strip() if m else c.stem.replace("_", " ")
            atomic_write_text(src / f"{c.stem}.md", text)
            extra.append({"stem": c.stem, "title": title})
            rows.append({"stem": c.stem, "kind": c.kind, "title": title, "page": f"{c.stem}.html", "figures": 0})
    times = book_landing.load_times(times_path)
    atomic_write_text(src / "index.md", book_landing.landing_markdown(nb_rows, times, size, extra))
    return rows


def run_sphinx(src: Path, html_dir: Path, doctrees: Path, warnings_log: Path, jobs: int = 1) -> int:
    """``sphinx-build -b html`` in this process; warnings go to ``warnings_log``. Returns Sphinx's exit status."""
    from sphinx.cmd.build import build_main

    args = ["-b", "html", "-q", "-d", str(doctrees), "-w", str(warnings_log), "-j", str(max(1, jobs)),
            str(src), str(html_dir)]
    return build_main(args)


def build_book(out: str | Path = "build/book", *, size: str | None = None, executed: str | Path | None = None,
               only: list[str] | None = None, jobs: int = 1, timeout: int = 1800,
               notebooks: str | Path = REPO / "notebooks", docs: str | Path = REPO / "docs",
               times: str | Path = REPO / "benchmarks" / "results" / "notebook_times.json") -> dict:
    """Build the book into ``out`` (see the module docstring); returns the manifest (also ``out/book.json``).

    Raises:
        ValueError: ``size`` is not one of :data:`SIZES`; an executed notebook is not a notebook, or was executed
            at the other size (its ``metadata.nrsfm_kit.smoke``).
        FileNotFoundError: a folder or a chapter's executed notebook is missing.
        RuntimeError: Sphinx failed.
    """
    from nrsfm_kit.config import smoke
    from nrsfm_kit.utils.io import atomic_write_text

    size = size or ("smoke" if smoke() else "teaching")
    if size not in SIZES:
        raise ValueError(f"--size: expected one of {list(SIZES)}, found {size!r}")
    if jobs < 1:
        raise ValueError(f"--jobs: expected >= 1, found {jobs}")
    if timeout < 1:
        raise ValueError(f"--timeout: expected >= 1 s, found {timeout}")
    t0 = time.perf_counter()
    out = Path(out)
    chapters = find_chapters(notebooks, docs, only)
    if executed is None:
        executed = out / "executed"
        execute_chapters(chapters, executed, size, timeout, jobs)
    nbs = load_executed(Path(executed), chapters)
    for stem, nb in nbs.items():
        recorded = nb.metadata.get("nrsfm_kit", {}).get("smoke")
        if recorded is not None and bool(recorded) != (size == "smoke"):
            found = "smoke" if recorded else "teaching"
            raise ValueError(f"--size: the book is built at {size} size but {Path(executed) / stem}.ipynb was "
                             f"executed at {found} size (pass --size {found}, or execute again)")
    t_exec = time.perf_counter() - t0
    processed = {stem: postprocess_notebook(nb, stem, size) for stem, nb in nbs.items()}
    rows = write_sources(out / "src", chapters, processed, size, Path(times))
    html_dir = out / "html"
    if html_dir.exists():
        shutil.rmtree(html_dir)
    status = run_sphinx(out / "src", html_dir, out / "doctrees", out / "sphinx-warnings.log")
    if status != 0:
        log = (out / "sphinx-warnings.log")
        tail = log.read_text(errors="replace")[-3000:] if log.is_file() else ""
        raise RuntimeError(f"sphinx-build failed (exit {status}); warnings in {log}:\n{tail}")
    manifest = {"size": size, "executed": str(executed), "chapters": rows,
                "seconds": {"execute": round(t_exec, 1), "total": round(time.perf_counter() - t0, 1)}}
    atomic_write_text(out / "book.json", json.dumps(manifest, indent=1))
    return manifest


# ------------------------------------------------------------------------------------------------ checks


_SKIP_TAGS = {"script", "style", "pre", "code", "textarea", "svg"}
_URL_ATTRS = {"script": "src", "link": "href", "img": "src", "iframe": "src", "source": "src", "video": "src",
              "audio": "src", "embed": "src", "object": "data"}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _PageScan(HTMLParser):
    """Text outside math containers / code / scripts, external resource URLs, plotly figure payloads."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool]] = []  # (tag, hides its text)
        self.hidden = 0
        self.text: list[str] = []
        self.external: list[str] = []
        self.plotly_divs: list[str] = []
        self.json_scripts: dict[str, list[str]] = {}
        self._json_id: str | None = None
        self.banner = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        attr = _URL_ATTRS.get(tag)
        url = (a.get(attr) or "") if attr else ""
        if attr == "href" and tag == "link" and (a.get("rel") or "") in ("canonical",):
            url = ""
        if re.match(r"^\s*(?:https?:)?//", url, re.I):
            self.external.append(f"<{tag} {attr}={url}>")
        classes = (a.get("class") or "").split()
        if PLOTLY_CLASS in classes:
            self.plotly_divs.append(a.get("id") or "")
        if BANNER_CLASS in classes:
            self.banner = True
        if tag == "script" and a.get("type") == "application/json" and a.get("id", "").endswith("-json"):
            self._json_id = a["id"][: -len("-json")]
            self.json_scripts[self._json_id] = []
        if tag in _VOID:
            return
        hides = tag in _SKIP_TAGS or "math" in classes or "highlight" in " ".join(classes)
        self.stack.append((tag, hides))
        self.hidden += hides

    def handle_endtag(self, tag):
        if tag == "script":
            self._json_id = None
        if tag in _VOID:
            return
        for k in range(len(self.stack) - 1, -1, -1):
            if self.stack[k][0] == tag:
                for _, hides in self.stack[k:]:
                    self.hidden -= hides
                del self.stack[k:]
                return

    def handle_data(self, data):
        if self._json_id is not None:
            self.json_scripts[self._json_id].append(data)
        if not self.hidden:
            self.text.append(data)


def trace_has_points(trace: dict) -> bool:
    """A plotly trace shows something: a non-empty coordinate / value array (plain list or typed ``bdata``)."""
    def nonempty(v) -> bool:
        if isinstance(v, dict):
            if "bdata" in v:  # a typed array
                return bool(v.get("bdata")) and str(v.get("shape", "1")) not in ("0", "")
            return any(nonempty(x) for x in v.values())  # e.g. a table's cells / header: {"values": [[...], ...]}
        if isinstance(v, (list, tuple)):
            return len(v) > 0 and any(nonempty(x) if isinstance(x, (list, tuple, dict)) else x is not None for x in v)
        if isinstance(v, str):
            return v.startswith("data:")  # image source
        return False

    keys = ("x", "y", "z", "values", "r", "theta", "lat", "lon", "a", "b", "i", "source", "locations",
            "dimensions", "cells", "header", "u", "labels")
    return any(nonempty(trace.get(k)) for k in keys)


def check_html_page(path: Path, smoke_banner: bool) -> tuple[list[str], int]:
    """Problems on one HTML page, and the number of plotly figures on it."""
    text = path.read_text(encoding="utf-8", errors="replace")
    scan = _PageScan()
    scan.feed(text)
    scan.close()
    name = path.name
    problems = [f"{name}: external resource {u} (the book must work offline)" for u in scan.external]
    visible = "".join(scan.text)
    for raw in ("$$", "\\begin{"):
        k = visible.find(raw)
        if k >= 0:
            snippet = " ".join(visible[max(0, k - 60): k + 60].split())
            problems.append(f"{name}: raw LaTeX {raw!r} outside a math container: ...{snippet}...")
    if _PLOTLY_JS_MARK.search(text):
        problems.append(f"{name}: embeds plotly.js (it must be loaded once from _static/plotly.min.js)")
    for div in scan.plotly_divs:
        payload = "".join(scan.json_scripts.get(div, []))
        if not payload:
            problems.append(f"{name}: plotly figure {div!r} has no JSON data")
            continue
        try:
            fig = json.loads(payload)
        except json.JSONDecodeError as e:
            problems.append(f"{name}: plotly figure {div!r}: invalid JSON ({e})")
            continue
        traces = fig.get("data") or []
        if not any(isinstance(t, dict) and trace_has_points(t) for t in traces):
            problems.append(f"{name}: plotly figure {div!r} has no data ({len(traces)} traces, none with points)")
    if smoke_banner and not scan.banner:
        problems.append(f"{name}: no smoke-size banner (the book was built at smoke size)")
    return problems, len(scan.plotly_divs)


def _cell_label(stem: str, k: int, cell) -> str:
    first = next((ln.strip() for ln in _text(cell.source).splitlines() if ln.strip()), "")
    return f"{stem} cell {k} ({first[:60]!r})"


def check_notebook(nb, stem: str) -> list[str]:
    """Problems of one processed notebook: error outputs, widget cells without a static stand-in, an execution
    that stopped early."""
    problems = []
    failure = nb.metadata.get("nrsfm_kit", {}).get("failure")
    if failure:
        problems.append(f"{stem}: execution stopped: {failure}")
    for k, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for o in cell.get("outputs", []):
            if o.get("output_type") == "error":
                problems.append(f"{_cell_label(stem, k, cell)} errored: {o.get('ename')}: "
                                f"{str(o.get('evalue', ''))[:200]}")
        if cell.metadata.get(BOOK_KEY, {}).get("widget"):
            if not any(o.get("metadata", {}).get(STATIC_KEY) for o in cell.get("outputs", [])):
                problems.append(f"{_cell_label(stem, k, cell)} shows an ipywidgets widget but no static stand-in "
                                "(display one with nrsfm_kit.notebook.show_static(fig) in the same cell)")
    return problems


def check_book(out_dir: str | Path) -> list[str]:
    """Every problem of the book built in ``out_dir`` (empty when it is fine): a chapter page missing, a cell that
    errored, a widget cell without a static stand-in, raw ``$$`` / ``\\begin{`` outside the math containers, a plotly
    figure without data (or lost between the notebook and its page), an external script / link / img URL, the smoke
    banner missing at smoke size."""
    out = Path(out_dir)
    manifest_path = out / "book.json"
    if not manifest_path.is_file():
        return [f"{manifest_path}: missing (not a built book: run python -m nrsfm_kit.course book --out {out})"]
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    html_dir = out / "html"
    problems = []
    if not (html_dir / "index.html").is_file():
        problems.append(f"{html_dir / 'index.html'}: the landing page is missing")
    smoke = manifest.get("size") == "smoke"
    for row in manifest["chapters"]:
        page = html_dir / row["page"]
        if not page.is_file():
            problems.append(f"{row['stem']}: chapter page {page} is missing")
            continue
        page_problems, n_figs = check_html_page(page, smoke and row["kind"] == "notebook")
        problems += page_problems
        if n_figs != row["figures"]:
            problems.append(f"{row['page']}: expected {row['figures']} plotly figures (the notebook's), found {n_figs}")
        if row["kind"] == "notebook":
            problems += check_notebook(read_notebook(out / "src" / f"{row['stem']}.ipynb"), row["stem"])
    chapter_pages = {row["page"] for row in manifest["chapters"]}
    for page in sorted(html_dir.rglob("*.html")) if html_dir.is_dir() else []:
        if page.name not in chapter_pages:  # landing, search, genindex: offline too
            problems += check_html_page(page, False)[0]
    return problems


# ------------------------------------------------------------------------------------------------ command line


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m nrsfm_kit.course book",
        description="Build the static HTML book of the notebooks (Sphinx + myst-nb, offline), then check it.")
    ap.add_argument("--out", default="build/book", help="output folder; the book is OUT/html/index.html "
                    "(default build/book)")
    ap.add_argument("--size", choices=SIZES, default=None,
                    help="execution size: teaching, or smoke (shrunk sizes, a banner on every page) (default smoke "
                         "when NRSFM_KIT_SMOKE=1 is set, else teaching)")
    ap.add_argument("--executed", default=None, metavar="DIR",
                    help="build from the executed notebooks DIR/<name>.ipynb instead of executing them (default: "
                         "execute into OUT/executed)")
    ap.add_argument("--only", nargs="+", default=None, metavar="NN",
                    help="only these notebooks, by number, e.g. --only 03 09 (default: every chapter)")
    ap.add_argument("--jobs", type=int, default=1, help="notebooks executed at a time (default 1)")
    ap.add_argument("--timeout", type=int, default=1800, help="per-cell execution timeout in s (default 1800)")
    ap.add_argument("--notebooks", default=str(REPO / "notebooks"), help="folder of the NN_*.ipynb notebooks "
                    "(default the repository's notebooks/)")
    ap.add_argument("--no-check", action="store_true", help="skip check_book after the build (default: check)")
    ap.add_argument("--browser", action="store_true",
                    help="also render a few pages in headless Chromium, screenshots into build/book-browser "
                         "(default: off)")
    ap.add_argument("--browser-out", default="build/book-browser",
                    help="folder for the browser check's screenshots and report.json (default build/book-browser)")
    args = ap.parse_args(argv)
    try:
        manifest = build_book(args.out, size=args.size, executed=args.executed, only=args.only, jobs=args.jobs,
                              timeout=args.timeout, notebooks=args.notebooks)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"book: error: {e}", file=sys.stderr)
        return 2
    print(f"book: {len(manifest['chapters'])} chapters at {manifest['size']} size in "
          f"{manifest['seconds']['total']:.0f} s: {Path(args.out) / 'html' / 'index.html'}")
    status = 0
    if not args.no_check:
        problems = check_book(args.out)
        for p in problems:
            print(f"book: PROBLEM {p}")
        print(f"book: check: {len(problems)} problems")
        status = 1 if problems else 0
    if args.browser:
        from nrsfm_kit.course.book_browser import check_book_pages

        rep = check_book_pages(args.out, args.browser_out)
        for p in rep["problems"]:
            print(f"book: BROWSER {p}")
        print(f"book: browser check: {len(rep['pages'])} pages, {len(rep['problems'])} problems, screenshots in "
              f"{args.browser_out}")
        status = status or (1 if rep["problems"] else 0)
    return status


__all__ = ["build_book", "check_book", "postprocess_notebook", "find_chapters", "plotly_div", "main", "Chapter"]
