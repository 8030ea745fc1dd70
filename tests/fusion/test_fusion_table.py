"""fusion_table: one row per variant and preset with finite errors and timings (tiny run)."""

from __future__ import annotations

import math

from nrsfm_kit.fusion.evaluate import VARIANTS, fusion_table


def test_fusion_table_rows():
    variants = [v for v in VARIANTS if v[0] in ("none", "dis, no keyframes")]
    t = fusion_table(("smoke",), variants, num_frames=4, progress=False)
    rows = t["smoke"]
    assert set(rows) == {"none", "dis, no keyframes"}
    for r in rows.values():
        assert math.isfinite(r["geometry_cm"]) and r["seconds_per_frame"] > 0 and 0 in r["per_seed"]
    assert rows["dis, no keyframes"]["per_seed"][0]["keyframes"] == 0  # keyframe_every = None: frame to frame only
