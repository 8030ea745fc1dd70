"""Lecture slides from the notebooks (``make slides``): reveal.js decks of the cells tagged ``slides``, offline.

For every notebook with cells tagged ``slides``, nbconvert's :class:`~nbconvert.exporters.SlidesExporter` renders a
copy in which

- untagged cells get ``slide_type = "skip"`` (left out);
- tagged cells keep their ``cell.metadata.slideshow.slide_type`` (``slide``, ``subslide``, ``fragment``, ``-``,
  ``notes``, ``skip``) or get the default: ``"slide"`` for a markdown cell starting with ``#``, else ``"-"`` (same
  slide as the cell before).

The outputs come from an executed copy of the notebook (``--executed DIR``; by default the book's copies in
``build/book/executed``, from ``make book``, then ``build/executed``, the notebooks ``make test`` ran; a copy whose
cells differ from the notebook's is stale and not used) or, failing that, from running the notebook with nbclient
first (at smoke or teaching size, as ``NRSFM_KIT_SMOKE`` says).

Offline: nothing is loaded from the network. Next to the decks in ``--out`` (default ``build/slides``):

- ``reveal.js/``: the parts of reveal.js the decks use, copied from ``--reveal DIR`` (default
  ``build/vendor/reveal.js``, fetched once when missing with ``npm pack reveal.js@5.2.1``, its integrity hash
  checked against the one npm reports and the one pinned here, extracted atomically);
- ``mathjax/``: MathJax 2.7 from the ``jupyter_server_mathjax`` package (equations);
- ``plotly.min.js``: plotly.js from the installed ``plotly`` package. Plotly figures are re-rendered from their
  ``application/vnd.plotly.v1+json`` output without the CDN MathJax script plotly's notebook renderer adds, and the
  renderer's one-off copy of plotly.js (an output of whichever cell showed the first figure) is dropped.

ipywidgets views cannot run without a kernel and are dropped (the notebooks show a static stand-in beside each,
:func:`nrsfm_kit.notebook.show_static`). Every deck is scanned at the end: a ``<script src>``, ``<link href>`` or
``<iframe src>`` with an http(s) URL is an error.
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import nbformat

from nrsfm_kit.course.assets import mathjax_dir, plotly_js
from nrsfm_kit.utils.io import _umask, atomic_write_text

REVEAL_VERSION = "5.2.1"
# what `npm view reveal.js@5.2.1 dist.integrity` reports; checked after `npm pack` as well as npm's own report
REVEAL_INTEGRITY = "sha512-r7//6mIM5p34hFiDMvYfXgyjXqGRta+/psd9YtytsgRlrpRzFv4RbH76TXd2qD+7ZPZEbpBDhdRhJaFgfQ7zNQ=="
REVEAL_REQUIRED = ("dist/reveal.js", "dist/reveal.css", "dist/theme/simple.css", "plugin/notes/notes.js")
THEME = "simple"  # nbconvert's default reveal theme
SLIDE_TYPES = ("slide", "subslide", "fragment", "-", "notes", "skip")
TAG = "slides"
DEFAULT_OUT = "build/slides"
DEFAULT_REVEAL = "build/vendor/reveal.js"
# executed copies tried in order: the book's (`make book`, teaching size unless NRSFM_KIT_SMOKE=1), then the
# notebooks `make test` ran under nbval (smoke size)
DEFAULT_EXECUTED = ("build/book/executed", "build/executed")
MATHJAX_CONFIG = "TeX-AMS_CHTML-full,Safe"
PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
_EXTERNAL = re.compile(r"<(?:script|iframe)\b[^>]*\bsrc\s*=\s*[\"']?(https?:)?//[^\"'\s>]*|"
                       r"<link\b[^>]*\bhref\s*=\s*[\"']?(https?:)?//[^\"'\s>]*", re.IGNORECASE)

_TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}
{%- if resources.nrsfm_slides.plotly_js %}
<script src="{{ resources.nrsfm_slides.plotly_js }}"></script>
{%- endif %}
{%- endblock html_head_js -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{% block footer_js %}
<script src="{{ resources.reveal.url_prefix }}/dist/reveal.js"></script>
<script src="{{ resources.reveal.url_prefix }}/plugin/notes/notes.js"></script>
<script>
Reveal.initialize({
    controls: true,
    progress: true,
    history: true,
    transition: "{{ resources.reveal.transition | default('slide', true) }}",
    slideNumber: "{{ resources.reveal.number | default('', true) }}",
    plugins: [RevealNotes],
    width: {{ resources.reveal.width | default('960', true) }},
    height: {{ resources.reveal.height | default('700', true) }}
});
Reveal.on('slidechanged', function (event) {
    if (window.MathJax && MathJax.Hub && MathJax.Hub.getAllJax(event.currentSlide)) {
        MathJax.Hub.Rerender(event.currentSlide);
    }
    if (window.Plotly) {  // figures drawn while hidden have no size
        event.currentSlide.querySelectorAll('.plotly-graph-div').forEach(function (gd) { Plotly.Plots.resize(gd); });
    }
});
</script>
{% endblock footer_js %}
"""


