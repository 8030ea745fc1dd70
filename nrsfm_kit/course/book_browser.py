"""The book in a real browser: headless Chromium renders a few pages and checks MathJax and plotly drew.

Reuses the DevTools-over-a-pipe client of :mod:`nrsfm_kit.demo.browser` (and its :func:`find_chromium`,
:func:`region_problem`). :func:`check_book_pages` opens the landing page, the chapter with the most equations, the
chapter with the most 3D plotly figures and the one with the most figures overall (or the pages asked for), and per
page:

- waits for MathJax 2 to finish typesetting (its startup "End" hook, then an empty queue), asserts its output
  elements exist for every math container Sphinx wrote (``.math``), that no formula failed to parse
  (``.MathJax_Error`` / ``merror``) and that no raw ``\\(``, ``\\[``, ``$$`` or ``\\begin{`` is left in the visible
  text outside code blocks;
- waits for every plotly div to draw and asserts each has plotly's ``.main-svg`` (and a WebGL canvas per 3D scene),
  and that its screenshot region is not blank;
- saves ``<page>.png`` (the page, up to :data:`MAX_SHOT_HEIGHT` px tall) and ``report.json`` in the output folder.

Command line: ``python -m nrsfm_kit.course.book_browser build/book --out build/book-browser``.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from pathlib import Path

import numpy as np

from nrsfm_kit.demo.browser import _DevTools, find_chromium, region_problem

MAX_SHOT_HEIGHT = 16000  # CSS px; taller pages are checked whole, the screenshot shows their top

_BOOK_JS = r"""
(async () => {
  const t0 = performance.now();
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  const nMath = document.querySelectorAll('.math').length;
  let mathjax = 'absent';
  const typeset = () => Array.from(document.querySelectorAll('.math')).filter(el =>
      el.querySelector('.MathJax, .MathJax_Display, .MathJax_CHTML, .MathJax_SVG, mjx-container, .MathJax_Error, ' +
                       '.merror')).length;
  if (nMath) {
    // MathJax 2: isReady once its startup has run; then a callback queued behind the startup typeset; then every
    // .math element must hold MathJax output (or an error) -- polled, since the typeset of a long page is chunked
    while (!(window.MathJax && MathJax.isReady && MathJax.Hub) && performance.now() - t0 < TIMEOUT_MS)
      await sleep(50);
    if (window.MathJax && MathJax.isReady && MathJax.Hub) {
      mathjax = await Promise.race([new Promise(r => MathJax.Hub.Queue(() => r('done'))),
                                    sleep(Math.max(0, TIMEOUT_MS - (performance.now() - t0))).then(() => 'timeout')]);
      while (mathjax === 'done' && typeset() < nMath && performance.now() - t0 < TIMEOUT_MS) await sleep(100);
      if (typeset() < nMath) mathjax = 'timeout';
    } else {
      mathjax = 'not loaded';
    }
  }
  const figs = Array.from(document.querySelectorAll('.nrsfm-kit-plotly'));
  const sceneIds = gd => Object.keys(gd._fullLayout || {}).filter(k => /^scene\d*$/.test(k));
  const drawn = gd => !!(gd._fullLayout && gd.querySelector('.main-svg') &&
      sceneIds(gd).every(k => gd._fullLayout[k]._scene && gd._fullLayout[k]._scene.glplot));
  while (!figs.every(drawn) && performance.now() - t0 < TIMEOUT_MS) await sleep(100);
  for (let k = 0; k < 3; k++) await new Promise(r => requestAnimationFrame(() => r()));
  await sleep(300);
  // visible text outside code blocks (MathJax keeps the TeX in script tags, which are not text)
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {acceptNode: n => {
    for (let e = n.parentElement; e; e = e.parentElement) {
      const tag = e.tagName.toLowerCase();
      if (['script', 'style', 'pre', 'code', 'textarea', 'svg'].includes(tag) ||
          e.classList.contains('highlight') || e.classList.contains('MJX_Assistive_MathML'))
        return NodeFilter.FILTER_REJECT;
    }
    return NodeFilter.FILTER_ACCEPT; }});
  const raw = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const t = n.textContent;
    for (const m of ['\\(', '\\[', '$$', '\\begin{']) {
      const k = t.indexOf(m);
      if (k >= 0) raw.push(t.slice(Math.max(0, k - 40), k + 40).replace(/\s+/g, ' '));
    }
  }
  const box = el => { const b = el.getBoundingClientRect();
    return [b.left + window.scrollX, b.top + window.scrollY, b.width, b.height]; };
  const rendered = document.querySelectorAll('.math .MathJax, .math .MathJax_Display, .math .MathJax_CHTML, ' +
                                             '.math .MathJax_SVG, .math mjx-container');
  const mathWith = Array.from(document.querySelectorAll('.math')).filter(el =>
      el.querySelector('.MathJax, .MathJax_Display, .MathJax_CHTML, .MathJax_SVG, mjx-container')).length;
  return {
    math: nMath, math_rendered: mathWith, mathjax_elements: rendered.length, mathjax: mathjax,
    math_errors: Array.from(document.querySelectorAll('.MathJax_Error, .merror, [data-mjx-error]'))
        .map(e => (e.textContent || e.getAttribute('data-mjx-error') || '').slice(0, 80)),
    raw: raw.slice(0, 10),
    figures: figs.map(gd => ({id: gd.id, drawn: drawn(gd), box: box(gd), svg: !!gd.querySelector('.main-svg'),
      scenes: sceneIds(gd).length,
      webgl: sceneIds(gd).filter(k => { const s = gd._fullLayout[k]._scene; return s && s.glplot && s.glplot.gl; })
          .length})),
    height: document.documentElement.scrollHeight,
    seconds: (performance.now() - t0) / 1000,
  };
})()
"""


def _page_stats(html_dir: Path) -> dict:
    """Per chapter page: number of math containers, plotly figures, 3D figures (from the HTML text)."""
    stats = {}
    for page in sorted(html_dir.glob("*.html")):
        text = page.read_text(encoding="utf-8", errors="replace")
        stats[page.name] = {"math": text.count('class="math'), "figures": text.count('class="plotly-graph-div'),
                            "scenes": text.count('"type":"scatter3d"') + text.count('"type":"mesh3d"')
                            + text.count('"type":"surface"') + text.count('"type":"cone"')}
    return stats


def pick_pages(out_dir: str | Path) -> list[str]:
    """The landing page, the chapter with the most equations, the one with the most 3D figures, and the one with
    the most figures (distinct pages; chapters from ``book.json``)."""
    out = Path(out_dir)
    manifest = json.loads((out / "book.json").read_text(encoding="utf-8"))
    chapters = [r["page"] for r in manifest["chapters"]]
    stats = _page_stats(out / "html")
    stats = {k: v for k, v in stats.items() if k in chapters}
    pages = ["index.html"]
    for key in ("math", "scenes", "figures"):
        ranked = sorted(stats, key=lambda p: -stats[p][key])
        for p in ranked:
            if stats[p][key] and p not in pages:
                pages.append(p)
                break
    return pages


def check_one(dt: _DevTools, page: Path, out: Path, width: int, timeout: float) -> dict:
    import cv2

    from nrsfm_kit.utils.io import atomic_write_bytes

    t0 = time.perf_counter()
    target = dt.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    sess = dt.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    dt.send("Page.enable", session=sess)
    dt.send("Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 1000, "deviceScaleFactor": 1, "mobile": False}, session=sess)
    dt.send("Page.navigate", {"url": page.resolve().as_uri()}, session=sess)
    dt.wait_event("Page.loadEventFired", time.monotonic() + timeout)
    height = int(dt.send("Runtime.evaluate", {"expression": "document.documentElement.scrollHeight",
                                             "returnByValue": True}, session=sess)["result"]["value"])
    shot_h = min(max(height, 200), MAX_SHOT_HEIGHT)
    # one tall viewport: every figure (up to the cap) is on screen when it draws
    dt.send("Emulation.setDeviceMetricsOverride",
            {"width": width, "height": shot_h, "deviceScaleFactor": 1, "mobile": False}, session=sess)
    js = _BOOK_JS.replace("TIMEOUT_MS", str(int(1000 * timeout / 2)))
    res = dt.send("Runtime.evaluate", {"expression": js, "awaitPromise": True, "returnByValue": True}, session=sess)
    if "exceptionDetails" in res:
        raise RuntimeError(f"chromium: the check script failed on {page.name}: {res['exceptionDetails']}")
    r = res["result"]["value"]
    shot = dt.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False}, session=sess)["data"]
    dt.send("Target.closeTarget", {"targetId": target})
    png = base64.b64decode(shot)
    shot_path = out / (page.stem + ".png")
    atomic_write_bytes(shot_path, png)
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    problems = []
    name = page.name
    if r["math"]:
        if r["mathjax"] != "done":
            problems.append(f"{name}: MathJax did not finish ({r['mathjax']})")
        if r["math_rendered"] < r["math"]:
            problems.append(f"{name}: MathJax rendered {r['math_rendered']} of {r['math']} math containers")
    for e in r["math_errors"]:
        problems.append(f"{name}: MathJax could not typeset a formula: {e!r}")
    for t in r["raw"]:
        problems.append(f"{name}: raw LaTeX visible: ...{t}...")
    for f in r["figures"]:
        if not f["drawn"] or not f["svg"]:
            problems.append(f"{name}: plotly figure {f['id']} did not draw (no .main-svg)")
        if f["webgl"] < f["scenes"]:
            problems.append(f"{name}: plotly figure {f['id']}: {f['scenes'] - f['webgl']} of {f['scenes']} 3D scenes "
                            "without a WebGL canvas")
        x, y, w, h = (int(round(v)) for v in f["box"])
        if w < 10 or h < 10:
            problems.append(f"{name}: plotly figure {f['id']} has an empty box {f['box']}")
        elif y + h <= img.shape[0]:  # inside the screenshot: it must not be blank
            msg = region_problem(img[max(y, 0): y + h, max(x, 0): x + w], f"plotly figure {f['id']}")
            if msg:
                problems.append(f"{name}: {msg}")
    return {"page": str(page), "screenshot": str(shot_path), "seconds": round(time.perf_counter() - t0, 1),
            "height": r["height"], "math": r["math"], "math_rendered": r["math_rendered"],
            "figures": len(r["figures"]), "figures_drawn": sum(f["drawn"] for f in r["figures"]),
            "problems": problems}


def check_book_pages(out_dir: str | Path, shots_dir: str | Path = "build/book-browser", pages: list[str] | None = None,
                     *, width: int = 1200, timeout: float = 120.0, chromium: str | None = None) -> dict:
    """Render ``pages`` (default :func:`pick_pages`) of the book in ``out_dir`` in headless Chromium; screenshots and
    ``report.json`` into ``shots_dir``. Returns the report: ``{"pages": [...], "problems": [...]}``.

    Raises:
        FileNotFoundError: the book, a page or the browser is missing.
    """
    from nrsfm_kit.utils.io import atomic_write_text

    out = Path(out_dir)
    html_dir = out / "html"
    if not (out / "book.json").is_file():
        raise FileNotFoundError(f"out_dir: {out / 'book.json'} does not exist (not a built book)")
    pages = pages or pick_pages(out)
    paths = [html_dir / p for p in pages]
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"pages: {p} does not exist")
    exe = chromium or find_chromium()
    if not exe:
        raise FileNotFoundError("chromium: no browser found (set NRSFM_KIT_CHROMIUM or install Debian's chromium)")
    shots = Path(shots_dir)
    shots.mkdir(parents=True, exist_ok=True)
    dt = _DevTools(exe, width, timeout)
    try:
        reports = [check_one(dt, p, shots, width, timeout) for p in paths]
    finally:
        dt.close()
    report = {"book": str(out), "pages": reports, "problems": [q for r in reports for q in r["problems"]]}
    atomic_write_text(shots / "report.json", json.dumps(report, indent=2))
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nrsfm_kit.course.book_browser",
                                 description="Render a few pages of the book in headless Chromium and check them.")
    ap.add_argument("book", nargs="?", default="build/book", help="the book's --out folder (default build/book)")
    ap.add_argument("--out", default="build/book-browser", help="screenshots folder (default build/book-browser)")
    ap.add_argument("--page", action="append", default=None,
                    help="a page to check, e.g. 03_deformation_graph.html; repeatable (default: the landing page and "
                         "the chapters with the most equations, 3D figures and figures)")
    args = ap.parse_args(argv)
    rep = check_book_pages(args.book, args.out, args.page)
    for r in rep["pages"]:
        print(f"{'ok ' if not r['problems'] else 'BAD'} {Path(r['page']).name}: {r['math_rendered']}/{r['math']} "
              f"formulas, {r['figures_drawn']}/{r['figures']} figures, {r['seconds']:.1f} s  {r['screenshot']}")
        for p in r["problems"]:
            print(f"      {p}")
    return 1 if rep["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
