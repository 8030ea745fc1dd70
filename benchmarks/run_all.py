"""Run every benchmarks/bench_*.py in turn (`make bench`). Each prints a markdown table; see RESULTS.md."""

from __future__ import annotations

import runpy
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    names = argv if argv else None
    scripts = sorted(here.glob("bench_*.py"))
    if names:
        scripts = [s for s in scripts if any(n in s.stem for n in names)]
    failed = []
    for script in scripts:
        print(f"\n## {script.stem}\n", flush=True)
        t0 = time.perf_counter()
        try:
            runpy.run_path(str(script), run_name="__main__")
        except Exception as exc:  # keep going, report at the end
            failed.append(f"{script.name}: {type(exc).__name__}: {exc}")
        print(f"\n({script.name}: {time.perf_counter() - t0:.1f} s)", flush=True)
    if failed:
        print("\nfailed benchmarks:\n" + "\n".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
