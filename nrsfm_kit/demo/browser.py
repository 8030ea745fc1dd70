"""Render a demo page in headless Chromium and check that every plotly figure drew.

Drives the browser through the DevTools protocol over a pipe (``--remote-debugging-pipe``: JSON messages
separated by NUL bytes on file descriptors 3 and 4), so nothing beyond the standard library and OpenCV (to
read the screenshots) is needed. :func:`check_page` loads the page, waits for plotly to draw every figure,
takes one screenshot of the whole page and checks, per figure:

- the figure has a non-empty box and every plot area in it (cartesian subplot, 3D scene) shows more than
  one colour (a blank or constant panel fails: e.g. an image clipped to white);
- every 3D scene has a canvas with a WebGL context;
- titles, subplot titles, the legend, colour bars, sliders, buttons and the toolbar (which plotly shows on
  hover; the screenshots show it where it would appear) do not overlap, and stay inside the figure.

Command line: ``python -m nrsfm_kit.demo.browser build/demo/index.html --out build/demo-browser`` writes
``page.png``, one ``<section>_<k>.png`` per figure and ``report.json``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import select
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["find_chromium", "check_page", "PageReport", "FigureReport"]

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
ENV_VAR = "NRSFM_KIT_CHROMIUM"
FLAGS_VAR = "NRSFM_KIT_CHROMIUM_FLAGS"  # extra command-line flags (e.g. "--use-gl=egl" on a machine with a GPU)


def find_chromium() -> str | None:
    """The Chromium / Chrome executable: ``$NRSFM_KIT_CHROMIUM``, else the first of :data:`CHROMIUM_NAMES` on PATH."""
    env = os.environ.get(ENV_VAR)
    if env:
        return env if Path(env).exists() else shutil.which(env)
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


_TRAMPOLINE = (
    "import os, sys\n"
    "a, b = int(sys.argv[1]), int(sys.argv[2])\n"
    "b = os.dup(b) if b == 3 else b\n"
    "os.dup2(a, 3); os.dup2(b, 4)\n"
    "[os.close(fd) for fd in {a, b} - {3, 4}]\n"
    "os.execv(sys.argv[3], sys.argv[3:])\n"
)


class _DevTools:
    """A minimal DevTools-protocol client over ``--remote-debugging-pipe``."""

    def __init__(self, exe: str, width: int, timeout: float):
        self.timeout = timeout
        self._id = 0
        self._buf = b""
        self.events: list[dict] = []
        cmd_r, self._cmd_w = os.pipe()  # we write commands, the browser reads fd 3
        self._res_r, res_w = os.pipe()  # the browser writes fd 4, we read
        self._profile = tempfile.mkdtemp(prefix="nrsfm-chromium-")
        flags = ["--headless=new", "--remote-debugging-pipe", "--no-first-run", "--no-default-browser-check",
                 "--disable-extensions", "--disable-background-networking", "--disable-sync", "--mute-audio",
                 "--hide-scrollbars", "--disable-dev-shm-usage", "--use-angle=swiftshader",
                 "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist", "--enable-webgl",
                 # software raster and compositing: only WebGL goes through SwiftShader (2x faster page loads)
                 "--disable-gpu-rasterization", "--disable-gpu-compositing",
                 "--disable-breakpad", "--disable-crash-reporter",
                 f"--window-size={width},1000", f"--user-data-dir={self._profile}"]
        flags += shlex.split(os.environ.get(FLAGS_VAR, ""))
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            flags.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
        # a small trampoline puts our pipe ends on the descriptors the protocol uses (3: commands in, 4: results
        # out), then becomes the browser (a shell's `3<&N` cannot name descriptors above 9 in dash)
        self.proc = subprocess.Popen([sys.executable, "-S", "-c", _TRAMPOLINE, str(cmd_r), str(res_w), exe, *flags,
                                      "about:blank"],
                                     pass_fds=(cmd_r, res_w), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(cmd_r)
        os.close(res_w)

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"chromium: no DevTools reply within {self.timeout:.0f} s")
            ready, _, _ = select.select([self._res_r], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._res_r, 1 << 20)
            if not chunk:
                err = self.proc.stderr.read().decode(errors="replace")[-2000:] if self.proc.stderr else ""
                raise RuntimeError(f"chromium: the browser closed the DevTools pipe (exit {self.proc.poll()}): {err}")
            self._buf += chunk
        msg, _, self._buf = self._buf.partition(b"\0")
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send one command and return its result (events that arrive meanwhile are kept in ``events``)."""
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"chromium: {method} failed: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, deadline: float) -> dict:
        while True:
            for k, ev in enumerate(self.events):
                if ev.get("method") == method:
                    return self.events.pop(k)
            self.events.append(self._read_message(deadline))

    def close(self) -> None:
        try:
            os.write(self._cmd_w, json.dumps({"id": self._id + 1, "method": "Browser.close"}).encode() + b"\0")
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._cmd_w, self._res_r):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self._profile, ignore_errors=True)