# ------------------------------------------------------------------------------------------- the cells


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def default_slide_type(cell) -> str:
    """``"slide"`` for a markdown cell starting with ``#`` (a heading), else ``"-"`` (same slide)."""
    if cell.get("cell_type") == "markdown" and _source(cell).lstrip().startswith("#"):
        return "slide"
    return "-"


def slide_notebook(nb, path="<notebook>"):
    """A copy of ``nb`` with every cell's ``slideshow.slide_type`` set by the rule (module docstring).

    Raises:
        ValueError: no cell is tagged ``slides``, a tagged cell has an unknown slide_type, or every tagged cell is
            ``skip`` / ``notes`` (nothing to show).
    """
    out = copy.deepcopy(nb)
    tagged = 0
    for index, cell in enumerate(out.cells):
        meta = cell.setdefault("metadata", {})
        if TAG in (meta.get("tags") or []):
            tagged += 1
            given = (meta.get("slideshow") or {}).get("slide_type")
            if given is not None and given not in SLIDE_TYPES:
                raise ValueError(f"{path}: cell {index}: expected slideshow.slide_type in {list(SLIDE_TYPES)}, "
                                 f"found {given!r}")
            meta["slideshow"] = {"slide_type": given if given is not None else default_slide_type(cell)}
        else:
            meta["slideshow"] = {"slide_type": "skip"}
    if not tagged:
        raise ValueError(f"{path}: no cell tagged {TAG!r}: expected cells with metadata.tags containing {TAG!r} "
                         f"(the key derivations and figures of the lecture)")
    if all(c.metadata["slideshow"]["slide_type"] in ("skip", "notes") for c in out.cells):
        raise ValueError(f"{path}: every cell tagged {TAG!r} has slide_type 'skip' or 'notes': nothing to show")
    return out


def clean_outputs(nb) -> dict:
    """Make the outputs of ``nb`` (in place) work offline; returns counts of what was changed.

    Plotly figures are re-rendered from their plotly JSON (no plotly.js, no CDN MathJax inside; the deck loads
    ``plotly.min.js`` once); the notebook renderer's embedded copy of plotly.js is dropped; widget views are dropped
    (their static stand-ins stay).
    """
    import plotly.io as pio

    counts = {"plotly": 0, "plotly_init": 0, "widgets": 0}
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            data = out.get("data")
            if not isinstance(data, dict):
                kept.append(out)
                continue
            if PLOTLY_MIME in data:
                fig = data[PLOTLY_MIME]
                fig = json.loads(fig) if isinstance(fig, str) else fig
                out["data"] = {"text/html": pio.to_html(fig, include_plotlyjs=False, include_mathjax=False,
                                                        full_html=False, default_width="100%",
                                                        default_height=525, validate=False)}
                counts["plotly"] += 1
            elif "text/html" in data and "window.PlotlyConfig" in _source({"source": data["text/html"]}) \
                    and "plotly-graph-div" not in _source({"source": data["text/html"]}):
                counts["plotly_init"] += 1
                continue
            if WIDGET_MIME in data:
                counts["widgets"] += 1
                data = {k: v for k, v in data.items() if k not in (WIDGET_MIME, "text/plain")}
                if not data:
                    continue
                out["data"] = data
            kept.append(out)
        cell["outputs"] = kept
    nb.metadata.pop("widgets", None)
    return counts


def uses_plotly(nb) -> bool:
    """True when a cell shown in the deck has a plotly figure (after :func:`clean_outputs`)."""
    for cell in nb.cells:
        if cell.metadata.get("slideshow", {}).get("slide_type") == "skip":
            continue
        for out in cell.get("outputs", []):
            if "plotly-graph-div" in _source({"source": (out.get("data") or {}).get("text/html", "")}):
                return True
    return False


def external_urls(text: str) -> list[str]:
    """The http(s) (or protocol-relative) URLs of ``<script src>``, ``<iframe src>`` and ``<link href>`` in HTML."""
    return [m.group(0) for m in _EXTERNAL.finditer(text)]


