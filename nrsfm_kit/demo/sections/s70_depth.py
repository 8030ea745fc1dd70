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
    d, _ = reconstruct_depths(sv.rays, i, j, steps=150 if smoke else 300, lr=0.02)
    err = float(relative_depth_error(d, sv.depth).mean())
    flat = float(relative_depth_error(torch.ones_like(d), sv.depth).mean())
    sec.add("rigid surface by EDM optimisation: rel. depth error", err, target=f"< flat plane {flat:.3f} / 3",
            ok=err < flat / 3)

    cfg, size = preset_config(smoke)
    cfg.progress = False
    video = synthetic_video(size["frames"], size["height"], size["width"])
    base = constant_baseline(video)["all"]["abs_rel"]
    sec.add("constant-depth baseline AbsRel", base, target="reference")
    res = {}
    for var in ("rigid", "embeddings"):
        res[var] = fit_sequence(video, var, cfg)
        a = res[var].metrics["all"]["abs_rel"]
        # reported honestly: the targets of the issue are not reached at CPU-sized training (see notebook 12)
        sec.add(f"AbsRel all ({var})", a, target=f"< baseline {base:.3f}")
        sec.add(f"AbsRel non-rigid ({var})", res[var].metrics["nonrigid"]["abs_rel"], target="embeddings < rigid")
    sec.add("motion segmentation IoU", res["embeddings"].segmentation.get("iou", float("nan")), target="> 0.7")
    sec.add("motion segmentation ROC AUC", res["embeddings"].segmentation.get("auc", float("nan")), target="> 0.5")
    s = video.depth[0].median() / res["embeddings"].depth[0].median()
    sec.figures.append(maps_figure({"frame 0": video.frames[0], "GT depth": video.depth[0],
                                    "rigid variant": res["rigid"].depth[0],
                                    "with embeddings": res["embeddings"].depth[0],
                                    "embeddings": res["embeddings"].embeddings[0]}, title="Depth and motion embeddings"))
    sec.figures.append(point_cloud_figure({"ground truth": video.depth[0], "with embeddings": s * res["embeddings"].depth[0]},
                                          video.frames[0], video.intrinsics, title="Back-projected frame 0"))
    return sec
