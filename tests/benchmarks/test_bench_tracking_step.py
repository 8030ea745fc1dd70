"""benchmarks/bench_tracking_step.py runs (quick mode) and reports every row with a positive time."""

from __future__ import annotations

import json

from nrsfm_kit.utils.testing import benchmark_script


def test_quick_run_writes_rows(tmp_path):
    out = tmp_path / "step.json"
    with benchmark_script("bench_tracking_step") as module:
        assert module.main(["--quick", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    rows = {r["row"] for r in data["rows"]}
    assert {"phi forward", "psi forward", "solve (3 LM iterations)"} <= rows and len(rows) == 5
    assert all(r["median_ms"] > 0 for r in data["rows"])