# Waits until plotly has drawn every figure (layout computed, every 3D scene with its WebGL plot), then for
# two more animation frames; returns the boxes (page coordinates, CSS px) of every figure, plot area and
# layout element to check.
_MEASURE_JS = r"""
(async () => {
  const figs = Array.from(document.querySelectorAll('.js-plotly-plot'));
  const sceneIds = gd => Object.keys(gd._fullLayout || {}).filter(k => /^scene\d*$/.test(k));
  const drawn = gd => gd._fullLayout && gd.querySelector('.main-svg') &&
      sceneIds(gd).every(k => gd._fullLayout[k]._scene && gd._fullLayout[k]._scene.glplot);
  const t0 = performance.now();
  while (!figs.every(drawn) && performance.now() - t0 < TIMEOUT_MS) {
    await new Promise(r => setTimeout(r, 100));
  }
  for (let k = 0; k < 3; k++) await new Promise(r => requestAnimationFrame(() => r()));
  await new Promise(r => setTimeout(r, SETTLE_MS));
  const box = el => { const b = el.getBoundingClientRect();
    return [b.left + window.scrollX, b.top + window.scrollY, b.width, b.height]; };
  const boxes = (gd, sel, kind) => Array.from(gd.querySelectorAll(sel))
      .filter(el => { const b = el.getBoundingClientRect(); return b.width > 0 && b.height > 0 &&
                      getComputedStyle(el).display !== 'none'; })
      .map(el => ({kind: kind, box: box(el), text: (el.textContent || '').trim().slice(0, 60)}));
  return figs.map(gd => {
    const wrap = gd.closest('.figure');
    const scenes = sceneIds(gd).map(k => {
      const sc = gd._fullLayout[k]._scene;
      const canvas = sc && sc.glplot && sc.glplot.canvas ? sc.glplot.canvas : gd.querySelector('canvas');
      const gl = sc && sc.glplot ? sc.glplot.gl : null;
      const d = gd._fullLayout[k].domain, s = gd._fullLayout._size;
      const g = box(gd);
      return {kind: 'scene', id: k, canvas: !!canvas,
              webgl: !!gl && (typeof WebGLRenderingContext !== 'undefined' && gl instanceof WebGLRenderingContext ||
                              typeof WebGL2RenderingContext !== 'undefined' && gl instanceof WebGL2RenderingContext),
              box: [g[0] + s.l + d.x[0] * s.w, g[1] + s.t + (1 - d.y[1]) * s.h,
                    (d.x[1] - d.x[0]) * s.w, (d.y[1] - d.y[0]) * s.h]};
    });
    return {
      section: wrap ? wrap.dataset.section : '', index: wrap ? Number(wrap.dataset.index) : -1,
      drawn: !!drawn(gd), box: box(gd),
      title: (t => typeof t === 'string' ? t : (t && t.text) || '')((gd.layout || {}).title),
      plots: boxes(gd, '.draglayer .nsewdrag', 'plot area'),
      scenes: scenes,
      layout: [].concat(boxes(gd, '.gtitle', 'title'), boxes(gd, '.annotation', 'subplot title'),
                        boxes(gd, '.legend', 'legend'), boxes(gd, '.colorbar', 'colour bar'),
                        boxes(gd, '.slider-container', 'slider'), boxes(gd, '.updatemenu-container', 'buttons'),
                        boxes(gd, '.xtitle, .ytitle', 'axis title')),
      // the toolbar appears on hover: shown here, so that the screenshot shows where it would cover the figure
      modebar: (() => { const m = gd.querySelector('.modebar'); if (!m) return null;
        m.style.opacity = 1; m.style.transition = 'none'; const b = box(m); return b[2] > 0 ? b : null; })(),
    };
  });
})()
"""


