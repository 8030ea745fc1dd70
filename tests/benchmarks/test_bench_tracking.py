"""benchmarks/bench_tracking.py --quick runs in-process and writes every row with positive times (no timing bounds)."""

from __future__ import annotations

import json

import pytest

from nrsfm_kit.utils.testing import benchmark_script


@pytest.fixture(scope="module")
def bench_tracking():
    with benchmark_script("bench_tracking") as module:
        yield module


def test_quick_run_writes_rows(bench_tracking, tmp_path):
    out = tmp_path / "tracking.json"
    # one thread: on a shared 2-core machine two OpenMP threads can make this smoke run 10x slower
    assert bench_tracking.main(["--quick", "--threads", "1", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["in_process"] and data["settings"]["reps"] == 2 and data["machine"]["torch_threads"] == 1
    rows = data["rows"]
    assert rows and not [r["error"] for r in rows if "error" in r]
    got = {(r["net"], r["mode"], r["correlation"], r["device"]) for r in rows}
    for mode in ("inference", "training"):
        assert {("phi", mode, "torch", "cpu"), ("phi", mode, "warp", "cpu"), ("psi", mode, "torch", "cpu")} <= got
    for r in rows:
        assert (r["width"], r["height"], r["width_px"]) == (0.25, 128, 192)
        assert r["median_ms"] > 0 and r["cpu_ms"] > 0 and len(r["times_ms"]) == 2 and min(r["times_ms"]) > 0
        assert r["params"] > 0 and r["peak_mib"] >= 0 and r["ratio"] > 0
    assert {t["device"] for t in data["totals"]} >= {"cpu"}
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temp file behind


def test_row_functions_make_specs(bench_tracking):
    s = bench_tracking.Settings(devices=["cpu"], widths=[1.0, 0.25], threads=1)
    specs = [sp for fn in bench_tracking.ROW_FUNCTIONS for sp in fn(s)]
    assert len(specs) == 2 * 2 * 3 and all(sp["net"] in bench_tracking.BUILDERS for sp in specs)
    assert bench_tracking.cuda_variant_rows(s) == []  # channels_last / autocast rows are CUDA only
    s.devices = ["cpu", "cuda"]
    assert {sp["variant"] for sp in bench_tracking.cuda_variant_rows(s)} == {"channels_last", "bf16", "fp16"}
    assert bench_tracking.phi_feature_channels(1.0) == 565
