"""The book's landing page: what the suite teaches, the paper behind each chapter, the prerequisites graph between
the notebooks (an inline SVG drawn here, no JavaScript, no CDN) and the estimated time of each notebook at teaching
size on a laptop CPU and on a GPU (from ``benchmarks/results/notebook_times.json``).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

# the paper (or topic) behind each chapter, keyed by the notebook's two-digit number
PAPERS: dict[str, str] = {
    "00": "Tour of the suite (the five papers, the package layout)",
    "01": "Geometry primer: pinhole / orthographic cameras, SO(3), Procrustes, EDMs",
    "02": "Datasets: synthetic ground truth; CMU mocap, DeepDeform, Sintel, VolumeDeform, NRSfM .mat formats",
    "03": "Božič, Palafox et al., *Neural Non-Rigid Tracking*, NeurIPS 2020 (embedded deformation graph, "
          "Sumner et al. 2007)",
    "04": "Božič, Palafox et al., *Neural Non-Rigid Tracking*, NeurIPS 2020 (differentiable Gauss-Newton, App. B)",
    "05": "Božič, Palafox et al., *Neural Non-Rigid Tracking*, NeurIPS 2020 (learned correspondences and weights)",
    "06": "Božič et al., *DeepDeform: Learning Non-rigid RGB-D Reconstruction with Semi-supervised Data*, CVPR 2020",
    "07": "Newcombe, Fox, Seitz, *DynamicFusion*, CVPR 2015, as used by DeepDeform (CVPR 2020) and Neural "
          "Non-Rigid Tracking (NeurIPS 2020)",
    "08": "Classical NRSfM: Tomasi-Kanade factorisation (IJCV 1992); EM-PPCA, Torresani et al. (TPAMI 2008); msr "
          "of PR-RRN",
    "09": "Kong & Lucey, *Deep Non-Rigid Structure from Motion*, ICCV 2019",
    "10": "Zeng et al., *PR-RRN: Pairwise-Regularized Residual-Recursive Networks for NRSfM*, ICCV 2021",
    "11": "Takmaz et al., *Unsupervised Monocular Depth Reconstruction of Non-Rigid Scenes*, 3DV 2021 (EDM priors)",
    "12": "Takmaz et al., *Unsupervised Monocular Depth Reconstruction of Non-Rigid Scenes*, 3DV 2021 (networks, "
          "test-time training)",
    "13": "NVIDIA Warp kernels and their torch autograd bridge (the suite's hot loops)",
}

# prerequisites: (before, after) = "read `before` first"; what each notebook builds on conceptually (transitive
# edges left out: 00 -> 03 follows from 00 -> 01 -> 02 -> 03)
PREREQUISITES: tuple[tuple[str, str], ...] = (
    ("00", "01"), ("01", "02"),
    ("02", "03"), ("03", "04"), ("04", "05"),  # graph -> solver -> learned tracking
    ("02", "06"), ("04", "06"),  # DeepDeform data; its learned term enters the solver of 04
    ("03", "07"), ("04", "07"),  # fusion: warp field + tracker
    ("02", "08"), ("08", "09"), ("09", "10"),  # NRSfM line (msr of 08 reused by 10)
    ("01", "11"), ("11", "12"),  # EDMs of the primer -> EDM priors -> unsupervised depth
    ("03", "13"), ("04", "13"), ("11", "13"),  # the kernels of the warp field, the solver, the EDM loss
)

TEACHES = (
    "nrsfm-kit teaches non-rigid 3D reconstruction: recovering the shape and motion of things that deform (cloth, "
    "faces, bodies, hands) from RGB-D or monocular video. Each chapter is one notebook that derives a paper's "
    "equations, imports the package function that implements them next to a short readable torch version, runs an "
    "experiment with interactive 3D figures and ends with exercises. The chapters follow three lines: RGB-D "
    "non-rigid tracking and fusion (embedded deformation graph, differentiable Gauss-Newton, Neural Non-Rigid "
    "Tracking, DeepDeform, DynamicFusion), non-rigid structure from motion (classical factorisation, Deep NRSfM, "
    "PR-RRN) and unsupervised monocular depth of non-rigid scenes (EDM priors); a last chapter opens up the NVIDIA "
    "Warp kernels behind the hot loops."
)


def format_seconds(s: float) -> str:
    """``75.2`` -> ``"1 min 15 s"``; ``12.9`` -> ``"13 s"``; ``3700`` -> ``"1 h 2 min"``."""
    s = float(s)
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        m, r = divmod(int(round(s)), 60)
        return f"{m} min {r} s" if r else f"{m} min"
    h, r = divmod(int(round(s)), 3600)
    return f"{h} h {r // 60} min"


def load_times(path: str | Path) -> list[dict]:
    """The rows of ``notebook_times.json`` (``[]`` when the file does not exist).

    Raises:
        ValueError: the file is not a JSON list of objects.
    """
    path = Path(path)
    if not path.is_file():
        return []
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: expected a JSON list of timing rows, found invalid JSON ({e})") from e
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"{path}: expected a JSON list of objects, found {type(rows).__name__}")
    return rows


def time_estimate(rows: list[dict], stem: str, device: str) -> str:
    """The teaching-size time of notebook ``stem`` on ``device`` ("cpu": CPU time, "cuda": wall time), or
    "not measured"; the latest row wins."""
    match = [r for r in rows if r.get("notebook") == stem and r.get("size") == "teaching" and r.get("device") == device]
    if not match:
        return "not measured"
    r = sorted(match, key=lambda r: str(r.get("date", "")))[-1]
    key = "cpu_s" if device == "cpu" else "wall_s"
    value = r.get(key, r.get("wall_s"))
    if value is None:
        return "not measured"
    text = format_seconds(value)
    if not r.get("ok", True):
        return f"did not finish (stopped after {text})"
    return text


def _wrap(text: str, width: int, max_lines: int) -> list[str]:
    """``text`` in at most ``max_lines`` lines of at most ``width`` characters (words kept whole where they fit;
    the last line ends with an ellipsis when text is left over)."""
    words, lines, cur = text.split(), [], ""
    for k, w in enumerate(words):
        if len(cur) + len(w) + (1 if cur else 0) <= width:
            cur = f"{cur} {w}" if cur else w
            continue
        if cur:
            lines.append(cur)
        cur = w
        if len(lines) == max_lines - 1:
            rest = " ".join([w, *words[k + 1:]])
            lines.append(rest if len(rest) <= width else rest[: width - 1].rstrip() + "…")
            return lines
    if cur:
        lines.append(cur if len(cur) <= width else cur[: width - 1] + "…")
    return lines


def prerequisites_svg(chapters: list[tuple[str, str, str]], edges=PREREQUISITES) -> str:
    """An inline SVG of the prerequisites graph: one box per chapter ``(number, stem, short title)``, linked to its
    page, laid out left to right by the longest chain of prerequisites before it."""
    numbers = [c[0] for c in chapters]
    present = set(numbers)
    edges = [(a, b) for a, b in edges if a in present and b in present]
    layer = {n: 0 for n in numbers}
    for _ in range(len(numbers)):  # longest-path layering (the graph is a DAG)
        for a, b in edges:
            layer[b] = max(layer[b], layer[a] + 1)
    columns: dict[int, list[str]] = {}
    for n in numbers:
        columns.setdefault(layer[n], []).append(n)
    bw, bh, gx, gy, pad = 124, 44, 26, 12, 10
    rows = max(len(v) for v in columns.values()) if columns else 1
    width = pad * 2 + len(columns) * bw + (len(columns) - 1) * gx
    height = pad * 2 + rows * bh + (rows - 1) * gy
    pos = {}
    for col, members in columns.items():
        top = pad + (height - 2 * pad - (len(members) * bh + (len(members) - 1) * gy)) / 2
        for k, n in enumerate(members):
            pos[n] = (pad + col * (bw + gx), top + k * (bh + gy))
    title = {c[0]: c[2] for c in chapters}
    stem = {c[0]: c[1] for c in chapters}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="nrsfm-kit-prereq-graph" '
           f'style="width:100%;max-width:{width}px;height:auto" viewBox="0 0 {width} {height:.0f}" role="img" '
           'aria-label="prerequisites between the notebooks">',
           '<defs><marker id="nrsfm-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#557"/></marker></defs>']
    for a, b in edges:
        (xa, ya), (xb, yb) = pos[a], pos[b]
        x0, y0, x1, y1 = xa + bw, ya + bh / 2, xb, yb + bh / 2
        mx = (x0 + x1) / 2
        out.append(f'<path d="M {x0:.1f} {y0:.1f} C {mx:.1f} {y0:.1f}, {mx:.1f} {y1:.1f}, {x1:.1f} {y1:.1f}" '
                   'fill="none" stroke="#557" stroke-width="1.3" marker-end="url(#nrsfm-arrow)"/>')
    for n in numbers:
        x, y = pos[n]
        label = html.escape(f"{n} {title[n]}")
        lines = _wrap(f"{n} {title[n]}", 19, 2)
        text = "".join(f'<tspan x="{x + bw / 2:.1f}" y="{y + bh / 2 + 4 + (k - (len(lines) - 1) / 2) * 14:.1f}">'
                       f"{html.escape(t)}</tspan>" for k, t in enumerate(lines))
        out.append(f'<a href="{html.escape(stem[n])}.html"><g><title>{label}</title>'
                   f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw}" height="{bh}" rx="6" fill="#eef3fb" '
                   'stroke="#35a" stroke-width="1.2"/>'
                   f'<text text-anchor="middle" font-family="sans-serif" font-size="12" fill="#123">{text}</text>'
                   '</g></a>')
    out.append("</svg>")
    return "\n".join(out)


def read_first(number: str, edges=PREREQUISITES) -> list[str]:
    """The notebooks to read before notebook ``number`` (direct prerequisites, in order)."""
    return sorted(a for a, b in edges if b == number)


def read_first_line(number: str, titles: dict[str, str], edges=PREREQUISITES) -> str:
    """The "Read first" line that opens notebook ``number`` (its first markdown cell), from the same graph as the
    landing page, with each prerequisite as ``NN · title`` (``titles``: number -> title of its heading)."""
    before = read_first(number, edges)
    missing = [n for n in before if n not in titles]
    if missing:
        raise ValueError(f"titles: expected a title for every prerequisite of {number}, found none for {missing}")
    if not before:
        return "**Read first:** nothing, start here."
    names = [f"{n} · {titles[n]}" for n in before]
    joined = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"**Read first:** {joined}."


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def landing_markdown(chapters: list[dict], times: list[dict], size: str, extra_pages: list[dict]) -> str:
    """The MyST source of ``index.md``. ``chapters``: ``{"number", "stem", "title"}`` per notebook, in order;
    ``extra_pages``: ``{"stem", "title"}`` of further chapters (the instructor guide)."""
    lines = ["# nrsfm-kit: the book", ""]
    if size == "smoke":
        lines += ['<div class="nrsfm-kit-book-banner"><b>Note.</b> This book was built at smoke size '
                  '(<code>NRSFM_KIT_SMOKE=1</code>): every notebook ran with shrunk sizes and iterations, so numbers '
                  'and figures need not match the text. Build it at teaching size with '
                  '<code>make book</code>.</div>', ""]
    lines += ["## What the suite teaches", "", TEACHES, "",
              "## Chapters", "",
              "Estimated time of each notebook at teaching size: CPU time on one laptop core and wall time on a GPU "
              "(measured by `benchmarks/notebook_times.py`; \"not measured\" where no measurement exists).", "",
              "| # | chapter | paper | read first | laptop CPU | GPU |", "|---|---|---|---|---|---|"]
    before: dict[str, list[str]] = {}
    present = {c["number"] for c in chapters}
    for a, b in PREREQUISITES:
        if a in present and b in present:
            before.setdefault(b, []).append(a)
    for c in chapters:
        n = c["number"]
        lines.append(f"| {n} | [{_md_cell(c['title'])}]({c['stem']}.ipynb) | {_md_cell(PAPERS.get(n, ''))} | "
                     f"{', '.join(before.get(n, [])) or '-'} | {time_estimate(times, c['stem'], 'cpu')} | "
                     f"{time_estimate(times, c['stem'], 'cuda')} |")
    for p in extra_pages:
        lines.append(f"| - | [{_md_cell(p['title'])}]({p['stem']}.md) | - | - | - | - |")
    svg = prerequisites_svg([(c["number"], c["stem"], c["short"]) for c in chapters])
    lines += ["", "## Prerequisites between the notebooks", "",
              "An arrow from A to B: read A before B (click a box to open its chapter).", "",
              '<div class="nrsfm-kit-prereq">', svg, "</div>", "",
              "```{toctree}", ":maxdepth: 1", ":caption: Chapters", ""]
    lines += [c["stem"] for c in chapters] + [p["stem"] for p in extra_pages]
    lines += ["```", ""]
    return "\n".join(lines)