@dataclass
class FigureReport:
    """What :func:`check_page` found for one figure (``problems`` empty when it drew correctly)."""

    section: str
    index: int
    title: str
    box: list
    image: str = ""
    scenes: int = 0  # 3D scenes in the figure (each checked for a WebGL canvas)
    plots: int = 0  # 2D plot areas (cartesian subplots)
    problems: list = field(default_factory=list)


@dataclass
class PageReport:
    """The figures of one page, the screenshot paths and the problems (empty when every figure drew)."""

    page: str
    screenshot: str
    figures: list
    seconds: float

    @property
    def problems(self) -> list[str]:
        return [f"{f.section}[{f.index}] {f.title!r}: {p}" for f in self.figures for p in f.problems]


def _intersect(a, b, tol: float = 1.0) -> bool:
    return (min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]) > tol and
            min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]) > tol)


def _inside(inner, outer, tol: float = 1.0) -> bool:
    return (inner[0] >= outer[0] - tol and inner[1] >= outer[1] - tol and
            inner[0] + inner[2] <= outer[0] + outer[2] + tol and inner[1] + inner[3] <= outer[1] + outer[3] + tol)


def _crop(img: np.ndarray, box) -> np.ndarray:
    x, y, w, h = (int(round(v)) for v in box)
    return img[max(y, 0): max(y + h, 0), max(x, 0): max(x + w, 0)]


def region_problem(img: np.ndarray, what: str, min_fraction: float = 0.002) -> str | None:
    """Why a screenshot region (H, W, 3) uint8 does not show a drawing, or None when it does.

    A region is blank when it has no pixels, or when fewer than ``min_fraction`` of them differ (by more than
    8 grey levels in some channel) from its most common colour, e.g. a panel clipped to white.
    """
    if img.size == 0:
        return f"{what}: empty region"
    px = img.reshape(-1, img.shape[-1]).astype(np.int16)
    colours, counts = np.unique(px, axis=0, return_counts=True)
    mode = colours[counts.argmax()]
    frac = float((np.abs(px - mode).max(-1) > 8).mean())
    if frac < min_fraction:
        return f"{what}: constant image (only {100 * frac:.2f} % of its pixels differ from rgb{tuple(mode.tolist())})"
    return None


