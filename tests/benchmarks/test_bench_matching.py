"""benchmarks/bench_matching.py --quick runs in-process and writes every row with positive times (no timing bounds)."""

from __future__ import annotations

import json
import tempfile

import pytest

from nrsfm_kit.utils.testing import benchmark_script


@pytest.fixture(scope="module")
def bench_matching():
    with benchmark_script("bench_matching") as module:
        yield module


def test_quick_run_writes_rows(bench_matching, tmp_path, monkeypatch):
    out = tmp_path / "matching.json"
    scratch = tmp_path / "scratch"  # where the pair files of the run go (tempfile's folder for this test)
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    # one thread: on a shared 2-core machine two OpenMP threads can make this smoke run much slower
    assert bench_matching.main(["--quick", "--threads", "1", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["in_process"] and data["settings"]["reps"] == 2 and data["machine"]["torch_threads"] == 1
    rows = data["rows"]
    assert rows and not [r["error"] for r in rows if "error" in r]
    got = {(r["group"], r["net"], r["mode"], r["batch"], r["device"]) for r in rows}
    assert {("matcher", "teaching", "inference", 1, "cpu"), ("matcher", "teaching", "inference", 8, "cpu"),
            ("matcher", "teaching", "training", 8, "cpu"), ("tracker", "none", "inference", 1, "cpu"),
            ("tracker", "teaching", "inference", 1, "cpu"), ("dense", "none", "inference", 1, "cpu")} <= got
    assert "paper" not in {r["net"] for r in rows}  # the quick run skips the paper-size matcher
    keys = {"group", "net", "mode", "batch", "device", "reps", "threads", "height", "width_px", "median_ms", "cpu_ms",
            "times_ms", "per_pair_ms", "ratio", "x_paper", "peak_mib", "params"}
    for r in rows:
        assert keys <= set(r)
        assert r["median_ms"] > 0 and r["cpu_ms"] > 0 and len(r["times_ms"]) == 2 and min(r["times_ms"]) > 0
        assert r["per_pair_ms"] == pytest.approx(r["median_ms"] / r["batch"])
        assert r["peak_mib"] >= 0 and r["ratio"] > 0
        if r["group"] == "matcher":
            assert r["params"] > 0 and r["height"] == r["width_px"] == 64
        else:
            assert (r["height"], r["width_px"]) == (120, 160) and r["nodes"] > 0
        if r["group"] == "tracker":
            assert r["match_ms"] >= 0 and r["align_ms"] > 0 and r["gn_steps"] > 0
            assert (r["match_ms"] > 0) == (r["net"] != "none")
    refs = [r for r in rows if (r["group"], r["mode"], r["batch"]) == ("matcher", "inference", 1)
            or (r["group"], r["net"]) == ("tracker", "none")]
    assert all(r["ratio"] == pytest.approx(1.0) for r in refs)
    assert data["paper_tracker_ms"] == 2299.0 and [p["nodes"] for p in data["pairs"]] and data["pairs"][0]["nodes"] > 0
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temp file behind
    assert not list(scratch.iterdir())  # nor the pair files


def test_row_functions_make_specs(bench_matching):
    s = bench_matching.Settings(devices=["cpu"], threads=1, data_dir="/nowhere")
    specs = [sp for fn in bench_matching.ROW_FUNCTIONS for sp in fn(s)]
    assert all(sp["group"] in bench_matching.BUILDERS for sp in specs)
    matcher = [sp for sp in specs if sp["group"] == "matcher"]
    assert {(sp["net"], sp["mode"], sp["batch"]) for sp in matcher} == {
        ("paper", "inference", 1), ("paper", "inference", 32), ("teaching", "inference", 1),
        ("teaching", "inference", 32), ("teaching", "training", 32)}
    tracker = [sp for sp in specs if sp["group"] == "tracker"]
    assert [sp["net"] for sp in tracker] == ["none", "teaching", "paper"]  # the reference first
    assert {(sp["height"], sp["width_px"]) for sp in tracker} == {(480, 640)}
    dense = [sp for sp in specs if sp["group"] == "dense"]
    assert [(sp["height"], sp["width_px"]) for sp in dense] == [(240, 320), (480, 640)]
    heavy = {(sp["group"], sp["net"], sp["batch"]) for sp in specs if sp["reps"] == s.heavy_reps}
    assert heavy == {("matcher", "paper", 32), ("tracker", "paper", 1)}  # the calls of tens of seconds on CPU
    assert s.sizes() == [(480, 640), (240, 320)]  # one pair file per size, the tracker's shared with dense
    s.devices = ["cpu", "cuda"]
    cuda = [sp for fn in bench_matching.ROW_FUNCTIONS for sp in fn(s) if sp["device"] == "cuda"]
    assert len(cuda) == len(specs) and all(sp["reps"] == s.reps for sp in cuda)


def test_ratios(bench_matching):
    rows = [{"group": "matcher", "net": "paper", "mode": "inference", "batch": 1, "device": "cpu", "median_ms": 2.0},
            {"group": "matcher", "net": "paper", "mode": "inference", "batch": 32, "device": "cpu", "median_ms": 40.0},
            {"group": "tracker", "net": "none", "device": "cpu", "height": 480, "width_px": 640, "median_ms": 100.0},
            {"group": "tracker", "net": "paper", "device": "cpu", "height": 480, "width_px": 640,
             "median_ms": 2299.0 * 3},
            {"group": "dense", "net": "none", "device": "cpu", "height": 240, "width_px": 320, "median_ms": 10.0},
            {"group": "dense", "net": "none", "device": "cpu", "height": 480, "width_px": 640, "median_ms": 35.0}]
    bench_matching.add_ratios(rows)
    assert [r["ratio"] for r in rows] == pytest.approx([1.0, 20.0, 1.0, 68.97, 1.0, 3.5])
    assert rows[3]["x_paper"] == pytest.approx(3.0) and rows[2]["x_paper"] is None
