"""Reliability report: kill points survived per training entry point, bad inputs per loader, property tests run.

    .venv/bin/python benchmarks/reliability.py                 # everything (~15 min on 2 CPU cores)
    .venv/bin/python benchmarks/reliability.py --skip-kills    # bad inputs and property tests only (~1 min)

Writes ``benchmarks/results/reliability.json`` and prints the Markdown tables pasted into benchmarks/RESULTS.md.

- Kill points: every entry point of ``tests/reliability/_harness.py`` (the CLI commands at tiny sizes) is run
  uninterrupted, then once per kill point with SIGKILL armed there (``NRSFM_KIT_FAULT``, see
  :mod:`nrsfm_kit.utils.faults`) and once more with the same command; "survived" = the fault fired, the second run
  ended with exit 0 and every final checkpoint / model file and the JSON result equal the uninterrupted run's, bit
  for bit, with no temporary file left. This list is longer than the one CI runs (tests/reliability/test_kill_*).
- Bad inputs: every case of ``tests/reliability/test_bad_inputs.py`` (CASES), run as the test does; outcome per
  loader group.
- Property tests: ``tests/reliability/test_properties.py`` under pytest with hypothesis statistics; the examples
  each property ran.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REL = ROOT / "tests" / "reliability"

KILL_POINTS = {
    "nrsfm-dnrsfm": ["step@1", "step@12", "saved@1", "write:checkpoint.pt@2"],
    "nrsfm-prrrn": ["step@1", "step@10", "saved@1", "write:checkpoint.pt@2"],
    "nrsfm-prrrn-restarts": ["step@1", "saved@2", "stage@1", "write:checkpoint.pt@3"],
    "depth-fit": ["step@1", "saved@2", "write:checkpoint.pt@4", "stage@1", "stage@2"],
    "track-train": ["step@1", "saved@3", "write:checkpoint.pt@3", "stage@1", "stage@2"],
    "match-train": ["step@2", "saved@1", "write:checkpoint.pt@2", "stage@1"],
}
WHEN = {"step": "before a step", "saved": "right after a checkpoint", "write": "mid-write of a checkpoint",
        "stage": "between stages"}


def _module(path: Path, name: str):
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # (dataclasses of the module look themselves up there)
    spec.loader.exec_module(mod)
    return mod


def kill_points() -> list[dict]:
    from tqdm import tqdm

    from nrsfm_kit.utils.faults import kill_and_resume, state_differences

    h = _module(REL / "_harness.py", "_harness")
    rows = []
    total = sum(len(v) for v in KILL_POINTS.values())
    bar = tqdm(total=total, desc="kill points")
    for name, specs in KILL_POINTS.items():
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            ref = h.uninterrupted(name, Path(d) / "ref")
            t_ref = time.perf_counter() - t0
            for spec in specs:
                t0 = time.perf_counter()
                r = kill_and_resume(h.COMMANDS[name], spec, Path(d) / spec.replace(":", "_").replace("@", "_"))
                diffs = state_differences(ref, r["state"]) if r["returncode"] == 0 else ["resumed run failed"]
                rows.append({"entry point": name, "kill point": spec, "when": WHEN[spec.split(":")[0].split("@")[0]],
                             "fired": r["killed"], "resumed exit": r["returncode"], "differences": diffs,
                             "survived": bool(r["killed"] and r["returncode"] == 0 and not diffs),
                             "seconds": round(time.perf_counter() - t0, 1), "uninterrupted seconds": round(t_ref, 1)})
                bar.update()
    bar.close()
    return rows


def bad_inputs() -> list[dict]:
    import pytest

    mod = _module(REL / "test_bad_inputs.py", "test_bad_inputs")
    rows = []
    for case in mod.CASES:
        with tempfile.TemporaryDirectory() as d:
            outcome = "passed"
            try:
                mod.test_bad_input(case, Path(d))
            except (AssertionError, pytest.fail.Exception) as e:
                outcome = f"FAILED: {str(e).splitlines()[0][:120]}"
            except Exception as e:  # noqa: BLE001 (a wrong exception type is an outcome to report)
                outcome = f"FAILED: {type(e).__name__}: {str(e)[:120]}"
        rows.append({"loader": case.loader, "case": case.name, "outcome": outcome})
    return rows


def properties() -> list[dict]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-m", "pytest", str(REL / "test_properties.py"), "-q", "-p",
                          "no:cacheprovider", "--hypothesis-show-statistics", "-o", "addopts="],
                         capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    rows, current = [], None
    for line in res.stdout.splitlines():
        m = re.match(r"^tests/reliability/test_properties\.py::(\S+):", line.strip())
        if m:
            current = {"property": m.group(1), "examples": 0, "failing": 0}
            rows.append(current)
            continue
        m = re.search(r"(\d+) passing(?: examples?)?, (\d+) failing", line)
        if m and current is not None:
            current["examples"] += int(m.group(1))
            current["failing"] += int(m.group(2))
    summary = [ln for ln in res.stdout.splitlines() if re.search(r"\d+ (passed|failed)", ln)]
    return rows, (summary[-1].strip("= ") if summary else res.stdout[-300:]), res.returncode


def markdown(report: dict) -> str:
    out = [f"Machine: {report['machine']}, {report['date']}. Command: `.venv/bin/python benchmarks/reliability.py`.", ""]
    if report.get("kills"):
        out += ["#### Kill points (SIGKILL, then the same command again; survived = bit-identical final files)", "",
                "| entry point | kill points tried | fired | survived | points |", "|---|---:|---:|---:|---|"]
        by = defaultdict(list)
        for r in report["kills"]:
            by[r["entry point"]].append(r)
        for name, rs in by.items():
            pts = ", ".join(f"{r['kill point']}{'' if r['survived'] else ' (NOT survived)'}" for r in rs)
            out.append(f"| {name} | {len(rs)} | {sum(r['fired'] for r in rs)} | {sum(r['survived'] for r in rs)} | "
                       f"{pts} |")
        out.append("")
    out += ["#### Bad inputs (clear error naming the file/argument, expected vs found, no partial output)", "",
            "| loader / entry point | cases | passed |", "|---|---:|---:|"]
    by = defaultdict(list)
    for r in report["bad_inputs"]:
        by[r["loader"]].append(r)
    for name, rs in sorted(by.items()):
        out.append(f"| {name} | {len(rs)} | {sum(r['outcome'] == 'passed' for r in rs)} |")
    n = len(report["bad_inputs"])
    out += [f"| **all** | **{n}** | **{sum(r['outcome'] == 'passed' for r in report['bad_inputs'])}** |", "",
            "#### Property tests (hypothesis)", "", "| property | examples run | failing |", "|---|---:|---:|"]
    for r in report["properties"]:
        out.append(f"| {r['property']} | {r['examples']} | {r['failing']} |")
    out += [f"| **{len(report['properties'])} properties** | **{sum(r['examples'] for r in report['properties'])}** "
            f"| **{sum(r['failing'] for r in report['properties'])}** |", "", f"pytest: {report['properties_summary']}"]
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-kills", action="store_true", help="no kill-and-resume runs (the slow part)")
    ap.add_argument("--kills-from", default=None,
                    help="with --skip-kills: take the kill-point rows of an earlier report JSON (they take ~20 min)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "reliability.json"))
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("NRSFM_KIT_SMOKE", "1")
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}",
              "date": time.strftime("%Y-%m-%d")}
    report["bad_inputs"] = bad_inputs()
    report["properties"], report["properties_summary"], prc = properties()
    if not args.skip_kills:
        report["kills"] = kill_points()
    elif args.kills_from:
        earlier = json.loads(Path(args.kills_from).read_text())
        report["kills"], report["kills_date"] = earlier["kills"], earlier.get("date")
    from nrsfm_kit.utils.io import atomic_write_json

    atomic_write_json(args.out, report)
    print(markdown(report))
    ok = all(r["outcome"] == "passed" for r in report["bad_inputs"]) and prc == 0 and \
        all(r["survived"] for r in report.get("kills", []))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