def check_page(page: str | Path, out_dir: str | Path, *, width: int = 1200, timeout: float = 90.0,
               chromium: str | None = None) -> PageReport:
    """Render ``page`` (an HTML file) in headless Chromium; screenshots and ``report.json`` into ``out_dir``.

    Raises:
        FileNotFoundError: the page or the browser is missing (``chromium`` / ``$NRSFM_KIT_CHROMIUM``).
    """
    import cv2

    page = Path(page).resolve()
    if not page.is_file():
        raise FileNotFoundError(f"page: {page} does not exist")
    exe = chromium or find_chromium()
    if not exe:
        raise FileNotFoundError(f"chromium: no browser found (tried ${ENV_VAR} and {', '.join(CHROMIUM_NAMES)}); "
                                "install Debian's chromium (apt-get install chromium)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    dt = _DevTools(exe, width, timeout)
    try:
        target = dt.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        sess = dt.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        dt.send("Page.enable", session=sess)
        dt.send("Emulation.setDeviceMetricsOverride",
                {"width": width, "height": 1000, "deviceScaleFactor": 1, "mobile": False}, session=sess)
        dt.send("Page.navigate", {"url": page.as_uri()}, session=sess)
        dt.wait_event("Page.loadEventFired", time.monotonic() + timeout)
        js = _MEASURE_JS.replace("TIMEOUT_MS", str(int(1000 * timeout / 2))).replace("SETTLE_MS", "300")
        # the whole page in one viewport (no scrolling: every WebGL scene is on screen when it draws)
        height = int(dt.send("Runtime.evaluate", {"expression": "document.documentElement.scrollHeight",
                                                 "returnByValue": True}, session=sess)["result"]["value"])
        dt.send("Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=sess)
        res = dt.send("Runtime.evaluate", {"expression": js, "awaitPromise": True, "returnByValue": True},
                      session=sess)
        if "exceptionDetails" in res:
            raise RuntimeError(f"chromium: the page script failed: {res['exceptionDetails']}")
        figs = res["result"]["value"]
        shot = dt.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False},
                       session=sess)["data"]
    finally:
        dt.close()
    png = base64.b64decode(shot)
    from nrsfm_kit.utils.io import atomic_write_bytes, atomic_write_text

    atomic_write_bytes(out / "page.png", png)
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]  # RGB

    reports = []
    counter: dict[str, int] = {}
    for f in figs:
        name = f["section"] or "figure"
        k = counter.get(name, 0)
        counter[name] = k + 1
        rep = FigureReport(name, f["index"] if f["index"] >= 0 else k, f["title"], f["box"],
                           scenes=len(f["scenes"]), plots=len(f["plots"]))
        crop = _crop(img, f["box"])
        path = out / f"{name}_{rep.index}.png"
        if crop.size:
            ok, enc = cv2.imencode(".png", np.ascontiguousarray(crop[..., ::-1]))
            if not ok:
                raise RuntimeError(f"{path}: OpenCV could not encode the figure crop {crop.shape} as PNG")
            atomic_write_bytes(path, enc.tobytes())
            rep.image = str(path)
        p = rep.problems
        if not f["drawn"]:
            p.append("plotly did not finish drawing")
        if f["box"][2] < 10 or f["box"][3] < 10:
            p.append(f"empty figure box {f['box']}")
        if not f["plots"] and not f["scenes"]:
            p.append("no plot area and no 3D scene")
        for a in f["plots"]:
            msg = region_problem(_crop(img, a["box"]), "plot area")
            if msg:
                p.append(msg)
        for s in f["scenes"]:
            if not s["canvas"]:
                p.append(f"3D {s['id']}: no canvas")
            if not s["webgl"]:
                p.append(f"3D {s['id']}: no WebGL context")
            msg = region_problem(_crop(img, s["box"]), f"3D {s['id']}")
            if msg:
                p.append(msg)
        items = list(f["layout"])
        if f["modebar"]:
            items.append({"kind": "toolbar", "box": f["modebar"], "text": ""})
        for it in items:
            if not _inside(it["box"], f["box"]):
                p.append(f"{it['kind']} {it['text']!r} sticks out of the figure ({it['box']} vs {f['box']})")
        for i, a in enumerate(items):
            for b in items[i + 1:]:
                if a["kind"] == b["kind"] == "axis title":
                    continue
                if _intersect(a["box"], b["box"]):
                    p.append(f"{a['kind']} {a['text']!r} overlaps {b['kind']} {b['text']!r}")
        reports.append(rep)
    report = PageReport(str(page), str(out / "page.png"), reports, time.perf_counter() - t0)
    text = {"page": report.page, "screenshot": report.screenshot, "seconds": round(report.seconds, 1),
            "problems": report.problems, "figures": [vars(r) for r in reports]}
    atomic_write_text(out / "report.json", json.dumps(text, indent=2))
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nrsfm_kit.demo.browser",
                                 description="Render a demo page in headless Chromium and check every figure.")
    ap.add_argument("page", help="the HTML page (e.g. build/demo/index.html)")
    ap.add_argument("--out", default="build/demo-browser", help="folder for screenshots (default build/demo-browser)")
    ap.add_argument("--width", type=int, default=1200, help="viewport width in CSS px (default 1200)")
    args = ap.parse_args(argv)
    rep = check_page(args.page, args.out, width=args.width)
    for f in rep.figures:
        print(f"{'ok ' if not f.problems else 'BAD'} {f.section}[{f.index}] {f.title[:70]}  {f.image}")
        for msg in f.problems:
            print(f"      {msg}")
    print(f"{len(rep.figures)} figures, {len(rep.problems)} problems, {rep.seconds:.1f} s; screenshots in {args.out}")
    return 1 if rep.problems else 0


if __name__ == "__main__":
    sys.exit(main())
