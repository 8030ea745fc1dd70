"""benchmarks/gpu_check.py runs without a GPU: every parity case passes on CPU and the summary is complete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nrsfm_kit.utils.testing import benchmark_script


@pytest.fixture(scope="module")
def gpu_check():
    with benchmark_script("gpu_check") as module:
        yield module


def test_parity_only_on_cpu(gpu_check, tmp_path):
    assert gpu_check.main(["--device", "cpu", "--parity-only", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {"ok", "device", "device_type", "torch", "warp", "python", "date", "parity", "parity_wall_s",
            "benchmarks", "wall_s"} <= set(summary)
    assert summary["ok"] and summary["device_type"] == "cpu" and summary["benchmarks"] is None
    par = summary["parity"]
    assert {"cases", "passed", "failed", "notes"} <= set(par)
    cases = par["cases"]
    failed = [f"{c['kernel']}.{c['case']} {c['dtype']}: {c['message']}" for c in cases if not c["passed"]]
    assert not failed and par["failed"] == 0 and par["passed"] == len(cases)
    keys = {"kernel", "case", "device", "dtype", "tol", "value_max_abs_diff", "grad_max_abs_diff", "passed",
            "message", "wall_s"}
    assert all(keys <= set(c) for c in cases)
    names = {(c["kernel"], c["case"]) for c in cases}
    # every warp_field and edm_loss bridge, in both dtypes
    for name in ("warp_points", "warp_point_image", "arap_residuals"):
        assert ("warp_field", name) in names
    assert any(k == "edm_loss" and c.startswith("edm_pair_loss") for k, c in names)
    assert {c["dtype"] for c in cases} == {"float32", "float64"}
    # gauss_newton: its PARITY_CASES when the module has them, else a note saying it was skipped
    if not any(k == "gauss_newton" for k, _ in names):
        assert any(n.startswith("gauss_newton: skipped") for n in par["notes"])
    md = (tmp_path / "summary.md").read_text()
    assert md.startswith("# GPU check: PASS") and "warp_points" in md and "Skipped (--parity-only)" in md
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic writes left no temp file behind


def test_a_failing_case_is_reported(gpu_check, tmp_path, monkeypatch):
    from nrsfm_kit.kernels.warp_field import warp_points, warp_points_torch

    def broken():
        cases, notes = gpu_check.warp_field_cases()
        bad = gpu_check.ParityCase("warp_field", "warp_points[off by 1e-3]", lambda *a: warp_points(*a) * 1.001,
                                   warp_points_torch, cases[0].make_inputs, cases[0].grad_args)
        return [bad], notes

    monkeypatch.setattr(gpu_check, "KERNELS", {"warp_field": broken})
    assert gpu_check.main(["--device", "cpu", "--parity-only", "--out", str(tmp_path)]) == 1
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert not summary["ok"] and summary["parity"]["failed"] == 2  # float32 and float64
    assert all("output 0: max |diff|" in c["message"] for c in summary["parity"]["cases"])
    assert (tmp_path / "summary.md").read_text().startswith("# GPU check: FAIL")


def test_benchmark_plan(gpu_check, tmp_path):
    """Listed scripts follow the registry; an unlisted one runs with --quick only when it declares it."""
    root = Path(gpu_check.ROOT)
    assert gpu_check._bench_plan(root / "benchmarks" / "bench_solver.py").args == ("--quick",)
    assert gpu_check._bench_plan(root / "benchmarks" / "bench_graph.py").args is None
    quick = tmp_path / "bench_new.py"
    quick.write_text('ap.add_argument("--quick", action="store_true")\n')
    plain = tmp_path / "bench_plain.py"
    plain.write_text("print('| a |')\n")
    assert gpu_check._bench_plan(quick).args == ("--quick",)
    assert gpu_check._bench_plan(plain).args is None and "no --quick flag" in gpu_check._bench_plan(plain).note


def test_run_benchmark_captures_output_failures_and_timeouts(gpu_check, tmp_path):
    ok = tmp_path / "bench_ok.py"
    ok.write_text("print('| a | b |')\nprint('|---|---|')\n")
    fails = tmp_path / "bench_fails.py"
    fails.write_text("import sys\nprint('| partial |')\nsys.exit('boom')\n")
    slow = tmp_path / "bench_slow.py"
    slow.write_text("import time\nprint('started', flush=True)\ntime.sleep(60)\n")
    plan = gpu_check.Bench(("--quick",))
    r = gpu_check.run_benchmark(ok, plan, False, "cpu", 60)
    assert r["status"] == "ok" and r["returncode"] == 0 and r["output"].startswith("| a | b |")
    r = gpu_check.run_benchmark(fails, plan, False, "cpu", 60)
    assert r["status"] == "failed" and r["output"] == "| partial |\n" and "boom" in r["stderr_tail"]
    r = gpu_check.run_benchmark(slow, plan, False, "cpu", 2)
    assert r["status"] == "timeout" and r["wall_s"] < 30 and r["output"] == "started\n"
    r = gpu_check.run_benchmark(ok, gpu_check.Bench(None, note="skipped: no quick mode"), False, "cpu", 60)
    assert r["status"] == "skipped" and r["command"] is None and r["note"] == "skipped: no quick mode"
