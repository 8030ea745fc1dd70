"""benchmarks/bench_tracking_step.py runs (quick mode) and reports every row with a positive time."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_tracking_step.py"


def test_quick_run_writes_rows(tmp_path):
    name = "benchmarks_bench_tracking_step"
    spec = importlib.util.spec_from_file_location(name, SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        out = tmp_path / "step.json"
        assert module.main(["--quick", "--json", str(out)]) == 0
    finally:
        sys.modules.pop(name, None)
    data = json.loads(out.read_text())
    rows = {r["row"] for r in data["rows"]}
    assert {"phi forward", "psi forward", "solve (3 LM iterations)"} <= rows and len(rows) == 5
    assert all(r["median_ms"] > 0 for r in data["rows"])
