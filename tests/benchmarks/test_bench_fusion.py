"""benchmarks/bench_fusion.py --quick runs in-process and writes every row with positive times (no timing bounds)."""

from __future__ import annotations

import json
import tempfile

import pytest

from nrsfm_kit.utils.testing import benchmark_script


@pytest.fixture(scope="module")
def bench_fusion():
    with benchmark_script("bench_fusion") as module:
        yield module


def test_quick_run_writes_rows(bench_fusion, tmp_path, monkeypatch):
    pytest.importorskip("open3d")
    out = tmp_path / "fusion.json"
    scratch = tmp_path / "scratch"  # where the frame file of the run goes (tempfile's folder for this test)
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    assert bench_fusion.main(["--quick", "--threads", "1", "--device", "cpu", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["in_process"] and data["settings"]["reps"] == 2 and data["machine"]["torch_threads"] == 1
    rows = data["rows"]
    assert rows and not [r["error"] for r in rows if "error" in r]
    got = {(r["group"], r["method"], r.get("size"), r["device"]) for r in rows}
    assert {("integration", m, n, "cpu") for m in ("open3d", "ours", "ours_graph") for n in (48, 64)} <= got
    assert ("integration", "torch", 48, "cpu") in got and ("integration", "torch", 64, "cpu") not in got
    assert {("extraction", m, n, "cpu") for m in ("open3d", "ours") for n in (48, 64)} <= got
    assert {r["method"] for r in rows if r["group"] == "pipeline"} == {"none", "dis"}
    keys = {"group", "method", "device", "reps", "threads", "median_ms", "cpu_ms", "times_ms", "ratio", "x_paper",
            "peak_mib"}
    for r in rows:
        assert keys <= set(r)
        assert r["median_ms"] > 0 and r["cpu_ms"] > 0 and len(r["times_ms"]) == r["reps"] and min(r["times_ms"]) > 0
        assert r["peak_mib"] >= 0 and r["ratio"] > 0
        assert r["open3d_threads"] in (1, None)  # Open3D (oneTBB) bounded to --threads where it can be
        if r["group"] == "integration":
            assert r["voxels"] == r["size"] ** 3 and r["voxel_mm"] > 0
            if r["method"] != "open3d":
                assert r["updated_voxels"] > 0
            assert (r["nodes"] > 0) == (r["method"] == "ours_graph")
        elif r["group"] == "extraction":
            assert r["vertices"] > 0 and r["triangles"] > 0
        else:
            assert r["frames"] == 3 and r["timed_frames"] == 2 and (r["height"], r["width_px"]) == (128, 192)
            assert r["track_ms"] > 0 and r["integ_ms"] > 0 and r["corr_ms"] >= 0 and r["extract_ms"] >= 0
            assert r["median_ms"] == pytest.approx(r["frame_ms_median"])
            assert (r["corr_ms_per_keyframe"] is not None) == (r["method"] != "none")
    refs = [r for r in rows if r["method"] in ("open3d", "none")]
    assert all(r["ratio"] == pytest.approx(1.0) for r in refs)
    # the torch reference and the Warp kernel update the same voxels of the same frame
    upd = {r["method"]: r["updated_voxels"] for r in rows if r["group"] == "integration" and r["size"] == 48}
    assert upd["torch"] == upd["ours"]
    assert data["paper"] == {"nnrt_keyframe_ms": 27.0, "nnrt_5_keyframes_ms": 90.0, "deepdeform_frame_ms": 2299.0}
    assert data["frame"]["nodes"] > 0
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temp file behind
    assert not list(scratch.iterdir())  # nor the frame file


def test_row_functions_make_specs(bench_fusion):
    s = bench_fusion.Settings(devices=["cpu"], threads=1, data_dir="/nowhere")
    specs = bench_fusion.row_specs(s)
    assert specs == [sp for fn in bench_fusion.ROW_FUNCTIONS for sp in fn(s)]  # every group by default
    assert all(sp["group"] in bench_fusion.BUILDERS for sp in specs)
    integ = [(sp["method"], sp["size"]) for sp in specs if sp["group"] == "integration"]
    assert integ == [("open3d", 128), ("ours", 128), ("ours_graph", 128), ("torch", 128),
                     ("open3d", 256), ("ours", 256), ("ours_graph", 256)]  # the reference first, torch at 128 only
    ext = [(sp["method"], sp["size"]) for sp in specs if sp["group"] == "extraction"]
    assert ext == [("open3d", 128), ("ours", 128), ("open3d", 256), ("ours", 256)]
    pipe = [(sp["method"], sp["frames"]) for sp in specs if sp["group"] == "pipeline"]
    assert pipe == [("none", 12), ("dis", 12), ("nnrt", 12), ("deepdeform", 5)]
    assert all(sp["device"] == "cpu" for sp in specs if sp["group"] == "pipeline")
    s.devices = ["cpu", "cuda"]
    cuda = [sp for sp in bench_fusion.row_specs(s) if sp["device"] == "cuda"]
    assert {(sp["group"], sp["method"]) for sp in cuda} == {
        ("integration", "ours"), ("integration", "ours_graph"), ("integration", "torch"), ("extraction", "ours")}
    s.groups = ["integration", "extraction"]  # --only integration --only extraction (gpu_check's plan)
    assert {sp["group"] for sp in bench_fusion.row_specs(s)} == {"integration", "extraction"}


def test_ratios(bench_fusion):
    rows = [{"group": "integration", "method": "open3d", "size": 128, "device": "cpu", "median_ms": 20.0},
            {"group": "integration", "method": "ours", "size": 128, "device": "cpu", "median_ms": 80.0},
            {"group": "integration", "method": "ours", "size": 256, "device": "cpu", "median_ms": 500.0},
            {"group": "extraction", "method": "open3d", "size": 128, "device": "cpu", "median_ms": 10.0},
            {"group": "extraction", "method": "ours", "size": 128, "device": "cuda", "median_ms": 5.0},
            {"group": "pipeline", "method": "none", "device": "cpu", "median_ms": 200.0},
            {"group": "pipeline", "method": "nnrt", "device": "cpu", "median_ms": 600.0, "corr_ms_per_keyframe": 54.0},
            {"group": "pipeline", "method": "deepdeform", "device": "cpu", "median_ms": 2299.0 * 2}]
    bench_fusion.add_ratios(rows)
    assert [r["ratio"] for r in rows[:2]] == pytest.approx([1.0, 4.0]) and rows[2]["ratio"] is None
    assert [r["ratio"] for r in rows[3:]] == pytest.approx([1.0, 0.5, 1.0, 3.0, 22.99])
    assert rows[6]["x_paper"] == pytest.approx(2.0) and rows[7]["x_paper"] == pytest.approx(2.0)
    assert all(r["x_paper"] is None for r in rows[:6])
