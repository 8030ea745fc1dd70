"""`nrsfm-kit demo`: every method on embedded synthetic data, a results table and an offline HTML page.

Each topic adds one module to :mod:`nrsfm_kit.demo.sections` defining ``ORDER`` (int, page order),
``TITLE`` (str) and ``run(smoke: bool) -> DemoSection``. Sections are discovered, run in order, their
rows printed as a table and their plotly figures written to ``<out>/index.html`` (plotly.js embedded
once, so the page works offline).
"""

from __future__ import annotations

import html
import importlib
import pkgutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from nrsfm_kit.utils.io import atomic_write_text


@dataclass
class DemoSection:
    """One section of the demo page: a title, result rows (name, value, target) and figures."""

    title: str
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    figures: list = field(default_factory=list)  # plotly.graph_objects.Figure
    text: str = ""
    passed: bool = True  # False when a row missed its target

    def add(self, name: str, value, target: str = "", ok: bool | None = None) -> None:
        """Add a result row; ``ok=False`` marks the section as having missed a target."""
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        self.rows.append((name, shown, target))
        if ok is False:
            self.passed = False


def discover_sections() -> list:
    """Import every module of :mod:`nrsfm_kit.demo.sections`, sorted by ``ORDER``."""
    from nrsfm_kit.demo import sections

    mods = []
    for info in pkgutil.iter_modules(sections.__path__):
        mod = importlib.import_module(f"{sections.__name__}.{info.name}")
        if hasattr(mod, "run"):
            mods.append(mod)
    return sorted(mods, key=lambda m: (getattr(m, "ORDER", 100), m.__name__))


def _table(results: list[tuple[DemoSection, float]]) -> str:
    lines = []
    for sec, seconds in results:
        status = "" if sec.passed else "  [MISSED A TARGET]"
        lines.append(f"== {sec.title} ({seconds:.1f} s){status}")
        for name, value, target in sec.rows:
            lines.append(f"   {name[:62]:<62} {value:>14}   {target}")
    return "\n".join(lines)


def _page(results: list[tuple[DemoSection, float]], smoke: bool) -> str:
    import plotly
    from plotly.offline import get_plotlyjs

    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>nrsfm-kit demo</title>",
        f"<script type='text/javascript'>{get_plotlyjs()}</script>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}"
        ".fail{color:#b00}</style></head><body>",
        "<h1>nrsfm-kit demo</h1>",
        f"<p>Embedded synthetic data with exact ground truth ({'smoke' if smoke else 'full'} size); "
        f"plotly {plotly.__version__}. Drag to rotate the 3D views.</p>",
    ]
    for sec, seconds in results:
        cls = "" if sec.passed else " class='fail'"
        parts.append(f"<h2{cls}>{html.escape(sec.title)}</h2>")
        if sec.text:
            parts.append(f"<p>{html.escape(sec.text)}</p>")
        if sec.rows:
            parts.append("<table><tr><th>result</th><th>value</th><th>target</th></tr>")
            for name, value, target in sec.rows:
                parts.append(
                    f"<tr><td>{html.escape(name)}</td><td>{html.escape(value)}</td>"
                    f"<td>{html.escape(target)}</td></tr>"
                )
            parts.append("</table>")
        parts.append(f"<p><small>{seconds:.1f} s</small></p>")
        for fig in sec.figures:
            parts.append(fig.to_html(full_html=False, include_plotlyjs=False))
    parts.append("</body></html>")
    return "\n".join(parts)


def run_demo(out_dir: str | Path = "build/demo", smoke: bool = False, only: list[str] | None = None) -> int:
    """Run the demo sections, print the table, write ``<out_dir>/index.html``. Returns an exit code."""
    mods = discover_sections()
    if only:
        known = {m.__name__.rsplit(".", 1)[-1] for m in mods}
        unknown = sorted(set(only) - known)
        if unknown:
            raise ValueError(f"section: expected one of {sorted(known)}, found {unknown}")
        mods = [m for m in mods if m.__name__.rsplit(".", 1)[-1] in only]
    results, failed = [], []
    for mod in tqdm(mods, desc="demo", unit="section"):
        t0 = time.perf_counter()
        try:
            sec = mod.run(smoke=smoke)
        except Exception as exc:  # a broken section is reported, the others still run
            traceback.print_exc()
            sec = DemoSection(title=getattr(mod, "TITLE", mod.__name__), passed=False)
            sec.add("error", f"{type(exc).__name__}: {exc}"[:200])
        results.append((sec, time.perf_counter() - t0))
        if not sec.passed:
            failed.append(sec.title)
    print(_table(results))
    out = Path(out_dir)
    page = atomic_write_text(out / "index.html", _page(results, smoke))
    print(f"\nwrote {page} ({page.stat().st_size / 1e6:.1f} MB); open it in a browser (works offline)")
    if failed:
        print(f"sections that missed a target or failed: {failed}")
        return 1
    return 0