# --------------------------------------------------------------------------------------- offline assets


def check_reveal(folder: Path, option: str = "--reveal") -> Path:
    """``folder`` if it holds reveal.js (the files the decks load), else FileNotFoundError naming the missing ones."""
    folder = Path(folder)
    missing = [rel for rel in REVEAL_REQUIRED if not (folder / rel).is_file()]
    if missing:
        raise FileNotFoundError(f"{option} {folder}: expected a reveal.js package folder (the 'package/' folder of "
                                f"reveal.js-{REVEAL_VERSION}.tgz) with {', '.join(REVEAL_REQUIRED)}; missing "
                                f"{', '.join(missing)}")
    return folder


def _sri(data: bytes, integrity: str) -> bool:
    algo, _, digest = integrity.partition("-")
    if algo not in ("sha512", "sha384", "sha256", "sha1"):
        return False
    return base64.b64encode(hashlib.new(algo, data).digest()).decode() == digest


def fetch_reveal(dest: Path, version: str = REVEAL_VERSION, npm: str | None = None) -> Path:
    """Fetch reveal.js ``version`` with ``npm pack`` into ``dest`` (which must not exist yet): the tarball's hash is
    checked against the integrity npm reports (and against :data:`REVEAL_INTEGRITY` for the pinned version), then
    extracted into a temporary folder beside ``dest`` and renamed into place.

    Raises:
        FileNotFoundError: npm is not installed.
        RuntimeError: ``npm pack`` failed (no network?) or the hashes disagree.
    """
    dest = Path(dest)
    npm = npm or shutil.which("npm")
    way_out = (f"or download https://registry.npmjs.org/reveal.js/-/reveal.js-{version}.tgz on a machine with "
               f"network, extract its package/ folder to {dest} and run again (or pass --reveal DIR)")
    if not npm:
        raise FileNotFoundError(f"--reveal {dest}: reveal.js is missing and npm (needed once to fetch reveal.js "
                                f"{version}) is not on PATH: install Node.js and npm (e.g. apt-get install npm), "
                                + way_out)
    if dest.exists():
        raise FileExistsError(f"--reveal {dest}: exists but is not a reveal.js package (missing "
                              f"{', '.join(r for r in REVEAL_REQUIRED if not (dest / r).is_file())}); remove it "
                              f"to fetch reveal.js {version} again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    # absolute: npm runs with the temporary folder as its working directory, so a relative --pack-destination
    # (make slides' build/vendor/...) would be resolved inside itself
    with tempfile.TemporaryDirectory(prefix=".reveal-", dir=dest.parent.resolve()) as tmp:
        try:
            proc = subprocess.run([npm, "pack", f"reveal.js@{version}", "--json", "--pack-destination", tmp],
                                  capture_output=True, text=True, timeout=600, cwd=tmp)
        except subprocess.TimeoutExpired as err:
            raise RuntimeError(f"npm pack reveal.js@{version} did not finish in 600 s (no network?); "
                               + way_out) from err
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise RuntimeError(f"npm pack reveal.js@{version} failed (exit {proc.returncode}): "
                               f"{' / '.join(tail)}; " + way_out)
        try:
            (info,) = json.loads(proc.stdout)
            tarball, integrity = Path(tmp) / info["filename"], info["integrity"]
        except (ValueError, KeyError, TypeError) as err:
            raise RuntimeError(f"npm pack reveal.js@{version} --json: expected one package with filename and "
                               f"integrity, found {proc.stdout[:300]!r}") from err
        data = tarball.read_bytes()
        if not _sri(data, integrity):
            raise RuntimeError(f"{tarball.name}: its hash does not match the integrity npm reported ({integrity})")
        if version == REVEAL_VERSION and integrity != REVEAL_INTEGRITY:
            raise RuntimeError(f"reveal.js@{version}: npm reported integrity {integrity}, expected the pinned "
                               f"{REVEAL_INTEGRITY}")
        unpack = Path(tmp) / "unpack"
        with tarfile.open(tarball, "r:gz") as tar:
            tar.extractall(unpack, filter="data")
        package = check_reveal(unpack / "package", option=f"reveal.js-{version}.tgz")
        (package / ".nrsfm-kit-integrity").write_text(f"reveal.js@{version} {integrity}\n")
        os.replace(package, dest)
    return dest


def _copy_once(src: Path, dest: Path, ignore=None) -> None:
    """Copy folder ``src`` to ``dest`` through a temporary folder beside it; nothing when ``dest`` exists."""
    if dest.exists():
        return
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        shutil.copytree(src, tmp / "x", ignore=ignore)
        os.replace(tmp / "x", dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _copy_file_once(src: Path, dest: Path) -> None:
    if dest.exists() and dest.stat().st_size == src.stat().st_size:
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def install_assets(out: Path, reveal: Path) -> dict:
    """Copy reveal.js (the parts the decks use), MathJax and plotly.js into ``out``; relative URLs for the decks."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / "reveal.js"
    if not target.exists():
        tmp = Path(tempfile.mkdtemp(prefix=".reveal.js-", dir=out))
        try:
            skip = shutil.ignore_patterns("*.map", "*.esm.js")
            shutil.copytree(reveal / "dist", tmp / "x" / "dist", ignore=skip)
            shutil.copytree(reveal / "plugin" / "notes", tmp / "x" / "plugin" / "notes", ignore=skip)
            for name in ("LICENSE", ".nrsfm-kit-integrity"):
                if (reveal / name).is_file():
                    shutil.copyfile(reveal / name, tmp / "x" / name)
            os.replace(tmp / "x", target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    _copy_once(mathjax_dir(), out / "mathjax")
    _copy_file_once(plotly_js(), out / "plotly.min.js")
    return {"reveal": "reveal.js", "mathjax": f"mathjax/MathJax.js?config={MATHJAX_CONFIG}",
            "plotly": "plotly.min.js"}


# ------------------------------------------------------------------------------------------- executing


def _same_cells(a, b) -> bool:
    return len(a.cells) == len(b.cells) and all(
        x.get("id") == y.get("id") and x.cell_type == y.cell_type and _source(x) == _source(y)
        for x, y in zip(a.cells, b.cells))


def executed_notebook(path: Path, executed, timeout: int = 1800):
    """The notebook at ``path`` with outputs: the copy in ``executed`` (a folder, or a list of folders tried in
    order) when it has the same cells, else run with nbclient in the notebook's folder (the kernel inherits
    ``NRSFM_KIT_SMOKE``). Tags and metadata always come from ``path``."""
    nb = nbformat.read(path, as_version=4)
    folders = [] if executed is None else [executed] if isinstance(executed, (str, Path)) else list(executed)
    for folder in map(Path, folders):
        if not (folder / path.name).is_file():
            continue
        done = nbformat.read(folder / path.name, as_version=4)
        if _same_cells(nb, done):
            for cell, ran in zip(nb.cells, done.cells):
                if cell.cell_type == "code":
                    cell["outputs"] = ran.get("outputs", [])
                    cell["execution_count"] = ran.get("execution_count")
            return nb, f"executed copy in {folder}"
        print(f"note: {folder / path.name} is stale (its cells differ from {path})", file=sys.stderr)
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    except CellExecutionError as err:
        raise RuntimeError(f"{path}: executing the notebook for its slides failed: {str(err)[-800:]}") from err
    return nb, "executed now"


# ----------------------------------------------------------------------------------------------- export


def render(nb, name: str, urls: dict) -> str:
    """Slides HTML of a notebook already passed through :func:`slide_notebook` and :func:`clean_outputs`."""
    from jinja2 import DictLoader
    from nbconvert import SlidesExporter

    exporter = SlidesExporter(extra_loaders=[DictLoader({"nrsfm_kit_slides.html.j2": _TEMPLATE})],
                              template_file="nrsfm_kit_slides.html.j2", reveal_url_prefix=urls["reveal"],
                              mathjax_url=urls["mathjax"], reveal_theme=THEME, require_js_url="", jquery_url="",
                              mermaid_js_url="")
    resources = {"metadata": {"name": name},
                 "nrsfm_slides": {"plotly_js": urls["plotly"] if uses_plotly(nb) else ""}}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    return body


def _index(decks: list[tuple[str, str]]) -> str:
    items = "\n".join(f'<li><a href="{html.escape(f)}">{html.escape(t)}</a></li>' for f, t in decks)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>nrsfm-kit lecture slides"
            f"</title></head>\n<body><h1>nrsfm-kit lecture slides</h1>\n<ul>\n{items}\n</ul>\n"
            "<p>Built by <code>make slides</code>; works offline (reveal.js, MathJax and plotly.js are in this "
            "folder).</p></body></html>\n")


def _title(nb, fallback: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            first = _source(cell).lstrip().splitlines()[:1]
            if first and first[0].startswith("# "):
                return first[0][2:].strip()
    return fallback


def main(argv: list[str] | None = None) -> int:
    """``python -m nrsfm_kit.course slides [--notebooks DIR] [--executed DIR] [--out DIR] [--reveal DIR]
    [--only PREFIX ...]``."""
    parser = argparse.ArgumentParser(
        prog="python -m nrsfm_kit.course slides",
        description="reveal.js slides (offline) of the cells tagged 'slides' in every notebook: "
                    "OUT/NN_name.slides.html and OUT/index.html.")
    parser.add_argument("--notebooks", default="notebooks", metavar="DIR",
                        help="folder of the notebooks (default notebooks/)")
    parser.add_argument("--executed", default=None, metavar="DIR",
                        help=f"folder of executed copies NN_name.ipynb to take outputs from (default "
                             f"{' then '.join(d + '/' for d in DEFAULT_EXECUTED)}, where they exist; a notebook "
                             f"without an up-to-date copy is "
                             f"executed with nbclient, at the size NRSFM_KIT_SMOKE selects)")
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"output folder (default {DEFAULT_OUT}/)")
    parser.add_argument("--reveal", default=None, metavar="DIR",
                        help=f"reveal.js package folder (default {DEFAULT_REVEAL}/, fetched with `npm pack "
                             f"reveal.js@{REVEAL_VERSION}` when missing)")
    parser.add_argument("--only", nargs="+", metavar="PREFIX",
                        help="only the notebooks whose file name starts with one of these prefixes (default: "
                             "every notebook with cells tagged 'slides')")
    args = parser.parse_args(argv)
    try:
        folder = Path(args.notebooks)
        if not folder.is_dir():
            raise FileNotFoundError(f"--notebooks {folder}: expected a folder of .ipynb files, found none")
        paths = sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))
        if args.only:
            unmatched = [pre for pre in args.only if not any(p.name.startswith(pre) for p in paths)]
            if unmatched:
                raise ValueError(f"--only {' '.join(unmatched)}: no notebook in {folder} starts with it (found "
                                 f"{', '.join(p.name for p in paths) or 'none'})")
            paths = [p for p in paths if any(p.name.startswith(pre) for pre in args.only)]
        tagged, untagged = [], []
        for path in paths:
            nb = nbformat.read(path, as_version=4)
            has = any(TAG in (c.metadata.get("tags") or []) for c in nb.cells)
            (tagged if has else untagged).append(path)
        if not tagged:
            raise ValueError(f"--notebooks {folder}: no cell tagged {TAG!r} in "
                             f"{', '.join(p.name for p in paths) or 'no notebook'}: tag the cells of the key "
                             f"derivations and figures with {TAG!r} (metadata.tags) to put them in the slides")
        if args.only and untagged:
            raise ValueError(f"--only: {', '.join(p.name for p in untagged)}: no cell tagged {TAG!r}")
        for path in tagged:  # bad slide metadata is reported before anything is executed
            slide_notebook(nbformat.read(path, as_version=4), path)
        if args.reveal is None:
            reveal = Path(DEFAULT_REVEAL)
            if not all((reveal / rel).is_file() for rel in REVEAL_REQUIRED):
                print(f"fetching reveal.js {REVEAL_VERSION} into {reveal} (npm pack)", file=sys.stderr)
                fetch_reveal(reveal)
        else:
            reveal = Path(args.reveal)
        check_reveal(reveal)
        if args.executed is not None and not Path(args.executed).is_dir():
            raise FileNotFoundError(f"--executed {args.executed}: expected a folder of executed notebooks, found none")
        executed = [Path(args.executed)] if args.executed is not None else [Path(d) for d in DEFAULT_EXECUTED]
        out = Path(args.out)
        urls = install_assets(out, reveal)
        decks = []
        for path in tagged:
            nb, how = executed_notebook(path, executed)
            deck = slide_notebook(nb, path)
            clean_outputs(deck)
            body = render(deck, path.stem, urls)
            bad = external_urls(body)
            if bad:
                raise ValueError(f"{path}: the slides would load from the network: {bad[:3]} (an output with an "
                                 f"external script/link); remove it from the cells tagged {TAG!r}")
            target = out / f"{path.stem}.slides.html"
            atomic_write_text(target, body)
            decks.append((target.name, _title(nb, path.stem)))
            n = sum(c.metadata["slideshow"]["slide_type"] != "skip" for c in deck.cells)
            print(f"wrote {target} ({n} cells, outputs: {how})")
        atomic_write_text(out / "index.html", _index(decks))
        for path in untagged:
            print(f"note: {path}: no cell tagged {TAG!r}; no slides", file=sys.stderr)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
