"""Demo section: EDM priors and unsupervised monocular depth of a non-rigid scene (Takmaz et al.)."""

from __future__ import annotations

import torch

from nrsfm_kit.demo import DemoSection

ORDER = 70
TITLE = "EDM priors / monocular depth"


def run(smoke: bool = False) -> DemoSection:
    from nrsfm_kit.edm import priors as P
    from nrsfm_kit.edm.reconstruct import all_pairs, reconstruct_depths, relative_depth_error, surface_views
    from nrsfm_kit.edm.training import constant_baseline, fit_sequence, preset_config, synthetic_video
    from nrsfm_kit.viz.depth import maps_figure, point_cloud_figure

    sec = DemoSection(TITLE, text="Rank proposition of EDM differences, a rigid surface recovered by EDM "
                                  "optimisation, and test-time training of the depth / motion networks on the "
                                  "synthetic non-rigid video (AbsRel with median scaling, segmentation IoU).")
    g = torch.Generator().manual_seed(0)
    Xk, Xl = P.linear_deformation(60, 2, generator=g)
    r = P.numerical_rank(P.edm_difference(Xk, Xl), ref=float(P.edm(Xl).norm()))
    sec.add("rank(D^kl), linear deformation b=2", r, target="<= min(8, b+2) = 4", ok=r <= 4)
    shapes = P.low_rank_shapes(30, 3, 30, generator=g)
    r2 = P.numerical_rank(P.stacked_edms(shapes))
    sec.add("rank(D), low-rank shapes b=3", r2, target="<= (b+1)(b+2)/2 = 10", ok=r2 <= 10)

    sv = surface_views("rigid", side=8 if smoke else 10, frames=3)
    i, j = all_pairs(sv.rays.shape[1])
    d, _ = reconstruct_depths(sv.rays, i, j, steps=80 if smoke else 250, lr=0.02)
    err = float(relative_depth_error(d, sv.depth).mean())
    flat = float(relative_depth_error(torch.ones_like(d), sv.depth).mean())
    sec.add("rigid surface by EDM optimisation: rel. depth error", err, target=f"< flat plane {flat:.3f} / 3",
            ok=err < flat / 3)

    import dataclasses

    from nrsfm_kit.data import synthetic_monocular_video
    from nrsfm_kit.edm.loss import EDMLossConfig

    cfg, size = preset_config(True)
    cfg.progress = False
    # the rigid prior where it is exact: a static room seen by a translating camera
    room = synthetic_monocular_video(3, 48, 64, 0, fps=2.0, camera_motion=2.0, objects=())
    rcfg = dataclasses.replace(cfg, steps_stage2=20 if smoke else 60, lr=1e-3, loss=EDMLossConfig(num_pairs=10_000))
    room_res = fit_sequence(room, "rigid", rcfg)
    rb = constant_baseline(room)["all"]["abs_rel"]
    ra = room_res.metrics["all"]["abs_rel"]
    sec.add("static room: AbsRel (rigid EDM prior)", ra, target=f"< 0.5 x constant ({rb:.3f})",
            ok=ra < 0.5 * rb if not smoke else None)

    # the non-rigid video: reported only, these few demo steps are far from the teaching size (notebook 12 and
    # benchmarks/bench_edm.py --only depth: there the "far below constant" target is reached, the non-rigid
    # and segmentation targets are not)
    cfg.steps_stage1 = cfg.steps_stage2 = 6 if smoke else 20
    cfg.warmup_stage1 = 3 if smoke else 20
    video = synthetic_video(size["frames"], size["height"], size["width"])
    base = constant_baseline(video)["all"]["abs_rel"]
    sec.add("non-rigid video: constant-depth AbsRel", base, target="reference")
    res = {}
    for var in ("rigid", "embeddings"):
        res[var] = fit_sequence(video, var, cfg)
        sec.add(f"non-rigid video: AbsRel all ({var})", res[var].metrics["all"]["abs_rel"],
                target=f"issue: far below {base:.3f} (teaching size: see benchmarks/RESULTS.md)")
        sec.add(f"non-rigid video: AbsRel non-rigid ({var})", res[var].metrics["nonrigid"]["abs_rel"],
                target="issue: embeddings < rigid")
    seg = res["embeddings"].segmentation
    sec.add("motion segmentation IoU", seg.get("iou", float("nan")),
            target="issue: > 0.7 (not reached: 0.46 / 0.54 at teaching size, 0.72 / 0.76 best-threshold with exact depth)")
    sec.add("motion segmentation ROC AUC", seg.get("auc", float("nan")), target="0.5 = chance")
    s = room.depth[0].median() / room_res.depth[0].median()
    sec.figures.append(maps_figure({"frame 0": room.frames[0], "GT depth": room.depth[0],
                                    "EDM-trained depth": s * room_res.depth[0]}, title="Static room"))
    sec.figures.append(point_cloud_figure({"ground truth": room.depth[0], "EDM-trained": s * room_res.depth[0]},
                                          room.frames[0], room.intrinsics, title="Static room, frame 0 in 3D"))
    sec.figures.append(maps_figure({"frame 0": video.frames[0], "GT depth": video.depth[0],
                                    "rigid variant": res["rigid"].depth[0],
                                    "with embeddings": res["embeddings"].depth[0],
                                    "embeddings": res["embeddings"].embeddings[0]},
                                   title="Non-rigid video: depth and motion embeddings"))
    return sec
