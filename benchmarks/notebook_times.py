"""Time every notebook at teaching size (or smoke size): the estimates on the book's landing page.

    OMP_NUM_THREADS=1 python benchmarks/notebook_times.py [--smoke] [--only 03 09] [--timeout 1800]
        [--executed-out build/teaching-executed] [--out benchmarks/results/notebook_times.json]

Each notebook runs in its own child process (nbclient, a fresh kernel); the row records the wall time, the CPU
time of the child and its kernel (user + system: on a one-thread run that is the time an idle laptop core would
take, whatever else this machine was doing), the device (cpu / cuda) and whether it finished. Rows of other
notebooks already in ``--out`` are kept, so notebooks can be timed one at a time. The executed notebooks are
written to ``--executed-out`` (a book can be built from them: ``python -m nrsfm_kit.course book --executed DIR``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import sys, nbformat
from nbclient import NotebookClient
src, dst, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3])
nb = nbformat.read(src, as_version=4)
client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": "notebooks"}})
try:
    client.execute()
finally:
    nbformat.write(nb, dst)
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="time at smoke size (NRSFM_KIT_SMOKE=1); default: teaching size")
    ap.add_argument("--only", nargs="*", default=None, help="notebook number prefixes to time (default: all)")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per cell before giving up (default 1800)")
    ap.add_argument("--executed-out", default=None, help="folder for the executed notebooks (default: "
                    "build/teaching-executed or build/smoke-executed)")
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/notebook_times.json"),
                    help="JSON rows (default benchmarks/results/notebook_times.json)")
    a = ap.parse_args(argv)
    size = "smoke" if a.smoke else "teaching"
    exe_dir = Path(a.executed_out or REPO / "build" / f"{size}-executed")
    exe_dir.mkdir(parents=True, exist_ok=True)
    out = Path(a.out)
    rows = json.loads(out.read_text()) if out.exists() else []
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.pop("NRSFM_KIT_SMOKE", None)
    if a.smoke:
        env["NRSFM_KIT_SMOKE"] = "1"
    try:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        device = "cpu"
    for nb in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        if a.only and not any(nb.name.startswith(p) for p in a.only):
            continue
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", CHILD, str(nb), str(exe_dir / nb.name), str(a.timeout)],
                              cwd=REPO, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        row = {"notebook": nb.stem, "size": size, "device": device, "ok": proc.returncode == 0,
               "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "threads": env["OMP_NUM_THREADS"],
               "machine": f"{platform.machine()} {os.cpu_count()} cores", "date": date.today().isoformat()}
        if proc.returncode:
            row["error"] = proc.stderr.strip().splitlines()[-1][:300] if proc.stderr.strip() else "failed"
        print(json.dumps(row), flush=True)
        rows = [r for r in rows if not (r["notebook"] == row["notebook"] and r["size"] == size
                                        and r["device"] == device)] + [row]
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(sorted(rows, key=lambda r: (r["size"], r["device"], r["notebook"])), indent=1))
        tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
