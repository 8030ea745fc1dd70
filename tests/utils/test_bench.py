"""The benchmark measurement helpers (nrsfm_kit.utils.bench)."""

from __future__ import annotations

import numpy as np
import pytest

from nrsfm_kit.utils.bench import median_time, peak_rss_mib, timings, traced_peak_mib


def test_timings_count_calls_and_sync():
    calls, syncs = [], []
    out = timings(lambda: calls.append(1), reps=5, warmup=2, sync=lambda: syncs.append(1))
    assert len(calls) == 7 and len(syncs) == 7 and len(out["times"]) == 5
    assert out["wall"] >= 0 and out["cpu"] >= 0 and out["wall"] == sorted(out["times"])[2]


def test_median_time_orders_work():
    fast = median_time(lambda: np.ones(10).sum(), reps=5)
    slow = median_time(lambda: np.linalg.svd(np.ones((300, 300))), reps=3)
    assert 0 <= fast < slow


def test_memory_measures():
    assert peak_rss_mib() > 10  # a Python process with numpy loaded
    big = traced_peak_mib(lambda: np.ones(4 * 2**20 // 8))  # 4 MiB
    small = traced_peak_mib(lambda: [0] * 10)
    assert 3.5 < big < 6 and small < 0.5


@pytest.mark.parametrize("kw, msg", [({"reps": 0}, "reps: expected >= 1"), ({"reps": 1, "warmup": -1}, "warmup")])
def test_bad_arguments(kw, msg):
    with pytest.raises(ValueError, match=msg):
        timings(lambda: None, **kw)


def test_measure_row_times_the_built_call_and_adds_its_fields():
    from nrsfm_kit.utils.bench import device_sync, measure_row

    calls = []

    def build(spec):
        return (lambda: calls.append(1)), (lambda t: {"calls_seen": len(calls), "wall_s": t["wall"]})

    row = measure_row({"threads": 1, "device": "cpu", "reps": 3, "name": "x"}, build, warmup=2)
    assert len(calls) == 5 and row["calls_seen"] == 5 and row["name"] == "x"
    assert row["median_ms"] >= 0 and len(row["times_ms"]) == 3 and row["peak_mib"] >= 0
    assert row["peak_kind"].startswith("peak RSS") and device_sync("cpu") is None
