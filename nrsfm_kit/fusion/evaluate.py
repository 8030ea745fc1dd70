"""The reconstruction table of non-rigid fusion (DeepDeform Table 2 / NNRT Table 2 on synthetic sequences).

:func:`fusion_table` fuses the synthetic presets of :mod:`nrsfm_kit.fusion.synthetic` with every correspondence
source, with and without keyframes (``keyframes=False``: ``keyframe_every=None``, only the previous frame as a
temporary keyframe, i.e. frame-to-frame correspondences), and reports DeepDeform's deformation and geometry errors (cm) and the time per
frame. Used by ``benchmarks/fusion_table.py`` (the RESULTS.md table) and notebook 07.
"""

from __future__ import annotations

import time

__all__ = ["fusion_table", "VARIANTS"]

#: (label, correspondence source, keyframes on)
VARIANTS = (
    ("none", "none", False),
    ("dis", "dis", True),
    ("dis, no keyframes", "dis", False),
    ("nnrt", "nnrt", True),
    ("nnrt, no keyframes", "nnrt", False),
    ("deepdeform", "deepdeform", True),
)


def fusion_table(presets=("teaching", "fast"), variants=VARIANTS, *, seeds=(0,), num_frames: int | None = None,
                 progress: bool = True, **config) -> dict:
    """{preset: {label: {"deformation_cm", "geometry_cm", "seconds_per_frame", "nodes", "seed"...}}} (means over
    ``seeds`` with the per-seed values in ``per_seed``). ``config``: further :class:`FusionConfig` fields."""
    from nrsfm_kit.fusion.pipeline import FusionConfig
    from nrsfm_kit.fusion.run import fuse_sequence
    from nrsfm_kit.fusion.synthetic import fusion_sequence

    out: dict = {}
    for preset in presets:
        rows: dict = {}
        for seed in seeds:
            kw = {} if num_frames is None else {"num_frames": int(num_frames)}
            seq = fusion_sequence(preset, seed=seed, **kw)
            for label, source, keyframes in variants:
                cfg = FusionConfig(correspondences=source, keyframe_every=50 if keyframes else None, **config)
                t0 = time.perf_counter()
                res = fuse_sequence(seq, cfg, progress=progress)
                per = sorted(r.seconds.get("total", 0.0) for r in res.records[1:])
                row = {"deformation_cm": res.report.deformation_cm, "geometry_cm": res.report.geometry_cm,
                       "seconds_per_frame": per[len(per) // 2] if per else float("nan"),
                       "wall_s": time.perf_counter() - t0, "nodes": res.fusion.graph.num_nodes,
                       "keyframes": len(res.fusion.keyframes),
                       "keyframes_ignored": sum(r.keyframes_ignored for r in res.records)}
                rows.setdefault(label, {"per_seed": {}})["per_seed"][seed] = row
        for r in rows.values():
            vals = list(r["per_seed"].values())
            for key in ("deformation_cm", "geometry_cm", "seconds_per_frame"):
                r[key] = sum(v[key] for v in vals) / len(vals)
        out[preset] = rows
    return out
