"""The non-rigid fusion table (DeepDeform Table 2 / NNRT Table 2 setting) on the synthetic presets.

Usage: ``python benchmarks/fusion_table.py [--presets teaching fast] [--seeds 0] [--frames N] [--json PATH]``.
Writes ``benchmarks/results/fusion_table.json`` by default (see RESULTS.md for the recorded run).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    from nrsfm_kit.fusion.evaluate import VARIANTS, fusion_table
    from nrsfm_kit.utils.bench import machine_info
    from nrsfm_kit.utils.io import atomic_write_json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["teaching", "fast"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument("--variants", nargs="+", default=None, help="labels of VARIANTS to run (default all)")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "fusion_table.json"))
    a = ap.parse_args(argv)
    variants = VARIANTS if a.variants is None else [v for v in VARIANTS if v[0] in a.variants]
    table = fusion_table(a.presets, variants, seeds=a.seeds, num_frames=a.frames, progress=False)
    clean = json.loads(json.dumps(table, default=float), parse_constant=lambda c: None)
    atomic_write_json(a.json, {"date": datetime.date.today().isoformat(), "machine": machine_info(1),
                               "seeds": a.seeds, "frames": a.frames, "table": clean})
    for preset, rows in table.items():
        print(f"## {preset}")
        for label, r in rows.items():
            d, g = r["deformation_cm"], r["geometry_cm"]
            print(f"{label:<22} deformation {d:6.2f} cm  geometry {g:5.2f} cm  {1000 * r['seconds_per_frame']:7.0f} "
                  f"ms/frame" if math.isfinite(d) else f"{label}: n/a")
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
